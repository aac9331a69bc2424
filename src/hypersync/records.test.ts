import { describe, it, expect } from "vitest";
import fc from "fast-check";
import {
  DecodedRecord,
  KeyFlag,
  RecordError,
  RecordKind,
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
  remainingSecondsOf,
  snapshotOfRecord,
} from "./records.js";
import { ConnState, STATE_TIMEOUT_MS, type ConnectionSnapshot, type TcpDirectionSnapshot } from "../engine/types.js";
import type { FlowKey } from "../packet/flow-hash.js";
import { DIGEST_PAIRS_MAX, RECORD_EXPIRY_S_MAX } from "./constants.js";

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

/** A connection right after the packet that changed its state: the state's full timeout. */
function snapshot(v6: boolean, tcp: boolean): ConnectionSnapshot {
  const n = v6 ? 16 : 4;
  const dir = { end: 1, maxEnd: 2, maxWindow: 3, scale: 7, flags: 1 };
  const state = tcp ? ConnState.TCP_ESTABLISHED : ConnState.UDP_ASSURED;
  return {
    zone: 0,
    protocol: tcp ? 6 : 17,
    src: new Uint8Array(n).fill(1),
    dst: new Uint8Array(n).fill(2),
    srcPort: 1234,
    dstPort: 443,
    state,
    expiresAtMs: NOW_MS + STATE_TIMEOUT_MS[state]!,
    seenReply: true,
    assured: true,
    tcp: tcp ? { original: { ...dir }, reply: { ...dir } } : null,
  };
}

/** What a receiver gets back: expiry rounded up to whole seconds (clamped), windows only when sent. */
function expected(s: ConnectionSnapshot, windows: boolean, receiverNowMs: number): ConnectionSnapshot {
  const zero = { end: 0, maxEnd: 0, maxWindow: 0 };
  return {
    ...s,
    expiresAtMs: receiverNowMs + remainingSecondsOf(s.expiresAtMs, NOW_MS) * 1000,
    tcp: s.tcp === null ? null : windows ? s.tcp : { original: { ...s.tcp.original, ...zero }, reply: { ...s.tcp.reply, ...zero } },
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
  it("an IPv4 TCP state record is 18 bytes; the others as documented", () => {
    const buf = new Uint8Array(2048);
    const v4tcp = encodeCreate(buf, 0, buf.length, snapshot(false, true), NOW_MS, false);
    const v4tcpWindows = encodeCreate(buf, 0, buf.length, snapshot(false, true), NOW_MS, true);
    const v6tcp = encodeCreate(buf, 0, buf.length, snapshot(true, true), NOW_MS, false);
    const v4udp = encodeCreate(buf, 0, buf.length, snapshot(false, false), NOW_MS);
    const v4tcpExpiry = encodeUpdate(buf, 0, buf.length, { ...snapshot(false, true), expiresAtMs: NOW_MS + 60_000 }, NOW_MS, false);
    const zoned = encodeCreate(buf, 0, buf.length, { ...snapshot(false, true), zone: 7 }, NOW_MS, false);
    const del4 = encodeDelete(buf, 0, buf.length, snapshot(false, true));
    const del6 = encodeDelete(buf, 0, buf.length, snapshot(true, true));
    const ref4 = encodeRefresh(buf, 0, buf.length, snapshot(false, true), 10);
    const ref6 = encodeRefresh(buf, 0, buf.length, snapshot(true, true), 30_000);
    console.log(
      `record sizes: v4 tcp ${v4tcp} (+windows ${v4tcpWindows}, +expiry ${v4tcpExpiry}, +zone ${zoned}), v6 tcp ${v6tcp}, v4 udp ${v4udp}, delete ${del4}/${del6}, refresh ${ref4}/${ref6}`,
    );
    expect([v4tcp, v4tcpWindows, v4tcpExpiry, zoned, v6tcp, v4udp, del4, del6, ref4, ref6]).toEqual([18, 42, 19, 20, 42, 15, 15, 39, 16, 40]);
    expect(encodeBulkBegin(buf, 0, buf.length, 1, 2, 3)).toBe(13);
    expect(encodeResyncRequest(buf, 0, buf.length, 1)).toBe(5);
    expect(encodeDigestList(buf, 0, buf.length, RecordKind.DIGEST_REPLY, [1, 2], [3, 4], 0, 2)).toBe(19);
  });
});

describe("record round trip", () => {
  it("CREATE and UPDATE carry every field (expiry as remaining whole seconds, windows when asked)", () => {
    const buf = new Uint8Array(512);
    fc.assert(
      fc.property(snapshotArb, fc.boolean(), fc.boolean(), (s, update, windows) => {
        const end = update ? encodeUpdate(buf, 0, buf.length, s, NOW_MS, windows) : encodeCreate(buf, 0, buf.length, s, NOW_MS, windows);
        const rec = decodeOne(buf, end);
        expect(rec.kind).toBe(update ? RecordKind.UPDATE : RecordKind.CREATE);
        expect(rec.bucket).toBe(-1); // derived by the receiver from the key
        expect(rec.natOffset).toBe(-1);
        expect(rec.hasWindows).toBe(windows && s.tcp !== null);
        // The receiver's clock differs: expiry is re-based on its own now.
        expect(snapshotOfRecord(rec, 77)).toEqual(expected(s, windows, 77));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("a copy never expires before its original: remaining time rounds up, the default expiry is the state's full timeout", () => {
    const buf = new Uint8Array(128);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 20 * 86_400_000 }), fc.constantFrom(ConnState.TCP_ESTABLISHED, ConnState.TCP_TIME_WAIT, ConnState.UDP_UNREPLIED), (remaining, state) => {
        const s = { ...snapshot(false, true), state, expiresAtMs: NOW_MS + remaining };
        const rec = decodeOne(buf, encodeCreate(buf, 0, buf.length, s, NOW_MS, false));
        expect(rec.remainingMs).toBeGreaterThanOrEqual(Math.min(remaining, RECORD_EXPIRY_S_MAX * 1000));
        expect(rec.remainingMs).toBeLessThan(remaining + 1000);
      }),
      { seed: SEED, numRuns: 500 },
    );
    const exact = encodeCreate(buf, 0, buf.length, snapshot(false, true), NOW_MS, false);
    expect(buf[1]! & KeyFlag.DEFAULT_EXPIRY).toBe(KeyFlag.DEFAULT_EXPIRY);
    expect(decodeOne(buf, exact).remainingMs).toBe(STATE_TIMEOUT_MS[ConnState.TCP_ESTABLISHED]);
  });

  it("DELETE, REFRESH, BULK, DIGEST and RESYNC records round trip", () => {
    const buf = new Uint8Array(2048);
    const pairArb = fc.array(fc.tuple(u32, u32), { maxLength: DIGEST_PAIRS_MAX });
    fc.assert(
      fc.property(keyArb, u32, u32, u32, pairArb, fc.boolean(), (key, bucket, a, b, pairs, reply) => {
        let end = encodeDelete(buf, 0, buf.length, key);
        let rec = decodeOne(buf, end);
        expect([rec.kind, rec.bucket]).toEqual([RecordKind.DELETE, -1]);
        expect(flowKeyOfRecord(rec)).toEqual(key);

        end = encodeRefresh(buf, 0, buf.length, key, a);
        rec = decodeOne(buf, end);
        expect([rec.kind, rec.remainingMs]).toEqual([RecordKind.REFRESH, Math.min(Math.ceil(a / 1000), RECORD_EXPIRY_S_MAX) * 1000]);
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
          if (k === 0) end = encodeCreate(buf, end, buf.length, s, NOW_MS);
          else if (k === 1) end = encodeUpdate(buf, end, buf.length, s, NOW_MS, false);
          else if (k === 2) end = encodeDelete(buf, end, buf.length, s);
          else end = encodeRefresh(buf, end, buf.length, s, 5);
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
    const end = encodeCreate(buf, 0, buf.length, snapshot(false, true), NOW_MS, false, nat);
    expect(end).toBe(18 + 3 + nat.length);
    const rec = decodeOne(buf, end);
    expect(Array.from(buf.subarray(rec.natOffset, rec.natOffset + rec.natLength))).toEqual(Array.from(nat));

    // Append an unknown extension (type 200, 3 bytes) by hand and grow the area's length.
    const area = end - nat.length - 3;
    buf[area] = buf[area]! + 5;
    buf.set([200, 3, 1, 2, 3], end);
    const again = decodeOne(buf, end + 5);
    expect(again.natLength).toBe(nat.length);
  });
});

describe("encoding bounds", () => {
  it("returns -1 and writes nothing when the record does not fit", () => {
    const buf = new Uint8Array(100).fill(0xee);
    expect(encodeCreate(buf, 90, 100, snapshot(false, true), NOW_MS, false)).toBe(-1);
    expect(encodeCreate(buf, 60, 100, snapshot(false, true), NOW_MS, true)).toBe(-1);
    expect(encodeDelete(buf, 90, 100, snapshot(false, true))).toBe(-1);
    expect(encodeRefresh(buf, 90, 100, snapshot(false, true), 1)).toBe(-1);
    expect(encodeBulkEnd(buf, 90, 100, 1, 1, 1)).toBe(-1);
    expect(encodeResyncRequest(buf, 96, 100, 1)).toBe(-1);
    expect(encodeDigestList(buf, 80, 100, RecordKind.DIGEST_REPLY, [1, 2, 3], [1, 2, 3], 0, 3)).toBe(-1);
    expect(buf.every((b) => b === 0xee)).toBe(true);
    // Exactly fitting is fine.
    expect(encodeCreate(buf, 82, 100, snapshot(false, true), NOW_MS, false)).toBe(100);
  });

  it("clamps an expired connection to 0 remaining time", () => {
    const buf = new Uint8Array(128);
    const s = { ...snapshot(false, false), expiresAtMs: NOW_MS - 5 };
    const rec = decodeOne(buf, encodeCreate(buf, 0, buf.length, s, NOW_MS));
    expect(rec.remainingMs).toBe(0);
  });
});

describe("decoding hostile bytes", () => {
  it("every truncation of a valid record is reported, never thrown", () => {
    const buf = new Uint8Array(512);
    const out = new DecodedRecord();
    fc.assert(
      fc.property(snapshotArb, fc.boolean(), (s, windows) => {
        const end = encodeCreate(buf, 0, buf.length, s, NOW_MS, windows);
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
        const end = encodeCreate(buf, 0, buf.length, s, NOW_MS);
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
    let end = encodeDelete(buf, 0, buf.length, snapshot(false, false));
    buf[0] = 15; // no such kind
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_KIND);
    buf[0] = RecordKind.DELETE | (3 << 4); // a state on a kind that has none
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_KIND);

    end = encodeDelete(buf, 0, buf.length, snapshot(false, false));
    buf[1] |= KeyFlag.SEEN_REPLY; // not allowed in a DELETE key
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_FIELD);

    end = encodeCreate(buf, 0, buf.length, snapshot(false, true), NOW_MS, false);
    buf[15] = 0xf0; // window scale 15 in the TCP section
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_FIELD);

    end = encodeDigestList(buf, 0, buf.length, RecordKind.DIGEST_REQUEST, [1, 2], [3, 4], 0, 2);
    buf[2] = 3; // claims three pairs, carries two
    expect(decodeRecord(buf, 0, end, out)).toBe(-1);
    expect(out.error).toBe(RecordError.BAD_LENGTH);
  });
});
