// The "Rolling upgrade" panel of a group page: the upgrade in progress (from, target, the
// member in its cycle and its step, what the orchestrator waits for, paused and why) and every
// member's recorded and running version; pause, resume, roll back and abort for operators.
// Starting an upgrade stays a CLI/API action (it names a release installed on the appliances).
// Read from GET /api/groups/{name}/upgrade, fetched again every REFRESH_MS of the live
// stream's clock, like the auto-scaling panel.
//
// Invariant: only words what the API answered; actions go through TandemClient.

import { useState } from "preact/hooks";
import type { UpgradeStatusView } from "../../../src/api/types.js";
import { messageOf, time } from "../format.js";
import type { Session } from "../session.js";
import { confirmAction, notify } from "./dialogs.js";
import { useFetched } from "./use-fetched.js";

const REFRESH_MS = 1_000;

type Verb = "pause" | "resume" | "rollback" | "abort";

export function UpgradePanel(props: { session: Session; group: string; atMs: number | null }) {
  const { session, group } = props;
  const [bump, setBump] = useState(0);
  const tick = props.atMs === null ? 0 : Math.floor(props.atMs / REFRESH_MS);
  const { value: view, error } = useFetched<UpgradeStatusView>(() => session.client.upgradeStatus(group), [session, group, tick, bump]);

  const act = async (verb: Verb): Promise<void> => {
    if (verb === "rollback" || verb === "abort") {
      const ok = await confirmAction(
        verb === "rollback"
          ? { title: `Roll back the upgrade of ${group}?`, body: "Members that moved return to the old version, one at a time, each drained, restarted, rejoined and verified.", confirmLabel: "Roll back", danger: true }
          : { title: `Abort the upgrade of ${group}?`, body: "The upgrade ends where it stands; refused while members run two versions.", confirmLabel: "Abort", danger: true },
      );
      if (!ok) return;
    }
    try {
      await session.client.upgradeControl(group, verb);
      notify("info", `Upgrade of ${group}: ${verb} done`);
    } catch (e) {
      notify("error", `Upgrade of ${group}: ${verb} refused: ${messageOf(e)}`);
    }
    setBump((n) => n + 1);
  };

  const u = view?.upgrade ?? null;
  return (
    <section aria-labelledby="upgrade-h" class="upgrade" data-testid="upgrade" data-state={u === null ? "none" : u.paused ? "paused" : "running"}>
      <h2 id="upgrade-h">Rolling upgrade</h2>
      {error !== null && (
        <p role="alert" class="error-box">
          Upgrade of {group}: {error}
        </p>
      )}
      {view === null ? (
        error === null && <p class="muted">Loading…</p>
      ) : u === null ? (
        <p class="muted" data-testid="upgrade-none">
          No upgrade running. Members run {[...new Set(view.members.map((m) => m.version))].join(", ") || "—"}. Start one with <code>tandem sg upgrade {group} --version V</code>.
        </p>
      ) : (
        <>
          <p class="facts">
            <span class={`badge ${u.paused ? "bad" : "busy"}`} data-testid="upgrade-state">
              {u.paused ? "paused" : u.direction === "back" ? "rolling back" : "upgrading"}
            </span>{" "}
            {u.fromVersion} → {u.targetVersion} · goal {u.goal} · started {time(u.startedAt)}
          </p>
          {u.paused && (
            <p role="alert" class="error-box" data-testid="upgrade-reason">
              Paused: {u.reason ?? "no reason given"}
            </p>
          )}
          <p data-testid="upgrade-step">
            <strong>Now</strong> {u.current === null ? "between members" : `${u.current.appliance}: ${u.current.step} (since ${time(u.current.since)})`}
            {view.waitingFor !== null && <span class="muted"> — {view.waitingFor}</span>}
          </p>
          {session.canAct && (
            <p class="actions">
              {u.paused ? (
                <button type="button" onClick={() => void act("resume")}>
                  Resume
                </button>
              ) : (
                <button type="button" onClick={() => void act("pause")}>
                  Pause
                </button>
              )}
              {u.direction === "forward" && (
                <button type="button" onClick={() => void act("rollback")}>
                  Roll back
                </button>
              )}
              <button type="button" onClick={() => void act("abort")}>
                Abort
              </button>
            </p>
          )}
        </>
      )}
      {view !== null && view.upgrade !== null && (
        <table>
          <caption class="visually-hidden">Member versions</caption>
          <thead>
            <tr>
              <th scope="col">Member</th>
              <th scope="col">State</th>
              <th scope="col">Version</th>
              <th scope="col">Running</th>
              <th scope="col">Restart error</th>
            </tr>
          </thead>
          <tbody>
            {view.members.map((m) => (
              <tr key={m.appliance}>
                <td>{m.appliance}</td>
                <td>{m.state}</td>
                <td>{m.version}</td>
                <td>{m.reportedVersion ?? "—"}</td>
                <td>{m.restartError ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
