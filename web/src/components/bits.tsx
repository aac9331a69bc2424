// Small pieces every page uses: the member-state badge, the event list, a table wrapper that
// scrolls sideways on narrow windows instead of squeezing its columns.

import type { ComponentChildren } from "preact";
import type { EventRecord } from "../../../src/api/types.js";
import { time } from "../format.js";

const STATE_CLASS: Record<string, string> = { UP: "ok", JOINING: "busy", DRAINING: "busy", DOWN: "bad", DETACHED: "muted", UNASSIGNED: "muted" };

export function StateBadge(props: { state: string }) {
  return <span class={`badge ${STATE_CLASS[props.state] ?? "muted"}`}>{props.state}</span>;
}

export function TableWrap(props: { children: ComponentChildren; label?: string }) {
  return (
    <div class="table-wrap" role={props.label === undefined ? undefined : "region"} aria-label={props.label} tabIndex={props.label === undefined ? undefined : 0}>
      {props.children}
    </div>
  );
}

/** Events, newest first. */
export function EventList(props: { events: readonly EventRecord[]; max: number; showGroup?: boolean; emptyText?: string }) {
  const list = [...props.events].reverse().slice(0, props.max);
  if (list.length === 0) return <p class="muted">{props.emptyText ?? "No events yet."}</p>;
  return (
    <ol class="timeline">
      {list.map((e) => (
        <li key={e.seq} data-kind={e.kind}>
          <time dateTime={e.at}>{time(e.at)}</time>
          <span class="kind">{e.kind}</span>
          {props.showGroup === true && e.group !== undefined && <span class="group">{e.group}</span>}
          {e.member !== undefined && <span class="member">{e.member}</span>}
          <span class="message">{e.message}</span>
        </li>
      ))}
    </ol>
  );
}
