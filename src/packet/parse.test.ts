// Tests for the frame parser: fixture tables built with the packet builder (one row per
// protocol shape and per failure reason), TCP options, ICMP error quotes, VXLAN, and
// fast-check properties: builder -> parse round trips, random bytes / truncations / bit flips
// never throw and keep the offset invariant of view.ts, and the flow hash of a parsed packet
// equals the flow hash of its key and is symmetric.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIpv4 } from "./addr.js";
import { fragmentPacket, packet, type PacketBuilder, type TcpOptionList } from "./builder.js";
import { l4ChecksumOffset, verifyChecksums } from "./checksum.js";
import { flowHashOfKey, flowHashOfView } from "./flow-hash.js";
import {
  IPV6_EXTENSION_HEADERS_MAX,
  parseFrame,
  parseQuotedIp,
  parseTcpOptions,
  parseVxlanPayload,
} from "./parse.js";
import { EtherType, IpProto, LinkType, PacketView, ParseFailure, TcpFlag, VXLAN_PORT } from "./view.js";

const SEED = 42;
const A4 = "198.18.0.1";
const B4 = "198.19.0.1";
const A6 = "2001:db8::1";
const B6 = "2001:db8:1::2";

function parseOk(frame: Uint8Array, linkType: number = LinkType.ETHERNET): PacketView {
  const view = new PacketView();
  const ok = parseFrame(view, frame, 0, frame.length, linkType);
  expect(view.failure).toBe(ParseFailure.NONE);
  expect(ok).toBe(true);
  checkInvariant(view);
  return view;
}

function built(b: PacketBuilder): [Uint8Array, number] {
  return [b.build(), b.linkType()];
}

/** The offset invariant of view.ts, plus the per-protocol facts the parser promises. */
function checkInvariant(v: PacketView): void {
  const fail = (what: string): never => {
    throw new Error(`invariant: ${what}`);
  };
  const fo = v.frameOffset;
  const fe = v.frameEnd;
  if (v.failure !== ParseFailure.NONE) fail("failure set on success");
  if (v.l2Offset >= 0 && (v.l2Offset < fo || v.l2Offset + 14 > fe)) fail("l2Offset");
  if (v.vlanCount < 0 || v.vlanCount > 2) fail("vlanCount");
  if (v.arpOp !== 0) {
    if (v.arpSenderMacOffset < fo || v.arpSenderMacOffset + 10 > fe) fail("arp sender");
    if (v.arpTargetMacOffset < fo || v.arpTargetMacOffset + 10 > fe) fail("arp target");
  }
  if (v.ipVersion === 0) {
    if (v.l3Offset !== -1 || v.l4Offset !== -1 || v.payloadOffset !== -1) fail("non-IP with L3/L4 offsets");
    return;
  }
  if (v.ipVersion !== 4 && v.ipVersion !== 6) fail("ipVersion");
  const addressLength = v.ipVersion === 4 ? 4 : 16;
  if (v.l3Offset < fo || (v.l2Offset >= 0 && v.l2Offset >= v.l3Offset)) fail("l3Offset");
  if (v.ipHeaderLength < (v.ipVersion === 4 ? 20 : 40)) fail("ipHeaderLength");
  if (v.l3Offset + v.ipHeaderLength > v.l3End || v.l3End > fe) fail("l3End");
  if (v.srcAddrOffset < v.l3Offset || v.srcAddrOffset + addressLength > v.l3End) fail("srcAddrOffset");
  if (v.dstAddrOffset < v.l3Offset || v.dstAddrOffset + addressLength > v.l3End) fail("dstAddrOffset");
  if (v.ttlOffset < v.l3Offset || v.ttlOffset >= v.l3End || v.buf[v.ttlOffset] !== v.ttl) fail("ttl");
  if (v.fragmentOffset !== 0 && v.l4Offset !== -1) fail("L4 on a later fragment");
  if (v.l4Offset >= 0 && (v.l4Offset !== v.l3Offset + v.ipHeaderLength || v.l4Offset > v.l3End)) fail("l4Offset");
  if (v.payloadOffset >= 0 && (v.l4Offset < 0 || v.payloadOffset < v.l4Offset || v.payloadOffset > v.l3End)) fail("payloadOffset");
  if (v.protocol === IpProto.TCP && v.payloadOffset >= 0) {
    if (v.tcpHeaderLength < 20 || v.payloadOffset !== v.l4Offset + v.tcpHeaderLength) fail("tcp header");
    if (v.tcpDataLength !== v.l3End - v.payloadOffset) fail("tcpDataLength");
    if (v.tcpOptionsLength !== v.tcpHeaderLength - 20) fail("tcpOptionsLength");
    if (v.tcpOptionsOffset >= 0 && v.tcpOptionsOffset + v.tcpOptionsLength > v.payloadOffset) fail("tcp options");
    if (v.tcpSeq < 0 || v.tcpSeq > 0xffffffff || v.tcpAck < 0 || v.tcpAck > 0xffffffff) fail("seq/ack unsigned");
  }
  if (v.protocol === IpProto.UDP && v.payloadOffset >= 0) {
    if (v.udpLength < 8 || v.payloadOffset !== v.l4Offset + 8) fail("udp header");
    if (!v.moreFragments && v.l4Offset + v.udpLength > v.l3End) fail("udpLength");
  }
  if (v.icmpQuoteOffset >= 0 && (!v.icmpIsError || v.icmpQuoteOffset >= v.l3End || v.icmpQuoteOffset !== v.l4Offset + 8)) {
    fail("icmpQuoteOffset");
  }
  if (v.vxlanVni >= 0 && (v.vxlanInnerOffset !== v.payloadOffset + 8 || v.vxlanInnerOffset > v.l3End)) fail("vxlan");
  if (v.vxlanVni < 0 && v.vxlanInnerOffset !== -1) fail("vxlan inner without vni");
}

function ipv4Of(text: string): number {
  return parseIpv4(text)!;
}

// ---- Fixture tables -------------------------------------------------------------------------

interface OkRow {
  name: string;
  frame: () => [Uint8Array, number];
  expected: Partial<Record<keyof PacketView, unknown>>;
}

const seventeenDestinationHeaders = Array.from({ length: IPV6_EXTENSION_HEADERS_MAX + 1 }, () => ({ type: "destination" as const }));

const okRows: OkRow[] = [
  {
    name: "Ethernet IPv4 TCP SYN",
    frame: () =>
      built(
        packet()
          .ethernet()
          .ipv4({ src: A4, dst: B4, ttl: 63, id: 0x1234, tos: 0x2e })
          .tcp({ sport: 40000, dport: 80, flags: "S", seq: 0xfffffff0, ack: 0x80000001, window: 29200, options: { mss: 1460, wscale: 7, sackPerm: true, ts: [1, 0] } }),
      ),
    expected: {
      l2Offset: 0, etherType: EtherType.IPV4, ipVersion: 4, l3Offset: 14, ipHeaderLength: 20, l3End: 14 + 20 + 40,
      src4: ipv4Of(A4), dst4: ipv4Of(B4), srcAddrOffset: 26, dstAddrOffset: 30, ttl: 63, ttlOffset: 22,
      protocol: IpProto.TCP, trafficClass: 0x2e, fragmentId: 0x1234, isFragment: false, l4Offset: 34, srcPort: 40000, dstPort: 80,
      tcpFlags: TcpFlag.SYN, tcpSeq: 0xfffffff0, tcpAck: 0x80000001, tcpWindow: 29200, tcpHeaderLength: 40,
      tcpOptionsOffset: 54, tcpOptionsLength: 20, payloadOffset: 74, tcpDataLength: 0, tcpMss: 0, tcpWindowScale: -1,
    },
  },
  {
    name: "Ethernet VLAN IPv4 UDP with payload",
    frame: () => built(packet().ethernet().vlan(100).ipv4({ src: A4, dst: B4 }).udp({ sport: 5353, dport: 53 }).payload("query")),
    expected: { vlanCount: 1, vlanOuter: 100, vlanInner: 0, l3Offset: 18, protocol: IpProto.UDP, udpLength: 13, payloadOffset: 46, srcPort: 5353, dstPort: 53 },
  },
  {
    name: "QinQ 802.1ad + 802.1Q IPv6 TCP with all flags",
    frame: () =>
      built(packet().ethernet().vlan(10, { tpid: EtherType.QINQ }).vlan(20).ipv6({ src: A6, dst: B6 }).tcp({ sport: 1, dport: 2, flags: "SAFRPUEC" })),
    expected: { vlanCount: 2, vlanOuter: 10, vlanInner: 20, etherType: EtherType.IPV6, l3Offset: 22, ipVersion: 6, tcpFlags: 0xff, ipHeaderLength: 40 },
  },
  {
    name: "0x9100 outer tag",
    frame: () => built(packet().ethernet().vlan(4095, { tpid: EtherType.QINQ_OLD, pcp: 7 }).vlan(1).ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 })),
    expected: { vlanCount: 2, vlanOuter: 4095, vlanInner: 1, l3Offset: 22 },
  },
  {
    name: "raw IPv4 ICMP echo request: ports are the identifier",
    frame: () => built(packet().ipv4({ src: A4, dst: B4 }).icmp({ type: 8, id: 0xbeef, seq: 7 }).payload("ping")),
    expected: { l2Offset: -1, etherType: 0, l3Offset: 0, protocol: IpProto.ICMP, icmpType: 8, icmpIsEcho: true, icmpId: 0xbeef, icmpSeq: 7, srcPort: 0xbeef, dstPort: 0xbeef, payloadOffset: 28, icmpIsError: false },
  },
  {
    name: "raw IPv6 ICMPv6 echo reply",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, hopLimit: 1 }).icmpv6({ type: 129, id: 9, seq: 10 })),
    expected: { ipVersion: 6, protocol: IpProto.ICMPV6, icmpType: 129, icmpIsEcho: true, srcPort: 9, dstPort: 9, ttl: 1, ttlOffset: 7 },
  },
  {
    name: "ICMPv6 neighbour solicitation (not echo, not error)",
    frame: () => built(packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 135, rest: 0 }).payload(new Uint8Array(16))),
    expected: { icmpType: 135, icmpIsEcho: false, icmpIsError: false, srcPort: 0, dstPort: 0, payloadOffset: 48 },
  },
  {
    name: "ICMP over IPv6 is not decoded (protocol 1 belongs to IPv4)",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, nextHeader: IpProto.ICMP }).payload(Uint8Array.of(8, 0, 0, 0, 0, 1, 0, 1))),
    expected: { protocol: IpProto.ICMP, l4Offset: 40, payloadOffset: -1, icmpIsEcho: false, icmpType: 0 },
  },
  {
    name: "link type IPV4",
    frame: () => [packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).build(), LinkType.IPV4],
    expected: { l3Offset: 0, ipVersion: 4, protocol: IpProto.UDP },
  },
  {
    name: "link type IPV6",
    frame: () => [packet().ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2 }).build(), LinkType.IPV6],
    expected: { l3Offset: 0, ipVersion: 6, protocol: IpProto.UDP, srcAddrOffset: 8, dstAddrOffset: 24 },
  },
  {
    name: "Linux SLL IPv4",
    frame: () => built(packet().linuxSll(1).ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2 })),
    expected: { l2Offset: -1, etherType: EtherType.IPV4, l3Offset: 16, protocol: IpProto.TCP },
  },
  {
    name: "Linux SLL2 IPv6 behind a VLAN tag",
    frame: () => built(packet().linuxSll(2).vlan(7).ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2 })),
    expected: { l2Offset: -1, etherType: EtherType.IPV6, vlanCount: 1, vlanOuter: 7, l3Offset: 24 },
  },
  {
    name: "ARP request",
    frame: () =>
      built(packet().ethernet({ dst: "ff:ff:ff:ff:ff:ff" }).arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 })),
    expected: { etherType: EtherType.ARP, ipVersion: 0, arpOp: 1, arpSenderMacOffset: 22, arpSenderIp: ipv4Of(A4), arpTargetMacOffset: 32, arpTargetIp: ipv4Of(B4), l3Offset: -1 },
  },
  {
    name: "ARP reply via SLL",
    frame: () => built(packet().linuxSll(1).arp({ op: 2, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 })),
    expected: { etherType: EtherType.ARP, arpOp: 2, arpSenderMacOffset: 24 },
  },
  {
    name: "LLDP: another EtherType parses as non-IP",
    frame: () => built(packet().ethernet({ etherType: 0x88cc }).payload(new Uint8Array(46))),
    expected: { etherType: 0x88cc, ipVersion: 0, l3Offset: -1, l4Offset: -1 },
  },
  {
    name: "802.3 length field parses as non-IP",
    frame: () => built(packet().ethernet({ etherType: 38 }).payload(new Uint8Array(46))),
    expected: { etherType: 38, ipVersion: 0 },
  },
  {
    name: "IPv4 with options",
    frame: () => built(packet().ethernet().ipv4({ src: A4, dst: B4, options: Uint8Array.of(0x94, 4, 0, 0, 1) }).udp({ sport: 1, dport: 2 })),
    expected: { ipHeaderLength: 28, l4Offset: 42, srcPort: 1, dstPort: 2 },
  },
  {
    name: "Ethernet padding past the IPv4 total length is not part of the packet",
    frame: () => {
      const frame = packet().ethernet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2 }).build();
      const padded = new Uint8Array(60);
      padded.set(frame);
      return [padded, LinkType.ETHERNET];
    },
    expected: { l3End: 14 + 28, udpLength: 8, frameEnd: 60 },
  },
  {
    name: "IPv4 first fragment: L4 decoded, UDP length may exceed the fragment",
    frame: () => {
      const frags = packet().ethernet().ipv4({ src: A4, dst: B4, id: 77 }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(100)).buildFragments(48);
      return [frags[0]!, LinkType.ETHERNET];
    },
    expected: { isFragment: true, moreFragments: true, fragmentOffset: 0, fragmentId: 77, l4Offset: 34, srcPort: 1, dstPort: 2, udpLength: 108, l3End: 14 + 20 + 48 },
  },
  {
    name: "IPv4 later fragment: no L4",
    frame: () => {
      const frags = packet().ethernet().ipv4({ src: A4, dst: B4, id: 77 }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(100)).buildFragments(48);
      return [frags[2]!, LinkType.ETHERNET];
    },
    expected: { isFragment: true, moreFragments: false, fragmentOffset: 96, fragmentId: 77, l4Offset: -1, payloadOffset: -1, srcPort: 0, protocol: IpProto.UDP },
  },
  {
    name: "IPv4 GRE: l4Offset set, nothing decoded",
    frame: () => built(packet().ipv4({ src: A4, dst: B4, protocol: 47 }).payload(new Uint8Array(4))),
    expected: { protocol: 47, l4Offset: 20, payloadOffset: -1, srcPort: 0 },
  },
  {
    name: "IPv6 extension chain hop-by-hop, destination, routing, fragment (first) then TCP",
    frame: () =>
      built(
        packet()
          .ethernet()
          .ipv6({
            src: A6,
            dst: B6,
            ext: [{ type: "hopByHop" }, { type: "destination", options: new Uint8Array(8) }, { type: "routing", data: new Uint8Array(20) }, { type: "fragment", more: true, id: 0xdeadbeef }],
          })
          .tcp({ sport: 443, dport: 50000, flags: "A" }),
      ),
    expected: { protocol: IpProto.TCP, ipHeaderLength: 40 + 8 + 16 + 24 + 8, l4Offset: 14 + 96, isFragment: true, moreFragments: true, fragmentOffset: 0, fragmentId: 0xdeadbeef, srcPort: 443, tcpFlags: TcpFlag.ACK },
  },
  {
    name: "IPv6 later fragment: protocol from the fragment header, no L4",
    frame: () => {
      const frags = packet().ipv6({ src: A6, dst: B6, ext: [{ type: "hopByHop" }] }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(60)).buildFragments(24, 0x01020304);
      return [frags[1]!, LinkType.RAW];
    },
    expected: { isFragment: true, moreFragments: true, fragmentOffset: 24, fragmentId: 0x01020304, protocol: IpProto.UDP, l4Offset: -1, ipHeaderLength: 56 },
  },
  {
    name: "IPv6 atomic fragment is whole",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "fragment", id: 5 }] }).udp({ sport: 1, dport: 2 })),
    expected: { isFragment: false, fragmentId: 5, fragmentOffset: 0, srcPort: 1, udpLength: 8 },
  },
  {
    name: "IPv6 AH then TCP",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "ah", icvLength: 16 }] }).tcp({ sport: 1, dport: 2 })),
    expected: { protocol: IpProto.TCP, ipHeaderLength: 40 + 28, l4Offset: 68, srcPort: 1 },
  },
  {
    name: "IPv6 ESP ends the chain",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "destination" }], nextHeader: IpProto.ESP }).payload(new Uint8Array(24))),
    expected: { protocol: IpProto.ESP, ipHeaderLength: 48, l4Offset: 48, payloadOffset: -1, srcPort: 0 },
  },
  {
    name: "IPv6 with 16 extension headers (the bound)",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: seventeenDestinationHeaders.slice(1) }).udp({ sport: 1, dport: 2 })),
    expected: { protocol: IpProto.UDP, ipHeaderLength: 40 + 16 * 8, srcPort: 1 },
  },
  {
    name: "IPv6 no next header",
    frame: () => built(packet().ipv6({ src: A6, dst: B6 })),
    expected: { protocol: IpProto.IPV6_NONXT, l4Offset: -1, l3End: 40 },
  },
  {
    name: "IPv6 jumbogram with UDP length 0",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "hopByHop", jumbo: true }] }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(70000))),
    expected: { protocol: IpProto.UDP, l3End: 40 + 8 + 8 + 70000, udpLength: 70008, srcPort: 1, payloadOffset: 56 },
  },
  {
    name: "ICMP error quoting a TCP segment",
    frame: () => {
      const inner = packet().ipv4({ src: B4, dst: A4 }).tcp({ sport: 80, dport: 40000 }).build().subarray(0, 28);
      return built(packet().ethernet().ipv4({ src: "198.18.9.9", dst: B4 }).icmp({ type: 3, code: 4, rest: 1400, quote: inner }));
    },
    expected: { icmpType: 3, icmpCode: 4, icmpIsError: true, icmpQuoteOffset: 42, srcPort: 0, dstPort: 0 },
  },
  {
    name: "ICMP error with an empty quote has no quote offset",
    frame: () => built(packet().ipv4({ src: A4, dst: B4 }).icmp({ type: 11 })),
    expected: { icmpType: 11, icmpIsError: true, icmpQuoteOffset: -1 },
  },
  {
    name: "ICMPv6 packet too big",
    frame: () => {
      const inner = packet().ipv6({ src: B6, dst: A6 }).udp({ sport: 53, dport: 9999 }).build();
      return built(packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 2, rest: 1280, quote: inner }));
    },
    expected: { icmpType: 2, icmpIsError: true, icmpQuoteOffset: 48 },
  },
  {
    name: "VXLAN: VNI and inner offset",
    frame: () =>
      built(
        packet()
          .ethernet()
          .ipv4({ src: A4, dst: B4 })
          .vxlan({ vni: 0xabcdef, inner: packet().ethernet().ipv4({ src: "198.18.1.1", dst: "198.18.2.2" }).tcp({ sport: 1, dport: 2 }) }),
      ),
    expected: { dstPort: VXLAN_PORT, vxlanVni: 0xabcdef, vxlanInnerOffset: 14 + 20 + 8 + 8 },
  },
  {
    name: "UDP to 4789 with a short payload is plain UDP",
    frame: () => built(packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: VXLAN_PORT }).payload(Uint8Array.of(8, 0, 0, 0, 0, 0, 1))),
    expected: { vxlanVni: -1, vxlanInnerOffset: -1, dstPort: VXLAN_PORT },
  },
  {
    name: "UDP to 4789 without the I flag is plain UDP",
    frame: () => built(packet().ipv4({ src: A4, dst: B4 }).vxlan({ vni: 5, flags: 0, inner: new Uint8Array(14) })),
    expected: { vxlanVni: -1, vxlanInnerOffset: -1 },
  },
  {
    name: "TCP with data: tcpDataLength counts to l3End",
    frame: () => built(packet().ipv6({ src: A6, dst: B6 }).tcp({ sport: 1, dport: 2, flags: "PA" }).payload("hello world")),
    expected: { tcpDataLength: 11, payloadOffset: 60, tcpFlags: TcpFlag.PSH | TcpFlag.ACK, tcpOptionsOffset: -1, tcpOptionsLength: 0 },
  },
];

interface FailRow {
  name: string;
  frame: () => [Uint8Array, number];
  failure: ParseFailure;
}

function cut(b: PacketBuilder, length: number): [Uint8Array, number] {
  return [b.build().slice(0, length), b.linkType()];
}

const tcp4 = (): PacketBuilder => packet().ethernet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2 });

const failRows: FailRow[] = [
  { name: "Ethernet shorter than 14 bytes", frame: () => cut(tcp4(), 13), failure: ParseFailure.TRUNCATED_L2 },
  { name: "VLAN tag cut", frame: () => cut(packet().ethernet().vlan(1).ipv4({ src: A4, dst: B4 }), 16), failure: ParseFailure.TRUNCATED_L2 },
  { name: "802.3 length past the frame", frame: () => built(packet().ethernet({ etherType: 100 }).payload(new Uint8Array(46))), failure: ParseFailure.TRUNCATED_L2 },
  { name: "SLL shorter than 16 bytes", frame: () => cut(packet().linuxSll(1).ipv4({ src: A4, dst: B4 }), 15), failure: ParseFailure.TRUNCATED_L2 },
  { name: "SLL2 shorter than 20 bytes", frame: () => cut(packet().linuxSll(2).ipv4({ src: A4, dst: B4 }), 19), failure: ParseFailure.TRUNCATED_L2 },
  { name: "three VLAN tags", frame: () => built(packet().ethernet().vlan(1).vlan(2).vlan(3).ipv4({ src: A4, dst: B4 })), failure: ParseFailure.TOO_MANY_VLAN_TAGS },
  { name: "IPv4 header cut at 19 bytes", frame: () => cut(tcp4(), 14 + 19), failure: ParseFailure.TRUNCATED_L3 },
  { name: "Ethernet IPv4 with no IP byte", frame: () => cut(tcp4(), 14), failure: ParseFailure.TRUNCATED_L3 },
  { name: "IPv4 options cut", frame: () => cut(packet().ipv4({ src: A4, dst: B4, options: new Uint8Array(8) }), 24), failure: ParseFailure.TRUNCATED_L3 },
  { name: "IPv6 header cut at 39 bytes", frame: () => cut(packet().ipv6({ src: A6, dst: B6 }), 39), failure: ParseFailure.TRUNCATED_L3 },
  { name: "raw link type with no bytes", frame: () => [new Uint8Array(0), LinkType.RAW], failure: ParseFailure.TRUNCATED_L3 },
  { name: "IPv6 extension header cut", frame: () => built(packet().ipv6({ src: A6, dst: B6, nextHeader: IpProto.IPV6_OPTS }).payload(new Uint8Array(4))), failure: ParseFailure.TRUNCATED_L3 },
  { name: "IPv6 fragment header cut", frame: () => built(packet().ipv6({ src: A6, dst: B6, nextHeader: IpProto.IPV6_FRAG }).payload(new Uint8Array(7))), failure: ParseFailure.TRUNCATED_L3 },
  { name: "IPv4 version 6 under EtherType IPv4", frame: () => built(packet().ethernet().ipv4({ src: A4, dst: B4, version: 6 })), failure: ParseFailure.BAD_IP_VERSION },
  { name: "raw version 5", frame: () => built(packet().ipv4({ src: A4, dst: B4, version: 5 })), failure: ParseFailure.BAD_IP_VERSION },
  { name: "IPv6 link type with an IPv4 packet", frame: () => [packet().ipv4({ src: A4, dst: B4 }).build(), LinkType.IPV6], failure: ParseFailure.BAD_IP_VERSION },
  { name: "IPv4 IHL 4", frame: () => built(packet().ipv4({ src: A4, dst: B4, ihl: 4 })), failure: ParseFailure.BAD_IP_HEADER_LENGTH },
  { name: "IPv4 total length past the frame", frame: () => built(packet().ipv4({ src: A4, dst: B4, totalLength: 21 })), failure: ParseFailure.BAD_IP_TOTAL_LENGTH },
  { name: "IPv4 total length below the header", frame: () => built(packet().ipv4({ src: A4, dst: B4, totalLength: 19 })), failure: ParseFailure.BAD_IP_TOTAL_LENGTH },
  {
    name: "IPv4 fragment ending past 65535 bytes (ping of death)",
    frame: () => built(packet().ipv4({ src: A4, dst: B4, fragmentOffset: 65528 }).payload(new Uint8Array(16))),
    failure: ParseFailure.BAD_IP_TOTAL_LENGTH,
  },
  { name: "IPv6 payload length past the frame", frame: () => built(packet().ipv6({ src: A6, dst: B6, payloadLength: 1 })), failure: ParseFailure.BAD_IP_TOTAL_LENGTH },
  {
    name: "IPv6 payload length 0 without a jumbo option",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, payloadLength: 0, ext: [{ type: "hopByHop" }] }).udp({ sport: 1, dport: 2 })),
    failure: ParseFailure.TRUNCATED_L3,
  },
  {
    name: "IPv6 fragment ending past 65535 bytes",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "fragment", offset: 65528 }] }).payload(new Uint8Array(16))),
    failure: ParseFailure.BAD_IP_TOTAL_LENGTH,
  },
  { name: "17 IPv6 extension headers", frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: seventeenDestinationHeaders })), failure: ParseFailure.BAD_IPV6_EXTENSION },
  {
    name: "IPv6 extension length past the packet",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "raw", code: IpProto.IPV6_OPTS, bytes: Uint8Array.of(1, 0, 0, 0, 0, 0, 0) }] })),
    failure: ParseFailure.BAD_IPV6_EXTENSION,
  },
  {
    name: "IPv6 hop-by-hop after another header",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "destination" }, { type: "hopByHop" }] })),
    failure: ParseFailure.BAD_IPV6_EXTENSION,
  },
  {
    name: "IPv6 two fragment headers",
    frame: () => built(packet().ipv6({ src: A6, dst: B6, ext: [{ type: "fragment", more: true }, { type: "fragment", more: true }] }).udp({ sport: 1, dport: 2 })),
    failure: ParseFailure.BAD_IPV6_EXTENSION,
  },
  { name: "TCP header cut at 19 bytes", frame: () => built(packet().ipv4({ src: A4, dst: B4, protocol: IpProto.TCP }).payload(new Uint8Array(19))), failure: ParseFailure.TRUNCATED_L4 },
  { name: "UDP header cut at 7 bytes", frame: () => built(packet().ipv6({ src: A6, dst: B6, nextHeader: IpProto.UDP }).payload(new Uint8Array(7))), failure: ParseFailure.TRUNCATED_L4 },
  { name: "ICMP with 3 bytes", frame: () => built(packet().ipv4({ src: A4, dst: B4, protocol: IpProto.ICMP }).payload(Uint8Array.of(13, 0, 0))), failure: ParseFailure.TRUNCATED_L4 },
  { name: "ICMP echo with 4 bytes", frame: () => built(packet().ipv4({ src: A4, dst: B4, protocol: IpProto.ICMP }).payload(Uint8Array.of(8, 0, 0, 0))), failure: ParseFailure.TRUNCATED_L4 },
  { name: "ICMPv6 error with 7 bytes", frame: () => built(packet().ipv6({ src: A6, dst: B6, nextHeader: IpProto.ICMPV6 }).payload(Uint8Array.of(1, 0, 0, 0, 0, 0, 0))), failure: ParseFailure.TRUNCATED_L4 },
  {
    name: "first fragment cutting the TCP header (tiny fragment)",
    frame: () => [packet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2 }).buildFragments(8)[0]!, LinkType.RAW],
    failure: ParseFailure.TRUNCATED_L4,
  },
  { name: "TCP data offset 4", frame: () => built(packet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2, dataOffset: 4 })), failure: ParseFailure.BAD_TCP_HEADER_LENGTH },
  { name: "TCP data offset past the packet", frame: () => built(packet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2, dataOffset: 6 })), failure: ParseFailure.BAD_TCP_HEADER_LENGTH },
  { name: "UDP length 7", frame: () => built(packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2, length: 7 })), failure: ParseFailure.BAD_UDP_LENGTH },
  { name: "UDP length past the packet", frame: () => built(packet().ipv4({ src: A4, dst: B4 }).udp({ sport: 1, dport: 2, length: 9 })), failure: ParseFailure.BAD_UDP_LENGTH },
  { name: "UDP length 0 without a jumbogram", frame: () => built(packet().ipv6({ src: A6, dst: B6 }).udp({ sport: 1, dport: 2, length: 0 })), failure: ParseFailure.BAD_UDP_LENGTH },
  {
    name: "ARP cut at 20 bytes",
    frame: () => cut(packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 }), 14 + 20),
    failure: ParseFailure.TRUNCATED_ARP,
  },
  {
    name: "ARP cut at 7 bytes",
    frame: () => cut(packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 }), 14 + 7),
    failure: ParseFailure.TRUNCATED_ARP,
  },
  {
    name: "ARP hardware length 8",
    frame: () => built(packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4, hardwareLength: 8 })),
    failure: ParseFailure.BAD_ARP,
  },
  {
    name: "ARP hardware type 6",
    frame: () => built(packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4, hardwareType: 6 })),
    failure: ParseFailure.BAD_ARP,
  },
  {
    name: "ARP op 3 (RARP request)",
    frame: () => built(packet().ethernet().arp({ op: 3, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 })),
    failure: ParseFailure.BAD_ARP,
  },
  { name: "link type 105 (802.11)", frame: () => [tcp4().build(), 105], failure: ParseFailure.UNSUPPORTED_LINK_TYPE },
];

describe("parseFrame fixtures", () => {
  it.each(okRows.map((r) => [r.name, r] as const))("parses %s", (_name, row) => {
    const [frame, linkType] = row.frame();
    const view = parseOk(frame, linkType);
    expect(view).toMatchObject(row.expected);
  });

  it.each(failRows.map((r) => [r.name, r] as const))("fails on %s", (_name, row) => {
    const [frame, linkType] = row.frame();
    const view = new PacketView();
    expect(parseFrame(view, frame, 0, frame.length, linkType)).toBe(false);
    expect(view.failure).toBe(row.failure);
  });

  it("covers every parse failure reason parseFrame can report", () => {
    const covered = new Set(failRows.map((r) => r.failure));
    // UNSUPPORTED_ETHERTYPE and TRUNCATED_VXLAN are for the engine / runtime (non-IP frames and
    // short VXLAN payloads are not parse failures); BAD_TCP_OPTIONS comes from parseTcpOptions.
    for (const failure of Object.values(ParseFailure)) {
      if (failure === ParseFailure.NONE || failure === ParseFailure.UNSUPPORTED_ETHERTYPE) continue;
      if (failure === ParseFailure.TRUNCATED_VXLAN || failure === ParseFailure.BAD_TCP_OPTIONS) continue;
      expect(covered.has(failure), `no fixture for failure ${failure}`).toBe(true);
    }
  });

  it("parses a frame at an offset inside a larger buffer", () => {
    const frame = tcp4().payload("x").build();
    const buf = new Uint8Array(frame.length + 100).fill(0xee);
    buf.set(frame, 37);
    const view = new PacketView();
    expect(parseFrame(view, buf, 37, frame.length, LinkType.ETHERNET)).toBe(true);
    checkInvariant(view);
    expect(view).toMatchObject({ frameOffset: 37, frameEnd: 37 + frame.length, l2Offset: 37, l3Offset: 51, payloadOffset: 37 + 54, tcpDataLength: 1 });
  });

  it("resets every field between parses", () => {
    const view = new PacketView();
    const vx = packet().ethernet().vlan(3).ipv4({ src: A4, dst: B4 }).vxlan({ vni: 9, inner: new Uint8Array(14) }).build();
    expect(parseFrame(view, vx, 0, vx.length, LinkType.ETHERNET)).toBe(true);
    const arp = packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: A4, targetIp: B4 }).build();
    expect(parseFrame(view, arp, 0, arp.length, LinkType.ETHERNET)).toBe(true);
    const fresh = new PacketView();
    parseFrame(fresh, arp, 0, arp.length, LinkType.ETHERNET);
    expect({ ...view }).toEqual({ ...fresh });
  });

  it("rejects a frame range outside the buffer as a programmer error", () => {
    expect(() => parseFrame(new PacketView(), new Uint8Array(10), 5, 6, LinkType.ETHERNET)).toThrow(/outside buffer/);
  });
});

describe("parseTcpOptions", () => {
  function optionsView(options: Uint8Array | TcpOptionList): PacketView {
    const b =
      options instanceof Uint8Array
        ? packet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2, options: { raw: options } })
        : packet().ipv4({ src: A4, dst: B4 }).tcp({ sport: 1, dport: 2, options });
    return parseOk(b.build(), LinkType.RAW);
  }

  it("reads a Linux SYN's options", () => {
    const view = optionsView({ mss: 1460, sackPerm: true, ts: [0xfedcba98, 7], wscale: 7 });
    expect(parseTcpOptions(view)).toBe(true);
    expect(view).toMatchObject({ tcpMss: 1460, tcpWindowScale: 7, tcpSackPermitted: true, tcpHasTimestamps: true, tcpTsVal: 0xfedcba98, tcpTsEcr: 7, failure: ParseFailure.NONE });
  });

  it("clamps the window scale to 14", () => {
    const view = optionsView({ wscale: 15 });
    expect(parseTcpOptions(view)).toBe(true);
    expect(view.tcpWindowScale).toBe(14);
  });

  it("leaves absent options absent", () => {
    const view = optionsView({});
    expect(view.tcpOptionsOffset).toBe(-1);
    expect(parseTcpOptions(view)).toBe(true);
    expect(view).toMatchObject({ tcpMss: 0, tcpWindowScale: -1, tcpSackPermitted: false, tcpHasTimestamps: false });
  });

  it("skips SACK blocks, unknown kinds and known kinds of the wrong length", () => {
    const raw = Uint8Array.of(5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 30, 4, 9, 9, 2, 3, 1, 1, 3, 3, 5);
    const view = optionsView(raw);
    expect(parseTcpOptions(view)).toBe(true);
    expect(view).toMatchObject({ tcpMss: 0, tcpWindowScale: 5 });
  });

  it("stops at EOL", () => {
    const view = optionsView(Uint8Array.of(0, 2, 4, 5, 0xb4));
    expect(parseTcpOptions(view)).toBe(true);
    expect(view.tcpMss).toBe(0);
  });

  it.each([
    ["length 1", Uint8Array.of(2, 1, 0, 0)],
    ["length 0", Uint8Array.of(30, 0, 0, 0)],
    ["length past the end", Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 0)],
    ["kind in the last byte", Uint8Array.of(1, 1, 1, 2)],
  ])("fails on an option with %s", (_name, raw) => {
    const view = optionsView(raw);
    expect(parseTcpOptions(view)).toBe(false);
    expect(view.failure).toBe(ParseFailure.BAD_TCP_OPTIONS);
  });

  it("keeps options decoded before a bad one", () => {
    const view = optionsView(Uint8Array.of(2, 4, 5, 0xb4, 3, 0, 0, 0));
    expect(parseTcpOptions(view)).toBe(false);
    expect(view.tcpMss).toBe(1460);
  });
});

describe("parseQuotedIp", () => {
  function quoteOf(frame: Uint8Array, linkType: number): PacketView {
    const outer = parseOk(frame, linkType);
    expect(outer.icmpQuoteOffset).toBeGreaterThan(0);
    const quote = new PacketView();
    expect(parseQuotedIp(quote, outer.buf, outer.icmpQuoteOffset, outer.l3End)).toBe(true);
    return quote;
  }

  it("reads a TCP quote cut after 8 bytes of L4 (total length larger than the quote)", () => {
    const original = packet().ipv4({ src: B4, dst: A4, ttl: 1 }).tcp({ sport: 80, dport: 40000, seq: 0x90000000 }).payload(new Uint8Array(100)).build();
    const frame = packet().ethernet().ipv4({ src: "198.18.9.9", dst: B4 }).icmp({ type: 11, quote: original.subarray(0, 28) }).build();
    const quote = quoteOf(frame, LinkType.ETHERNET);
    expect(quote).toMatchObject({ ipVersion: 4, src4: ipv4Of(B4), dst4: ipv4Of(A4), protocol: IpProto.TCP, srcPort: 80, dstPort: 40000, tcpSeq: 0x90000000, l3End: 42 + 28, ttl: 1 });
  });

  it("reads a UDP quote and an ICMP echo quote", () => {
    const udp = packet().ipv4({ src: B4, dst: A4 }).udp({ sport: 53, dport: 1234 }).build();
    const q1 = quoteOf(packet().ipv4({ src: A4, dst: B4 }).icmp({ type: 3, code: 3, quote: udp }).build(), LinkType.RAW);
    expect(q1).toMatchObject({ protocol: IpProto.UDP, srcPort: 53, dstPort: 1234, udpLength: 8 });
    const echo = packet().ipv4({ src: B4, dst: A4 }).icmp({ type: 8, id: 4321, seq: 2 }).payload(new Uint8Array(56)).build();
    const q2 = quoteOf(packet().ipv4({ src: A4, dst: B4 }).icmp({ type: 11, quote: echo.subarray(0, 28) }).build(), LinkType.RAW);
    expect(q2).toMatchObject({ protocol: IpProto.ICMP, icmpIsEcho: true, icmpId: 4321, icmpSeq: 2, srcPort: 4321, dstPort: 4321 });
  });

  it("reads an IPv6 quote through extension headers, and a quote cut inside them", () => {
    const original = packet().ipv6({ src: B6, dst: A6, ext: [{ type: "destination", options: new Uint8Array(14) }] }).tcp({ sport: 443, dport: 50000 }).payload(new Uint8Array(1500)).build();
    const full = quoteOf(packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 2, rest: 1280, quote: original.subarray(0, 1232) }).build(), LinkType.RAW);
    expect(full).toMatchObject({ ipVersion: 6, protocol: IpProto.TCP, srcPort: 443, dstPort: 50000, ipHeaderLength: 56 });
    const cutQuote = quoteOf(packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 1, quote: original.subarray(0, 50) }).build(), LinkType.RAW);
    expect(cutQuote).toMatchObject({ ipVersion: 6, protocol: IpProto.IPV6_OPTS, l4Offset: -1, srcPort: 0 });
  });

  it("fails only when the IP header is not there", () => {
    const original = packet().ipv4({ src: B4, dst: A4 }).udp({ sport: 1, dport: 2 }).build();
    const view = new PacketView();
    expect(parseQuotedIp(view, original, 0, 19)).toBe(false);
    expect(view.failure).toBe(ParseFailure.TRUNCATED_L3);
    expect(parseQuotedIp(view, original, 0, 20)).toBe(true);
    expect(view).toMatchObject({ protocol: IpProto.UDP, l4Offset: -1, srcPort: 0 });
    expect(parseQuotedIp(view, original, 0, 24)).toBe(true);
    expect(view).toMatchObject({ srcPort: 1, dstPort: 2 });
    expect(parseQuotedIp(view, Uint8Array.of(0x55, 0), 0, 2)).toBe(false);
    expect(view.failure).toBe(ParseFailure.BAD_IP_VERSION);
  });
});

describe("VXLAN", () => {
  it("parses the inner frame from vxlanInnerOffset", () => {
    const inner = packet().ethernet().vlan(5).ipv6({ src: A6, dst: B6 }).udp({ sport: 7, dport: 8 }).payload("inner");
    const frame = packet().ethernet().ipv4({ src: A4, dst: B4 }).vxlan({ vni: 42, inner }).build();
    const outer = parseOk(frame);
    expect(outer.vxlanVni).toBe(42);
    const innerView = new PacketView();
    expect(parseFrame(innerView, frame, outer.vxlanInnerOffset, outer.l3End - outer.vxlanInnerOffset, LinkType.ETHERNET)).toBe(true);
    expect(innerView).toMatchObject({ vlanOuter: 5, ipVersion: 6, srcPort: 7, dstPort: 8 });
  });

  it("parseVxlanPayload reads the VNI from a socket payload", () => {
    expect(parseVxlanPayload(Uint8Array.of(8, 0, 0, 0, 0x12, 0x34, 0x56, 0), 0, 8)).toBe(0x123456);
    expect(parseVxlanPayload(Uint8Array.of(9, 8, 0, 0, 0, 0, 0, 1, 0), 1, 8)).toBe(1);
    expect(parseVxlanPayload(Uint8Array.of(8, 0, 0, 0, 0, 0, 1), 0, 7)).toBe(-1);
    expect(parseVxlanPayload(Uint8Array.of(0, 0, 0, 0, 0, 0, 1, 0), 0, 8)).toBe(-1);
  });
});

// ---- Properties -----------------------------------------------------------------------------

type L4Kind = "tcp" | "udp" | "icmp";
interface Spec {
  v6: boolean;
  link: "ethernet" | "raw" | "sll" | "sll2";
  vlans: number[];
  src: Uint8Array;
  dst: Uint8Array;
  ttl: number;
  tos: number;
  l4: L4Kind;
  sport: number;
  dport: number;
  flags: number;
  seq: number;
  ack: number;
  window: number;
  icmpType: number;
  payload: Uint8Array;
  mss: number | undefined;
  wscale: number | undefined;
  ts: [number, number] | undefined;
}

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const specArb: fc.Arbitrary<Spec> = fc
  .record({
    v6: fc.boolean(),
    link: fc.constantFrom("ethernet" as const, "raw" as const, "sll" as const, "sll2" as const),
    vlans: fc.array(fc.integer({ min: 0, max: 4095 }), { maxLength: 2 }),
    src6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    dst6: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    src4: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    dst4: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    ttl: fc.integer({ min: 0, max: 255 }),
    tos: fc.integer({ min: 0, max: 255 }),
    l4: fc.constantFrom("tcp" as const, "udp" as const, "icmp" as const),
    sport: u16,
    dport: u16.filter((p) => p !== VXLAN_PORT),
    flags: fc.integer({ min: 0, max: 255 }),
    seq: u32,
    ack: u32,
    window: u16,
    echoRequest: fc.boolean(),
    payload: fc.uint8Array({ maxLength: 64 }),
    mss: fc.option(u16, { nil: undefined }),
    wscale: fc.option(fc.integer({ min: 0, max: 14 }), { nil: undefined }),
    ts: fc.option(fc.tuple(u32, u32), { nil: undefined }),
  })
  .map((r) => ({
    v6: r.v6,
    link: r.link,
    vlans: r.link === "raw" ? [] : r.vlans,
    src: r.v6 ? r.src6 : r.src4,
    dst: r.v6 ? r.dst6 : r.dst4,
    ttl: r.ttl,
    tos: r.tos,
    l4: r.l4,
    sport: r.sport,
    dport: r.dport,
    flags: r.flags,
    seq: r.seq,
    ack: r.ack,
    window: r.window,
    icmpType: r.v6 ? (r.echoRequest ? 128 : 129) : r.echoRequest ? 8 : 0,
    payload: r.payload,
    mss: r.mss,
    wscale: r.wscale,
    ts: r.ts,
  }));

function buildSpec(s: Spec, reverse = false): PacketBuilder {
  let b = packet();
  if (s.link === "ethernet") b = b.ethernet();
  if (s.link === "sll") b = b.linuxSll(1);
  if (s.link === "sll2") b = b.linuxSll(2);
  for (const id of s.vlans) b = b.vlan(id);
  const src = reverse ? s.dst : s.src;
  const dst = reverse ? s.src : s.dst;
  b = s.v6 ? b.ipv6({ src, dst, hopLimit: s.ttl, trafficClass: s.tos }) : b.ipv4({ src, dst, ttl: s.ttl, tos: s.tos });
  const sport = reverse ? s.dport : s.sport;
  const dport = reverse ? s.sport : s.dport;
  if (s.l4 === "tcp") {
    b = b.tcp({ sport, dport, flags: s.flags, seq: s.seq, ack: s.ack, window: s.window, options: { mss: s.mss, wscale: s.wscale, ts: s.ts } });
  } else if (s.l4 === "udp") {
    b = b.udp({ sport, dport });
  } else if (s.v6) {
    b = b.icmpv6({ type: s.icmpType, id: s.sport, seq: s.dport });
  } else {
    b = b.icmp({ type: s.icmpType, id: s.sport, seq: s.dport });
  }
  return b.payload(s.payload);
}

describe("parseFrame properties", () => {
  it(`builder -> parse reproduces the fields of random TCP/UDP/ICMP v4/v6 packets (seed ${SEED})`, () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const b = buildSpec(s);
        const frame = b.build();
        const view = parseOk(frame, b.linkType());
        const expectedProtocol = s.l4 === "tcp" ? IpProto.TCP : s.l4 === "udp" ? IpProto.UDP : s.v6 ? IpProto.ICMPV6 : IpProto.ICMP;
        expect(view.ipVersion).toBe(s.v6 ? 6 : 4);
        expect(view.protocol).toBe(expectedProtocol);
        expect(view.buf.subarray(view.srcAddrOffset, view.srcAddrOffset + s.src.length)).toEqual(s.src);
        expect(view.buf.subarray(view.dstAddrOffset, view.dstAddrOffset + s.dst.length)).toEqual(s.dst);
        expect(view.ttl).toBe(s.ttl);
        expect(view.trafficClass).toBe(s.tos);
        expect(view.vlanCount).toBe(s.vlans.length);
        expect(view.vlanOuter).toBe(s.vlans[0] ?? 0);
        expect(view.vlanInner).toBe(s.vlans[1] ?? 0);
        expect(view.l3End).toBe(frame.length);
        expect(frame.subarray(view.payloadOffset)).toEqual(s.payload);
        expect(verifyChecksums(view)).toBe(true);
        if (s.l4 === "icmp") {
          expect(view).toMatchObject({ icmpIsEcho: true, icmpType: s.icmpType, icmpId: s.sport, icmpSeq: s.dport, srcPort: s.sport, dstPort: s.sport });
        } else {
          expect(view.srcPort).toBe(s.sport);
          expect(view.dstPort).toBe(s.dport);
        }
        if (s.l4 === "udp") expect(view.udpLength).toBe(8 + s.payload.length);
        if (s.l4 === "tcp") {
          expect(view).toMatchObject({ tcpFlags: s.flags, tcpSeq: s.seq, tcpAck: s.ack, tcpWindow: s.window, tcpDataLength: s.payload.length });
          expect(parseTcpOptions(view)).toBe(true);
          expect(view.tcpMss).toBe(s.mss ?? 0);
          expect(view.tcpWindowScale).toBe(s.wscale ?? -1);
          expect(view.tcpHasTimestamps).toBe(s.ts !== undefined);
          expect([view.tcpTsVal, view.tcpTsEcr]).toEqual(s.ts ?? [0, 0]);
        }
      }),
      { seed: SEED, numRuns: 400 },
    );
  });

  const linkTypes = [LinkType.ETHERNET, LinkType.RAW, LinkType.IPV4, LinkType.IPV6, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, 0, 105];

  /** Parses and exercises everything a consumer may call on a successfully parsed view. */
  function parseAnything(frame: Uint8Array, linkType: number): void {
    const view = new PacketView();
    if (!parseFrame(view, frame, 0, frame.length, linkType)) {
      if (view.failure === ParseFailure.NONE) throw new Error("false without a failure reason");
      return;
    }
    checkInvariant(view);
    parseTcpOptions(view);
    if (view.ipVersion !== 0) {
      verifyChecksums(view);
      l4ChecksumOffset(view);
      flowHashOfView(1, view);
    }
    if (view.icmpQuoteOffset >= 0) {
      const quote = new PacketView();
      if (parseQuotedIp(quote, view.buf, view.icmpQuoteOffset, view.l3End) && quote.l4Offset >= 0) {
        if (quote.l4Offset > quote.l3End || quote.l3End > view.l3End) throw new Error("quote offsets");
      }
    }
    if (view.vxlanInnerOffset >= 0) parseAnything(frame.subarray(view.vxlanInnerOffset, view.l3End), LinkType.ETHERNET);
  }

  it(`never throws on random bytes, and keeps the offset invariant on success (seed ${SEED})`, () => {
    // Bias the first bytes towards plausible headers so that deep layers are reached too.
    const headerish = fc.oneof(
      fc.uint8Array({ maxLength: 120 }),
      fc.tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x41), fc.uint8Array({ maxLength: 100 })).map(([b, rest]) => Uint8Array.of(b, ...rest)),
    );
    fc.assert(
      fc.property(headerish, fc.constantFrom(...linkTypes), (bytes, linkType) => {
        parseAnything(bytes, linkType);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it(`never throws on truncated or bit-flipped valid packets (seed ${SEED})`, () => {
    const mutation = fc.record({
      cutAt: fc.nat(),
      cut: fc.boolean(),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { maxLength: 4 }),
      writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }),
    });
    fc.assert(
      fc.property(specArb, mutation, (s, m) => {
        const b = buildSpec(s);
        let frame = b.build();
        for (const [at, bit] of m.flips) frame[at % frame.length] ^= 1 << bit;
        for (const [at, value] of m.writes) frame[at % frame.length] = value;
        if (m.cut) frame = frame.slice(0, m.cutAt % (frame.length + 1));
        parseAnything(frame, b.linkType());
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it(`every truncation of an extension-heavy IPv6 frame fails cleanly or parses consistently (seed ${SEED})`, () => {
    const frame = packet()
      .ethernet()
      .vlan(1)
      .ipv6({ src: A6, dst: B6, ext: [{ type: "hopByHop" }, { type: "routing" }, { type: "fragment", more: true }, { type: "ah" }, { type: "destination" }] })
      .icmpv6({ type: 1, quote: packet().ipv6({ src: B6, dst: A6 }).tcp({ sport: 1, dport: 2 }).build() })
      .build();
    for (let length = 0; length <= frame.length; length++) parseAnything(frame.subarray(0, length), LinkType.ETHERNET);
  });

  it(`flowHashOfView equals flowHashOfKey and is symmetric (seed ${SEED})`, () => {
    fc.assert(
      fc.property(specArb, u32, (s, seed) => {
        const forward = parseOk(buildSpec(s).build(), buildSpec(s).linkType());
        const reverse = parseOk(buildSpec(s, true).build(), buildSpec(s).linkType());
        const protocol = forward.protocol;
        const ports = s.l4 === "icmp" ? [s.sport, s.sport] : [s.sport, s.dport];
        const key = { zone: 0, protocol, src: s.src, dst: s.dst, srcPort: ports[0]!, dstPort: ports[1]! };
        const hash = flowHashOfView(seed, forward);
        expect(hash).toBe(flowHashOfKey(seed, key));
        expect(flowHashOfKey(seed, { ...key, src: s.dst, dst: s.src, srcPort: ports[1]!, dstPort: ports[0]! })).toBe(hash);
        // ICMP echo keeps its id in both directions; the reversed build swaps id and seq, so
        // only TCP/UDP reversals name the same flow.
        if (s.l4 !== "icmp") expect(flowHashOfView(seed, reverse)).toBe(hash);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("ICMP echo request and reply land in one bucket", () => {
    const request = parseOk(packet().ipv6({ src: A6, dst: B6 }).icmpv6({ type: 128, id: 77, seq: 1 }).build(), LinkType.RAW);
    const hashRequest = flowHashOfView(5, request);
    const reply = parseOk(packet().ipv6({ src: B6, dst: A6 }).icmpv6({ type: 129, id: 77, seq: 1 }).build(), LinkType.RAW);
    expect(flowHashOfView(5, reply)).toBe(hashRequest);
  });
});

describe("fragmentPacket", () => {
  it("splits IPv4 and IPv6 packets into fragments that cover the payload once", () => {
    for (const v6 of [false, true]) {
      const b = v6
        ? packet().ethernet().ipv6({ src: A6, dst: B6, ext: [{ type: "routing" }] }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(300).map((_, i) => i))
        : packet().ethernet().ipv4({ src: A4, dst: B4, id: 9, df: true }).udp({ sport: 1, dport: 2 }).payload(new Uint8Array(300).map((_, i) => i));
      const whole = parseOk(b.build());
      const wholeData = whole.buf.subarray(whole.l3Offset + whole.ipHeaderLength, whole.l3End);
      const fragments = fragmentPacket(b.build(), { fragmentSize: 100, id: 3 });
      expect(fragments.length).toBe(Math.ceil(308 / 96));
      const data: number[] = [];
      for (const [i, f] of fragments.entries()) {
        const view = parseOk(f);
        expect(view).toMatchObject({ isFragment: true, fragmentOffset: i * 96, moreFragments: i < fragments.length - 1, fragmentId: v6 ? 3 : 9, protocol: IpProto.UDP });
        expect(verifyChecksums(view)).toBe(true);
        // Each fragment's data starts after its headers (for the first one, at its L4 header).
        data.push(...f.subarray(view.l3Offset + view.ipHeaderLength, view.l3End));
      }
      expect(Uint8Array.from(data)).toEqual(wholeData);
    }
  });
});
