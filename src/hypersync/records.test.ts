import { describe, it, expect } from "vitest";
import fc from "fast-check";
import {
  DecodedRecord,
  RecordError,
  RecordKind,
  RefreshCoalescer,
  decodeRecord,
  encodeBulkBegin,
  encodeBulkEnd,
  encodeCreate,
  encodeDelete,
  encodeDigestList,
  encodeRefresh,
  encodeResyncRequest,
  encodeUpdate,
  flowKeyOfRecord,
  snapshotOfRecord,
  type RecordSink,
} from "./records.js";
import { ConnState, type ConnectionSnapshot, type TcpDirectionSnapshot } from "../engine/types.js";
import type { FlowKey } from "../packet/flow-hash.js";
import { DIGEST_PAIRS_MAX } from "./constants.js";

const SEED = 42;
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const directionArb: fc.Arbitrary<TcpDirectionSnapshot> = fc.record({
  end: u32,
  maxEnd: u32,
  maxWindow: u32,
  scale: fc.integer({ min: 0, max: 14 }),
  flags: fc.integer({ min: 0, max: 0x3f }),
});

const keyArb: fc.Arbitrary<FlowKey> = fc.boolean().chain((v6) =>
  fc.record({
    zone: fc.integer({ min: 0, max: 0xffff }),
    protocol: fc.constantFrom(6, 17, 1, 58, 47, 50),
    src: fc.uint8Array({ minLength: v6 ? 16 : 4, maxLength: v6 ? 16 : 4 }),
    dst: fc.uint8Array({ minLength: v6 ? 16 : 4, maxLength: v6 ? 16 : 4 }),
    srcPort: fc.integer({ min: 0, max: 0xffff }),
    dstPort: fc.integer({ min: 0, max: 0xffff }),
  }),
);

const NOW_MS = 1_000_000;

const snapshotArb: fc.Arbitrary<ConnectionSnapshot> = fc
  .tuple(
    keyArb,
    fc.integer({ min: 0, max: 15 }),
    u32,
    fc.boolean(),
    fc.boolean(),
    fc.option(fc.record({ original: directionArb, reply: directionArb }), { nil: null }),
  )
  .map(([key, state, remainingMs, seenReply, assured, tcp]) => ({
    ...key,
    state: state as ConnState,
    expiresAtMs: NOW_MS + remainingMs,
    seenReply,
    assured,
    tcp,
  }));

function snapshot(v6: boolean, tcp: boolean): ConnectionSnapshot {
  const n = v6 ? 16 : 4;
  const dir = { end: 1, maxEnd: 2, maxWindow: 3, scale: 7, flags: 1 };
  return {
    zone: 0,
    protocol: tcp ? 6 : 17,
    src: new Uint8Array(n).fill(1),
    dst: new Uint8Array(n).fill(2),
    srcPort: 1234,
    dstPort: 443,
    state: tcp ? ConnState.TCP_ESTABLISHED : ConnState.UDP_ASSURED,
    expiresAtMs: NOW_MS + 5000,
    seenReply: true,
    assured: true,
    tcp: tcp ? { original: { ...dir }, reply: { ...dir } } : null,
  };
}

function decodeOne(buf: Uint8Array, end: number): DecodedRecord {
  const out = new DecodedRecord();
  const next = decodeRecord(buf, 0, end, out);
  expect(out.error).toBe(RecordError.NONE);
  expect(next).toBe(end);
  return out;
}

describe("record sizes", () => {
  it("IPv4 TCP CREATE is at most 64 bytes; the others as documented", () => {
    const buf = new Uint8Array(2048);
    const v4tcp = encodeCreate(buf, 0, buf.length, 1, snapshot(false, true), NOW_MS);
    const v6tcp = encodeCreate(buf, 0, buf.length, 1, snapshot(true, true), NOW_MS);
    const v4udp = encodeCreate(buf, 0, buf.length, 1, snapshot(false, false), NOW_MS);
    const del4 = encodeDelete(buf, 0, buf.length, 1, snapshot(false, true));
    const del6 = encodeDelete(buf, 0, buf.length, 1, snapshot(true, true));
    const ref4 = encodeRefresh(buf, 0, buf.length, 1, snapshot(false, true), 10);
    const ref6 = encodeRefresh(buf, 0, buf.length, 1, snapshot(true, true), 10);
    console.log(`record sizes: v4 tcp create ${v4tcp}, v6 tcp create ${v6tcp}, v4 udp create ${v4udp}, delete ${del4}/${del6}, refresh ${ref4}/${ref6}`);
    expect(v4tcp).toBeLessThanOrEqual(64);
    expect([v4tcp, v6tcp, v4udp, del4, del6, ref4, ref6]).toEqual([56, 80, 28, 23, 47, 27, 51]);
    expect(encodeBulkBegin(buf, 0, buf.length, 1, 2, 3)).toBe(15);
    expect(encodeResyncRequest(buf, 0, buf.length, 1)).toBe(7);
  });
});

describe("record round trip", () => {
  it("CREATE and UPDATE carry every field (expiry as remaining ms)", () => {
    const buf = new Uint8Array(512);
    fc.assert(
      fc.property(snapshotArb, u32, fc.boolean(), (s, bucket, update) => {
        const end = update ? encodeUpdate(buf, 0, buf.length, bucket, s, NOW_MS) : encodeCreate(buf, 0, buf.length, bucket, s, NOW_MS);
        const rec = decodeOne(buf, end);
        expect(rec.kind).toBe(update ? RecordKind.UPDATE : RecordKind.CREATE);
        expect(rec.bucket).toBe(bucket);
        expect(rec.natOffset).toBe(-1);
        // The receiver's clock differs: expiry is re-based on its own now.
        const back = snapshotOfRecord(rec, 77);
        expect(back).toEqual({ ...s, expiresAtMs: 77 + (s.expiresAtMs - NOW_MS) });
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("DELETE, REFRESH, BULK, DIGEST and RESYNC records round trip", () => {
    const buf = new Uint8Array(2048);
    const pairArb = fc.array(fc.tuple(u32, u32), { maxLength: DIGEST_PAIRS_MAX });
    fc.assert(
      fc.property(keyArb, u32, u32, u32, pairArb, fc.boolean(), (key, bucket, a, b, pairs, reply) => {
        let end = encodeDelete(buf, 0, buf.length, bucket, key);
        let rec = decodeOne(buf, end);
        expect(rec.kind).toBe(RecordKind.DELETE);
        expect(flowKeyOfRecord(rec)).toEqual(key);

        end = encodeRefresh(buf, 0, buf.length, bucket, key, a);
        rec = decodeOne(buf, end);
        expect([rec.kind, rec.bucket, rec.remainingMs]).toEqual([RecordKind.REFRESH, bucket, a]);
        expect(flowKeyOfRecord(rec)).toEqual(key);

        end = encodeBulkBegin(buf, 0, buf.length, bucket, a, b);
        rec = decodeOne(buf, end);
        expect([rec.kind, rec.bucket, rec.recordCount, rec.digest]).toEqual([RecordKind.BULK_BEGIN, bucket, a, b]);
        end = encodeBulkEnd(buf, 0, buf.length, bucket, b, a);
        rec = decodeOne(buf, end);
        expect([rec.kind, rec.bucket, rec.recordCount, rec.digest]).toEqual([RecordKind.BULK_END, bucket, b, a]);

        const kind = reply ? RecordKind.DIGEST_REPLY : RecordKind.DIGEST_REQUEST;
        const buckets = pairs.map((p) => p[0]);
        const digests = pairs.map((p) => p[1]);
        end = encodeDigestList(buf, 0, buf.length, kind, buckets, digests, 0, pairs.length);
        rec = decodeOne(buf, end);
        expect(rec.kind).toBe(kind);
        expect(rec.bucket).toBe(pairs.length > 0 ? buckets[0] : 0);
        expect(Array.from(rec.pairBuckets.subarray(0, rec.pairCount))).toEqual(buckets);
        expect(Array.from(rec.pairDigests.subarray(0, rec.pairCount))).toEqual(digests);

        end = encodeResyncRequest(buf, 0, buf.length, bucket);
        rec = decodeOne(buf, end);
        expect([rec.kind, rec.bucket]).toEqual([RecordKind.RESYNC_REQUEST, bucket]);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("a sequence of records decodes back in order at consecutive offsets", () => {
    const buf = new Uint8Array(1 << 16);
    fc.assert(
      fc.property(fc.array(fc.tuple(snapshotArb, fc.integer({ min: 0, max: 3 })), { maxLength: 40 }), (items) => {
        let end = 0;
        for (const [s, k] of items) {
          if (k === 0) end = encodeCreate(buf, end, buf.length, 9, s, NOW_MS);
          else if (k === 1) end = encodeUpdate(buf, end, buf.length, 9, s, NOW_MS);
          else if (k === 2) end = encodeDelete(buf, end, buf.length, 9, s);
          else end = encodeRefresh(buf, end, buf.length, 9, s, 5);
        }
        const out = new DecodedRecord();
        let p = 0;
        for (const [s, k] of items) {
          p = decodeRecord(buf, p, end, out);
          expect(p).toBeGreaterThan(0);
          expect(out.kind).toBe([RecordKind.CREATE, RecordKind.UPDATE, RecordKind.DELETE, RecordKind.REFRESH][k]);
          expect(flowKeyOfRecord(out)).toEqual({ zone: s.zone, protocol: s.protocol, src: s.src, dst: s.dst, srcPort: s.srcPort, dstPort: s.dstPort });
        }
        expect(p).toBe(end);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("the reserved NAT extension is located by the decoder; unknown extensions are skipped", () => {
    const buf = new Uint8Array(512);
    const nat = new Uint8Array([10, 0, 0, 1, 0x1f, 0x90]);
    const end = encodeCreate(buf, 0, buf.length, 3, snapshot(false, true), NOW_MS, nat);
    expect(end).toBe(56 + 2 + nat.length);
    const rec = decodeOne(buf, end);
    expect(Array.from(buf.subarray(rec.natOffset, rec.natOffset + rec.natLength))).toEqual(Array.from(nat));

    // Append an unknown extension (type 200) by hand and patch the record length.
    buf[end] = 200;
    buf[end + 1] = 3;
    const grown = end + 5;
    buf[1] = grown >>> 8;
    buf[2] = grown & 0xff;
    const again = decodeOne(buf, grown);
    expect(again.natLength).toBe(nat.length);
  });
});

describe("encoding bounds", () => {
  it("returns -1 and writes nothing when the record does not fit", () => {
    const buf = new Uint8Array(100).fill(0xee);
    expect(encodeCreate(buf, 50, 100, 1, snapshot(false, true), NOW_MS)).toBe(-1);
    expect(encodeDelete(buf, 80, 100, 1, snapshot(false, true))).toBe(-1);
    expect(encodeRefresh(buf, 90, 100, 1, snapshot(false, true), 1)).toBe(-1);
    expect(encodeBulkEnd(buf, 90, 100, 1, 1, 1)).toBe(-1);
    expect(encodeResyncRequest(buf, 94, 100, 1)).toBe(-1);
    expect(encodeDigestList(buf, 80, 100, RecordKind.DIGEST_REPLY, [1, 2, 3], [1, 2, 3], 0, 3)).toBe(-1);
    expect(buf.every((b) => b === 0xee)).toBe(true);
    // Exactly fitting is fine.
    expect(encodeCreate(buf, 44, 100, 1, snapshot(false, true), NOW_MS)).toBe(100);
  });

  it("clamps an expired connection to 0 remaining ms", () => {
    const buf = new Uint8Array(128);
    const s = { ...snapshot(false, false), expiresAtMs: NOW_MS - 5 };
    const rec = decodeOne(buf, encodeCreate(buf, 0, buf.length, 1, s, NOW_MS));
    expect(rec.remainingMs).toBe(0);
  });
});

describe("decoding hostile bytes", () => {
  it("every truncation of a valid record is reported, never thrown", () => {
    const buf = new Uint8Array(512);
    const out = new DecodedRecord();
    fc.assert(
      fc.property(snapshotArb, (s) => {
        const end = encodeCreate(buf, 0, buf.length, 1, s, NOW_MS);
        for (let cut = 0; cut < end; cut++) {
          expect(decodeRecord(buf, 0, cut, out)).toBe(-1);
          expect(out.error).toBe(RecordError.TRUNCATED);
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it("random bytes and mutated records never throw and never overrun", () => {
    const out = new DecodedRecord();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 600 }), (bytes, start) => {
        let p = Math.min(start, bytes.length);
        for (let guard = 0; guard < 1000 && p >= 0 && p < bytes.length; guard++) {
          const next = decodeRecord(bytes, p, bytes.length, out);
          if (next < 0) {
            expect(out.error).not.toBe(RecordError.NONE);
            break;
          }
          expect(next).toBeGreaterThan(p);
          expect(next).toBeLessThanOrEqual(bytes.length);
          p = next;
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
    const buf = new Uint8Array(512);
    fc.assert(
      fc.property(snapshotArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (s, at, x) => {
        const end = encodeCreate(buf, 0, buf.length, 1, s, NOW_MS);
        buf[at % end] ^= x;
        const next = decodeRecord(buf, 0, end, out);
        expect(next === -1 || (next > 0 && next <= end)).toBe(true);
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it("names each kind of damage", () => {
    const buf = new Uint8Array(128);
    const out = new DecodedRecord();
    let end = encodeDelete(buf, 0, buf.length, 1, snapshot(false, false));
    buf[0] = 99;
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_KIND);

    end = encodeDelete(buf, 0, buf.length, 1, snapshot(false, false));
    buf[10] |= 0x02; // seenReply flag is not allowed in a DELETE key
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_FIELD);

    end = encodeCreate(buf, 0, buf.length, 1, snapshot(false, false), NOW_MS);
    buf[23] = 16; // state byte past the last ConnState
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_FIELD);

    end = encodeBulkBegin(buf, 0, buf.length, 1, 1, 1);
    buf[2] = 14; // claims one byte less than a bulk record
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_LENGTH);
  });
});

class CollectingSink implements RecordSink {
  readonly records: { bucket: number; key: FlowKey; remainingMs: number }[] = [];
  private readonly out = new DecodedRecord();
  enqueue(bytes: Uint8Array, offset: number, length: number): void {
    expect(decodeRecord(bytes, offset, offset + length, this.out)).toBe(offset + length);
    expect(this.out.kind).toBe(RecordKind.REFRESH);
    this.records.push({ bucket: this.out.bucket, key: flowKeyOfRecord(this.out), remainingMs: this.out.remainingMs });
  }
}

function keyOf(i: number, v6 = false): FlowKey {
  const src = new Uint8Array(v6 ? 16 : 4);
  src[src.length - 1] = i & 0xff;
  src[src.length - 2] = i >>> 8;
  return { zone: 0, protocol: 6, src, dst: new Uint8Array(v6 ? 16 : 4).fill(9), srcPort: 1000 + i, dstPort: 80 };
}

describe("RefreshCoalescer", () => {
  it("keeps one refresh per key, with the latest expiry", () => {
    const c = new RefreshCoalescer(16);
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 10; i++) expect(c.note(i, keyOf(i, i % 2 === 1), NOW_MS + 1000 * round + i)).toBe(true);
    }
    expect(c.pending).toBe(10);
    const sink = new CollectingSink();
    expect(c.drainTo(sink, NOW_MS)).toBe(10);
    expect(sink.records.map((r) => r.bucket)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(sink.records.map((r) => r.remainingMs)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => 4000 + i));
    expect(sink.records[3]!.key).toEqual(keyOf(3, true));
    expect(c.pending).toBe(0);
    expect(c.drainTo(sink, NOW_MS)).toBe(0);
  });

  it("refuses a new key when full, accepts known keys, and works again after a drain", () => {
    const c = new RefreshCoalescer(4);
    for (let i = 0; i < 4; i++) expect(c.note(1, keyOf(i), NOW_MS + 10)).toBe(true);
    expect(c.note(1, keyOf(4), NOW_MS + 10)).toBe(false);
    expect(c.note(1, keyOf(2), NOW_MS + 20)).toBe(true);
    const sink = new CollectingSink();
    expect(c.drainTo(sink, NOW_MS)).toBe(4);
    expect(c.note(1, keyOf(4), NOW_MS + 10)).toBe(true);
    expect(c.pending).toBe(1);
  });

  it("cancel drops a pending refresh so it cannot follow a state transition", () => {
    const c = new RefreshCoalescer(8);
    c.note(1, keyOf(1), NOW_MS + 10);
    c.note(2, keyOf(2), NOW_MS + 10);
    expect(c.cancel(keyOf(1))).toBe(true);
    expect(c.cancel(keyOf(1))).toBe(false);
    expect(c.cancel(keyOf(3))).toBe(false);
    const sink = new CollectingSink();
    c.drainTo(sink, NOW_MS);
    expect(sink.records.map((r) => r.bucket)).toEqual([2]);
    // Noting a cancelled key again revives it.
    c.note(1, keyOf(1), NOW_MS + 10);
    c.cancel(keyOf(1));
    c.note(1, keyOf(1), NOW_MS + 30);
    c.drainTo(sink, NOW_MS);
    expect(sink.records.slice(1).map((r) => r.remainingMs)).toEqual([30]);
  });

  it("matches a map model under random notes, cancels and drains", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 1000 })), { maxLength: 300 }),
        (ops) => {
          const capacity = 16;
          const c = new RefreshCoalescer(capacity);
          const model = new Map<number, number>();
          // A cancelled key keeps its room until the next drain.
          const used = new Set<number>();
          for (const [op, k, t] of ops) {
            if (op === 0) {
              const ok = c.note(k, keyOf(k), NOW_MS + t);
              expect(ok).toBe(used.has(k) || used.size < capacity);
              if (ok) {
                model.set(k, t);
                used.add(k);
              }
            } else if (op === 1) {
              expect(c.cancel(keyOf(k))).toBe(model.delete(k));
            } else {
              const sink = new CollectingSink();
              c.drainTo(sink, NOW_MS);
              expect(new Map(sink.records.map((r) => [r.bucket, r.remainingMs]))).toEqual(model);
              model.clear();
              used.clear();
            }
            expect(c.pending).toBe(model.size);
          }
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });
});
