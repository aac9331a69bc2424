// Following an applied change to its end: poll the group's transition (its progress drives the
// bar) until it is gone, then read the events to learn how it ended — completed (the new
// epoch routes) or rolled back (fills not confirmed in time, a joiner went DOWN: the old epoch
// still routes and the changes are pending again). Bounded by a deadline; the control plane
// has its own fill timeout, so the deadline only guards against an orchestrator that stopped
// answering about it.

import type { TandemClient } from "../api/client.js";
import type { ApplyResult } from "../api/types.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { sleep } from "./api-common.js";
import type { ProgressBar } from "./progress.js";

export const POLL_MS = 100;
export const WAIT_TIMEOUT_MS_DEFAULT = 300_000;
/** Events read per page while looking for the outcome. */
const EVENTS_PAGE = 500;

export interface TransitionOutcome {
  group: string;
  kind: string;
  seq: number;
  outcome: "completed" | "rolled-back" | "unknown";
  epoch: number;
  message: string;
}

/** The newest event's seq (follow events after it). */
export async function lastEventSeq(client: TandemClient): Promise<number> {
  const newest = await client.events({ limit: 1 });
  return newest[newest.length - 1]?.seq ?? 0;
}

/** Waits for the transition `applied` started; throws TANDEM_TRANSITION_FAILED when it rolled back. */
export async function waitForTransition(
  client: TandemClient,
  applied: ApplyResult,
  afterEventSeq: number,
  progress: ProgressBar,
  timeoutMs: number = WAIT_TIMEOUT_MS_DEFAULT,
): Promise<TransitionOutcome> {
  const t0 = applied.transition;
  const group = applied.group;
  if (t0 === null || !t0.running) {
    return { group, kind: t0?.kind ?? "none", seq: t0?.seq ?? 0, outcome: "completed", epoch: (await client.getGroup(group)).epoch, message: `epoch ${applied.epoch} routes` };
  }
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const t = await client.transition(group);
    if (t === null || t.seq !== t0.seq) break;
    const detail = t.phase === "fill" ? `fills ${t.confirmed}/${t.fills}` : `re-protect ${t.confirmed}/${t.fills}`;
    progress.update(t.progress, `${t.kind} #${t.seq} ${detail}`);
    if (Date.now() > giveUpAt) {
      progress.finish();
      throw new TandemError(ErrorCode.TIMEOUT, `gave up waiting after ${Math.round(timeoutMs / 1000)} s: ${t.kind} #${t.seq} of ${group} still runs (${Math.round(t.progress * 100)}%); follow it with tandem changes show ${group}`);
    }
    await sleep(POLL_MS);
  }
  const outcome = await outcomeOf(client, group, t0.seq, afterEventSeq);
  if (outcome.outcome === "rolled-back") {
    progress.finish();
    throw new TandemError(ErrorCode.TRANSITION_FAILED, `${outcome.kind} #${outcome.seq} of ${group} was rolled back: ${outcome.message}`, { group, seq: outcome.seq });
  }
  progress.update(1, `${outcome.kind} #${outcome.seq} done`);
  progress.finish();
  return outcome;
}

async function outcomeOf(client: TandemClient, group: string, seq: number, afterEventSeq: number): Promise<TransitionOutcome> {
  let after = afterEventSeq;
  let kind = "transition";
  for (let page = 0; page < 100; page++) {
    const events = await client.events({ afterSeq: after, limit: EVENTS_PAGE });
    for (const e of events) {
      const data = (e.data ?? {}) as { seq?: number; kind?: string; epoch?: number };
      if (e.group !== group || data.seq !== seq) continue;
      if (data.kind !== undefined) kind = data.kind;
      if (e.kind === "transition.completed") return { group, kind, seq, outcome: "completed", epoch: data.epoch ?? 0, message: e.message };
      if (e.kind === "transition.rolled-back") return { group, kind, seq, outcome: "rolled-back", epoch: data.epoch ?? 0, message: e.message };
    }
    if (events.length < EVENTS_PAGE) break;
    after = events[events.length - 1]!.seq ?? after;
  }
  const g = await client.getGroup(group);
  return { group, kind, seq, outcome: "unknown", epoch: g.epoch, message: `the transition ended; epoch ${g.epoch} routes` };
}
