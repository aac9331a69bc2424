import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { BucketDigests, connectionDigest, diffDigestPairs, diffDigests, recordDigest } from "./digest.js";
import { DecodedRecord, decodeRecord, encodeCreate } from "./records.js";
import { ConnState, type ConnectionSnapshot } from "../engine/types.js";

const SEED = 42;
const BUCKETS = 64;

function conn(i: number, state: ConnState = ConnState.TCP_ESTABLISHED, v6 = false): ConnectionSnapshot {
  const src = new Uint8Array(v6 ? 16 : 4).fill(10);
  src[src.length - 1] = i & 0xff;
  src[src.length - 2] = (i >>> 8) & 0xff;
  return {
    zone: 0,
    protocol: 6,
    src,
    dst: new Uint8Array(v6 ? 16 : 4).fill(20),
    srcPort: 1024 + i,
    dstPort: 443,
    state,
    expiresAtMs: 1000 + i,
    seenReply: true,
    assured: true,
    tcp: null,
  };
}

function tableOf(conns: ConnectionSnapshot[]): BucketDigests {
  const t = new BucketDigests(BUCKETS);
  for (const c of conns) t.add(c.srcPort % BUCKETS, connectionDigest(c));
  return t;
}

describe("per-connection digest", () => {
  it("covers key and state, not expiry", () => {
    const a = conn(1);
    expect(connectionDigest({ ...a, expiresAtMs: 99_999 })).toBe(connectionDigest(a));
    expect(connectionDigest({ ...a, state: ConnState.TCP_FIN_WAIT })).not.toBe(connectionDigest(a));
    expect(connectionDigest({ ...a, srcPort: a.srcPort + 1 })).not.toBe(connectionDigest(a));
    expect(connectionDigest({ ...a, zone: 1 })).not.toBe(connectionDigest(a));
    expect(connectionDigest({ ...a, protocol: 17 })).not.toBe(connectionDigest(a));
    // Swapping the direction is a different connection (the digest is not symmetric).
    expect(connectionDigest({ ...a, src: a.dst, dst: a.src })).not.toBe(connectionDigest(a));
  });

  it("is the same computed from a decoded CREATE record", () => {
    const buf = new Uint8Array(256);
    const rec = new DecodedRecord();
    for (const c of [conn(5), conn(6, ConnState.TCP_SYN_SENT, true)]) {
      const end = encodeCreate(buf, 0, buf.length, c, 0);
      decodeRecord(buf, 0, end, rec);
      expect(recordDigest(rec)).toBe(connectionDigest(c));
    }
  });
});

describe("bucket digests", () => {
  it("the same set in any order gives the same digests", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 200 }), fc.integer(), (ids, salt) => {
        const conns = ids.map((i) => conn(i));
        const shuffled = [...conns].sort((x, y) => ((x.srcPort * salt) | 0) - ((y.srcPort * salt) | 0));
        expect(diffDigests(tableOf(conns).values(), tableOf(shuffled).values())).toEqual([]);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("one state difference is reported as exactly its bucket", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 200 }), fc.nat(), (ids, pick) => {
        const conns = ids.map((i) => conn(i));
        const other = conns.map((c) => c);
        const changed = pick % conns.length;
        other[changed] = { ...conns[changed]!, state: ConnState.TCP_CLOSE_WAIT };
        expect(diffDigests(tableOf(conns).values(), tableOf(other).values())).toEqual([conns[changed]!.srcPort % BUCKETS]);
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("a missing or duplicated connection is noticed (a sum, not an XOR)", () => {
    const conns = [conn(1), conn(1 + BUCKETS)];
    const twice = [...conns, conn(1)];
    expect(diffDigests(tableOf(conns).values(), tableOf(twice).values())).toEqual([1]);
    expect(diffDigests(tableOf(conns).values(), tableOf([conn(1)]).values())).toEqual([1]);
  });

  it("is maintained incrementally: add, remove, replace", () => {
    const t = new BucketDigests(BUCKETS);
    const a = conn(3);
    const b = conn(3 + BUCKETS);
    t.add(3, connectionDigest(a));
    t.add(3, connectionDigest(b));
    const moved = { ...a, state: ConnState.TCP_TIME_WAIT };
    t.replace(3, connectionDigest(a), connectionDigest(moved));
    t.remove(3, connectionDigest(b));
    expect(t.get(3)).toBe(connectionDigest(moved));
    t.remove(3, connectionDigest(moved));
    expect(t.get(3)).toBe(0);
    t.add(4, 123);
    t.clear(4);
    expect(t.get(4)).toBe(0);
  });

  it("compares a received digest list with the local table", () => {
    const local = tableOf([conn(1), conn(2), conn(3)]);
    const buckets = new Uint32Array([1, 2, 3, 9999]);
    const digests = new Uint32Array([local.get(1), local.get(2) ^ 1, local.get(3), 0]);
    expect(diffDigestPairs(buckets, digests, 4, local)).toEqual([2, 9999]);
    expect(diffDigestPairs(buckets, digests, 1, local)).toEqual([]);
  });
});
