// Internet checksums (RFC 1071) for IPv4 headers and TCP/UDP/ICMP/ICMPv6, full and incremental.
//
// The forwarding path changes a few words of a packet (TTL, a NAT address) and must not re-sum
// the whole segment, so the incremental forms of RFC 1624 (HC' = ~(~HC + ~m + m')) live here
// beside the full computation; property tests hold the two equal.
//
// Invariants:
// - Sums are one's-complement sums folded to 16 bits; a "checksum" is the complement of a sum.
//   Functions never allocate and never throw on packet bytes; they assert on misuse (a view
//   without the layer they work on).
// - A UDP checksum that computes to 0 is sent as 0xffff (RFC 768, RFC 8200 8.1), and a UDP
//   checksum of 0 on IPv4 means "none": incremental updates leave it 0.
// - L4 checksums are computed only for whole datagrams (not for fragments: the sum spans
//   bytes the fragment does not hold). Incremental updates of a first fragment's L4 checksum
//   are still exact, since the change is linear.
// Known limit: for IPv6 with a routing header, the pseudo-header should use the final
// destination (RFC 8200 8.1); we use the IPv6 header's destination.

import { assert } from "../stdx/assert.js";
import { IpProto, type PacketView } from "./view.js";

/** One's-complement sum of buf[offset, offset + length) as big-endian 16-bit words, folded. */
export function onesComplementSum(buf: Uint8Array, offset: number, length: number, initial = 0): number {
  assert(offset >= 0 && length >= 0 && offset + length <= buf.length, "onesComplementSum: range outside buffer");
  // A double holds 2^53: no fold is needed inside the loop for any IP packet (< 2^32 bytes).
  let sum = initial;
  const end = offset + length - 1;
  let i = offset;
  for (; i < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i === end) sum += buf[i]! << 8; // odd length: the last byte is padded with a zero byte
  return fold(sum);
}

/** Folds a non-negative sum into 16 bits with end-around carries. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The IPv4 header checksum that belongs in bytes 10-11 (their current value is ignored). */
export function ipv4HeaderChecksum(buf: Uint8Array, l3Offset: number, headerLength: number): number {
  assert(headerLength >= 20 && l3Offset + headerLength <= buf.length, "ipv4HeaderChecksum: bad header range");
  const sum = onesComplementSum(buf, l3Offset, 10) + onesComplementSum(buf, l3Offset + 12, headerLength - 12);
  return ~fold(sum) & 0xffff;
}

/** True when the IPv4 header's checksum is correct. */
export function verifyIpv4HeaderChecksum(buf: Uint8Array, l3Offset: number, headerLength: number): boolean {
  assert(headerLength >= 20 && l3Offset + headerLength <= buf.length, "verifyIpv4HeaderChecksum: bad header range");
  return onesComplementSum(buf, l3Offset, headerLength) === 0xffff;
}

/** Folded sum of the IPv4 (addressLength 4) or IPv6 (16) pseudo-header. */
export function pseudoHeaderSum(
  buf: Uint8Array,
  srcOffset: number,
  dstOffset: number,
  addressLength: number,
  protocol: number,
  l4Length: number,
): number {
  assert(addressLength === 4 || addressLength === 16, "pseudoHeaderSum: address length must be 4 or 16");
  // IPv4: src, dst, zero, protocol, 16-bit length. IPv6: src, dst, 32-bit length, 3 zeros, next header.
  // Both reduce to the same words when the length is split in 16-bit halves.
  const sum =
    onesComplementSum(buf, srcOffset, addressLength) +
    onesComplementSum(buf, dstOffset, addressLength) +
    protocol +
    Math.floor(l4Length / 0x10000) +
    (l4Length & 0xffff);
  return fold(sum);
}

/** Offset of the checksum field inside the L4 header for protocol, or -1 if it has none we compute. */
function checksumFieldOffset(protocol: number, ipVersion: number): number {
  if (protocol === IpProto.TCP) return 16;
  if (protocol === IpProto.UDP) return 6;
  if (protocol === IpProto.ICMP && ipVersion === 4) return 2;
  if (protocol === IpProto.ICMPV6 && ipVersion === 6) return 2;
  return -1;
}

/**
 * Offset in view.buf of the L4 checksum this module can compute for a parsed packet, or -1:
 * no decoded TCP/UDP/ICMP/ICMPv6 header, or a fragment (whose L4 sum needs the whole datagram).
 */
export function l4ChecksumOffset(view: PacketView): number {
  if (view.l4Offset < 0 || view.payloadOffset < 0 || view.isFragment) return -1;
  const field = checksumFieldOffset(view.protocol, view.ipVersion);
  if (field < 0 || view.l4Offset + field + 2 > view.l3End) return -1;
  return view.l4Offset + field;
}

/** Bytes the L4 checksum covers: the UDP length field's count for UDP, else up to l3End. */
function l4SummedLength(view: PacketView): number {
  if (view.protocol === IpProto.UDP && view.udpLength >= 8 && view.l4Offset + view.udpLength <= view.l3End) {
    return view.udpLength;
  }
  return view.l3End - view.l4Offset;
}

/**
 * Sum over the pseudo-header (none for ICMPv4) and l4Length bytes of L4. With skipField, the
 * checksum field (at an even offset, so word alignment holds) is left out, as if it were zero.
 */
function l4Sum(view: PacketView, l4Length: number, fieldOffset: number, skipField: boolean): number {
  const buf = view.buf;
  const l4 = view.l4Offset;
  let body: number;
  if (skipField) {
    const before = fieldOffset - l4;
    body = onesComplementSum(buf, l4, before) + onesComplementSum(buf, fieldOffset + 2, l4Length - before - 2);
  } else {
    body = onesComplementSum(buf, l4, l4Length);
  }
  if (view.protocol === IpProto.ICMP) return fold(body);
  const addressLength = view.ipVersion === 4 ? 4 : 16;
  return fold(body + pseudoHeaderSum(buf, view.srcAddrOffset, view.dstAddrOffset, addressLength, view.protocol, l4Length));
}

/**
 * The checksum the packet's L4 header should carry (its current value is ignored), as sent:
 * a UDP result of 0 is returned as 0xffff. Asserts l4ChecksumOffset(view) >= 0.
 */
export function l4Checksum(view: PacketView): number {
  const fieldOffset = l4ChecksumOffset(view);
  assert(fieldOffset >= 0, "l4Checksum: packet has no computable L4 checksum");
  const checksum = ~l4Sum(view, l4SummedLength(view), fieldOffset, true) & 0xffff;
  if (checksum === 0 && view.protocol === IpProto.UDP) return 0xffff;
  return checksum;
}

/** Writes correct IPv4 header and L4 checksums into a parsed packet's bytes. */
export function fillChecksums(view: PacketView): void {
  assert(view.ipVersion === 4 || view.ipVersion === 6, "fillChecksums: not an IP packet");
  const buf = view.buf;
  if (view.ipVersion === 4) {
    const checksum = ipv4HeaderChecksum(buf, view.l3Offset, view.ipHeaderLength);
    buf[view.l3Offset + 10] = checksum >>> 8;
    buf[view.l3Offset + 11] = checksum & 0xff;
  }
  const fieldOffset = l4ChecksumOffset(view);
  if (fieldOffset < 0) return;
  const checksum = l4Checksum(view);
  buf[fieldOffset] = checksum >>> 8;
  buf[fieldOffset + 1] = checksum & 0xff;
}

/**
 * True when the IPv4 header checksum and the L4 checksum (when computable, see
 * l4ChecksumOffset) are correct. A UDP checksum of 0 is valid on IPv4 ("none") and invalid on
 * IPv6 (RFC 8200 8.1).
 */
export function verifyChecksums(view: PacketView): boolean {
  assert(view.ipVersion === 4 || view.ipVersion === 6, "verifyChecksums: not an IP packet");
  const buf = view.buf;
  if (view.ipVersion === 4 && !verifyIpv4HeaderChecksum(buf, view.l3Offset, view.ipHeaderLength)) return false;
  const fieldOffset = l4ChecksumOffset(view);
  if (fieldOffset < 0) return true;
  if (view.protocol === IpProto.UDP && buf[fieldOffset] === 0 && buf[fieldOffset + 1] === 0) {
    return view.ipVersion === 4;
  }
  return l4Sum(view, l4SummedLength(view), fieldOffset, false) === 0xffff;
}

// ---- Incremental updates (RFC 1624) -------------------------------------------------------

/** New checksum after one 16-bit word covered by it changes from oldWord to newWord (eqn. 3). */
export function checksumAdjust16(oldChecksum: number, oldWord: number, newWord: number): number {
  let sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** New checksum after a 32-bit value (two aligned words) covered by it changes. */
export function checksumAdjust32(oldChecksum: number, oldValue32: number, newValue32: number): number {
  const high = checksumAdjust16(oldChecksum, oldValue32 >>> 16, newValue32 >>> 16);
  return checksumAdjust16(high, oldValue32 & 0xffff, newValue32 & 0xffff);
}

/**
 * Decrements the TTL / hop limit in place and, for IPv4, patches the header checksum (the TTL
 * shares its 16-bit word with the protocol byte). The caller has checked ttl > 0.
 */
export function decrementTtl(view: PacketView): void {
  assert(view.ttlOffset >= 0 && view.ttl > 0, "decrementTtl: no TTL or TTL already 0");
  const buf = view.buf;
  const ttl = view.ttl;
  buf[view.ttlOffset] = ttl - 1;
  view.ttl = ttl - 1;
  if (view.ipVersion !== 4) return;
  const checksumOffset = view.l3Offset + 10;
  const protocol = buf[view.l3Offset + 9]!;
  const oldChecksum = (buf[checksumOffset]! << 8) | buf[checksumOffset + 1]!;
  const newChecksum = checksumAdjust16(oldChecksum, (ttl << 8) | protocol, ((ttl - 1) << 8) | protocol);
  buf[checksumOffset] = newChecksum >>> 8;
  buf[checksumOffset + 1] = newChecksum & 0xff;
}

/**
 * Rewrites the IPv4 source or destination address in place (NAT), patching the header
 * checksum and the TCP/UDP checksum (their pseudo-header holds the address). A UDP checksum
 * of 0 ("none") stays 0; a UDP result of 0 becomes 0xffff. ICMP sums no pseudo-header.
 * Quoted packets inside ICMP errors are not touched.
 */
export function rewriteIpv4Address(view: PacketView, which: "src" | "dst", newAddr: number): void {
  assert(view.ipVersion === 4, "rewriteIpv4Address: not IPv4");
  const buf = view.buf;
  const addrOffset = which === "src" ? view.srcAddrOffset : view.dstAddrOffset;
  const oldAddr = which === "src" ? view.src4 : view.dst4;
  const addr = newAddr >>> 0;
  buf[addrOffset] = addr >>> 24;
  buf[addrOffset + 1] = (addr >>> 16) & 0xff;
  buf[addrOffset + 2] = (addr >>> 8) & 0xff;
  buf[addrOffset + 3] = addr & 0xff;
  if (which === "src") view.src4 = addr;
  else view.dst4 = addr;
  adjustField(buf, view.l3Offset + 10, oldAddr, addr, false);
  // The L4 header is in the first fragment only; later fragments carry no checksum to patch.
  if (view.l4Offset < 0) return;
  if (view.protocol === IpProto.TCP && view.l4Offset + 18 <= view.l3End) {
    adjustField(buf, view.l4Offset + 16, oldAddr, addr, false);
  } else if (view.protocol === IpProto.UDP && view.l4Offset + 8 <= view.l3End) {
    const offset = view.l4Offset + 6;
    if (buf[offset] === 0 && buf[offset + 1] === 0) return;
    adjustField(buf, offset, oldAddr, addr, true);
  }
}

function adjustField(buf: Uint8Array, checksumOffset: number, oldValue32: number, newValue32: number, udp: boolean): void {
  const oldChecksum = (buf[checksumOffset]! << 8) | buf[checksumOffset + 1]!;
  let checksum = checksumAdjust32(oldChecksum, oldValue32, newValue32);
  if (udp && checksum === 0) checksum = 0xffff;
  buf[checksumOffset] = checksum >>> 8;
  buf[checksumOffset + 1] = checksum & 0xff;
}
