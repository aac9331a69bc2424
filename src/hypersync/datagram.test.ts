import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { createHmac } from "node:crypto";
import { DatagramHeader, DatagramType, MacKey, OpenResult, openDatagram, readSenderId, sealDatagram } from "./datagram.js";
import { DATAGRAM_BYTES_MAX, DATAGRAM_HEADER_BYTES, DATAGRAM_PAYLOAD_BYTES_MAX, MAC_BYTES } from "./constants.js";
import { TandemError } from "../stdx/errors.js";

const SEED = 42;
const KEY = new MacKey(Buffer.alloc(32, 0x5a));
const OTHER_KEY = new MacKey(Buffer.alloc(32, 0x5b));
const CLUSTER = 0xc1a5;

function header(type: number, count: number): DatagramHeader {
  const h = new DatagramHeader();
  h.type = type;
  h.clusterId = CLUSTER;
  h.senderId = 7;
  h.receiverId = 8;
  h.session = 1234;
  h.peerSession = 99;
  h.epoch = 5;
  h.seq = 0xfffffff0;
  h.ack = 17;
  h.firstSeq = 3;
  h.flags = 1;
  h.count = count;
  return h;
}

/** A DATA datagram with `payloadLength` payload bytes (contents are opaque at this layer). */
function sealData(payloadLength: number, key = KEY): { buf: Uint8Array; len: number } {
  const buf = new Uint8Array(DATAGRAM_BYTES_MAX);
  for (let i = 0; i < payloadLength; i++) buf[DATAGRAM_HEADER_BYTES + i] = (i * 31) & 0xff;
  const len = sealDatagram(buf, header(DatagramType.DATA, 1), payloadLength, key);
  return { buf, len };
}

describe("datagram seal/open", () => {
  it("opens what it sealed, field for field", () => {
    const { buf, len } = sealData(100);
    expect(len).toBe(DATAGRAM_HEADER_BYTES + 100 + MAC_BYTES);
    const out = new DatagramHeader();
    expect(openDatagram(buf, len, KEY, CLUSTER, 5, out)).toBe(OpenResult.OK);
    const { payloadOffset: _o, payloadEnd, ...fields } = out;
    const { payloadOffset: _p, payloadEnd: _e, ...expected } = header(DatagramType.DATA, 1);
    expect(fields).toEqual(expected);
    expect(payloadEnd).toBe(DATAGRAM_HEADER_BYTES + 100);
    expect(readSenderId(buf, len)).toBe(7);
  });

  it("the MAC is the first 16 bytes of HMAC-SHA256 over everything before it", () => {
    const { buf, len } = sealData(64);
    const reference = createHmac("sha256", Buffer.alloc(32, 0x5a)).update(buf.subarray(0, len - MAC_BYTES)).digest();
    expect(Array.from(buf.subarray(len - MAC_BYTES, len))).toEqual(Array.from(reference.subarray(0, MAC_BYTES)));
  });

  it("a full datagram is exactly DATAGRAM_BYTES_MAX", () => {
    const { buf, len } = sealData(DATAGRAM_PAYLOAD_BYTES_MAX);
    expect(len).toBe(DATAGRAM_BYTES_MAX);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, new DatagramHeader())).toBe(OpenResult.OK);
  });

  it("flipping any bit of any byte makes it fail", () => {
    const { buf, len } = sealData(200);
    const out = new DatagramHeader();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: len - 1 }), fc.integer({ min: 0, max: 7 }), (at, bit) => {
        const copy = buf.slice(0, len);
        copy[at] ^= 1 << bit;
        const result = openDatagram(copy, len, KEY, CLUSTER, 0, out);
        expect(result).not.toBe(OpenResult.OK);
        // Past the unauthenticated prefix checks, a flip is always a bad MAC.
        if (at >= 8) expect(result).toBe(OpenResult.BAD_MAC);
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  it("names each reason to drop", () => {
    const out = new DatagramHeader();
    const { buf, len } = sealData(50);
    expect(openDatagram(buf, len, OTHER_KEY, CLUSTER, 0, out)).toBe(OpenResult.BAD_MAC);
    expect(openDatagram(buf, len, KEY, CLUSTER, 6, out)).toBe(OpenResult.STALE_EPOCH);
    expect(openDatagram(buf, len, KEY, CLUSTER + 1, 0, out)).toBe(OpenResult.WRONG_CLUSTER);
    expect(openDatagram(buf, DATAGRAM_HEADER_BYTES + MAC_BYTES - 1, KEY, CLUSTER, 0, out)).toBe(OpenResult.TRUNCATED);
    expect(openDatagram(buf, len - 1, KEY, CLUSTER, 0, out)).toBe(OpenResult.BAD_MAC);
    expect(openDatagram(new Uint8Array(2000), 1500, KEY, CLUSTER, 0, out)).toBe(OpenResult.TOO_LONG);
    const v2 = buf.slice();
    v2[2] = 2;
    expect(openDatagram(v2, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.BAD_VERSION);
    const magic = buf.slice();
    magic[0] = 0x58;
    expect(openDatagram(magic, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.BAD_MAGIC);
  });

  it("authentic but ill-shaped datagrams are malformed", () => {
    const out = new DatagramHeader();
    const buf = new Uint8Array(DATAGRAM_BYTES_MAX);
    // An ACK must have no payload.
    let len = sealDatagram(buf, header(DatagramType.ACK, 0), 8, KEY);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.MALFORMED);
    // A NACK's payload is exactly count ranges of 8 bytes.
    len = sealDatagram(buf, header(DatagramType.NACK, 2), 8, KEY);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.MALFORMED);
    len = sealDatagram(buf, header(DatagramType.NACK, 1), 8, KEY);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.OK);
    // DATA without records.
    len = sealDatagram(buf, header(DatagramType.DATA, 0), 0, KEY);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.MALFORMED);
    // Unknown type, correctly MACed: rejected after authentication.
    len = sealDatagram(buf, header(DatagramType.KEEPALIVE, 0), 0, KEY);
    buf[3] = 9;
    const mac = createHmac("sha256", Buffer.alloc(32, 0x5a)).update(buf.subarray(0, len - MAC_BYTES)).digest();
    buf.set(mac.subarray(0, MAC_BYTES), len - MAC_BYTES);
    expect(openDatagram(buf, len, KEY, CLUSTER, 0, out)).toBe(OpenResult.BAD_TYPE);
  });

  it("random bytes never open and never throw", () => {
    const out = new DatagramHeader();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.boolean(), (bytes, withMagic) => {
        if (withMagic && bytes.length >= 8) {
          bytes[0] = 0x54;
          bytes[1] = 0x53;
          bytes[2] = 1;
          bytes[4] = 0;
          bytes[5] = 0;
          bytes[6] = 0xc1;
          bytes[7] = 0xa5;
        }
        expect(openDatagram(bytes, bytes.length, KEY, CLUSTER, 0, out)).not.toBe(OpenResult.OK);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("refuses a short cluster key with an operating error", () => {
    expect(() => new MacKey(Buffer.alloc(8))).toThrow(TandemError);
  });
});
