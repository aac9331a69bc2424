// Packet builder: a fluent way to write frames for tests, fixtures and traffic generators.
//
//   packet().ethernet().vlan(10).ipv4({ src: "198.18.0.1", dst: "198.19.0.1" })
//     .tcp({ sport: 40000, dport: 80, flags: "S", options: { mss: 1460 } }).payload("hi").build()
//
// It is off the per-packet path, so it allocates freely and favours clarity. Invariants:
// - build() output has consistent lengths and correct checksums unless an override (the
//   fields marked "override" below) asks for a malformed value: fixtures for every parse
//   failure are written with those.
// - Layers may be declared in any order; build() assembles L2, L3, L4 and payload.
// - Without .ethernet() / .linuxSll() the output is raw IP (pcap LINKTYPE_RAW); linkType()
//   says which, and parse.ts reads it back.
// - The builder never calls the parser to build a packet (tests compare the two), only the
//   fragment helper parses its input to find the layers it splits.

import { TandemError, ErrorCode } from "../stdx/errors.js";
import { assert } from "../stdx/assert.js";
import { parseIpv4, parseIpv6 } from "./addr.js";
import { onesComplementSum, pseudoHeaderSum } from "./checksum.js";
import { IPV6_EXTENSION_HEADERS_MAX, parseFrame } from "./parse.js";
import { EtherType, IpProto, LinkType, PacketView, TcpFlag, VXLAN_PORT } from "./view.js";

export type MacInput = string | Uint8Array;
/** IPv4: dotted text or an unsigned 32-bit number; IPv6: text or 16 bytes. */
export type AddressInput = string | number | Uint8Array;

export interface EthernetOptions {
  src?: MacInput;
  dst?: MacInput;
  /** Override: the EtherType to write (default: from the L3 layer; required without one). */
  etherType?: number;
}

export interface VlanOptions {
  /** 0x8100 (default), 0x88a8 or 0x9100. */
  tpid?: number;
  /** Priority code point (0..7). */
  pcp?: number;
}

export interface Ipv4Options {
  src: AddressInput;
  dst: AddressInput;
  ttl?: number;
  id?: number;
  /** DSCP/ECN byte. */
  tos?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in bytes (a multiple of 8). */
  fragmentOffset?: number;
  /** IP options, padded with zeros (EOL) to a multiple of 4 bytes. */
  options?: Uint8Array;
  /** Protocol field when no L4 layer is declared (default 253, "experimentation"). */
  protocol?: number;
  /** Overrides for malformed packets. */
  version?: number;
  ihl?: number;
  totalLength?: number;
  checksum?: number;
}

export type Ipv6Extension =
  | { type: "hopByHop"; options?: Uint8Array; jumbo?: boolean }
  | { type: "destination"; options?: Uint8Array }
  | { type: "routing"; routingType?: number; segmentsLeft?: number; data?: Uint8Array }
  | { type: "fragment"; offset?: number; more?: boolean; id?: number }
  | { type: "ah"; spi?: number; seq?: number; icvLength?: number }
  /** Any header: next-header code, then bytes written after the next-header byte. */
  | { type: "raw"; code: number; bytes: Uint8Array };

export interface Ipv6Options {
  src: AddressInput;
  dst: AddressInput;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  /** Extension headers in order (the builder links their next-header fields). */
  ext?: Ipv6Extension[];
  /** Upper-layer protocol when no L4 layer is declared (default 59, no next header). */
  nextHeader?: number;
  /** Overrides for malformed packets. */
  version?: number;
  payloadLength?: number;
}

export interface TcpOptionList {
  mss?: number;
  wscale?: number;
  sackPerm?: boolean;
  /** [TSval, TSecr]. */
  ts?: [number, number];
  /** SACK blocks [left, right]. */
  sack?: Array<[number, number]>;
  /** Raw option bytes appended after the others (before padding). */
  raw?: Uint8Array;
}

export interface TcpOptions {
  sport: number;
  dport: number;
  /** Letters S A F R P U E C (any order), or the flag byte. Default "S". */
  flags?: string | number;
  seq?: number;
  ack?: number;
  window?: number;
  urgent?: number;
  options?: TcpOptionList;
  /** Overrides for malformed packets: data offset in 32-bit words, checksum. */
  dataOffset?: number;
  checksum?: number;
}

export interface UdpOptions {
  sport: number;
  dport: number;
  /** Overrides for malformed packets. */
  length?: number;
  checksum?: number;
}

export interface IcmpOptions {
  type: number;
  code?: number;
  /** Echo identifier and sequence (bytes 4-7 of the header). */
  id?: number;
  seq?: number;
  /** Bytes 4-7 for other types (e.g. the MTU of "fragmentation needed"); ignored with id/seq. */
  rest?: number;
  /** The offending packet quoted by an error (placed before any payload). */
  quote?: Uint8Array;
  /** Override. */
  checksum?: number;
}

export interface ArpOptions {
  /** 1 request, 2 reply. */
  op: number;
  senderMac: MacInput;
  senderIp: AddressInput;
  targetMac?: MacInput;
  targetIp: AddressInput;
  /** Overrides for malformed packets. */
  hardwareType?: number;
  protocolType?: number;
  hardwareLength?: number;
  protocolLength?: number;
}

export interface VxlanOptions {
  vni: number;
  /** The inner Ethernet frame. */
  inner: PacketBuilder | Uint8Array;
  /** Outer UDP ports (default 49152 -> 4789). */
  sport?: number;
  dport?: number;
  /** Flags byte (default 0x08, the I flag). */
  flags?: number;
}

const DEFAULT_SRC_MAC = "02:00:00:00:00:01";
const DEFAULT_DST_MAC = "02:00:00:00:00:02";
const IPV4_PROTOCOL_EXPERIMENTAL = 253;

type L3 =
  | { kind: "ipv4"; options: Ipv4Options }
  | { kind: "ipv6"; options: Ipv6Options }
  | { kind: "arp"; options: ArpOptions };
type L4 =
  | { kind: "tcp"; options: TcpOptions }
  | { kind: "udp"; options: UdpOptions }
  | { kind: "icmp"; options: IcmpOptions }
  | { kind: "icmpv6"; options: IcmpOptions };

export function packet(): PacketBuilder {
  return new PacketBuilder();
}

export class PacketBuilder {
  private l2: { kind: "ethernet"; options: EthernetOptions } | { kind: "sll"; version: 1 | 2 } | null = null;
  private readonly vlans: Array<{ id: number; options: VlanOptions }> = [];
  private l3: L3 | null = null;
  private l4: L4 | null = null;
  private body: Uint8Array = new Uint8Array(0);
  private hasVxlan = false;

  ethernet(options: EthernetOptions = {}): this {
    assert(this.l2 === null, "builder: link layer declared twice");
    this.l2 = { kind: "ethernet", options };
    return this;
  }

  /** A Linux cooked capture header (SLL, 16 bytes, or SLL2, 20 bytes) instead of Ethernet. */
  linuxSll(version: 1 | 2 = 1): this {
    assert(this.l2 === null, "builder: link layer declared twice");
    this.l2 = { kind: "sll", version };
    return this;
  }

  /** Adds a VLAN tag; the first call is the outer tag. */
  vlan(id: number, options: VlanOptions = {}): this {
    assert(Number.isInteger(id) && id >= 0 && id <= 0xfff, "builder: VLAN id must be 0..4095");
    this.vlans.push({ id, options });
    return this;
  }

  ipv4(options: Ipv4Options): this {
    assert(this.l3 === null, "builder: L3 declared twice");
    this.l3 = { kind: "ipv4", options };
    return this;
  }

  ipv6(options: Ipv6Options): this {
    assert(this.l3 === null, "builder: L3 declared twice");
    this.l3 = { kind: "ipv6", options };
    return this;
  }

  arp(options: ArpOptions): this {
    assert(this.l3 === null, "builder: L3 declared twice");
    this.l3 = { kind: "arp", options };
    return this;
  }

  tcp(options: TcpOptions): this {
    assert(this.l4 === null, "builder: L4 declared twice");
    this.l4 = { kind: "tcp", options };
    return this;
  }

  udp(options: UdpOptions): this {
    assert(this.l4 === null, "builder: L4 declared twice");
    this.l4 = { kind: "udp", options };
    return this;
  }

  icmp(options: IcmpOptions): this {
    assert(this.l4 === null, "builder: L4 declared twice");
    this.l4 = { kind: "icmp", options };
    return this;
  }

  icmpv6(options: IcmpOptions): this {
    assert(this.l4 === null, "builder: L4 declared twice");
    this.l4 = { kind: "icmpv6", options };
    return this;
  }

  /** Outer UDP to port 4789 carrying a VXLAN header and the inner frame as its payload. */
  vxlan(options: VxlanOptions): this {
    assert(this.l4 === null && !this.hasVxlan, "builder: vxlan() declares the UDP layer itself");
    assert(Number.isInteger(options.vni) && options.vni >= 0 && options.vni <= 0xffffff, "builder: VNI must be 24 bits");
    const inner = options.inner instanceof PacketBuilder ? options.inner.build() : options.inner;
    const body = new Uint8Array(8 + inner.length);
    body[0] = options.flags ?? 0x08;
    body[4] = options.vni >>> 16;
    body[5] = (options.vni >>> 8) & 0xff;
    body[6] = options.vni & 0xff;
    body.set(inner, 8);
    this.l4 = { kind: "udp", options: { sport: options.sport ?? 49152, dport: options.dport ?? VXLAN_PORT } };
    this.body = body;
    this.hasVxlan = true;
    return this;
  }

  /** The bytes after the last header (a string is UTF-8 encoded). Replaces any earlier payload. */
  payload(data: Uint8Array | string): this {
    assert(!this.hasVxlan, "builder: vxlan() sets the payload");
    this.body = typeof data === "string" ? new TextEncoder().encode(data) : Uint8Array.from(data);
    return this;
  }

  /** The pcap link type of build()'s output. */
  linkType(): LinkType {
    if (this.l2 === null) return LinkType.RAW;
    if (this.l2.kind === "ethernet") return LinkType.ETHERNET;
    return this.l2.version === 1 ? LinkType.LINUX_SLL : LinkType.LINUX_SLL2;
  }

  build(): Uint8Array {
    const l3 = this.l3;
    assert(this.l2 !== null || (l3 !== null && l3.kind !== "arp"), "builder: raw output needs an IP layer");
    assert(this.vlans.length === 0 || this.l2 !== null, "builder: VLAN tags need a link layer");
    let network: Uint8Array;
    let etherType: number;
    if (l3 === null) {
      assert(this.l4 === null, "builder: an L4 layer needs an IP layer");
      network = this.body;
      etherType = this.l2 !== null && this.l2.kind === "ethernet" ? (this.l2.options.etherType ?? -1) : -1;
      assert(etherType >= 0, "builder: a frame without L3 needs ethernet({ etherType })");
    } else if (l3.kind === "arp") {
      assert(this.l4 === null, "builder: ARP carries no L4 layer");
      network = concat(buildArp(l3.options), this.body);
      etherType = EtherType.ARP;
    } else if (l3.kind === "ipv4") {
      network = buildIpv4(l3.options, this.l4, this.body);
      etherType = EtherType.IPV4;
    } else {
      network = buildIpv6(l3.options, this.l4, this.body);
      etherType = EtherType.IPV6;
    }
    if (this.l2 === null) return network;
    const tags = new Uint8Array(this.vlans.length * 4);
    // Each tag is TPID + TCI; the type after the last tag is the payload's EtherType.
    const types: number[] = this.vlans.map((v) => v.options.tpid ?? EtherType.VLAN);
    types.push(this.l2.kind === "ethernet" ? (this.l2.options.etherType ?? etherType) : etherType);
    for (let i = 0; i < this.vlans.length; i++) {
      const tci = ((this.vlans[i]!.options.pcp ?? 0) << 13) | this.vlans[i]!.id;
      writeU16(tags, i * 4, tci);
      writeU16(tags, i * 4 + 2, types[i + 1]!);
    }
    let header: Uint8Array;
    if (this.l2.kind === "ethernet") {
      header = new Uint8Array(14);
      header.set(parseMac(this.l2.options.dst ?? DEFAULT_DST_MAC), 0);
      header.set(parseMac(this.l2.options.src ?? DEFAULT_SRC_MAC), 6);
      writeU16(header, 12, types[0]!);
    } else if (this.l2.version === 1) {
      header = new Uint8Array(16);
      writeU16(header, 0, 0); // packet type: to us
      writeU16(header, 2, 1); // ARPHRD_ETHER
      writeU16(header, 4, 6);
      header.set(parseMac(DEFAULT_SRC_MAC), 6);
      writeU16(header, 14, types[0]!);
    } else {
      header = new Uint8Array(20);
      writeU16(header, 0, types[0]!);
      writeU32(header, 4, 1); // interface index
      writeU16(header, 8, 1); // ARPHRD_ETHER
      header[10] = 0; // packet type: to us
      header[11] = 6;
      header.set(parseMac(DEFAULT_SRC_MAC), 12);
    }
    return concat(header, tags, network);
  }

  /** build(), then split into IP fragments of at most fragmentSize payload bytes each. */
  buildFragments(fragmentSize: number, id?: number): Uint8Array[] {
    return fragmentPacket(this.build(), { linkType: this.linkType(), fragmentSize, id });
  }
}

// ---- L3 --------------------------------------------------------------------------------------

function buildIpv4(options: Ipv4Options, l4: L4 | null, body: Uint8Array): Uint8Array {
  assert(l4 === null || l4.kind !== "icmpv6", "builder: ICMPv6 over IPv4");
  const src = ipv4Bytes(options.src);
  const dst = ipv4Bytes(options.dst);
  const ipOptions = padTo(options.options ?? new Uint8Array(0), 4);
  const headerLength = 20 + ipOptions.length;
  assert(headerLength <= 60, "builder: IPv4 options longer than 40 bytes");
  const protocol = l4 === null ? (options.protocol ?? IPV4_PROTOCOL_EXPERIMENTAL) : protocolOf(l4);
  const segment = l4 === null ? body : buildL4(l4, body, src, dst, protocol);
  const out = new Uint8Array(headerLength + segment.length);
  out[0] = ((options.version ?? 4) << 4) | (options.ihl ?? headerLength / 4);
  out[1] = options.tos ?? 0;
  writeU16(out, 2, options.totalLength ?? out.length);
  writeU16(out, 4, options.id ?? 0);
  const fragmentOffset = options.fragmentOffset ?? 0;
  assert(fragmentOffset % 8 === 0 && fragmentOffset <= 0xfff8, "builder: fragment offset must be a multiple of 8");
  writeU16(out, 6, (options.df ? 0x4000 : 0) | (options.mf ? 0x2000 : 0) | (fragmentOffset >>> 3));
  out[8] = options.ttl ?? 64;
  out[9] = protocol;
  out.set(src, 12);
  out.set(dst, 16);
  out.set(ipOptions, 20);
  writeU16(out, 10, options.checksum ?? internetChecksum(onesComplementSum(out, 0, headerLength)));
  out.set(segment, headerLength);
  return out;
}

const EXTENSION_CODE: Record<Ipv6Extension["type"], number> = {
  hopByHop: IpProto.HOPOPT,
  destination: IpProto.IPV6_OPTS,
  routing: IpProto.IPV6_ROUTE,
  fragment: IpProto.IPV6_FRAG,
  ah: IpProto.AH,
  raw: -1,
};

function buildIpv6(options: Ipv6Options, l4: L4 | null, body: Uint8Array): Uint8Array {
  assert(l4 === null || l4.kind !== "icmp", "builder: ICMPv4 over IPv6");
  const src = ipv6Bytes(options.src);
  const dst = ipv6Bytes(options.dst);
  const upper = l4 === null ? (options.nextHeader ?? IpProto.IPV6_NONXT) : protocolOf(l4);
  const segment = l4 === null ? body : buildL4(l4, body, src, dst, upper);
  const extensions = options.ext ?? [];
  const jumbo = extensions.some((e) => e.type === "hopByHop" && e.jumbo === true);
  // Extension headers without their next-header byte first; the links are written after.
  const encoded = extensions.map((e) => encodeExtension(e));
  const extensionLength = encoded.reduce((n, e) => n + e.length, 0);
  const payloadLength = extensionLength + segment.length;
  const out = new Uint8Array(40 + payloadLength);
  const flowLabel = options.flowLabel ?? 0;
  const trafficClass = options.trafficClass ?? 0;
  writeU32(out, 0, (((options.version ?? 6) << 28) | ((trafficClass & 0xff) << 20) | (flowLabel & 0xfffff)) >>> 0);
  assert(jumbo || payloadLength <= 0xffff || options.payloadLength !== undefined, "builder: IPv6 payload > 65535 needs a jumbo option");
  writeU16(out, 4, options.payloadLength ?? (jumbo ? 0 : payloadLength));
  out[6] = extensions.length > 0 ? extensionCode(extensions[0]!) : upper;
  out[7] = options.hopLimit ?? 64;
  out.set(src, 8);
  out.set(dst, 24);
  let p = 40;
  for (let i = 0; i < encoded.length; i++) {
    const e = encoded[i]!;
    out.set(e, p);
    out[p] = i + 1 < extensions.length ? extensionCode(extensions[i + 1]!) : upper;
    if (extensions[i]!.type === "hopByHop" && (extensions[i] as { jumbo?: boolean }).jumbo === true) {
      writeU32(out, p + 4, payloadLength); // the jumbo option sits at bytes 2..7 of the header
    }
    p += e.length;
  }
  out.set(segment, p);
  return out;
}

function extensionCode(e: Ipv6Extension): number {
  return e.type === "raw" ? e.code : EXTENSION_CODE[e.type];
}

/** Encodes one extension header with a zero next-header byte and the right length byte. */
function encodeExtension(e: Ipv6Extension): Uint8Array {
  switch (e.type) {
    case "hopByHop":
    case "destination": {
      // A jumbo option (type 0xc2, length 4) goes first; its value is written by buildIpv6.
      const jumbo = e.type === "hopByHop" && e.jumbo === true ? Uint8Array.of(0xc2, 4, 0, 0, 0, 0) : new Uint8Array(0);
      const options = concat(jumbo, e.options ?? new Uint8Array(0));
      return withOptionPadding(options);
    }
    case "routing": {
      const data = e.data ?? new Uint8Array(4);
      const total = roundUp(4 + data.length, 8);
      const out = new Uint8Array(total);
      out[1] = total / 8 - 1;
      out[2] = e.routingType ?? 2;
      out[3] = e.segmentsLeft ?? 0;
      out.set(data, 4);
      return out;
    }
    case "fragment": {
      const out = new Uint8Array(8);
      const offset = e.offset ?? 0;
      assert(offset % 8 === 0 && offset <= 0xfff8, "builder: fragment offset must be a multiple of 8");
      writeU16(out, 2, offset | (e.more ? 1 : 0));
      writeU32(out, 4, e.id ?? 0);
      return out;
    }
    case "ah": {
      const icvLength = e.icvLength ?? 12;
      const total = 12 + icvLength;
      assert(total % 4 === 0, "builder: AH length must be a multiple of 4");
      const out = new Uint8Array(total);
      out[1] = total / 4 - 2;
      writeU32(out, 4, e.spi ?? 0x100);
      writeU32(out, 8, e.seq ?? 1);
      return out;
    }
    case "raw":
      return concat(new Uint8Array(1), e.bytes);
  }
}

/** Hop-by-hop / destination options area padded with Pad1/PadN to a multiple of 8 bytes. */
function withOptionPadding(options: Uint8Array): Uint8Array {
  const total = roundUp(2 + options.length, 8);
  const out = new Uint8Array(total);
  out[1] = total / 8 - 1;
  out.set(options, 2);
  const pad = total - 2 - options.length;
  if (pad === 1) out[2 + options.length] = 0; // Pad1
  if (pad >= 2) {
    out[2 + options.length] = 1; // PadN
    out[3 + options.length] = pad - 2;
  }
  return out;
}

function buildArp(options: ArpOptions): Uint8Array {
  const out = new Uint8Array(28);
  writeU16(out, 0, options.hardwareType ?? 1);
  writeU16(out, 2, options.protocolType ?? EtherType.IPV4);
  out[4] = options.hardwareLength ?? 6;
  out[5] = options.protocolLength ?? 4;
  writeU16(out, 6, options.op);
  out.set(parseMac(options.senderMac), 8);
  out.set(ipv4Bytes(options.senderIp), 14);
  out.set(parseMac(options.targetMac ?? "00:00:00:00:00:00"), 18);
  out.set(ipv4Bytes(options.targetIp), 24);
  return out;
}

// ---- L4 --------------------------------------------------------------------------------------

function protocolOf(l4: L4): number {
  switch (l4.kind) {
    case "tcp":
      return IpProto.TCP;
    case "udp":
      return IpProto.UDP;
    case "icmp":
      return IpProto.ICMP;
    case "icmpv6":
      return IpProto.ICMPV6;
  }
}

/** The L4 header and body with a correct checksum (or the override). */
function buildL4(l4: L4, body: Uint8Array, src: Uint8Array, dst: Uint8Array, protocol: number): Uint8Array {
  let segment: Uint8Array;
  let checksumOffset: number;
  let override: number | undefined;
  switch (l4.kind) {
    case "tcp": {
      const o = l4.options;
      const tcpOptions = padTo(encodeTcpOptions(o.options ?? {}), 4);
      const headerLength = 20 + tcpOptions.length;
      assert(headerLength <= 60, "builder: TCP options longer than 40 bytes");
      segment = new Uint8Array(headerLength + body.length);
      writeU16(segment, 0, o.sport);
      writeU16(segment, 2, o.dport);
      writeU32(segment, 4, o.seq ?? 0);
      writeU32(segment, 8, o.ack ?? 0);
      segment[12] = (o.dataOffset ?? headerLength / 4) << 4;
      segment[13] = tcpFlagsOf(o.flags ?? "S");
      writeU16(segment, 14, o.window ?? 65535);
      writeU16(segment, 18, o.urgent ?? 0);
      segment.set(tcpOptions, 20);
      segment.set(body, headerLength);
      checksumOffset = 16;
      override = o.checksum;
      break;
    }
    case "udp": {
      const o = l4.options;
      segment = new Uint8Array(8 + body.length);
      writeU16(segment, 0, o.sport);
      writeU16(segment, 2, o.dport);
      // RFC 2675: a UDP jumbogram's length field is 0.
      writeU16(segment, 4, o.length ?? (segment.length > 0xffff ? 0 : segment.length));
      segment.set(body, 8);
      checksumOffset = 6;
      override = o.checksum;
      break;
    }
    case "icmp":
    case "icmpv6": {
      const o = l4.options;
      const quote = o.quote ?? new Uint8Array(0);
      segment = new Uint8Array(8 + quote.length + body.length);
      segment[0] = o.type;
      segment[1] = o.code ?? 0;
      if (o.id !== undefined || o.seq !== undefined) {
        writeU16(segment, 4, o.id ?? 0);
        writeU16(segment, 6, o.seq ?? 0);
      } else {
        writeU32(segment, 4, o.rest ?? 0);
      }
      segment.set(quote, 8);
      segment.set(body, 8 + quote.length);
      checksumOffset = 2;
      override = o.checksum;
      break;
    }
  }
  let checksum: number;
  if (override !== undefined) {
    checksum = override;
  } else {
    let sum = onesComplementSum(segment, 0, segment.length);
    if (protocol !== IpProto.ICMP) {
      const pseudo = concat(src, dst);
      sum += pseudoHeaderSum(pseudo, 0, src.length, src.length, protocol, segment.length);
    }
    checksum = internetChecksum(sum);
    if (checksum === 0 && protocol === IpProto.UDP) checksum = 0xffff;
  }
  writeU16(segment, checksumOffset, checksum);
  return segment;
}

function encodeTcpOptions(o: TcpOptionList): Uint8Array {
  // Linux's SYN layout: MSS, SACK permitted + timestamps, NOP + window scale.
  const bytes: number[] = [];
  if (o.mss !== undefined) bytes.push(2, 4, o.mss >>> 8, o.mss & 0xff);
  if (o.sackPerm) bytes.push(4, 2);
  if (o.ts !== undefined) {
    bytes.push(8, 10);
    for (const v of o.ts) bytes.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }
  if (o.sack !== undefined && o.sack.length > 0) {
    bytes.push(1, 1, 5, 2 + 8 * o.sack.length);
    for (const [l, r] of o.sack) {
      for (const v of [l, r]) bytes.push(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
    }
  }
  if (o.wscale !== undefined) bytes.push(1, 3, 3, o.wscale);
  if (o.raw !== undefined) bytes.push(...o.raw);
  return Uint8Array.from(bytes);
}

const FLAG_LETTERS: Record<string, number> = {
  F: TcpFlag.FIN,
  S: TcpFlag.SYN,
  R: TcpFlag.RST,
  P: TcpFlag.PSH,
  A: TcpFlag.ACK,
  U: TcpFlag.URG,
  E: TcpFlag.ECE,
  C: TcpFlag.CWR,
};

/** "SA" -> SYN|ACK. Letters S A F R P U E C; an empty string is no flags. */
export function tcpFlagsOf(flags: string | number): number {
  if (typeof flags === "number") return flags & 0xff;
  let value = 0;
  for (const letter of flags) {
    const bit = FLAG_LETTERS[letter];
    if (bit === undefined) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `unknown TCP flag letter "${letter}" in "${flags}"`);
    value |= bit;
  }
  return value;
}

// ---- Fragmentation ---------------------------------------------------------------------------

export interface FragmentOptions {
  /** Link type of the frame (default Ethernet). */
  linkType?: number;
  /** Payload bytes per fragment, rounded down to a multiple of 8 (at least 8). */
  fragmentSize: number;
  /** IPv6 fragment identification (IPv4 keeps the packet's identification). Default 1. */
  id?: number | undefined;
}

/**
 * Splits an unfragmented IPv4 or IPv6 packet (in a frame of the given link type) into
 * fragments, each with a copy of the link-layer header. IPv4 copies all options into every
 * fragment (a simplification of RFC 791's copy flag). IPv6 keeps the hop-by-hop and routing
 * headers (and destination options before a routing header) in every fragment (RFC 8200 4.5).
 */
export function fragmentPacket(frame: Uint8Array, options: FragmentOptions): Uint8Array[] {
  const view = new PacketView();
  const ok = parseFrame(view, frame, 0, frame.length, options.linkType ?? LinkType.ETHERNET);
  assert(ok && view.ipVersion !== 0, "fragmentPacket: not a parseable IP frame");
  assert(!view.isFragment, "fragmentPacket: already a fragment");
  const size = options.fragmentSize - (options.fragmentSize % 8);
  assert(size >= 8, "fragmentPacket: fragment size below 8 bytes");
  const l2 = frame.subarray(0, view.l3Offset);
  const fragments: Uint8Array[] = [];
  if (view.ipVersion === 4) {
    const header = frame.slice(view.l3Offset, view.l3Offset + view.ipHeaderLength);
    const data = frame.subarray(view.l3Offset + view.ipHeaderLength, view.l3End);
    for (let offset = 0; offset < data.length || offset === 0; offset += size) {
      const chunk = data.subarray(offset, Math.min(offset + size, data.length));
      const last = offset + size >= data.length;
      const h = header.slice();
      writeU16(h, 2, h.length + chunk.length);
      writeU16(h, 6, (last ? 0 : 0x2000) | (offset >>> 3)); // DF cleared: the packet was fragmented
      writeU16(h, 10, 0);
      writeU16(h, 10, internetChecksum(onesComplementSum(h, 0, h.length)));
      fragments.push(concat(l2, h, chunk));
    }
    return fragments;
  }
  // IPv6: find where the unfragmentable part ends and which next-header byte points past it.
  const p = view.l3Offset;
  let nextHeaderAt = p + 6;
  let q = p + 40;
  let unfragmentableEnd = q;
  let linkAt = nextHeaderAt;
  for (let count = 0; count < IPV6_EXTENSION_HEADERS_MAX; count++) {
    const nh = frame[nextHeaderAt]!;
    if (nh !== IpProto.HOPOPT && nh !== IpProto.IPV6_ROUTE && nh !== IpProto.IPV6_OPTS) break;
    const length = (frame[q + 1]! + 1) * 8;
    if (nh !== IpProto.IPV6_OPTS) {
      unfragmentableEnd = q + length;
      linkAt = q;
    }
    nextHeaderAt = q;
    q += length;
  }
  // linkAt is the next-header byte of the last unfragmentable header (or the IPv6 header's).
  const unfragmentable = frame.slice(p, unfragmentableEnd);
  const linkIndex = linkAt - p;
  const nextAfter = unfragmentable[linkIndex]!;
  unfragmentable[linkIndex] = IpProto.IPV6_FRAG;
  const data = frame.subarray(unfragmentableEnd, view.l3End);
  const id = options.id ?? 1;
  for (let offset = 0; offset < data.length || offset === 0; offset += size) {
    const chunk = data.subarray(offset, Math.min(offset + size, data.length));
    const last = offset + size >= data.length;
    const fragmentHeader = new Uint8Array(8);
    fragmentHeader[0] = nextAfter;
    writeU16(fragmentHeader, 2, offset | (last ? 0 : 1));
    writeU32(fragmentHeader, 4, id);
    const h = unfragmentable.slice();
    writeU16(h, 4, h.length - 40 + 8 + chunk.length);
    fragments.push(concat(l2, h, fragmentHeader, chunk));
  }
  return fragments;
}

// ---- Small helpers ---------------------------------------------------------------------------

function internetChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

export function parseMac(mac: MacInput): Uint8Array {
  if (typeof mac !== "string") {
    assert(mac.length === 6, "builder: a MAC address has 6 bytes");
    return mac;
  }
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `invalid MAC address "${mac}"`);
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

function ipv4Bytes(address: AddressInput): Uint8Array {
  if (address instanceof Uint8Array) {
    assert(address.length === 4, "builder: an IPv4 address has 4 bytes");
    return address;
  }
  const value = typeof address === "number" ? address >>> 0 : parseIpv4(address);
  if (value === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `invalid IPv4 address "${String(address)}"`);
  return Uint8Array.of(value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
}

function ipv6Bytes(address: AddressInput): Uint8Array {
  if (address instanceof Uint8Array) {
    assert(address.length === 16, "builder: an IPv6 address has 16 bytes");
    return address;
  }
  const bytes = typeof address === "string" ? parseIpv6(address) : null;
  if (bytes === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `invalid IPv6 address "${String(address)}"`);
  return bytes;
}

function writeU16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = (value >>> 8) & 0xff;
  buf[offset + 1] = value & 0xff;
}

function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = (value >>> 24) & 0xff;
  buf[offset + 1] = (value >>> 16) & 0xff;
  buf[offset + 2] = (value >>> 8) & 0xff;
  buf[offset + 3] = value & 0xff;
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

function padTo(bytes: Uint8Array, multiple: number): Uint8Array {
  const out = new Uint8Array(roundUp(bytes.length, multiple));
  out.set(bytes);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
