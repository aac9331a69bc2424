// Orchestrator sizing (`tandem sizing`): what this machine's distributor can forward, and from
// that how much traffic and how many members one orchestrator can serve. Short measurements on
// the same synthetic traffic (seeded TCP flows from 64 on-link hosts spread over the buckets of
// a group with N members; 128, 512 and 1,450-byte inner Ethernet frames):
//
//   core      DistributorCore.fromSite in a loop, sends counted, no sockets: the forwarding
//             decision + header rewrite alone (VXLAN -> member-link INGRESS, same buffer)
//   engine    Engine.processFrame on the same inner frames, flows established: a member's work
//             per frame besides its system calls
//   socket    the real distributor (startDistributor: its worker thread, both sockets) on
//             loopback: a sender socket offers the VXLAN datagrams, the distributor forwards
//             them to a sink socket standing for the members. Capacity = frames it handled per
//             CPU second of its thread (Linux; else per busy second of its event loop), so it
//             neither depends on the sender keeping it saturated nor on what else the machine
//             runs: THE capacity figure, the system-call-bound path that limits a dgram data path.
//   baseline  the same sockets through a no-op forwarder (receive, send the buffer on) on its
//             own worker thread: what Node + dgram allow at all, measured in the same run.
//
// From those, explicit formulas (deriveSizing, pure; docs/automatic.md "Orchestrator sizing"):
//   capacity(s)     = frames handled(s) / CPU seconds(s)                     [socket, frames/s]
//   Gb/s(s)         = capacity(s) x s x 8 / 1e9                              [inner frame bits]
//   capacity(mix)   = 1 / sum_i w_i / capacity(s_i)        mean bytes = sum_i w_i s_i
//   member(s)       = 1 / (1/capacity(s) - 1/core(s) + 1/engine(s))  (or the given figure):
//                     a member pays the same receive + send system calls per frame as the
//                     distributor, and runs the engine instead of the distributor's core
//   members fed     = floor(capacity(mix) / member(mix))   (members each forwarding at full rate)
//
// Invariants kept: bounded time (each phase has its own slice of `seconds`; nothing waits on an
// unbounded condition); deterministic shape (seeded flows, fixed sizes, fixed mix); the hot
// loops allocate nothing per frame (datagrams prebuilt, views made once, one send callback);
// every socket, timer and the distributor are closed on every path (finally).

import dgram, { type Socket } from "node:dgram";
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { createEpochTable } from "../distribution/epoch.js";
import { BOTTLENECK_DEFAULTS } from "../orchestrator/bottleneck.js";
import { Engine } from "../engine/engine.js";
import { Verdict } from "../engine/types.js";
import { packet } from "../packet/builder.js";
import { fillChecksums } from "../packet/checksum.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView, TcpFlag } from "../packet/view.js";
import { w16, w32 } from "../stdx/bytes.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { Prng } from "../stdx/prng.js";
import type { DistributorGroupConfig, InterfaceConfig } from "./cluster-config.js";
import { DistributorCore } from "./distributor-core.js";
import { startDistributor, type DistributorLoad, type DistributorLogger } from "./distributor.js";
import { VXLAN_HEADER_BYTES, writeVxlanHeader } from "./member-link.js";

// ---- the shape of the measurement -----------------------------------------------------------

/** Inner Ethernet frame sizes measured (bytes, without FCS). */
export const SIZING_FRAME_BYTES: readonly number[] = [128, 512, 1450];
/** The traffic figure for large packets is stated at this mean frame size. */
export const SIZING_LARGE_FRAME_BYTES = 1450;
/** The small-packet mix: shares by packet count of the measured sizes (7:4:1, the simple-IMIX shape). */
export const SIZING_MIX: readonly { frameBytes: number; share: number }[] = [
  { frameBytes: 128, share: 7 / 12 },
  { frameBytes: 512, share: 4 / 12 },
  { frameBytes: 1450, share: 1 / 12 },
];
/** Members are "idle enough" below this CPU (the bottleneck warning's mark, BOTTLENECK_DEFAULTS). */
export const SIZING_MEMBER_HEADROOM_CPU_PCT = BOTTLENECK_DEFAULTS.memberCpuHeadroomPct;
export const SIZING_SECONDS_DEFAULT = 3;
export const SIZING_SECONDS_MIN = 0.3;
export const SIZING_SECONDS_MAX = 120;
export const SIZING_MEMBERS_DEFAULT = 4;
export const SIZING_FLOWS_DEFAULT = 4096;
export const SIZING_SEED_DEFAULT = 0x5121;
const SIZING_BUCKETS = 8192;
/** On-link client hosts (each a neighbour the distributor learns and refreshes). */
const CLIENT_HOSTS = 64;
/** Fractions of `seconds` per size and phase; the rest covers setup (flows, worker start). */
const CORE_SHARE = 0.03;
const ENGINE_SHARE = 0.02;
const SOCKET_SHARE = 0.11;
const BASELINE_SHARE = 0.05;
/** Warm-up rounds of the two forwarders before their first measured window (each). */
const WARMUP_SHARE = 0.04;
/** Of each socket slice, this part warms up (discarded). */
const SOCKET_WARMUP_SHARE = 0.2;
/** Datagrams the sender offers per event-loop turn (it yields so the sink can read). */
const SEND_BATCH = 64;
const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
/**
 * Capacity per CPU second needs at least this many 10 ms ticks of thread CPU time in the window
 * (each reading truncates to a tick: +-10 ms on the difference); else it is per busy second.
 */
const CPU_TICKS_MIN = 3;

assert(Math.abs(SIZING_MIX.reduce((a, m) => a + m.share, 0) - 1) < 1e-9, "the mix's shares sum to 1");
assert(SIZING_MIX.every((m) => SIZING_FRAME_BYTES.includes(m.frameBytes)), "the mix uses measured sizes");
assert(SIZING_FRAME_BYTES.includes(SIZING_LARGE_FRAME_BYTES), "the large-frame figure is a measured size");
// About a second goes to fixed costs (frames, worker threads): the phases take ~3/4 of `seconds`.
assert(SIZING_FRAME_BYTES.length * (CORE_SHARE + ENGINE_SHARE + SOCKET_SHARE + BASELINE_SHARE) + 2 * WARMUP_SHARE < 0.75, "the phases fit in `seconds`");

export interface SizingOptions {
  /** Total time budget of the measurement (default 3 s). */
  seconds?: number;
  /** Table members of the synthetic group (default 4). */
  members?: number;
  /** Distinct TCP flows (default 4096). */
  flows?: number;
  seed?: number;
  /** A member's forwarding rate (frames/s, one core) to use instead of the derived one. */
  memberFramesPerSec?: number;
  /** "worker" (default): the distributor as the orchestrator runs it. "inline": on this thread (tests). */
  distributorThread?: "worker" | "inline";
  /** Progress lines for people (stderr), none by default. */
  onProgress?: (text: string) => void;
}

/** What was measured at one frame size. */
export interface MeasuredSize {
  frameBytes: number;
  /** Distributor core alone: frames per second. */
  coreFramesPerSec: number;
  /** Engine on established flows: frames per second. */
  engineFramesPerSec: number;
  /** Socket path: frames handled per CPU second (or busy second) of the distributor's thread: the capacity. */
  socketFramesPerSec: number;
  /** "thread-cpu": per CPU second the thread got (Linux); "event-loop": per busy second of its event loop. */
  socketBasis: "thread-cpu" | "event-loop";
  /** The same sockets through a no-op forwarder (receive, send the buffer on) on its own worker thread: the baseline. */
  baselineFramesPerSec: number;
  /** Mean event-loop utilization of the distributor's thread during the socket window, 0..1. */
  socketUtilization: number;
  /** CPU time the thread got / wall time (null: not measurable here). Below utilization: it waited for a CPU. */
  socketCpuShare: number | null;
  /** Datagrams the sender offered, the distributor forwarded, the sink received, per second of the window. */
  offeredPerSec: number;
  forwardedPerSec: number;
  deliveredPerSec: number;
}

export interface SizeFigures extends MeasuredSize {
  datagramBytes: number;
  coreGbps: number;
  capacityGbps: number;
  /** A member's forwarding rate at this size (derived or given). */
  memberFramesPerSec: number;
}

export interface SizingReport {
  kind: "tandem-sizing";
  date: string;
  node: string;
  cpu: { model: string; count: number };
  /** 1-minute load average when the run ended: other work on the machine lowers the figures. */
  loadAverage1m: number;
  seconds: number;
  group: { members: number; buckets: number; flows: number; seed: number };
  distributorThread: "worker" | "inline";
  sizes: SizeFigures[];
  capacity: {
    /** At a 1,450-byte mean frame. */
    large: { frameBytes: number; framesPerSec: number; gbps: number };
    /** At the small-packet mix. */
    mix: { shares: { frameBytes: number; share: number }[]; meanFrameBytes: number; framesPerSec: number; gbps: number };
  };
  members: {
    /** A member's rate at the mix (frames/s, one core). */
    memberFramesPerSec: number;
    memberSource: "derived" | "option";
    /** capacity(mix) / member(mix). */
    ratio: number;
    /** Members, each forwarding at full rate, that the distributor can feed: floor(ratio). */
    fedAtFullRate: number;
    /**
     * Members the distributor can feed while each runs at SIZING_MEMBER_HEADROOM_CPU_PCT of its
     * rate (the CPU below which the bottleneck warning calls members idle):
     * floor(capacity(mix) / (member(mix) x pct / 100)).
     */
    fedAtHeadroom: { cpuPct: number; members: number };
  };
  /** Every formula with its figures, in the order they are derived. */
  formulas: string[];
  /** Warnings from the run (socket buffers smaller than asked, datagrams lost on loopback). */
  notes: string[];
}

// ---- derivation (pure) ----------------------------------------------------------------------

const fmt = (x: number): string => Math.round(x).toLocaleString("en-US");
const fmt2 = (x: number): string => (Math.round(x * 100) / 100).toString();
const gbpsOf = (framesPerSec: number, frameBytes: number): number => (framesPerSec * frameBytes * 8) / 1e9;

/** A member's frames/s at one size: the distributor's socket cost per frame, minus its core, plus the engine. */
export function memberRateOf(m: Pick<MeasuredSize, "socketFramesPerSec" | "coreFramesPerSec" | "engineFramesPerSec">): number {
  const socketUs = 1e6 / m.socketFramesPerSec;
  const coreUs = 1e6 / m.coreFramesPerSec;
  const engineUs = 1e6 / m.engineFramesPerSec;
  // The core is part of the socket path's busy time; noise must not make the I/O cost negative.
  const ioUs = Math.max(0, socketUs - coreUs);
  return 1e6 / (ioUs + engineUs);
}

/** The figures and formulas from the measurements (one per SIZING_FRAME_BYTES size). */
export function deriveSizing(
  measured: readonly MeasuredSize[],
  memberFramesPerSec: number | null,
): Pick<SizingReport, "sizes" | "capacity" | "members" | "formulas"> {
  for (const bytes of SIZING_FRAME_BYTES) assert(measured.some((m) => m.frameBytes === bytes), `size ${bytes} measured`);
  for (const m of measured) {
    assert(m.socketFramesPerSec > 0 && m.coreFramesPerSec > 0 && m.engineFramesPerSec > 0 && m.baselineFramesPerSec > 0, `positive rates at ${m.frameBytes} B`);
  }
  assert(memberFramesPerSec === null || memberFramesPerSec > 0, "a given member rate is positive");
  const formulas: string[] = [];
  const sizes: SizeFigures[] = measured.map((m) => ({
    ...m,
    datagramBytes: m.frameBytes + VXLAN_HEADER_BYTES,
    coreGbps: gbpsOf(m.coreFramesPerSec, m.frameBytes),
    capacityGbps: gbpsOf(m.socketFramesPerSec, m.frameBytes),
    memberFramesPerSec: memberFramesPerSec ?? memberRateOf(m),
  }));
  const at = (bytes: number): SizeFigures => sizes.find((s) => s.frameBytes === bytes)!;

  for (const s of sizes) {
    formulas.push(
      `capacity(${s.frameBytes} B) = frames handled / ${s.socketBasis === "thread-cpu" ? "CPU seconds" : "busy seconds"} of the distributor's thread = ${fmt(s.socketFramesPerSec)} frames/s ` +
        `(utilization ${fmt2(s.socketUtilization)}${s.socketCpuShare === null ? "" : `, CPU ${fmt2(s.socketCpuShare)}`}, forwarding ${fmt(s.forwardedPerSec)} frames/s); ` +
        `baseline, a no-op forwarder on the same sockets: ${fmt(s.baselineFramesPerSec)} frames/s (distributor / baseline = ${fmt2(s.socketFramesPerSec / s.baselineFramesPerSec)})`,
    );
  }
  const large = at(SIZING_LARGE_FRAME_BYTES);
  formulas.push(
    `traffic(${large.frameBytes} B) = capacity x ${large.frameBytes} B x 8 / 1e9 = ${fmt(large.socketFramesPerSec)} x ${large.frameBytes} x 8 / 1e9 = ${fmt2(large.capacityGbps)} Gb/s (inner frames)`,
  );
  let timeUs = 0;
  let meanFrameBytes = 0;
  let memberTimeUs = 0;
  for (const w of SIZING_MIX) {
    const s = at(w.frameBytes);
    timeUs += (w.share * 1e6) / s.socketFramesPerSec;
    memberTimeUs += (w.share * 1e6) / s.memberFramesPerSec;
    meanFrameBytes += w.share * w.frameBytes;
  }
  const mixFramesPerSec = 1e6 / timeUs;
  const mixGbps = gbpsOf(mixFramesPerSec, meanFrameBytes);
  const shares = SIZING_MIX.map((w) => `${fmt2(w.share)} x ${w.frameBytes} B`).join(" + ");
  formulas.push(
    `capacity(mix) = 1 / sum(share / capacity(size)) over ${shares} = ${fmt(mixFramesPerSec)} frames/s; mean frame ${fmt2(meanFrameBytes)} B; ` +
      `traffic(mix) = ${fmt(mixFramesPerSec)} x ${fmt2(meanFrameBytes)} x 8 / 1e9 = ${fmt2(mixGbps)} Gb/s`,
  );
  for (const s of sizes) {
    if (memberFramesPerSec === null) {
      formulas.push(
        `member(${s.frameBytes} B) = 1 / (1/capacity - 1/core + 1/engine) = 1 / (1/${fmt(s.socketFramesPerSec)} - 1/${fmt(s.coreFramesPerSec)} + 1/${fmt(s.engineFramesPerSec)}) = ${fmt(s.memberFramesPerSec)} frames/s`,
      );
    }
  }
  const memberMix = 1e6 / memberTimeUs;
  const ratio = mixFramesPerSec / memberMix;
  formulas.push(
    `${memberFramesPerSec === null ? "member(mix) = 1 / sum(share / member(size))" : "member = the given --member-fps"} = ${fmt(memberMix)} frames/s per member (one core)`,
  );
  formulas.push(`members fed at full rate = floor(capacity(mix) / member(mix)) = floor(${fmt(mixFramesPerSec)} / ${fmt(memberMix)}) = floor(${Math.floor(ratio * 1000) / 1000}) = ${Math.floor(ratio)}`);
  const headroomRatio = mixFramesPerSec / ((memberMix * SIZING_MEMBER_HEADROOM_CPU_PCT) / 100);
  formulas.push(
    `members fed at ${SIZING_MEMBER_HEADROOM_CPU_PCT}% CPU = floor(capacity(mix) / (member(mix) x ${SIZING_MEMBER_HEADROOM_CPU_PCT / 100})) = ` +
      `floor(${fmt(mixFramesPerSec)} / ${fmt((memberMix * SIZING_MEMBER_HEADROOM_CPU_PCT) / 100)}) = ${Math.floor(headroomRatio)}`,
  );
  return {
    sizes,
    capacity: {
      large: { frameBytes: large.frameBytes, framesPerSec: large.socketFramesPerSec, gbps: large.capacityGbps },
      mix: { shares: SIZING_MIX.map((w) => ({ ...w })), meanFrameBytes, framesPerSec: mixFramesPerSec, gbps: mixGbps },
    },
    members: {
      memberFramesPerSec: memberMix,
      memberSource: memberFramesPerSec === null ? "derived" : "option",
      ratio,
      fedAtFullRate: Math.floor(ratio),
      fedAtHeadroom: { cpuPct: SIZING_MEMBER_HEADROOM_CPU_PCT, members: Math.floor(headroomRatio) },
    },
    formulas,
  };
}

// ---- synthetic traffic ----------------------------------------------------------------------

const VNI = 101;
const GATEWAY_MAC = "02:54:00:00:01:01";
const SEND_ADDRESS = "127.0.0.1";

interface Flow {
  client: number;
  server: number;
  clientPort: number;
  serverPort: number;
  clientMac: Uint8Array;
  clientSeq: number;
  serverSeq: number;
}

/** Seeded flows: 64 on-link clients (198.19.1.0/24, the ingress gateway's prefix) to 256 servers. */
function flowsOf(count: number, seed: number): Flow[] {
  const prng = new Prng(seed);
  const flows: Flow[] = [];
  const seen = new Set<string>();
  for (let guard = 0; flows.length < count; guard++) {
    assert(guard < count * 16, "flow generation terminates");
    const host = prng.nextInt(CLIENT_HOSTS);
    const f: Flow = {
      client: (0xc6130100 + 10 + host) >>> 0,
      server: (0xc6130200 + 1 + prng.nextInt(254)) >>> 0,
      clientPort: 1024 + prng.nextInt(64_000),
      serverPort: prng.pick([80, 443, 8080, 5201]),
      clientMac: Uint8Array.of(0x02, 0xaa, 0, 0, 0, host),
      clientSeq: prng.nextU32(),
      serverSeq: prng.nextU32(),
    };
    const key = `${f.client}:${f.clientPort}:${f.server}:${f.serverPort}`;
    if (seen.has(key)) continue;
    seen.add(key);
    flows.push(f);
  }
  return flows;
}

// Offsets in an untagged Ethernet / IPv4 (20 bytes) / TCP (20 bytes) frame.
const IP_SRC = 26;
const IP_DST = 30;
const TCP_PORTS = 34;
const TCP_SEQ = 38;
const TCP_ACK = 42;
const TCP_FLAGS = 47;
const HEADERS_BYTES = 54;
const SERVER_MAC = Uint8Array.of(0x02, 0xbb, 0, 0, 0, 1);
const templates = new Map<number, Uint8Array>();
const segmentView = new PacketView();

/**
 * A TCP segment of flow f with `payloadBytes` zero bytes, checksums filled: one builder-made
 * template per size, patched (the builder per segment would cost seconds for 4096 flows).
 */
function segment(f: Flow, fromClient: boolean, flags: number, seq: number, ack: number, payloadBytes: number): Uint8Array {
  let template = templates.get(payloadBytes);
  if (template === undefined) {
    template = packet()
      .ethernet({ src: "02:aa:00:00:00:00", dst: GATEWAY_MAC })
      .ipv4({ src: "198.19.1.10", dst: "198.19.2.1", ttl: 64 })
      .tcp({ sport: 1, dport: 1, flags: "A", window: 65535 })
      .payload(new Uint8Array(payloadBytes))
      .build();
    templates.set(payloadBytes, template);
  }
  const frame = template.slice();
  frame.set(fromClient ? f.clientMac : SERVER_MAC, 6);
  w32(frame, IP_SRC, fromClient ? f.client : f.server);
  w32(frame, IP_DST, fromClient ? f.server : f.client);
  w16(frame, TCP_PORTS, fromClient ? f.clientPort : f.serverPort);
  w16(frame, TCP_PORTS + 2, fromClient ? f.serverPort : f.clientPort);
  w32(frame, TCP_SEQ, seq);
  w32(frame, TCP_ACK, ack);
  frame[TCP_FLAGS] = flags;
  const parsed = parseFrame(segmentView, frame, 0, frame.length, LinkType.ETHERNET);
  assert(parsed, "a synthetic segment parses");
  fillChecksums(segmentView);
  return frame;
}

/** One client data segment per flow, each a VXLAN datagram; `views` index them (made once). */
interface Datagrams {
  frameBytes: number;
  backing: Uint8Array;
  views: Uint8Array[];
  stride: number;
}

function datagramsOf(flows: readonly Flow[], frameBytes: number): Datagrams {
  const stride = VXLAN_HEADER_BYTES + frameBytes;
  const backing = new Uint8Array(stride * flows.length);
  const views: Uint8Array[] = [];
  for (let i = 0; i < flows.length; i++) {
    const f = flows[i]!;
    const frame = segment(f, true, TcpFlag.PSH | TcpFlag.ACK, (f.clientSeq + 1) >>> 0, (f.serverSeq + 1) >>> 0, frameBytes - HEADERS_BYTES);
    assert(frame.length === frameBytes, "a data segment has the asked size");
    writeVxlanHeader(backing, i * stride, VNI);
    backing.set(frame, i * stride + VXLAN_HEADER_BYTES);
    views.push(backing.subarray(i * stride, (i + 1) * stride));
  }
  return { frameBytes, backing, views, stride };
}

/** The synthetic VXLAN datagrams (one per flow) at one inner frame size: for tests and tools. */
export function sizingDatagrams(flowCount: number, frameBytes: number, seed: number = SIZING_SEED_DEFAULT): Uint8Array[] {
  assert(SIZING_FRAME_BYTES.includes(frameBytes), "a measured size");
  return datagramsOf(flowsOf(flowCount, seed), frameBytes).views;
}

function groupConfig(members: number, seed: number, sitePort: number, memberEndpoint: string): DistributorGroupConfig {
  const t = createEpochTable(
    Array.from({ length: members }, (_, i) => ({ id: `m${i}`, weight: 1 })),
    seed,
    { bucketCount: SIZING_BUCKETS, epoch: 1 },
  );
  const iface: InterfaceConfig = { index: 0, name: "inside", vni: VNI, gateway: "198.19.1.1/24", mac: GATEWAY_MAC, siteEndpoint: SEND_ADDRESS, sitePort };
  return {
    group: "sizing",
    interfaces: [iface],
    epoch: t.epoch,
    seed,
    bucketCount: SIZING_BUCKETS,
    members: [...t.table.members],
    owner: t.table.owner,
    backup: t.table.backup,
    dataEndpoints: t.table.members.map(() => memberEndpoint),
    clusterKey: Buffer.alloc(32, 7).toString("base64"),
  };
}

// ---- the phases -----------------------------------------------------------------------------

/** Runs `round` (which handles `perRound` frames) until `ms` passed; frames per second. */
function timeRounds(round: () => void, perRound: number, ms: number): number {
  round(); // warm-up: the JIT, and the neighbours learned
  let frames = 0;
  const start = performance.now();
  let now = start;
  do {
    round();
    frames += perRound;
    now = performance.now();
  } while (now - start < ms);
  return (frames * 1000) / (now - start);
}

function measureCore(d: Datagrams, config: DistributorGroupConfig, ms: number): number {
  let sent = 0;
  const count = (): void => {
    sent++;
  };
  const core = new DistributorCore({ sendToSite: count, sendToMember: count });
  core.configure([config], 0);
  const views = d.views;
  const round = (): void => {
    for (let i = 0; i < views.length; i++) {
      const v = views[i]!;
      // fromSite wrote the member-link header over the VXLAN header: put it back (8 bytes).
      writeVxlanHeader(v, 0, VNI);
      core.fromSite(v, v.length, SEND_ADDRESS, 4789, 0);
    }
  };
  const framesPerSec = timeRounds(round, views.length, ms);
  const g = core.stats().groups.sizing!;
  assert(g.toMembers === g.packetsIn, "every synthetic frame was forwarded to a member");
  assert(sent >= g.toMembers, "every forward was sent");
  return framesPerSec;
}

function establishedEngine(flows: readonly Flow[], seed: number): Engine {
  const engine = new Engine({ capacity: flows.length * 2, hashSeed: seed });
  for (const f of flows) {
    const steps: [boolean, number, number, number][] = [
      [true, TcpFlag.SYN, f.clientSeq, 0],
      [false, TcpFlag.SYN | TcpFlag.ACK, f.serverSeq, (f.clientSeq + 1) >>> 0],
      [true, TcpFlag.ACK, (f.clientSeq + 1) >>> 0, (f.serverSeq + 1) >>> 0],
    ];
    for (const [fromClient, flags, seq, ack] of steps) {
      const frame = segment(f, fromClient, flags, seq, ack, 0);
      const verdict = engine.processFrame(frame, 0, frame.length, LinkType.ETHERNET, 0, 0);
      assert(verdict === Verdict.FORWARD, "the synthetic handshake is forwarded");
    }
  }
  return engine;
}

function measureEngine(engine: Engine, d: Datagrams, ms: number): number {
  const { backing, stride } = d;
  const n = d.views.length;
  let forwarded = 0;
  const round = (): void => {
    for (let i = 0; i < n; i++) {
      if (engine.processFrame(backing, i * stride + VXLAN_HEADER_BYTES, d.frameBytes, LinkType.ETHERNET, 0, 1) === Verdict.FORWARD) forwarded++;
    }
  };
  const framesPerSec = timeRounds(round, n, ms);
  assert(forwarded > 0 && forwarded % n === 0, "the engine forwards every established segment");
  return framesPerSec;
}

/** Every address here is the IPv4 literal SEND_ADDRESS: answered at once, without dns.lookup's extra tick per send. */
function literalLookup(hostname: string, _options: unknown, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  assert(hostname === SEND_ADDRESS, "sizing sends to loopback only");
  callback(null, hostname, 4);
}

async function bindUdp(): Promise<Socket> {
  const socket = dgram.createSocket({ type: "udp4", lookup: literalLookup });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, SEND_ADDRESS, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  socket.setRecvBufferSize(SOCKET_BUFFER_BYTES);
  socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
  return socket;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What the socket phase drives: the distributor, or the baseline no-op forwarder. */
interface Forwarder {
  readonly endpoint: { address: string; port: number };
  /** Load samples since the last clear (the caller's performance.now() timebase). */
  readonly samples: DistributorLoad[];
  /** Datagrams forwarded so far. */
  forwarded(): Promise<number>;
  close(): Promise<void>;
}

async function distributorForwarder(thread: "worker" | "inline", loadIntervalMs: number, members: number, seed: number, senderPort: number, sinkEndpoint: string, notes: string[]): Promise<Forwarder> {
  const logger: DistributorLogger = {
    info: () => {},
    warn: (_fields, message) => void notes.push(`distributor: ${message}`),
    error: (_fields, message) => void notes.push(`distributor error: ${message}`),
  };
  const distributor = await startDistributor({
    vxlanListen: { address: SEND_ADDRESS, port: 0 },
    memberLinkListen: { address: SEND_ADDRESS, port: 0 },
    inline: thread === "inline",
    logger,
    loadIntervalMs,
  });
  const samples: DistributorLoad[] = [];
  distributor.onLoad((load) => void samples.push(load));
  distributor.update([groupConfig(members, seed, senderPort, sinkEndpoint)]);
  return {
    endpoint: distributor.vxlan,
    samples,
    forwarded: async () => (await distributor.stats()).groups.sizing?.toMembers ?? 0,
    close: () => distributor.close(),
  };
}

/**
 * The baseline: a no-op forwarder (receive, send the same buffer to the sink) on a worker thread
 * of its own, with the distributor's load reporting. JavaScript evaluated in the worker (no file
 * to find); CommonJS, as eval workers are.
 */
const BASELINE_WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const dgram = require("node:dgram");
const { readFileSync } = require("node:fs");
const offset = performance.timeOrigin - workerData.timeOriginMs;
function cpuMs() {
  try {
    const t = readFileSync("/proc/thread-self/stat", "latin1");
    const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch (error) {
    if (error && error.code) return null; // not Linux: no CPU figure
    throw error;
  }
}
const socket = dgram.createSocket("udp4");
let frames = 0;
let total = 0;
const sinkPort = workerData.sinkPort;
socket.on("message", (m) => {
  frames++;
  total++;
  socket.send(m, 0, m.length, sinkPort, "127.0.0.1");
});
socket.bind(0, "127.0.0.1", () => {
  socket.setRecvBufferSize(workerData.bufferBytes);
  socket.setSendBufferSize(workerData.bufferBytes);
  let elu = performance.eventLoopUtilization();
  let last = performance.now();
  let lastCpu = cpuMs();
  const timer = setInterval(() => {
    const now = performance.now();
    const delta = performance.eventLoopUtilization(elu);
    elu = performance.eventLoopUtilization();
    const cpu = lastCpu === null ? null : cpuMs();
    const load = { atMs: now + offset, intervalMs: now - last, utilization: Math.min(1, delta.utilization), cpuMs: cpu === null || lastCpu === null ? null : cpu - lastCpu, frames, framesPerSec: (frames * 1000) / (now - last) };
    lastCpu = cpu;
    last = now;
    frames = 0;
    parentPort.postMessage({ type: "load", load });
  }, workerData.loadIntervalMs);
  parentPort.on("message", (m) => {
    if (m === "count") return parentPort.postMessage({ type: "count", total });
    clearInterval(timer);
    socket.close(() => parentPort.postMessage({ type: "closed" }));
  });
  parentPort.postMessage({ type: "ready", port: socket.address().port });
});
`;

type BaselineReply = { type: "ready"; port: number } | { type: "load"; load: DistributorLoad } | { type: "count"; total: number } | { type: "closed" };

async function baselineForwarder(loadIntervalMs: number, sinkPort: number): Promise<Forwarder> {
  const worker = new Worker(BASELINE_WORKER_SOURCE, {
    eval: true,
    workerData: { sinkPort, loadIntervalMs, bufferBytes: SOCKET_BUFFER_BYTES, timeOriginMs: performance.timeOrigin },
    name: "tandem-sizing-baseline",
  });
  const samples: DistributorLoad[] = [];
  const counts: ((total: number) => void)[] = [];
  let closed: (() => void) | null = null;
  const port = await new Promise<number>((resolve, reject) => {
    worker.once("error", reject);
    worker.on("message", (m: BaselineReply) => {
      if (m.type === "ready") resolve(m.port);
      else if (m.type === "load") samples.push(m.load);
      else if (m.type === "count") counts.shift()?.(m.total);
      else closed?.();
    });
  });
  return {
    endpoint: { address: SEND_ADDRESS, port },
    samples,
    forwarded: () =>
      new Promise<number>((resolve) => {
        counts.push(resolve);
        worker.postMessage("count");
      }),
    close: async () => {
      const done = new Promise<void>((resolve) => {
        closed = resolve;
      });
      worker.postMessage("close");
      await Promise.race([done, sleep(1000)]);
      await worker.terminate();
    },
  };
}

interface SocketFigures {
  framesPerSec: number;
  basis: "thread-cpu" | "event-loop";
  utilization: number;
  cpuShare: number | null;
  offeredPerSec: number;
  forwardedPerSec: number;
  deliveredPerSec: number;
}

/**
 * Offers the datagrams to `f` for `ms` (the first part warms up) and measures its capacity; with
 * warmUpOnly, offers them and measures nothing (null).
 */
async function measureSocket(f: Forwarder, sender: Socket, received: { count: number }, d: Datagrams, ms: number, warmUpOnly = false): Promise<SocketFigures | null> {
  // The sender's own copies, never rewritten (the core phase left member-link headers in the views).
  const buffers = d.views.map((v) => {
    const b = Buffer.from(v);
    writeVxlanHeader(b, 0, VNI);
    return b;
  });
  const { port, address } = f.endpoint;
  let offered = 0;
  let running = true;
  let next = 0;
  const offer = (): void => {
    if (!running) return;
    for (let k = 0; k < SEND_BATCH; k++) {
      const b = buffers[next]!;
      next = next + 1 === buffers.length ? 0 : next + 1;
      sender.send(b, 0, b.length, port, address);
    }
    offered += SEND_BATCH;
    setImmediate(offer);
  };
  setImmediate(offer);
  try {
    if (warmUpOnly) {
      await sleep(ms);
      return null;
    }
    await sleep(ms * SOCKET_WARMUP_SHARE);
    const startMs = performance.now();
    const offeredBefore = offered;
    const receivedBefore = received.count;
    const forwardedBefore = await f.forwarded();
    await sleep(ms * (1 - SOCKET_WARMUP_SHARE));
    const forwardedAfter = await f.forwarded();
    const endMs = performance.now();
    const windowS = (endMs - startMs) / 1000;
    // Load samples overlapping the window, each counted for the part of it inside the window
    // (spread evenly over its interval): frames handled per CPU (or busy) second of the thread.
    let frames = 0;
    let busyMs = 0;
    let wallMs = 0;
    let cpuMs: number | null = 0;
    for (const s of f.samples) {
      const overlapMs = Math.min(s.atMs, endMs) - Math.max(s.atMs - s.intervalMs, startMs);
      if (overlapMs <= 0) continue;
      const part = overlapMs / s.intervalMs;
      frames += s.frames * part;
      busyMs += s.utilization * overlapMs;
      wallMs += overlapMs;
      cpuMs = cpuMs === null || s.cpuMs === null ? null : cpuMs + s.cpuMs * part;
    }
    if (wallMs === 0 || busyMs === 0 || frames === 0) {
      throw new TandemError(ErrorCode.INTERNAL, `sizing: no load reported during the ${d.frameBytes}-byte window (machine too busy? try a longer --seconds)`);
    }
    // CPU time (10 ms ticks) when the thread got enough of it to count; else event-loop busy time.
    const byCpu = cpuMs !== null && cpuMs >= CPU_TICKS_MIN * 10;
    return {
      framesPerSec: frames / ((byCpu ? cpuMs! : busyMs) / 1000),
      basis: byCpu ? "thread-cpu" : "event-loop",
      utilization: busyMs / wallMs,
      cpuShare: cpuMs === null ? null : Math.min(1, cpuMs / wallMs),
      offeredPerSec: (offered - offeredBefore) / windowS,
      forwardedPerSec: (forwardedAfter - forwardedBefore) / windowS,
      deliveredPerSec: (received.count - receivedBefore) / windowS,
    };
  } finally {
    running = false;
    // Let the forwarder drain what is queued before the next window starts.
    await sleep(Math.min(100, ms * 0.1));
    f.samples.length = 0;
  }
}

// ---- the run --------------------------------------------------------------------------------

export function checkSizingOptions(o: SizingOptions): void {
  const seconds = o.seconds ?? SIZING_SECONDS_DEFAULT;
  if (!(Number.isFinite(seconds) && seconds >= SIZING_SECONDS_MIN && seconds <= SIZING_SECONDS_MAX)) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--seconds must be between ${SIZING_SECONDS_MIN} and ${SIZING_SECONDS_MAX}, got ${seconds}`, { field: "seconds" });
  }
  const members = o.members ?? SIZING_MEMBERS_DEFAULT;
  if (!(Number.isInteger(members) && members >= 1 && members <= 64)) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `members must be an integer 1-64, got ${members}`, { field: "members" });
  }
  const flows = o.flows ?? SIZING_FLOWS_DEFAULT;
  if (!(Number.isInteger(flows) && flows >= 64 && flows <= 1 << 16)) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `flows must be an integer 64-65536, got ${flows}`, { field: "flows" });
  }
  if (o.memberFramesPerSec !== undefined && !(Number.isFinite(o.memberFramesPerSec) && o.memberFramesPerSec > 0)) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the member rate must be a positive number of frames/s, got ${o.memberFramesPerSec}`, { field: "memberFramesPerSec" });
  }
}

/** Measures and derives (about `seconds` long). */
export async function runSizing(options: SizingOptions = {}): Promise<SizingReport> {
  checkSizingOptions(options);
  const seconds = options.seconds ?? SIZING_SECONDS_DEFAULT;
  const members = options.members ?? SIZING_MEMBERS_DEFAULT;
  const flowCount = options.flows ?? SIZING_FLOWS_DEFAULT;
  const seed = options.seed ?? SIZING_SEED_DEFAULT;
  const thread = options.distributorThread ?? "worker";
  const progress = options.onProgress ?? ((): void => {});
  const budgetMs = seconds * 1000;
  const notes: string[] = [];

  const flows = flowsOf(flowCount, seed);
  const sets = SIZING_FRAME_BYTES.map((bytes) => datagramsOf(flows, bytes));

  progress("measuring the distributor core and the engine (no sockets)...");
  const coreConfig = groupConfig(members, seed, 4789, "127.0.0.2:7000");
  const engine = establishedEngine(flows, seed);
  const core = new Map<number, number>();
  const engineRates = new Map<number, number>();
  for (const d of sets) {
    core.set(d.frameBytes, measureCore(d, coreConfig, budgetMs * CORE_SHARE));
    engineRates.set(d.frameBytes, measureEngine(engine, d, budgetMs * ENGINE_SHARE));
  }

  progress(`measuring the distributor and a no-op forwarder through UDP sockets on loopback (${thread} thread)...`);
  const socketMs = budgetMs * SOCKET_SHARE;
  const baselineMs = budgetMs * BASELINE_SHARE;
  const loadIntervalMs = Math.max(20, Math.round(baselineMs / 8));
  const opened: Socket[] = [];
  const forwarders: Forwarder[] = [];
  const socket = new Map<number, SocketFigures>();
  const baseline = new Map<number, SocketFigures>();
  try {
    const sender = await bindUdp();
    opened.push(sender);
    const sink = await bindUdp();
    opened.push(sink);
    const received = { count: 0 };
    sink.on("message", () => {
      received.count++;
    });
    let sendErrors = 0;
    sender.on("error", () => {
      sendErrors++;
    });
    const sinkAddress = sink.address();
    // Both threads start together (each loads its code); the idle one only ticks its timer.
    const [distributor, noop] = await Promise.all([
      distributorForwarder(thread, loadIntervalMs, members, seed, sender.address().port, `${sinkAddress.address}:${sinkAddress.port}`, notes),
      baselineForwarder(loadIntervalMs, sinkAddress.port),
    ]);
    forwarders.push(distributor, noop);
    // The first window would also pay for compiling the threads' hot paths: a warm-up round.
    await measureSocket(distributor, sender, received, sets[0]!, budgetMs * WARMUP_SHARE, true);
    for (const d of sets) socket.set(d.frameBytes, (await measureSocket(distributor, sender, received, d, socketMs))!);
    await measureSocket(noop, sender, received, sets[0]!, budgetMs * WARMUP_SHARE, true);
    for (const d of sets) baseline.set(d.frameBytes, (await measureSocket(noop, sender, received, d, baselineMs))!);
    if (sendErrors > 0) notes.push(`${sendErrors} sends of the sender failed`);
  } finally {
    for (const f of forwarders) await f.close();
    await Promise.all(opened.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  const measured: MeasuredSize[] = sets.map(({ frameBytes }) => {
    const s = socket.get(frameBytes)!;
    const b = baseline.get(frameBytes)!;
    return {
      frameBytes,
      coreFramesPerSec: core.get(frameBytes)!,
      engineFramesPerSec: engineRates.get(frameBytes)!,
      socketFramesPerSec: s.framesPerSec,
      socketBasis: s.basis,
      socketUtilization: s.utilization,
      socketCpuShare: s.cpuShare,
      offeredPerSec: s.offeredPerSec,
      forwardedPerSec: s.forwardedPerSec,
      deliveredPerSec: s.deliveredPerSec,
      baselineFramesPerSec: b.framesPerSec,
    };
  });
  for (const m of measured) {
    if (m.socketUtilization < 0.5) {
      notes.push(`at ${m.frameBytes} B the sender kept the distributor only ${Math.round(m.socketUtilization * 100)}% busy: its capacity is extrapolated per busy second`);
    }
    if (m.socketCpuShare !== null && m.socketCpuShare < m.socketUtilization * 0.8) {
      notes.push(
        `at ${m.frameBytes} B the distributor's thread was busy ${Math.round(m.socketUtilization * 100)}% of the time but had a CPU only ${Math.round(m.socketCpuShare * 100)}%: the machine is loaded; ` +
          (m.socketBasis === "thread-cpu"
            ? "capacity counts CPU seconds (what it forwards while the load lasts is lower)"
            : "too little CPU time to count, so capacity counts busy seconds and is understated: run again on a quieter machine or with more --seconds"),
      );
    }
  }

  const derived = deriveSizing(measured, options.memberFramesPerSec ?? null);
  const cpuList = cpus();
  return roundedFigures({
    kind: "tandem-sizing",
    date: new Date().toISOString(),
    node: process.version,
    cpu: { model: cpuList[0]?.model ?? "unknown", count: cpuList.length },
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    seconds,
    group: { members, buckets: SIZING_BUCKETS, flows: flowCount, seed },
    distributorThread: thread,
    ...derived,
    notes,
  });
}

/** Figures for people and JSON: values >= 1000 (rates) as integers, smaller ones to 3 decimals. */
function roundedFigures<T>(value: T): T {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value;
    return (Math.abs(value) >= 1000 ? Math.round(value) : Math.round(value * 1000) / 1000) as T;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => roundedFigures(v)) as T;
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = roundedFigures(v);
    return out as T;
  }
  return value;
}
