// ClusterNode behaviours the simulator found that break the cluster's guarantees, each reduced
// (where done) to a few nodes driven by hand: no network faults, datagrams delivered at once and
// in order. Every test states what it expects by the design (DESIGN.md, the ClusterNode contract)
// and fails while the behaviour is there; the fixed ones stay as regression tests. Simulator
// seeds that hit each are named in the test (the node's version by the time of day it was seen).

import { describe, expect, it } from "vitest";
import { createEpochTable, ownerOf, backupOf, type EpochTable } from "../distribution/epoch.js";
import type { MemberWeight } from "../distribution/rendezvous.js";
import { extraBackupsOf, planFailure, planJoin, type TransitionPlan } from "../distribution/transition.js";
import { bucketOfView } from "../distribution/bucket-hash.js";
import { DROP_REASON_NAMES, Verdict } from "../engine/types.js";
import { ClusterNode } from "../hypersync/cluster-node.js";
import { packet } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView } from "../packet/view.js";
import { Prng } from "../stdx/prng.js";
import { runSimulation } from "./simulator.js";
import { conversation } from "./traffic.js";

const SEED = 0x5eed1234;
const KEY = new Uint8Array(32).fill(7);
const BUCKETS = 64;
const MEMBERS: MemberWeight[] = [
  { id: "m1", weight: 4 },
  { id: "m2", weight: 4 },
];
const JOINER: MemberWeight = { id: "m3", weight: 4 };

/** Three nodes with instant, lossless sync between them. */
class Cluster {
  nowMs = 0;
  readonly nodes = new Map<string, ClusterNode>();
  readonly peers = new Map<string, number>([
    ["m1", 1],
    ["m2", 2],
    ["m3", 3],
  ]);

  constructor() {
    for (const [name, memberId] of this.peers) {
      this.nodes.set(name, new ClusterNode({ name, memberId, clusterId: 1, clusterKey: KEY, hashSeed: SEED, capacity: 1024, session: 1 }, 0));
    }
  }

  node(name: string): ClusterNode {
    return this.nodes.get(name)!;
  }

  /** Delivers every outbox datagram (and what the deliveries produce) at once, in order. */
  pump(): void {
    for (let round = 0; round < 1000; round++) {
      let moved = 0;
      for (const [from, n] of this.nodes) {
        for (const d of n.outbox.splice(0)) {
          // A datagram to a dead (removed) node is lost.
          this.nodes.get(d.to)?.receiveSync(from, d.bytes, d.bytes.length, this.nowMs);
          moved++;
        }
      }
      if (moved === 0) return;
    }
    throw new Error("sync did not quiesce");
  }

  /** Advances the clock to `toMs`, running every node's timers when due. */
  advance(toMs: number): void {
    for (let guard = 0; guard < 10_000_000; guard++) {
      let next = Infinity;
      for (const n of this.nodes.values()) next = Math.min(next, n.nextDeadlineMs());
      if (next > toMs) break;
      this.nowMs = Math.max(this.nowMs, next);
      for (const n of this.nodes.values()) if (n.nextDeadlineMs() <= this.nowMs) n.tick(this.nowMs);
      this.pump();
    }
    this.nowMs = toMs;
  }

  setEpoch(names: string[], table: EpochTable, fill: ReadonlyMap<number, readonly string[]>): void {
    for (const name of names) this.node(name).setEpoch(table, fill, this.peers, this.nowMs);
    this.pump();
  }

  /** A frame through one node: verdict and drop reason. */
  frame(name: string, frame: Uint8Array): { verdict: number; reason: string; correctTo: string | null } {
    const n = this.node(name);
    const verdict = n.receiveFrame(frame, 0, frame.length, LinkType.ETHERNET, this.nowMs);
    this.pump();
    return { verdict, reason: DROP_REASON_NAMES[n.dropReason]!, correctTo: n.correctTo };
  }

  /** Roles of the nodes that hold the connection with client port `port`. */
  holders(port: number): string[] {
    const out: string[] = [];
    for (const [name, n] of this.nodes) n.forEachConnection((_b, s, role) => (s.srcPort === port || s.dstPort === port ? out.push(`${name}:${role}`) : 0));
    return out.sort();
  }
}

const view = new PacketView();

function bucketOfFrame(frame: Uint8Array): number {
  parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET);
  return bucketOfView(SEED, view, BUCKETS);
}

function udp(fromClient: boolean, port: number): Uint8Array {
  const b = packet().ethernet();
  return (fromClient
    ? b.ipv4({ src: "198.18.0.10", dst: "198.19.0.10" }).udp({ sport: port, dport: 53 })
    : b.ipv4({ src: "198.19.0.10", dst: "198.18.0.10" }).udp({ sport: 53, dport: port })
  )
    .payload(new Uint8Array(20))
    .build();
}

function tcp(port: number, flags: string, seq: number, ack = 0): Uint8Array {
  const fromClient = flags === "S" || flags === "A";
  const b = packet().ethernet();
  return (fromClient ? b.ipv4({ src: "198.18.0.10", dst: "198.19.0.10" }) : b.ipv4({ src: "198.19.0.10", dst: "198.18.0.10" }))
    .tcp({
      sport: fromClient ? port : 443,
      dport: fromClient ? 443 : port,
      flags,
      seq,
      ack,
      window: 64240,
      options: flags.includes("S") ? { mss: 1460, wscale: 7 } : undefined,
    })
    .build();
}

/**
 * A client port whose flow (UDP, or TCP to 443) lands in a bucket owned by m1 before m3 joins
 * and by m3 after, with m1 as backup.
 */
function portMovingToJoiner(first: EpochTable, plan: TransitionPlan, protocol: "udp" | "tcp"): number {
  for (let port = 20000; port < 30000; port++) {
    const b = bucketOfFrame(protocol === "udp" ? udp(true, port) : tcp(port, "S", 1));
    if (ownerOf(first, b) === "m1" && ownerOf(plan.final, b) === "m3" && backupOf(plan.final, b) === "m1") return port;
  }
  throw new Error("no port found");
}

function joinSetup(): { c: Cluster; first: EpochTable; plan: TransitionPlan } {
  const c = new Cluster();
  const first = createEpochTable(MEMBERS, SEED, { bucketCount: BUCKETS });
  c.setEpoch(["m1", "m2"], first, new Map());
  c.advance(100); // the sync channels come up
  return { c, first, plan: planJoin(first, JOINER) };
}

/** Runs the join's fill phase to completion (every fill reported), but not the flip. */
function fill(c: Cluster, plan: TransitionPlan): void {
  const phase = plan.phases[0]!;
  c.setEpoch(["m1", "m2", "m3"], phase.table, extraBackupsOf(phase));
  c.advance(c.nowMs + 50);
  expect(c.node("m3").filled.size).toBe(phase.moves.length);
}

describe("ClusterNode findings (simulator)", () => {
  // Simulator seeds 69, 78, 99, 117, 130, 131, 134, 154, 167, 213, 248, 286 with the node of
  // 11:05: "(b) backup holds ... 0 times" for a connection closed by RST before a join (the new
  // owner kept the fill copy's expiry grace). Fixed in the node since; kept as a regression test.
  it("after a join's flip, the old owner (now backup) keeps a connection as long as the new owner does", () => {
    const { c, first, plan } = joinSetup();
    const port = portMovingToJoiner(first, plan, "udp");
    expect(c.frame("m1", udp(true, port)).verdict).toBe(Verdict.FORWARD);
    c.advance(c.nowMs + 300); // unreplied connections are replicated after a deferral
    expect(c.holders(port)).toEqual(["m1:owner", "m2:backup"]);
    fill(c, plan);
    c.setEpoch(["m1", "m2", "m3"], plan.final, new Map());
    c.advance(c.nowMs + STALE_SWEEP_MS);
    expect(c.holders(port)).toEqual(["m1:backup", "m3:owner"]);
    // UDP_UNREPLIED expires 30 s after the packet. The new owner's copy came from the fill, with
    // the backup's expiry grace added; the old owner kept its own expiry. So there is a time when
    // the owner holds the connection and its backup does not: a packet then refreshes it at the
    // owner only, and the owner's failure would lose it.
    // Sampled every 100 ms; the two expiry sweeps may be one housekeeping run apart, so a
    // disagreement counts when it lasts two samples.
    const disagreements: string[] = [];
    let previous = false;
    for (let t = 29_100; t <= 34_100; t += 100) {
      c.advance(t);
      const h = c.holders(port);
      const disagree = h.includes("m3:owner") !== h.includes("m1:backup");
      if (disagree && previous) disagreements.push(`t=${t}: ${h.join(",") || "nobody"}`);
      previous = disagree;
    }
    expect(disagreements).toEqual([]);
  });

  // Simulator seeds 186, 299 with the node of 11:05: a UDP connection created by the old owner
  // during the switch was missing at the new owner, which re-created it from the reply (server as
  // originator). For TCP the SYN-ACK is dropped as tcp-new-not-syn. The node's own setEpoch
  // comment says records from a peer one epoch behind matter ("the old owner's last live
  // updates, stragglers it processed"), but onRecord ignored every record for an owned bucket.
  // Fixed in the node since; kept as a regression test.
  it("a new owner applies the previous owner's CREATE for a connection it does not hold yet", () => {
    const { c, first, plan } = joinSetup();
    const port = portMovingToJoiner(first, plan, "tcp");
    fill(c, plan);
    // m3 learns the flip first; m1 still routes by the old epoch for a moment and takes a new
    // flow (a frame the distributor sent before its switch, or a correction from m3).
    c.setEpoch(["m3"], plan.final, new Map());
    expect(c.frame("m1", tcp(port, "S", 1000)).verdict).toBe(Verdict.FORWARD);
    c.advance(c.nowMs + 5); // m1's CREATE reaches m2 (backup) and m3 (fill target, now owner)
    c.setEpoch(["m1", "m2"], plan.final, new Map());
    // The SYN-ACK reaches the new owner: it must know the connection.
    expect(c.frame("m3", tcp(port, "SA", 5000, 1001))).toEqual({ verdict: Verdict.FORWARD, reason: "none", correctTo: null });
  });

  // Simulator seeds 69 (and 248 with an earlier node): "(c) connection lost ... packet dropped
  // by m7 as tcp-out-of-window" right after a join made m7 the owner. The filled copy's TCP
  // windows are those of the last CREATE/UPDATE; data the old owner forwarded since (no state
  // change, so no record) moved td_end on. The promoted copy re-learns its windows from the
  // first segment it sees — here a late duplicate — and then drops the client's ACK of data
  // beyond the copy's td_end. The flow recovered only because the server
  // retransmitted its response; a cluster must not drop a valid segment of an established
  // connection in the first place. Fixed in the node (12:10); kept as a regression test.
  it("a connection moved by a join passes the next segment, whatever data the old owner forwarded since its last record", () => {
    const { c, first, plan } = joinSetup();
    const port = portMovingToJoiner(first, plan, "tcp");
    fill(c, plan);
    const frames = conversation({
      kind: "tcp",
      client: { address: "198.18.0.10", port },
      server: { address: "198.19.0.10", port: 443 },
      startMs: 0,
      exchanges: 3,
      gapMs: 1,
      prng: new Prng(5),
    });
    // conversation(): SYN, SYN-ACK, ACK, then per exchange request, response, ACK; then the close.
    // The old owner forwards the handshake, the first request and its response.
    for (const f of frames.slice(0, 5)) expect(c.frame("m1", f.frame).verdict).toBe(Verdict.FORWARD);
    c.advance(c.nowMs + 5); // every record the old owner sends has arrived
    c.setEpoch(["m1", "m2", "m3"], plan.final, new Map());
    // The first segment the new owner sees is a late duplicate of the handshake's ACK (the
    // network reordered it), then the client's ACK of the response.
    const late = frames[2]!.frame.slice();
    const outcomes = [{ frame: 2, ...c.frame("m3", late) }, ...frames.slice(5).map((f, i) => ({ frame: i + 5, ...c.frame("m3", f.frame) }))];
    expect(outcomes.filter((o) => o.verdict !== Verdict.FORWARD)).toEqual([]);
  });

  // Simulator seeds 1178, 1473, 1494, 1555, 1628, 1707, 1776 (node of 12:10): "(c) connection
  // lost ... packet dropped by m4 as tcp-out-of-window ... its owner m5 crashed ... and a survivor
  // held it". The same window lag as above, on failover: the old owner forwarded the client's
  // request and the server's response, then died; the backup's copy has the windows of the
  // handshake. The server retransmits its response (it acknowledges the request, which the copy
  // never saw) and the promoted backup drops it.
  it("after a failover, the promoted backup passes a retransmission that acknowledges data only the dead owner saw", () => {
    const c = new Cluster();
    const first = createEpochTable(MEMBERS, SEED, { bucketCount: BUCKETS });
    c.setEpoch(["m1", "m2"], first, new Map());
    c.advance(100);
    let port = 20000;
    while (ownerOf(first, bucketOfFrame(tcp(port, "S", 1))) !== "m1") port++;
    const frames = conversation({
      kind: "tcp",
      client: { address: "198.18.0.10", port },
      server: { address: "198.19.0.10", port: 443 },
      startMs: 0,
      exchanges: 2,
      gapMs: 1,
      prng: new Prng(9),
    });
    // Handshake at m1, replicated to m2 (the completed handshake is sent at once).
    for (const f of frames.slice(0, 3)) expect(c.frame("m1", f.frame).verdict).toBe(Verdict.FORWARD);
    c.advance(c.nowMs + 10);
    expect(c.holders(port)).toEqual(["m1:owner", "m2:backup"]);
    // Request and response through m1, which dies right after (no record for them: no state change).
    for (const f of frames.slice(3, 5)) expect(c.frame("m1", f.frame).verdict).toBe(Verdict.FORWARD);
    c.nodes.delete("m1");
    // The distributor has switched (promote epoch) before m2 learns it: m2 processes the frames
    // of the bucket it backs up (the contract). The response's ACK was lost: the server
    // retransmits the response, then the client ACKs it.
    const outcomes = [{ frame: 4, ...c.frame("m2", frames[4]!.frame.slice()) }];
    c.setEpoch(["m2"], planFailure(first, "m1").phases[0]!.table, new Map());
    outcomes.push({ frame: 5, ...c.frame("m2", frames[5]!.frame.slice()) });
    expect(outcomes.filter((o) => o.verdict !== Verdict.FORWARD)).toEqual([]);
  });

  // Simulator seeds 1178, 1473, 1494, 1555, 1628, 1707, 1776 (node of 12:10), not reduced to a
  // hand-driven case yet. Seed 1473: flow 81 (handshake at 528.9 ms, owner m2, backup m1, the
  // copy reached m1 through re-protection bulks after earlier failures); m2 crashes at 6752;
  // before m1 learns the promote epoch the distributor sends it the client's next request
  // (seq 169227109, ack 3241029803, 380 bytes), whose ACK covers server data the copy never saw;
  // m1 promotes the connection and drops the segment as tcp-out-of-window at 6821.74. The hand-
  // driven failover above (copy from live records) passes: the bulk-copy path differs.
  it("simulator seed 1473: a failover never drops a segment of an established connection", () => {
    const r = runSimulation(1473);
    expect(r.violations).toEqual([]);
  });

  // Simulator seed 137 (node of 12:28), the drain form: m7 drains; its bucket's backup m1 becomes
  // the owner. Before m1 learns the flip epoch, the distributor sends it the client's
  // retransmitted request (seq 3651983670, ack 1787458834, 249 bytes) whose ACK covers the
  // response m7 forwarded at 4321.6 without a record; m1 drops it as tcp-out-of-window at
  // 4432.89. In a drain the backup becomes the owner, but unlike a fill target it is not sent
  // every change during the transition.
  it("simulator seed 137: a drain never drops a segment of an established connection", () => {
    const r = runSimulation(137);
    expect(r.violations).toEqual([]);
  });
});

/** Long enough for housekeeping to forget stale copies (STALE_HOLD_MS and a sweep). */
const STALE_SWEEP_MS = 1500;
