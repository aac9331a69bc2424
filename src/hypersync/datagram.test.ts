import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { createHmac } from "node:crypto";
import { DatagramHeader, DatagramType, MacKey, OpenResult, datagramBytes, openDatagram, sealDatagram, sipHash24, type OpenContext } from "./datagram.js";
import {
  DATAGRAM_BYTES_MAX,
  DATAGRAM_HEADER_BYTES,
  DATAGRAM_LONG_HEADER_BYTES,
  DATAGRAM_PAYLOAD_BYTES_MAX,
  DATAGRAM_SHORT_HEADER_BYTES,
  MAC_BYTES,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
} from "./constants.js";
import { TandemError } from "../stdx/errors.js";

const SEED = 42;
const KEY_BYTES = Buffer.alloc(32, 0x5a);
const KEY = new MacKey(KEY_BYTES);
const OTHER_KEY = new MacKey(Buffer.alloc(32, 0x5b));
const CLUSTER = 0xc1a5;

console.log(`datagram tests seed=${SEED}`);

function header(type: number, long: boolean): DatagramHeader {
  const h = new DatagramHeader();
  h.type = type;
  h.long = long;
  h.hasFirstSeq = long;
  h.clusterId = CLUSTER;
  h.senderId = 7;
  h.receiverId = 8;
  h.session = 1234;
  h.peerSession = 99;
  h.epoch = 5;
  h.seq = 0xfffffff0;
  h.ack = 17;
  h.firstSeq = 0xffffffe0;
  h.flags = 0x08;
  return h;
}

/** The receiver's side of the header above (member 8, whose session is 99, hearing member 7). */
function context(extra: Partial<OpenContext> = {}): OpenContext {
  return {
    clusterId: CLUSTER,
    localId: 8,
    peerId: 7,
    localSession: 99,
    peerSession: 1234,
    epoch: 5,
    minEpoch: 0,
    versionMin: PROTOCOL_VERSION_MIN,
    versionMax: PROTOCOL_VERSION_MAX,
    peerVersion: PROTOCOL_VERSION_MIN,
    ...extra,
  };
}

/** A DATA datagram with `payloadLength` payload bytes (contents are opaque at this layer). */
function sealData(payloadLength: number, long: boolean, key = KEY, h = header(DatagramType.DATA, long)): { buf: Uint8Array; len: number } {
  const slot = new Uint8Array(DATAGRAM_BYTES_MAX);
  for (let i = 0; i < payloadLength; i++) slot[DATAGRAM_HEADER_BYTES + i] = (i * 31) & 0xff;
  const start = sealDatagram(slot, DATAGRAM_HEADER_BYTES, payloadLength, h, key);
  const len = datagramBytes(h, payloadLength);
  return { buf: slot.slice(start, start + len), len };
}

function derivedKey(): Uint8Array {
  return createHmac("sha256", KEY_BYTES).update("tandem hypersync datagram mac v2").digest().subarray(0, 16);
}

function pseudoHeader(h: DatagramHeader): Uint8Array {
  const p = Buffer.alloc(24);
  p.writeUInt32BE(h.clusterId, 0);
  p.writeUInt32BE(((h.version << 24) | h.senderId) >>> 0, 4);
  p.writeUInt32BE(h.receiverId, 8);
  p.writeUInt32BE(h.session, 12);
  p.writeUInt32BE(h.peerSession, 16);
  p.writeUInt32BE(h.epoch, 20);
  return p;
}

describe("datagram seal/open", () => {
  it("opens what it sealed, field for field, in both forms", () => {
    for (const long of [true, false]) {
      for (const first of long ? [true] : [false, true]) {
        const h = header(DatagramType.DATA, long);
        h.hasFirstSeq = first;
        const { buf, len } = sealData(100, long, KEY, h);
        expect(len).toBe((long ? DATAGRAM_LONG_HEADER_BYTES : DATAGRAM_SHORT_HEADER_BYTES + (first ? 2 : 0)) + 100 + MAC_BYTES);
        const out = new DatagramHeader();
        expect(openDatagram(buf, len, KEY, context(), out)).toBe(OpenResult.OK);
        const { payloadOffset, payloadEnd, ...fields } = out;
        const { payloadOffset: _p, payloadEnd: _e, ...expected } = h;
        // Without FIRST the datagram says nothing about firstSeq.
        expect({ ...fields, firstSeq: first ? fields.firstSeq : h.firstSeq }).toEqual(expected);
        expect(payloadEnd - payloadOffset).toBe(100);
        expect(buf[payloadOffset + 1]).toBe(31);
      }
    }
  });

  it("a short header is 10 bytes, a long one 32, the tag 8", () => {
    const ack = header(DatagramType.ACK, false);
    ack.hasFirstSeq = false;
    expect(sealData(0, false, KEY, ack).len).toBe(18);
    expect(sealData(0, true, KEY, header(DatagramType.ACK, true)).len).toBe(40);
  });

  it("the MAC is SipHash-2-4 of the pseudo-header and every byte before the tag, under a key derived from the cluster key", () => {
    for (const long of [true, false]) {
      const h = header(DatagramType.DATA, long);
      const { buf, len } = sealData(64, long, KEY, h);
      const message = Buffer.concat([pseudoHeader(h), buf.subarray(0, len - MAC_BYTES)]);
      // The reference's 8 output bytes are the little-endian tag; the wire carries it big-endian.
      const reference = Array.from(sipHash24(derivedKey(), message)).reverse();
      expect(Array.from(buf.subarray(len - MAC_BYTES, len))).toEqual(reference);
    }
  });

  it("SipHash-2-4 matches the reference test vectors (key 00..0f, message 00..n-1)", () => {
    const key = Uint8Array.from({ length: 16 }, (_, i) => i);
    const vectors: [number, string][] = [
      [0, "310e0edd47db6f72"],
      [1, "fd67dc93c539f874"],
      [2, "5a4fa9d909806c0d"],
      [15, "e545be4961ca29a1"],
      [63, "724506eb4c328a95"],
    ];
    for (const [n, hex] of vectors) {
      expect(Buffer.from(sipHash24(key, Uint8Array.from({ length: n }, (_, i) => i))).toString("hex")).toBe(hex);
    }
  });

  it("a full datagram is exactly DATAGRAM_BYTES_MAX with the long header", () => {
    const { buf, len } = sealData(DATAGRAM_PAYLOAD_BYTES_MAX, true);
    expect(len).toBe(DATAGRAM_BYTES_MAX);
    expect(openDatagram(buf, len, KEY, context(), new DatagramHeader())).toBe(OpenResult.OK);
  });

  it("flipping any bit of any byte makes it fail", () => {
    const out = new DatagramHeader();
    for (const long of [true, false]) {
      const { buf, len } = sealData(200, long);
      fc.assert(
        fc.property(fc.integer({ min: 0, max: len - 1 }), fc.integer({ min: 0, max: 7 }), (at, bit) => {
          const copy = buf.slice(0, len);
          copy[at] ^= 1 << bit;
          expect(openDatagram(copy, len, KEY, context(), out)).not.toBe(OpenResult.OK);
        }),
        { seed: SEED, numRuns: 500 },
      );
    }
  });

  it("names each reason to drop", () => {
    const out = new DatagramHeader();
    const long = sealData(50, true);
    expect(openDatagram(long.buf, long.len, OTHER_KEY, context(), out)).toBe(OpenResult.BAD_MAC);
    expect(openDatagram(long.buf, long.len, KEY, context({ minEpoch: 6 }), out)).toBe(OpenResult.STALE_EPOCH);
    expect(openDatagram(long.buf, long.len, KEY, context({ clusterId: CLUSTER + 1 }), out)).toBe(OpenResult.WRONG_CLUSTER);
    expect(openDatagram(long.buf, long.len, KEY, context({ peerId: 9 }), out)).toBe(OpenResult.WRONG_PEER);
    expect(openDatagram(long.buf, long.len, KEY, context({ localId: 9 }), out)).toBe(OpenResult.MISADDRESSED);
    expect(openDatagram(long.buf, DATAGRAM_LONG_HEADER_BYTES + MAC_BYTES - 1, KEY, context(), out)).toBe(OpenResult.TRUNCATED);
    expect(openDatagram(long.buf, long.len - 1, KEY, context(), out)).toBe(OpenResult.BAD_MAC);
    expect(openDatagram(new Uint8Array(2000), 1500, KEY, context(), out)).toBe(OpenResult.TOO_LONG);
    const v1 = long.buf.slice();
    v1[1] = 1;
    expect(openDatagram(v1, long.len, KEY, context(), out)).toBe(OpenResult.BAD_VERSION);

    // The short form is checked against what the receiver knows: its own identity and session,
    // the peer's identity and session, the cluster. Any of them different: the MAC fails.
    const short = sealData(50, false);
    expect(openDatagram(short.buf, short.len, KEY, context(), out)).toBe(OpenResult.OK);
    expect(openDatagram(short.buf, short.len, KEY, context({ peerSession: 0 }), out)).toBe(OpenResult.UNKNOWN_SESSION);
    for (const wrong of [{ peerSession: 1235 }, { localSession: 98 }, { peerId: 9 }, { localId: 9 }, { clusterId: CLUSTER + 1 }]) {
      expect(openDatagram(short.buf, short.len, KEY, context(wrong), out)).toBe(OpenResult.BAD_MAC);
    }
    expect(openDatagram(short.buf, short.len, KEY, context({ minEpoch: 6 }), out)).toBe(OpenResult.STALE_EPOCH);
  });

  it("a short header's epoch is the one nearest the receiver's with the same low 8 bits", () => {
    const h = header(DatagramType.KEEPALIVE, false);
    h.epoch = 300;
    const { buf, len } = sealData(0, false, KEY, h);
    const out = new DatagramHeader();
    for (const receiverEpoch of [300, 299, 173, 427, 301]) {
      expect(openDatagram(buf, len, KEY, context({ epoch: receiverEpoch }), out)).toBe(OpenResult.OK);
      expect(out.epoch).toBe(300);
    }
    // 128 epochs apart: the guess is another epoch, which the MAC refuses.
    expect(openDatagram(buf, len, KEY, context({ epoch: 172 }), out)).toBe(OpenResult.BAD_MAC);
  });

  it("authentic but ill-shaped datagrams are malformed", () => {
    const out = new DatagramHeader();
    // An ACK must have no payload.
    let d = sealData(8, true, KEY, header(DatagramType.ACK, true));
    expect(openDatagram(d.buf, d.len, KEY, context(), out)).toBe(OpenResult.MALFORMED);
    // A NACK's payload is whole ranges of 8 bytes.
    d = sealData(12, true, KEY, header(DatagramType.NACK, true));
    expect(openDatagram(d.buf, d.len, KEY, context(), out)).toBe(OpenResult.MALFORMED);
    d = sealData(16, true, KEY, header(DatagramType.NACK, true));
    expect(openDatagram(d.buf, d.len, KEY, context(), out)).toBe(OpenResult.OK);
    // DATA without records.
    d = sealData(0, true, KEY, header(DatagramType.DATA, true));
    expect(openDatagram(d.buf, d.len, KEY, context(), out)).toBe(OpenResult.MALFORMED);
    // Unknown type, correctly MACed: rejected after authentication.
    const h = header(DatagramType.KEEPALIVE, true);
    d = sealData(0, true, KEY, h);
    d.buf[0] = (d.buf[0]! & ~7) | 6;
    KEY.tag(h, d.buf, 0, d.len - MAC_BYTES);
    Buffer.from(d.buf.buffer, d.buf.byteOffset).writeUInt32BE(KEY.result[0]!, d.len - 8);
    Buffer.from(d.buf.buffer, d.buf.byteOffset).writeUInt32BE(KEY.result[1]!, d.len - 4);
    expect(openDatagram(d.buf, d.len, KEY, context(), out)).toBe(OpenResult.BAD_TYPE);
  });

  it("random bytes never open and never throw", () => {
    const out = new DatagramHeader();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.boolean(), (bytes, plausible) => {
        if (plausible && bytes.length >= 20) {
          bytes[0] = 0x21; // long DATA
          bytes[1] = PROTOCOL_VERSION;
          bytes.set([0, 0, 0xc1, 0xa5], 16);
        }
        expect(openDatagram(bytes, bytes.length, KEY, context(), out)).not.toBe(OpenResult.OK);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("refuses a short cluster key with an operating error", () => {
    expect(() => new MacKey(Buffer.alloc(8))).toThrow(TandemError);
  });
});

// Version 2 is the only wire format today, so these tests let a receiver read {2, 3} and seal
// "version 3" with version 2's layout: what is under test is the machinery (the version byte,
// the range check, the MAC over the version, the short form's implied version), not a format.
describe("datagram protocol versions", () => {
  const V2_V3 = { versionMin: 2, versionMax: 3 };

  function sealedAt(version: number, long: boolean, type: number = DatagramType.DATA): { buf: Uint8Array; len: number } {
    const h = header(type, long);
    h.version = version;
    return sealData(type === DatagramType.DATA ? 40 : 0, long, KEY, h);
  }

  it("this build reads 2..2 and seals version 2 by default (PROTOCOL_VERSION is the newest)", () => {
    expect([PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION]).toEqual([2, 2, 2]);
    expect(new DatagramHeader().version).toBe(PROTOCOL_VERSION_MIN);
    expect(sealedAt(2, true).buf[1]).toBe(2);
  });

  it("a receiver accepts a long form of any version in its range and drops the others as bad-version", () => {
    const out = new DatagramHeader();
    for (const v of [2, 3]) {
      const { buf, len } = sealedAt(v, true);
      expect(buf[1]).toBe(v);
      expect(openDatagram(buf, len, KEY, context(V2_V3), out)).toBe(OpenResult.OK);
      expect(out.version).toBe(v);
    }
    for (const v of [1, 4, 255]) {
      const { buf, len } = sealedAt(v, true);
      expect(openDatagram(buf, len, KEY, context(V2_V3), out)).toBe(OpenResult.BAD_VERSION);
    }
    // A receiver of 2..2 refuses version 3 before it spends a MAC on it.
    const v3 = sealedAt(3, true);
    expect(openDatagram(v3.buf, v3.len, KEY, context(), out)).toBe(OpenResult.BAD_VERSION);
  });

  it("the MAC covers the version: a rewritten version byte or a wrong implied one fails", () => {
    const out = new DatagramHeader();
    // Long form: 2 rewritten to 3 (both in range) is a forgery.
    const long = sealedAt(2, true);
    const rewritten = long.buf.slice();
    rewritten[1] = 3;
    expect(openDatagram(rewritten, long.len, KEY, context(V2_V3), out)).toBe(OpenResult.BAD_MAC);
    // The tag is the reference SipHash over a pseudo-header that holds the version.
    const h = header(DatagramType.DATA, false);
    h.version = 3;
    const { buf, len } = sealData(64, false, KEY, h);
    const reference = Array.from(sipHash24(derivedKey(), Buffer.concat([pseudoHeader(h), buf.subarray(0, len - MAC_BYTES)]))).reverse();
    expect(Array.from(buf.subarray(len - MAC_BYTES, len))).toEqual(reference);
    // Short form sealed at 3: a receiver of 2..2 cannot verify it under any version it reads.
    expect(openDatagram(buf, len, KEY, context(), out)).toBe(OpenResult.BAD_MAC);
  });

  it("a short form verifies under the peer's last version, else under another version of the range", () => {
    const out = new DatagramHeader();
    const v3 = sealedAt(3, false);
    const v2 = sealedAt(2, false);
    // First guess right.
    expect(openDatagram(v3.buf, v3.len, KEY, context({ ...V2_V3, peerVersion: 3 }), out)).toBe(OpenResult.OK);
    expect(out.version).toBe(3);
    // The peer moved to 3 (or back to 2) since its last datagram here: found in the range.
    expect(openDatagram(v3.buf, v3.len, KEY, context({ ...V2_V3, peerVersion: 2 }), out)).toBe(OpenResult.OK);
    expect(out.version).toBe(3);
    expect(openDatagram(v2.buf, v2.len, KEY, context({ ...V2_V3, peerVersion: 3 }), out)).toBe(OpenResult.OK);
    expect(out.version).toBe(2);
    // A first guess outside the range is never tried (a datagram of such a version must fail).
    expect(openDatagram(v3.buf, v3.len, KEY, context({ peerVersion: 3 }), out)).toBe(OpenResult.BAD_MAC);
    // Bit flips still fail under every version of the range.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: v3.len - 1 }), fc.integer({ min: 0, max: 7 }), (at, bit) => {
        const copy = v3.buf.slice(0, v3.len);
        copy[at] ^= 1 << bit;
        expect(openDatagram(copy, v3.len, KEY, context({ ...V2_V3, peerVersion: 2 }), out)).not.toBe(OpenResult.OK);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});
