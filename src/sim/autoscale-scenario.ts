// The simulator's autoscaling mode: the orchestrator's Autoscaler (src/orchestrator/autoscaler.ts)
// drives membership while the offered load rises, peaks and falls.
//
//   concurrent flows (the default curve; a curve is any piecewise-linear list of points)
//   200   |            ________
//         |           /        \
//         |          /          \
//    20   |_________/            \____________
//         0        3 s  8 s   17 s  20 s      34 s (traffic ends)
//
// Every virtual second (AutoscaleDriver.intervalMs) each serving member reports a CPU proxy to
// the Autoscaler: the frames it received in the last interval relative to its capacity
// (capacityFramesPerSecPerCore x its weight, capped at 100%), with packets/s and connections.
// The Autoscaler's add becomes a scenario "join" (a spare that never ran) or "restart" (a
// member drained earlier) of that member, its remove a "drain": the very paths scheduled
// scenario events take (simulator.ts attempt/execute, with their rules and retries), so
// the run's invariants (no established connection lost, one owner per bucket, packet
// accounting, protection) are checked exactly as in the sweeps.
//
// Deterministic: everything derives from the seed; the Autoscaler is given the virtual clock.

import { Autoscaler, type AutoscaleAction, type AutoscaleGroupInput, type SpareAppliance } from "../orchestrator/autoscaler.js";
import { resolveAutoscale, type AutoscaleRules } from "../orchestrator/model.js";
import { assert } from "../stdx/assert.js";
import { Prng } from "../stdx/prng.js";
import type { FlowSpec } from "./hosts.js";
import { simClientAddress, simServerAddress } from "./hosts.js";
import { keysOwned } from "./invariants.js";
import type { FaultProfile } from "./network.js";
import { scenarioOf, type Scenario } from "./scenario.js";
import { runSimulation, type SimDriver, type SimDriverContext, type SimResult } from "./simulator.js";

/**
 * The offered load over time: concurrent flows at each point (times increasing), linear in
 * between, flat before the first and after the last point.
 */
export interface LoadCurve {
  points: readonly (readonly [atMs: number, flows: number])[];
  trafficEndMs: number;
}

export interface AutoscaleScenarioOptions {
  curve?: LoadCurve;
  /** Members of the first epoch (the group starts at minMembers). */
  initialMembers?: number;
  /** Appliances in the pool. */
  spareMembers?: number;
  /** Autoscale rules of the group (enabled; short cooldown for a simulation). */
  rules?: Partial<AutoscaleRules>;
  /** Judging window (default 3 s: three samples). */
  windowMs?: number;
  /** What one core of a member processes per second at 100% CPU (frames). */
  capacityFramesPerSecPerCore?: number;
  profile?: FaultProfile;
}

export const AUTOSCALE_CURVE_DEFAULT: Readonly<LoadCurve> = {
  points: [
    [3_000, 20],
    [8_000, 200],
    [17_000, 200],
    [20_000, 20],
  ],
  trafficEndMs: 34_000,
};

/** A mildly lossy network: retransmissions and reordering happen, as in the sweeps. */
export const AUTOSCALE_PROFILE_DEFAULT: Readonly<FaultProfile> = {
  delayMs: 0.3,
  jitterMs: 0.6,
  lossRate: 0.002,
  duplicateRate: 0.002,
  reorderRate: 0.01,
  reorderDelayMs: 3,
};

const SIM_RULES: Partial<AutoscaleRules> = { enabled: true, minMembers: 2, maxMembers: 5, cpuHighPct: 75, cpuLowPct: 30, cooldownMs: 4_000 };
const WINDOW_MS_DEFAULT = 3_000;
/** Calibrated so that the default curve needs about 4 members at its peak and 2 at its base. */
const CAPACITY_FRAMES_PER_SEC_PER_CORE_DEFAULT = 150;
const WEIGHT = 4;
/** Connection-table entries per member (see autoscaleScenarioOf). */
const CONNECTION_CAPACITY = 16_384;
/** Flow lifetimes (see loadFlows): their mean, for the arrival rate of a concurrency. */
const SHORT_SHARE = 0.8;

/** Concurrent flows the curve asks for at time t. */
export function concurrencyAt(c: Readonly<LoadCurve>, tMs: number): number {
  const p = c.points;
  if (tMs <= p[0]![0]) return p[0]![1];
  for (let i = 1; i < p.length; i++) {
    const [t1, f1] = p[i]!;
    if (tMs < t1) {
      const [t0, f0] = p[i - 1]!;
      return f0 + ((f1 - f0) * (tMs - t0)) / (t1 - t0);
    }
  }
  return p[p.length - 1]![1];
}

/**
 * Flows whose number in progress follows the curve (Little's law: arrivals per ms =
 * concurrency / mean lifetime). Most live 0.5-3 s; one in five lives 3-10 s, so connections
 * established before a join or a drain are still running across it. Every flow ends before
 * trafficEndMs. Client ports are unique per flow.
 */
export function loadFlows(prng: Prng, c: Readonly<LoadCurve>): FlowSpec[] {
  assert(c.points.length > 0, "a curve has points");
  for (let i = 1; i < c.points.length; i++) assert(c.points[i - 1]![0] < c.points[i]![0], "curve times increase");
  const stepMs = 10;
  // Mean lifetime of the mix below (exchange + ~2 ms round trip each).
  const shortMeanMs = 7 * (200 + 2);
  const longMeanMs = 15 * (450 + 2);
  const meanLifetimeMs = SHORT_SHARE * shortMeanMs + (1 - SHORT_SHARE) * longMeanMs;
  const flows: FlowSpec[] = [];
  let expected = 0;
  for (let t = 5; t < c.trafficEndMs; t += stepMs) {
    expected += (concurrencyAt(c, t) * stepMs) / meanLifetimeMs;
    while (expected >= 1) {
      expected -= 1;
      const short = prng.chance(SHORT_SHARE);
      const exchanges = short ? prng.range(4, 10) : prng.range(10, 20);
      const thinkMs = short ? prng.range(100, 300) : prng.range(300, 600);
      const startMs = t + prng.nextFloat() * stepMs;
      const lifetimeMs = exchanges * (thinkMs + 20);
      const udp = prng.chance(0.1);
      const i = flows.length;
      const clientAddress = simClientAddress(prng.nextInt(200));
      const serverAddress = simServerAddress(prng.nextInt(20));
      if (startMs + lifetimeMs > c.trafficEndMs - 200) continue;
      flows.push({
        kind: udp ? "udp" : "tcp",
        clientAddress,
        clientPort: 10000 + i,
        serverAddress,
        serverPort: udp ? 53 : 443,
        startMs,
        exchanges,
        thinkMs,
        requestBytes: 200,
        responseBytes: 800,
      });
    }
  }
  assert(flows.length < 55000, "client ports must stay unique");
  return flows;
}

/** The scenario of a seed in autoscaling mode: no scheduled faults, the load curve's flows. */
export function autoscaleScenarioOf(seed: number, options: AutoscaleScenarioOptions = {}): Scenario {
  const curve = options.curve ?? AUTOSCALE_CURVE_DEFAULT;
  const s = scenarioOf(seed, { trafficMs: curve.trafficEndMs, trafficScale: 0.01 });
  s.initialMembers = options.initialMembers ?? 2;
  s.spareMembers = options.spareMembers ?? 3;
  s.weights = Array.from({ length: s.initialMembers + s.spareMembers }, () => WEIGHT);
  s.bucketCount = 256;
  // Closed connections stay in the table until they expire, so a 30 s curve of ~1200 flows
  // needs more than the sweeps' 1024 entries (a full table drops new flows and stalls fills).
  s.capacity = CONNECTION_CAPACITY;
  s.profile = { ...(options.profile ?? AUTOSCALE_PROFILE_DEFAULT) };
  s.flows = loadFlows(new Prng(seed ^ 0x6175746f), curve);
  s.events = [];
  s.trafficEndMs = curve.trafficEndMs;
  return s;
}

export interface TimedAction {
  atMs: number;
  action: AutoscaleAction;
}

/** One tick's view of the group, for the test's picture of the run. */
export interface LoadPoint {
  atMs: number;
  members: number;
  meanCpuPct: number;
}

/** Feeds the Autoscaler from the members and turns its decisions into scenario events. */
export class AutoscaleDriver implements SimDriver {
  readonly intervalMs = 1000;
  readonly autoscaler: Autoscaler;
  readonly rules: AutoscaleRules;
  readonly actions: TimedAction[] = [];
  readonly trace: LoadPoint[] = [];
  private readonly framesInAt = new Map<string, number>();

  constructor(
    private readonly weights: readonly number[],
    rules: Partial<AutoscaleRules>,
    windowMs: number,
    private readonly capacityFramesPerSecPerCore: number,
  ) {
    this.rules = resolveAutoscale({ ...SIM_RULES, ...rules });
    this.autoscaler = new Autoscaler({ windowMs });
  }

  tick(ctx: SimDriverContext): void {
    const c = ctx.controller;
    const serving = ctx.members.filter((m) => m.alive && c.current.table.members.includes(m.name) && c.statusOf(m.name) === "up");
    let cpuSum = 0;
    for (const m of ctx.members) {
      const before = this.framesInAt.get(m.name) ?? 0;
      this.framesInAt.set(m.name, m.stats.framesIn);
      if (!serving.includes(m)) continue;
      const framesPerSec = ((m.stats.framesIn - before) * 1000) / this.intervalMs;
      const capacity = this.capacityFramesPerSecPerCore * this.weights[m.memberId - 1]!;
      const cpuPct = Math.min(100, (100 * framesPerSec) / capacity);
      cpuSum += cpuPct;
      this.autoscaler.record(m.name, { atMs: ctx.nowMs, cpuPct, packetsPerSec: framesPerSec, connections: keysOwned(m.node!).size, syncLagMs: 0 });
    }
    this.trace.push({ atMs: ctx.nowMs, members: serving.length, meanCpuPct: serving.length === 0 ? 0 : cpuSum / serving.length });
    const group: AutoscaleGroupInput = {
      name: "sg",
      rules: this.rules,
      allowMixedModels: false,
      model: "sim",
      version: "1",
      members: serving.map((m) => m.name),
      busy: c.busy || ctx.requestsPending > 0,
    };
    // The pool: stopped appliances that never ran or were drained (not crashed ones, which the
    // orchestrator would hold DOWN).
    const pool: SpareAppliance[] = ctx.members
      .filter((m) => !m.alive && (m.session === 0 || c.statusOf(m.name) === "left"))
      .map((m) => ({ id: m.name, model: "sim", version: "1", cores: this.weights[m.memberId - 1]! }));
    const [decision] = this.autoscaler.evaluate(ctx.nowMs, [group], pool);
    const action = decision!.action;
    if (action === null) return;
    this.actions.push({ atMs: ctx.nowMs, action });
    ctx.note(`autoscaler: ${action.kind} ${action.appliance} (${action.reason})`);
    if (action.kind === "remove") {
      ctx.request({ atMs: ctx.nowMs, kind: "drain", member: action.appliance });
      return;
    }
    const spare = ctx.members.find((m) => m.name === action.appliance)!;
    ctx.request({ atMs: ctx.nowMs, kind: spare.session === 0 ? "join" : "restart", member: action.appliance });
  }
}

export interface AutoscaleRun {
  result: SimResult;
  actions: TimedAction[];
  trace: LoadPoint[];
  curve: LoadCurve;
}

/** One autoscaling run of a seed. */
export function runAutoscaleSimulation(seed: number, options: AutoscaleScenarioOptions = {}): AutoscaleRun {
  const curve = options.curve ?? AUTOSCALE_CURVE_DEFAULT;
  const scenario = autoscaleScenarioOf(seed, options);
  const driver = new AutoscaleDriver(
    scenario.weights,
    options.rules ?? {},
    options.windowMs ?? WINDOW_MS_DEFAULT,
    options.capacityFramesPerSecPerCore ?? CAPACITY_FRAMES_PER_SEC_PER_CORE_DEFAULT,
  );
  const result = runSimulation(seed, { scenario, driver });
  return { result, actions: driver.actions, trace: driver.trace, curve };
}
