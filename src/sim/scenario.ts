// A simulation scenario, derived entirely from one seed: cluster size and weights, bucket
// count, fault profile, traffic, and a schedule of membership and network events. The same
// seed always yields the same scenario (every choice comes from one Prng, in a fixed order),
// and tests build named scenarios by overriding parts of a derived one.
//
// The schedule holds intents, not facts: "crash some member at about t". The simulator
// executes an intent only when it keeps the run within its rules (at most one failure at a
// time: no crash while a failure is being handled or the sync network is partitioned, at least
// three members in the table) and otherwise retries it a little later, a bounded number of
// times.

import { assert } from "../stdx/assert.js";
import { Prng } from "../stdx/prng.js";
import type { FlowKind, FlowSpec } from "./hosts.js";
import { simClientAddress, simServerAddress } from "./hosts.js";
import type { FaultProfile } from "./network.js";

export type ScenarioEventKind =
  /** Crash a member of the table (victim chosen when executed; `member` forces one). */
  | "crash"
  /** Crash a member while a join is filling (the joining member itself when `joiner`). */
  | "crash-during-fill"
  /** Restart a crashed or drained member (`member` names it; default: any); it joins again. */
  | "restart"
  /** Start a spare member that never ran (`member` names it; default: the first); it joins. */
  | "join"
  /** Drain a member of the table (`member` names it; default: any). */
  | "drain"
  /** Partition the sync network into two sides for durationMs. */
  | "partition";

export interface ScenarioEvent {
  atMs: number;
  kind: ScenarioEventKind;
  member?: string;
  joiner?: boolean;
  /** crash-during-fill: crash this long after the fill phase's set-epoch leaves the controller (default: random, 0-2 ms). */
  offsetMs?: number;
  durationMs?: number;
}

export interface Scenario {
  seed: number;
  /** Members of the first epoch. */
  initialMembers: number;
  /** Members that may join later (names after the initial ones). */
  spareMembers: number;
  /** Weight (cores) per member, initial and spare, in name order. */
  weights: number[];
  bucketCount: number;
  capacity: number;
  profile: FaultProfile;
  flows: FlowSpec[];
  events: ScenarioEvent[];
  /** No flow starts or thinks past this; the run then winds down. */
  trafficEndMs: number;
}

export interface ScenarioOptions {
  /** Scale the traffic (flows) by this factor (tests use < 1 for speed). */
  trafficScale?: number;
  /** Virtual milliseconds of traffic (default: derived from the seed, 5-10 s). */
  trafficMs?: number;
}

export function memberName(i: number): string {
  return `m${i + 1}`;
}

const FLOW_KINDS: readonly { kind: FlowKind; weight: number }[] = [
  { kind: "tcp", weight: 60 },
  { kind: "tcp-reset", weight: 10 },
  { kind: "udp", weight: 20 },
  { kind: "icmp", weight: 10 },
];

function pickKind(prng: Prng): FlowKind {
  let roll = prng.nextInt(100);
  for (const k of FLOW_KINDS) {
    if (roll < k.weight) return k.kind;
    roll -= k.weight;
  }
  return "tcp";
}

/** Flows with varied lifetimes: most are short, about one in five lives for seconds. */
export function generateFlows(prng: Prng, count: number, trafficEndMs: number): FlowSpec[] {
  const flows: FlowSpec[] = [];
  for (let i = 0; i < count; i++) {
    const kind = pickKind(prng);
    const longLived = prng.chance(0.2);
    const exchanges = longLived ? prng.range(4, 12) : prng.range(1, 4);
    // Long-lived flows span most of the run (and so every fault in it): up to ~trafficEnd.
    const thinkMs = longLived ? prng.range(100, Math.max(101, Math.floor(trafficEndMs / exchanges) - 20)) : prng.range(1, 40);
    const lifetimeMs = exchanges * (thinkMs + 20);
    const latestStart = Math.max(0, trafficEndMs - lifetimeMs);
    const startMs = 5 + prng.nextInt(Math.max(1, latestStart));
    flows.push({
      kind,
      clientAddress: simClientAddress(prng.nextInt(200)),
      // Client ports are unique per flow, so a flow key is (protocol, client address, port).
      clientPort: 10000 + i,
      serverAddress: simServerAddress(prng.nextInt(20)),
      serverPort: kind === "udp" ? 53 : kind === "icmp" ? 0 : prng.chance(0.5) ? 443 : 80,
      startMs,
      exchanges,
      thinkMs,
      requestBytes: kind === "icmp" ? 56 : prng.range(40, 600),
      responseBytes: kind === "icmp" ? 56 : prng.range(100, 1400),
    });
  }
  assert(flows.length < 55000, "client ports must stay unique");
  return flows;
}

export function generateProfile(prng: Prng): FaultProfile {
  return {
    delayMs: 0.1 + prng.nextFloat() * 0.9,
    jitterMs: prng.nextFloat() * 1.5,
    lossRate: prng.pick([0, 0.002, 0.01, 0.02, 0.05]),
    duplicateRate: prng.pick([0, 0, 0.005, 0.02]),
    reorderRate: prng.pick([0, 0.01, 0.05]),
    reorderDelayMs: 2 + prng.nextFloat() * 8,
  };
}

/** The scenario of a seed. */
export function scenarioOf(seed: number, options: ScenarioOptions = {}): Scenario {
  const prng = new Prng(seed);
  const initialMembers = prng.range(3, 6);
  const spareMembers = 2;
  const uneven = prng.chance(0.3);
  const weights: number[] = [];
  for (let i = 0; i < initialMembers + spareMembers; i++) weights.push(uneven ? prng.pick([2, 4, 8]) : 4);
  const bucketCount = prng.pick([64, 128, 256, 1024]);
  const profile = generateProfile(prng);
  const trafficEndMs = options.trafficMs ?? prng.range(5000, 10000);
  const flowCount = Math.max(4, Math.round(prng.range(40, 300) * (options.trafficScale ?? 1)));
  const flows = generateFlows(prng, flowCount, trafficEndMs);

  const events: ScenarioEvent[] = [];
  const eventCount = prng.range(2, 6);
  const kinds: ScenarioEventKind[] = ["crash", "crash", "crash", "join", "join", "restart", "restart", "drain", "partition", "crash-during-fill"];
  for (let i = 0; i < eventCount; i++) {
    const kind = prng.pick(kinds);
    const atMs = 300 + prng.nextInt(Math.max(1, trafficEndMs - 1500));
    const e: ScenarioEvent = { atMs, kind };
    if (kind === "partition") e.durationMs = prng.range(50, 800);
    if (kind === "crash-during-fill") e.joiner = prng.chance(0.3);
    events.push(e);
  }
  // Some runs crash a member during a join's fill phase whatever the draw above.
  if (prng.chance(0.25) && !events.some((e) => e.kind === "crash-during-fill")) {
    events.push({ atMs: 300 + prng.nextInt(Math.max(1, trafficEndMs - 1500)), kind: "crash-during-fill", joiner: prng.chance(0.3) });
  }
  events.sort((a, b) => a.atMs - b.atMs);
  return { seed, initialMembers, spareMembers, weights, bucketCount, capacity: 1024, profile, flows, events, trafficEndMs };
}
