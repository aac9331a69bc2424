// Engine benchmark (issue 2): established-TCP packets per second with 1,000,000 live
// connections, against a baseline of the same workload on a plain Map keyed by a flow
// string; new connections per second with a 1,000-rule policy, against a linear first-match
// scan + Map insert; bytes per connection of the table.
//
// Frames are made by patching one template (the builder is too slow to make millions), and
// the engine runs without routing so that reused frames keep their TTL. Both sides parse
// every frame with the same parser, so the comparison is of the state lookup and tracking.

import { Engine } from "../src/engine/engine.js";
import { compilePolicy } from "../src/engine/rule-base.js";
import type { PolicySpec, RuleSpec } from "../src/engine/policy.js";
import { ConnState, Verdict } from "../src/engine/types.js";
import { packet } from "../src/packet/builder.js";
import { parseFrame } from "../src/packet/parse.js";
import { LinkType, PacketView, TcpFlag } from "../src/packet/view.js";
import { formatIpv4 } from "../src/packet/addr.js";
import { Prng } from "../src/stdx/prng.js";

const FRAME_BYTES = 64; // slot size per frame in the packed frame buffer (54-byte frames)

/** Ethernet/IPv4/TCP template; fields are patched per packet. */
const TEMPLATE = packet()
  .ethernet()
  .ipv4({ src: "198.18.0.1", dst: "198.19.0.1", ttl: 64 })
  .tcp({ sport: 1, dport: 443, flags: "A", window: 502 })
  .build();
const L3 = 14;
const L4 = 34;

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 255;
  buf[at + 2] = (v >>> 8) & 255;
  buf[at + 3] = v & 255;
}
function writeU16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = (v >>> 8) & 255;
  buf[at + 1] = v & 255;
}

interface Flow {
  client: number;
  server: number;
  cport: number;
  sport: number;
  cseq: number;
  sseq: number;
}

function flowOf(i: number): Flow {
  // 1M distinct flows: 4096 clients x 256 ports each towards 64 servers.
  return {
    client: (0xc6120000 + (i >>> 8)) >>> 0,
    server: (0xc6130000 + (i & 63)) >>> 0,
    cport: 1024 + (i & 255) * 200 + ((i >>> 6) & 3),
    sport: 443,
    cseq: Math.imul(i, 2654435761) >>> 0,
    sseq: Math.imul(i ^ 0x5bd1e995, 2246822519) >>> 0,
  };
}

/** Writes one TCP segment of `f` into buf at `at`. */
function writeSegment(buf: Uint8Array, at: number, f: Flow, fromClient: boolean, flags: number, seq: number, ack: number): void {
  buf.set(TEMPLATE, at);
  writeU32(buf, at + L3 + 12, fromClient ? f.client : f.server);
  writeU32(buf, at + L3 + 16, fromClient ? f.server : f.client);
  writeU16(buf, at + L4, fromClient ? f.cport : f.sport);
  writeU16(buf, at + L4 + 2, fromClient ? f.sport : f.cport);
  writeU32(buf, at + L4 + 4, seq);
  writeU32(buf, at + L4 + 8, ack);
  buf[at + L4 + 13] = flags;
}

/** Drives the three-way handshake of flows [0, n) through the engine. */
function establish(engine: Engine, n: number, nowMs: number): void {
  const buf = new Uint8Array(FRAME_BYTES);
  const len = TEMPLATE.length;
  for (let i = 0; i < n; i++) {
    const f = flowOf(i);
    writeSegment(buf, 0, f, true, TcpFlag.SYN, f.cseq, 0);
    engine.processFrame(buf, 0, len, LinkType.ETHERNET, 0, nowMs);
    writeSegment(buf, 0, f, false, TcpFlag.SYN | TcpFlag.ACK, f.sseq, (f.cseq + 1) >>> 0);
    engine.processFrame(buf, 0, len, LinkType.ETHERNET, 0, nowMs);
    writeSegment(buf, 0, f, true, TcpFlag.ACK, (f.cseq + 1) >>> 0, (f.sseq + 1) >>> 0);
    if (engine.processFrame(buf, 0, len, LinkType.ETHERNET, 0, nowMs) !== Verdict.FORWARD) {
      throw new Error(`bench setup: handshake of flow ${i} was not forwarded (${engine.dropReason})`);
    }
  }
}

/** Packed frames of established flows chosen at random, both directions. */
function establishedFrames(n: number, count: number, seed: number): Uint8Array {
  const prng = new Prng(seed);
  const buf = new Uint8Array(count * FRAME_BYTES);
  for (let k = 0; k < count; k++) {
    const f = flowOf(prng.nextInt(n));
    const fromClient = (k & 1) === 0;
    if (fromClient) writeSegment(buf, k * FRAME_BYTES, f, true, TcpFlag.ACK, (f.cseq + 1) >>> 0, (f.sseq + 1) >>> 0);
    else writeSegment(buf, k * FRAME_BYTES, f, false, TcpFlag.ACK, (f.sseq + 1) >>> 0, (f.cseq + 1) >>> 0);
  }
  return buf;
}

/** Baseline: conntrack on a Map keyed by a flow string, as straightforward code would write it. */
interface MapEntry {
  state: number;
  expiresAtMs: number;
  seq: [number, number];
  ack: [number, number];
  packets: number;
}

function mapKey(view: PacketView): string {
  const a = view.src4;
  const b = view.dst4;
  const forward = a < b || (a === b && view.srcPort <= view.dstPort);
  return forward
    ? `0/${view.protocol}/${a}:${view.srcPort}/${b}:${view.dstPort}`
    : `0/${view.protocol}/${b}:${view.dstPort}/${a}:${view.srcPort}`;
}

function mapPopulate(map: Map<string, MapEntry>, n: number, view: PacketView): void {
  const buf = new Uint8Array(FRAME_BYTES);
  for (let i = 0; i < n; i++) {
    const f = flowOf(i);
    writeSegment(buf, 0, f, true, TcpFlag.SYN, f.cseq, 0);
    parseFrame(view, buf, 0, TEMPLATE.length, LinkType.ETHERNET);
    map.set(mapKey(view), { state: ConnState.TCP_ESTABLISHED, expiresAtMs: 0, seq: [f.cseq + 1, f.sseq + 1], ack: [f.sseq + 1, f.cseq + 1], packets: 0 });
  }
}

function mapTrack(map: Map<string, MapEntry>, view: PacketView, nowMs: number): boolean {
  const entry = map.get(mapKey(view));
  if (entry === undefined) return false;
  const dir = view.src4 < view.dst4 ? 0 : 1;
  if (view.tcpSeq + view.tcpDataLength > entry.seq[dir]!) entry.seq[dir] = view.tcpSeq + view.tcpDataLength;
  if (view.tcpAck > entry.ack[dir]!) entry.ack[dir] = view.tcpAck;
  entry.expiresAtMs = nowMs + 432_000_000;
  entry.packets++;
  return true;
}

function rulePolicy(count: number, seed: number): PolicySpec {
  // count-1 rules that do not match the benchmark's traffic (other networks, other ports),
  // then the accepting rule last: first-match must look past all of them.
  const prng = new Prng(seed);
  const rules: RuleSpec[] = [];
  for (let i = 0; i < count - 1; i++) {
    const net = (0x0a000000 + (prng.nextInt(1 << 16) << 8)) >>> 0;
    rules.push({
      name: `r${i}`,
      source: [`${formatIpv4(net)}/24`],
      destination: [`${formatIpv4((0xac100000 + (prng.nextInt(1 << 12) << 8)) >>> 0)}/24`],
      protocol: prng.chance(0.5) ? "tcp" : "udp",
      ports: [`${1000 + prng.nextInt(30000)}-${31000 + prng.nextInt(30000)}`],
      action: prng.chance(0.5) ? "accept" : "drop",
    });
  }
  rules.push({ name: "allow-bench", source: ["198.18.0.0/15"], destination: ["198.18.0.0/15"], protocol: "tcp", ports: [443], action: "accept" });
  return { rules };
}

function timeLoop(fn: () => number, minMs: number): { ops: number; ms: number } {
  let ops = 0;
  const start = performance.now();
  let now = start;
  while (now - start < minMs) {
    ops += fn();
    now = performance.now();
  }
  return { ops, ms: now - start };
}

export async function run(opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  const log = (msg: string): void => {
    if (!opts.json) process.stderr.write(`${msg}\n`);
  };
  const connections = opts.quick ? 100_000 : 1_000_000;
  const nowMs = 1_000_000;
  const frameCount = 1 << 16;
  const minMs = opts.quick ? 300 : 2000;

  // --- Tandem: established packets with `connections` live entries.
  log(`establishing ${connections} connections...`);
  const engine = new Engine({ capacity: connections, hashSeed: 0x1234 });
  establish(engine, connections, nowMs);
  if (engine.table.size !== connections) throw new Error(`expected ${connections} live connections, have ${engine.table.size}`);
  const frames = establishedFrames(connections, frameCount, 7);
  const len = TEMPLATE.length;
  let forwarded = 0;
  const engineRound = (): number => {
    for (let k = 0; k < frameCount; k++) {
      if (engine.processFrame(frames, k * FRAME_BYTES, len, LinkType.ETHERNET, 0, nowMs) === Verdict.FORWARD) forwarded++;
    }
    return frameCount;
  };
  engineRound(); // warm-up
  forwarded = 0;
  log("measuring engine...");
  const tandem = timeLoop(engineRound, minMs);
  if (forwarded !== tandem.ops) throw new Error(`engine dropped ${tandem.ops - forwarded} established packets`);
  const packetsPerS = (tandem.ops / tandem.ms) * 1000;
  const bytesPerConnection = engine.table.memoryBytes() / engine.table.capacity;

  // --- Baseline: Map keyed by a flow string.
  log("building baseline map...");
  const view = new PacketView();
  const map = new Map<string, MapEntry>();
  mapPopulate(map, connections, view);
  let found = 0;
  const mapRound = (): number => {
    for (let k = 0; k < frameCount; k++) {
      if (parseFrame(view, frames, k * FRAME_BYTES, len, LinkType.ETHERNET) && mapTrack(map, view, nowMs)) found++;
    }
    return frameCount;
  };
  mapRound();
  found = 0;
  log("measuring baseline...");
  const baseline = timeLoop(mapRound, minMs);
  if (found !== baseline.ops) throw new Error("baseline lost packets");
  const baselinePacketsPerS = (baseline.ops / baseline.ms) * 1000;
  map.clear();

  // --- New connections with a 1,000-rule policy.
  const ruleCount = 1000;
  const spec = rulePolicy(ruleCount, 99);
  const ruleBase = compilePolicy(spec);
  const newCount = opts.quick ? 50_000 : 300_000;
  const synEngine = new Engine({ capacity: newCount, hashSeed: 0x1234, ruleBase });
  const syns = new Uint8Array(newCount * FRAME_BYTES);
  for (let i = 0; i < newCount; i++) {
    const f = flowOf(i);
    writeSegment(syns, i * FRAME_BYTES, f, true, TcpFlag.SYN, f.cseq, 0);
  }
  log("measuring new connections...");
  let start = performance.now();
  for (let i = 0; i < newCount; i++) {
    if (synEngine.processFrame(syns, i * FRAME_BYTES, len, LinkType.ETHERNET, 0, nowMs) !== Verdict.FORWARD) {
      throw new Error(`SYN ${i} not accepted: reason ${synEngine.dropReason}`);
    }
  }
  const newConnectionsPerS = (newCount / (performance.now() - start)) * 1000;

  // Baseline for setup: linear first-match over the same rules + Map insert.
  const linear = spec.rules.map((r) => {
    const [srcNet, srcLen] = String((r.source as string[])[0]).split("/");
    const [dstNet, dstLen] = String((r.destination as string[])[0]).split("/");
    const toNum = (s: string): number => s.split(".").reduce((a, o) => a * 256 + Number(o), 0) >>> 0;
    const mask = (l: number): number => (l === 0 ? 0 : (0xffffffff << (32 - l)) >>> 0);
    const ports = String((r.ports as (string | number)[])[0]);
    const [lo, hi] = ports.includes("-") ? ports.split("-").map(Number) : [Number(ports), Number(ports)];
    return {
      src: toNum(srcNet!),
      srcMask: mask(Number(srcLen)),
      dst: toNum(dstNet!),
      dstMask: mask(Number(dstLen)),
      proto: r.protocol === "tcp" ? 6 : 17,
      lo: lo!,
      hi: hi!,
      accept: r.action === "accept",
    };
  });
  const newMap = new Map<string, MapEntry>();
  start = performance.now();
  for (let i = 0; i < newCount; i++) {
    parseFrame(view, syns, i * FRAME_BYTES, len, LinkType.ETHERNET);
    let accepted = false;
    for (const r of linear) {
      if (
        ((view.src4 & r.srcMask) >>> 0) === r.src &&
        ((view.dst4 & r.dstMask) >>> 0) === r.dst &&
        view.protocol === r.proto &&
        view.dstPort >= r.lo &&
        view.dstPort <= r.hi
      ) {
        accepted = r.accept;
        break;
      }
    }
    if (!accepted) throw new Error("baseline rule scan did not accept");
    newMap.set(mapKey(view), { state: ConnState.TCP_SYN_SENT, expiresAtMs: nowMs, seq: [view.tcpSeq, 0], ack: [0, 0], packets: 1 });
  }
  const baselineNewConnectionsPerS = (newCount / (performance.now() - start)) * 1000;

  return {
    connections,
    packetsPerS: Math.round(packetsPerS),
    baselinePacketsPerS: Math.round(baselinePacketsPerS),
    ratio: Number((packetsPerS / baselinePacketsPerS).toFixed(2)),
    newConnectionsPerS: Math.round(newConnectionsPerS),
    baselineNewConnectionsPerS: Math.round(baselineNewConnectionsPerS),
    newConnectionsRatio: Number((newConnectionsPerS / baselineNewConnectionsPerS).toFixed(2)),
    rules: ruleCount,
    bytesPerConnection: Number(bytesPerConnection.toFixed(1)),
    tableCapacity: engine.table.capacity,
    targets: { packetsPerS: 5_000_000, ratio: 3, bytesPerConnection: 64 },
  };
}
