// The autoscaler's decision core: from per-member load samples and per-group rules, which
// group gets a spare appliance from the pool and which returns a member to it. Pure and
// synchronous: the caller passes the clock (nowMs) and the facts; the answer is at most one
// action per group per evaluation, which the caller turns into an ordinary staged change
// (sg.assign / sg.unassign + changes.apply, make-before-break) audited with the reason.
//
//   record(member, sample)  many times (each heartbeat: cpuPct, packetsPerSec, connections, syncLagMs)
//   evaluate(nowMs, groups, pool) -> one decision per group: { action: add | remove | null, why }
//   statusOf(group)          -> the last evaluation, the last action and the window it judged
//                              (what `tandem sg autoscale show`, the API and the UI display)
//
// The rule, per group (AutoscaleRules, defaults in model.ts AUTOSCALE_DEFAULTS):
// - Signals are judged over a WINDOW of windowMs (windowMsOf: cooldownMs / 10, clamped to
//   1-30 s; 30 s with the defaults). A member's figure is the mean of its samples in the window;
//   the group's is the mean over its members (each member counts once, however often it
//   reports). No decision from a partial window: the group must have kept the same members,
//   with no transition or pending change, for the whole window, and every member must have
//   reported in the window's first half.
// - ADD when mean CPU > cpuHighPct, or mean connections per member > connectionsPerMemberHigh,
//   and the group has fewer than maxMembers; also when it has fewer than minMembers (a member
//   failed or was detached) whatever the load.
// - REMOVE the least-loaded member (lowest mean CPU, then packets/s, then connections, then id)
//   when mean CPU < cpuLowPct and the group has more than minMembers; also when it has more
//   than maxMembers (the operator lowered it). A load removal is refused when the survivors
//   would cross a high mark at once (projected CPU mean * N / (N - 1) >= cpuHighPct, or projected
//   connections per member > CONNECTIONS_LOW_RATIO * connectionsPerMemberHigh), or while any
//   member's mean sync lag exceeds SYNC_LAG_REMOVE_MAX_MS (removing a member adds sync work).
// - HYSTERESIS: between cpuLowPct and cpuHighPct nothing happens (resolveAutoscale keeps
//   low < high); with the projection guard above, an add can never make a removal due.
// - COOLDOWN: after any action of a group, none for cooldownMs; and the window restarts, so
//   the next decision sees only load measured with the new membership.
// - Nothing while the group is busy (a transition, pending changes, a rolling upgrade), while
//   autoscale.enabled is false (the default: it must be switched on), or when the group has no
//   members (not deployed yet: its model and version are undecided).
// - A spare is compatible when it runs the group's version and (unless allowMixedModels) is of
//   the group's model; same-model spares are preferred, then more cores, then the lower id.
//
// PRIORITY between groups competing for spares (the last one, typically): adds are served in
// this order, each taking its spare before the next group looks at the pool:
//   1. the higher `rules.priority` (an operator's stated preference, stored with the group's
//      rules; default 0),
//   2. a group below minMembers before a group that is only loaded,
//   3. the larger overload ratio (max of mean CPU / cpuHighPct and connections / high mark),
//   4. the group name (lexicographic), so the outcome is deterministic.
// The loser gets no action and starts no cooldown: it waits for the next evaluation, where it
// sees no spare (the winner's spare is then a pending assign, not in the pool) until one
// returns. There is no retry within an evaluation and no preemption, so no flapping.
//
// Invariants kept: at most one action per group per evaluate(); no spare is given twice in one
// evaluate(); two actions of one group are at least cooldownMs apart; samples per member are
// bounded (SAMPLES_PER_MEMBER_MAX) and pruned to the window at each evaluate().

import { assert } from "../stdx/assert.js";
import { compareIds, type AutoscaleRules } from "./model.js";

/** The window never gets shorter than this (few samples make a noisy mean)... */
export const AUTOSCALE_WINDOW_MIN_MS = 1_000;
/** ...nor longer than this (30 s: the time a load change needs to be believed). */
export const AUTOSCALE_WINDOW_MAX_MS = 30_000;
/** The window is this fraction of the cooldown (300 s default cooldown -> 30 s window). */
export const AUTOSCALE_WINDOW_PER_COOLDOWN = 0.1;
/** A load removal must leave the survivors at most this fraction of the connection high mark. */
export const CONNECTIONS_LOW_RATIO = 0.5;
/** No load removal while any member's mean sync lag is above this (its backups are behind). */
export const SYNC_LAG_REMOVE_MAX_MS = 1_000;
/** Bound of the samples kept per member (heartbeats every 100 ms fill 30 s with 300). */
export const SAMPLES_PER_MEMBER_MAX = 4_096;

/** The window over which a group with these rules is judged. */
export function windowMsOf(rules: Readonly<AutoscaleRules>): number {
  const derived = Math.round(rules.cooldownMs * AUTOSCALE_WINDOW_PER_COOLDOWN);
  return Math.min(AUTOSCALE_WINDOW_MAX_MS, Math.max(AUTOSCALE_WINDOW_MIN_MS, derived));
}

/** One load report of one member, stamped with the caller's clock when it arrived. */
export interface LoadSample {
  atMs: number;
  cpuPct: number;
  packetsPerSec: number;
  connections: number;
  /** How far its backups are behind (0 when unknown). */
  syncLagMs: number;
}

/** An appliance in the pool. */
export interface SpareAppliance {
  id: string;
  model: string;
  version: string;
  cores: number;
}

/** What evaluate() needs to know of a group. */
export interface AutoscaleGroupInput {
  name: string;
  rules: Readonly<AutoscaleRules>;
  allowMixedModels: boolean;
  /** Model and version of the group's members (what a spare must match). */
  model: string;
  version: string;
  /** Serving members (UP, in the routing table), appliance ids: the count the rules bound. */
  members: readonly string[];
  /** A transition runs, changes are pending, or a rolling upgrade is on: hands off. */
  busy: boolean;
}

export type AutoscaleAction =
  | { kind: "add"; group: string; appliance: string; reason: string }
  | { kind: "remove"; group: string; appliance: string; reason: string };

/** One per group given to evaluate(), in the order given. */
export interface AutoscaleDecision {
  group: string;
  action: AutoscaleAction | null;
  /** The action's reason, or why there is none (for `autoscale show` and events). */
  why: string;
}

/** Figures of a group over its window. */
export interface GroupLoad {
  cpuPct: number;
  packetsPerSec: number;
  connectionsPerMember: number;
  syncLagMsMax: number;
  /** The member a removal would take, with its mean CPU. */
  leastLoaded: string;
  leastLoadedCpuPct: number;
}

/**
 * A group's window as its last evaluation saw it: [startMs, atMs], the means so far (a partial
 * window has figures too, they just decide nothing). Means are null when no member reported.
 */
export interface AutoscaleWindow {
  /** The later of (evaluation time - lengthMs) and the time the group last changed or acted. */
  startMs: number;
  /** The full window (windowMsOf the rules, or the autoscaler's override). */
  lengthMs: number;
  /** Load reports in it, all serving members together. */
  samples: number;
  /** Serving members, and how many of them reported in the window. */
  members: number;
  membersReporting: number;
  /** Means over the reporting members, each member's figure being the mean of its samples. */
  cpuPct: number | null;
  packetsPerSec: number | null;
  connectionsPerMember: number | null;
  /** The highest of the members' mean sync lags (what the removal guard compares). */
  syncLagMsMax: number | null;
}

/** What statusOf() answers: the group's last evaluation, its last action, its window. */
export interface AutoscaleGroupStatus {
  /** The last evaluation: when, its action (null: none) and why. */
  lastEvaluation: { atMs: number; action: AutoscaleAction | null; why: string };
  /** The last action this autoscaler took for the group (null: none since it started). */
  lastAction: (AutoscaleAction & { atMs: number }) | null;
  /** The window the last evaluation judged (or was filling). */
  window: AutoscaleWindow;
}

export interface AutoscalerOptions {
  /** Override the window (default windowMsOf(rules) per group): simulations use short ones. */
  windowMs?: number;
}

interface GroupState {
  /** Time of the last action, null before the first. */
  lastActionMs: number | null;
  lastAction: (AutoscaleAction & { atMs: number }) | null;
  /** Set by every evaluate() that was given the group. */
  lastEvaluation: AutoscaleGroupStatus["lastEvaluation"] | null;
  window: AutoscaleWindow | null;
  /** Since when the group has had the same members and been idle (the window may start here). */
  settledSinceMs: number;
  membersKey: string;
}

/** An add the group would make if a spare were free, waiting for its turn in priority order. */
interface AddWish {
  index: number;
  group: AutoscaleGroupInput;
  belowMin: boolean;
  ratio: number;
  reason: string;
}

/** One group's verdict before spares are shared out. */
type Judgement =
  | { kind: "none"; why: string }
  | { kind: "remove"; appliance: string; reason: string }
  | { kind: "wish"; belowMin: boolean; ratio: number; reason: string };

function none(why: string): Judgement {
  return { kind: "none", why };
}

/** A member's means over a window (n samples, the first at firstMs). */
interface MemberMeans {
  n: number;
  firstMs: number;
  cpu: number;
  pps: number;
  connections: number;
  lag: number;
}

/** Sample buffer of one member: samples[head..] are live, in time order. */
interface SampleBuffer {
  samples: LoadSample[];
  head: number;
}

export class Autoscaler {
  private readonly buffers = new Map<string, SampleBuffer>();
  private readonly groups = new Map<string, GroupState>();

  constructor(private readonly options: AutoscalerOptions = {}) {
    if (options.windowMs !== undefined) assert(Number.isFinite(options.windowMs) && options.windowMs > 0, "windowMs must be positive");
  }

  /** The window this autoscaler applies to a group with these rules. */
  windowMs(rules: Readonly<AutoscaleRules>): number {
    return this.options.windowMs ?? windowMsOf(rules);
  }

  /** A member's load report. Times per member never go back (the caller's monotonic clock). */
  record(member: string, sample: LoadSample): void {
    assert(Number.isFinite(sample.atMs), "sample time");
    assert(sample.cpuPct >= 0 && sample.packetsPerSec >= 0 && sample.connections >= 0 && sample.syncLagMs >= 0, "load figures are non-negative");
    let b = this.buffers.get(member);
    if (b === undefined) {
      b = { samples: [], head: 0 };
      this.buffers.set(member, b);
    }
    const last = b.samples.length > b.head ? b.samples[b.samples.length - 1]! : null;
    assert(last === null || sample.atMs >= last.atMs, "samples of a member arrive in time order");
    b.samples.push({ ...sample });
    // Bound: drop the oldest (a window that loses its start is incomplete: no decision, safe).
    if (b.samples.length - b.head > SAMPLES_PER_MEMBER_MAX) b.head++;
    if (b.head > SAMPLES_PER_MEMBER_MAX) {
      b.samples = b.samples.slice(b.head);
      b.head = 0;
    }
  }

  /** When the group last acted, null if never (or forgotten). */
  lastActionMs(group: string): number | null {
    return this.groups.get(group)?.lastActionMs ?? null;
  }

  /** The group's last evaluation, last action and window; null before its first evaluation. */
  statusOf(group: string): AutoscaleGroupStatus | null {
    const state = this.groups.get(group);
    if (state === undefined || state.lastEvaluation === null || state.window === null) return null;
    return { lastEvaluation: { ...state.lastEvaluation }, lastAction: state.lastAction === null ? null : { ...state.lastAction }, window: { ...state.window } };
  }

  /** Drops a group's state (deleted). Its members' samples go at the next evaluate(). */
  forget(group: string): void {
    this.groups.delete(group);
  }

  /**
   * At most one action per group; the pool is shared in priority order (file header). The
   * caller performs the actions (the cooldown starts now whether or not it succeeds: a failed
   * stage is retried only after the cooldown, never in a loop).
   */
  evaluate(nowMs: number, groups: readonly AutoscaleGroupInput[], pool: readonly SpareAppliance[]): AutoscaleDecision[] {
    assert(Number.isFinite(nowMs), "nowMs");
    const names = new Set<string>();
    for (const g of groups) {
      assert(!names.has(g.name), `group ${g.name} given twice`);
      names.add(g.name);
    }
    for (const name of [...this.groups.keys()]) if (!names.has(name)) this.groups.delete(name);
    this.prune(nowMs, groups);

    const decisions: AutoscaleDecision[] = groups.map((g) => ({ group: g.name, action: null, why: "" }));
    const wishes: AddWish[] = [];
    groups.forEach((g, index) => {
      const j = this.judge(g, nowMs);
      // The window as judged (before an action below restarts it), for statusOf().
      const state = this.groups.get(g.name)!;
      state.window = this.windowFigures(g, Math.max(nowMs - this.windowMs(g.rules), state.settledSinceMs), nowMs);
      const d = decisions[index]!;
      if (j.kind === "none") d.why = j.why;
      else if (j.kind === "remove") d.action = { kind: "remove", group: g.name, appliance: j.appliance, reason: j.reason };
      else wishes.push({ index, group: g, belowMin: j.belowMin, ratio: j.ratio, reason: j.reason });
    });

    // Adds in priority order, each claiming its spare before the next group looks.
    wishes.sort(comparePriority);
    const claimed = new Map<string, string>();
    for (const w of wishes) {
      const d = decisions[w.index]!;
      const spare = pickSpare(w.group, pool, claimed);
      if (spare === null) {
        // Say so when a group served before it took the spare it could have had.
        const taken = pickSpare(w.group, pool, NOTHING_CLAIMED);
        d.why =
          taken === null
            ? `${w.reason}, but no compatible spare (version ${w.group.version}${w.group.allowMixedModels ? "" : `, model ${w.group.model}`})`
            : `${w.reason}, but spare ${taken.id} went to ${claimed.get(taken.id)!} first (priority); waiting for a spare`;
        continue;
      }
      claimed.set(spare.id, w.group.name);
      d.action = { kind: "add", group: w.group.name, appliance: spare.id, reason: w.reason };
    }

    for (const d of decisions) {
      const state = this.groups.get(d.group)!;
      if (d.action !== null) {
        d.why = d.action.reason;
        state.lastActionMs = nowMs;
        state.lastAction = { ...d.action, atMs: nowMs };
        state.settledSinceMs = nowMs;
      }
      state.lastEvaluation = { atMs: nowMs, action: d.action === null ? null : { ...d.action }, why: d.why };
    }
    return decisions;
  }

  /** What one group wants, on its own (spares are shared out afterwards). */
  private judge(g: AutoscaleGroupInput, nowMs: number): Judgement {
    const state = this.stateOf(g, nowMs);
    const rules = g.rules;
    const windowMs = this.windowMs(rules);
    const count = g.members.length;
    // Busy is tracked even while disabled, so switching autoscaling on never judges a window
    // that saw a transition.
    if (g.busy) {
      state.settledSinceMs = nowMs;
      return none(rules.enabled ? "a transition or pending changes: waiting for them to finish" : "autoscaling is disabled");
    }
    if (!rules.enabled) return none("autoscaling is disabled");
    if (count === 0) return none("no members: the group is not deployed yet");
    if (state.lastActionMs !== null && nowMs - state.lastActionMs < rules.cooldownMs) {
      return none(`cooling down: ${seconds(state.lastActionMs + rules.cooldownMs - nowMs)} s left`);
    }
    if (nowMs - state.settledSinceMs < windowMs) {
      return none(`measuring: ${seconds(state.settledSinceMs + windowMs - nowMs)} s until a full window of ${seconds(windowMs)} s`);
    }
    if (count < rules.minMembers) return { kind: "wish", belowMin: true, ratio: Infinity, reason: `${memberCount(count)} < minMembers ${rules.minMembers}` };
    const load = this.loadOf(g, nowMs - windowMs, windowMs);
    if (typeof load === "string") return none(load);
    const span = `for ${seconds(windowMs)} s`;
    const least = `${load.leastLoaded} carries the least load (CPU ${pct(load.leastLoadedCpuPct)}%)`;
    if (count > rules.maxMembers) {
      return { kind: "remove", appliance: load.leastLoaded, reason: `${memberCount(count)} > maxMembers ${rules.maxMembers}; ${least}` };
    }
    const cpuHigh = load.cpuPct > rules.cpuHighPct;
    const connectionsHigh = load.connectionsPerMember > rules.connectionsPerMemberHigh;
    if (cpuHigh || connectionsHigh) {
      const reason = cpuHigh
        ? `mean CPU ${pct(load.cpuPct)}% > ${pct(rules.cpuHighPct)}% ${span}`
        : `mean ${Math.round(load.connectionsPerMember)} connections per member > ${rules.connectionsPerMemberHigh} ${span}`;
      if (count >= rules.maxMembers) return none(`${reason}, but the group is at maxMembers ${rules.maxMembers}`);
      const ratio = Math.max(load.cpuPct / rules.cpuHighPct, load.connectionsPerMember / rules.connectionsPerMemberHigh);
      return { kind: "wish", belowMin: false, ratio, reason };
    }
    if (load.cpuPct < rules.cpuLowPct) {
      const low = `mean CPU ${pct(load.cpuPct)}% < ${pct(rules.cpuLowPct)}% ${span}`;
      if (count <= rules.minMembers) return none(`${low}, but the group is at minMembers ${rules.minMembers}`);
      const projectedCpu = (load.cpuPct * count) / (count - 1);
      if (projectedCpu >= rules.cpuHighPct) return none(`${low}, but ${count - 1} members would run at ${pct(projectedCpu)}% (>= ${pct(rules.cpuHighPct)}%)`);
      const projectedConnections = (load.connectionsPerMember * count) / (count - 1);
      if (projectedConnections > CONNECTIONS_LOW_RATIO * rules.connectionsPerMemberHigh) {
        return none(`${low}, but ${count - 1} members would hold ${Math.round(projectedConnections)} connections each`);
      }
      if (load.syncLagMsMax > SYNC_LAG_REMOVE_MAX_MS) return none(`${low}, but sync lags ${Math.round(load.syncLagMsMax)} ms (> ${SYNC_LAG_REMOVE_MAX_MS} ms)`);
      return { kind: "remove", appliance: load.leastLoaded, reason: `${low}; ${least}` };
    }
    return none(`mean CPU ${pct(load.cpuPct)}% within ${pct(rules.cpuLowPct)}%..${pct(rules.cpuHighPct)}% ${span}, ${Math.round(load.connectionsPerMember)} connections per member`);
  }

  /** The group's state, its window restarted when its members changed. */
  private stateOf(g: AutoscaleGroupInput, nowMs: number): GroupState {
    const key = [...g.members].sort(compareIds).join("\u0000");
    let state = this.groups.get(g.name);
    if (state === undefined) {
      state = { lastActionMs: null, lastAction: null, lastEvaluation: null, window: null, settledSinceMs: nowMs, membersKey: key };
      this.groups.set(g.name, state);
    } else if (state.membersKey !== key) {
      state.membersKey = key;
      state.settledSinceMs = nowMs;
    }
    return state;
  }

  /** Drops samples older than their group's window, and those of appliances in no group. */
  private prune(nowMs: number, groups: readonly AutoscaleGroupInput[]): void {
    const windowOf = new Map<string, number>();
    for (const g of groups) for (const m of g.members) windowOf.set(m, this.windowMs(g.rules));
    for (const [member, b] of this.buffers) {
      const windowMs = windowOf.get(member);
      if (windowMs === undefined) {
        this.buffers.delete(member);
        continue;
      }
      while (b.head < b.samples.length && b.samples[b.head]!.atMs < nowMs - windowMs) b.head++;
      if (b.head === b.samples.length) this.buffers.delete(member);
      else if (b.head > 64 && b.head * 2 > b.samples.length) {
        b.samples = b.samples.slice(b.head);
        b.head = 0;
      }
    }
  }

  /** One member's means over its samples from fromMs on (n = 0: none). */
  private memberMeans(id: string, fromMs: number): MemberMeans {
    const b = this.buffers.get(id);
    const m: MemberMeans = { n: 0, firstMs: Infinity, cpu: 0, pps: 0, connections: 0, lag: 0 };
    if (b === undefined) return m;
    for (let i = b.head; i < b.samples.length; i++) {
      const s = b.samples[i]!;
      if (s.atMs < fromMs) continue;
      if (m.n === 0) m.firstMs = s.atMs;
      m.n++;
      m.cpu += s.cpuPct;
      m.pps += s.packetsPerSec;
      m.connections += s.connections;
      m.lag += s.syncLagMs;
    }
    if (m.n > 0) {
      m.cpu /= m.n;
      m.pps /= m.n;
      m.connections /= m.n;
      m.lag /= m.n;
    }
    return m;
  }

  /** Figures of [startMs, nowMs] over the members that reported, complete or not (statusOf). */
  private windowFigures(g: AutoscaleGroupInput, startMs: number, nowMs: number): AutoscaleWindow {
    let samples = 0;
    let reporting = 0;
    let cpuSum = 0;
    let ppsSum = 0;
    let connectionsSum = 0;
    let syncLagMsMax = 0;
    for (const id of g.members) {
      const m = this.memberMeans(id, startMs);
      if (m.n === 0 || m.firstMs > nowMs) continue;
      samples += m.n;
      reporting++;
      cpuSum += m.cpu;
      ppsSum += m.pps;
      connectionsSum += m.connections;
      syncLagMsMax = Math.max(syncLagMsMax, m.lag);
    }
    const mean = (sum: number): number | null => (reporting === 0 ? null : sum / reporting);
    return {
      startMs,
      lengthMs: this.windowMs(g.rules),
      samples,
      members: g.members.length,
      membersReporting: reporting,
      cpuPct: mean(cpuSum),
      packetsPerSec: mean(ppsSum),
      connectionsPerMember: mean(connectionsSum),
      syncLagMsMax: reporting === 0 ? null : syncLagMsMax,
    };
  }

  /** The group's means over [fromMs, fromMs + windowMs], or why they cannot be known. */
  private loadOf(g: AutoscaleGroupInput, fromMs: number, windowMs: number): GroupLoad | string {
    let cpuSum = 0;
    let ppsSum = 0;
    let connectionsSum = 0;
    let syncLagMsMax = 0;
    let least: { id: string; cpu: number; pps: number; connections: number } | null = null;
    for (const id of [...g.members].sort(compareIds)) {
      const { n, firstMs, cpu, pps, connections, lag } = this.memberMeans(id, fromMs);
      if (n === 0 || firstMs > fromMs + windowMs / 2) return `incomplete window: ${id} reported no load in the first ${seconds(windowMs / 2)} s of the window`;
      cpuSum += cpu;
      ppsSum += pps;
      connectionsSum += connections;
      syncLagMsMax = Math.max(syncLagMsMax, lag);
      const lighter =
        least === null || cpu < least.cpu || (cpu === least.cpu && (pps < least.pps || (pps === least.pps && connections < least.connections)));
      if (lighter) least = { id, cpu, pps, connections };
    }
    assert(least !== null, "a group with members");
    const n = g.members.length;
    return {
      cpuPct: cpuSum / n,
      packetsPerSec: ppsSum / n,
      connectionsPerMember: connectionsSum / n,
      syncLagMsMax,
      leastLoaded: least.id,
      leastLoadedCpuPct: least.cpu,
    };
  }
}

const NOTHING_CLAIMED: ReadonlyMap<string, string> = new Map();

/** Serving order of add wishes (the file header's priority rule). */
function comparePriority(a: AddWish, b: AddWish): number {
  const pa = a.group.rules.priority;
  const pb = b.group.rules.priority;
  if (pa !== pb) return pb - pa;
  if (a.belowMin !== b.belowMin) return a.belowMin ? -1 : 1;
  if (a.ratio !== b.ratio) return b.ratio > a.ratio ? 1 : -1;
  return compareIds(a.group.name, b.group.name);
}

/** The spare a group would take: its version, its model unless mixing is allowed; same model, more cores, lower id first. */
function pickSpare(g: AutoscaleGroupInput, pool: readonly SpareAppliance[], claimed: ReadonlyMap<string, string>): SpareAppliance | null {
  let best: SpareAppliance | null = null;
  for (const s of pool) {
    if (claimed.has(s.id) || s.version !== g.version) continue;
    if (!g.allowMixedModels && s.model !== g.model) continue;
    if (best === null || betterSpare(g, s, best)) best = s;
  }
  return best;
}

function betterSpare(g: AutoscaleGroupInput, s: SpareAppliance, than: SpareAppliance): boolean {
  const sameS = s.model === g.model;
  const sameT = than.model === g.model;
  if (sameS !== sameT) return sameS;
  if (s.cores !== than.cores) return s.cores > than.cores;
  return compareIds(s.id, than.id) < 0;
}

function memberCount(count: number): string {
  return count === 1 ? "1 member" : `${count} members`;
}

/** A percentage for people: whole when whole, else one decimal. */
function pct(x: number): string {
  return String(Math.round(x * 10) / 10);
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
