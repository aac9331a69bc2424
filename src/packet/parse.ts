// Frame parser: bytes -> PacketView, for every frame the gateway receives.
//
// Invariants this file keeps:
// - Never throws on packet bytes and allocates nothing: every read is bounds-checked against the
//   frame end (or the IP packet's end) before it happens, and a bad frame ends in `false` with
//   exactly one ParseFailure in view.failure. Assertions guard only the caller's arguments.
// - After a successful parse every field of the view is defined, and the offset invariant of
//   view.ts holds: l2Offset <= l3Offset <= l4Offset <= payloadOffset <= l3End <= frameEnd
//   (for the layers present), and every offset plus the length it stands for lies in the frame.
// - Every loop has a bound: at most VLAN_TAGS_MAX tags, IPV6_EXTENSION_HEADERS_MAX extension
//   headers, and the TCP options / IPv6 option walks advance at least one byte per step inside
//   an area of bounded size.
//
// Choices where the wire formats leave room (the engine builds on them):
// - Non-IP frames (an EtherType other than IPv4/IPv6/ARP, or an 802.3 length field) parse
//   successfully with ipVersion 0 and etherType set (the raw field value for 802.3): dropping
//   them is the engine's verdict, not a parse failure. l3Offset stays -1 for non-IP frames.
// - Linux cooked captures (SLL, SLL2) have no Ethernet header: l2Offset stays -1, etherType is
//   the header's protocol field, and VLAN tags that follow the cooked header are parsed.
// - l4Offset is the offset of the upper-layer header of any first (or only) fragment with an
//   upper layer, whatever its protocol (ESP, GRE, SCTP...); ports, payloadOffset and the other
//   L4 fields are decoded for TCP, UDP, ICMP (over IPv4) and ICMPv6 (over IPv6) only.
//   No Next Header (59) and non-first fragments have no L4 (l4Offset -1).
// - A first fragment must hold its whole L4 header (RFC 1858 / RFC 7112 tiny-fragment rule):
//   otherwise it fails like any truncated L4 header. Its UDP length field may exceed the bytes
//   of the fragment; VXLAN is not recognised inside fragments (the inner frame is incomplete).
// - An IPv6 fragment header with offset 0 and M = 0 (an atomic fragment, RFC 6946) fills
//   fragmentId but is not a fragment (isFragment false): the packet is whole.
// - A fragment whose end would lie past 65535 bytes of the reassembled datagram ("ping of
//   death") fails with BAD_IP_TOTAL_LENGTH.

import { assert } from "../stdx/assert.js";
import { readU32 } from "./addr.js";
import { EtherType, IpProto, LinkType, ParseFailure, VXLAN_PORT, type PacketView } from "./view.js";

/** 802.1Q / 802.1ad tags accepted in front of the payload (QinQ). */
export const VLAN_TAGS_MAX = 2;
/** IPv6 extension headers walked before giving up (RFC 8200 sets no bound; attackers would). */
export const IPV6_EXTENSION_HEADERS_MAX = 16;

const ETHERNET_HEADER_LENGTH = 14;
const SLL_HEADER_LENGTH = 16;
const SLL2_HEADER_LENGTH = 20;
const VLAN_TAG_LENGTH = 4;
const ARP_HEADER_LENGTH = 28; // Ethernet/IPv4 ARP
const IPV4_HEADER_LENGTH_MIN = 20;
const IPV6_HEADER_LENGTH = 40;
const TCP_HEADER_LENGTH_MIN = 20;
const UDP_HEADER_LENGTH = 8;
const ICMP_HEADER_LENGTH = 8;
const ICMP_HEADER_LENGTH_MIN = 4; // type, code, checksum
const VXLAN_HEADER_LENGTH = 8;
const VXLAN_FLAG_VNI = 0x08;
const IP_DATAGRAM_LENGTH_MAX = 65535;
const IPV6_OPTION_JUMBO = 0xc2;
/** The first value of the Ethernet type/length field that is an EtherType (IEEE 802.3). */
const ETHERTYPE_MIN = 0x0600;

/**
 * Parses the frame buf[offset, offset + length) of the given pcap link type into view.
 * Returns true on success; false with view.failure set otherwise. Never throws on bytes.
 */
export function parseFrame(view: PacketView, buf: Uint8Array, offset: number, length: number, linkType: number): boolean {
  assert(offset >= 0 && length >= 0 && offset + length <= buf.length, "parseFrame: frame outside buffer");
  const end = offset + length;
  view.reset(buf, offset, end);
  switch (linkType) {
    case LinkType.ETHERNET: {
      if (length < ETHERNET_HEADER_LENGTH) return fail(view, ParseFailure.TRUNCATED_L2);
      view.l2Offset = offset;
      return parseEtherPayload(view, buf, offset + 12, end, true);
    }
    case LinkType.RAW: {
      if (length < 1) return fail(view, ParseFailure.TRUNCATED_L3);
      const version = buf[offset]! >>> 4;
      if (version === 4) return parseIpv4(view, buf, offset, end);
      if (version === 6) return parseIpv6(view, buf, offset, end);
      return fail(view, ParseFailure.BAD_IP_VERSION);
    }
    case LinkType.IPV4:
      return parseIpv4(view, buf, offset, end);
    case LinkType.IPV6:
      return parseIpv6(view, buf, offset, end);
    case LinkType.LINUX_SLL: {
      if (length < SLL_HEADER_LENGTH) return fail(view, ParseFailure.TRUNCATED_L2);
      return parseEtherPayload(view, buf, offset + 14, end, false);
    }
    case LinkType.LINUX_SLL2: {
      if (length < SLL2_HEADER_LENGTH) return fail(view, ParseFailure.TRUNCATED_L2);
      return parseSll2(view, buf, offset, end);
    }
    default:
      return fail(view, ParseFailure.UNSUPPORTED_LINK_TYPE);
  }
}

function fail(view: PacketView, failure: ParseFailure): false {
  view.failure = failure;
  return false;
}

/** SLL2 carries its protocol first and its payload after 20 bytes, unlike SLL and Ethernet. */
function parseSll2(view: PacketView, buf: Uint8Array, offset: number, end: number): boolean {
  const protocol = (buf[offset]! << 8) | buf[offset + 1]!;
  return parseEtherTypeAndTags(view, buf, protocol, offset + SLL2_HEADER_LENGTH, end, false);
}

/**
 * Reads the type field at typeOffset (the last two bytes of an Ethernet or SLL header; the
 * payload starts right after it) and continues with tags and the payload.
 */
function parseEtherPayload(view: PacketView, buf: Uint8Array, typeOffset: number, end: number, ethernet: boolean): boolean {
  const etherType = (buf[typeOffset]! << 8) | buf[typeOffset + 1]!;
  return parseEtherTypeAndTags(view, buf, etherType, typeOffset + 2, end, ethernet);
}

function parseEtherTypeAndTags(
  view: PacketView,
  buf: Uint8Array,
  firstType: number,
  payloadOffset: number,
  end: number,
  ethernet: boolean,
): boolean {
  let etherType = firstType;
  let p = payloadOffset;
  while (etherType === EtherType.VLAN || etherType === EtherType.QINQ || etherType === EtherType.QINQ_OLD) {
    if (view.vlanCount === VLAN_TAGS_MAX) return fail(view, ParseFailure.TOO_MANY_VLAN_TAGS);
    if (p + VLAN_TAG_LENGTH > end) return fail(view, ParseFailure.TRUNCATED_L2);
    const vlanId = ((buf[p]! & 0x0f) << 8) | buf[p + 1]!;
    if (view.vlanCount === 0) view.vlanOuter = vlanId;
    else view.vlanInner = vlanId;
    view.vlanCount++;
    etherType = (buf[p + 2]! << 8) | buf[p + 3]!;
    p += VLAN_TAG_LENGTH;
  }
  view.etherType = etherType;
  if (etherType === EtherType.IPV4) return parseIpv4(view, buf, p, end);
  if (etherType === EtherType.IPV6) return parseIpv6(view, buf, p, end);
  if (etherType === EtherType.ARP) return parseArp(view, buf, p, end);
  // An 802.3 length field must fit in the frame; the cooked headers reuse small values as
  // protocol codes (ETH_P_802_2...), so the check applies to Ethernet only.
  if (ethernet && etherType < ETHERTYPE_MIN && p + etherType > end) return fail(view, ParseFailure.TRUNCATED_L2);
  return true;
}

function parseArp(view: PacketView, buf: Uint8Array, p: number, end: number): boolean {
  if (p + 8 > end) return fail(view, ParseFailure.TRUNCATED_ARP);
  const hardwareType = (buf[p]! << 8) | buf[p + 1]!;
  const protocolType = (buf[p + 2]! << 8) | buf[p + 3]!;
  const op = (buf[p + 6]! << 8) | buf[p + 7]!;
  // Only Ethernet/IPv4 ARP requests and replies: the runtime answers these, nothing else.
  if (hardwareType !== 1 || protocolType !== EtherType.IPV4 || buf[p + 4] !== 6 || buf[p + 5] !== 4) {
    return fail(view, ParseFailure.BAD_ARP);
  }
  if (op !== 1 && op !== 2) return fail(view, ParseFailure.BAD_ARP);
  if (p + ARP_HEADER_LENGTH > end) return fail(view, ParseFailure.TRUNCATED_ARP);
  view.arpOp = op;
  view.arpSenderMacOffset = p + 8;
  view.arpSenderIp = readU32(buf, p + 14);
  view.arpTargetMacOffset = p + 18;
  view.arpTargetIp = readU32(buf, p + 24);
  return true;
}

function parseIpv4(view: PacketView, buf: Uint8Array, p: number, end: number): boolean {
  if (p >= end) return fail(view, ParseFailure.TRUNCATED_L3);
  const b0 = buf[p]!;
  if (b0 >>> 4 !== 4) return fail(view, ParseFailure.BAD_IP_VERSION);
  if (p + IPV4_HEADER_LENGTH_MIN > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const headerLength = (b0 & 0x0f) << 2;
  if (headerLength < IPV4_HEADER_LENGTH_MIN) return fail(view, ParseFailure.BAD_IP_HEADER_LENGTH);
  if (p + headerLength > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const totalLength = (buf[p + 2]! << 8) | buf[p + 3]!;
  // Bytes past totalLength (Ethernet minimum-size padding) are not part of the packet.
  if (totalLength < headerLength || p + totalLength > end) return fail(view, ParseFailure.BAD_IP_TOTAL_LENGTH);
  const flagsAndOffset = (buf[p + 6]! << 8) | buf[p + 7]!;
  const fragmentOffset = (flagsAndOffset & 0x1fff) << 3;
  const moreFragments = (flagsAndOffset & 0x2000) !== 0;
  if (fragmentOffset + totalLength - headerLength > IP_DATAGRAM_LENGTH_MAX) {
    return fail(view, ParseFailure.BAD_IP_TOTAL_LENGTH);
  }
  const l3End = p + totalLength;
  view.ipVersion = 4;
  view.l3Offset = p;
  view.l3End = l3End;
  view.ipHeaderLength = headerLength;
  view.trafficClass = buf[p + 1]!;
  view.fragmentId = (buf[p + 4]! << 8) | buf[p + 5]!;
  view.fragmentOffset = fragmentOffset;
  view.moreFragments = moreFragments;
  view.isFragment = moreFragments || fragmentOffset !== 0;
  view.ttlOffset = p + 8;
  view.ttl = buf[p + 8]!;
  const protocol = buf[p + 9]!;
  view.protocol = protocol;
  view.srcAddrOffset = p + 12;
  view.dstAddrOffset = p + 16;
  view.src4 = readU32(buf, p + 12);
  view.dst4 = readU32(buf, p + 16);
  if (fragmentOffset !== 0) return true; // later fragments carry no L4 header
  return parseL4(view, buf, p + headerLength, l3End, protocol, false);
}

function parseIpv6(view: PacketView, buf: Uint8Array, p: number, end: number): boolean {
  if (p >= end) return fail(view, ParseFailure.TRUNCATED_L3);
  const b0 = buf[p]!;
  if (b0 >>> 4 !== 6) return fail(view, ParseFailure.BAD_IP_VERSION);
  if (p + IPV6_HEADER_LENGTH > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const payloadLength = (buf[p + 4]! << 8) | buf[p + 5]!;
  let nextHeader = buf[p + 6]!;
  // Payload length 0 with a Jumbo Payload option (RFC 2675) means "up to the end of the frame".
  const jumbo = payloadLength === 0 && nextHeader === IpProto.HOPOPT && hasJumboOption(buf, p + IPV6_HEADER_LENGTH, end);
  const l3End = jumbo ? end : p + IPV6_HEADER_LENGTH + payloadLength;
  if (l3End > end) return fail(view, ParseFailure.BAD_IP_TOTAL_LENGTH);
  view.ipVersion = 6;
  view.l3Offset = p;
  view.l3End = l3End;
  view.trafficClass = ((b0 & 0x0f) << 4) | (buf[p + 1]! >>> 4);
  view.ttlOffset = p + 7;
  view.ttl = buf[p + 7]!;
  view.srcAddrOffset = p + 8;
  view.dstAddrOffset = p + 24;

  let q = p + IPV6_HEADER_LENGTH;
  let seenFragment = false;
  for (let count = 0; ; count++) {
    if (nextHeader === IpProto.HOPOPT || nextHeader === IpProto.IPV6_ROUTE || nextHeader === IpProto.IPV6_OPTS || nextHeader === IpProto.AH) {
      if (count === IPV6_EXTENSION_HEADERS_MAX) return fail(view, ParseFailure.BAD_IPV6_EXTENSION);
      // Hop-by-hop options may only follow the IPv6 header itself (RFC 8200 4.1).
      if (nextHeader === IpProto.HOPOPT && count !== 0) return fail(view, ParseFailure.BAD_IPV6_EXTENSION);
      if (q + 8 > l3End) return fail(view, ParseFailure.TRUNCATED_L3);
      const extLength = nextHeader === IpProto.AH ? (buf[q + 1]! + 2) << 2 : (buf[q + 1]! + 1) << 3;
      if (q + extLength > l3End) return fail(view, ParseFailure.BAD_IPV6_EXTENSION);
      nextHeader = buf[q]!;
      q += extLength;
      continue;
    }
    if (nextHeader === IpProto.IPV6_FRAG) {
      if (count === IPV6_EXTENSION_HEADERS_MAX) return fail(view, ParseFailure.BAD_IPV6_EXTENSION);
      // Two fragment headers would make reassembly ambiguous; jumbograms cannot be fragmented.
      if (seenFragment || jumbo) return fail(view, ParseFailure.BAD_IPV6_EXTENSION);
      if (q + 8 > l3End) return fail(view, ParseFailure.TRUNCATED_L3);
      seenFragment = true;
      const offsetAndFlags = (buf[q + 2]! << 8) | buf[q + 3]!;
      const fragmentOffset = offsetAndFlags & 0xfff8; // 13-bit offset in 8-byte units, in place
      const moreFragments = (offsetAndFlags & 1) !== 0;
      view.fragmentId = readU32(buf, q + 4);
      view.fragmentOffset = fragmentOffset;
      view.moreFragments = moreFragments;
      view.isFragment = moreFragments || fragmentOffset !== 0;
      nextHeader = buf[q]!;
      q += 8;
      if (fragmentOffset + (l3End - q) > IP_DATAGRAM_LENGTH_MAX) return fail(view, ParseFailure.BAD_IP_TOTAL_LENGTH);
      if (fragmentOffset !== 0) {
        // The rest of a later fragment is opaque: its headers are in the first fragment.
        view.protocol = nextHeader;
        view.ipHeaderLength = q - p;
        return true;
      }
      continue;
    }
    break;
  }
  view.protocol = nextHeader;
  view.ipHeaderLength = q - p;
  if (nextHeader === IpProto.IPV6_NONXT) return true;
  return parseL4(view, buf, q, l3End, nextHeader, jumbo);
}

/** True when the hop-by-hop header at q (bounded by end) carries a Jumbo Payload option. */
function hasJumboOption(buf: Uint8Array, q: number, end: number): boolean {
  if (q + 8 > end) return false;
  let optionsEnd = q + ((buf[q + 1]! + 1) << 3);
  if (optionsEnd > end) optionsEnd = end;
  let i = q + 2;
  while (i < optionsEnd) {
    const type = buf[i]!;
    if (type === 0) {
      i++; // Pad1
      continue;
    }
    if (i + 2 > optionsEnd) return false;
    if (type === IPV6_OPTION_JUMBO) return buf[i + 1] === 4 && i + 6 <= optionsEnd;
    i += 2 + buf[i + 1]!;
  }
  return false;
}

/** Decodes the upper-layer header at l4 (inside [l4, l3End)) of a first or only fragment. */
function parseL4(view: PacketView, buf: Uint8Array, l4: number, l3End: number, protocol: number, jumbo: boolean): boolean {
  view.l4Offset = l4;
  if (protocol === IpProto.TCP) return parseTcp(view, buf, l4, l3End);
  if (protocol === IpProto.UDP) return parseUdp(view, buf, l4, l3End, jumbo);
  if (protocol === IpProto.ICMP && view.ipVersion === 4) return parseIcmp(view, buf, l4, l3End);
  if (protocol === IpProto.ICMPV6 && view.ipVersion === 6) return parseIcmp(view, buf, l4, l3End);
  return true;
}

function parseTcp(view: PacketView, buf: Uint8Array, l4: number, l3End: number): boolean {
  if (l4 + TCP_HEADER_LENGTH_MIN > l3End) return fail(view, ParseFailure.TRUNCATED_L4);
  const headerLength = (buf[l4 + 12]! >>> 4) << 2;
  if (headerLength < TCP_HEADER_LENGTH_MIN || l4 + headerLength > l3End) {
    return fail(view, ParseFailure.BAD_TCP_HEADER_LENGTH);
  }
  view.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
  view.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
  view.tcpSeq = readU32(buf, l4 + 4);
  view.tcpAck = readU32(buf, l4 + 8);
  view.tcpFlags = buf[l4 + 13]!;
  view.tcpWindow = (buf[l4 + 14]! << 8) | buf[l4 + 15]!;
  view.tcpHeaderLength = headerLength;
  if (headerLength > TCP_HEADER_LENGTH_MIN) {
    view.tcpOptionsOffset = l4 + TCP_HEADER_LENGTH_MIN;
    view.tcpOptionsLength = headerLength - TCP_HEADER_LENGTH_MIN;
  }
  const payloadOffset = l4 + headerLength;
  view.payloadOffset = payloadOffset;
  view.tcpDataLength = l3End - payloadOffset;
  return true;
}

function parseUdp(view: PacketView, buf: Uint8Array, l4: number, l3End: number, jumbo: boolean): boolean {
  if (l4 + UDP_HEADER_LENGTH > l3End) return fail(view, ParseFailure.TRUNCATED_L4);
  let udpLength = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
  if (udpLength === 0 && jumbo) {
    udpLength = l3End - l4; // RFC 2675: the length is the jumbogram's
  } else if (udpLength < UDP_HEADER_LENGTH) {
    return fail(view, ParseFailure.BAD_UDP_LENGTH);
  } else if (l4 + udpLength > l3End && !view.moreFragments) {
    // A first fragment holds only part of the datagram its length field counts.
    return fail(view, ParseFailure.BAD_UDP_LENGTH);
  }
  const dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
  view.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
  view.dstPort = dstPort;
  view.udpLength = udpLength;
  const payloadOffset = l4 + UDP_HEADER_LENGTH;
  view.payloadOffset = payloadOffset;
  if (dstPort === VXLAN_PORT && !view.isFragment) {
    const datagramEnd = l4 + udpLength;
    if (payloadOffset + VXLAN_HEADER_LENGTH <= datagramEnd && (buf[payloadOffset]! & VXLAN_FLAG_VNI) !== 0) {
      view.vxlanVni = (buf[payloadOffset + 4]! << 16) | (buf[payloadOffset + 5]! << 8) | buf[payloadOffset + 6]!;
      view.vxlanInnerOffset = payloadOffset + VXLAN_HEADER_LENGTH;
    }
  }
  return true;
}

/** ICMP over IPv4 and ICMPv6 over IPv6 share a layout; the version picks the type numbers. */
function parseIcmp(view: PacketView, buf: Uint8Array, l4: number, l3End: number): boolean {
  if (l4 + ICMP_HEADER_LENGTH_MIN > l3End) return fail(view, ParseFailure.TRUNCATED_L4);
  const type = buf[l4]!;
  view.icmpType = type;
  view.icmpCode = buf[l4 + 1]!;
  const v4 = view.ipVersion === 4;
  const isEcho = v4 ? type === 8 || type === 0 : type === 128 || type === 129;
  const isError = v4 ? type === 3 || type === 4 || type === 5 || type === 11 || type === 12 : type >= 1 && type <= 4;
  if (isEcho || isError) {
    if (l4 + ICMP_HEADER_LENGTH > l3End) return fail(view, ParseFailure.TRUNCATED_L4);
    if (isEcho) {
      const id = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
      view.icmpIsEcho = true;
      view.icmpId = id;
      view.icmpSeq = (buf[l4 + 6]! << 8) | buf[l4 + 7]!;
      view.srcPort = id; // the echo identifier names the flow in both directions
      view.dstPort = id;
    } else {
      view.icmpIsError = true;
      if (l4 + ICMP_HEADER_LENGTH < l3End) view.icmpQuoteOffset = l4 + ICMP_HEADER_LENGTH;
    }
  }
  view.payloadOffset = l4 + ICMP_HEADER_LENGTH <= l3End ? l4 + ICMP_HEADER_LENGTH : l3End;
  return true;
}

// ---- TCP options (SYN path only) ----------------------------------------------------------

const TCP_OPTION_EOL = 0;
const TCP_OPTION_NOP = 1;
const TCP_OPTION_MSS = 2;
const TCP_OPTION_WSCALE = 3;
const TCP_OPTION_SACK_PERM = 4;
const TCP_OPTION_TIMESTAMP = 8;
/** RFC 7323 2.3: a larger shift is treated as 14 (Linux does the same). */
export const TCP_WINDOW_SCALE_MAX = 14;

/**
 * Walks the options area of a parsed TCP segment and fills tcpMss, tcpWindowScale,
 * tcpSackPermitted and the timestamps. Options of a known kind but the wrong length are
 * ignored (as Linux does). A length byte < 2 or running past the area returns false with
 * view.failure = BAD_TCP_OPTIONS; the options decoded before it stay filled.
 */
export function parseTcpOptions(view: PacketView): boolean {
  view.tcpMss = 0;
  view.tcpWindowScale = -1;
  view.tcpSackPermitted = false;
  view.tcpHasTimestamps = false;
  view.tcpTsVal = 0;
  view.tcpTsEcr = 0;
  const start = view.tcpOptionsOffset;
  if (start < 0) return true;
  const buf = view.buf;
  const end = start + view.tcpOptionsLength;
  assert(end <= view.frameEnd, "parseTcpOptions: options outside frame");
  let i = start;
  // Each step advances at least one byte, and the area is at most 40 bytes.
  while (i < end) {
    const kind = buf[i]!;
    if (kind === TCP_OPTION_EOL) break;
    if (kind === TCP_OPTION_NOP) {
      i++;
      continue;
    }
    if (i + 2 > end) return fail(view, ParseFailure.BAD_TCP_OPTIONS);
    const length = buf[i + 1]!;
    if (length < 2 || i + length > end) return fail(view, ParseFailure.BAD_TCP_OPTIONS);
    if (kind === TCP_OPTION_MSS && length === 4) {
      view.tcpMss = (buf[i + 2]! << 8) | buf[i + 3]!;
    } else if (kind === TCP_OPTION_WSCALE && length === 3) {
      const shift = buf[i + 2]!;
      view.tcpWindowScale = shift > TCP_WINDOW_SCALE_MAX ? TCP_WINDOW_SCALE_MAX : shift;
    } else if (kind === TCP_OPTION_SACK_PERM && length === 2) {
      view.tcpSackPermitted = true;
    } else if (kind === TCP_OPTION_TIMESTAMP && length === 10) {
      view.tcpHasTimestamps = true;
      view.tcpTsVal = readU32(buf, i + 2);
      view.tcpTsEcr = readU32(buf, i + 6);
    }
    // SACK blocks (kind 5) and unknown kinds are skipped by their length.
    i += length;
  }
  return true;
}

// ---- ICMP error quotes ------------------------------------------------------------------------

/**
 * Parses the IP packet quoted in an ICMP error, buf[offset, end), into view (use a second view:
 * the outer packet's stays intact). Quotes are truncated by design (RFC 792 keeps the IP
 * header and 8 bytes of L4), so the total length may exceed what is there (l3End is then
 * `end`), and L4 fields are filled as far as the bytes go: ports from 4 bytes of TCP/UDP, the
 * TCP sequence from 8, type/code from 2 bytes of ICMP and the echo id/sequence from 6/8.
 * Fails only when the IP header itself is missing or malformed. The caller checks that the
 * quote's IP version matches the outer packet's.
 */
export function parseQuotedIp(view: PacketView, buf: Uint8Array, offset: number, end: number): boolean {
  assert(offset >= 0 && offset <= end && end <= buf.length, "parseQuotedIp: quote outside buffer");
  view.reset(buf, offset, end);
  if (offset >= end) return fail(view, ParseFailure.TRUNCATED_L3);
  const version = buf[offset]! >>> 4;
  if (version === 4) return parseQuotedIpv4(view, buf, offset, end);
  if (version === 6) return parseQuotedIpv6(view, buf, offset, end);
  return fail(view, ParseFailure.BAD_IP_VERSION);
}

function parseQuotedIpv4(view: PacketView, buf: Uint8Array, p: number, end: number): boolean {
  if (p + IPV4_HEADER_LENGTH_MIN > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const headerLength = (buf[p]! & 0x0f) << 2;
  if (headerLength < IPV4_HEADER_LENGTH_MIN) return fail(view, ParseFailure.BAD_IP_HEADER_LENGTH);
  if (p + headerLength > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const totalLength = (buf[p + 2]! << 8) | buf[p + 3]!;
  const l3End = totalLength >= headerLength && p + totalLength < end ? p + totalLength : end;
  const flagsAndOffset = (buf[p + 6]! << 8) | buf[p + 7]!;
  const fragmentOffset = (flagsAndOffset & 0x1fff) << 3;
  view.ipVersion = 4;
  view.l3Offset = p;
  view.l3End = l3End;
  view.ipHeaderLength = headerLength;
  view.trafficClass = buf[p + 1]!;
  view.fragmentId = (buf[p + 4]! << 8) | buf[p + 5]!;
  view.fragmentOffset = fragmentOffset;
  view.moreFragments = (flagsAndOffset & 0x2000) !== 0;
  view.isFragment = view.moreFragments || fragmentOffset !== 0;
  view.ttlOffset = p + 8;
  view.ttl = buf[p + 8]!;
  view.protocol = buf[p + 9]!;
  view.srcAddrOffset = p + 12;
  view.dstAddrOffset = p + 16;
  view.src4 = readU32(buf, p + 12);
  view.dst4 = readU32(buf, p + 16);
  if (fragmentOffset === 0) parseQuotedL4(view, buf, p + headerLength, l3End);
  return true;
}

function parseQuotedIpv6(view: PacketView, buf: Uint8Array, p: number, end: number): boolean {
  if (p + IPV6_HEADER_LENGTH > end) return fail(view, ParseFailure.TRUNCATED_L3);
  const payloadLength = (buf[p + 4]! << 8) | buf[p + 5]!;
  const declaredEnd = p + IPV6_HEADER_LENGTH + payloadLength;
  const l3End = payloadLength !== 0 && declaredEnd < end ? declaredEnd : end;
  view.ipVersion = 6;
  view.l3Offset = p;
  view.l3End = l3End;
  view.trafficClass = ((buf[p]! & 0x0f) << 4) | (buf[p + 1]! >>> 4);
  view.ttlOffset = p + 7;
  view.ttl = buf[p + 7]!;
  view.srcAddrOffset = p + 8;
  view.dstAddrOffset = p + 24;
  let nextHeader = buf[p + 6]!;
  let q = p + IPV6_HEADER_LENGTH;
  // Extension headers as far as the quote holds them; a cut chain leaves no L4 but succeeds.
  for (let count = 0; ; count++) {
    const extension =
      nextHeader === IpProto.HOPOPT ||
      nextHeader === IpProto.IPV6_ROUTE ||
      nextHeader === IpProto.IPV6_OPTS ||
      nextHeader === IpProto.AH ||
      nextHeader === IpProto.IPV6_FRAG;
    if (extension && count === IPV6_EXTENSION_HEADERS_MAX) break;
    if (nextHeader === IpProto.HOPOPT || nextHeader === IpProto.IPV6_ROUTE || nextHeader === IpProto.IPV6_OPTS || nextHeader === IpProto.AH) {
      if (q + 8 > l3End) break;
      const extLength = nextHeader === IpProto.AH ? (buf[q + 1]! + 2) << 2 : (buf[q + 1]! + 1) << 3;
      if (q + extLength > l3End) break;
      nextHeader = buf[q]!;
      q += extLength;
      continue;
    }
    if (nextHeader === IpProto.IPV6_FRAG) {
      if (q + 8 > l3End) break;
      const offsetAndFlags = (buf[q + 2]! << 8) | buf[q + 3]!;
      view.fragmentId = readU32(buf, q + 4);
      view.fragmentOffset = offsetAndFlags & 0xfff8;
      view.moreFragments = (offsetAndFlags & 1) !== 0;
      view.isFragment = view.moreFragments || view.fragmentOffset !== 0;
      nextHeader = buf[q]!;
      q += 8;
      continue;
    }
    view.protocol = nextHeader;
    view.ipHeaderLength = q - p;
    if (nextHeader !== IpProto.IPV6_NONXT && view.fragmentOffset === 0) parseQuotedL4(view, buf, q, l3End);
    return true;
  }
  // The chain was cut (or too long): the protocol is unknown, only addresses are usable.
  view.protocol = nextHeader;
  view.ipHeaderLength = q - p;
  return true;
}

function parseQuotedL4(view: PacketView, buf: Uint8Array, l4: number, l3End: number): void {
  const available = l3End - l4;
  const protocol = view.protocol;
  if (available <= 0) return;
  view.l4Offset = l4;
  if (protocol === IpProto.TCP || protocol === IpProto.UDP) {
    if (available < 4) return;
    view.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
    view.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
    if (protocol === IpProto.TCP && available >= 8) view.tcpSeq = readU32(buf, l4 + 4);
    if (protocol === IpProto.UDP && available >= 6) view.udpLength = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
    return;
  }
  const icmp = (protocol === IpProto.ICMP && view.ipVersion === 4) || (protocol === IpProto.ICMPV6 && view.ipVersion === 6);
  if (!icmp || available < 2) return;
  const type = buf[l4]!;
  view.icmpType = type;
  view.icmpCode = buf[l4 + 1]!;
  const isEcho = view.ipVersion === 4 ? type === 8 || type === 0 : type === 128 || type === 129;
  if (!isEcho || available < 6) return;
  const id = (buf[l4 + 4]! << 8) | buf[l4 + 5]!;
  view.icmpIsEcho = true;
  view.icmpId = id;
  view.srcPort = id;
  view.dstPort = id;
  if (available >= 8) view.icmpSeq = (buf[l4 + 6]! << 8) | buf[l4 + 7]!;
}

// ---- VXLAN from sockets -----------------------------------------------------------------------

/**
 * VNI of the VXLAN header at buf[offset, offset + length) (a UDP payload as a socket delivers
 * it), or -1 when it is shorter than 8 bytes or its I flag is clear. The inner Ethernet frame
 * starts at offset + 8.
 */
export function parseVxlanPayload(buf: Uint8Array, offset: number, length: number): number {
  assert(offset >= 0 && length >= 0 && offset + length <= buf.length, "parseVxlanPayload: outside buffer");
  if (length < VXLAN_HEADER_LENGTH) return -1;
  if ((buf[offset]! & VXLAN_FLAG_VNI) === 0) return -1;
  return (buf[offset + 4]! << 16) | (buf[offset + 5]! << 8) | buf[offset + 6]!;
}
