// The runtime side of weights from measured capacity: every CAPACITY_EVALUATE_MS the weigher
// (src/orchestrator/capacity-weights.ts, pure) looks at every group with the control plane's
// estimates (fed by heartbeats: ControlPlane.heartbeat); a proposal becomes two commands through
// the one command queue, "weights.measured" (staged, with the reason) then "changes.apply"
// (make-before-break), both audited with the actor "capacity: <reason>", so the audit, the
// events and the UI say why the weights moved.
//
// Invariants kept: one evaluation at a time (a slow commit never overlaps the next one);
// nothing while this daemon is not active; a refused command is logged and, by the weigher's
// cooldown, not retried before it ends. Soft state only: the estimates and the cooldown are
// rebuilt after a restart (the weights themselves are in the store).

import { CapacityWeigher, capacityGroupInputs, leftoverMeasuredChanges, type CapacityWeigherOptions } from "../orchestrator/capacity-weights.js";
import type { PendingChange } from "../orchestrator/model.js";
import type { OrchestratorDaemon } from "./orchestrator-daemon.js";

/** How often the weigher looks (the estimates move over a minute; the cooldown is 10 min). */
export const CAPACITY_EVALUATE_MS = 5_000;

/** The narrow view of the daemon this loop needs (the daemon is its only implementation). */
type Host = Pick<OrchestratorDaemon, "controlPlane" | "logger" | "submit" | "submitSystem" | "state">;

export class CapacityRunner {
  readonly weigher: CapacityWeigher;
  private lastEvaluationMs = -Infinity;
  private running = false;

  constructor(
    private readonly host: Host,
    options: CapacityWeigherOptions = {},
  ) {
    this.weigher = new CapacityWeigher(options);
  }

  /** Called on every timer turn; evaluates once CAPACITY_EVALUATE_MS have passed since the last time. */
  async tick(nowMs: number): Promise<void> {
    if (this.running || this.host.state !== "active" || nowMs - this.lastEvaluationMs < CAPACITY_EVALUATE_MS) return;
    this.lastEvaluationMs = nowMs;
    const cp = this.host.controlPlane;
    const leftovers = leftoverMeasuredChanges(cp.current);
    const decisions = this.weigher.evaluate(nowMs, capacityGroupInputs(cp.current, cp.capacity));
    this.running = true;
    try {
      // Measured weights whose transition rolled back: withdrawn (tried again after the cooldown).
      if (leftovers.length > 0) await this.withdraw(leftovers, "capacity: measured weights not applied (rolled back); withdrawn");
      for (const d of decisions) {
        const p = d.proposal;
        if (p === null) continue;
        const actor = `capacity: ${p.reason}`;
        this.host.logger.info({ group: p.group, weights: p.weights, reason: p.reason }, "weights follow measured capacity");
        try {
          await this.host.submitSystem("weights.measured", { group: p.group, weights: p.weights, reason: p.reason }, actor);
        } catch (error) {
          this.host.logger.warn({ err: error, group: p.group }, "measured weights refused (tried again after the cooldown)");
          continue;
        }
        try {
          await this.host.submit("changes.apply", { group: p.group }, actor);
        } catch (error) {
          // Staged but not applied: withdraw what we staged, so the group is not left busy.
          this.host.logger.warn({ err: error, group: p.group }, "measured weights not applied; withdrawing them");
          const mine = Object.keys(p.weights)
            .map((id) => this.host.controlPlane.current.changes.get(id))
            .filter((c): c is PendingChange => c !== undefined && c.group === p.group && c.weightsSource === "measured" && c.stagedBy === actor);
          await this.withdraw(mine, actor);
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Discards measured weight changes (one command each: only those, never an operator's). */
  private async withdraw(changes: readonly PendingChange[], actor: string): Promise<void> {
    for (const c of changes) {
      try {
        await this.host.submit("changes.discard", { group: c.group, appliance: c.appliance }, actor);
      } catch (error) {
        this.host.logger.warn({ err: error, group: c.group, appliance: c.appliance }, "could not withdraw a measured weight");
      }
    }
  }
}
