// PacketView: the parsed shape of one frame, as plain numeric fields on a reusable object.
//
// The data plane parses millions of frames a second, so parsing allocates nothing: a caller
// owns one PacketView (or a few), and `parseFrame` (parse.ts) overwrites its fields for each
// frame. Addresses are never copied into strings; they are offsets into `buf`, and for IPv4
// also the 32-bit value. A field that a frame does not have is -1 (offsets) or 0 (values),
// as documented per field.
//
//   buf: | L2 (Ethernet, VLAN tags) | L3 (IPv4 / IPv6 + ext headers) | L4 (TCP/UDP/ICMP) | payload |
//        ^l2Offset                  ^l3Offset                        ^l4Offset           ^payloadOffset
//
// Invariant after a successful parse: l2Offset <= l3Offset <= l4Offset <= payloadOffset <= l3End
// (where a layer is present), and every offset + the length it stands for lies inside the
// frame's [frameOffset, frameEnd).

/** Why a frame could not be parsed. Counted per reason; never thrown. */
export const ParseFailure = {
  NONE: 0,
  TRUNCATED_L2: 1,
  TRUNCATED_L3: 2,
  TRUNCATED_L4: 3,
  BAD_IP_VERSION: 4,
  BAD_IP_HEADER_LENGTH: 5,
  BAD_IP_TOTAL_LENGTH: 6,
  BAD_IPV6_EXTENSION: 7,
  BAD_TCP_HEADER_LENGTH: 8,
  BAD_UDP_LENGTH: 9,
  UNSUPPORTED_ETHERTYPE: 10,
  TOO_MANY_VLAN_TAGS: 11,
  TRUNCATED_ARP: 12,
  BAD_ARP: 13,
  UNSUPPORTED_LINK_TYPE: 14,
  BAD_TCP_OPTIONS: 15,
  TRUNCATED_VXLAN: 16,
} as const;
export type ParseFailure = (typeof ParseFailure)[keyof typeof ParseFailure];
export const PARSE_FAILURE_NAMES: readonly string[] = [
  "none",
  "truncated-l2",
  "truncated-l3",
  "truncated-l4",
  "bad-ip-version",
  "bad-ip-header-length",
  "bad-ip-total-length",
  "bad-ipv6-extension",
  "bad-tcp-header-length",
  "bad-udp-length",
  "unsupported-ethertype",
  "too-many-vlan-tags",
  "truncated-arp",
  "bad-arp",
  "unsupported-link-type",
  "bad-tcp-options",
  "truncated-vxlan",
];

/** pcap LINKTYPE_* values the gateway accepts. Anything else is an unsupported link type. */
export const LinkType = {
  ETHERNET: 1,
  RAW: 101, // raw IPv4 or IPv6, version from the first nibble
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;
export type LinkType = (typeof LinkType)[keyof typeof LinkType];

export const EtherType = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100,
  QINQ: 0x88a8,
  QINQ_OLD: 0x9100,
  IPV6: 0x86dd,
} as const;

export const IpProto = {
  HOPOPT: 0,
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  IPV6_ROUTE: 43,
  IPV6_FRAG: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  IPV6_NONXT: 59,
  IPV6_OPTS: 60,
} as const;

export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export const VXLAN_PORT = 4789;

const EMPTY = new Uint8Array(0);

export class PacketView {
  /** The bytes the frame lives in (not copied). */
  buf: Uint8Array = EMPTY;
  /** First byte of the frame in buf, and one past its last byte. */
  frameOffset = 0;
  frameEnd = 0;

  // ---- L2 -------------------------------------------------------------------------------
  /** Offset of the Ethernet header, or -1 for raw-IP link types. */
  l2Offset = -1;
  /** EtherType after any VLAN tags (0 when the link type has none). */
  etherType = 0;
  /** Number of 802.1Q / 802.1ad tags (0..2). */
  vlanCount = 0;
  /** VLAN ids (12 bits), outer first; 0 when absent. */
  vlanOuter = 0;
  vlanInner = 0;

  // ---- ARP (etherType 0x0806, Ethernet/IPv4 only) ---------------------------------------
  /** ARP operation (1 request, 2 reply), 0 when the frame is not ARP. */
  arpOp = 0;
  /** Offsets of sender/target hardware and protocol addresses (6 and 4 bytes). */
  arpSenderMacOffset = -1;
  arpSenderIp = 0;
  arpTargetMacOffset = -1;
  arpTargetIp = 0;

  // ---- L3 -------------------------------------------------------------------------------
  /** 4, 6, or 0 when there is no IP layer. */
  ipVersion = 0;
  l3Offset = -1;
  /** One past the last byte of the IP packet per its length field (clamped to frameEnd is a parse failure, not a clamp). */
  l3End = 0;
  /** IPv4 header length in bytes (with options); IPv6: 40 + extension headers up to the upper layer. */
  ipHeaderLength = 0;
  /** Offsets of the source and destination address (4 or 16 bytes). */
  srcAddrOffset = -1;
  dstAddrOffset = -1;
  /** IPv4 addresses as unsigned 32-bit values (0 for IPv6). */
  src4 = 0;
  dst4 = 0;
  /** TTL (IPv4) or hop limit (IPv6), and the offset of that byte. */
  ttl = 0;
  ttlOffset = -1;
  /** Upper-layer protocol after IPv6 extension headers (IpProto). */
  protocol = 0;
  /** True for any fragment (first or not). */
  isFragment = false;
  /** Fragment offset in bytes (0 for the first fragment or an unfragmented packet). */
  fragmentOffset = 0;
  moreFragments = false;
  /** IPv4 identification (16 bits) or IPv6 fragment identification (32 bits). */
  fragmentId = 0;
  /** IPv4 DSCP/ECN byte, IPv6 traffic class. */
  trafficClass = 0;

  // ---- L4 (absent on non-first fragments: l4Offset = -1) ---------------------------------
  l4Offset = -1;
  /** Offset of the L4 payload (after the TCP/UDP/ICMP header), -1 without L4. */
  payloadOffset = -1;
  /** Ports for TCP/UDP; for ICMP/ICMPv6 echo both are the echo identifier; else 0. */
  srcPort = 0;
  dstPort = 0;

  // TCP
  tcpFlags = 0;
  tcpSeq = 0; // unsigned 32-bit
  tcpAck = 0; // unsigned 32-bit
  tcpWindow = 0; // unscaled 16-bit
  tcpHeaderLength = 0;
  /** TCP payload length in bytes (l3End - payloadOffset). */
  tcpDataLength = 0;
  /** Offset and length of the TCP options area (between the 20-byte header and the data). */
  tcpOptionsOffset = -1;
  tcpOptionsLength = 0;
  // Filled by parseTcpOptions(view) only (kept off the per-packet path: only SYNs need them).
  tcpMss = 0; // 0 when absent
  tcpWindowScale = -1; // -1 when absent
  tcpSackPermitted = false;
  tcpHasTimestamps = false;
  tcpTsVal = 0;
  tcpTsEcr = 0;

  // UDP
  udpLength = 0;

  // ICMP / ICMPv6
  icmpType = 0;
  icmpCode = 0;
  /** Echo identifier and sequence (echo request/reply only). */
  icmpId = 0;
  icmpSeq = 0;
  /** True for echo request/reply (ICMP 8/0, ICMPv6 128/129). */
  icmpIsEcho = false;
  /** True for ICMP errors that quote an offending packet (dest unreachable, time exceeded, parameter problem, redirect; ICMPv6 1..4). */
  icmpIsError = false;
  /** Offset of the quoted IP header inside an ICMP error, -1 otherwise. Parse it with parseQuotedIp. */
  icmpQuoteOffset = -1;

  // ---- VXLAN (UDP to port 4789 with a valid 8-byte header) --------------------------------
  /** VXLAN network identifier, or -1 when the frame is not VXLAN. */
  vxlanVni = -1;
  /** Offset of the inner Ethernet frame, -1 when not VXLAN. */
  vxlanInnerOffset = -1;

  /** Why the last parse failed (ParseFailure.NONE on success). */
  failure: ParseFailure = ParseFailure.NONE;

  /** Resets every field to "absent" before a parse. Called by the parser, not by users. */
  reset(buf: Uint8Array, frameOffset: number, frameEnd: number): void {
    this.buf = buf;
    this.frameOffset = frameOffset;
    this.frameEnd = frameEnd;
    this.l2Offset = -1;
    this.etherType = 0;
    this.vlanCount = 0;
    this.vlanOuter = 0;
    this.vlanInner = 0;
    this.arpOp = 0;
    this.arpSenderMacOffset = -1;
    this.arpSenderIp = 0;
    this.arpTargetMacOffset = -1;
    this.arpTargetIp = 0;
    this.ipVersion = 0;
    this.l3Offset = -1;
    this.l3End = 0;
    this.ipHeaderLength = 0;
    this.srcAddrOffset = -1;
    this.dstAddrOffset = -1;
    this.src4 = 0;
    this.dst4 = 0;
    this.ttl = 0;
    this.ttlOffset = -1;
    this.protocol = 0;
    this.isFragment = false;
    this.fragmentOffset = 0;
    this.moreFragments = false;
    this.fragmentId = 0;
    this.trafficClass = 0;
    this.l4Offset = -1;
    this.payloadOffset = -1;
    this.srcPort = 0;
    this.dstPort = 0;
    this.tcpFlags = 0;
    this.tcpSeq = 0;
    this.tcpAck = 0;
    this.tcpWindow = 0;
    this.tcpHeaderLength = 0;
    this.tcpDataLength = 0;
    this.tcpOptionsOffset = -1;
    this.tcpOptionsLength = 0;
    this.tcpMss = 0;
    this.tcpWindowScale = -1;
    this.tcpSackPermitted = false;
    this.tcpHasTimestamps = false;
    this.tcpTsVal = 0;
    this.tcpTsEcr = 0;
    this.udpLength = 0;
    this.icmpType = 0;
    this.icmpCode = 0;
    this.icmpId = 0;
    this.icmpSeq = 0;
    this.icmpIsEcho = false;
    this.icmpIsError = false;
    this.icmpQuoteOffset = -1;
    this.vxlanVni = -1;
    this.vxlanInnerOffset = -1;
    this.failure = ParseFailure.NONE;
  }
}
