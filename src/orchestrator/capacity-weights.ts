// Weights from measured capacity, for groups that mix appliance models (allowMixedModels).
// Pure and synchronous: the caller passes the clock (nowMs), the model and the heartbeats; the
// answer is at most one proposal per group, which the runtime stages with the system command
// "weights.measured" and applies with changes.apply (make-before-break), audited with the
// actor "capacity: <reason>".
//
//   estimator.observe(model, appliance, nowMs, cpuPct, packetsPerSec)   every heartbeat
//   estimator.estimateOf(appliance) -> { perCorePps, samples }           member view
//   weigher.evaluate(nowMs, capacityGroupInputs(model, estimator))     every few seconds
//
// THE SIGNAL. A member reports cpuPct = its process's CPU time over wall time (100 = one core
// busy the whole time; member-daemon.ts heartbeatInput) and packetsPerSec = frames received
// per second. packetsPerSec / (cpuPct / 100) is what the member forwards per CPU-second, i.e.
// per core: it does not depend on how much traffic the member gets (its share of the buckets),
// only on what a packet costs on that machine and software. Its capacity is that rate times
// its cores. (cpuPct is already per core, so it is not divided by cores a second time.)
// - Only samples with load enough to mean something count: cpuPct >= CAPACITY_CPU_PCT_MIN and
//   packetsPerSec >= CAPACITY_PPS_MIN (an idle member's CPU is timers, heartbeats and garbage
//   collection, and its ratio says nothing about forwarding), from an UP member of a group with
//   no transition (fills cost CPU that is not forwarding).
// - Smoothing: the means of packetsPerSec and of cpuPct are kept separately (their ratio is
//   packets per CPU-second over the period, where a mean of ratios would overweight samples with
//   little CPU), as running means for the first samples and then as exponentially weighted
//   means with time constant CAPACITY_SMOOTHING_MS (weight of a sample 1 - exp(-dt / tau), dt
//   the time since the member's previous counted sample).
// - An estimate counts after CAPACITY_SAMPLES_MIN counted samples. It belongs to the
//   appliance's model and software version: a change of either starts it again.
// - Per model, the rate is the mean per-core rate of its measured members.
//
// THE PROPOSAL, per group (proposeWeights):
//   weight(member) = clamp(round(cores x rate(model) / rate(slowest model) x CAPACITY_WEIGHT_SCALE), 1, weightMax)
// with the ratio clamped to 1..CAPACITY_RATIO_MAX. Only for a group with allowMixedModels whose
// members are of two models or more, each measured. Once a group's weights are "measured", a
// member of a model not measured yet is weighed as the slowest model (it then gets traffic,
// is measured, and is weighed again), so joiners and a group left with one model stay on the
// measured scale.
// - Hands off: weights set by an operator (weightsSource "operator": operator overrides win,
//   until `tandem sg weight GROUP --auto`); a busy group (a transition, pending changes, a
//   rolling upgrade).
// - HYSTERESIS: a proposal only when some member's share of the group's total weight would move
//   by more than CAPACITY_HYSTERESIS of its current share. Shares, not raw weights, because
//   weighted rendezvous hashing depends only on the ratios of weights: cores 4 and 8 route
//   exactly like 40 and 80.
// - COOLDOWN: two proposals of one group are at least cooldownMs apart (CAPACITY_COOLDOWN_MS),
//   unless its members changed since the last one (a joiner weighs its cores, off the measured
//   scale, until it is weighed).
//
// Invariants kept: a proposal's weights are integers in 1..ORCHESTRATOR_LIMITS.weightMax and
// name only members whose weight changes; at most one proposal per group per evaluate(); never
// a proposal for an operator's weights or a busy group; estimator state is bounded
// (CAPACITY_APPLIANCES_MAX entries, O(1) each).

import { assert } from "../stdx/assert.js";
import { changesOfGroup, compareIds, membersOfGroup, ORCHESTRATOR_LIMITS, weightOf, type ControlModel, type PendingChange, type WeightsSource } from "./model.js";

/** Below this CPU a sample says nothing about forwarding cost (fixed overheads dominate). */
export const CAPACITY_CPU_PCT_MIN = 10;
/** Below this rate, likewise. */
export const CAPACITY_PPS_MIN = 1_000;
/** Counted samples before an estimate counts (with heartbeats every 0.1-1 s: seconds). */
export const CAPACITY_SAMPLES_MIN = 20;
/** Time constant of the smoothing: a minute of load moves the estimate by 63%. */
export const CAPACITY_SMOOTHING_MS = 60_000;
/** Two proposals of one group are at least this far apart (same members). */
export const CAPACITY_COOLDOWN_MS = 600_000;
/** A proposal needs some member's share to move by more than this fraction. */
export const CAPACITY_HYSTERESIS = 0.25;
/** Weight per core of the slowest model: a tenth of a core's worth of resolution. */
export const CAPACITY_WEIGHT_SCALE = 10;
/** A faster model is believed up to this many times the slowest (one bad reading cannot starve a member). */
export const CAPACITY_RATIO_MAX = 16;
/** Bound on the appliances the estimator tracks. */
export const CAPACITY_APPLIANCES_MAX = ORCHESTRATOR_LIMITS.appliancesMax;

/** A member's estimate as the member view shows it. perCorePps null: not measured yet. */
export interface CapacityEstimate {
  /** Packets forwarded per CPU-second (per core), smoothed; null before CAPACITY_SAMPLES_MIN samples. */
  perCorePps: number | null;
  /** Counted samples (those above the thresholds) since the estimate (re)started. */
  samples: number;
}

interface EstimateState {
  /** Model and version the samples were measured on. */
  key: string;
  samples: number;
  lastMs: number;
  ppsMean: number;
  cpuPctMean: number;
}

/** Smoothed per-core forwarding rate per appliance, from heartbeat samples. */
export class CapacityEstimator {
  private readonly states = new Map<string, EstimateState>();

  /**
   * A heartbeat's load figures. Counted (true) when the appliance is an UP member of a group
   * with no transition and the figures are above both thresholds; ignored otherwise.
   */
  observe(model: ControlModel, appliance: string, nowMs: number, cpuPct: number | null, packetsPerSec: number | null): boolean {
    assert(Number.isFinite(nowMs), "nowMs");
    if (cpuPct === null || packetsPerSec === null) return false;
    if (!(cpuPct >= CAPACITY_CPU_PCT_MIN) || !(packetsPerSec >= CAPACITY_PPS_MIN) || !Number.isFinite(cpuPct) || !Number.isFinite(packetsPerSec)) return false;
    const member = model.members.get(appliance);
    const a = model.appliances.get(appliance);
    if (member === undefined || a === undefined || member.state !== "UP") return false;
    const group = model.groups.get(member.group);
    if (group === undefined || group.transition !== null) return false;
    const key = `${a.model}\u0000${a.version}`;
    let s = this.states.get(appliance);
    if (s === undefined || s.key !== key) {
      if (s === undefined && this.states.size >= CAPACITY_APPLIANCES_MAX) this.evictOldest();
      s = { key, samples: 0, lastMs: nowMs, ppsMean: 0, cpuPctMean: 0 };
      this.states.set(appliance, s);
    }
    const dtMs = Math.min(CAPACITY_SMOOTHING_MS, Math.max(0, nowMs - s.lastMs));
    s.samples++;
    // Running mean for the first samples (1/n), then time-weighted (whichever weighs more).
    const alpha = Math.max(1 / s.samples, 1 - Math.exp(-dtMs / CAPACITY_SMOOTHING_MS));
    s.ppsMean += alpha * (packetsPerSec - s.ppsMean);
    s.cpuPctMean += alpha * (cpuPct - s.cpuPctMean);
    s.lastMs = Math.max(s.lastMs, nowMs);
    return true;
  }

  estimateOf(appliance: string): CapacityEstimate {
    const s = this.states.get(appliance);
    if (s === undefined) return { perCorePps: null, samples: 0 };
    const perCorePps = s.samples >= CAPACITY_SAMPLES_MIN ? Math.round(s.ppsMean / (s.cpuPctMean / 100)) : null;
    return { perCorePps, samples: s.samples };
  }

  forget(appliance: string): void {
    this.states.delete(appliance);
  }

  get size(): number {
    return this.states.size;
  }

  private evictOldest(): void {
    let oldest: string | null = null;
    let oldestMs = Infinity;
    for (const [id, s] of this.states) {
      if (s.lastMs < oldestMs) {
        oldest = id;
        oldestMs = s.lastMs;
      }
    }
    if (oldest !== null) this.states.delete(oldest);
  }
}

// ---------------------------------------------------------------------------------------------
// Proposals.

/** A member as the proposal sees it. */
export interface CapacityMemberInput {
  appliance: string;
  model: string;
  cores: number;
  /** Its current effective weight (the group's override, else its cores). */
  weight: number;
  estimate: CapacityEstimate;
}

/** What proposeWeights needs to know of a group. */
export interface CapacityGroupInput {
  name: string;
  allowMixedModels: boolean;
  weightsSource: WeightsSource;
  /** A transition runs, changes are pending, a rolling upgrade is on, or a member joins or drains. */
  busy: boolean;
  /** Members whose weight the proposal manages (all but JOINING / DRAINING ones), by appliance id. */
  members: CapacityMemberInput[];
}

export interface WeightsProposal {
  group: string;
  /** New weights of the members whose weight changes. */
  weights: Record<string, number>;
  reason: string;
}

/** One per group given to evaluate(). */
export interface CapacityDecision {
  group: string;
  proposal: WeightsProposal | null;
  /** The proposal's reason, or why there is none. */
  why: string;
}

/** Per model: the mean per-core rate of its measured members (models without one are absent). */
export function modelRatesOf(members: readonly CapacityMemberInput[]): Map<string, { perCorePps: number; measured: number }> {
  const sums = new Map<string, { sum: number; measured: number }>();
  for (const m of members) {
    if (m.estimate.perCorePps === null) continue;
    const s = sums.get(m.model) ?? { sum: 0, measured: 0 };
    s.sum += m.estimate.perCorePps;
    s.measured++;
    sums.set(m.model, s);
  }
  const out = new Map<string, { perCorePps: number; measured: number }>();
  for (const [model, s] of [...sums].sort((x, y) => compareIds(x[0], y[0]))) out.set(model, { perCorePps: s.sum / s.measured, measured: s.measured });
  return out;
}

/** The weights capacity asks for, and why; or why none (no cooldown here: see CapacityWeigher). */
export function proposeWeights(g: CapacityGroupInput): { proposal: WeightsProposal | null; why: string } {
  const none = (why: string): { proposal: null; why: string } => ({ proposal: null, why });
  if (g.weightsSource === "operator") return none(`the operator set the weights (tandem sg weight ${g.name} --auto returns them to automatic)`);
  if (g.busy) return none("a transition, pending changes or an upgrade: waiting for them to finish");
  if (g.members.length === 0) return none("no members");
  const models = [...new Set(g.members.map((m) => m.model))].sort(compareIds);
  const rates = modelRatesOf(g.members);
  const measured = g.weightsSource === "measured";
  if (!measured) {
    if (!g.allowMixedModels) return none("one model per group (allowMixedModels is off): weights are cores");
    if (models.length < 2) return none(`one model (${models[0]!}): weights are cores`);
    const unmeasured = models.filter((m) => !rates.has(m));
    if (unmeasured.length > 0) {
      return none(`measuring: no member of model ${unmeasured.join(", ")} has ${CAPACITY_SAMPLES_MIN} samples with CPU >= ${CAPACITY_CPU_PCT_MIN}% and >= ${CAPACITY_PPS_MIN} packets/s`);
    }
  }
  const present = models.filter((m) => rates.has(m));
  const slowest = present.length === 0 ? null : present.reduce((a, b) => (rates.get(b)!.perCorePps < rates.get(a)!.perCorePps ? b : a));
  const ratioOf = (model: string): number => {
    const r = rates.get(model);
    if (r === undefined || slowest === null) return 1; // not measured yet: weighed as the slowest
    return Math.min(CAPACITY_RATIO_MAX, Math.max(1, r.perCorePps / rates.get(slowest)!.perCorePps));
  };
  const target = new Map<string, number>();
  for (const m of g.members) {
    const w = Math.round(m.cores * ratioOf(m.model) * CAPACITY_WEIGHT_SCALE);
    target.set(m.appliance, Math.min(ORCHESTRATOR_LIMITS.weightMax, Math.max(1, w)));
  }
  // Hysteresis on shares: rendezvous hashing depends only on the ratios of the weights.
  const currentTotal = g.members.reduce((s, m) => s + m.weight, 0);
  const targetTotal = [...target.values()].reduce((s, w) => s + w, 0);
  let moved = 0;
  let movedMember = g.members[0]!.appliance;
  for (const m of g.members) {
    const before = m.weight / currentTotal;
    const after = target.get(m.appliance)! / targetTotal;
    const move = Math.abs(after - before) / before;
    if (move > moved) {
      moved = move;
      movedMember = m.appliance;
    }
  }
  const comparison = describeRates(models, rates, slowest);
  if (moved <= CAPACITY_HYSTERESIS) {
    return none(`weights follow measured capacity within ${pct(CAPACITY_HYSTERESIS)}% (largest move ${pct(moved)}%, ${movedMember})${comparison === "" ? "" : `; ${comparison}`}`);
  }
  const weights: Record<string, number> = {};
  for (const m of [...g.members].sort((x, y) => compareIds(x.appliance, y.appliance))) {
    const w = target.get(m.appliance)!;
    if (w !== m.weight) weights[m.appliance] = w;
  }
  const share = `${movedMember}'s share moves ${pct(moved)}%`;
  return { proposal: { group: g.name, weights, reason: comparison === "" ? share : `${comparison}; ${share}` }, why: "" };
}

/** "model tg-8 forwards 1.9x tg-4 per core (412k vs 217k packets/s per core)", one clause per faster model. */
function describeRates(models: readonly string[], rates: ReadonlyMap<string, { perCorePps: number }>, slowest: string | null): string {
  const clauses: string[] = [];
  if (slowest !== null) {
    const base = rates.get(slowest)!.perCorePps;
    for (const model of models) {
      const r = rates.get(model);
      if (model === slowest || r === undefined) continue;
      clauses.push(`model ${model} forwards ${(r.perCorePps / base).toFixed(1)}x ${slowest} per core (${rate(r.perCorePps)} vs ${rate(base)} packets/s per core)`);
    }
    if (clauses.length === 0) clauses.push(`model ${slowest} forwards ${rate(rates.get(slowest)!.perCorePps)} packets/s per core`);
  }
  const unmeasured = models.filter((m) => !rates.has(m));
  if (unmeasured.length > 0) clauses.push(`model ${unmeasured.join(", ")} not measured yet: weighed as ${slowest ?? "the others"}`);
  return clauses.join("; ");
}

/** Packets/s for people: 217k, 1.2M, 950. */
function rate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e4) return `${Math.round(x / 1e3)}k`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return String(Math.round(x));
}

function pct(fraction: number): string {
  return String(Math.round(fraction * 100));
}

// ---------------------------------------------------------------------------------------------
// The groups of a model, as the proposal sees them.

/** One input per group (by name), from the model and the estimates. */
export function capacityGroupInputs(model: ControlModel, estimator: CapacityEstimator): CapacityGroupInput[] {
  const out: CapacityGroupInput[] = [];
  for (const g of [...model.groups.values()].sort((x, y) => compareIds(x.name, y.name))) {
    const members = membersOfGroup(model, g.name);
    const moving = members.some((m) => m.state === "JOINING" || m.state === "DRAINING");
    const busy = g.transition !== null || g.upgrade !== null || moving || changesOfGroup(model, g.name).length > 0;
    out.push({
      name: g.name,
      allowMixedModels: g.allowMixedModels,
      weightsSource: g.weightsSource,
      busy,
      members: members
        .filter((m) => m.state !== "JOINING" && m.state !== "DRAINING")
        .map((m) => {
          const a = model.appliances.get(m.appliance)!;
          return { appliance: a.id, model: a.model, cores: a.cores, weight: weightOf(g, a), estimate: estimator.estimateOf(a.id) };
        }),
    });
  }
  return out;
}

/**
 * Measured weight changes left pending in an idle group (their weights transition was rolled
 * back by a fill timeout, which restores its changes as pending): the runtime withdraws them so
 * the automatic path never leaves a group busy. A group with any other pending change is left
 * to the operator.
 */
export function leftoverMeasuredChanges(model: ControlModel): PendingChange[] {
  const out: PendingChange[] = [];
  for (const g of [...model.groups.values()].sort((x, y) => compareIds(x.name, y.name))) {
    if (g.transition !== null) continue;
    const pending = changesOfGroup(model, g.name);
    if (pending.length > 0 && pending.every((c) => c.kind === "weight" && c.weightsSource === "measured")) out.push(...pending);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The cooldown.

export interface CapacityWeigherOptions {
  /** Default CAPACITY_COOLDOWN_MS. */
  cooldownMs?: number;
}

interface WeigherGroupState {
  lastProposalMs: number;
  /** Members when it was made: a change of members lifts the cooldown. */
  membersKey: string;
}

/** proposeWeights with a cooldown per group: the one stateful piece, clock passed in. */
export class CapacityWeigher {
  readonly cooldownMs: number;
  private readonly groups = new Map<string, WeigherGroupState>();
  private readonly lastDecisions = new Map<string, CapacityDecision & { atMs: number }>();

  constructor(options: CapacityWeigherOptions = {}) {
    this.cooldownMs = options.cooldownMs ?? CAPACITY_COOLDOWN_MS;
    assert(Number.isFinite(this.cooldownMs) && this.cooldownMs >= 0, "cooldownMs must be non-negative");
  }

  /**
   * At most one proposal per group. The cooldown starts when a proposal is made, whether or not
   * the caller's commands succeed (a refused one is retried after the cooldown, never in a loop).
   */
  evaluate(nowMs: number, groups: readonly CapacityGroupInput[]): CapacityDecision[] {
    assert(Number.isFinite(nowMs), "nowMs");
    const names = new Set(groups.map((g) => g.name));
    assert(names.size === groups.length, "a group given twice");
    for (const name of [...this.groups.keys()]) if (!names.has(name)) this.groups.delete(name);
    for (const name of [...this.lastDecisions.keys()]) if (!names.has(name)) this.lastDecisions.delete(name);
    return groups.map((g) => {
      const decision = this.decide(nowMs, g);
      this.lastDecisions.set(g.name, { ...decision, atMs: nowMs });
      return decision;
    });
  }

  /** The group's last decision (null before its first evaluation). */
  lastDecisionOf(group: string): (CapacityDecision & { atMs: number }) | null {
    return this.lastDecisions.get(group) ?? null;
  }

  private decide(nowMs: number, g: CapacityGroupInput): CapacityDecision {
    const { proposal, why } = proposeWeights(g);
    if (proposal === null) return { group: g.name, proposal: null, why };
    const key = g.members.map((m) => m.appliance).sort(compareIds).join("\u0000");
    const state = this.groups.get(g.name);
    if (state !== undefined && state.membersKey === key && nowMs - state.lastProposalMs < this.cooldownMs) {
      return { group: g.name, proposal: null, why: `${proposal.reason}, but cooling down: ${Math.ceil((state.lastProposalMs + this.cooldownMs - nowMs) / 1000)} s left` };
    }
    this.groups.set(g.name, { lastProposalMs: nowMs, membersKey: key });
    return { group: g.name, proposal, why: proposal.reason };
  }
}
