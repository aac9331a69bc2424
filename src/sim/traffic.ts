// Seeded synthetic traffic: whole conversations as timestamped frames.
//
// Used by the bundled demo capture (examples/demo.pcap), by the simulator and by the
// built-in generator of `tandem up`. Every conversation is a plausible exchange between a
// client and a server on 198.18.0.0/15: TCP handshake, data both ways and a FIN close (or a
// RST), a UDP request/response, an ICMP echo. Sequence numbers, windows and options are
// consistent so that a strict connection tracker accepts them.
//
// Allocation is fine here: this builds fixtures, it is not the per-packet path.

import { packet, type PacketBuilder } from "../packet/builder.js";
import { formatIpv4 } from "../packet/addr.js";
import { Prng } from "../stdx/prng.js";

export interface TimedFrame {
  timeMs: number;
  frame: Uint8Array;
  /** True for packets from the client (original direction). */
  fromClient: boolean;
}

export interface Endpoint {
  /** IPv4 address as text or IPv6 text. */
  address: string;
  port: number;
}

export type ConversationKind = "tcp" | "tcp-reset" | "udp" | "icmp" | "tcp6";

export interface ConversationOptions {
  kind: ConversationKind;
  client: Endpoint;
  server: Endpoint;
  startMs: number;
  /** Data segments each way (TCP) or request/response pairs (UDP, ICMP). */
  exchanges: number;
  /** Milliseconds between packets. */
  gapMs: number;
  /** Wrap in Ethernet (default) or emit raw IP. */
  ethernet?: boolean;
  prng: Prng;
}

const MSS = 1460;
const WINDOW = 64240;

function base(ethernet: boolean, fromClient: boolean): PacketBuilder {
  const b = packet();
  if (ethernet) {
    b.ethernet(
      fromClient
        ? { src: "02:00:00:00:0c:01", dst: "02:00:00:00:0a:01" }
        : { src: "02:00:00:00:0a:01", dst: "02:00:00:00:0c:01" },
    );
  }
  return b;
}

function ip(b: PacketBuilder, from: Endpoint, to: Endpoint): PacketBuilder {
  if (from.address.includes(":")) return b.ipv6({ src: from.address, dst: to.address, hopLimit: 64 });
  return b.ipv4({ src: from.address, dst: to.address, ttl: 64, df: true });
}

/** One conversation, frames in time order. */
export function conversation(options: ConversationOptions): TimedFrame[] {
  const { client, server, prng, gapMs } = options;
  const ethernet = options.ethernet ?? true;
  const frames: TimedFrame[] = [];
  let t = options.startMs;
  const emit = (fromClient: boolean, build: (b: PacketBuilder) => PacketBuilder): void => {
    const from = fromClient ? client : server;
    const to = fromClient ? server : client;
    frames.push({ timeMs: t, frame: build(ip(base(ethernet, fromClient), from, to)).build(), fromClient });
    t += gapMs;
  };
  switch (options.kind) {
    case "tcp":
    case "tcp6":
    case "tcp-reset": {
      let cSeq = prng.nextU32();
      let sSeq = prng.nextU32();
      const cOpts = { mss: MSS, wscale: 7, sackPerm: true };
      emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "S", seq: cSeq, window: WINDOW, options: cOpts }));
      emit(false, (b) => b.tcp({ sport: server.port, dport: client.port, flags: "SA", seq: sSeq, ack: (cSeq + 1) >>> 0, window: WINDOW, options: cOpts }));
      cSeq = (cSeq + 1) >>> 0;
      sSeq = (sSeq + 1) >>> 0;
      emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "A", seq: cSeq, ack: sSeq, window: WINDOW >> 7 }));
      for (let i = 0; i < options.exchanges; i++) {
        const request = 40 + prng.nextInt(400);
        const response = 200 + prng.nextInt(1200);
        emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "PA", seq: cSeq, ack: sSeq, window: WINDOW >> 7 }).payload(filler(request, prng)));
        cSeq = (cSeq + request) >>> 0;
        emit(false, (b) => b.tcp({ sport: server.port, dport: client.port, flags: "PA", seq: sSeq, ack: cSeq, window: WINDOW >> 7 }).payload(filler(response, prng)));
        sSeq = (sSeq + response) >>> 0;
        emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "A", seq: cSeq, ack: sSeq, window: WINDOW >> 7 }));
      }
      if (options.kind === "tcp-reset") {
        emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "R", seq: cSeq, window: 0 }));
        break;
      }
      emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "FA", seq: cSeq, ack: sSeq, window: WINDOW >> 7 }));
      cSeq = (cSeq + 1) >>> 0;
      emit(false, (b) => b.tcp({ sport: server.port, dport: client.port, flags: "FA", seq: sSeq, ack: cSeq, window: WINDOW >> 7 }));
      sSeq = (sSeq + 1) >>> 0;
      emit(true, (b) => b.tcp({ sport: client.port, dport: server.port, flags: "A", seq: cSeq, ack: sSeq, window: WINDOW >> 7 }));
      break;
    }
    case "udp": {
      for (let i = 0; i < options.exchanges; i++) {
        emit(true, (b) => b.udp({ sport: client.port, dport: server.port }).payload(filler(30 + prng.nextInt(60), prng)));
        emit(false, (b) => b.udp({ sport: server.port, dport: client.port }).payload(filler(60 + prng.nextInt(400), prng)));
      }
      break;
    }
    case "icmp": {
      const id = client.port & 0xffff;
      const v6 = client.address.includes(":");
      for (let i = 0; i < options.exchanges; i++) {
        const data = filler(56, prng);
        if (v6) {
          emit(true, (b) => b.icmpv6({ type: 128, id, seq: i }).payload(data));
          emit(false, (b) => b.icmpv6({ type: 129, id, seq: i }).payload(data));
        } else {
          emit(true, (b) => b.icmp({ type: 8, id, seq: i }).payload(data));
          emit(false, (b) => b.icmp({ type: 0, id, seq: i }).payload(data));
        }
      }
      break;
    }
  }
  return frames;
}

function filler(length: number, prng: Prng): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = 0x20 + prng.nextInt(95);
  return out;
}

/** Client host i of a test network: 198.18.x.y. */
export function clientAddress(i: number): string {
  return formatIpv4((0xc6120000 + 10 + i) >>> 0);
}

/** Server host i: 198.19.x.y. */
export function serverAddress(i: number): string {
  return formatIpv4((0xc6130000 + 10 + i) >>> 0);
}

export interface MixOptions {
  seed: number;
  conversations: number;
  startMs?: number;
  /** Mean milliseconds between conversation starts. */
  spacingMs?: number;
  ethernet?: boolean;
}

/**
 * A mix of conversations interleaved in time: mostly TCP (web, with some resets), UDP DNS,
 * ICMP echo, a little IPv6, and a few connections to ports a typical policy refuses.
 */
export function trafficMix(options: MixOptions): TimedFrame[] {
  const prng = new Prng(options.seed);
  const all: TimedFrame[] = [];
  let start = options.startMs ?? 1_700_000_000_000;
  for (let i = 0; i < options.conversations; i++) {
    const roll = prng.nextFloat();
    const client: Endpoint = { address: clientAddress(prng.nextInt(50)), port: 32768 + prng.nextInt(28000) };
    let kind: ConversationKind = "tcp";
    let server: Endpoint = { address: serverAddress(prng.nextInt(10)), port: 443 };
    if (roll < 0.45) server.port = prng.chance(0.5) ? 443 : 80;
    else if (roll < 0.55) kind = "tcp-reset";
    else if (roll < 0.75) {
      kind = "udp";
      server = { address: serverAddress(0), port: 53 };
    } else if (roll < 0.85) kind = "icmp";
    else if (roll < 0.93) {
      kind = "tcp6";
      client.address = `2001:db8:c::${(10 + prng.nextInt(50)).toString(16)}`;
      server = { address: `2001:db8:5::${(10 + prng.nextInt(10)).toString(16)}`, port: 443 };
    } else server.port = prng.chance(0.5) ? 23 : 3389;
    const convo = conversation({
      kind,
      client,
      server,
      startMs: start,
      exchanges: kind === "icmp" ? 3 : 1 + prng.nextInt(4),
      gapMs: 1 + prng.nextInt(20),
      ethernet: options.ethernet ?? true,
      prng,
    });
    all.push(...convo);
    start += 1 + prng.nextInt(2 * (options.spacingMs ?? 10));
  }
  all.sort((a, b) => a.timeMs - b.timeMs);
  return all;
}
