// The orchestrator's watch on its distributor: each load sample the distributor thread reports
// (utilization, frames/s; distributor.ts onLoad) goes to the pure BottleneckDetector together
// with the mean CPU of the members it serves; a change of state becomes an event
// ("distributor.bottleneck" / "distributor.ok") that the daemon records, and the current view
// feeds status(), the metrics and the UI.
//
// Invariants kept: the detector sees samples in the distributor's own timebase (monotonic, the
// orchestrator's performance.now()); wall-clock times (`since`) are taken from the daemon's
// clock when a change happens, never read here; a standby judges nothing (the daemon only
// calls observe() while active, and reset() when it stops being active).

import { BottleneckDetector, type BottleneckChange, type BottleneckRules } from "../orchestrator/bottleneck.js";
import type { DistributorLoad } from "./distributor.js";

/** status().distributor's load part (GET /api/status, the UI's snapshot). */
export interface DistributorLoadView {
  /** Busy time / wall time of the distributor's thread over the last sample, 0..1 (null: no sample yet). */
  utilization: number | null;
  /** Datagrams it handled per second over the last sample (null: no sample yet). */
  framesPerSec: number | null;
  /** True while the distributor, not the members, limits throughput (see docs/operations.md). */
  limited: boolean;
  /** When the current limited period began (ISO time), null when not limited. */
  since: string | null;
}

/** A member as the watch needs it: alive, serving, and its reported CPU. */
export interface ServingMember {
  alive: boolean;
  inTable: boolean;
  state: string;
  cpuPct: number | null;
}

/** Mean CPU of the alive, serving members (in the table, UP / JOINING / DRAINING) that report one; null when none do. */
export function meanServingCpuPct(members: readonly ServingMember[]): number | null {
  let sum = 0;
  let count = 0;
  for (const m of members) {
    if (!m.alive || !m.inTable || m.cpuPct === null) continue;
    if (m.state !== "UP" && m.state !== "JOINING" && m.state !== "DRAINING") continue;
    sum += m.cpuPct;
    count++;
  }
  return count === 0 ? null : sum / count;
}

export class DistributorWatch {
  private detector: BottleneckDetector;
  private latest: DistributorLoad | null = null;
  private sinceIso: string | null = null;

  constructor(private readonly rules: Partial<BottleneckRules> = {}) {
    this.detector = new BottleneckDetector(rules);
  }

  /** One load sample; returns the change to record as an event, if any. */
  observe(load: DistributorLoad, memberCpuPct: number | null, nowIso: string): BottleneckChange | null {
    this.latest = load;
    const change = this.detector.observe({
      atMs: load.atMs,
      intervalMs: load.intervalMs,
      utilization: load.utilization,
      framesPerSec: load.framesPerSec,
      memberCpuPct,
    });
    if (change !== null) this.sinceIso = change.limited ? nowIso : null;
    return change;
  }

  /** Keeps the latest figures without judging them (a standby's samples). */
  note(load: DistributorLoad): void {
    this.latest = load;
  }

  /** Forgets the judgement (leadership lost: the next active period starts afresh). */
  reset(): void {
    this.detector = new BottleneckDetector(this.rules);
    this.sinceIso = null;
  }

  view(): DistributorLoadView {
    return {
      utilization: this.latest?.utilization ?? null,
      framesPerSec: this.latest?.framesPerSec ?? null,
      limited: this.detector.limited,
      since: this.sinceIso,
    };
  }
}
