// Member health from heartbeats, and route-flap damping of members that keep failing.
//
// Members heartbeat every heartbeatIntervalMs (default 100 ms). A watched member (JOINING, UP,
// DRAINING) that has been silent for downAfterMs or more (default 300 ms: three intervals) is
// DOWN; the control plane then fails it over (commands.ts, through the queue). downAfterMs is
// a hook: `downAfterMsOf(appliance, smoothedRttMs, rttVarianceMs)` may derive it per member from
// the round-trip times the heartbeats carry, kept as an RFC 6298 estimate per member
// (failure-detection.ts; the runtime installs its formula, the default is the constant).
//
// Flap damping works like BGP route-flap damping (RFC 2439): each time a member goes DOWN its
// penalty grows by penaltyPerFlap; the penalty decays exponentially with halfLifeMs. When a
// DOWN pushes the penalty above suppressAbove, the member is SUPPRESSED: even if it heartbeats
// again it is held DOWN (not rejoined) until the decayed penalty falls below reuseBelow.
// Because penalties add up, each further flap holds it longer; the penalty is capped at
// reuseBelow * 2^(suppressMaxMs / halfLifeMs) so no member is held longer than suppressMaxMs
// after its last flap.
//
//   penalty
//   suppressAbove --------x---------------          x = a DOWN (+penaltyPerFlap)
//                     x  | \                        decay: p(t) = p0 * 2^(-(t - t0) / halfLifeMs)
//                  x  |  |   \  suppressed
//   reuseBelow ----|--|--|-----\---------- released here
//                  |  |  |       \___
//
// Everything here is soft state: clocks are monotonic milliseconds passed in by the caller,
// nothing is persisted (after a restart every member starts with a grace period and no
// penalty). Invariants: penalties are >= 0 and <= the ceiling; a suppressed member's flag is
// cleared only by release(); lastHeartbeatMs never goes back.

import { assert } from "../stdx/assert.js";
import { nextRttEstimate, type Detection, type RttEstimate } from "./failure-detection.js";
import { invalid } from "./model.js";

export interface DampingOptions {
  penaltyPerFlap: number;
  halfLifeMs: number;
  suppressAbove: number;
  reuseBelow: number;
  suppressMaxMs: number;
}

export interface HealthOptions {
  heartbeatIntervalMs: number;
  /** Silence after which a member is DOWN; the floor when downAfterMsOf derives it from measured RTT. */
  downAfterMs: number;
  /** Hook: the silence after which this member is DOWN, from its smoothed RTT and RTT variation (null: none measured yet). */
  downAfterMsOf: ((appliance: string, smoothedRttMs: number | null, rttVarianceMs: number | null) => number) | null;
  damping: DampingOptions;
}

export type HealthInput = Partial<Omit<HealthOptions, "damping">> & { damping?: Partial<DampingOptions> };

export const HEALTH_DEFAULTS: Readonly<HealthOptions> = {
  heartbeatIntervalMs: 100,
  downAfterMs: 300,
  downAfterMsOf: null,
  damping: {
    penaltyPerFlap: 1000,
    halfLifeMs: 30_000,
    suppressAbove: 2000,
    reuseBelow: 750,
    suppressMaxMs: 300_000,
  },
};

/** Options with defaults applied; inconsistent values are INVALID_ARGUMENT. */
export function resolveHealthOptions(input: HealthInput = {}): HealthOptions {
  const d = { ...HEALTH_DEFAULTS.damping, ...(input.damping ?? {}) };
  const options: HealthOptions = {
    heartbeatIntervalMs: input.heartbeatIntervalMs ?? HEALTH_DEFAULTS.heartbeatIntervalMs,
    downAfterMs: input.downAfterMs ?? HEALTH_DEFAULTS.downAfterMs,
    downAfterMsOf: input.downAfterMsOf ?? null,
    damping: d,
  };
  const positive = (value: number, field: string): void => {
    if (!(Number.isFinite(value) && value > 0)) throw invalid(field, `must be a positive number, got ${value}`);
  };
  positive(options.heartbeatIntervalMs, "health.heartbeatIntervalMs");
  positive(options.downAfterMs, "health.downAfterMs");
  positive(d.penaltyPerFlap, "health.damping.penaltyPerFlap");
  positive(d.halfLifeMs, "health.damping.halfLifeMs");
  positive(d.suppressAbove, "health.damping.suppressAbove");
  positive(d.reuseBelow, "health.damping.reuseBelow");
  positive(d.suppressMaxMs, "health.damping.suppressMaxMs");
  if (options.downAfterMs <= options.heartbeatIntervalMs) {
    throw invalid("health.downAfterMs", `${options.downAfterMs} must exceed the heartbeat interval ${options.heartbeatIntervalMs}, or every member flaps`);
  }
  if (d.reuseBelow >= d.suppressAbove) throw invalid("health.damping.reuseBelow", `${d.reuseBelow} must be below suppressAbove ${d.suppressAbove}`);
  return options;
}

interface DampingEntry {
  penalty: number;
  /** Time the penalty was last updated (decay runs from here). */
  updatedMs: number;
  suppressed: boolean;
  flaps: number;
}

/** Route-flap damping state per appliance. */
export class FlapDamper {
  private readonly entries = new Map<string, DampingEntry>();
  /** Penalty ceiling: with it, suppression never outlasts suppressMaxMs after the last flap. */
  readonly ceiling: number;

  constructor(readonly options: DampingOptions) {
    this.ceiling = options.reuseBelow * Math.pow(2, options.suppressMaxMs / options.halfLifeMs);
    assert(this.ceiling > options.suppressAbove, "the ceiling must allow suppression");
  }

  private decayed(entry: DampingEntry, nowMs: number): number {
    const elapsed = Math.max(0, nowMs - entry.updatedMs);
    return entry.penalty * Math.pow(2, -elapsed / this.options.halfLifeMs);
  }

  penaltyOf(appliance: string, nowMs: number): number {
    const entry = this.entries.get(appliance);
    return entry === undefined ? 0 : this.decayed(entry, nowMs);
  }

  isSuppressed(appliance: string): boolean {
    return this.entries.get(appliance)?.suppressed ?? false;
  }

  flapsOf(appliance: string): number {
    return this.entries.get(appliance)?.flaps ?? 0;
  }

  /** What recordFlap would give now, without changing anything. */
  preview(appliance: string, nowMs: number): { penalty: number; suppressed: boolean } {
    const penalty = Math.min(this.ceiling, this.penaltyOf(appliance, nowMs) + this.options.penaltyPerFlap);
    return { penalty, suppressed: this.isSuppressed(appliance) || penalty > this.options.suppressAbove };
  }

  /** A DOWN: adds the penalty; suppresses above the threshold. */
  recordFlap(appliance: string, nowMs: number): { penalty: number; suppressed: boolean; newlySuppressed: boolean } {
    const { penalty, suppressed } = this.preview(appliance, nowMs);
    const entry = this.entries.get(appliance);
    const was = entry?.suppressed ?? false;
    this.entries.set(appliance, { penalty, updatedMs: nowMs, suppressed, flaps: (entry?.flaps ?? 0) + 1 });
    return { penalty, suppressed, newlySuppressed: suppressed && !was };
  }

  /** True when the member is suppressed and its penalty has decayed below reuseBelow. */
  releaseDue(appliance: string, nowMs: number): boolean {
    const entry = this.entries.get(appliance);
    return entry !== undefined && entry.suppressed && this.decayed(entry, nowMs) < this.options.reuseBelow;
  }

  release(appliance: string, nowMs: number): void {
    const entry = this.entries.get(appliance);
    if (entry === undefined) return;
    this.entries.set(appliance, { penalty: this.decayed(entry, nowMs), updatedMs: nowMs, suppressed: false, flaps: entry.flaps });
  }

  /** When a suppressed member's penalty will fall below reuseBelow (null when not suppressed). */
  releaseAtMs(appliance: string): number | null {
    const entry = this.entries.get(appliance);
    if (entry === undefined || !entry.suppressed) return null;
    if (entry.penalty < this.options.reuseBelow) return entry.updatedMs;
    // p * 2^(-t/h) < r  <=>  t > h * log2(p / r); one millisecond past it to be strictly below.
    return entry.updatedMs + Math.floor(this.options.halfLifeMs * Math.log2(entry.penalty / this.options.reuseBelow)) + 1;
  }

  forget(appliance: string): void {
    this.entries.delete(appliance);
  }
}

interface HeartbeatEntry {
  /** Last heartbeat, or the start of the grace period when none came yet. */
  lastMs: number;
  heard: boolean;
  /** When the member was declared DOWN (only heartbeats after it count as a recovery). */
  downAtMs: number | null;
  rtt: RttEstimate | null;
}

/** Heartbeat bookkeeping for every appliance that reports, and the flap damper. */
export class HealthTracker {
  readonly options: HealthOptions;
  readonly damper: FlapDamper;
  private readonly entries = new Map<string, HeartbeatEntry>();

  constructor(options: HealthInput = {}) {
    this.options = resolveHealthOptions(options);
    this.damper = new FlapDamper(this.options.damping);
  }

  /** A heartbeat arrived. rttMs (optional) feeds the RTT estimate (RFC 6298: srtt gain 1/8, rttvar gain 1/4). */
  heartbeat(appliance: string, nowMs: number, rttMs: number | null = null): void {
    const entry = this.entries.get(appliance);
    let rtt = entry?.rtt ?? null;
    if (rttMs !== null && Number.isFinite(rttMs) && rttMs >= 0) rtt = nextRttEstimate(rtt, rttMs);
    this.entries.set(appliance, {
      lastMs: Math.max(nowMs, entry?.lastMs ?? nowMs),
      heard: true,
      downAtMs: entry?.downAtMs ?? null,
      rtt,
    });
  }

  /** Starts the silence clock at nowMs if the member has not been heard since (grace period). */
  watch(appliance: string, nowMs: number): void {
    const entry = this.entries.get(appliance);
    if (entry === undefined) this.entries.set(appliance, { lastMs: nowMs, heard: false, downAtMs: null, rtt: null });
  }

  /**
   * The member was declared DOWN at nowMs; counts as a flap for damping unless `flap` is false
   * (a member found DOWN in a restored model: only heartbeats after nowMs count as recovery).
   */
  markDown(appliance: string, nowMs: number, flap = true): { penalty: number; suppressed: boolean; newlySuppressed: boolean } {
    const entry = this.entries.get(appliance);
    this.entries.set(appliance, {
      lastMs: entry?.lastMs ?? nowMs,
      heard: entry?.heard ?? false,
      downAtMs: nowMs,
      rtt: entry?.rtt ?? null,
    });
    if (!flap) return { penalty: this.damper.penaltyOf(appliance, nowMs), suppressed: this.damper.isSuppressed(appliance), newlySuppressed: false };
    return this.damper.recordFlap(appliance, nowMs);
  }

  /** The member is back in service (or out of the group): recovery no longer pending. */
  clearDown(appliance: string): void {
    const entry = this.entries.get(appliance);
    if (entry !== undefined && entry.downAtMs !== null) this.entries.set(appliance, { ...entry, downAtMs: null });
  }

  forget(appliance: string): void {
    this.entries.delete(appliance);
    this.damper.forget(appliance);
  }

  isTracked(appliance: string): boolean {
    return this.entries.has(appliance);
  }

  lastHeartbeatMs(appliance: string): number | null {
    const entry = this.entries.get(appliance);
    return entry === undefined || !entry.heard ? null : entry.lastMs;
  }

  smoothedRttMs(appliance: string): number | null {
    return this.entries.get(appliance)?.rtt?.srttMs ?? null;
  }

  rttEstimateOf(appliance: string): RttEstimate | null {
    return this.entries.get(appliance)?.rtt ?? null;
  }

  downAfterMsOf(appliance: string): number {
    const hook = this.options.downAfterMsOf;
    if (hook === null) return this.options.downAfterMs;
    const rtt = this.rttEstimateOf(appliance);
    const value = hook(appliance, rtt?.srttMs ?? null, rtt?.rttvarMs ?? null);
    assert(Number.isFinite(value) && value > 0, "downAfterMsOf must return a positive number");
    return value;
  }

  /** The member's RTT estimate and the silence it is allowed now (rounded to 0.1 ms for people). */
  detectionOf(appliance: string): Detection {
    const rtt = this.rttEstimateOf(appliance);
    const tenth = (ms: number): number => Math.round(ms * 10) / 10;
    return {
      srttMs: rtt === null ? null : tenth(rtt.srttMs),
      rttvarMs: rtt === null ? null : tenth(rtt.rttvarMs),
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      downAfterMs: this.downAfterMsOf(appliance),
    };
  }

  /** Milliseconds since the last heartbeat (or the grace start); null when not tracked. */
  silentMs(appliance: string, nowMs: number): number | null {
    const entry = this.entries.get(appliance);
    return entry === undefined ? null : Math.max(0, nowMs - entry.lastMs);
  }

  /** Silent for downAfterMs or more. Untracked members are watched from now (grace), so not silent. */
  isSilent(appliance: string, nowMs: number): boolean {
    const silent = this.silentMs(appliance, nowMs);
    return silent !== null && silent >= this.downAfterMsOf(appliance);
  }

  /** Heard from since it was declared DOWN, recently enough to count as alive. */
  isRecovered(appliance: string, nowMs: number): boolean {
    const entry = this.entries.get(appliance);
    if (entry === undefined || !entry.heard) return false;
    if (entry.downAtMs !== null && entry.lastMs <= entry.downAtMs) return false;
    return nowMs - entry.lastMs < this.downAfterMsOf(appliance);
  }

  /** Alive: heard within downAfterMs. */
  isAlive(appliance: string, nowMs: number): boolean {
    const entry = this.entries.get(appliance);
    return entry !== undefined && entry.heard && nowMs - entry.lastMs < this.downAfterMsOf(appliance);
  }

  /** Earliest time a watched member could turn silent, for the runtime's timer (null: nothing watched). */
  nextSilenceMs(appliances: Iterable<string>): number | null {
    let next: number | null = null;
    for (const a of appliances) {
      const entry = this.entries.get(a);
      if (entry === undefined) continue;
      const at = entry.lastMs + this.downAfterMsOf(a);
      if (next === null || at < next) next = at;
    }
    return next;
  }
}
