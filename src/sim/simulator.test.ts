// Named simulator scenarios: each proves one property of the cluster under one kind of fault,
// with the real ClusterNode, and prints its seed. A failing one replays with the same seed.

import { describe, expect, it } from "vitest";
import { Prng } from "../stdx/prng.js";
import type { FlowSpec } from "./hosts.js";
import { ownerOf } from "../distribution/epoch.js";
import { bucketOfView } from "../distribution/bucket-hash.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView } from "../packet/view.js";
import { packet } from "../packet/builder.js";
import { InvariantChecker, type World } from "./invariants.js";
import type { FaultProfile } from "./network.js";
import { generateFlows, scenarioOf, type Scenario, type ScenarioEvent } from "./scenario.js";
import { runSimulation, type SimResult } from "./simulator.js";
import { clusterNodeFactory } from "./default-node.js";
import { AssertionError } from "../stdx/assert.js";

const CLEAN: FaultProfile = { delayMs: 0.3, jitterMs: 0.5, lossRate: 0, duplicateRate: 0, reorderRate: 0, reorderDelayMs: 0 };
const LOSSY: FaultProfile = { delayMs: 0.3, jitterMs: 1, lossRate: 0.02, duplicateRate: 0.01, reorderRate: 0.02, reorderDelayMs: 4 };

interface Named {
  members: number;
  flows: FlowSpec[];
  events: ScenarioEvent[];
  profile?: FaultProfile;
  bucketCount?: number;
  trafficEndMs?: number;
}

function scenario(seed: number, n: Named): Scenario {
  const s = scenarioOf(seed);
  s.initialMembers = n.members;
  s.weights = s.weights.map(() => 4);
  s.bucketCount = n.bucketCount ?? 256;
  s.profile = n.profile ?? CLEAN;
  s.flows = n.flows;
  s.events = n.events;
  s.trafficEndMs = n.trafficEndMs ?? 3000;
  return s;
}

/** `count` TCP flows whose SYNs leave within 2 ms after atMs, each living `lifetimeMs` or so. */
function tcpFlows(seed: number, count: number, atMs: number, exchanges: number, thinkMs: number): FlowSpec[] {
  const prng = new Prng(seed);
  return generateFlows(prng, count, 1000).map((f, i) => ({
    ...f,
    kind: "tcp" as const,
    serverPort: 443,
    startMs: atMs + (i % 20) * 0.1,
    exchanges,
    thinkMs,
  }));
}

function run(seed: number, s: Scenario, inspect?: (w: World) => void): SimResult {
  const r = runSimulation(seed, { scenario: s, inspect });
  if (r.violationCount > 0) console.log(`seed ${seed}: replay with the same scenario;`, r.violations.slice(0, 5));
  return r;
}

describe("simulator", () => {
  it("replays a seed exactly: same trace hash and statistics (seed 3)", () => {
    const a = runSimulation(3, { trafficScale: 0.3, trafficMs: 2500 });
    const b = runSimulation(3, { trafficScale: 0.3, trafficMs: 2500 });
    expect(a.traceHash).toBe(b.traceHash);
    expect(a.stats).toEqual(b.stats);
    expect(a.log).toEqual(b.log);
    const c = runSimulation(4, { trafficScale: 0.3, trafficMs: 2500 });
    expect(c.traceHash).not.toBe(a.traceHash);
  });

  it("failover: owner dies mid-handshake, 3 members (seed 101)", () => {
    let midHandshake = 0;
    const s = scenario(101, {
      members: 3,
      flows: tcpFlows(101, 60, 1000, 3, 50),
      // SYNs leave at 1000-1002 ms; the SYN-ACKs are on their way back when m1 dies.
      events: [{ atMs: 1001.5, kind: "crash", member: "m1" }],
    });
    const r = run(101, s, (w) => {
      const crash = w.crashes[0]!;
      midHandshake = w.hosts.flows.filter((f) => f.handshakeAtMs > crash.atMs).length;
    });
    expect(r.stats.crashes).toBe(1);
    expect(midHandshake).toBeGreaterThan(10);
    expect(r.violations).toEqual([]);
    expect(r.stats.flowsFailed).toBe(0);
    expect(r.stats.flowsCompleted).toBe(60);
  });

  it("failover: owner dies with established connections, backups take over, none lost (seed 102)", () => {
    let ownedByVictim = 0;
    const s = scenario(102, {
      members: 4,
      profile: LOSSY,
      flows: tcpFlows(102, 80, 200, 6, 300),
      events: [{ atMs: 1200, kind: "crash", member: "m2" }],
    });
    const r = run(102, s, (w) => {
      ownedByVictim = w.crashes[0]!.ownedKeys.size;
    });
    expect(r.stats.crashes).toBe(1);
    expect(ownedByVictim).toBeGreaterThan(10);
    expect(r.stats.failovers).toBe(1);
    expect(r.stats.detectMsMax).toBeLessThan(100);
    expect(r.violations).toEqual([]);
    expect(r.stats.flowsCompleted).toBe(80);
  });

  it("join: 4th member fills then flips, no reset (seed 103)", () => {
    const s = scenario(103, {
      members: 3,
      profile: LOSSY,
      flows: tcpFlows(103, 80, 200, 6, 300),
      events: [{ atMs: 1000, kind: "join" }],
    });
    const r = run(103, s);
    expect(r.stats.joins).toBe(1);
    expect(r.violations).toEqual([]);
    expect(r.stats.flowsCompleted).toBe(80);
  });

  it("drain: member drained during traffic, no reset (seed 104)", () => {
    const s = scenario(104, {
      members: 4,
      profile: LOSSY,
      flows: tcpFlows(104, 80, 200, 6, 300),
      events: [{ atMs: 1000, kind: "drain" }],
    });
    const r = run(104, s);
    expect(r.stats.drains).toBe(1);
    expect(r.violations).toEqual([]);
    expect(r.stats.flowsCompleted).toBe(80);
  });

  it("partition: sync network partitioned then healed, backups converge (seed 105)", () => {
    const s = scenario(105, {
      members: 4,
      flows: tcpFlows(105, 80, 200, 6, 300),
      events: [{ atMs: 800, kind: "partition", durationMs: 700 }],
    });
    const r = run(105, s);
    expect(r.stats.partitions).toBe(1);
    expect(r.stats.convergenceChecks).toBeGreaterThan(2);
    expect(r.violations).toEqual([]);
  });

  it("failover: a member dies during a join's fill phase, the join is redone (seed 106)", () => {
    const s = scenario(106, {
      members: 4,
      bucketCount: 1024,
      flows: tcpFlows(106, 120, 200, 6, 300),
      // At offset 0 the fill phase's set-epoch is still on its way: the owner dies before it
      // sends its buckets, so the fill cannot finish and the join is abandoned.
      events: [{ atMs: 1000, kind: "crash-during-fill", offsetMs: 0 }],
    });
    const r = run(106, s);
    expect(r.stats.crashesDuringFill).toBe(1);
    expect(r.stats.aborted).toBeGreaterThanOrEqual(1);
    expect(r.stats.joins).toBe(1);
    expect(r.violations).toEqual([]);
  });

  it("join: the joining member dies during its fill, the join is abandoned and nothing else moves (seed 109)", () => {
    const s = scenario(109, {
      members: 3,
      profile: LOSSY,
      bucketCount: 1024,
      flows: tcpFlows(109, 80, 200, 6, 300),
      events: [{ atMs: 1000, kind: "crash-during-fill", joiner: true, offsetMs: 0.5 }],
    });
    const r = run(109, s);
    expect(r.stats.crashesDuringFill).toBe(1);
    expect(r.stats.aborted).toBe(1);
    expect(r.stats.joins).toBe(0);
    expect(r.stats.failovers).toBe(0);
    expect(r.log.some((l) => l.includes("aborted: joining member died"))).toBe(true);
    expect(r.violations).toEqual([]);
  });

  it("invariants can fail: with every sync datagram lost, backups hold nothing (seed 107)", () => {
    const s = scenario(107, { members: 3, flows: tcpFlows(107, 60, 200, 2, 100), events: [] });
    const r = runSimulation(107, { scenario: s, sabotage: "drop-sync" });
    expect(r.violations.some((v) => v.includes("(b) backup holds"))).toBe(true);
  });

  it("invariants can fail: with every sync datagram lost, a dead owner's connections are lost (seed 108)", () => {
    const s = scenario(108, { members: 3, flows: tcpFlows(108, 60, 200, 6, 300), events: [{ atMs: 1000, kind: "crash", member: "m1" }] });
    const r = runSimulation(108, { scenario: s, sabotage: "drop-sync" });
    expect(r.stats.crashes).toBe(1);
    expect(r.violations.some((v) => v.includes("(c) connection lost") && v.includes("no survivor held it"))).toBe(true);
  });

  it("invariants can fail: a frame gone without a counted reason, and a member processing a bucket it does not own (seed 110)", () => {
    let world: World | null = null;
    const s = scenario(110, { members: 3, flows: tcpFlows(110, 20, 200, 2, 50), events: [] });
    const r = runSimulation(110, { scenario: s, inspect: (w) => (world = w) });
    expect(r.violations).toEqual([]);
    const w = world!;
    const checker = new InvariantChecker(w, 5);
    checker.indexFlows();
    checker.periodic();
    expect(checker.violations).toEqual([]);
    w.hosts.stats.framesSent++; // a frame the accounting cannot place
    checker.periodic();
    expect(checker.violations.some((v) => v.includes("(d) packet accounting"))).toBe(true);
    // A frame processed by a member that is not its bucket's owner.
    const frame = packet().ethernet().ipv4({ src: "198.18.0.10", dst: "198.19.0.10" }).udp({ sport: 40000, dport: 53 }).build();
    const view = new PacketView();
    parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET);
    const bucket = bucketOfView(w.distributor.seed, view, w.distributor.bucketCount);
    const owner = ownerOf(w.distributor.table!, bucket);
    const intruder = w.members.find((m) => m.alive && m.name !== owner)!.name;
    checker.processed(intruder, 0, frame, bucket, 0, w.distributor.table!.epoch);
    expect(checker.violations.some((v) => v.includes(`(a) ${intruder} processed a frame`))).toBe(true);
  });

  it("reports an assertion inside the cluster code as a violation of the seed, not a crash of the sweep (seed 111)", () => {
    const s = scenario(111, { members: 3, flows: tcpFlows(111, 10, 200, 2, 50), events: [] });
    const r = runSimulation(111, {
      scenario: s,
      nodeFactory: (o, now) => {
        const node = clusterNodeFactory(o, now);
        const tick = node.tick.bind(node);
        node.tick = (t) => {
          if (o.name === "m2" && t > 400) throw new AssertionError("planted");
          tick(t);
        };
        return node;
      },
    });
    expect(r.violationCount).toBe(1);
    expect(r.violations[0]).toMatch(/^t=40\d\.\d+ms exception: AssertionError: planted/);
  });
});
