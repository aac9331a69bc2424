// The NO-OP RELAY: the baseline of `npm run bench -- cluster`. One Node process, one udp4
// socket, two segments; it does the least a VXLAN router between two sites must do, so the
// cluster's figures can be read against "Node + dgram, no gateway work at all":
//
//   site A --VXLAN(vni A)--> relay --VXLAN(vni B)--> site B      (and back)
//     ARP request for a gateway  -> ARP reply, written over the request, back to the asker
//     IPv4 frame                 -> VNI := egress VNI, inner src MAC := egress gateway MAC,
//                                   inner dst MAC := egress site's host MAC, TTL - 1 with an
//                                   RFC 1624 checksum update, same buffer sent to the egress site
//
// Invariants kept:
// - No allocation per packet by this file: fixed offsets only (inner Ethernet at 8, no VLAN
//   tags, ARP or IPv4 at 22), every rewrite in place in the buffer dgram handed us, sends
//   without a callback (send errors arrive once on the socket's 'error' event). What Node
//   allocates per datagram (the Buffer, rinfo) is the baseline's own cost.
// - Never throws on bytes: every datagram is forwarded, answered or dropped with a counter.
// - Each segment knows one host MAC (the last source MAC seen from its site): the lab's sites
//   hold one host each. Until it is known, frames to that segment are dropped ("unresolved")
//   and the relay ARPs for the frame's destination, at most once per arpRetryMs.
//
// Run alone: node dist/bench/relay.js '<RelayOptions as JSON>' prints {"address": ...} on one
// line, then its stats as JSON when it gets SIGINT or SIGTERM.

import dgram from "node:dgram";
import { resolve as resolvePath } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseMac } from "../src/packet/builder.js";
import { checksumAdjust16 } from "../src/packet/checksum.js";
import { VXLAN_HEADER_BYTES, ipv4ToU32, parseEndpoint, type Endpoint } from "../src/runtime/member-link.js";
import { assert } from "../src/stdx/assert.js";
import { ErrorCode, TandemError } from "../src/stdx/errors.js";

export interface RelaySegment {
  vni: number;
  /** Where the kernel vxlan of this segment's site listens. */
  siteEndpoint: Endpoint;
  gatewayIp: string;
  gatewayMac: string;
}

export interface RelayOptions {
  listen: Endpoint;
  segments: [RelaySegment, RelaySegment];
  /** At most one ARP request per segment per this period while its host MAC is unknown. Default 100. */
  arpRetryMs?: number;
  /** Socket send/receive buffer asked for (the OS caps it). Default 4 MiB. */
  socketBufferBytes?: number;
}

export interface RelayStats {
  datagramsReceived: number;
  framesForwarded: number;
  arpRepliesSent: number;
  arpRequestsSent: number;
  /** Times a segment's host MAC was learned or changed. */
  hostMacsLearned: number;
  dropped: {
    notVxlan: number;
    unknownVni: number;
    /** From an address that is not the segment's site. */
    foreignSource: number;
    /** Not IPv4 or ARP, a VLAN tag, or an ARP we do not answer. */
    unsupported: number;
    short: number;
    ttlExpired: number;
    /** The egress segment's host MAC is not known yet. */
    unresolved: number;
  };
  sendErrors: number;
}

export interface Relay {
  readonly address: Endpoint;
  stats(): RelayStats;
  close(): Promise<void>;
}

// Fixed offsets in a VXLAN datagram (VXLAN header, then the inner Ethernet frame).
const ETH = VXLAN_HEADER_BYTES; // dst MAC 8..13, src MAC 14..19, EtherType 20..21
const ETH_DST = ETH;
const ETH_SRC = ETH + 6;
const ETH_TYPE = ETH + 12;
const L3 = ETH + 14; // 22
const ARP_BYTES = 28;
const IPV4_HEADER_BYTES_MIN = 20;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
/** Inner frames shorter than Ethernet's minimum (60 without FCS) are padded: our ARP requests. */
const ETHERNET_FRAME_BYTES_MIN = 60;

/** One segment as the hot path reads it: numbers and preallocated bytes only. */
class Segment {
  readonly vni: number;
  readonly siteAddress: string;
  readonly sitePort: number;
  readonly gatewayIp: number;
  readonly gatewayMac: Uint8Array;
  readonly hostMac = new Uint8Array(6);
  hostMacKnown = false;
  /** A complete VXLAN ARP request from the gateway; only the target IP changes. */
  readonly arpRequest: Buffer;
  arpPending = false;
  lastArpMs = -Infinity;

  constructor(s: RelaySegment) {
    assert(Number.isInteger(s.vni) && s.vni >= 0 && s.vni <= 0xffffff, "VNI is 24 bits");
    this.vni = s.vni;
    this.siteAddress = s.siteEndpoint.address;
    this.sitePort = s.siteEndpoint.port;
    this.gatewayIp = ipv4ToU32(s.gatewayIp);
    this.gatewayMac = parseMac(s.gatewayMac);
    const b = Buffer.alloc(VXLAN_HEADER_BYTES + ETHERNET_FRAME_BYTES_MIN);
    b[0] = 0x08;
    writeVni(b, s.vni);
    b.fill(0xff, ETH_DST, ETH_DST + 6);
    b.set(this.gatewayMac, ETH_SRC);
    b.writeUInt16BE(ETHERTYPE_ARP, ETH_TYPE);
    b.writeUInt16BE(1, L3); // Ethernet
    b.writeUInt16BE(ETHERTYPE_IPV4, L3 + 2);
    b[L3 + 4] = 6;
    b[L3 + 5] = 4;
    b.writeUInt16BE(1, L3 + 6); // request
    b.set(this.gatewayMac, L3 + 8);
    b.writeUInt32BE(this.gatewayIp, L3 + 14);
    this.arpRequest = b;
  }
}

/**
 * The relay's packet logic without the socket: handle() rewrites a datagram in place and says
 * where it goes. Synchronous, so tests drive it directly.
 */
export class RelayCore {
  readonly segments: readonly [Segment, Segment];
  readonly counters = {
    datagramsReceived: 0,
    framesForwarded: 0,
    arpRepliesSent: 0,
    arpRequestsSent: 0,
    hostMacsLearned: 0,
    notVxlan: 0,
    unknownVni: 0,
    foreignSource: 0,
    unsupported: 0,
    short: 0,
    ttlExpired: 0,
    unresolved: 0,
    sendErrors: 0,
  };
  /** Set by handle(): the index of a segment whose arpRequest buffer must be sent now, or -1. */
  arpOut = -1;
  private readonly arpRetryMs: number;

  constructor(segments: [RelaySegment, RelaySegment], arpRetryMs: number) {
    this.segments = [new Segment(segments[0]), new Segment(segments[1])];
    assert(this.segments[0].vni !== this.segments[1].vni, "the segments need different VNIs");
    this.arpRetryMs = arpRetryMs;
  }

  /**
   * Handles one datagram from `fromAddress`. Returns the index of the segment whose site it
   * must now be sent to (the same buffer, same length), or -1 when it was consumed or dropped;
   * then arpOut names a segment whose arpRequest must be sent too (-1: none).
   */
  handle(buf: Uint8Array, length: number, fromAddress: string, nowMs: number): number {
    const c = this.counters;
    c.datagramsReceived++;
    this.arpOut = -1;
    if (length < L3 || (buf[0]! & 0x08) === 0) {
      c.notVxlan++;
      return -1;
    }
    const vni = (buf[4]! << 16) | (buf[5]! << 8) | buf[6]!;
    const s0 = this.segments[0];
    const s1 = this.segments[1];
    let ingressIndex: number;
    if (vni === s0.vni) ingressIndex = 0;
    else if (vni === s1.vni) ingressIndex = 1;
    else {
      c.unknownVni++;
      return -1;
    }
    const ingress = ingressIndex === 0 ? s0 : s1;
    const egress = ingressIndex === 0 ? s1 : s0;
    if (fromAddress !== ingress.siteAddress) {
      c.foreignSource++;
      return -1;
    }
    const etherType = (buf[ETH_TYPE]! << 8) | buf[ETH_TYPE + 1]!;
    if (etherType === ETHERTYPE_ARP) return this.arp(buf, length, ingress, ingressIndex);
    if (etherType !== ETHERTYPE_IPV4) {
      c.unsupported++;
      return -1;
    }
    this.learn(ingress, buf, ETH_SRC);
    const ihl = (buf[L3]! & 0x0f) << 2;
    if (length < L3 + IPV4_HEADER_BYTES_MIN || buf[L3]! >> 4 !== 4 || ihl < IPV4_HEADER_BYTES_MIN || length < L3 + ihl) {
      c.short++;
      return -1;
    }
    const ttl = buf[L3 + 8]!;
    if (ttl <= 1) {
      c.ttlExpired++;
      return -1;
    }
    if (!egress.hostMacKnown) {
      c.unresolved++;
      this.requestArp(egress, ingressIndex === 0 ? 1 : 0, buf, nowMs);
      return -1;
    }
    // TTL shares a 16-bit word with the protocol byte: patch the header checksum for it.
    const protocol = buf[L3 + 9]!;
    const oldChecksum = (buf[L3 + 10]! << 8) | buf[L3 + 11]!;
    const checksum = checksumAdjust16(oldChecksum, (ttl << 8) | protocol, ((ttl - 1) << 8) | protocol);
    buf[L3 + 8] = ttl - 1;
    buf[L3 + 10] = checksum >>> 8;
    buf[L3 + 11] = checksum & 0xff;
    writeVni(buf, egress.vni);
    copyMac(egress.hostMac, 0, buf, ETH_DST);
    copyMac(egress.gatewayMac, 0, buf, ETH_SRC);
    c.framesForwarded++;
    return ingressIndex === 0 ? 1 : 0;
  }

  /** Call when the send of a segment's arpRequest completed (its buffer may change again). */
  arpSent(index: number): void {
    this.segments[index === 0 ? 0 : 1].arpPending = false;
  }

  private arp(buf: Uint8Array, length: number, ingress: Segment, ingressIndex: number): number {
    const c = this.counters;
    if (length < L3 + ARP_BYTES) {
      c.short++;
      return -1;
    }
    // Ethernet/IPv4 only: hardware type 1, protocol 0x0800, lengths 6 and 4.
    if (buf[L3] !== 0 || buf[L3 + 1] !== 1 || buf[L3 + 2] !== 0x08 || buf[L3 + 3] !== 0 || buf[L3 + 4] !== 6 || buf[L3 + 5] !== 4) {
      c.unsupported++;
      return -1;
    }
    const op = (buf[L3 + 6]! << 8) | buf[L3 + 7]!;
    if (op !== 1 && op !== 2) {
      c.unsupported++;
      return -1;
    }
    this.learn(ingress, buf, L3 + 8);
    if (op === 2) return -1; // a reply (to our request): learning it was the point
    const targetIp = ((buf[L3 + 24]! << 24) | (buf[L3 + 25]! << 16) | (buf[L3 + 26]! << 8) | buf[L3 + 27]!) >>> 0;
    if (targetIp !== ingress.gatewayIp) {
      c.unsupported++;
      return -1;
    }
    // Written over the request: the asker becomes the target, the gateway the sender.
    copyMac(buf, L3 + 8, buf, ETH_DST);
    copyMac(ingress.gatewayMac, 0, buf, ETH_SRC);
    buf[L3 + 7] = 2;
    copyMac(buf, L3 + 8, buf, L3 + 18);
    for (let i = 0; i < 4; i++) buf[L3 + 24 + i] = buf[L3 + 14 + i]!;
    copyMac(ingress.gatewayMac, 0, buf, L3 + 8);
    const ip = ingress.gatewayIp;
    buf[L3 + 14] = ip >>> 24;
    buf[L3 + 15] = (ip >>> 16) & 0xff;
    buf[L3 + 16] = (ip >>> 8) & 0xff;
    buf[L3 + 17] = ip & 0xff;
    c.arpRepliesSent++;
    return ingressIndex;
  }

  /** Records the MAC at buf[offset] as the segment's host MAC. */
  private learn(segment: Segment, buf: Uint8Array, offset: number): void {
    const mac = segment.hostMac;
    if (segment.hostMacKnown && mac[0] === buf[offset] && mac[1] === buf[offset + 1] && mac[2] === buf[offset + 2] && mac[3] === buf[offset + 3] && mac[4] === buf[offset + 4] && mac[5] === buf[offset + 5]) {
      return;
    }
    if ((buf[offset]! & 0x01) !== 0) return; // a group address is nobody's host MAC
    copyMac(buf, offset, mac, 0);
    segment.hostMacKnown = true;
    this.counters.hostMacsLearned++;
  }

  private requestArp(egress: Segment, egressIndex: number, buf: Uint8Array, nowMs: number): void {
    if (egress.arpPending || nowMs - egress.lastArpMs < this.arpRetryMs) return;
    const a = egress.arpRequest;
    // Target: the frame's destination IPv4 address (the host on the egress segment).
    for (let i = 0; i < 4; i++) a[L3 + 24 + i] = buf[L3 + 16 + i]!;
    egress.arpPending = true;
    egress.lastArpMs = nowMs;
    this.counters.arpRequestsSent++;
    this.arpOut = egressIndex;
  }

  stats(): RelayStats {
    const c = this.counters;
    return {
      datagramsReceived: c.datagramsReceived,
      framesForwarded: c.framesForwarded,
      arpRepliesSent: c.arpRepliesSent,
      arpRequestsSent: c.arpRequestsSent,
      hostMacsLearned: c.hostMacsLearned,
      dropped: {
        notVxlan: c.notVxlan,
        unknownVni: c.unknownVni,
        foreignSource: c.foreignSource,
        unsupported: c.unsupported,
        short: c.short,
        ttlExpired: c.ttlExpired,
        unresolved: c.unresolved,
      },
      sendErrors: c.sendErrors,
    };
  }
}

function writeVni(buf: Uint8Array, vni: number): void {
  buf[4] = (vni >>> 16) & 0xff;
  buf[5] = (vni >>> 8) & 0xff;
  buf[6] = vni & 0xff;
}

function copyMac(from: Uint8Array, fromOffset: number, to: Uint8Array, toOffset: number): void {
  for (let i = 0; i < 6; i++) to[toOffset + i] = from[fromOffset + i]!;
}

export async function startRelay(options: RelayOptions): Promise<Relay> {
  const arpRetryMs = options.arpRetryMs ?? 100;
  if (!(arpRetryMs >= 0)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "relay: arpRetryMs must be >= 0");
  if (options.segments[0].vni === options.segments[1].vni) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, "relay: the segments need different VNIs");
  }
  const core = new RelayCore(options.segments, arpRetryMs);
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      socket.close();
      reject(new TandemError(ErrorCode.INVALID_ARGUMENT, `relay: cannot bind ${options.listen.address}:${options.listen.port}: ${error.message}`));
    };
    socket.once("error", onError);
    socket.bind(options.listen.port, options.listen.address, () => {
      socket.off("error", onError);
      resolve();
    });
  });
  const bufferBytes = options.socketBufferBytes ?? 4 * 1024 * 1024;
  socket.setRecvBufferSize(bufferBytes);
  socket.setSendBufferSize(bufferBytes);
  const [s0, s1] = core.segments;
  // Send errors of callback-less sends (the hot path's) arrive here.
  socket.on("error", () => {
    core.counters.sendErrors++;
  });
  // One callback per segment for its ARP request buffer: no closure per packet.
  const arpSent0 = (error: Error | null): void => {
    if (error !== null) core.counters.sendErrors++;
    core.arpSent(0);
  };
  const arpSent1 = (error: Error | null): void => {
    if (error !== null) core.counters.sendErrors++;
    core.arpSent(1);
  };
  socket.on("message", (msg: Buffer, rinfo: dgram.RemoteInfo) => {
    const length = msg.length;
    const to = core.handle(msg, length, rinfo.address, performance.now());
    if (to === 0) socket.send(msg, 0, length, s0.sitePort, s0.siteAddress);
    else if (to === 1) socket.send(msg, 0, length, s1.sitePort, s1.siteAddress);
    const arp = core.arpOut;
    if (arp === 0) socket.send(s0.arpRequest, 0, s0.arpRequest.length, s0.sitePort, s0.siteAddress, arpSent0);
    else if (arp === 1) socket.send(s1.arpRequest, 0, s1.arpRequest.length, s1.sitePort, s1.siteAddress, arpSent1);
  });
  const bound = socket.address();
  return {
    address: { address: bound.address, port: bound.port },
    stats: () => core.stats(),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** `node dist/bench/relay.js '<RelayOptions JSON>'`: endpoints may also be "a.b.c.d:port" strings. */
async function main(): Promise<void> {
  const text = process.argv[2];
  if (text === undefined) {
    process.stderr.write("usage: node dist/bench/relay.js '<RelayOptions as JSON>'\n");
    process.exitCode = 2;
    return;
  }
  const raw = JSON.parse(text) as RelayOptions & { listen: Endpoint | string; segments: Array<RelaySegment & { siteEndpoint: Endpoint | string }> };
  const endpoint = (e: Endpoint | string): Endpoint => {
    if (typeof e !== "string") return e;
    const parsed = parseEndpoint(e);
    if (parsed === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `relay: bad endpoint "${e}"`);
    return parsed;
  };
  if (!Array.isArray(raw.segments) || raw.segments.length !== 2) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "relay: exactly two segments");
  const relay = await startRelay({
    ...raw,
    listen: endpoint(raw.listen),
    segments: [
      { ...raw.segments[0]!, siteEndpoint: endpoint(raw.segments[0]!.siteEndpoint) },
      { ...raw.segments[1]!, siteEndpoint: endpoint(raw.segments[1]!.siteEndpoint) },
    ],
  });
  process.stdout.write(`${JSON.stringify({ address: `${relay.address.address}:${relay.address.port}` })}\n`);
  const stop = (): void => {
    process.stdout.write(`${JSON.stringify(relay.stats())}\n`);
    void relay.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] !== undefined && resolvePath(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
