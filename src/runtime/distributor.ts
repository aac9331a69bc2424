// The distributor's I/O host: two UDP sockets and a tick timer around a DistributorCore,
// running in a worker thread so that the orchestrator's event loop (HTTP, heartbeats) and the
// data path do not starve each other. `inline: true` runs the same host on the caller's
// thread (unit tests, small set-ups).
//
//   caller thread                          worker thread (distributor-worker.ts)
//   startDistributor() --workerData------> DistributorSockets.open(): bind both sockets
//                      <--ready(endpoints)-
//   update(groups)     --postMessage-----> core.configure()   (structured clone, Int16Array too)
//   stats()            --stats(id)-------> core.stats()  --stats(id, value)-->
//   onLoad(listener)   <--load------------ every loadIntervalMs: busy time / wall time of the
//                                          worker's event loop, datagrams handled per second
//   close()            --close-----------> sockets closed --closed--> worker terminated
//
//   vxlan socket:       sites -> core.fromSite; ARP replies, NAs, resolutions, egress -> sites
//   member-link socket: members -> core.fromMember; INGRESS, NEIGH -> members
//
// Invariants:
// - Times handed to the core are in the caller's performance.now() timebase (the worker adds
//   the difference of the two threads' time origins), so stats().epochInstalledAtMs compares
//   with the orchestrator's clock.
// - Sockets send the buffer they are given: each received datagram is a fresh Buffer, owned by
//   the core until it hands it to send(); nothing is reused while the kernel may still read it.
// - Load (utilization) is the event-loop utilization of the thread the sockets run on: the
//   worker's own, so it is the data path's alone; with `inline: true` it is the caller's
//   thread, shared with whatever else runs there (tests only).
// - A broken invariant in the worker (an assertion) is fatal: reported to onFatal, which by
//   default crashes the caller's process loudly. Operating errors (a port in use) reject
//   startDistributor() with a TandemError.

import { createSocket, type Socket } from "node:dgram";
import { lookup as dnsLookup, type LookupOneOptions } from "node:dns";
import { existsSync, readFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { pino } from "pino";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { DistributorGroupConfig } from "./cluster-config.js";
import { DistributorCore, type DistributorStats, type SendFn } from "./distributor-core.js";
import type { Endpoint } from "./member-link.js";

export type { DistributorStats, DistributorGroupStats } from "./distributor-core.js";

/** How often the core's timeouts and announcements run. */
export const TICK_INTERVAL_MS = 50;
/** Requested socket buffers (the kernel may cap them: net.core.rmem_max / wmem_max). */
export const SOCKET_BUFFER_BYTES_DEFAULT = 8 * 1024 * 1024;
/** close() gives the worker this long to close its sockets before terminating it. */
export const CLOSE_TIMEOUT_MS = 5000;
/** The distributor reports its load (utilization, frames/s) this often by default. */
export const LOAD_INTERVAL_MS_DEFAULT = 1000;
/** At most one send-error log line per this interval (the count says how many). */
const SEND_ERROR_LOG_INTERVAL_MS = 1000;

/** The log calls the distributor makes (a pino Logger fits). */
export interface DistributorLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}
export type LogLevel = "info" | "warn" | "error";

export interface DistributorOptions {
  /** Where sites send VXLAN (port 0: the OS chooses; see handle.vxlan). */
  vxlanListen: Endpoint;
  /** Where members send member-link datagrams (port 0: the OS chooses). */
  memberLinkListen: Endpoint;
  /** Run on the caller's thread instead of a worker. */
  inline?: boolean;
  /** Default: JSON lines on stderr. */
  logger?: DistributorLogger;
  /** A fatal error of the data path (worker crash). Default: logged, then rethrown on this thread. */
  onFatal?: (error: Error) => void;
  socketBufferBytes?: number;
  neighboursMax?: number;
  /** How often the load is measured and reported (default LOAD_INTERVAL_MS_DEFAULT). */
  loadIntervalMs?: number;
}

/** The distributor's load over one interval (a sample of onLoad). */
export interface DistributorLoad {
  /** End of the interval, in the caller's performance.now() timebase. */
  atMs: number;
  intervalMs: number;
  /** Busy time / wall time of the distributor's event loop over the interval, 0..1. */
  utilization: number;
  /**
   * CPU time its thread got in the interval (Linux /proc/thread-self/stat, 10 ms ticks; null
   * elsewhere). Below utilization x intervalMs the thread waited for a CPU while busy.
   */
  cpuMs: number | null;
  /** Datagrams received (both sockets) in the interval. */
  frames: number;
  framesPerSec: number;
}

export interface DistributorHandle {
  /** Bound VXLAN endpoint (the OS-chosen port when 0 was asked). */
  readonly vxlan: Endpoint;
  /** Bound member-link endpoint. */
  readonly memberLink: Endpoint;
  /** Installs the groups (replaces the previous set); applied in order with other calls. */
  update(groups: DistributorGroupConfig[]): void;
  stats(): Promise<DistributorStats>;
  /** Calls listener with every load sample (about once per loadIntervalMs). */
  onLoad(listener: (load: DistributorLoad) => void): void;
  /** The latest load sample, null before the first. */
  load(): DistributorLoad | null;
  close(): Promise<void>;
}

// ---- the host (worker or inline) -------------------------------------------------------------

export interface DistributorSocketsOptions {
  vxlanListen: Endpoint;
  memberLinkListen: Endpoint;
  socketBufferBytes: number;
  neighboursMax?: number;
  /** Added to performance.now() to get the caller's timebase. */
  clockOffsetMs: number;
  log: (level: LogLevel, fields: Record<string, unknown>, message: string) => void;
  /** Receives a load sample every loadIntervalMs (default LOAD_INTERVAL_MS_DEFAULT). */
  onLoad?: (load: DistributorLoad) => void;
  loadIntervalMs?: number;
}

/** dgram resolves every send address; ours are IPv4 literals, answered without a DNS tick. */
function ipv4Lookup(
  hostname: string,
  options: LookupOneOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  if (isIPv4(hostname)) callback(null, hostname, 4);
  else dnsLookup(hostname, options, callback);
}

async function bindSocket(endpoint: Endpoint, options: DistributorSocketsOptions, role: string): Promise<Socket> {
  const socket = createSocket({ type: "udp4", lookup: ipv4Lookup });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(endpoint.port, endpoint.address, () => {
        socket.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    try {
      socket.close();
    } catch (closeError) {
      options.log("warn", { role, err: String(closeError) }, "closing a socket that failed to bind");
    }
    const code = (error as NodeJS.ErrnoException).code ?? "unknown";
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `distributor cannot listen for ${role} on ${endpoint.address}:${endpoint.port}: ${code}`, {
      address: endpoint.address,
      port: endpoint.port,
      cause: code,
    });
  }
  const bytes = options.socketBufferBytes;
  try {
    socket.setRecvBufferSize(bytes);
    socket.setSendBufferSize(bytes);
  } catch (error) {
    options.log("warn", { role, requested: bytes, err: String(error) }, "could not set socket buffer sizes");
  }
  // Linux reports twice the granted size, and caps the request at rmem_max / wmem_max silently.
  const received = socket.getRecvBufferSize();
  const sent = socket.getSendBufferSize();
  if (received < bytes || sent < bytes) {
    options.log(
      "warn",
      { role, requested: bytes, receive: received, send: sent },
      "socket buffers smaller than requested (raise net.core.rmem_max / wmem_max): bursts may be dropped by the kernel",
    );
  }
  return socket;
}

const THREAD_STAT_PATH = "/proc/thread-self/stat";
/** Linux exports CPU times in USER_HZ ticks, 100 per second on every architecture. */
const USER_HZ = 100;

/** CPU time (user + system) of the calling thread in ms, or null where Linux's procfs is missing. */
export function threadCpuMs(): number | null {
  let text: string;
  try {
    text = readFileSync(THREAD_STAT_PATH, "latin1");
  } catch (error) {
    // Not Linux (ENOENT), or procfs unreadable: the figure is optional, the data path is not.
    if ((error as NodeJS.ErrnoException).code !== undefined) return null;
    throw error;
  }
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? (ticks * 1000) / USER_HZ : null;
}

/** The sockets, the timer and the core. Lives in the worker (or on the caller's thread). */
export class DistributorSockets {
  readonly vxlan: Endpoint;
  readonly memberLink: Endpoint;
  private readonly core: DistributorCore;
  private readonly timer: NodeJS.Timeout;
  private readonly loadTimer: NodeJS.Timeout;
  /** Datagrams received on both sockets since the last load sample. */
  private frames = 0;
  private sendErrors = 0;
  private sendErrorsLogged = 0;
  private lastSendErrorLogMs = -Infinity;
  private closed = false;

  private constructor(
    private readonly vxlanSocket: Socket,
    private readonly memberSocket: Socket,
    private readonly options: DistributorSocketsOptions,
  ) {
    const va = vxlanSocket.address();
    const ma = memberSocket.address();
    this.vxlan = { address: va.address, port: va.port };
    this.memberLink = { address: ma.address, port: ma.port };
    const offset = options.clockOffsetMs;
    // One shared completion callback: no closure per datagram.
    const onSent = (error: Error | null): void => {
      if (error !== null) this.onSendError(error, performance.now());
    };
    const sendToSite: SendFn = (buf, off, length, port, address) => vxlanSocket.send(buf, off, length, port, address, onSent);
    const sendToMember: SendFn = (buf, off, length, port, address) => memberSocket.send(buf, off, length, port, address, onSent);
    const core = new DistributorCore({ sendToSite, sendToMember, neighboursMax: options.neighboursMax });
    this.core = core;
    vxlanSocket.on("message", (msg, rinfo) => {
      this.frames++;
      core.fromSite(msg, msg.length, rinfo.address, rinfo.port, performance.now() + offset);
    });
    memberSocket.on("message", (msg, rinfo) => {
      this.frames++;
      core.fromMember(msg, msg.length, rinfo.address, rinfo.port, performance.now() + offset);
    });
    for (const [role, socket] of [
      ["vxlan", vxlanSocket],
      ["member-link", memberSocket],
    ] as const) {
      socket.on("error", (error) => options.log("error", { role, err: String(error) }, "distributor socket error"));
    }
    this.timer = setInterval(() => core.tick(performance.now() + offset), TICK_INTERVAL_MS);
    // Utilization is the event loop's: the time spent out of epoll_wait, which includes the
    // receive and send system calls, the core and the kernel's loopback delivery of our sends.
    let elu = performance.eventLoopUtilization();
    let lastMs = performance.now();
    let lastCpuMs = threadCpuMs();
    this.loadTimer = setInterval(() => {
      const nowMs = performance.now();
      const delta = performance.eventLoopUtilization(elu);
      elu = performance.eventLoopUtilization();
      const cpuNowMs = lastCpuMs === null ? null : threadCpuMs();
      const cpuMs = cpuNowMs === null || lastCpuMs === null ? null : cpuNowMs - lastCpuMs;
      lastCpuMs = cpuNowMs;
      const intervalMs = nowMs - lastMs;
      lastMs = nowMs;
      const frames = this.frames;
      this.frames = 0;
      if (intervalMs <= 0) return;
      const utilization = Math.min(1, Math.max(0, delta.utilization));
      options.onLoad?.({ atMs: nowMs + offset, intervalMs, utilization, cpuMs, frames, framesPerSec: (frames * 1000) / intervalMs });
    }, options.loadIntervalMs ?? LOAD_INTERVAL_MS_DEFAULT);
  }

  static async open(options: DistributorSocketsOptions): Promise<DistributorSockets> {
    const vxlan = await bindSocket(options.vxlanListen, options, "vxlan");
    let member: Socket;
    try {
      member = await bindSocket(options.memberLinkListen, options, "member-link");
    } catch (error) {
      vxlan.close();
      throw error;
    }
    const sockets = new DistributorSockets(vxlan, member, options);
    options.log("info", { vxlan: sockets.vxlan, memberLink: sockets.memberLink }, "distributor listening");
    return sockets;
  }

  update(groups: DistributorGroupConfig[]): void {
    if (this.closed) return;
    this.core.configure(groups, performance.now() + this.options.clockOffsetMs);
  }

  stats(): DistributorStats {
    const s = this.core.stats();
    s.drops["send-error"] = this.sendErrors;
    return s;
  }

  private onSendError(error: Error, nowMs: number): void {
    this.sendErrors++;
    if (nowMs - this.lastSendErrorLogMs < SEND_ERROR_LOG_INTERVAL_MS) return;
    this.options.log("warn", { err: String(error), sendErrors: this.sendErrors, since: this.sendErrors - this.sendErrorsLogged }, "distributor send failed");
    this.lastSendErrorLogMs = nowMs;
    this.sendErrorsLogged = this.sendErrors;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.loadTimer);
    await Promise.all([new Promise<void>((r) => this.vxlanSocket.close(() => r())), new Promise<void>((r) => this.memberSocket.close(() => r()))]);
  }
}

// ---- worker protocol ---------------------------------------------------------------------------

export interface DistributorWorkerData {
  vxlanListen: Endpoint;
  memberLinkListen: Endpoint;
  socketBufferBytes: number;
  neighboursMax?: number;
  loadIntervalMs?: number;
  /** The caller thread's performance.timeOrigin. */
  timeOriginMs: number;
}

export type DistributorWorkerRequest = { type: "update"; groups: DistributorGroupConfig[] } | { type: "stats"; id: number } | { type: "close" };

export type DistributorWorkerReply =
  | { type: "ready"; vxlan: Endpoint; memberLink: Endpoint }
  | { type: "failed"; code: string; message: string; details?: Record<string, unknown> }
  | { type: "stats"; id: number; stats: DistributorStats }
  | { type: "load"; load: DistributorLoad }
  | { type: "log"; level: LogLevel; fields: Record<string, unknown>; message: string }
  | { type: "closed" };

/** The compiled worker script: beside this file when compiled; under dist/ when run from sources (vitest). */
export function distributorWorkerUrl(): URL {
  const here = import.meta.url;
  const url = here.endsWith(".ts") ? new URL("../../dist/src/runtime/distributor-worker.js", here) : new URL("./distributor-worker.js", here);
  const path = fileURLToPath(url);
  if (!existsSync(path)) {
    throw new TandemError(ErrorCode.FILE_NOT_FOUND, `distributor worker script ${path} is missing: build with "npx tsc -p ." (or start the distributor inline)`, { path });
  }
  return url;
}

// ---- caller side -------------------------------------------------------------------------------

export async function startDistributor(options: DistributorOptions): Promise<DistributorHandle> {
  const logger: DistributorLogger = options.logger ?? pino({ level: "info" }, pino.destination(2));
  const log = (level: LogLevel, fields: Record<string, unknown>, message: string): void => logger[level]({ component: "distributor", ...fields }, message);
  const socketBufferBytes = options.socketBufferBytes ?? SOCKET_BUFFER_BYTES_DEFAULT;
  if (options.inline === true) {
    const listeners: ((load: DistributorLoad) => void)[] = [];
    let latest: DistributorLoad | null = null;
    const sockets = await DistributorSockets.open({
      vxlanListen: options.vxlanListen,
      memberLinkListen: options.memberLinkListen,
      socketBufferBytes,
      neighboursMax: options.neighboursMax,
      clockOffsetMs: 0,
      log,
      loadIntervalMs: options.loadIntervalMs,
      onLoad: (load) => {
        latest = load;
        for (const listener of listeners) listener(load);
      },
    });
    return {
      vxlan: sockets.vxlan,
      memberLink: sockets.memberLink,
      update: (groups) => sockets.update(groups),
      stats: () => Promise.resolve(sockets.stats()),
      onLoad: (listener) => void listeners.push(listener),
      load: () => latest,
      close: () => sockets.close(),
    };
  }
  const onFatal =
    options.onFatal ??
    ((error: Error): void => {
      queueMicrotask(() => {
        throw error;
      });
    });
  return WorkerDistributor.start(
    {
      vxlanListen: options.vxlanListen,
      memberLinkListen: options.memberLinkListen,
      socketBufferBytes,
      neighboursMax: options.neighboursMax,
      loadIntervalMs: options.loadIntervalMs,
      timeOriginMs: performance.timeOrigin,
    },
    log,
    onFatal,
  );
}

class WorkerDistributor implements DistributorHandle {
  private readonly statsWaiting = new Map<number, { resolve: (s: DistributorStats) => void; reject: (e: Error) => void }>();
  private nextStatsId = 1;
  private readonly loadListeners: ((load: DistributorLoad) => void)[] = [];
  private latestLoad: DistributorLoad | null = null;
  private closing: Promise<void> | null = null;
  private closedReply: (() => void) | null = null;
  private dead: Error | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly vxlan: Endpoint,
    readonly memberLink: Endpoint,
    private readonly log: (level: LogLevel, fields: Record<string, unknown>, message: string) => void,
    private readonly onFatal: (error: Error) => void,
  ) {
    worker.on("message", (m: DistributorWorkerReply) => this.onMessage(m));
    worker.on("error", (error) => this.fail(error));
    worker.on("exit", (code) => {
      if (this.closing === null) this.fail(new Error(`distributor worker exited unexpectedly (code ${code})`));
    });
  }

  static start(
    data: DistributorWorkerData,
    log: (level: LogLevel, fields: Record<string, unknown>, message: string) => void,
    onFatal: (error: Error) => void,
  ): Promise<DistributorHandle> {
    const worker = new Worker(distributorWorkerUrl(), { workerData: data, name: "tandem-distributor" });
    return new Promise<DistributorHandle>((resolve, reject) => {
      const onMessage = (m: DistributorWorkerReply): void => {
        if (m.type === "log") return log(m.level, m.fields, m.message);
        cleanup();
        if (m.type === "ready") {
          resolve(new WorkerDistributor(worker, m.vxlan, m.memberLink, log, onFatal));
        } else if (m.type === "failed") {
          void worker.terminate();
          reject(new TandemError(m.code, m.message, m.details));
        } else {
          void worker.terminate();
          reject(new TandemError(ErrorCode.INTERNAL, `distributor worker sent ${m.type} before ready`));
        }
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new TandemError(ErrorCode.INTERNAL, `distributor worker exited before it was ready (code ${code})`));
      };
      const cleanup = (): void => {
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
      };
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
    });
  }

  private onMessage(m: DistributorWorkerReply): void {
    switch (m.type) {
      case "log":
        this.log(m.level, m.fields, m.message);
        return;
      case "stats": {
        const waiting = this.statsWaiting.get(m.id);
        if (waiting === undefined) return;
        this.statsWaiting.delete(m.id);
        waiting.resolve(m.stats);
        return;
      }
      case "load":
        this.latestLoad = m.load;
        for (const listener of this.loadListeners) listener(m.load);
        return;
      case "closed":
        this.closedReply?.();
        return;
      default:
        this.log("error", { type: m.type }, "unexpected message from the distributor worker");
    }
  }

  private fail(error: Error): void {
    if (this.dead !== null) return;
    this.dead = error;
    for (const waiting of this.statsWaiting.values()) waiting.reject(error);
    this.statsWaiting.clear();
    this.log("error", { err: String(error), stack: error.stack }, "distributor worker failed: the data path is down");
    this.onFatal(error);
  }

  private post(request: DistributorWorkerRequest): void {
    this.worker.postMessage(request);
  }

  update(groups: DistributorGroupConfig[]): void {
    if (this.dead !== null || this.closing !== null) return;
    this.post({ type: "update", groups });
  }

  stats(): Promise<DistributorStats> {
    if (this.dead !== null) return Promise.reject(this.dead);
    if (this.closing !== null) return Promise.reject(new TandemError(ErrorCode.INVALID_STATE, "the distributor is closed"));
    const id = this.nextStatsId++;
    return new Promise<DistributorStats>((resolve, reject) => {
      this.statsWaiting.set(id, { resolve, reject });
      this.post({ type: "stats", id });
    });
  }

  onLoad(listener: (load: DistributorLoad) => void): void {
    this.loadListeners.push(listener);
  }

  load(): DistributorLoad | null {
    return this.latestLoad;
  }

  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = (async () => {
      for (const waiting of this.statsWaiting.values()) waiting.reject(new TandemError(ErrorCode.INVALID_STATE, "the distributor is closing"));
      this.statsWaiting.clear();
      if (this.dead === null) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          this.closedReply = resolve;
          timer = setTimeout(() => {
            this.log("warn", { timeoutMs: CLOSE_TIMEOUT_MS }, "distributor worker did not close in time: terminating it");
            resolve();
          }, CLOSE_TIMEOUT_MS);
          this.worker.once("exit", () => resolve());
          this.post({ type: "close" });
        });
        clearTimeout(timer);
      }
      await this.worker.terminate();
    })();
    return this.closing;
  }
}
