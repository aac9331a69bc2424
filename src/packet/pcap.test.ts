// Tests for the capture reader and writer: round trips, hand-built pcap/pcapng files in both
// byte orders, every truncation point, random corruption (fast-check, fixed seeds), and the
// real tcpdump corpus. The reader must never throw and must always terminate.

import { readdirSync, readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../stdx/errors.js";
import {
  CAPTURED_LENGTH_MAX,
  CaptureReader,
  describeLinkType,
  isSupportedLinkType,
  openCapture,
  PcapWriter,
  type CaptureError,
} from "./pcap.js";
import { LinkType } from "./view.js";

interface Frame {
  bytes: number[];
  timestampMs: number;
  linkType: number;
  originalLength: number;
  interfaceIndex: number;
}

interface ReadResult {
  reader: CaptureReader;
  frames: Frame[];
  nextCalls: number;
}

/** Reads a whole capture, bounding next() calls so that a looping reader fails the test. */
function readAll(bytes: Uint8Array, name = "test"): ReadResult | CaptureError {
  const reader = openCapture(bytes, name);
  if (!reader.ok) return reader;
  const frames: Frame[] = [];
  const callsMax = Math.floor(bytes.length / 12) + 2;
  let nextCalls = 0;
  for (;;) {
    nextCalls++;
    if (nextCalls > callsMax) throw new Error(`reader did not terminate within ${callsMax} calls`);
    if (!reader.next()) break;
    expect(reader.offset).toBeGreaterThanOrEqual(0);
    expect(reader.offset + reader.capturedLength).toBeLessThanOrEqual(bytes.length);
    frames.push({
      bytes: [...reader.data.subarray(reader.offset, reader.offset + reader.capturedLength)],
      timestampMs: reader.timestampMs,
      linkType: reader.linkType,
      originalLength: reader.originalLength,
      interfaceIndex: reader.interfaceIndex,
    });
    expect(reader.frameIndex).toBe(frames.length - 1);
  }
  expect(reader.next()).toBe(false); // stays finished
  return { reader, frames, nextCalls };
}

function mustRead(bytes: Uint8Array, name = "test"): ReadResult {
  const result = readAll(bytes, name);
  if (!("reader" in result)) throw new Error(`expected a reader, got ${result.code}: ${result.message}`);
  return result;
}

function mustFailOpen(bytes: Uint8Array, name = "test"): CaptureError {
  const result = openCapture(bytes, name);
  if (result.ok) throw new Error("expected openCapture to fail");
  return result;
}

function bytesOf(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

function frameOf(length: number, seed: number): Uint8Array {
  const frame = new Uint8Array(length);
  for (let i = 0; i < length; i++) frame[i] = (seed * 31 + i * 7) & 0xff;
  return frame;
}

/** Checks a timestamp against whole ms + ns, within one double ulp near 2^41 ms (244 ns). */
function expectNear(timestampMs: number, wholeMs: number, fractionNs: number, toleranceNs = 300): void {
  expect(Math.abs((timestampMs - wholeMs) * 1e6 - fractionNs)).toBeLessThan(toleranceNs);
}

/** Microseconds of a reader timestamp, for exact comparison with what was written. */
function micros(timestampMs: number): number {
  return Math.round(timestampMs * 1000);
}

// ---- a small pcap builder (any byte order, µs or ns) ------------------------------------

interface PcapRecord {
  seconds: number;
  fraction: number;
  data: Uint8Array;
  originalLength?: number;
  capturedLength?: number; // override, to build corrupt records
}

function buildPcap(opts: { littleEndian: boolean; nanosecond: boolean; linkType: number; records: PcapRecord[] }): {
  bytes: Uint8Array;
  recordEnds: number[];
} {
  const total = 24 + opts.records.reduce((n, r) => n + 16 + r.data.length, 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  const le = opts.littleEndian;
  view.setUint32(0, opts.nanosecond ? 0xa1b23c4d : 0xa1b2c3d4, le);
  view.setUint16(4, 2, le);
  view.setUint16(6, 4, le);
  view.setUint32(16, 65535, le);
  view.setUint32(20, opts.linkType, le);
  let at = 24;
  const recordEnds: number[] = [];
  for (const r of opts.records) {
    view.setUint32(at, r.seconds, le);
    view.setUint32(at + 4, r.fraction, le);
    view.setUint32(at + 8, r.capturedLength ?? r.data.length, le);
    view.setUint32(at + 12, r.originalLength ?? r.data.length, le);
    bytes.set(r.data, at + 16);
    at += 16 + r.data.length;
    recordEnds.push(at);
  }
  return { bytes, recordEnds };
}

// ---- a small pcapng builder ---------------------------------------------------------------

interface Option {
  code: number;
  value: Uint8Array;
}

class PcapngBuilder {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  /** End offset of every block, and whether the block delivers a frame. */
  readonly blockEnds: { end: number; frame: boolean }[] = [];
  littleEndian: boolean;

  constructor(littleEndian: boolean) {
    this.littleEndian = littleEndian;
  }

  sectionHeader(littleEndian = this.littleEndian): this {
    this.littleEndian = littleEndian;
    const body = new Uint8Array(16);
    const v = new DataView(body.buffer);
    v.setUint32(0, 0x1a2b3c4d, littleEndian);
    v.setUint16(4, 1, littleEndian);
    v.setUint16(6, 0, littleEndian);
    v.setInt32(8, -1, littleEndian); // section length unknown
    v.setInt32(12, -1, littleEndian);
    return this.block(0x0a0d0d0a, body, false);
  }

  interface(linkType: number, snapLength: number, options: Option[] = []): this {
    const fixed = new Uint8Array(8);
    const v = new DataView(fixed.buffer);
    v.setUint16(0, linkType, this.littleEndian);
    v.setUint32(4, snapLength, this.littleEndian);
    return this.block(1, concat(fixed, this.options(options)), false);
  }

  enhancedPacket(interfaceId: number, units: bigint, data: Uint8Array, originalLength = data.length, options: Option[] = [], frame = true): this {
    const fixed = new Uint8Array(20);
    const v = new DataView(fixed.buffer);
    v.setUint32(0, interfaceId, this.littleEndian);
    v.setUint32(4, Number(units >> 32n), this.littleEndian);
    v.setUint32(8, Number(units & 0xffffffffn), this.littleEndian);
    v.setUint32(12, data.length, this.littleEndian);
    v.setUint32(16, originalLength, this.littleEndian);
    return this.block(6, concat(fixed, pad4(data), this.options(options)), frame);
  }

  simplePacket(data: Uint8Array, originalLength = data.length, frame = true): this {
    const fixed = new Uint8Array(4);
    new DataView(fixed.buffer).setUint32(0, originalLength, this.littleEndian);
    return this.block(3, concat(fixed, pad4(data)), frame);
  }

  obsoletePacket(interfaceId: number, units: bigint, data: Uint8Array, frame = true): this {
    const fixed = new Uint8Array(20);
    const v = new DataView(fixed.buffer);
    v.setUint16(0, interfaceId, this.littleEndian);
    v.setUint16(2, 0, this.littleEndian); // drops count
    v.setUint32(4, Number(units >> 32n), this.littleEndian);
    v.setUint32(8, Number(units & 0xffffffffn), this.littleEndian);
    v.setUint32(12, data.length, this.littleEndian);
    v.setUint32(16, data.length, this.littleEndian);
    return this.block(2, concat(fixed, pad4(data)), frame);
  }

  unknown(type: number, bodyLength: number): this {
    return this.block(type, frameOf(bodyLength, type), false);
  }

  block(type: number, body: Uint8Array, frame: boolean): this {
    const total = 12 + body.length;
    const out = new Uint8Array(total);
    const v = new DataView(out.buffer);
    v.setUint32(0, type, this.littleEndian);
    v.setUint32(4, total, this.littleEndian);
    out.set(body, 8);
    v.setUint32(total - 4, total, this.littleEndian);
    this.chunks.push(out);
    this.length += total;
    this.blockEnds.push({ end: this.length, frame });
    return this;
  }

  bytes(): Uint8Array {
    return concat(...this.chunks);
  }

  private options(options: Option[]): Uint8Array {
    if (options.length === 0) return new Uint8Array(0);
    const parts: Uint8Array[] = [];
    for (const o of options) {
      const head = new Uint8Array(4);
      const v = new DataView(head.buffer);
      v.setUint16(0, o.code, this.littleEndian);
      v.setUint16(2, o.value.length, this.littleEndian);
      parts.push(head, pad4(o.value));
    }
    parts.push(new Uint8Array(4)); // opt_endofopt
    return concat(...parts);
  }

  /** An 8-byte option value holding a signed 64-bit integer in this section's byte order. */
  int64(value: bigint): Uint8Array {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigInt64(0, value, this.littleEndian);
    return out;
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function pad4(data: Uint8Array): Uint8Array {
  const out = new Uint8Array((data.length + 3) & ~3);
  out.set(data);
  return out;
}

const TSRESOL_NS: Option = { code: 9, value: bytesOf(9) };
const IEEE802_15_4 = 195;

/** The mixed file of the pcapng tests: two sections, supported and unsupported interfaces. */
function buildMixedPcapng(littleEndian: boolean): { builder: PcapngBuilder; bytes: Uint8Array } {
  const builder = new PcapngBuilder(littleEndian);
  builder
    .sectionHeader()
    .interface(LinkType.ETHERNET, 0, [{ code: 2, value: new TextEncoder().encode("eth0") }, TSRESOL_NS])
    .interface(IEEE802_15_4, 127)
    .enhancedPacket(0, 1_700_000_000_123_456_789n, frameOf(60, 1), 1514, [{ code: 1, value: bytesOf(0x68, 0x69) }])
    .enhancedPacket(1, 1_700_000_000_200_000_000n, frameOf(21, 2), 21, [], false) // unsupported: skipped
    .unknown(0x0bad, 12)
    .unknown(5, 20) // an interface statistics block, skipped like any other
    .simplePacket(frameOf(42, 3))
    .obsoletePacket(0, 1_700_000_001_000_000_001n, frameOf(17, 4))
    .enhancedPacket(0, 1_700_000_002_000_000_000n, frameOf(0, 5))
    // Second section in the other byte order: interface ids start again, default µs units,
    // a raw-IP interface recorded as DLT 12, and if_tsoffset of 100 seconds.
    .sectionHeader(!littleEndian)
    .interface(12, 65535, [{ code: 14, value: builder.int64(100n) }])
    .interface(LinkType.LINUX_SLL2, 65535, [{ code: 9, value: bytesOf(0x80 | 10) }]) // 2^-10 s
    .enhancedPacket(0, 1_600_000_000_000_001n, frameOf(20, 6))
    .enhancedPacket(1, 3n * 1024n + 512n, frameOf(33, 7));
  return { builder, bytes: builder.bytes() };
}

// ---- tests -------------------------------------------------------------------------------

describe("PcapWriter round trip", () => {
  it("reads back the written frames, timestamps to the microsecond and link type", () => {
    const writer = new PcapWriter(LinkType.ETHERNET);
    const written = [
      { data: frameOf(60, 1), ts: 1_700_000_000_123.456 },
      { data: frameOf(0, 2), ts: 0 },
      { data: frameOf(1514, 3), ts: 1_700_000_000_999.999 },
      { data: frameOf(9000, 4), ts: 4_294_967_295_999.999 }, // the last representable µs
      { data: frameOf(64, 5), ts: 12.0004 }, // rounds to 12.000 ms
    ];
    for (const w of written) writer.writeFrame(w.data, w.ts);
    expect(writer.frameCount).toBe(written.length);
    const bytes = writer.toBytes();
    expect([...bytes.subarray(0, 4)]).toEqual([0xd4, 0xc3, 0xb2, 0xa1]);
    const { reader, frames } = mustRead(bytes);
    expect(reader.error).toBeNull();
    expect(reader.format).toBe("pcap");
    expect(reader.frameCount).toBe(written.length);
    expect(frames.map((f) => f.bytes)).toEqual(written.map((w) => [...w.data]));
    expect(frames.map((f) => micros(f.timestampMs))).toEqual(written.map((w) => Math.round(w.ts * 1000)));
    expect(frames.every((f) => f.linkType === LinkType.ETHERNET && f.interfaceIndex === 0)).toBe(true);
    expect(frames.map((f) => f.originalLength)).toEqual(written.map((w) => w.data.length));
  });

  it("cuts frames at the snap length and keeps the original length", () => {
    const writer = new PcapWriter(LinkType.RAW, 64);
    writer.writeFrame(frameOf(100, 9), 5, 1500);
    writer.writeFrame(frameOf(10, 8), 6);
    const { frames, reader } = mustRead(writer.toBytes());
    expect(reader.error).toBeNull();
    expect(frames[0].bytes).toEqual([...frameOf(64, 9)]);
    expect(frames[0].originalLength).toBe(1500);
    expect(frames[1].bytes).toEqual([...frameOf(10, 8)]);
    expect(frames[1].linkType).toBe(LinkType.RAW);
  });

  it("grows past its initial buffer and copies frames at write time", () => {
    const writer = new PcapWriter(LinkType.LINUX_SLL);
    const frame = frameOf(40_000, 1);
    for (let i = 0; i < 5; i++) {
      frame[0] = i;
      writer.writeFrame(frame, i);
    }
    const { frames } = mustRead(writer.toBytes());
    expect(frames.map((f) => f.bytes[0])).toEqual([0, 1, 2, 3, 4]);
    expect(frames.every((f) => f.bytes.length === 40_000)).toBe(true);
  });

  it("asserts on programmer errors", () => {
    expect(() => new PcapWriter(70_000)).toThrow(/link type/);
    const writer = new PcapWriter(LinkType.ETHERNET);
    expect(() => writer.writeFrame(frameOf(4, 1), -1)).toThrow(/timestamp/);
    expect(() => writer.writeFrame(frameOf(4, 1), Number.NaN)).toThrow(/timestamp/);
    expect(() => writer.writeFrame(frameOf(4, 1), 1, 3)).toThrow(/original length/);
  });
});

describe("pcap variants", () => {
  const records: PcapRecord[] = [
    { seconds: 1_418_145_369, fraction: 924_505_488, data: frameOf(76, 1) },
    { seconds: 1_418_145_370, fraction: 1, data: frameOf(30, 2), originalLength: 1000 },
  ];

  for (const littleEndian of [true, false]) {
    const order = littleEndian ? "little-endian" : "big-endian";
    it(`reads a nanosecond ${order} pcap`, () => {
      const { bytes } = buildPcap({ littleEndian, nanosecond: true, linkType: LinkType.LINUX_SLL, records });
      const { frames, reader } = mustRead(bytes);
      expect(reader.error).toBeNull();
      expect(frames.length).toBe(2);
      expectNear(frames[0].timestampMs, 1_418_145_369_924, 505488);
      expectNear(frames[1].timestampMs, 1_418_145_370_000, 1);
      expect(frames[1].originalLength).toBe(1000);
      expect(frames.map((f) => f.bytes)).toEqual(records.map((r) => [...r.data]));
      expect(frames[0].linkType).toBe(LinkType.LINUX_SLL);
    });

    it(`reads a microsecond ${order} pcap`, () => {
      const us = records.map((r) => ({ ...r, fraction: r.fraction % 1_000_000 }));
      const { bytes } = buildPcap({ littleEndian, nanosecond: false, linkType: LinkType.ETHERNET, records: us });
      const { frames, reader } = mustRead(bytes);
      expect(reader.error).toBeNull();
      expect(frames.map((f) => micros(f.timestampMs))).toEqual(us.map((r) => r.seconds * 1_000_000 + r.fraction));
    });
  }

  it("normalizes DLT_RAW 12 and 14 to LinkType.RAW and ignores the FCS bits above the link type", () => {
    for (const [headerType, expected] of [
      [12, LinkType.RAW],
      [14, LinkType.RAW],
      [0x30000001, LinkType.ETHERNET],
      [0x04000000 | LinkType.IPV6, LinkType.IPV6],
    ]) {
      const { bytes } = buildPcap({ littleEndian: true, nanosecond: false, linkType: headerType, records });
      const { frames } = mustRead(bytes);
      expect(frames[0].linkType).toBe(expected);
    }
  });

  it("refuses an unsupported link type, naming it", () => {
    const ppp = mustFailOpen(new PcapWriter(9).toBytes(), "ppp.pcap");
    expect(ppp.code).toBe(ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED);
    expect(ppp.message).toContain("ppp.pcap");
    expect(ppp.message).toContain("LINKTYPE_PPP (9)");
    const unknown = mustFailOpen(new PcapWriter(1234).toBytes());
    expect(unknown.message).toContain("LINKTYPE 1234");
  });

  it("describes link types by their LINKTYPE_ names", () => {
    expect(describeLinkType(0)).toBe("LINKTYPE_NULL (0)");
    expect(describeLinkType(105)).toBe("LINKTYPE_IEEE802_11 (105)");
    expect(describeLinkType(127)).toBe("LINKTYPE_IEEE802_11_RADIOTAP (127)");
    expect(describeLinkType(149)).toBe("LINKTYPE_USER2 (149)");
    expect(describeLinkType(253)).toBe("LINKTYPE_NETLINK (253)");
    expect(describeLinkType(258)).toBe("LINKTYPE_PKTAP (258)");
    expect(describeLinkType(276)).toBe("LINKTYPE_LINUX_SLL2 (276)");
    expect(describeLinkType(65000)).toBe("LINKTYPE 65000");
    for (const t of Object.values(LinkType)) expect(isSupportedLinkType(t)).toBe(true);
    for (const t of [0, 9, 12, 14, 105, 127]) expect(isSupportedLinkType(t)).toBe(false);
  });

  it("rejects bytes that are not a capture", () => {
    const text = mustFailOpen(new TextEncoder().encode("License text, not a capture"), "LICENSE");
    expect(text.code).toBe(ErrorCode.CAPTURE_UNREADABLE);
    expect(text.message).toBe("LICENSE: not a pcap or pcapng file: magic 0x4c696365");
    expect(mustFailOpen(new Uint8Array(0)).message).toContain("only 0 bytes");
    const shortHeader = mustFailOpen(new PcapWriter(1).toBytes().subarray(0, 20));
    expect(shortHeader.code).toBe(ErrorCode.CAPTURE_UNREADABLE);
    expect(shortHeader.message).toContain("truncated pcap file header");
  });

  it("reports an over-long record but delivers the frames before it", () => {
    const { bytes } = buildPcap({
      littleEndian: true,
      nanosecond: false,
      linkType: LinkType.ETHERNET,
      records: [
        { seconds: 1, fraction: 0, data: frameOf(10, 1) },
        { seconds: 2, fraction: 0, data: frameOf(10, 2), capturedLength: CAPTURED_LENGTH_MAX + 1 },
      ],
    });
    const { frames, reader } = mustRead(bytes);
    expect(frames.length).toBe(1);
    expect(reader.error?.code).toBe(ErrorCode.CAPTURE_UNREADABLE);
    expect(reader.error?.message).toContain(`captured length ${CAPTURED_LENGTH_MAX + 1} exceeds`);
  });

  it("reads a pcap from a Uint8Array that is a view into a larger buffer", () => {
    const file = new PcapWriter(LinkType.IPV4);
    file.writeFrame(frameOf(20, 3), 1000);
    const inner = file.toBytes();
    const outer = new Uint8Array(inner.length + 13);
    outer.set(inner, 7);
    const { frames, reader } = mustRead(outer.subarray(7, 7 + inner.length));
    expect(reader.error).toBeNull();
    expect(frames[0].bytes).toEqual([...frameOf(20, 3)]);
    expect(reader.offset).toBe(24 + 16); // offsets are relative to the given view
  });
});

describe("pcapng", () => {
  for (const littleEndian of [true, false]) {
    const order = littleEndian ? "little-endian" : "big-endian";
    it(`reads sections, interfaces, EPB/SPB/PB and skips unknown blocks (${order} first)`, () => {
      const { bytes } = buildMixedPcapng(littleEndian);
      const { frames, reader } = mustRead(bytes);
      expect(reader.format).toBe("pcapng");
      expect(reader.error).toBeNull();
      expect(frames.map((f) => f.bytes)).toEqual(
        [frameOf(60, 1), frameOf(42, 3), frameOf(17, 4), frameOf(0, 5), frameOf(20, 6), frameOf(33, 7)].map((f) => [...f]),
      );
      expect(frames.map((f) => f.linkType)).toEqual([
        LinkType.ETHERNET,
        LinkType.ETHERNET,
        LinkType.ETHERNET,
        LinkType.ETHERNET,
        LinkType.RAW,
        LinkType.LINUX_SLL2,
      ]);
      expect(frames.map((f) => f.interfaceIndex)).toEqual([0, 0, 0, 0, 0, 1]);
      expect(frames[0].originalLength).toBe(1514);
      // if_tsresol 10^-9: exact to well under a microsecond.
      expectNear(frames[0].timestampMs, 1_700_000_000_123, 456789);
      // A simple packet block has no timestamp: it keeps the previous frame's.
      expect(frames[1].timestampMs).toBe(frames[0].timestampMs);
      expectNear(frames[2].timestampMs, 1_700_000_001_000, 1);
      expect(frames[3].timestampMs).toBe(1_700_000_002_000);
      // Default µs units plus if_tsoffset of 100 s.
      expect(micros(frames[4].timestampMs)).toBe(1_600_000_000_000_001 + 100_000_000);
      // if_tsresol 2^-10: 3.5 seconds.
      expect(frames[5].timestampMs).toBe(3500);
      expect(reader.skippedUnsupported).toBe(1);
      expect([...reader.unsupportedLinkTypes]).toEqual([IEEE802_15_4]);
      expect(reader.unsupportedOnlyError()).toBeNull();
    });
  }

  it("converts 64-bit nanosecond timestamps to the nearest double, not via a rounded product", () => {
    // 1.7e18 ns is past 2^53: multiplying the count by 1e-6 would be off by ~250 ns here.
    const bytes = new PcapngBuilder(true)
      .sectionHeader()
      .interface(LinkType.ETHERNET, 0, [TSRESOL_NS])
      .enhancedPacket(0, 1_700_000_000_000_182_137n, frameOf(8, 1))
      .bytes();
    const { frames } = mustRead(bytes);
    expectNear(frames[0].timestampMs, 1_700_000_000_000, 182_137, 130);
  });

  it("cuts a simple packet at interface 0's snap length", () => {
    const bytes = new PcapngBuilder(true).sectionHeader().interface(LinkType.ETHERNET, 16).simplePacket(frameOf(40, 1)).bytes();
    const { frames, reader } = mustRead(bytes);
    expect(reader.error).toBeNull();
    expect(frames[0].bytes).toEqual([...frameOf(16, 1)]);
    expect(frames[0].originalLength).toBe(40);
  });

  it("lets the caller tell a file whose every packet is on an unsupported interface", () => {
    const bytes = new PcapngBuilder(false)
      .sectionHeader()
      .interface(IEEE802_15_4, 0)
      .interface(9, 0)
      .enhancedPacket(0, 1n, frameOf(10, 1))
      .enhancedPacket(1, 2n, frameOf(10, 2))
      .simplePacket(frameOf(10, 3))
      .bytes();
    const { frames, reader } = mustRead(bytes, "zigbee.pcapng");
    expect(frames.length).toBe(0);
    expect(reader.error).toBeNull();
    expect(reader.skippedUnsupported).toBe(3);
    const error = reader.unsupportedOnlyError();
    expect(error?.code).toBe(ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED);
    expect(error?.message).toContain("zigbee.pcapng");
    expect(error?.message).toContain("LINKTYPE_PPP (9)");
    expect(error?.message).toContain("LINKTYPE_IEEE802_15_4_WITHFCS (195)");
  });

  it("reports corrupt blocks with a reason, after the frames before them", () => {
    const base = () => new PcapngBuilder(true).sectionHeader().interface(LinkType.ETHERNET, 0).enhancedPacket(0, 1n, frameOf(8, 1));
    const cases: [string, Uint8Array, RegExp][] = [];
    const odd = base().bytes();
    const oddFile = concat(odd, bytesOf(0x06, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0));
    cases.push(["length not a multiple of 4", oddFile, /multiple of 4/]);
    const mismatch = base().enhancedPacket(0, 2n, frameOf(8, 2)).bytes();
    mismatch[mismatch.length - 4] ^= 0x40;
    cases.push(["trailer mismatch", mismatch, /trailing total length/]);
    cases.push(["undescribed interface", base().enhancedPacket(3, 2n, frameOf(8, 2)).bytes(), /interface 3 was not described/]);
    const tooLong = base().enhancedPacket(0, 2n, frameOf(8, 2)).bytes();
    new DataView(tooLong.buffer).setUint32(tooLong.length - 40 + 20, 400, true);
    cases.push(["captured length past the block", tooLong, /does not fit/]);
    const badBom = base().bytes();
    const secondSection = new PcapngBuilder(true).sectionHeader().bytes();
    secondSection[8] = 0x00;
    cases.push(["bad byte-order magic", concat(badBom, secondSection), /byte-order magic/]);
    cases.push(["trailing garbage", concat(base().bytes(), bytesOf(1, 2, 3)), /3 bytes remain/]);
    for (const [label, bytes, reason] of cases) {
      const { frames, reader } = mustRead(bytes, label);
      expect(frames.length, label).toBe(1);
      expect(reader.error?.code, label).toBe(ErrorCode.CAPTURE_UNREADABLE);
      expect(reader.error?.message, label).toMatch(reason);
      expect(reader.error?.message.startsWith(`${label}: `), label).toBe(true);
    }
  });
});

describe("truncation", () => {
  it("every prefix of a pcap reads without throwing and errs exactly when a record is cut", () => {
    const { bytes, recordEnds } = buildPcap({
      littleEndian: false,
      nanosecond: false,
      linkType: LinkType.ETHERNET,
      records: [0, 1, 14, 60, 3].map((n, i) => ({ seconds: i, fraction: i, data: frameOf(n, i) })),
    });
    for (let n = 0; n <= bytes.length; n++) {
      const result = readAll(bytes.subarray(0, n));
      if (n < 24) {
        expect("reader" in result, `prefix ${n}`).toBe(false);
        continue;
      }
      if (!("reader" in result)) throw new Error(`prefix ${n} did not open`);
      const complete = recordEnds.filter((end) => end <= n).length;
      expect(result.frames.length, `prefix ${n}`).toBe(complete);
      const atBoundary = n === 24 || recordEnds.includes(n);
      expect(result.reader.error === null, `prefix ${n}`).toBe(atBoundary);
    }
  });

  for (const littleEndian of [true, false]) {
    it(`every prefix of a pcapng reads without throwing and errs exactly when a block is cut (${littleEndian ? "LE" : "BE"})`, () => {
      const { builder, bytes } = buildMixedPcapng(littleEndian);
      const ends = builder.blockEnds;
      for (let n = 0; n <= bytes.length; n++) {
        const result = readAll(bytes.subarray(0, n));
        if (n < 12) {
          expect("reader" in result, `prefix ${n}`).toBe(false);
          continue;
        }
        if (!("reader" in result)) throw new Error(`prefix ${n} did not open`);
        const complete = ends.filter((b) => b.end <= n && b.frame).length;
        expect(result.frames.length, `prefix ${n}`).toBe(complete);
        const atBoundary = ends.some((b) => b.end === n);
        expect(result.reader.error === null, `prefix ${n}`).toBe(atBoundary);
      }
    });
  }
});

describe("random corruption never throws and always terminates", () => {
  const validFiles: Uint8Array[] = [buildMixedPcapng(true).bytes, buildMixedPcapng(false).bytes];
  const writer = new PcapWriter(LinkType.ETHERNET);
  for (let i = 0; i < 6; i++) writer.writeFrame(frameOf(20 + i * 9, i), i * 1.5);
  validFiles.push(writer.toBytes());
  validFiles.push(
    buildPcap({
      littleEndian: false,
      nanosecond: true,
      linkType: LinkType.RAW,
      records: [{ seconds: 1, fraction: 2, data: frameOf(40, 1) }],
    }).bytes,
  );

  function checkNeverThrows(bytes: Uint8Array): void {
    const result = readAll(bytes);
    if (!("reader" in result)) {
      expect([ErrorCode.CAPTURE_UNREADABLE, ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED]).toContain(result.code);
      return;
    }
    expect(result.reader.error === null || result.reader.error.code === ErrorCode.CAPTURE_UNREADABLE).toBe(true);
    for (const f of result.frames) {
      expect(isSupportedLinkType(f.linkType)).toBe(true);
      expect(f.bytes.length).toBeLessThanOrEqual(CAPTURED_LENGTH_MAX);
      expect(Number.isFinite(f.timestampMs)).toBe(true);
    }
    result.reader.unsupportedOnlyError();
  }

  it("random bytes, with and without a capture magic (seed 42)", () => {
    const magics = [
      [],
      [0xd4, 0xc3, 0xb2, 0xa1],
      [0xa1, 0xb2, 0x3c, 0x4d],
      [0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0x00, 0x00, 0x00, 0x4d, 0x3c, 0x2b, 0x1a],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...magics), fc.uint8Array({ maxLength: 400 }), (magic, tail) => {
        checkNeverThrows(concat(Uint8Array.from(magic), tail));
      }),
      { seed: 42, numRuns: 2000 },
    );
  });

  it("bit flips and overwritten words in valid files (seed 4242)", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: validFiles.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.tuple(fc.nat(), fc.constantFrom(0, 0xffffffff, 0x7fffffff, 12, 13, 0x40000, 0x40004))),
        (fileIndex, flips, word) => {
          const bytes = validFiles[fileIndex].slice();
          for (const [position, bit] of flips) bytes[position % bytes.length] ^= 1 << bit;
          if (word !== null) {
            const [position, value] = word;
            const at = (position % (bytes.length >> 2)) << 2;
            new DataView(bytes.buffer).setUint32(at, value >>> 0, true);
          }
          checkNeverThrows(bytes);
        },
      ),
      { seed: 4242, numRuns: 3000 },
    );
  });
});

describe("tcpdump corpus", () => {
  const corpus = new URL("../../../shared/corpus/tcpdump/", import.meta.url);
  const names = readdirSync(corpus).sort();
  const read = (name: string) => readAll(readFileSync(new URL(name, corpus)), name);

  it("opens every file without throwing, and reading terminates", () => {
    expect(names.length).toBeGreaterThan(500);
    let readers = 0;
    let refused = 0;
    for (const name of names) {
      const result = read(name);
      if ("reader" in result) {
        readers++;
        // The corpus's container framing is intact; its damage is inside the frames.
        expect(result.reader.error, name).toBeNull();
      } else {
        refused++;
        expect([ErrorCode.CAPTURE_UNREADABLE, ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED], name).toContain(result.code);
        expect(result.message.startsWith(`${name}: `), name).toBe(true);
      }
    }
    expect(readers).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(100); // 802.11 radiotap alone is over a hundred files
  });

  it("spot checks: link types, frame counts, timestamps", () => {
    const ipv4 = mustRead(readFileSync(new URL("LINKTYPE_IPV4.pcap", corpus)));
    expect(ipv4.frames.length).toBe(1);
    expect(ipv4.frames[0].linkType).toBe(LinkType.IPV4);
    expect(ipv4.frames[0].bytes[0]).toBe(0x45);
    expect(micros(ipv4.frames[0].timestampMs)).toBe(1_751_997_572_592_885);

    const qinq = mustRead(readFileSync(new URL("802.1ad_QinQ.pcap", corpus)));
    expect(qinq.frames.length).toBe(2);
    expect(qinq.frames[0].linkType).toBe(LinkType.ETHERNET);

    const bigEndian = mustRead(readFileSync(new URL("isup.pcap", corpus)));
    expect(bigEndian.frames.length).toBe(6);
    expect(bigEndian.frames[0].bytes.length).toBe(146);

    const nano = mustRead(readFileSync(new URL("tcp-handshake-nano.pcap", corpus)));
    expect(nano.frames.length).toBe(3);
    expect(nano.frames[0].linkType).toBe(LinkType.LINUX_SLL);
    expectNear(nano.frames[0].timestampMs, 1_418_145_369_924, 505488);

    const fcsBits = mustRead(readFileSync(new URL("aarp-heapoverflow-2.pcap", corpus)));
    expect(fcsBits.frames[0].linkType).toBe(LinkType.ETHERNET);

    const ng = mustRead(readFileSync(new URL("of13_ericsson.pcapng", corpus)));
    expect(ng.frames.length).toBe(174);
    expect(ng.frames.every((f) => f.linkType === LinkType.ETHERNET)).toBe(true);
    expect(micros(ng.frames[0].timestampMs)).toBe(1_382_197_969_322_823);

    const ns = mustRead(readFileSync(new URL("icmp-length-zero.pcapng", corpus)));
    expect(ns.frames.length).toBe(1);
    expectNear(ns.frames[0].timestampMs, 1_759_756_153_000, 1000);

    const cooked = mustRead(readFileSync(new URL("bgp-orf.pcapng", corpus)));
    expect(cooked.frames[0].linkType).toBe(LinkType.LINUX_SLL);
  });

  it("names the unsupported link type of a refused file", () => {
    const expectations: [string, string][] = [
      ["802_15_4-data.pcap", "LINKTYPE_IEEE802_15_4_WITHFCS (195)"],
      ["unsupported-link-type-dbus.pcap", "LINKTYPE_DBUS (231)"],
      ["ppp_error_hexdump.pcap", "LINKTYPE_PPP_HDLC (50)"],
      ["LINKTYPE_PKTAP.pcap", "LINKTYPE_PKTAP (258)"],
      ["nflog.pcap", "LINKTYPE_NFLOG (239)"],
      ["ipoib.pcap", "LINKTYPE_IPOIB (242)"],
    ];
    for (const [name, described] of expectations) {
      const error = mustFailOpen(readFileSync(new URL(name, corpus)), name);
      expect(error.code, name).toBe(ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED);
      expect(error.message, name).toContain(described);
    }
    // pcapng: the file opens, its packets are skipped and counted, and the caller can tell.
    const nullLink = mustRead(readFileSync(new URL("ospf2-seg-fault-1.pcapng", corpus)), "ospf2-seg-fault-1.pcapng");
    expect(nullLink.frames.length).toBe(0);
    expect(nullLink.reader.skippedUnsupported).toBe(1);
    expect(nullLink.reader.unsupportedOnlyError()?.message).toContain("LINKTYPE_NULL (0)");
    const hdlc = mustRead(readFileSync(new URL("hdlc_slarp.pcapng", corpus)), "hdlc_slarp.pcapng");
    expect(hdlc.reader.unsupportedOnlyError()?.message).toContain("LINKTYPE_C_HDLC (104)");
  });

  it("rejects the licence file as not a capture", () => {
    const error = mustFailOpen(readFileSync(new URL("LICENSE", corpus)), "LICENSE");
    expect(error.code).toBe(ErrorCode.CAPTURE_UNREADABLE);
    expect(error.message).toContain("not a pcap or pcapng file");
  });
});
