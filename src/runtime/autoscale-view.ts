// GET /api/groups/{name}/autoscale: a group's auto-scaling rules beside what the autoscaler
// last made of them: its last evaluation (action or none, and why), its last action, and the
// load window that evaluation judged (means so far, also while the window is still filling).
// The autoscaler (src/orchestrator/autoscaler.ts) keeps these in the orchestrator's monotonic
// clock; here they become wall-clock times people read, and ages in ms.
//
// Invariants kept: read-only (no command, no commit); a group that exists but was never
// evaluated (the orchestrator just started) answers nulls, never an error; times are derived
// from one reading of both clocks, so `at` and `ageMs` agree.

import type { AutoscaleGroupStatus, AutoscaleWindow } from "../orchestrator/autoscaler.js";
import type { AutoscaleRules } from "../orchestrator/model.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { OrchestratorDaemon } from "./orchestrator-daemon.js";

/** An action of the autoscaler as the API shows it. */
export interface AutoscaleActionView {
  kind: "add" | "remove";
  appliance: string;
  reason: string;
  /** When (wall clock, ISO) and how long ago. */
  at: string;
  ageMs: number;
}

export interface AutoscaleView {
  group: string;
  rules: AutoscaleRules;
  /** The last evaluation (once a second): its action (null: none) and the reason either way. */
  lastDecision: { at: string; ageMs: number; action: { kind: "add" | "remove"; appliance: string } | null; reason: string } | null;
  /** The last add or remove since this orchestrator became active (null: none). */
  lastAction: AutoscaleActionView | null;
  /** The load window of the last evaluation: complete when coveredMs reached lengthMs. */
  window: AutoscaleWindowView | null;
}

export interface AutoscaleWindowView extends Omit<AutoscaleWindow, "startMs"> {
  startedAt: string;
  /** How much of the window lies behind the last evaluation (lengthMs when complete). */
  coveredMs: number;
}

/** The view of one group (TANDEM_SG_NOT_FOUND when there is no such group). */
export function autoscaleViewOf(d: OrchestratorDaemon, group: string): AutoscaleView {
  const g = d.controlPlane.current.groups.get(group);
  if (g === undefined) throw new TandemError(ErrorCode.SG_NOT_FOUND, `no security group named ${group}`, { group });
  return viewOf(group, g.autoscale, d.autoscaler.statusOf(group), d.clock.nowMs(), Date.parse(d.clock.nowIso()));
}

/** Pure: the autoscaler's status at monotonic nowMs, wall clock nowWallMs. */
export function viewOf(group: string, rules: AutoscaleRules, status: AutoscaleGroupStatus | null, nowMs: number, nowWallMs: number): AutoscaleView {
  const wall = (atMs: number): { at: string; ageMs: number } => {
    const ageMs = Math.max(0, Math.round(nowMs - atMs));
    return { at: new Date(nowWallMs - ageMs).toISOString(), ageMs };
  };
  if (status === null) return { group, rules: { ...rules }, lastDecision: null, lastAction: null, window: null };
  const e = status.lastEvaluation;
  const a = status.lastAction;
  const { startMs, ...figures } = status.window;
  return {
    group,
    rules: { ...rules },
    lastDecision: { ...wall(e.atMs), action: e.action === null ? null : { kind: e.action.kind, appliance: e.action.appliance }, reason: e.why },
    lastAction: a === null ? null : { kind: a.kind, appliance: a.appliance, reason: a.reason, ...wall(a.atMs) },
    window: { ...figures, startedAt: wall(startMs).at, coveredMs: Math.max(0, Math.round(e.atMs - startMs)) },
  };
}
