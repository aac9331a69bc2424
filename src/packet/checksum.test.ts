// Tests for the Internet checksums: known answers (RFC 1071, a textbook IPv4 header, and
// packets whose checksums were computed by an independent implementation), fill/verify on every
// protocol, UDP's zero rules, and fast-check properties that hold the RFC 1624 incremental
// updates (TTL decrement, NAT address rewrite) equal to a full recomputation.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fragmentPacket, packet, type PacketBuilder } from "./builder.js";
import {
  checksumAdjust16,
  checksumAdjust32,
  decrementTtl,
  fillChecksums,
  ipv4HeaderChecksum,
  l4Checksum,
  l4ChecksumOffset,
  onesComplementSum,
  pseudoHeaderSum,
  rewriteIpv4Address,
  verifyChecksums,
  verifyIpv4HeaderChecksum,
} from "./checksum.js";
import { parseFrame } from "./parse.js";
import { IpProto, LinkType, PacketView } from "./view.js";

const SEED = 42;
const A4 = "198.18.0.1";
const B4 = "198.19.0.1";
const A6 = "2001:db8::1";
const B6 = "2001:db8:1::2";

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text, "hex"));
}

function view(frame: Uint8Array, linkType: number = LinkType.RAW): PacketView {
  const v = new PacketView();
  expect(parseFrame(v, frame, 0, frame.length, linkType)).toBe(true);
  return v;
}

function u16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

// Raw IP packets; their checksums were computed with a separate Python implementation.
const KNOWN = [
  {
    name: "IPv4 TCP SYN with MSS",
    bytes: "4500002c1c4640004006925ec6120001c61300019c40005012345678000000006002faf00bd10000020405b4",
    ipChecksum: 0x925e,
    l4Checksum: 0x0bd1,
  },
  {
    name: "IPv6 UDP",
    bytes: "60000000000b114020010db800000000000000000000000120010db800010000000000000000000214e90035000bcae1616263",
    ipChecksum: -1,
    l4Checksum: 0xcae1,
  },
  {
    name: "IPv6 ICMPv6 echo request",
    bytes: "60000000000b3a4020010db800000000000000000000000120010db8000100000000000000000002800031c70001000278797a",
    ipChecksum: -1,
    l4Checksum: 0x31c7,
  },
  {
    name: "IPv4 ICMP echo request (odd length, no pseudo-header)",
    bytes: "4500001f000000004001eeb6c6120001c6130001080005830001000278797a",
    ipChecksum: 0xeeb6,
    l4Checksum: 0x0583,
  },
];

describe("checksum known answers", () => {
  it("sums RFC 1071's example and odd lengths", () => {
    expect(onesComplementSum(Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7), 0, 8)).toBe(0xddf2);
    expect(onesComplementSum(Uint8Array.of(0x01), 0, 1)).toBe(0x0100);
    expect(onesComplementSum(Uint8Array.of(0xff, 0xff, 0x00, 0x01), 0, 4)).toBe(0x0001);
    expect(onesComplementSum(Uint8Array.of(9, 0x12, 0x34), 1, 2, 0xffff)).toBe(0x1234);
    expect(onesComplementSum(new Uint8Array(0), 0, 0)).toBe(0);
  });

  it("computes a textbook IPv4 header checksum", () => {
    const header = hex("450000730000400040110000c0a80001c0a800c7");
    expect(ipv4HeaderChecksum(header, 0, 20)).toBe(0xb861);
    header[10] = 0xb8;
    header[11] = 0x61;
    expect(verifyIpv4HeaderChecksum(header, 0, 20)).toBe(true);
    expect(ipv4HeaderChecksum(header, 0, 20)).toBe(0xb861); // the stored field is ignored
    header[8] ^= 1;
    expect(verifyIpv4HeaderChecksum(header, 0, 20)).toBe(false);
  });

  it("agrees with the pseudo-header layouts of RFC 793 and RFC 8200", () => {
    const addresses = hex("c6120001c6130001");
    // IPv4: src, dst, 0, protocol, length.
    expect(pseudoHeaderSum(addresses, 0, 4, 4, 6, 24)).toBe(onesComplementSum(hex("c6120001c61300010006" + "0018"), 0, 12));
    // A length above 65535 (jumbogram) spreads over two words.
    const v6 = new Uint8Array(32).fill(0);
    expect(pseudoHeaderSum(v6, 0, 16, 16, 17, 0x12345)).toBe(0x0001 + 0x2345 + 17);
  });

  it.each(KNOWN.map((k) => [k.name, k] as const))("fills and verifies %s", (_name, known) => {
    const bytes = hex(known.bytes);
    const v = view(bytes);
    expect(verifyChecksums(v)).toBe(true);
    expect(l4Checksum(v)).toBe(known.l4Checksum);
    const fieldOffset = l4ChecksumOffset(v);
    // Zero both checksums, then fill: the known values come back.
    bytes[fieldOffset] = 0;
    bytes[fieldOffset + 1] = 0;
    if (known.ipChecksum >= 0) {
      bytes[10] = 0;
      bytes[11] = 0;
    }
    expect(verifyChecksums(v)).toBe(false);
    fillChecksums(v);
    expect(u16(bytes, fieldOffset)).toBe(known.l4Checksum);
    if (known.ipChecksum >= 0) expect(u16(bytes, 10)).toBe(known.ipChecksum);
    expect(verifyChecksums(v)).toBe(true);
  });
});

describe("fillChecksums and verifyChecksums", () => {
  const builders: Array<[string, () => PacketBuilder]> = [
    ["IPv4 TCP", () => packet().ethernet().ipv4({ src: A4, dst: B4, options: Uint8Array.of(1, 1, 1, 0) }).tcp({ sport: 1, dport: 2, options: { mss: 1400 } }).payload("data!")],
    ["IPv4 UDP", () => packet().ethernet().vlan(3).ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).payload("x")],
    ["IPv4 ICMP", () => packet().ipv4({ src: A4, dst: B4 }).icmp({ type: 0, id: 3, seq: 4 }).payload("pong")],
    ["IPv6 TCP through extension headers", () => packet().ipv6({ src: A6, dst: B6, ext: [{ type: "hopByHop" }, { type: "destination" }] }).tcp({ sport: 1, dport: 2 })],
    ["IPv6 UDP", () => packet().ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2 }).payload("abcde")],
    ["IPv6 ICMPv6", () => packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 1, quote: new Uint8Array(48) })],
  ];

  it.each(builders)("detects a flipped payload bit and repairs it: %s", (_name, make) => {
    const b = make();
    const frame = b.build();
    const v = view(frame, b.linkType());
    expect(verifyChecksums(v)).toBe(true);
    frame[frame.length - 1] ^= 0x10;
    expect(verifyChecksums(v)).toBe(false);
    fillChecksums(v);
    expect(verifyChecksums(v)).toBe(true);
  });

  it("treats a UDP checksum of 0 as none on IPv4 and as invalid on IPv6", () => {
    const v4 = view(packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2, checksum: 0 }).payload("abc").build());
    expect(verifyChecksums(v4)).toBe(true);
    const v6 = view(packet().ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2, checksum: 0 }).payload("abc").build());
    expect(verifyChecksums(v6)).toBe(false);
  });

  it("sends a UDP checksum that computes to 0 as 0xffff", () => {
    for (const make of [
      (w: Uint8Array) => packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).payload(w),
      (w: Uint8Array) => packet().ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2 }).payload(w),
    ]) {
      // With a zero word of payload the checksum is c; a payload word equal to c makes the
      // sum 0xffff, i.e. a computed checksum of 0.
      const first = view(make(new Uint8Array(2)).build());
      const c = l4Checksum(first);
      const frame = make(Uint8Array.of(c >>> 8, c & 0xff)).build();
      const v = view(frame);
      expect(l4Checksum(v)).toBe(0xffff);
      expect(u16(frame, l4ChecksumOffset(v))).toBe(0xffff); // the builder agrees
      expect(verifyChecksums(v)).toBe(true);
    }
  });

  it("leaves L4 alone on fragments and on protocols without a computed checksum", () => {
    const fragments = packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(64)).buildFragments(32);
    for (const f of fragments) {
      const v = view(f);
      expect(l4ChecksumOffset(v)).toBe(-1);
      f[10] ^= 0xff;
      expect(verifyChecksums(v)).toBe(false);
      fillChecksums(v);
      expect(verifyChecksums(v)).toBe(true);
    }
    const gre = view(packet().ipv4({ src: A4, dst: B4, protocol: 47 }).payload(new Uint8Array(8)).build());
    expect(l4ChecksumOffset(gre)).toBe(-1);
    expect(verifyChecksums(gre)).toBe(true);
    expect(() => l4Checksum(gre)).toThrow(/no computable L4 checksum/);
  });

  it("sums a UDP datagram per its length field, not trailing IP bytes", () => {
    const frame = packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).payload("abcd").build();
    // Grow the IP packet by two bytes of junk after the UDP datagram.
    const longer = new Uint8Array(frame.length + 2);
    longer.set(frame);
    longer[frame.length] = 0x55;
    longer[3] += 2;
    const v = view(longer);
    fillChecksums(v);
    expect(u16(longer, 26)).toBe(u16(frame, 26));
    expect(verifyChecksums(v)).toBe(true);
  });
});

// ---- Incremental updates -------------------------------------------------------------------

interface Spec {
  v6: boolean;
  l4: "tcp" | "udp" | "icmp";
  src: Uint8Array;
  dst: Uint8Array;
  ttl: number;
  ports: [number, number];
  payload: Uint8Array;
  udpNoChecksum: boolean;
  ipOptions: Uint8Array;
}

const specArb: fc.Arbitrary<Spec> = fc
  .record({
    v6: fc.boolean(),
    l4: fc.constantFrom("tcp" as const, "udp" as const, "icmp" as const),
    src6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    dst6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    src4: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    dst4: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    ttl: fc.integer({ min: 1, max: 255 }),
    ports: fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })),
    payload: fc.uint8Array({ maxLength: 80 }),
    udpNoChecksum: fc.boolean(),
    ipOptions: fc.uint8Array({ maxLength: 12 }),
  })
  .map((r) => ({
    v6: r.v6,
    l4: r.l4,
    src: r.v6 ? r.src6 : r.src4,
    dst: r.v6 ? r.dst6 : r.dst4,
    ttl: r.ttl,
    ports: r.ports,
    payload: r.payload,
    udpNoChecksum: r.udpNoChecksum && !r.v6 && r.l4 === "udp",
    ipOptions: r.ipOptions,
  }));

function buildSpec(s: Spec): PacketBuilder {
  let b = packet().ethernet();
  b = s.v6 ? b.ipv6({ src: s.src, dst: s.dst, hopLimit: s.ttl }) : b.ipv4({ src: s.src, dst: s.dst, ttl: s.ttl, options: s.ipOptions });
  if (s.l4 === "tcp") b = b.tcp({ sport: s.ports[0], dport: s.ports[1], flags: "PA", seq: s.ports[0] * 65537 });
  else if (s.l4 === "udp") b = b.udp({ sport: s.ports[0], dport: s.ports[1], checksum: s.udpNoChecksum ? 0 : undefined });
  else if (s.v6) b = b.icmpv6({ type: 128, id: s.ports[0], seq: s.ports[1] });
  else b = b.icmp({ type: 8, id: s.ports[0], seq: s.ports[1] });
  return b.payload(s.payload);
}

describe("incremental checksum updates (RFC 1624)", () => {
  it("carries twice when the adjusted sum overflows to exactly 0x10000", () => {
    // Data ffff 0000 sums to 0xffff (checksum 0); changing the zero word to 1 sums to
    // 0x1ffff before folding, which needs two end-around carries.
    const buf = Uint8Array.of(0xff, 0xff, 0x00, 0x00);
    expect(~onesComplementSum(buf, 0, 4) & 0xffff).toBe(0);
    buf[3] = 1;
    expect(checksumAdjust16(0, 0, 1)).toBe(~onesComplementSum(buf, 0, 4) & 0xffff);
    expect(checksumAdjust16(0, 0, 1)).toBe(0xfffe);
  });


  it(`checksumAdjust16/32 equal a full recomputation over random words (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 64 }).filter((b) => b.length % 2 === 0),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffffffff }),
        (bytes, at, value) => {
          const buf = Uint8Array.from(bytes);
          const checksum = ~onesComplementSum(buf, 0, buf.length) & 0xffff;
          const word = (at % (buf.length / 2)) * 2;
          const oldWord = u16(buf, word);
          buf[word] = value >>> 24;
          buf[word + 1] = (value >>> 16) & 0xff;
          // All-zero data is the one case RFC 1624 cannot follow (its sum is +0, the update
          // yields -0); it never occurs in a packet (the IP version, the protocol are non-zero).
          fc.pre(buf.some((b) => b !== 0));
          expect(checksumAdjust16(checksum, oldWord, value >>> 16)).toBe(~onesComplementSum(buf, 0, buf.length) & 0xffff);
          if (buf.length >= 4) {
            const pair = Math.min(word, buf.length - 4);
            const before = ~onesComplementSum(buf, 0, buf.length) & 0xffff;
            const oldValue = ((u16(buf, pair) << 16) | u16(buf, pair + 2)) >>> 0;
            buf[pair] = value >>> 24;
            buf[pair + 1] = (value >>> 16) & 0xff;
            buf[pair + 2] = (value >>> 8) & 0xff;
            buf[pair + 3] = value & 0xff;
            fc.pre(buf.some((b) => b !== 0));
            expect(checksumAdjust32(before, oldValue, value)).toBe(~onesComplementSum(buf, 0, buf.length) & 0xffff);
          }
        },
      ),
      { seed: SEED, numRuns: 1000 },
    );
  });

  it(`decrementTtl equals a full recomputation (seed ${SEED})`, () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const frame = buildSpec(s).build();
        const v = view(frame, LinkType.ETHERNET);
        decrementTtl(v);
        expect(v.ttl).toBe(s.ttl - 1);
        expect(frame[v.ttlOffset]).toBe(s.ttl - 1);
        const recomputed = frame.slice();
        const recomputedView = view(recomputed, LinkType.ETHERNET);
        fillChecksums(recomputedView);
        // fillChecksums writes a UDP checksum where the sender sent none; the TTL path keeps none.
        if (s.udpNoChecksum) recomputed.fill(0, l4ChecksumOffset(recomputedView), l4ChecksumOffset(recomputedView) + 2);
        expect(frame).toEqual(recomputed);
        expect(verifyChecksums(v)).toBe(true);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it(`rewriteIpv4Address equals a full recomputation (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        specArb.filter((s) => !s.v6),
        fc.constantFrom("src" as const, "dst" as const),
        fc.integer({ min: 0, max: 0xffffffff }),
        (s, which, newAddr) => {
          const frame = buildSpec(s).build();
          const v = view(frame, LinkType.ETHERNET);
          const l4Field = l4ChecksumOffset(v);
          const icmpBefore = u16(frame, l4Field);
          rewriteIpv4Address(v, which, newAddr);
          expect(which === "src" ? v.src4 : v.dst4).toBe(newAddr >>> 0);
          const reparsed = view(frame.slice(), LinkType.ETHERNET);
          expect(which === "src" ? reparsed.src4 : reparsed.dst4).toBe(newAddr >>> 0);
          if (s.udpNoChecksum) {
            expect(u16(frame, l4Field)).toBe(0);
            expect(verifyChecksums(v)).toBe(true);
            return;
          }
          const recomputed = frame.slice();
          fillChecksums(view(recomputed, LinkType.ETHERNET));
          expect(frame).toEqual(recomputed);
          if (s.l4 === "icmp") expect(u16(frame, l4Field)).toBe(icmpBefore);
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("patches the L4 checksum of a first fragment exactly like the whole datagram's", () => {
    const b = packet().ipv4({ src: A4, dst: B4, id: 5 }).tcp({ sport: 1, dport: 2, flags: "A" }).payload(new Uint8Array(100).fill(7));
    const whole = b.build();
    const wholeView = view(whole);
    rewriteIpv4Address(wholeView, "dst", 0x0a000001);
    const first = fragmentPacket(b.build(), { linkType: LinkType.RAW, fragmentSize: 64 })[0]!;
    const firstView = view(first);
    rewriteIpv4Address(firstView, "dst", 0x0a000001);
    expect(u16(first, 20 + 16)).toBe(u16(whole, 20 + 16));
    expect(verifyChecksums(firstView)).toBe(true); // the IPv4 header checksum
  });

  it("refuses to decrement a TTL of 0 or to rewrite an IPv6 address (programmer errors)", () => {
    const v = view(packet().ipv4({ src: A4, dst: B4, ttl: 0 }).build());
    expect(() => decrementTtl(v)).toThrow(/TTL/);
    const v6 = view(packet().ipv6({ src: A6, dst: B6 }).build());
    expect(() => rewriteIpv4Address(v6, "src", 1)).toThrow(/not IPv4/);
    expect(v6.protocol).toBe(IpProto.IPV6_NONXT);
  });
});
