// The member link: the UDP datagrams between the distributor and the members, and between
// members (corrections). Every datagram starts with one 8-byte header; frame datagrams carry
// one inner Ethernet frame after it, exactly as it travelled inside VXLAN. The header has the
// size of a VXLAN header on purpose: the distributor overwrites the VXLAN header of a received
// datagram in place and sends the same buffer on (no copy, no allocation per packet).
//
//   byte 0     (version << 4) | type
//   byte 1     hops (CORRECTION: corrections already made; 0 otherwise)
//   bytes 2-3  interface index in the group's interface list (u16, big-endian)
//   bytes 4-7  u32: INGRESS/CORRECTION the distributor's epoch for the group when it forwarded;
//              EGRESS the IPv4 next hop to resolve (0: the inner destination is on-link);
//              NEIGH the number of entries that follow
//
// NEIGH (distributor -> members): NEIGH_ENTRY_BYTES per entry, then an 8-byte SipHash-2-4 tag
// over header and entries, keyed by neighbourKeyOf(clusterKey): neighbour entries steer where
// members send traffic, so a member believes only the distributor. Frame datagrams carry no
// tag: they carry the sites' VXLAN traffic, which has none either; receivers accept them only
// from the endpoints the orchestrator named (distributor, peers) and count the rest.
//
// Invariants: decoding never throws on bytes from the network (a bad datagram is a counted
// MemberLinkError); encoders assert their arguments (programmer errors).

import { createHash } from "node:crypto";
import { sipHash24 } from "../hypersync/datagram.js";
import { assert } from "../stdx/assert.js";
import { r16, r32, w16, w32 } from "../stdx/bytes.js";

export const MEMBER_LINK_VERSION = 1;
export const MEMBER_LINK_HEADER_BYTES = 8;
/** VXLAN header (RFC 7348): flags 0x08 (I), 24 reserved bits, VNI, 8 reserved bits. */
export const VXLAN_HEADER_BYTES = 8;
export const VXLAN_PORT_DEFAULT = 4789;
/** At most this many corrections per frame: a loop between members ends as a counted drop. */
export const CORRECTION_HOPS_MAX = 2;

export const LinkMsg = {
  /** Distributor -> owner: a frame that arrived from a site on interface `ifIndex`. */
  INGRESS: 1,
  /** Member -> distributor: a processed frame to send to the site of interface `ifIndex`. */
  EGRESS: 2,
  /** Member -> member: a frame for a bucket the receiver owns (or holds), unchanged. */
  CORRECTION: 3,
  /** Distributor -> members: neighbour table entries (authenticated). */
  NEIGH: 4,
} as const;
export type LinkMsg = (typeof LinkMsg)[keyof typeof LinkMsg];

export const MemberLinkError = {
  NONE: 0,
  SHORT: 1,
  VERSION: 2,
  TYPE: 3,
  TAG: 4,
  LENGTH: 5,
} as const;
export type MemberLinkError = (typeof MemberLinkError)[keyof typeof MemberLinkError];

/** Writes a member-link header at `offset` (8 bytes). */
export function writeLinkHeader(buf: Uint8Array, offset: number, type: LinkMsg, hops: number, ifIndex: number, word: number): void {
  assert(hops >= 0 && hops <= 255 && ifIndex >= 0 && ifIndex <= 0xffff, "member-link header fields");
  buf[offset] = (MEMBER_LINK_VERSION << 4) | type;
  buf[offset + 1] = hops;
  w16(buf, offset + 2, ifIndex);
  w32(buf, offset + 4, word >>> 0);
}

/** Checks a received datagram's header; returns its type, or 0 with `linkErrorOf` set. */
export function linkTypeOf(buf: Uint8Array, length: number): number {
  if (length < MEMBER_LINK_HEADER_BYTES) return 0;
  if (buf[0]! >> 4 !== MEMBER_LINK_VERSION) return 0;
  const t = buf[0]! & 0x0f;
  return t >= LinkMsg.INGRESS && t <= LinkMsg.NEIGH ? t : 0;
}

/** Why linkTypeOf() returned 0. */
export function linkErrorOf(buf: Uint8Array, length: number): MemberLinkError {
  if (length < MEMBER_LINK_HEADER_BYTES) return MemberLinkError.SHORT;
  if (buf[0]! >> 4 !== MEMBER_LINK_VERSION) return MemberLinkError.VERSION;
  return MemberLinkError.TYPE;
}

export function linkHops(buf: Uint8Array): number {
  return buf[1]!;
}
export function linkIfIndex(buf: Uint8Array): number {
  return r16(buf, 2);
}
/** Epoch (INGRESS/CORRECTION), next hop (EGRESS) or entry count (NEIGH). */
export function linkWord(buf: Uint8Array): number {
  return r32(buf, 4);
}

// ---- VXLAN ---------------------------------------------------------------------------------

/** VNI of a VXLAN datagram, or -1 when it is not one (short, or the I flag is clear). */
export function vxlanVniOf(buf: Uint8Array, length: number): number {
  if (length < VXLAN_HEADER_BYTES + 14) return -1;
  if ((buf[0]! & 0x08) === 0) return -1;
  return ((buf[4]! << 16) | (buf[5]! << 8) | buf[6]!) >>> 0;
}

export function writeVxlanHeader(buf: Uint8Array, offset: number, vni: number): void {
  assert(vni >= 0 && vni <= 0xffffff, "VNI is 24 bits");
  buf[offset] = 0x08;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf[offset + 4] = (vni >>> 16) & 0xff;
  buf[offset + 5] = (vni >>> 8) & 0xff;
  buf[offset + 6] = vni & 0xff;
  buf[offset + 7] = 0;
}

// ---- neighbour announcements ---------------------------------------------------------------

/**
 * One neighbour: on interface `ifIndex`, `ip` (4 or 16 bytes) has `mac` and sits behind the
 * VXLAN tunnel endpoint vtepIp:vtepPort (IPv4 underlay).
 */
export interface NeighbourEntry {
  ifIndex: number;
  ip: Uint8Array;
  mac: Uint8Array;
  vtepIp: number;
  vtepPort: number;
}

/** ifIndex u16, family u8 (4|6), pad u8, mac 6, vtepPort u16, vtepIp u32, ip 16 (IPv4 in the first 4). */
export const NEIGH_ENTRY_BYTES = 32;
export const NEIGH_TAG_BYTES = 8;
/** Entries per datagram: keeps a NEIGH datagram under 1,400 bytes. */
export const NEIGH_ENTRIES_MAX = 40;

/** The key that tags NEIGH datagrams, derived from the cluster key (distinct from HyperSync's). */
export function neighbourKeyOf(clusterKey: Uint8Array): Uint8Array {
  assert(clusterKey.length >= 16, "cluster key is at least 16 bytes");
  const h = createHash("sha256").update("tandem member-link neighbour v1\0").update(clusterKey).digest();
  return new Uint8Array(h.buffer, h.byteOffset, 16).slice();
}

/** Encodes a NEIGH datagram (control path: allocates). */
export function encodeNeighbours(entries: readonly NeighbourEntry[], key: Uint8Array): Uint8Array {
  assert(entries.length > 0 && entries.length <= NEIGH_ENTRIES_MAX, "1..NEIGH_ENTRIES_MAX entries");
  const body = MEMBER_LINK_HEADER_BYTES + entries.length * NEIGH_ENTRY_BYTES;
  const buf = new Uint8Array(body + NEIGH_TAG_BYTES);
  writeLinkHeader(buf, 0, LinkMsg.NEIGH, 0, 0, entries.length);
  let o = MEMBER_LINK_HEADER_BYTES;
  for (const e of entries) {
    assert(e.ip.length === 4 || e.ip.length === 16, "neighbour ip is 4 or 16 bytes");
    assert(e.mac.length === 6, "neighbour mac is 6 bytes");
    w16(buf, o, e.ifIndex);
    buf[o + 2] = e.ip.length === 4 ? 4 : 6;
    buf.set(e.mac, o + 4);
    w16(buf, o + 10, e.vtepPort);
    w32(buf, o + 12, e.vtepIp >>> 0);
    buf.set(e.ip, o + 16);
    o += NEIGH_ENTRY_BYTES;
  }
  buf.set(sipHash24(key, buf.subarray(0, body)), body);
  return buf;
}

/** Decodes a NEIGH datagram; returns the entries, or a MemberLinkError. */
export function decodeNeighbours(buf: Uint8Array, length: number, key: Uint8Array): NeighbourEntry[] | MemberLinkError {
  if (linkTypeOf(buf, length) !== LinkMsg.NEIGH) return linkErrorOf(buf, length) || MemberLinkError.TYPE;
  const count = linkWord(buf);
  const body = MEMBER_LINK_HEADER_BYTES + count * NEIGH_ENTRY_BYTES;
  if (count === 0 || count > NEIGH_ENTRIES_MAX || length !== body + NEIGH_TAG_BYTES) return MemberLinkError.LENGTH;
  const tag = sipHash24(key, buf.subarray(0, body));
  let diff = 0;
  for (let i = 0; i < NEIGH_TAG_BYTES; i++) diff |= tag[i]! ^ buf[body + i]!;
  if (diff !== 0) return MemberLinkError.TAG;
  const out: NeighbourEntry[] = [];
  for (let i = 0, o = MEMBER_LINK_HEADER_BYTES; i < count; i++, o += NEIGH_ENTRY_BYTES) {
    const family = buf[o + 2];
    if (family !== 4 && family !== 6) return MemberLinkError.LENGTH;
    out.push({
      ifIndex: r16(buf, o),
      mac: buf.slice(o + 4, o + 10),
      vtepPort: r16(buf, o + 10),
      vtepIp: r32(buf, o + 12),
      ip: buf.slice(o + 16, o + 16 + (family === 4 ? 4 : 16)),
    });
  }
  return out;
}

// ---- endpoints -----------------------------------------------------------------------------

/** An IPv4 UDP endpoint "a.b.c.d:port". */
export interface Endpoint {
  address: string;
  port: number;
}

/** Parses "a.b.c.d:port" (port 0 allowed: let the OS choose); null when malformed. */
export function parseEndpoint(text: string): Endpoint | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$/.exec(text);
  if (m === null) return null;
  for (let i = 1; i <= 4; i++) if (Number(m[i]) > 255) return null;
  const port = Number(m[5]);
  if (port > 65535) return null;
  return { address: `${m[1]}.${m[2]}.${m[3]}.${m[4]}`, port };
}

export function formatEndpoint(e: Endpoint): string {
  return `${e.address}:${e.port}`;
}

/** IPv4 dotted quad -> u32 (the caller has validated it). */
export function ipv4ToU32(address: string): number {
  const p = address.split(".");
  assert(p.length === 4, `not an IPv4 address: ${address}`);
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

export function u32ToIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}
