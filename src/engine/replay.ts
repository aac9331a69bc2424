// Replay: run captures through one engine and report what it did. The pure part of
// `tandem replay` (the CLI reads the files; this function sees bytes only).
//
// The engine clock follows the capture timestamps, kept monotonic across packets and files
// (a capture may step backwards; conntrack time must not). The expiry sweep runs as the
// clock advances, as it would on a live member.

import { openCapture, type CaptureReader } from "../packet/pcap.js";
import { Engine, type EngineOptions } from "./engine.js";
import { CONN_STATE_NAMES } from "./types.js";

export interface ReplayInput {
  name: string;
  bytes: Uint8Array;
}

export interface ReplayFileResult {
  name: string;
  ok: boolean;
  packets: number;
  /** Set when the file could not be read at all, or ended early (then ok stays true if frames were read). */
  error?: { code: string; message: string };
  linkTypes: number[];
}

export interface ReplayReport {
  files: ReplayFileResult[];
  packets: number;
  bytes: number;
  verdicts: Record<string, number>;
  dropReasons: Record<string, number>;
  parseFailures: Record<string, number>;
  connections: {
    created: number;
    established: number;
    reset: number;
    closed: number;
    expired: number;
    evicted: number;
    live: number;
  };
  /** States of the connections still in the table at the end. */
  statesAtEnd: Record<string, number>;
  ruleHits: Record<string, number> | null;
  elapsedMs: number;
  packetsPerS: number;
}

export interface ReplayOptions extends Partial<EngineOptions> {
  /** A monotonic clock for measuring throughput (injected: the core reads no clock). */
  wallClockMs: () => number;
}

/** Packets between expiry sweeps. */
const SWEEP_EVERY_PACKETS = 256;

export function replayCaptures(inputs: readonly ReplayInput[], options: ReplayOptions): ReplayReport {
  const engine = new Engine({
    capacity: options.capacity ?? 1 << 20,
    hashSeed: options.hashSeed ?? 0x7a4d3e11,
    ruleBase: options.ruleBase ?? null,
    routes: options.routes ?? null,
    sweepBudget: options.sweepBudget ?? 4096,
  });
  const files: ReplayFileResult[] = [];
  let nowMs = 0;
  let sinceSweep = 0;
  const started = options.wallClockMs();
  for (const input of inputs) {
    const opened = openCapture(input.bytes, input.name);
    if (!opened.ok) {
      files.push({ name: input.name, ok: false, packets: 0, error: { code: opened.code, message: opened.message }, linkTypes: [] });
      continue;
    }
    const reader: CaptureReader = opened;
    const linkTypes = new Set<number>();
    let packets = 0;
    while (reader.next()) {
      if (reader.timestampMs > nowMs) nowMs = reader.timestampMs;
      linkTypes.add(reader.linkType);
      engine.processFrame(reader.data, reader.offset, reader.capturedLength, reader.linkType, 0, nowMs);
      packets++;
      if (++sinceSweep >= SWEEP_EVERY_PACKETS) {
        sinceSweep = 0;
        engine.tick(nowMs);
      }
    }
    const result: ReplayFileResult = { name: input.name, ok: true, packets, linkTypes: [...linkTypes] };
    if (reader.error !== null) result.error = { code: reader.error.code, message: reader.error.message };
    const unsupportedOnly = reader.unsupportedOnlyError();
    if (unsupportedOnly !== null) {
      result.ok = false;
      result.error = { code: unsupportedOnly.code, message: unsupportedOnly.message };
    }
    files.push(result);
  }
  const elapsedMs = Math.max(options.wallClockMs() - started, 1e-3);
  const counters = engine.counters.toJSON() as {
    verdicts: Record<string, number>;
    dropReasons: Record<string, number>;
    parseFailures: Record<string, number>;
  };
  const statesAtEnd: Record<string, number> = {};
  engine.table.forEachLive((id) => {
    const state = engine.table.state(id);
    const name = CONN_STATE_NAMES[state] ?? String(state);
    statesAtEnd[name] = (statesAtEnd[name] ?? 0) + 1;
  });
  let ruleHits: Record<string, number> | null = null;
  if (engine.ruleBase !== null) {
    ruleHits = {};
    for (let i = 0; i < engine.ruleBase.ruleCount; i++) ruleHits[engine.ruleBase.nameOf(i)] = engine.ruleBase.hits[i]!;
  }
  const c = engine.counters;
  return {
    files,
    packets: c.packets,
    bytes: c.bytes,
    verdicts: counters.verdicts,
    dropReasons: counters.dropReasons,
    parseFailures: counters.parseFailures,
    connections: {
      created: c.connectionsCreated,
      established: c.connectionsEstablished,
      reset: c.connectionsReset,
      closed: c.connectionsClosed,
      expired: c.connectionsExpired,
      evicted: engine.table.stats.evicted,
      live: engine.table.size,
    },
    statesAtEnd,
    ruleHits,
    elapsedMs,
    packetsPerS: Math.round((c.packets / elapsedMs) * 1000),
  };
}

