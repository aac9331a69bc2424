// The "Auto-scaling" panel of a group page: on/off, the member bounds and thresholds, the
// autoscaler's last decision with its reason and time, its last action, and the means of the
// load window it judged. Read from GET /api/groups/{name}/autoscale (monitor), fetched again
// every REFRESH_MS of the live stream's clock (the autoscaler evaluates once a second), so the
// page follows the stream without a timer of its own.
//
// Invariant: only words what the API answered; no figure is computed here.

import type { AutoscaleView } from "../../../src/api/types.js";
import { ms, num, time } from "../format.js";
import type { Session } from "../session.js";
import { useFetched } from "./use-fetched.js";

const REFRESH_MS = 2_000;

export function AutoscalePanel(props: { session: Session; group: string; atMs: number | null }) {
  const { session, group } = props;
  const tick = props.atMs === null ? 0 : Math.floor(props.atMs / REFRESH_MS);
  const { value: view, error } = useFetched<AutoscaleView>(() => session.client.groupAutoscale(group), [session, group, tick]);

  return (
    <section aria-labelledby="autoscale-h" class="autoscale" data-testid="autoscale" data-enabled={view === null ? undefined : String(view.rules.enabled)}>
      <h2 id="autoscale-h">Auto-scaling</h2>
      {error !== null && (
        <p role="alert" class="error-box">
          Auto-scaling of {group}: {error}
        </p>
      )}
      {view === null ? (
        error === null && <p class="muted">Loading…</p>
      ) : (
        <AutoscaleFacts view={view} />
      )}
    </section>
  );
}

function AutoscaleFacts(props: { view: AutoscaleView }) {
  const { rules, lastDecision: d, lastAction: a, window: w } = props.view;
  return (
    <>
      <p class="facts">
        <span class={`badge ${rules.enabled ? "ok" : "muted"}`} data-testid="autoscale-state">
          {rules.enabled ? "on" : "off"}
        </span>
        {rules.minMembers} to {rules.maxMembers} members · add above {num(rules.cpuHighPct, 1)} % CPU or {num(rules.connectionsPerMemberHigh)} connections per member ·
        remove below {num(rules.cpuLowPct, 1)} % CPU · cooldown {ms(rules.cooldownMs)} · priority {rules.priority}
      </p>
      <p data-testid="autoscale-decision">
        <strong>Last decision</strong>
        {d === null ? (
          <span class="muted"> — not evaluated yet.</span>
        ) : (
          <>
            {" "}
            at {time(d.at)}: {d.action === null ? "no action" : `${d.action.kind} ${d.action.appliance}`} — {d.reason}
          </>
        )}
      </p>
      <p data-testid="autoscale-action">
        <strong>Last action</strong>
        {a === null ? (
          <span class="muted"> — none since the orchestrator started.</span>
        ) : (
          <>
            {" "}
            at {time(a.at)}: {a.kind === "add" ? "added" : "returned to the pool"} {a.appliance} — {a.reason}
          </>
        )}
      </p>
      {w !== null && (
        <p class="facts" data-testid="autoscale-window">
          Window {ms(w.coveredMs)} of {ms(w.lengthMs)} since {time(w.startedAt)}, {num(w.samples)} samples from {w.membersReporting} of {w.members} members: mean CPU{" "}
          {w.cpuPct === null ? "–" : `${num(w.cpuPct, 1)} %`}, {num(w.packetsPerSec)} packets/s, {num(w.connectionsPerMember)} connections per member, sync lag{" "}
          {ms(w.syncLagMsMax)}
        </p>
      )}
    </>
  );
}
