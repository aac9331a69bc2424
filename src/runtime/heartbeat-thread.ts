// A member's heartbeats on a thread of their own. The orchestrator calls a member DOWN after a
// few hundred milliseconds of silence, while the member's main thread runs synchronous work
// that can take that long on a loaded machine (building a connection table of a million
// entries, installing an epoch, a burst of packets). Liveness and load are different
// questions: this thread answers "is the process alive and reachable" on time, every
// interval, with the latest report the main thread posted; the main thread's own health is
// bounded by MAIN_SILENCE_MAX_MS: when it has posted nothing for that long (hung, or in an
// endless loop) the thread stops heartbeating and the orchestrator fails the member over.
// A SIGKILL ends both threads at once: silence, DOWN as before.
//
// This file is both the caller side (HeartbeatThread) and the worker's entry (loaded as a
// worker with workerData.tandemHeartbeatWorker).
//
// Invariants: at most one heartbeat request in flight; answers are posted to the main thread
// in the order received; the worker never heartbeats with a report older than
// MAIN_SILENCE_MAX_MS.

import { existsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { TandemClient } from "../api/client.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { HeartbeatAnswer, HeartbeatInput } from "./orchestrator-daemon.js";

/** The main thread may be busy this long before the member stops claiming to be alive. */
export const MAIN_SILENCE_MAX_MS = 2000;
/** A heartbeat answer later than this is worth nothing: abandon it and send the next one. */
export const HEARTBEAT_REQUEST_TIMEOUT_MS = 1000;

interface WorkerOptions {
  server: string;
  token: string | null;
  appliance: string;
  intervalMs: number;
}

type ToWorker = { type: "report"; input: HeartbeatInput } | { type: "interval"; ms: number } | { type: "stop" };
type FromWorker = { type: "answer"; answer: HeartbeatAnswer; rttMs: number } | { type: "error"; message: string } | { type: "withheld"; silentMs: number };

function workerUrl(): URL {
  const here = import.meta.url;
  const url = here.endsWith(".ts") ? new URL("../../dist/src/runtime/heartbeat-thread.js", here) : new URL(here);
  const path = fileURLToPath(url);
  if (!existsSync(path)) throw new TandemError(ErrorCode.FILE_NOT_FOUND, `heartbeat worker script ${path} is missing: build with "npx tsc -p ."`, { path });
  return url;
}

/** Caller side: post reports, receive answers. */
export class HeartbeatThread {
  private readonly worker: Worker;
  onAnswer: (answer: HeartbeatAnswer, rttMs: number) => void = () => {};
  onError: (message: string) => void = () => {};
  /** The thread withheld a heartbeat because the main thread posted nothing for too long. */
  onWithheld: (silentMs: number) => void = () => {};

  constructor(options: WorkerOptions) {
    this.worker = new Worker(workerUrl(), { workerData: { tandemHeartbeatWorker: true, options } });
    this.worker.unref();
    this.worker.on("message", (m: FromWorker) => {
      if (m.type === "answer") this.onAnswer(m.answer, m.rttMs);
      else if (m.type === "error") this.onError(m.message);
      else this.onWithheld(m.silentMs);
    });
    this.worker.on("error", (error) => this.onError(`heartbeat thread failed: ${String(error)}`));
  }

  /** The latest report (sent with every heartbeat until the next one arrives). */
  report(input: HeartbeatInput): void {
    this.worker.postMessage({ type: "report", input } satisfies ToWorker);
  }

  setIntervalMs(ms: number): void {
    this.worker.postMessage({ type: "interval", ms } satisfies ToWorker);
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage({ type: "stop" } satisfies ToWorker);
    await exited;
  }
}

// ---- worker side -------------------------------------------------------------------------------

function runWorker(options: WorkerOptions): void {
  const port = parentPort!;
  const client = new TandemClient({ server: options.server, token: options.token, timeoutMs: HEARTBEAT_REQUEST_TIMEOUT_MS });
  let input: HeartbeatInput | null = null;
  let reportedAtMs = 0;
  let intervalMs = options.intervalMs;
  let inFlight = false;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  const beat = (): void => {
    timer = setTimeout(beat, intervalMs);
    if (inFlight || input === null) return;
    const now = performance.now();
    if (now - reportedAtMs > MAIN_SILENCE_MAX_MS) {
      port.postMessage({ type: "withheld", silentMs: now - reportedAtMs } satisfies FromWorker);
      return;
    }
    inFlight = true;
    client.heartbeat(options.appliance, input).then(
      (answer) => {
        inFlight = false;
        if (!stopped) port.postMessage({ type: "answer", answer, rttMs: performance.now() - now } satisfies FromWorker);
      },
      (error: unknown) => {
        inFlight = false;
        if (!stopped) port.postMessage({ type: "error", message: error instanceof Error ? error.message : String(error) } satisfies FromWorker);
      },
    );
  };

  port.on("message", (m: ToWorker) => {
    if (m.type === "report") {
      const first = input === null;
      input = m.input;
      reportedAtMs = performance.now();
      if (first) {
        if (timer !== null) clearTimeout(timer);
        beat();
      }
    } else if (m.type === "interval") {
      intervalMs = Math.max(5, m.ms);
    } else {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      port.close();
    }
  });
}

if (!isMainThread && (workerData as { tandemHeartbeatWorker?: boolean } | null)?.tandemHeartbeatWorker === true && parentPort !== null) {
  runWorker((workerData as { options: WorkerOptions }).options);
}
