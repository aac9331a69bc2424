// Is the distributor, rather than the members, what limits the cluster's throughput? A small
// pure state machine over the distributor's utilization samples (busy time / wall time of its
// thread, reported about once a second) and the members' mean CPU. Pure and synchronous: the
// caller passes each sample with its time; nothing here reads a clock.
//
//   ok ──(util > enterUtilization AND members' mean CPU < memberCpuHeadroomPct, held holdMs)──> limited
//   limited ──(util < exitUtilization, held holdMs)──> ok
//
// A sample describes the interval (atMs - intervalMs, atMs]; a condition "held holdMs" means
// consecutive samples satisfying it cover at least holdMs. A hole between samples longer than
// sampleGapMaxMs (the distributor went silent) restarts the run: nothing is concluded from time
// nobody measured. Unknown member CPU (no member reported any) never counts as headroom: the
// warning claims members are idle, so it needs evidence.
//
// Invariants kept: one transition per observe() at most, and only after its condition held
// holdMs; enterUtilization > exitUtilization (hysteresis: between them nothing changes);
// constant memory (running sums of the current run, not a sample list).

import { assert } from "../stdx/assert.js";

export interface BottleneckRules {
  /** Utilization above which the distributor counts as saturated (0..1). */
  enterUtilization: number;
  /** Utilization below which a saturated distributor counts as recovered (< enterUtilization). */
  exitUtilization: number;
  /** How long a condition must hold before the state changes. */
  holdMs: number;
  /** Members' mean CPU below this means they have headroom (percent). */
  memberCpuHeadroomPct: number;
  /** A hole between samples longer than this restarts the run. */
  sampleGapMaxMs: number;
}

export const BOTTLENECK_DEFAULTS: Readonly<BottleneckRules> = Object.freeze({
  enterUtilization: 0.85,
  exitUtilization: 0.7,
  holdMs: 10_000,
  memberCpuHeadroomPct: 60,
  sampleGapMaxMs: 3_000,
});

export const BOTTLENECK_EVENT = "distributor.bottleneck";
export const BOTTLENECK_CLEARED_EVENT = "distributor.ok";

export interface BottleneckSample {
  /** End of the measured interval (the caller's monotonic clock). */
  atMs: number;
  /** Length of the measured interval. */
  intervalMs: number;
  /** The distributor thread's busy time / wall time over the interval, 0..1. */
  utilization: number;
  /** Datagrams the distributor handled per second over the interval. */
  framesPerSec: number;
  /** Mean CPU of the members of the groups the distributor serves; null when none reported. */
  memberCpuPct: number | null;
}

export interface BottleneckChange {
  kind: typeof BOTTLENECK_EVENT | typeof BOTTLENECK_CLEARED_EVENT;
  limited: boolean;
  /** Means over the run that decided the change. */
  utilization: number;
  framesPerSec: number;
  memberCpuPct: number | null;
  heldMs: number;
  message: string;
}

export interface BottleneckView {
  /** The last sample's figures (null before the first sample). */
  utilization: number | null;
  framesPerSec: number | null;
  limited: boolean;
  /** When the current limited period began (caller's clock), null when not limited. */
  sinceMs: number | null;
}

export function checkBottleneckRules(r: BottleneckRules): void {
  assert(r.enterUtilization > 0 && r.enterUtilization <= 1, "enterUtilization in (0, 1]");
  assert(r.exitUtilization >= 0 && r.exitUtilization < r.enterUtilization, "exitUtilization below enterUtilization (hysteresis)");
  assert(Number.isFinite(r.holdMs) && r.holdMs > 0, "holdMs positive");
  assert(r.memberCpuHeadroomPct > 0 && r.memberCpuHeadroomPct <= 100, "memberCpuHeadroomPct in (0, 100]");
  assert(Number.isFinite(r.sampleGapMaxMs) && r.sampleGapMaxMs >= 0, "sampleGapMaxMs non-negative");
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

export class BottleneckDetector {
  readonly rules: Readonly<BottleneckRules>;
  private limitedValue = false;
  private sinceValue: number | null = null;
  private last: BottleneckSample | null = null;
  /** The current run of samples satisfying the pending transition's condition. */
  private runStartMs: number | null = null;
  private runUtilMs = 0;
  private runFrames = 0;
  private runMs = 0;
  private runCpuSum = 0;
  private runCpuCount = 0;

  constructor(rules: Partial<BottleneckRules> = {}) {
    this.rules = Object.freeze({ ...BOTTLENECK_DEFAULTS, ...rules });
    checkBottleneckRules(this.rules);
  }

  get limited(): boolean {
    return this.limitedValue;
  }

  view(): BottleneckView {
    return {
      utilization: this.last?.utilization ?? null,
      framesPerSec: this.last?.framesPerSec ?? null,
      limited: this.limitedValue,
      sinceMs: this.sinceValue,
    };
  }

  /** Feeds one sample; returns the change it caused, if any. Samples come in time order. */
  observe(s: BottleneckSample): BottleneckChange | null {
    assert(Number.isFinite(s.atMs) && Number.isFinite(s.intervalMs) && s.intervalMs > 0, "sample time and interval");
    assert(s.utilization >= 0 && s.utilization <= 1, "utilization in [0, 1]");
    assert(s.framesPerSec >= 0, "framesPerSec non-negative");
    const r = this.rules;
    const startMs = s.atMs - s.intervalMs;
    if (this.last !== null) {
      assert(s.atMs >= this.last.atMs, "samples in time order");
      if (startMs - this.last.atMs > r.sampleGapMaxMs) this.resetRun();
    }
    this.last = s;

    const condition = this.limitedValue
      ? s.utilization < r.exitUtilization
      : s.utilization > r.enterUtilization && s.memberCpuPct !== null && s.memberCpuPct < r.memberCpuHeadroomPct;
    if (!condition) {
      this.resetRun();
      return null;
    }
    if (this.runStartMs === null) this.runStartMs = startMs;
    this.runUtilMs += s.utilization * s.intervalMs;
    this.runFrames += s.framesPerSec * (s.intervalMs / 1000);
    this.runMs += s.intervalMs;
    if (s.memberCpuPct !== null) {
      this.runCpuSum += s.memberCpuPct;
      this.runCpuCount++;
    }
    const heldMs = s.atMs - this.runStartMs;
    if (heldMs < r.holdMs) return null;

    const utilization = this.runUtilMs / this.runMs;
    const framesPerSec = this.runFrames / (this.runMs / 1000);
    const memberCpuPct = this.runCpuCount === 0 ? null : this.runCpuSum / this.runCpuCount;
    const fps = Math.round(framesPerSec).toLocaleString("en-US");
    const cpu = memberCpuPct === null ? "not reported" : `${Math.round(memberCpuPct)}%`;
    this.resetRun();
    this.limitedValue = !this.limitedValue;
    if (this.limitedValue) {
      this.sinceValue = s.atMs;
      return {
        kind: BOTTLENECK_EVENT,
        limited: true,
        utilization,
        framesPerSec,
        memberCpuPct,
        heldMs,
        message:
          `distributor-limited: its utilization was ${pct(utilization)} (> ${pct(r.enterUtilization)}) for ${seconds(heldMs)} at ${fps} frames/s ` +
          `while the members' mean CPU was ${cpu} (< ${r.memberCpuHeadroomPct}%): the distributor, not the members, limits throughput (see tandem sizing)`,
      };
    }
    this.sinceValue = null;
    return {
      kind: BOTTLENECK_CLEARED_EVENT,
      limited: false,
      utilization,
      framesPerSec,
      memberCpuPct,
      heldMs,
      message: `distributor no longer limiting: its utilization was ${pct(utilization)} (< ${pct(r.exitUtilization)}) for ${seconds(heldMs)} at ${fps} frames/s (members' mean CPU ${cpu})`,
    };
  }

  private resetRun(): void {
    this.runStartMs = null;
    this.runUtilMs = 0;
    this.runFrames = 0;
    this.runMs = 0;
    this.runCpuSum = 0;
    this.runCpuCount = 0;
  }
}
