// Connection table: keys, directions, zones, IPv6 pool, eviction, expiry, snapshots, and a
// model-based property test of the index (backward-shift deletion under forced collisions).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIp, parseIpv4 } from "../packet/addr.js";
import { flowHashOfKey, flowHashOfView, type FlowKey } from "../packet/flow-hash.js";
import { IpProto, PacketView } from "../packet/view.js";
import { ConnectionTable } from "./connection-table.js";
import { ConnState, STATE_TIMEOUT_MS, type ConnectionSnapshot } from "./types.js";

const SEED = 0x7a3d;

/** A view with just the fields the table reads (addresses at fixed offsets of a private buffer). */
function viewOf(key: FlowKey, icmpType = -1): PacketView {
  const view = new PacketView();
  const buf = new Uint8Array(40);
  buf.set(key.src, 4);
  buf.set(key.dst, 20);
  view.reset(buf, 0, buf.length);
  view.ipVersion = key.src.length === 4 ? 4 : 6;
  view.srcAddrOffset = 4;
  view.dstAddrOffset = 20;
  if (view.ipVersion === 4) {
    view.src4 = parseIpv4(formatV4(key.src))!;
    view.dst4 = parseIpv4(formatV4(key.dst))!;
  }
  view.protocol = key.protocol;
  view.srcPort = key.srcPort;
  view.dstPort = key.dstPort;
  if (icmpType >= 0) {
    view.icmpType = icmpType;
    view.icmpIsEcho = true;
    view.icmpId = key.srcPort;
  }
  return view;
}

function formatV4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

function key(src: string, dst: string, srcPort: number, dstPort: number, protocol: number = IpProto.TCP, zone = 0): FlowKey {
  return { zone, protocol, src: parseIp(src)!, dst: parseIp(dst)!, srcPort, dstPort };
}

function reverse(k: FlowKey): FlowKey {
  return { ...k, src: k.dst, dst: k.src, srcPort: k.dstPort, dstPort: k.srcPort };
}

function insertKey(table: ConnectionTable, k: FlowKey, state: number = ConnState.UDP_UNREPLIED, nowMs = 0, hash?: number): number {
  return table.insert(k.zone, viewOf(k), hash ?? flowHashOfKey(SEED, k), state, nowMs);
}

function lookupKey(table: ConnectionTable, k: FlowKey, hash?: number): number {
  return table.lookup(k.zone, viewOf(k), hash ?? flowHashOfKey(SEED, k));
}

describe("ConnectionTable: keys and directions", () => {
  it("finds one entry from both directions, IPv4 and IPv6, and names the direction", () => {
    const table = new ConnectionTable({ capacity: 64 });
    for (const k of [
      key("198.18.0.1", "198.19.0.1", 40000, 80),
      key("198.19.9.9", "198.18.0.1", 53, 5353, IpProto.UDP), // original source sorts after the destination
      key("2001:db8::1", "2001:db8::2", 1234, 443),
      key("2001:db8::ff", "2001:db8::2", 1234, 443), // IPv6, original source is endpoint B
      key("198.18.0.7", "198.18.0.7", 9000, 8000), // same address, ports decide the order
    ]) {
      const id = insertKey(table, k);
      expect(id).toBeGreaterThanOrEqual(0);
      expect(lookupKey(table, k)).toBe(id);
      expect(table.lastDirection).toBe(0);
      expect(lookupKey(table, reverse(k))).toBe(id);
      expect(table.lastDirection).toBe(1);
      const original = table.keyOf(id);
      expect(original).toEqual(k);
      const length = k.src.length;
      const out: FlowKey = { zone: -1, protocol: -1, src: new Uint8Array(length), dst: new Uint8Array(length), srcPort: -1, dstPort: -1 };
      expect(table.keyInto(id, out)).toEqual(k);
      // The view path and the key path agree on the hash (the caller's symmetric hash).
      expect(flowHashOfView(SEED, viewOf(reverse(k)))).toBe(flowHashOfKey(SEED, k));
    }
    expect(table.size).toBe(5);
    expect(table.ipv6Size).toBe(2);
    table.verify();
  });

  it("does not confuse protocol, ports, address family or zone", () => {
    const table = new ConnectionTable({ capacity: 64 });
    const base = key("198.18.0.1", "198.19.0.1", 40000, 80);
    const id = insertKey(table, base);
    expect(lookupKey(table, { ...base, protocol: IpProto.UDP })).toBe(-1);
    expect(lookupKey(table, { ...base, srcPort: 40001 })).toBe(-1);
    expect(lookupKey(table, { ...base, dst: parseIp("198.19.0.2")! })).toBe(-1);
    expect(lookupKey(table, { ...base, src: parseIp("::ffff:198.18.0.1")!, dst: parseIp("::ffff:198.19.0.1")! })).toBe(-1);
    // Same 5-tuple, different zone: a different connection.
    const other = insertKey(table, { ...base, zone: 7 });
    expect(other).toBeGreaterThanOrEqual(0);
    expect(other).not.toBe(id);
    expect(lookupKey(table, base)).toBe(id);
    expect(lookupKey(table, { ...base, zone: 7 })).toBe(other);
    expect(table.zoneOf(other)).toBe(7);
    expect(lookupKey(table, reverse({ ...base, zone: 7 }))).toBe(other);
    table.remove(id);
    expect(lookupKey(table, base)).toBe(-1);
    expect(lookupKey(table, { ...base, zone: 7 })).toBe(other);
    table.verify();
  });

  it("keys ICMP echo by requester: A's and B's pings with the same id are two connections", () => {
    const table = new ConnectionTable({ capacity: 16 });
    const aToB = key("198.18.0.1", "198.19.0.1", 1, 1, IpProto.ICMP);
    const bToA = reverse(aToB);
    const hash = flowHashOfKey(SEED, aToB);
    const first = table.insert(0, viewOf(aToB, 8), hash, ConnState.ICMP_UNREPLIED, 0);
    // B's echo reply to A's request finds A's connection as a reply...
    expect(table.lookup(0, viewOf(bToA, 0), hash)).toBe(first);
    expect(table.lastDirection).toBe(1);
    // ...but B's own echo request with the same id is not part of it.
    expect(table.lookup(0, viewOf(bToA, 8), hash)).toBe(-1);
    const second = table.insert(0, viewOf(bToA, 8), hash, ConnState.ICMP_UNREPLIED, 0);
    expect(second).not.toBe(first);
    expect(table.lookup(0, viewOf(aToB, 0), hash)).toBe(second);
    expect(table.lastDirection).toBe(1);
    expect(table.lookup(0, viewOf(aToB, 8), hash)).toBe(first);
    expect(table.lastDirection).toBe(0);
    // A non-echo ICMP view never matches an echo entry.
    expect(table.lookup(0, viewOf({ ...aToB, srcPort: 0, dstPort: 0 }), hash)).toBe(-1);
    expect(table.keyOf(second)).toEqual(bToA);
    expect(table.lookupKey(bToA, hash)).toBe(second);
    // Self-ping: request and reply are told apart by type.
    const self = key("198.18.0.5", "198.18.0.5", 9, 9, IpProto.ICMP);
    const selfHash = flowHashOfKey(SEED, self);
    const selfId = table.insert(0, viewOf(self, 8), selfHash, ConnState.ICMP_UNREPLIED, 0);
    expect(table.lookup(0, viewOf(self, 0), selfHash)).toBe(selfId);
    expect(table.lastDirection).toBe(1);
    // ICMPv6 works the same way.
    const v6 = key("2001:db8::1", "2001:db8::2", 77, 77, IpProto.ICMPV6);
    const v6Hash = flowHashOfKey(SEED, v6);
    const v6Id = table.insert(0, viewOf(v6, 128), v6Hash, ConnState.ICMP_UNREPLIED, 0);
    expect(table.lookup(0, viewOf(reverse(v6), 129), v6Hash)).toBe(v6Id);
    expect(table.lastDirection).toBe(1);
    table.verify();
  });
});

describe("ConnectionTable: IPv6 address pool", () => {
  it("allocates and frees pool slots, and evicts an IPv6 entry when only the pool is full", () => {
    const table = new ConnectionTable({ capacity: 32, ipv6Capacity: 2 });
    const a = insertKey(table, key("2001:db8::1", "2001:db8::2", 1, 2), ConnState.UDP_UNREPLIED, 0);
    const b = insertKey(table, key("2001:db8::3", "2001:db8::4", 1, 2), ConnState.UDP_UNREPLIED, 10);
    const v4 = insertKey(table, key("198.18.0.1", "198.19.0.1", 1, 2), ConnState.UDP_UNREPLIED, 0);
    expect(table.ipv6Size).toBe(2);
    // Pool full, entries free: the oldest unassured IPv6 entry makes room, the IPv4 one stays.
    const c = insertKey(table, key("2001:db8::5", "2001:db8::6", 1, 2), ConnState.UDP_UNREPLIED, 20);
    expect(c).toBe(a); // the evicted entry's id, reused
    expect(lookupKey(table, key("2001:db8::1", "2001:db8::2", 1, 2))).toBe(-1);
    expect(lookupKey(table, key("2001:db8::3", "2001:db8::4", 1, 2))).toBe(b);
    expect(lookupKey(table, key("198.18.0.1", "198.19.0.1", 1, 2))).toBe(v4);
    expect(table.stats.evicted).toBe(1);
    expect(lookupKey(table, key("2001:db8::5", "2001:db8::6", 1, 2))).toBe(c);
    expect(table.keyOf(c).src).toEqual(parseIp("2001:db8::5"));
    table.verify();
    // Freed slots are reused; with every IPv6 entry assured, an IPv6 insert fails, IPv4 does not.
    table.remove(b);
    const d = insertKey(table, key("2001:db8::7", "2001:db8::8", 1, 2));
    expect(table.keyOf(d).dst).toEqual(parseIp("2001:db8::8"));
    table.setAssured(c);
    table.setAssured(d);
    expect(insertKey(table, key("2001:db8::9", "2001:db8::a", 1, 2))).toBe(-1);
    expect(table.stats.insertFailed).toBe(1);
    expect(insertKey(table, key("198.18.0.2", "198.19.0.2", 1, 2))).toBeGreaterThanOrEqual(0);
    table.verify();
  });

  it("refuses IPv6 inserts cleanly when there is no pool", () => {
    const table = new ConnectionTable({ capacity: 8, ipv6Capacity: 0 });
    expect(insertKey(table, key("2001:db8::1", "2001:db8::2", 1, 2))).toBe(-1);
    expect(table.stats.insertFailed).toBe(1);
    table.verify();
  });
});

describe("ConnectionTable: full table", () => {
  it("evicts the unassured entry with the earliest expiry and counts it", () => {
    const table = new ConnectionTable({ capacity: 4, evictScanMax: 4 });
    const ids = [
      insertKey(table, key("198.18.0.1", "198.19.0.1", 1, 1), ConnState.TCP_ESTABLISHED, 0),
      insertKey(table, key("198.18.0.2", "198.19.0.1", 1, 1), ConnState.TCP_SYN_SENT, 1000), // expires at 121 s
      insertKey(table, key("198.18.0.3", "198.19.0.1", 1, 1), ConnState.UDP_UNREPLIED, 50_000), // expires at 80 s
      insertKey(table, key("198.18.0.4", "198.19.0.1", 1, 1), ConnState.TCP_SYN_SENT, 0), // expires at 120 s
    ];
    table.setAssured(ids[0]!);
    // The assured entry expires first (its expiry was lowered), but is not evictable while alive.
    table.setExpiresAt(ids[0]!, 60_000);
    const fresh = insertKey(table, key("198.18.0.5", "198.19.0.1", 1, 1), ConnState.TCP_SYN_SENT, 55_000);
    expect(fresh).toBe(ids[2]); // the evicted entry's id, reused
    expect(lookupKey(table, key("198.18.0.3", "198.19.0.1", 1, 1))).toBe(-1);
    for (const i of [0, 1, 3]) expect(lookupKey(table, key(`198.18.0.${i + 1}`, "198.19.0.1", 1, 1))).toBe(ids[i]);
    expect(table.stats.evicted).toBe(1);
    expect(table.size).toBe(4);
    table.verify();
  });

  it("fails the insert (never throws) when everything is assured, and reclaims expired assured entries", () => {
    const table = new ConnectionTable({ capacity: 8 });
    for (let i = 0; i < 8; i++) {
      const id = insertKey(table, key(`198.18.0.${i + 1}`, "198.19.0.1", 1, 1), ConnState.UDP_ASSURED, 0);
      table.setAssured(id);
    }
    const extra = key("198.18.1.1", "198.19.0.1", 1, 1);
    expect(insertKey(table, extra, ConnState.UDP_UNREPLIED, 1000)).toBe(-1);
    expect(table.stats.insertFailed).toBe(1);
    expect(table.stats.evicted).toBe(0);
    // Past their expiry the assured entries are fair game (counted as expired, not evicted).
    const later = STATE_TIMEOUT_MS[ConnState.UDP_ASSURED]! + 1;
    expect(insertKey(table, extra, ConnState.UDP_UNREPLIED, later)).toBeGreaterThanOrEqual(0);
    expect(table.stats.expired).toBe(1);
    expect(table.stats.evicted).toBe(0);
    table.verify();
  });
});

describe("ConnectionTable: expiry", () => {
  it("sweeps at most `budget` slots per call and finds every expired entry within capacity / budget calls", () => {
    const capacity = 100;
    const table = new ConnectionTable({ capacity });
    for (let i = 0; i < capacity; i++) {
      const state = i % 3 === 0 ? ConnState.UDP_ASSURED : ConnState.UDP_UNREPLIED; // 120 s or 30 s
      insertKey(table, key(`198.18.0.${i + 1}`, "198.19.0.1", 1000 + i, 53, IpProto.UDP), state, 0);
    }
    const now = 60_000; // the UDP_UNREPLIED ones (30 s) are expired, the assured ones (120 s) not
    const expiredCount = capacity - Math.ceil(capacity / 3);
    let removed = 0;
    for (let call = 0; call < capacity / 10; call++) {
      const n = table.expire(now, 10);
      expect(n).toBeLessThanOrEqual(10);
      removed += n;
    }
    expect(removed).toBe(expiredCount);
    expect(table.size).toBe(capacity - expiredCount);
    expect(table.stats.expired).toBe(expiredCount);
    expect(table.expire(now, 1000)).toBe(0);
    table.forEachLive((id) => expect(table.isExpired(id, now)).toBe(false));
    table.verify();
  });

  it("uses serial arithmetic: expiry works across the 2^32 ms wrap and with epoch clocks", () => {
    const table = new ConnectionTable({ capacity: 4 });
    for (const start of [4294967296 - 10_000, 1_760_000_000_000]) {
      const id = insertKey(table, key("198.18.0.1", "198.19.0.1", 1, 2, IpProto.UDP), ConnState.UDP_UNREPLIED, start);
      expect(table.isExpired(id, start + 29_999)).toBe(false);
      expect(table.isExpired(id, start + 30_000)).toBe(true);
      expect(table.expiresAt(id)).toBe(start + 30_000);
      expect(table.expireIfDue(id, start + 10)).toBe(false);
      expect(table.expireIfDue(id, start + 30_001)).toBe(true);
      expect(table.isLive(id)).toBe(false);
    }
    table.verify();
  });
});

describe("ConnectionTable: snapshots", () => {
  it("round-trips TCP, UDP and ICMP connections through snapshot/restore into another table", () => {
    const source = new ConnectionTable({ capacity: 16 });
    const target = new ConnectionTable({ capacity: 16 });
    const tcpKey = key("198.19.0.9", "198.18.0.1", 40000, 443, IpProto.TCP, 3);
    const tcp = insertKey(source, tcpKey, ConnState.TCP_ESTABLISHED, 1000);
    const words = source.words;
    const base = tcp * 13;
    for (let w = 7; w < 13; w++) words[base + w] = 0x10000000 * (w - 6) + w;
    source.setAssured(tcp);
    source.setSeenReply(tcp);
    const udpKey = key("2001:db8::2", "2001:db8::1", 5353, 53, IpProto.UDP, 0);
    const udp = insertKey(source, udpKey, ConnState.UDP_UNREPLIED, 2000);
    const icmpKey = key("198.18.0.1", "198.19.0.1", 99, 99, IpProto.ICMP);
    const icmp = source.insert(0, viewOf(icmpKey, 8), flowHashOfKey(SEED, icmpKey), ConnState.ICMP_UNREPLIED, 0);

    for (const id of [tcp, udp, icmp]) {
      const snap = source.snapshot(id);
      const restored = target.restore(snap, source.hashOf(id));
      expect(restored).toBeGreaterThanOrEqual(0);
      expect(target.snapshot(restored)).toEqual(snap);
    }
    const tcpSnap = source.snapshot(tcp);
    expect(tcpSnap.src).toEqual(parseIp("198.19.0.9"));
    expect(tcpSnap.tcp!.original.end).toBe(words[base + 7]);
    expect(tcpSnap.tcp!.reply.maxWindow).toBe(words[base + 12]);
    expect(tcpSnap.assured).toBe(true);
    expect(tcpSnap.expiresAtMs).toBe(1000 + STATE_TIMEOUT_MS[ConnState.TCP_ESTABLISHED]!);
    // Restoring again overwrites the existing entry.
    const changed: ConnectionSnapshot = { ...tcpSnap, state: ConnState.TCP_FIN_WAIT, expiresAtMs: 5000 };
    const again = target.restore(changed, flowHashOfKey(SEED, tcpKey));
    expect(target.size).toBe(3);
    expect(target.state(again)).toBe(ConnState.TCP_FIN_WAIT);
    expect(target.expiresAt(again)).toBe(5000);
    // The same connection opened from the other side replaces the old orientation.
    const flipped: ConnectionSnapshot = { ...changed, src: changed.dst, dst: changed.src, srcPort: 443, dstPort: 40000 };
    const flippedId = target.restore(flipped, flowHashOfKey(SEED, tcpKey));
    expect(target.size).toBe(3);
    expect(target.keyOf(flippedId).src).toEqual(parseIp("198.18.0.1"));
    target.verify();
  });
});

describe("ConnectionTable: memory", () => {
  it("stays at or under 64 bytes per connection", () => {
    const table = new ConnectionTable({ capacity: 100_000 });
    expect(table.memoryBytes() / table.capacity).toBeLessThanOrEqual(64);
  });
});

// ---- property test ------------------------------------------------------------------------------

type Op =
  | { kind: "insert"; k: number; state: number }
  | { kind: "remove"; k: number }
  | { kind: "lookup"; k: number; reverse: boolean }
  | { kind: "assure"; k: number }
  | { kind: "expire"; advanceMs: number; budget: number };

/** Forced collisions: a handful of hashes whose home slots are the first and last of the index. */
const COLLIDING_HASHES = [0, 1, 0x7fffffff, 0xfffffff0, 0xffffffff, 0xfffffff0 + 8];

describe("ConnectionTable: property test against a model", () => {
  it("agrees with a Map under random inserts, removes, lookups, eviction and expiry", () => {
    const seed = 0x5eed;
    console.log(`connection-table property test seed=${seed}`);
    const universe: FlowKey[] = [];
    for (let i = 0; i < 24; i++) {
      const v6 = i % 4 === 3;
      universe.push({
        zone: i % 5 === 0 ? 1 : 0,
        protocol: i % 2 === 0 ? IpProto.TCP : IpProto.UDP,
        src: parseIp(v6 ? `2001:db8::${i + 1}` : `198.18.0.${i + 1}`)!,
        dst: parseIp(v6 ? "2001:db8::ffff" : "198.19.0.1")!,
        srcPort: 1000 + i,
        dstPort: 80,
      });
    }
    const states = [ConnState.UDP_UNREPLIED, ConnState.TCP_SYN_SENT, ConnState.TCP_CLOSE, ConnState.UDP_ASSURED];
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("insert" as const), k: fc.nat(universe.length - 1), state: fc.constantFrom(...states) }),
      fc.record({ kind: fc.constant("remove" as const), k: fc.nat(universe.length - 1) }),
      fc.record({ kind: fc.constant("lookup" as const), k: fc.nat(universe.length - 1), reverse: fc.boolean() }),
      fc.record({ kind: fc.constant("assure" as const), k: fc.nat(universe.length - 1) }),
      fc.record({ kind: fc.constant("expire" as const), advanceMs: fc.nat(40_000), budget: fc.nat(12) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), fc.boolean(), (ops, colliding) => {
        const capacity = 12;
        const table = new ConnectionTable({ capacity, ipv6Capacity: 4, evictScanMax: capacity });
        const hashOf = (k: number): number => (colliding ? COLLIDING_HASHES[k % COLLIDING_HASHES.length]! : flowHashOfKey(SEED, universe[k]!));
        const model = new Map<number, { id: number; expiresAt: number; assured: boolean }>();
        let now = 0;
        for (const op of ops) {
          if (op.kind === "insert") {
            if (model.has(op.k)) continue; // the caller looks up first
            const before = new Set([...model.values()].map((e) => e.id));
            const id = insertKey(table, universe[op.k]!, op.state, now, hashOf(op.k));
            // Entries that vanished were evicted or reclaimed: never an assured, unexpired one.
            for (const [k, e] of model) {
              if (!table.isLive(e.id) || (id === e.id && before.has(id))) {
                expect(e.assured && e.expiresAt - now > 0).toBe(false);
                model.delete(k);
              }
            }
            if (id >= 0) model.set(op.k, { id, expiresAt: now + STATE_TIMEOUT_MS[op.state]!, assured: false });
            else expect(table.stats.insertFailed).toBeGreaterThan(0);
          } else if (op.kind === "remove") {
            const e = model.get(op.k);
            if (e === undefined) continue;
            table.remove(e.id);
            model.delete(op.k);
          } else if (op.kind === "lookup") {
            const k = universe[op.k]!;
            const found = lookupKey(table, op.reverse ? reverse(k) : k, hashOf(op.k));
            expect(found).toBe(model.get(op.k)?.id ?? -1);
            if (found >= 0) expect(table.lastDirection).toBe(op.reverse ? 1 : 0);
          } else if (op.kind === "assure") {
            const e = model.get(op.k);
            if (e === undefined) continue;
            table.setAssured(e.id);
            e.assured = true;
          } else {
            now += op.advanceMs;
            const removed = table.expire(now, op.budget);
            let vanished = 0;
            for (const [k, e] of model) {
              if (table.isLive(e.id)) continue;
              expect(e.expiresAt - now).toBeLessThanOrEqual(0);
              model.delete(k);
              vanished++;
            }
            expect(vanished).toBe(removed);
          }
          table.verify();
          expect(table.size).toBe(model.size);
          for (const [k, e] of model) expect(lookupKey(table, universe[k]!, hashOf(k))).toBe(e.id);
        }
      }),
      { seed, numRuns: 300 },
    );
  });
});
