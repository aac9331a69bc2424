import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { ClusterNode, BACKUP_EXPIRY_GRACE_MS, STALE_HOLD_MS, SYNC_DEFER_MS, SYNC_LAZY_MS, type ClusterNodeOptions, type ConnectionRole } from "./cluster-node.js";
import { createEpochTable, ownerOf, backupOf, type EpochTable } from "../distribution/epoch.js";
import { bucketOfView } from "../distribution/bucket-hash.js";
import { extraBackupsOf, planDrain, planFailure, planJoin, type TransitionPhase } from "../distribution/transition.js";
import { conversation, type ConversationKind, type TimedFrame } from "../sim/traffic.js";
import { parseFrame } from "../packet/parse.js";
import { flowHashOfKey } from "../packet/flow-hash.js";
import { LinkType, PacketView } from "../packet/view.js";
import { Engine } from "../engine/engine.js";
import { ConnState, DropReason, Verdict, type ConnectionSnapshot } from "../engine/types.js";
import { Prng } from "../stdx/prng.js";
import { TandemError } from "../stdx/errors.js";
import { SyncChannel, type ChannelPort } from "./channel.js";
import { MacKey } from "./datagram.js";
import { FLUSH_INTERVAL_MS } from "./constants.js";
import {
  encodeBulkBegin,
  encodeBulkEnd,
  encodeCreate,
  encodeDelete,
  encodeDigestList,
  encodeRefresh,
  encodeResyncRequest,
  encodeUpdate,
  RecordKind,
} from "./records.js";

/** Long enough for every change, deferred ones included, to reach the targets. */
const SETTLE_MS = SYNC_DEFER_MS + SYNC_LAZY_MS + 5;

const SEED = 20261129;
const HASH_SEED = 0x5eed1234;
const BUCKETS = 64;
const CLUSTER_ID = 9;
const KEY = new Uint8Array(32).fill(0x42);
const START_MS = 1_000_000;

console.log(`cluster-node tests seed=${SEED}`);

interface InFlight {
  atMs: number;
  order: number;
  from: string;
  to: string;
  bytes: Uint8Array;
}

/**
 * A tiny deterministic cluster: nodes, a list of in-flight sync datagrams (fixed delay,
 * seeded loss), a virtual clock, and a "distributor" that sends a frame to its bucket's owner
 * by the distributor's epoch and follows corrections.
 */
class Cluster {
  readonly nodes = new Map<string, ClusterNode>();
  readonly down = new Set<string>();
  nowMs = START_MS;
  loss = 0;
  delayMs = 0.1;
  epoch: EpochTable | null = null;
  readonly prng: Prng;
  private inFlight: InFlight[] = [];
  private order = 0;
  private readonly sessions = new Map<string, number>();
  private readonly ids = new Map<string, number>();

  constructor(seed: number) {
    this.prng = new Prng(seed);
  }

  add(name: string, extra: Partial<ClusterNodeOptions> = {}): ClusterNode {
    if (!this.ids.has(name)) this.ids.set(name, this.ids.size + 1);
    const session = (this.sessions.get(name) ?? 0) + 1;
    this.sessions.set(name, session);
    const node = new ClusterNode(
      { name, memberId: this.ids.get(name)!, clusterId: CLUSTER_ID, clusterKey: KEY, hashSeed: HASH_SEED, capacity: 512, session, ...extra },
      this.nowMs,
    );
    this.nodes.set(name, node);
    this.down.delete(name);
    return node;
  }

  node(name: string): ClusterNode {
    return this.nodes.get(name)!;
  }

  live(): ClusterNode[] {
    return [...this.nodes.values()].filter((n) => !this.down.has(n.name));
  }

  kill(name: string): void {
    this.down.add(name);
    this.inFlight = this.inFlight.filter((d) => d.to !== name && d.from !== name);
  }

  peers(): Map<string, number> {
    const out = new Map<string, number>();
    for (const n of this.live()) out.set(n.name, n.memberId);
    return out;
  }

  /** Installs a table (and fill map) on every live node and on the distributor. */
  install(epoch: EpochTable, fill: ReadonlyMap<number, readonly string[]> = new Map()): void {
    const peers = this.peers();
    for (const n of this.live()) {
      n.setEpoch(epoch, fill, peers, this.nowMs);
      this.collect(n);
    }
    this.epoch = epoch;
  }

  installPhase(phase: TransitionPhase): void {
    this.install(phase.table, extraBackupsOf(phase));
  }

  /** Moves a node's outbox onto the network (after every call into the node). */
  collect(n: ClusterNode): void {
    for (const d of n.outbox.splice(0)) {
      if (this.down.has(d.to) || this.prng.chance(this.loss)) continue;
      this.inFlight.push({ atMs: this.nowMs + this.delayMs, order: this.order++, from: n.name, to: d.to, bytes: d.bytes });
    }
  }

  /** Advances virtual time by `durationMs`, delivering datagrams and running timers at their deadlines. */
  run(durationMs: number): void {
    const end = this.nowMs + durationMs;
    for (let guard = 0; guard < 2_000_000; guard++) {
      let next = Infinity;
      for (const n of this.live()) next = Math.min(next, n.nextDeadlineMs());
      for (const d of this.inFlight) next = Math.min(next, d.atMs);
      if (next > end) {
        this.nowMs = end;
        return;
      }
      this.nowMs = Math.max(this.nowMs, next);
      this.step();
    }
    throw new Error("the cluster did not settle (a deadline that never moves?)");
  }

  private step(): void {
    const due = this.inFlight.filter((d) => d.atMs <= this.nowMs).sort((a, b) => a.atMs - b.atMs || a.order - b.order);
    this.inFlight = this.inFlight.filter((d) => d.atMs > this.nowMs);
    for (const d of due) {
      if (this.down.has(d.to)) continue;
      const n = this.node(d.to);
      n.receiveSync(d.from, d.bytes, d.bytes.length, this.nowMs);
      this.collect(n);
    }
    for (const n of this.live()) {
      if (n.nextDeadlineMs() <= this.nowMs) {
        n.tick(this.nowMs);
        this.collect(n);
      }
    }
  }

  /** Sends a frame to its owner by the distributor's epoch and follows corrections. */
  deliver(frame: Uint8Array): { node: ClusterNode; verdict: number; dropReason: number; corrections: number } {
    let target = ownerOf(this.epoch!, bucketOfFrame(frame));
    for (let hops = 0; hops < 4; hops++) {
      const n = this.node(target);
      const verdict = n.receiveFrame(frame, 0, frame.length, LinkType.ETHERNET, this.nowMs);
      this.collect(n);
      if (n.correctTo === null) return { node: n, verdict, dropReason: n.dropReason, corrections: hops };
      target = n.correctTo;
    }
    throw new Error("correction loop");
  }
}

const scratchView = new PacketView();
function bucketOfFrame(frame: Uint8Array): number {
  expect(parseFrame(scratchView, frame, 0, frame.length, LinkType.ETHERNET)).toBe(true);
  return bucketOfView(HASH_SEED, scratchView, BUCKETS);
}

function members(...names: string[]) {
  return names.map((id) => ({ id, weight: 1 }));
}

let port = 20000;
function tcpConversation(prng: Prng, exchanges: number, kind: ConversationKind = "tcp"): TimedFrame[] {
  port++;
  const v6 = kind === "tcp6";
  return conversation({
    kind,
    client: { address: v6 ? "2001:db8:c::10" : `198.18.0.${1 + (port % 200)}`, port },
    server: { address: v6 ? "2001:db8:5::10" : "198.19.0.10", port: 443 },
    startMs: 0,
    exchanges,
    gapMs: 1,
    prng,
  });
}

interface Copy {
  key: string;
  state: number;
  seenReply: boolean;
  assured: boolean;
  role: ConnectionRole;
  bucket: number;
}

function keyText(s: ConnectionSnapshot): string {
  return `${s.zone}/${s.protocol}/${s.src.join(".")}:${s.srcPort}>${s.dst.join(".")}:${s.dstPort}`;
}

function copies(node: ClusterNode): Map<string, Copy> {
  const out = new Map<string, Copy>();
  node.forEachConnection((bucket, s, role) => out.set(keyText(s), { key: keyText(s), state: s.state, seenReply: s.seenReply, assured: s.assured, role, bucket }));
  return out;
}

/** Every owner's connections are held by its backup with equal key and state; digests agree. */
function expectReplicated(cluster: Cluster): number {
  const epoch = cluster.epoch!;
  const byName = new Map(cluster.live().map((n) => [n.name, copies(n)]));
  let checked = 0;
  for (const owner of cluster.live()) {
    owner.verifyBookkeeping();
    for (const c of byName.get(owner.name)!.values()) {
      if (c.role !== "owner") continue;
      const backup = backupOf(epoch, c.bucket);
      if (backup === null) continue;
      const copy = byName.get(backup)!.get(c.key);
      expect(copy, `${backup} holds ${c.key}`).toBeDefined();
      expect({ state: copy!.state, seenReply: copy!.seenReply, assured: copy!.assured }).toEqual({ state: c.state, seenReply: c.seenReply, assured: c.assured });
      checked++;
    }
  }
  for (let b = 0; b < BUCKETS; b++) {
    const backup = backupOf(epoch, b);
    if (backup === null) continue;
    const owner = cluster.node(ownerOf(epoch, b));
    expect(owner.verifyAgainst(cluster.node(backup).allBucketDigests(), [b]), `bucket ${b}`).toEqual([]);
  }
  return checked;
}

function twoNodes(seed: number): Cluster {
  const cluster = new Cluster(seed);
  cluster.add("a");
  cluster.add("b");
  cluster.install(createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS }));
  return cluster;
}

describe("ClusterNode: ownership and replication", () => {
  it("owner processes and its backup holds an equal copy after sync (TCP, TCP6, UDP, ICMP)", () => {
    const cluster = twoNodes(SEED);
    const prng = new Prng(SEED);
    const convos = [
      tcpConversation(prng, 3),
      tcpConversation(prng, 2, "tcp6"),
      conversation({ kind: "udp", client: { address: "198.18.1.1", port: 5353 }, server: { address: "198.19.0.53", port: 53 }, startMs: 0, exchanges: 2, gapMs: 1, prng }),
      conversation({ kind: "icmp", client: { address: "198.18.1.2", port: 77 }, server: { address: "198.19.0.9", port: 0 }, startMs: 0, exchanges: 2, gapMs: 1, prng }),
    ];
    // Handshake (and the first exchanges), not the close: connections stay established.
    for (const convo of convos) {
      for (const f of convo.slice(0, convo.length - 3)) {
        const r = cluster.deliver(f.frame);
        expect(r.verdict).toBe(Verdict.FORWARD);
        expect(r.corrections).toBe(0);
        cluster.run(0.5);
      }
    }
    // Completed handshakes (TCP established) go out within the flush interval; the unanswered
    // UDP and ICMP flows wait for the deferral.
    cluster.run(5);
    const a = cluster.node("a");
    const b = cluster.node("b");
    expect(a.engine.table.size + b.engine.table.size).toBe(2 * 4 - 2);
    cluster.run(SETTLE_MS);
    expect(a.engine.table.size + b.engine.table.size).toBe(2 * 4);
    expect(expectReplicated(cluster)).toBe(4);
    // Every connection is held twice: by its owner and by the other node as backup.
    for (const n of [a, b]) for (const c of copies(n).values()) expect(["owner", "backup"]).toContain(c.role);
    expect(a.counters.createsSent + b.counters.createsSent).toBe(4);
    const exported: Record<string, number> = a.counters; // the simulator's view of the counters
    expect(exported.corrections).toBe(0);
    expect(a.counters.syncRecordsApplied + b.counters.syncRecordsApplied).toBeGreaterThanOrEqual(4);

    // The FIN close is replicated (TIME_WAIT on both: FIN_WAIT and LAST_ACK coalesce away)...
    const updates = a.counters.updatesSent + b.counters.updatesSent;
    for (const f of convos[0]!.slice(-3)) expect(cluster.deliver(f.frame).verdict).toBe(Verdict.FORWARD);
    cluster.run(SETTLE_MS);
    expect(a.counters.updatesSent + b.counters.updatesSent).toBe(updates + 1);
    expect(expectReplicated(cluster)).toBe(4);
    expect([...copies(a).values(), ...copies(b).values()].filter((c) => c.state === ConnState.TCP_TIME_WAIT).length).toBe(2);
    // ...and a reset connection (CLOSE, 10 s) ends on both: the owner's expiry sweep removes
    // it and sends DELETE, long before the backup's own (graced) expiry.
    deliverAll(cluster, tcpConversation(prng, 1, "tcp-reset"));
    cluster.run(SETTLE_MS);
    expect([...copies(a).values(), ...copies(b).values()].filter((c) => c.state === ConnState.TCP_CLOSE).length).toBe(2);
    const deletes = a.counters.deletesSent + b.counters.deletesSent;
    cluster.run(10_000 + 50);
    expect([...copies(a).values(), ...copies(b).values()].filter((c) => c.state === ConnState.TCP_CLOSE)).toEqual([]);
    expect(a.counters.deletesSent + b.counters.deletesSent).toBe(deletes + 1);
  });

  it("corrects a frame that reaches a non-owner without a copy, and processes one with a copy (promotion)", () => {
    const cluster = twoNodes(SEED + 1);
    const prng = new Prng(SEED + 1);
    const convo = tcpConversation(prng, 2);
    const bucket = bucketOfFrame(convo[0]!.frame);
    const owner = cluster.node(ownerOf(cluster.epoch!, bucket));
    const other = cluster.node(backupOf(cluster.epoch!, bucket)!);

    const packetsBefore = other.engine.counters.packets;
    const verdict = other.receiveFrame(convo[0]!.frame, 0, convo[0]!.frame.length, LinkType.ETHERNET, cluster.nowMs);
    expect(verdict).toBe(Verdict.FORWARD);
    expect(other.correctTo).toBe(owner.name);
    expect(other.bucket).toBe(bucket);
    expect(other.dropReason).toBe(DropReason.NONE);
    expect(other.counters.corrections).toBe(1);
    expect(other.engine.counters.packets).toBe(packetsBefore);

    // Through the owner: the backup gets a copy and then processes the flow's packets itself.
    for (const f of convo.slice(0, 3)) cluster.deliver(f.frame);
    cluster.run(5);
    const f = convo[3]!.frame;
    expect(other.receiveFrame(f, 0, f.length, LinkType.ETHERNET, cluster.nowMs)).toBe(Verdict.FORWARD);
    expect(other.correctTo).toBeNull();
    expect(other.counters.promotions).toBe(1);
    expect(other.counters.corrections).toBe(1);
  });

  it("drops frames before the first epoch and never throws on arbitrary frame or sync bytes", () => {
    const lonely = new ClusterNode({ name: "x", memberId: 1, clusterId: CLUSTER_ID, clusterKey: KEY, hashSeed: HASH_SEED, capacity: 64, session: 1 }, 0);
    const frame = tcpConversation(new Prng(3), 0)[0]!.frame;
    expect(lonely.receiveFrame(frame, 0, frame.length, LinkType.ETHERNET, 1)).toBe(Verdict.DROP);
    expect(lonely.dropReason).toBe(DropReason.NOT_OWNER);
    const cluster = twoNodes(SEED + 2);
    const a = cluster.node("a");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1600 }), fc.integer({ min: 0, max: 3 }), (bytes, kind) => {
        const linkType = [LinkType.ETHERNET, LinkType.RAW, LinkType.IPV4, LinkType.IPV6][kind]!;
        a.receiveFrame(bytes, 0, bytes.length, linkType, cluster.nowMs);
        a.receiveSync("b", bytes, bytes.length, cluster.nowMs);
        a.receiveSync("nobody", bytes, bytes.length, cluster.nowMs);
      }),
      { seed: SEED, numRuns: 300 },
    );
    a.verifyBookkeeping();
  });

  it("never throws on authentic records with arbitrary field values", () => {
    const epoch = createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS });
    const b = new ClusterNode({ name: "b", memberId: 2, clusterId: CLUSTER_ID, clusterKey: KEY, hashSeed: HASH_SEED, capacity: 256, session: 1 }, 0);
    b.setEpoch(epoch, new Map(), new Map([["a", 1], ["b", 2]]), 0);
    const wire: Uint8Array[] = [];
    const port: ChannelPort = { send: (bytes, offset, length) => wire.push(bytes.slice(offset, offset + length)), deliver: () => {}, event: () => {} };
    const a = new SyncChannel({ clusterId: CLUSTER_ID, localId: 1, peerId: 2, session: 1, key: new MacKey(KEY) }, port, 0);
    a.setEpoch(epoch.epoch, 0);
    const direction = fc.record({
      end: fc.nat({ max: 0xffffffff }),
      maxEnd: fc.nat({ max: 0xffffffff }),
      maxWindow: fc.nat({ max: 0xffffffff }),
      scale: fc.integer({ min: 0, max: 14 }),
      flags: fc.nat({ max: 255 }),
    });
    const record = fc.record({
      kind: fc.constantFrom(RecordKind.CREATE, RecordKind.UPDATE, RecordKind.DELETE, RecordKind.REFRESH, RecordKind.BULK_BEGIN, RecordKind.BULK_END, RecordKind.RESYNC_REQUEST, RecordKind.DIGEST_REQUEST),
      v6: fc.boolean(),
      protocol: fc.constantFrom(1, 6, 17, 58, 50),
      zone: fc.nat({ max: 3 }),
      ports: fc.tuple(fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff })),
      state: fc.nat({ max: 15 }),
      remainingMs: fc.nat({ max: 0xffffffff }),
      tcp: fc.option(fc.tuple(direction, direction)),
      windows: fc.boolean(),
      bucket: fc.nat({ max: 0xffffffff }),
      seed: fc.nat(),
    });
    const buf = new Uint8Array(1400);
    let nowMs = 0;
    fc.assert(
      fc.property(fc.array(record, { maxLength: 30 }), (records) => {
        for (const r of records) {
          const p = new Prng(r.seed);
          const length = r.v6 ? 16 : 4;
          const src = Uint8Array.from({ length }, () => p.nextInt(256));
          const dst = Uint8Array.from({ length }, () => p.nextInt(256));
          const s: ConnectionSnapshot = {
            zone: r.zone, protocol: r.protocol, src, dst, srcPort: r.ports[0], dstPort: r.ports[1], state: r.state as ConnState,
            expiresAtMs: nowMs + (r.remainingMs % 1e9), seenReply: p.chance(0.5), assured: p.chance(0.5),
            tcp: r.tcp === null ? null : { original: r.tcp[0], reply: r.tcp[1] },
          };
          // Records that name a connection carry no bucket (the receiver derives it); the others
          // name buckets in and out of range.
          const bucket = r.bucket % (BUCKETS * 2);
          let end: number;
          switch (r.kind) {
            case RecordKind.CREATE: end = encodeCreate(buf, 0, buf.length, s, nowMs, r.windows); break;
            case RecordKind.UPDATE: end = encodeUpdate(buf, 0, buf.length, s, nowMs, r.windows); break;
            case RecordKind.DELETE: end = encodeDelete(buf, 0, buf.length, s); break;
            case RecordKind.REFRESH: end = encodeRefresh(buf, 0, buf.length, s, r.remainingMs % 1e9); break;
            case RecordKind.BULK_BEGIN: end = encodeBulkBegin(buf, 0, buf.length, bucket, r.state, r.remainingMs); break;
            case RecordKind.BULK_END: end = encodeBulkEnd(buf, 0, buf.length, bucket, r.state, r.remainingMs); break;
            case RecordKind.RESYNC_REQUEST: end = encodeResyncRequest(buf, 0, buf.length, bucket); break;
            default: end = encodeDigestList(buf, 0, buf.length, RecordKind.DIGEST_REQUEST, [bucket], [r.bucket], 0, 1);
          }
          a.enqueue(buf, 0, end, nowMs);
        }
        nowMs += 2;
        a.tick(nowMs);
        for (const d of wire.splice(0)) b.receiveSync("a", d, d.length, nowMs);
        b.tick(nowMs);
        b.outbox.length = 0;
      }),
      { seed: SEED, numRuns: 200 },
    );
    b.verifyBookkeeping();
    expect(b.counters.syncRecordsApplied).toBeGreaterThan(0);
    expect(b.counters.recordsInvalid).toBeGreaterThan(0);
  });

  it("counts and ignores a datagram with a bad MAC", () => {
    const cluster = twoNodes(SEED + 3);
    const a = cluster.node("a");
    const b = cluster.node("b");
    const convo = tcpConversation(new Prng(SEED + 3), 0);
    const bucket = bucketOfFrame(convo[0]!.frame);
    const owner = ownerOf(cluster.epoch!, bucket) === "a" ? a : b;
    const backup = owner === a ? b : a;
    // The handshake's last ACK completes it: its CREATE goes out within the flush interval.
    for (const f of convo.slice(0, 3)) owner.receiveFrame(f.frame, 0, f.frame.length, LinkType.ETHERNET, cluster.nowMs);
    owner.tick(cluster.nowMs + 1);
    const datagram = owner.outbox.splice(0).find((d) => d.to === backup.name)!;
    expect(datagram).toBeDefined();
    const forged = datagram.bytes.slice();
    forged[forged.length - 12] = forged[forged.length - 12]! ^ 0xff; // a payload byte
    const before = backup.counters.badDatagrams;
    backup.receiveSync(owner.name, forged, forged.length, cluster.nowMs + 1);
    expect(backup.counters.badDatagrams).toBe(before + 1);
    expect(backup.engine.table.size).toBe(0);
    backup.receiveSync(owner.name, datagram.bytes, datagram.bytes.length, cluster.nowMs + 1);
    expect(backup.engine.table.size).toBe(1);
    expect(backup.counters.badDatagrams).toBe(before + 1);
  });

  it("keeps a backup copy alive while the owner refreshes it, and deletes it when the owner expires it", () => {
    const cluster = twoNodes(SEED + 4);
    const prng = new Prng(SEED + 4);
    const udp = conversation({ kind: "udp", client: { address: "198.18.2.1", port: 4000 }, server: { address: "198.19.2.1", port: 9000 }, startMs: 0, exchanges: 1, gapMs: 1, prng });
    const request = udp[0]!.frame;
    const bucket = bucketOfFrame(request);
    const backup = cluster.node(backupOf(cluster.epoch!, bucket)!);
    // Requests only: UDP_UNREPLIED, 30 s timeout. 40 s of traffic every 900 ms goes beyond
    // the timeout, so only refreshes keep the copy.
    for (let t = 0; t < 40_000; t += 900) {
      expect(cluster.deliver(request).verdict).toBe(Verdict.FORWARD);
      cluster.run(900);
      expect(backup.engine.table.size, `backup copy at t=${t}`).toBe(1);
    }
    // Not a refresh per packet, nor per second: one when the copy's expiry comes near (~28 s).
    expect(cluster.node(ownerOf(cluster.epoch!, bucket)).counters.refreshesSent).toBe(1);
    // Silence: the owner expires it, the backup follows (DELETE, or its own expiry at the latest).
    cluster.run(30_000 - 900);
    expect(backup.engine.table.size).toBe(1);
    cluster.run(900 + BACKUP_EXPIRY_GRACE_MS + 100);
    expect(backup.engine.table.size).toBe(0);
    expect(cluster.node(ownerOf(cluster.epoch!, bucket)).engine.table.size).toBe(0);
  });

  it("a connection's life costs two records: the completed handshake at once, the end coalesced; one gone within the deferral costs none", () => {
    const cluster = twoNodes(SEED + 13);
    const prng = new Prng(SEED + 13);
    const convo = tcpConversation(prng, 1); // handshake, one exchange, FIN close: 9 frames
    const bucket = bucketOfFrame(convo[0]!.frame);
    const owner = cluster.node(ownerOf(cluster.epoch!, bucket));
    const backup = cluster.node(backupOf(cluster.epoch!, bucket)!);
    const stateAtBackup = (): number => {
      let state = -1;
      backup.forEachConnection((_b, s) => (state = s.state));
      return state;
    };
    // SYN and SYN-ACK: nothing yet (a handshake that never completes need not survive).
    deliverAll(cluster, convo.slice(0, 2), 0.2);
    expect(stateAtBackup()).toBe(-1);
    // The ACK completes it: at the backup within the flush interval.
    deliverAll(cluster, convo.slice(2, 3), 0);
    cluster.run(FLUSH_INTERVAL_MS + 0.5);
    expect(stateAtBackup()).toBe(ConnState.TCP_ESTABLISHED);
    // Data and the close (FIN_WAIT, LAST_ACK, TIME_WAIT): one record, with the last state.
    deliverAll(cluster, convo.slice(3), 0.2);
    cluster.run(SETTLE_MS);
    expect(stateAtBackup()).toBe(ConnState.TCP_TIME_WAIT);
    const k = owner.counters;
    expect([k.createsSent, k.updatesSent, k.syncsUrgent, k.syncsDeferred]).toEqual([1, 1, 1, 1]);

    // A new connection removed within the deferral window (any removal: here the table's own)
    // never reaches the backup, and no DELETE follows it.
    let fresh = tcpConversation(prng, 0);
    while (ownerOf(cluster.epoch!, bucketOfFrame(fresh[0]!.frame)) !== owner.name) fresh = tcpConversation(prng, 0);
    deliverAll(cluster, fresh.slice(0, 1), 0.2);
    const before = owner.engine.table.size;
    owner.engine.table.forEachLive((id) => {
      if (owner.engine.table.state(id) === ConnState.TCP_SYN_SENT) owner.engine.table.remove(id);
    });
    expect(owner.engine.table.size).toBe(before - 1);
    cluster.run(SETTLE_MS);
    expect([k.createsSent, k.deletesSent, k.syncsElided]).toEqual([1, 0, 1]);
    owner.verifyBookkeeping();
    backup.verifyBookkeeping();
  });

  it("batches: handshakes completed within the flush interval share datagrams (records per datagram > 1)", () => {
    const cluster = twoNodes(SEED + 17);
    const prng = new Prng(SEED + 17);
    const owner = cluster.node("a");
    const convos: TimedFrame[][] = [];
    while (convos.length < 40) {
      const c = tcpConversation(prng, 0);
      if (ownerOf(cluster.epoch!, bucketOfFrame(c[0]!.frame)) === owner.name) convos.push(c);
    }
    for (const c of convos) deliverAll(cluster, c.slice(0, 2), 0);
    const before = { records: owner.counters.syncRecordsSent, datagrams: owner.counters.syncDatagramsSent };
    // 40 completing ACKs inside one millisecond: 40 urgent records, a handful of datagrams.
    for (const c of convos) deliverAll(cluster, c.slice(2, 3), 0);
    cluster.run(FLUSH_INTERVAL_MS + 0.5);
    const records = owner.counters.syncRecordsSent - before.records;
    const datagrams = owner.counters.syncDatagramsSent - before.datagrams;
    expect(records).toBe(40);
    expect(datagrams).toBeGreaterThan(0);
    expect(records / datagrams).toBeGreaterThan(5);
  });

  it("converges under 20% seeded sync loss", () => {
    const cluster = twoNodes(SEED + 5);
    cluster.loss = 0.2;
    const prng = new Prng(SEED + 5);
    for (let i = 0; i < 40; i++) {
      for (const f of tcpConversation(prng, 1).slice(0, 5)) cluster.deliver(f.frame);
      cluster.run(1);
    }
    cluster.run(2000);
    expect(expectReplicated(cluster)).toBe(40);
    expect(cluster.node("a").engine.table.size + cluster.node("b").engine.table.size).toBe(80);
  });
});

describe("ClusterNode: verification", () => {
  it("verify reports the bucket whose backup copy was tampered with", () => {
    const cluster = twoNodes(SEED + 6);
    const prng = new Prng(SEED + 6);
    for (let i = 0; i < 20; i++) for (const f of tcpConversation(prng, 0).slice(0, 3)) cluster.deliver(f.frame);
    cluster.run(5);
    const a = cluster.node("a");
    const b = cluster.node("b");
    a.requestVerify("b", cluster.nowMs);
    cluster.collect(a);
    cluster.run(5);
    expect(a.lastVerify).toEqual({ peer: "b", differing: [] });

    // Remove one of a's connections from b's table directly.
    let victim = -1;
    let victimBucket = -1;
    b.engine.table.forEachLive((id) => {
      const bucket = b.engine.table.hashOf(id) & (BUCKETS - 1);
      if (victim < 0 && ownerOf(cluster.epoch!, bucket) === "a") {
        victim = id;
        victimBucket = bucket;
      }
    });
    expect(victim).toBeGreaterThanOrEqual(0);
    b.engine.table.remove(victim);
    b.verifyBookkeeping();

    a.requestVerify("b", cluster.nowMs);
    cluster.collect(a);
    cluster.run(5);
    expect(a.lastVerify).toEqual({ peer: "b", differing: [victimBucket] });
    // The backup's view of the same pair, and the in-memory helper, agree.
    b.requestVerify("a", cluster.nowMs);
    cluster.collect(b);
    cluster.run(5);
    expect(b.lastVerify).toEqual({ peer: "a", differing: [victimBucket] });
    const owned = Array.from({ length: BUCKETS }, (_, k) => k).filter((k) => ownerOf(cluster.epoch!, k) === "a");
    expect(a.verifyAgainst(b.allBucketDigests(), owned)).toEqual([victimBucket]);
  });
});

/** Frames of n TCP conversations, split at `cut` (a frame index within each). */
function conversations(prng: Prng, n: number, exchanges: number): TimedFrame[][] {
  const out: TimedFrame[][] = [];
  for (let i = 0; i < n; i++) out.push(tcpConversation(prng, exchanges, i % 5 === 4 ? "tcp6" : "tcp"));
  return out;
}

function deliverAll(cluster: Cluster, frames: readonly TimedFrame[], stepMs = 0.2): void {
  for (const f of frames) {
    const r = cluster.deliver(f.frame);
    expect(r.verdict, `frame at ${f.timeMs} ms via ${r.node.name}: ${r.dropReason}`).toBe(Verdict.FORWARD);
    cluster.run(stepMs);
  }
}

describe("ClusterNode: failover", () => {
  it("failure: the backup is promoted, mid-connection data and the FIN close pass; reprotection fills the new backup", () => {
    const cluster = new Cluster(SEED + 7);
    for (const name of ["a", "b", "c"]) cluster.add(name);
    const first = createEpochTable(members("a", "b", "c"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const prng = new Prng(SEED + 7);
    // 120 exchanges (~100 KB each way) move the sequence numbers far past the windows the
    // backup learned with the handshake's UPDATEs.
    const convos = conversations(prng, 12, 120);
    const cut = 3 + 3 * 100; // handshake and 100 exchanges before the failure
    for (const c of convos) deliverAll(cluster, c.slice(0, cut), 0.05);
    cluster.run(10);
    expect(expectReplicated(cluster)).toBe(12);

    const onA = convos.filter((c) => ownerOf(first, bucketOfFrame(c[0]!.frame)) === "a");
    expect(onA.length).toBeGreaterThan(0);
    // Control: a copy with the windows of the handshake, restored into a plain engine, rejects
    // the later segments (the windows drifted), so the test below could fail without
    // re-learning. The backup's copies carry no windows at all once established (maxWindow 0,
    // the tracker's "not known yet"): records send them only during the handshake.
    const handshake = new Engine({ capacity: 64, hashSeed: HASH_SEED });
    for (const f of onA[0]!.slice(0, 3)) handshake.processFrame(f.frame, 0, f.frame.length, LinkType.ETHERNET, 0, cluster.nowMs);
    const plain = new Engine({ capacity: 64, hashSeed: HASH_SEED });
    handshake.table.forEachLive((id) => {
      const s = handshake.table.snapshot(id);
      expect(plain.table.restore(s, flowHashOfKey(HASH_SEED, s))).toBeGreaterThanOrEqual(0);
    });
    let plainDrops = 0;
    for (const f of onA[0]!.slice(cut)) if (plain.processFrame(f.frame, 0, f.frame.length, LinkType.ETHERNET, 0, cluster.nowMs) !== Verdict.FORWARD) plainDrops++;
    expect(plainDrops).toBeGreaterThan(0);
    const backupOfA = cluster.node(backupOf(first, bucketOfFrame(onA[0]![0]!.frame))!);
    backupOfA.forEachConnection((bucket, s) => {
      if (ownerOf(first, bucket) === "a") expect([s.tcp!.original.maxWindow, s.tcp!.reply.maxWindow]).toEqual([0, 0]);
    });

    cluster.kill("a");
    const plan = planFailure(first, "a");
    cluster.installPhase(plan.phases[0]!);
    for (const name of ["b", "c"]) expect(cluster.node(name).counters.promotedBuckets).toBeGreaterThanOrEqual(0);
    expect(cluster.node("b").counters.promotedBuckets + cluster.node("c").counters.promotedBuckets).toBe(plan.phases[0]!.moves.filter((m) => m.fromOwner === "a").length);
    // The rest of every conversation (data, FIN, FIN, ACK) passes without a drop.
    for (const c of convos) deliverAll(cluster, c.slice(cut), 0.05);
    cluster.run(5);

    // The reprotect epoch reaches b first: c receives b's bulks for buckets it has no role
    // for yet, keeps them, and backs them up once its own epoch arrives.
    const reprotect = plan.phases[1]!;
    const peers = cluster.peers();
    cluster.node("b").setEpoch(reprotect.table, new Map(), peers, cluster.nowMs);
    cluster.run(20);
    const c = cluster.node("c");
    const early = reprotect.moves.filter((m) => m.toBackup === "c").map((m) => m.bucket);
    for (const bucket of early) expect(c.filled.has(bucket), `c filled ${bucket} early`).toBe(true);
    cluster.run(STALE_HOLD_MS / 2);
    cluster.install(reprotect.table);
    cluster.run(50);
    expect(expectReplicated(cluster)).toBeGreaterThan(0);
    const reprotected = plan.phases[1]!.moves.length;
    const measured = ["b", "c"].map((n) => cluster.node(n).counters).filter((k) => k.reprotectBuckets > 0);
    expect(measured.reduce((sum, k) => sum + k.reprotectBuckets, 0)).toBe(reprotected);
    for (const k of measured) {
      expect(k.reprotectMs).toBeGreaterThan(0);
      expect(k.reprotectMs).toBeLessThan(50);
    }
    // Networked verification agrees.
    cluster.node("b").requestVerify("c", cluster.nowMs);
    cluster.collect(cluster.node("b"));
    cluster.run(5);
    expect(cluster.node("b").lastVerify).toEqual({ peer: "c", differing: [] });
  });

  it("sync lag counts only peers with a role: a dead member still listed as a peer is not waited for", () => {
    const cluster = new Cluster(SEED + 11);
    for (const name of ["a", "b", "c"]) cluster.add(name);
    const first = createEpochTable(members("a", "b", "c"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    // The orchestrator's document lists every member of the group, a DOWN one too.
    const everyone = cluster.peers();
    cluster.kill("a");
    // Connections owned by b and c whose backup is a: their records to a are never acknowledged.
    const convos = conversations(new Prng(SEED + 11), 24, 2).filter((c) => {
      const bucket = bucketOfFrame(c[0]!.frame);
      return ownerOf(first, bucket) !== "a" && backupOf(first, bucket) === "a";
    });
    expect(convos.length).toBeGreaterThan(0);
    for (const c of convos) deliverAll(cluster, c, 0.05);
    cluster.run(1000);
    expect(Math.max(cluster.node("b").syncLagMs(cluster.nowMs), cluster.node("c").syncLagMs(cluster.nowMs))).toBeGreaterThan(900); // a still has a role
    for (const phase of planFailure(first, "a").phases) {
      for (const n of cluster.live()) {
        n.setEpoch(phase.table, extraBackupsOf(phase), everyone, cluster.nowMs);
        cluster.collect(n);
      }
      cluster.run(100);
    }
    cluster.run(1000);
    for (const n of ["b", "c"]) expect(cluster.node(n).syncLagMs(cluster.nowMs), n).toBeLessThan(500);
  });
});

describe("ClusterNode: make-before-break", () => {
  it("join: the new member is filled as extra backup, reports it, and continues the connections after the flip", () => {
    const cluster = new Cluster(SEED + 8);
    cluster.add("a");
    cluster.add("b");
    const first = createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const prng = new Prng(SEED + 8);
    const convos = conversations(prng, 16, 6);
    const cut = 3 + 3 * 3;
    for (const c of convos) deliverAll(cluster, c.slice(0, cut));
    cluster.run(5);

    const c = cluster.add("c");
    const plan = planJoin(first, { id: "c", weight: 1 });
    const fillBuckets = plan.phases[0]!.moves.map((m) => m.bucket);
    cluster.installPhase(plan.phases[0]!);
    // A connection opened during the fill reaches c live.
    const late = tcpConversation(prng, 2);
    deliverAll(cluster, late.slice(0, 3));
    cluster.run(20);
    expect([...c.filled].sort((x, y) => x - y)).toEqual(fillBuckets);
    c.filled.clear();
    const owners = ["a", "b"].map((n) => cluster.node(n).counters);
    expect(owners.reduce((sum, k) => sum + k.fillBuckets, 0)).toBe(fillBuckets.length);
    for (const k of owners) if (k.fillBuckets > 0) expect(k.fillMs).toBeGreaterThan(0);
    for (const bucket of fillBuckets) expect(c.bucketDigest(bucket)).toBe(cluster.node(ownerOf(first, bucket)).bucketDigest(bucket));

    cluster.installPhase(plan.phases[1]!);
    const final = plan.final;
    const movedToC = [...convos, late].filter((k) => ownerOf(final, bucketOfFrame(k[0]!.frame)) === "c");
    expect(movedToC.length).toBeGreaterThan(0);
    for (const k of [...convos, late]) deliverAll(cluster, k.slice(k === late ? 3 : cut));
    expect(c.engine.counters.packets).toBeGreaterThan(0);
    expect(c.engine.counters.dropReasons.reduce((x, y) => x + y, 0)).toBe(0);
    cluster.run(STALE_HOLD_MS + 50);
    expect(expectReplicated(cluster)).toBe(17);
    // Released copies are gone: every node holds only buckets it owns or backs up.
    for (const n of cluster.live()) for (const k of copies(n).values()) expect(["owner", "backup"]).toContain(k.role);
  });

  it("after a flip the new owner's copy never outlives the old owner's (now the backup's)", () => {
    const cluster = new Cluster(SEED + 12);
    cluster.add("a");
    cluster.add("b");
    const first = createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const plan = planJoin(first, { id: "c", weight: 1 });
    const prng = new Prng(SEED + 12);
    let udp: TimedFrame[] = [];
    for (let p = 1000; ; p++) {
      udp = conversation({ kind: "udp", client: { address: "198.18.3.1", port: p }, server: { address: "198.19.3.1", port: 53 }, startMs: 0, exchanges: 1, gapMs: 1, prng });
      if (ownerOf(plan.final, bucketOfFrame(udp[0]!.frame)) === "c") break;
    }
    deliverAll(cluster, udp.slice(0, 1)); // UDP_UNREPLIED: 30 s
    cluster.run(5);
    const c = cluster.add("c");
    cluster.installPhase(plan.phases[0]!);
    cluster.run(20);
    cluster.installPhase(plan.phases[1]!);
    const oldOwner = cluster.node(ownerOf(first, bucketOfFrame(udp[0]!.frame)));
    expect(backupOf(plan.final, bucketOfFrame(udp[0]!.frame))).toBe(oldOwner.name);
    let ownerGoneMs = -1;
    for (let t = 0; t < 40_000; t += 250) {
      cluster.run(250);
      if (c.engine.table.size > 0) expect(oldOwner.engine.table.size, `backup at ${t} ms`).toBe(1);
      else if (ownerGoneMs < 0) ownerGoneMs = t;
    }
    expect(ownerGoneMs).toBeGreaterThan(25_000);
    expect(oldOwner.engine.table.size).toBe(0);
  });

  it("drain: the leaving member's buckets continue on their backups, which get new backups first", () => {
    const cluster = new Cluster(SEED + 9);
    for (const name of ["a", "b", "c"]) cluster.add(name);
    const first = createEpochTable(members("a", "b", "c"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const prng = new Prng(SEED + 9);
    const convos = conversations(prng, 16, 6);
    const cut = 3 + 3 * 3;
    for (const k of convos) deliverAll(cluster, k.slice(0, cut));
    cluster.run(5);

    const plan = planDrain(first, "b");
    cluster.installPhase(plan.phases[0]!);
    cluster.run(20);
    const filled = new Map<string, number[]>();
    for (const n of cluster.live()) filled.set(n.name, [...n.filled].sort((x, y) => x - y));
    for (const move of plan.phases[0]!.moves) for (const t of move.fillTo) expect(filled.get(t)).toContain(move.bucket);

    cluster.installPhase(plan.phases[1]!);
    for (const k of convos) deliverAll(cluster, k.slice(cut));
    cluster.run(STALE_HOLD_MS + 50);
    // b is drained: it holds nothing and is nobody's target; the others are consistent.
    cluster.kill("b");
    const peers = cluster.peers();
    for (const n of cluster.live()) n.setEpoch(plan.final, new Map(), peers, cluster.nowMs);
    expect(cluster.node("b").engine.table.size).toBe(0);
    cluster.run(10);
    expect(expectReplicated(cluster)).toBe(16);
    for (const n of cluster.live()) {
      const drops = n.engine.counters.dropReasons.reduce((x, y) => x + y, 0);
      expect(drops, `${n.name} drops`).toBe(0);
    }
  });
});

describe("ClusterNode: the distributor ahead of the members (the simulator's order)", () => {
  it("failure: frames reach the backup before its promote epoch; fills during the promote epoch re-protect", () => {
    const cluster = new Cluster(SEED + 10);
    for (const name of ["a", "b", "c"]) cluster.add(name);
    const first = createEpochTable(members("a", "b", "c"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const prng = new Prng(SEED + 10);
    const convos = conversations(prng, 12, 40);
    const cut = 3 + 3 * 30;
    for (const k of convos) deliverAll(cluster, k.slice(0, cut), 0.05);
    cluster.run(10);

    cluster.kill("a");
    const plan = planFailure(first, "a");
    const promote = plan.phases[0]!;
    const reprotect = plan.phases[1]!;
    // The distributor routes by the promote table at once; the members still have `first`.
    cluster.epoch = promote.table;
    const mid = cut + 3 * 5;
    for (const k of convos) deliverAll(cluster, k.slice(cut, mid), 0.05);
    const promotions = cluster.node("b").counters.promotions + cluster.node("c").counters.promotions;
    expect(promotions).toBe(convos.filter((k) => ownerOf(first, bucketOfFrame(k[0]!.frame)) === "a").length);

    // Then the members: promote epoch with the reprotect moves as fills (the controller's way).
    const fill = new Map(reprotect.moves.map((m) => [m.bucket, m.fillTo] as const));
    cluster.install(promote.table, fill);
    cluster.run(20);
    const expected = new Set(reprotect.moves.map((m) => `${m.bucket}/${m.toBackup}`));
    for (const n of cluster.live()) for (const bucket of n.filled) expected.delete(`${bucket}/${n.name}`);
    expect([...expected]).toEqual([]);
    const owners = cluster.live().map((n) => n.counters);
    expect(owners.reduce((sum, k) => sum + k.reprotectBuckets, 0)).toBe(reprotect.moves.length);
    for (const k of owners) if (k.reprotectBuckets > 0) expect(k.reprotectMs).toBeGreaterThan(0);

    cluster.install(reprotect.table);
    for (const k of convos) deliverAll(cluster, k.slice(mid), 0.05);
    cluster.run(SETTLE_MS); // the closes' TIME_WAIT is a deferred change
    expect(expectReplicated(cluster)).toBe(12);
    for (const n of cluster.live()) expect(n.engine.counters.dropReasons.reduce((x, y) => x + y, 0), `${n.name} drops`).toBe(0);
  });

  it("join: after the distributor flips, the new owner processes its copies and replicates them once its epoch flips", () => {
    const cluster = new Cluster(SEED + 11);
    cluster.add("a");
    cluster.add("b");
    const first = createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS });
    cluster.install(first);
    const prng = new Prng(SEED + 11);
    const convos = conversations(prng, 16, 4);
    const cut = 3 + 3 * 2;
    for (const k of convos) deliverAll(cluster, k.slice(0, cut));
    const c = cluster.add("c");
    const plan = planJoin(first, { id: "c", weight: 1 });
    cluster.installPhase(plan.phases[0]!);
    cluster.run(20);

    // Settle window: the distributor routes by the flip table, the members do not know it.
    cluster.epoch = plan.final;
    const moved = convos.filter((k) => ownerOf(plan.final, bucketOfFrame(k[0]!.frame)) === "c");
    expect(moved.length).toBeGreaterThan(0);
    // The moved connections close entirely in the window (state changes only c sees)...
    for (const k of moved) deliverAll(cluster, k.slice(cut));
    expect(c.counters.promotions).toBe(moved.length);
    // ...and a new connection in a moved bucket is opened: c corrects its SYN to the owner it
    // knows, which creates it and syncs it to c; c processes the rest of the handshake.
    let fresh = tcpConversation(prng, 1);
    while (ownerOf(plan.final, bucketOfFrame(fresh[0]!.frame)) !== "c") fresh = tcpConversation(prng, 1);
    const syn = cluster.deliver(fresh[0]!.frame);
    expect(syn.corrections).toBe(1);
    cluster.run(2);
    deliverAll(cluster, fresh.slice(1, 3));
    cluster.run(5);

    cluster.install(plan.final);
    cluster.run(STALE_HOLD_MS + 50);
    for (const k of convos) if (!moved.includes(k)) deliverAll(cluster, k.slice(cut));
    deliverAll(cluster, fresh.slice(3));
    cluster.run(SETTLE_MS); // the closes' TIME_WAIT is a deferred change
    expect(expectReplicated(cluster)).toBe(17);
    for (const n of cluster.live()) expect(n.engine.counters.dropReasons.reduce((x, y) => x + y, 0), `${n.name} drops`).toBe(0);
  });
});

// Version 2 is the only wire format today, so a node reading {2, 3} stands for a newer build
// and its "version 3" is version 2's layout: the machinery is what is under test (each node's
// range and send version, through every channel), not a format.
describe("ClusterNode: protocol versions", () => {
  const V2_V3 = { protocolVersions: { min: 2, max: 3 } };

  /** Established connections (handshake and a few exchanges, no close) whose bucket `owner` owns. */
  function connectionsOwnedBy(cluster: Cluster, prng: Prng, owner: string, count: number): void {
    for (let found = 0; found < count; ) {
      const convo = tcpConversation(prng, 2);
      if (ownerOf(cluster.epoch!, bucketOfFrame(convo[0]!.frame)) !== owner) continue;
      deliverAll(cluster, convo.slice(0, convo.length - 3));
      found++;
    }
    cluster.run(SETTLE_MS);
  }

  function mixedPair(seed: number): Cluster {
    const cluster = new Cluster(seed);
    cluster.add("old");
    cluster.add("new", V2_V3);
    cluster.install(createEpochTable(members("old", "new"), HASH_SEED, { bucketCount: BUCKETS }));
    return cluster;
  }

  it("a {2,2} node and a {2,3} node replicate both ways at version 2", () => {
    const cluster = mixedPair(SEED + 40);
    const prng = new Prng(SEED + 40);
    const oldNode = cluster.node("old");
    const newNode = cluster.node("new");
    expect(oldNode.protocolVersions).toEqual({ min: 2, max: 2 });
    expect(newNode.protocolVersions).toEqual({ min: 2, max: 3 });
    expect(newNode.protocolVersion).toBe(2);
    connectionsOwnedBy(cluster, prng, "old", 3);
    connectionsOwnedBy(cluster, prng, "new", 3);
    expect(expectReplicated(cluster)).toBe(6);
    for (const n of [oldNode, newNode]) {
      expect(n.counters.syncRecordsApplied, n.name).toBeGreaterThanOrEqual(3);
      expect(n.counters.badVersion + n.counters.badDatagrams, n.name).toBe(0);
    }
  });

  it("the {2,3} node told to send 3 is refused by the {2,2} node: bad-version counted, nothing applied (why the group's version is the min of the maxima)", () => {
    const cluster = mixedPair(SEED + 41);
    const prng = new Prng(SEED + 41);
    const oldNode = cluster.node("old");
    const newNode = cluster.node("new");
    connectionsOwnedBy(cluster, prng, "new", 1);
    newNode.setProtocolVersion(3);
    expect(newNode.protocolVersion).toBe(3);
    const applied = oldNode.counters.syncRecordsApplied;
    const held = oldNode.engine.table.size;
    connectionsOwnedBy(cluster, prng, "new", 3);
    expect(oldNode.counters.syncRecordsApplied).toBe(applied);
    expect(oldNode.engine.table.size).toBe(held);
    expect(oldNode.counters.badVersion).toBeGreaterThan(0);
    expect(oldNode.counters.badDatagrams).toBe(oldNode.counters.badVersion);
    // The other way still works: 2 is in the new node's range.
    const appliedNew = newNode.counters.syncRecordsApplied;
    connectionsOwnedBy(cluster, prng, "old", 2);
    expect(newNode.counters.syncRecordsApplied).toBeGreaterThan(appliedNew);
    expect(newNode.counters.badDatagrams).toBe(0);
    // Back at 2, the owner's retransmissions and resyncs catch the old node up.
    newNode.setProtocolVersion(2);
    cluster.run(2000);
    expect(expectReplicated(cluster)).toBe(6);
  });

  it("two {2,3} nodes move to 3, one after the other; a channel made later starts at the node's version", () => {
    const cluster = new Cluster(SEED + 42);
    const prng = new Prng(SEED + 42);
    const a = cluster.add("a", V2_V3);
    const b = cluster.add("b", V2_V3);
    cluster.install(createEpochTable(members("a", "b"), HASH_SEED, { bucketCount: BUCKETS }));
    connectionsOwnedBy(cluster, prng, "a", 2);
    a.setProtocolVersion(3);
    connectionsOwnedBy(cluster, prng, "b", 2);
    b.setProtocolVersion(3);
    connectionsOwnedBy(cluster, prng, "a", 2);
    expect(expectReplicated(cluster)).toBe(6);
    // A third member that reads only 3 (a build after the next) joins while the others send 3:
    // the channels setEpoch makes for it seal with 3 from their first datagram, or it would
    // count them as bad-version.
    const c = cluster.add("c", { protocolVersions: { min: 3, max: 3 } });
    expect(c.protocolVersion).toBe(3);
    const plan = planJoin(cluster.epoch!, { id: "c", weight: 1 });
    cluster.installPhase(plan.phases[0]!); // fill: bulk transfers to c
    cluster.run(50);
    expect(c.filled.size).toBe(plan.phases[0]!.moves.length);
    cluster.installPhase(plan.phases[1]!);
    connectionsOwnedBy(cluster, prng, "c", 2);
    connectionsOwnedBy(cluster, prng, "a", 2);
    cluster.run(STALE_HOLD_MS + 50);
    expect(expectReplicated(cluster)).toBe(10);
    for (const n of [a, b, c]) expect(n.counters.badDatagrams, n.name).toBe(0);
  });

  it("refuses a send version outside its range with an operating error, keeping its own", () => {
    const cluster = mixedPair(SEED + 43);
    const oldNode = cluster.node("old");
    const newNode = cluster.node("new");
    expect(() => oldNode.setProtocolVersion(3)).toThrow(TandemError);
    expect(() => newNode.setProtocolVersion(4)).toThrow(TandemError);
    expect(() => newNode.setProtocolVersion(1)).toThrow(TandemError);
    expect(oldNode.protocolVersion).toBe(2);
    expect(newNode.protocolVersion).toBe(2);
    expect(() => cluster.add("bad", { protocolVersions: { min: 3, max: 2 } })).toThrow(/protocol version range/);
  });
});
