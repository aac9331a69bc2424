// Packets the engine builds itself: a TCP RST or an ICMP/ICMPv6 "administratively
// prohibited" for rules with action reject, and ICMP time exceeded when TTL runs out.
//
// They are built into one preallocated buffer owned by the engine (the caller sends it
// before the next packet is processed), with the incoming frame's link layer mirrored
// (MACs swapped, VLAN tags kept) so the reply can go back out of the ingress interface.
// Checksums are filled by re-parsing the built bytes and using the same checksum code as
// every other path, so there is one implementation to trust.
//
// ICMP errors quote the offending packet as RFC 792 / RFC 4443 ask: the IPv4 header plus
// 8 bytes; for IPv6 as much as fits in the minimum MTU (1280 bytes).

import { fillChecksums } from "../packet/checksum.js";
import { parseFrame } from "../packet/parse.js";
import { IpProto, LinkType, PacketView, TcpFlag } from "../packet/view.js";

export const REPLY_BYTES_MAX = 1600;
const IPV6_MIN_MTU = 1280;

export const ReplyKind = {
  TCP_RESET: 1,
  ICMP_ADMIN_PROHIBITED: 2,
  ICMP_TIME_EXCEEDED: 3,
} as const;

export class ReplyBuilder {
  readonly buf = new Uint8Array(REPLY_BYTES_MAX);
  length = 0;
  private readonly scratch = new PacketView();

  /**
   * Builds a reply to `view` into this.buf. `from4`/`from6` is the source address for ICMP
   * messages (the gateway's own address); null uses the offending packet's destination.
   * Returns the reply length (0 when no reply must be sent, e.g. never answer an RST or an
   * ICMP error with another error).
   */
  build(kind: number, view: PacketView, from4: number | null, from6: Uint8Array | null): number {
    this.length = 0;
    if (view.ipVersion === 0) return 0;
    if (view.protocol === IpProto.TCP && (view.tcpFlags & TcpFlag.RST) !== 0) return 0;
    if (view.icmpIsError) return 0;
    if (view.isFragment && view.fragmentOffset !== 0) return 0;
    if (kind === ReplyKind.TCP_RESET && (view.protocol !== IpProto.TCP || view.l4Offset < 0)) {
      kind = ReplyKind.ICMP_ADMIN_PROHIBITED;
    }
    const src = view.buf;
    const out = this.buf;
    let at = 0;
    // Link layer: mirror the incoming one.
    if (view.l2Offset >= 0) {
      const l2Length = view.l3Offset - view.l2Offset;
      out.set(src.subarray(view.l2Offset, view.l3Offset), 0);
      out.set(src.subarray(view.l2Offset + 6, view.l2Offset + 12), 0);
      out.set(src.subarray(view.l2Offset, view.l2Offset + 6), 6);
      at = l2Length;
    }
    const l3 = at;
    if (view.ipVersion === 4) {
      at = this.writeIpv4Header(out, l3, view, kind, from4);
    } else {
      at = this.writeIpv6Header(out, l3, view, kind, from6);
    }
    if (kind === ReplyKind.TCP_RESET) {
      at = writeTcpReset(out, at, view);
    } else {
      at = this.writeIcmpError(out, at, view, kind);
    }
    // Fix lengths now that the payload size is known.
    if (view.ipVersion === 4) {
      writeU16(out, l3 + 2, at - l3);
    } else {
      writeU16(out, l3 + 4, at - l3 - 40);
    }
    const linkType = view.l2Offset >= 0 ? LinkType.ETHERNET : view.ipVersion === 4 ? LinkType.IPV4 : LinkType.IPV6;
    const parsed = parseFrame(this.scratch, out, 0, at, linkType);
    if (!parsed) return 0;
    fillChecksums(this.scratch);
    this.length = at;
    return at;
  }

  private writeIpv4Header(out: Uint8Array, at: number, view: PacketView, kind: number, from4: number | null): number {
    const protocol = kind === ReplyKind.TCP_RESET ? IpProto.TCP : IpProto.ICMP;
    const source = kind === ReplyKind.TCP_RESET || from4 === null ? view.dst4 : from4;
    out[at] = 0x45;
    out[at + 1] = 0;
    writeU16(out, at + 2, 0); // total length, fixed up by the caller
    writeU16(out, at + 4, 0); // identification
    writeU16(out, at + 6, 0x4000); // don't fragment
    out[at + 8] = 64;
    out[at + 9] = protocol;
    writeU16(out, at + 10, 0);
    writeU32(out, at + 12, source);
    writeU32(out, at + 16, view.src4);
    return at + 20;
  }

  private writeIpv6Header(out: Uint8Array, at: number, view: PacketView, kind: number, from6: Uint8Array | null): number {
    const protocol = kind === ReplyKind.TCP_RESET ? IpProto.TCP : IpProto.ICMPV6;
    writeU32(out, at, 0x60000000);
    writeU16(out, at + 4, 0); // payload length, fixed up by the caller
    out[at + 6] = protocol;
    out[at + 7] = 64;
    if (kind !== ReplyKind.TCP_RESET && from6 !== null) {
      out.set(from6, at + 8);
    } else {
      out.set(view.buf.subarray(view.dstAddrOffset, view.dstAddrOffset + 16), at + 8);
    }
    out.set(view.buf.subarray(view.srcAddrOffset, view.srcAddrOffset + 16), at + 24);
    return at + 40;
  }

  private writeIcmpError(out: Uint8Array, at: number, view: PacketView, kind: number): number {
    const v4 = view.ipVersion === 4;
    if (v4) {
      out[at] = kind === ReplyKind.ICMP_TIME_EXCEEDED ? 11 : 3;
      out[at + 1] = kind === ReplyKind.ICMP_TIME_EXCEEDED ? 0 : 13; // TTL exceeded in transit / communication administratively prohibited
    } else {
      out[at] = kind === ReplyKind.ICMP_TIME_EXCEEDED ? 3 : 1;
      out[at + 1] = kind === ReplyKind.ICMP_TIME_EXCEEDED ? 0 : 1; // hop limit exceeded / administratively prohibited
    }
    writeU16(out, at + 2, 0);
    writeU32(out, at + 4, 0);
    at += 8;
    const quoteStart = view.l3Offset;
    const available = view.l3End - quoteStart;
    const quoteLength = v4
      ? Math.min(available, view.ipHeaderLength + 8)
      : Math.min(available, IPV6_MIN_MTU - 48, REPLY_BYTES_MAX - at);
    out.set(view.buf.subarray(quoteStart, quoteStart + Math.max(0, quoteLength)), at);
    return at + Math.max(0, quoteLength);
  }
}

function writeTcpReset(out: Uint8Array, at: number, view: PacketView): number {
  writeU16(out, at, view.dstPort);
  writeU16(out, at + 2, view.srcPort);
  // RFC 793 reset generation: if the segment has ACK, the RST takes its sequence number from
  // that ack; otherwise seq 0 and ack = seq + segment length (SYN and FIN count one each).
  const hasAck = (view.tcpFlags & TcpFlag.ACK) !== 0;
  let segmentLength = view.tcpDataLength;
  if ((view.tcpFlags & TcpFlag.SYN) !== 0) segmentLength++;
  if ((view.tcpFlags & TcpFlag.FIN) !== 0) segmentLength++;
  writeU32(out, at + 4, hasAck ? view.tcpAck : 0);
  writeU32(out, at + 8, hasAck ? 0 : (view.tcpSeq + segmentLength) >>> 0);
  out[at + 12] = 5 << 4;
  out[at + 13] = hasAck ? TcpFlag.RST : TcpFlag.RST | TcpFlag.ACK;
  writeU16(out, at + 14, 0);
  writeU16(out, at + 16, 0);
  writeU16(out, at + 18, 0);
  return at + 20;
}

function writeU16(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >>> 8) & 0xff;
  out[at + 1] = value & 0xff;
}

function writeU32(out: Uint8Array, at: number, value: number): void {
  out[at] = (value >>> 24) & 0xff;
  out[at + 1] = (value >>> 16) & 0xff;
  out[at + 2] = (value >>> 8) & 0xff;
  out[at + 3] = value & 0xff;
}
