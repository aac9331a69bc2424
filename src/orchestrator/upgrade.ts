// The rolling-upgrade driver: given a group's upgrade record and what the orchestrator sees of
// its members now, the one next thing to do. Pure and synchronous (the clock is passed in); the
// daemon executes the action through the ordinary command queue and asks again, so every step
// is an audited command and the upgrade survives an orchestrator restart (the record is in the
// store; soft figures such as reported versions are learned again from heartbeats).
//
// One member at a time, each through the same cycle:
//
//   drain    stage sg.drain and apply it (make-before-break: its buckets move away first);
//            done when the member is DETACHED and no transition runs
//   restart  the member's heartbeat answer carries `restart: {version}`; its appliance agent
//            restarts it on that version; done when the appliance record says so (the daemon
//            updates the record from the version a member reports, see orchestrator-daemon.ts)
//   rejoin   sg.assign + apply (a join, make-before-break); done when UP and in the table
//   verify   a verification round over the group; done when it finds no differing bucket
//
// The goal is targetVersion going forward and fromVersion when rolling back; a member already
// on the goal is skipped, so a rollback walks back exactly the members that moved (and the
// member caught mid-cycle finishes its cycle on the new goal). When no member is off the goal
// the upgrade finishes (sg.upgrade.finish). Anything unexpected pauses the upgrade with a
// reason instead of pressing on: a member DOWN mid-cycle, a restart that reports an error or
// does not come back, a step over its deadline, a verification that finds differences. An
// operator resumes (the step starts again with a fresh deadline), rolls back, or aborts.
//
// Invariants: at most one member is out of the table for the upgrade at any time; no step
// starts while the group has a transition or pending changes (ours or an operator's); the
// driver never acts while paused.

import type { AssignedState, UpgradeState, UpgradeStep } from "./model.js";
import { upgradeGoalOf } from "./model.js";

/** A step that has not completed after this long pauses the upgrade. */
export const UPGRADE_STEP_TIMEOUT_MS = 120_000;

export interface UpgradeMemberView {
  appliance: string;
  state: AssignedState;
  inTable: boolean;
  /** Version in the appliance record. */
  version: string;
  /** Heartbeating now. */
  alive: boolean;
  /** Why its last restart request failed (reported by the member), or null. */
  restartError: string | null;
}

export type UpgradeVerifyState = { kind: "none" } | { kind: "running" } | { kind: "clean" } | { kind: "differs"; buckets: number };

export interface UpgradeInput {
  group: string;
  upgrade: UpgradeState;
  nowMs: number;
  /** When the current step began (ms, same clock as nowMs); ignored when upgrade.current is null. */
  stepSinceMs: number;
  members: readonly UpgradeMemberView[];
  /** A transition runs or changes are pending. */
  busy: boolean;
  /** The verification round the driver started for the current member (none: not started). */
  verify: UpgradeVerifyState;
}

export type UpgradeAction =
  | { kind: "wait"; reason: string }
  | { kind: "step"; appliance: string; step: UpgradeStep }
  | { kind: "member-done"; appliance: string }
  | { kind: "drain"; appliance: string }
  | { kind: "rejoin"; appliance: string }
  | { kind: "verify"; appliance: string }
  | { kind: "pause"; reason: string }
  | { kind: "finish" };

/** The one next action of a group's upgrade. */
export function nextUpgradeAction(input: UpgradeInput): UpgradeAction {
  const u = input.upgrade;
  const goal = upgradeGoalOf(u);
  if (u.paused) return { kind: "wait", reason: `paused: ${u.reason ?? "no reason given"}` };
  const byId = new Map(input.members.map((m) => [m.appliance, m]));

  if (u.current === null) {
    const off = input.members.filter((m) => m.version !== goal).sort((a, b) => (a.appliance < b.appliance ? -1 : 1));
    if (off.length === 0) return { kind: "finish" };
    if (input.busy) return { kind: "wait", reason: "the group has a transition or pending changes" };
    const unsettled = input.members.find((m) => m.state === "JOINING" || m.state === "DRAINING" || m.state === "DOWN");
    if (unsettled !== undefined) return { kind: "wait", reason: `${unsettled.appliance} is ${unsettled.state}` };
    // Members out of the table first (nothing to drain), then the others in id order.
    const next = off.find((m) => m.state === "DETACHED") ?? off[0]!;
    return { kind: "step", appliance: next.appliance, step: next.state === "DETACHED" ? "restart" : "drain" };
  }

  const { appliance, step } = u.current;
  const m = byId.get(appliance);
  if (m === undefined) return { kind: "pause", reason: `${appliance} is no longer a member of ${input.group}` };
  const elapsedMs = input.nowMs - input.stepSinceMs;
  const overdue = elapsedMs > UPGRADE_STEP_TIMEOUT_MS;
  const late = (what: string): UpgradeAction => ({ kind: "pause", reason: `${appliance}: ${what} did not complete within ${Math.round(UPGRADE_STEP_TIMEOUT_MS / 1000)} s` });
  if (m.state === "DOWN") return { kind: "pause", reason: `${appliance} went DOWN during its ${step} step` };

  switch (step) {
    case "drain":
      if (m.state === "DETACHED") return input.busy ? { kind: "wait", reason: "drain transition finishing" } : { kind: "step", appliance, step: "restart" };
      if (overdue) return late("drain");
      if (m.state === "UP" && m.inTable && !input.busy) return { kind: "drain", appliance };
      return { kind: "wait", reason: `draining ${appliance}` };
    case "restart":
      if (m.version === goal) return { kind: "step", appliance, step: "rejoin" };
      if (m.restartError !== null) return { kind: "pause", reason: `${appliance} cannot restart on ${goal}: ${m.restartError}` };
      if (overdue) return late(`restart on ${goal}`);
      return { kind: "wait", reason: `waiting for ${appliance} to come back on ${goal}` };
    case "rejoin":
      if (m.state === "UP" && m.inTable && !input.busy) return { kind: "step", appliance, step: "verify" };
      if (overdue) return late("rejoin");
      if (m.state === "DETACHED" && m.alive && !input.busy) return { kind: "rejoin", appliance };
      return { kind: "wait", reason: m.alive ? `${appliance} rejoining` : `waiting for ${appliance} to heartbeat` };
    case "verify":
      if (m.state !== "UP" || !m.inTable) return { kind: "pause", reason: `${appliance} left the table (${m.state}) during verification` };
      if (input.verify.kind === "clean") return { kind: "member-done", appliance };
      if (input.verify.kind === "differs") return { kind: "pause", reason: `verification after ${appliance} rejoined found ${input.verify.buckets} bucket(s) differing` };
      if (overdue) return late("verification");
      if (input.verify.kind === "none") return input.busy ? { kind: "wait", reason: "waiting for the group to settle" } : { kind: "verify", appliance };
      return { kind: "wait", reason: "verification running" };
  }
}
