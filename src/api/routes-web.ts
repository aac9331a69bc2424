// The web UI's side of the API: the built front end (web/dist) served at /, and the routes the
// UI needs beyond the others: who the caller is (to show actions by role), a group's bucket
// map readable by monitors, and a live stream (server-sent events over a plain GET, so a
// fetch with the Authorization header can follow it) of one snapshot per second, the load
// history of the last minutes and new events.
//
// Invariants kept: only files found under web/dist at start are served, from memory (no path
// from a request ever reaches the file system); streams are bounded (at most STREAMS_MAX at
// once; a stream whose reader stops reading is closed past STREAM_BUFFER_BYTES_MAX); one
// snapshot is built and serialised per tick, whatever the number of streams; the sampler's
// timer and every stream end when the app closes (preClose), so close() never waits on a
// browser.

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply } from "fastify";
import type { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { route } from "./server.js";
import * as S from "./schemas.js";
import type { BucketMap, GroupSummary, StreamMember, StreamSample, StreamSnapshot } from "./types.js";

/** One snapshot per second: live enough for people, and cheap (a few members per group). */
export const STREAM_INTERVAL_MS = 1_000;
/** Load history kept for the charts: 5 minutes of one-second samples. */
export const HISTORY_SAMPLES_MAX = 300;
/** Open streams at once (browser tabs); more are refused with TANDEM_BUSY. */
export const STREAMS_MAX = 64;
/** Unsent bytes a stream may queue before it is closed as a reader that stopped reading. */
export const STREAM_BUFFER_BYTES_MAX = 4 * 1024 * 1024;
/** Events sent at connect, and at most per tick afterwards (the rest follow at the next tick). */
export const STREAM_EVENTS_MAX = 100;
/** The built UI is small (a few hundred KB); these bound what start-up reads into memory. */
export const WEB_FILES_MAX = 256;
export const WEB_BYTES_MAX = 16 * 1024 * 1024;

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Scripts and styles come from this origin only; the API is the only thing the UI connects to. */
const CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

interface WebFile {
  body: Buffer;
  type: string;
  /** Vite names assets by content hash: they never change under one name. */
  immutable: boolean;
}

/** web/dist of this package, from the sources (src/api) or compiled (dist/src/api); null: not built. */
export function findWebRoot(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of [["..", ".."], ["..", "..", ".."]]) {
    const root = join(here, ...up, "web", "dist");
    if (existsSync(join(root, "index.html"))) return root;
  }
  return null;
}

/** Every file under `root`, by URL path ("/index.html", "/assets/index-1a2b.js"). */
export function loadWebFiles(root: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  let bytes = 0;
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(path);
        continue;
      }
      if (!entry.isFile()) continue;
      bytes += statSync(path).size;
      if (files.size >= WEB_FILES_MAX || bytes > WEB_BYTES_MAX) {
        throw new TandemError(ErrorCode.INVALID_STATE, `${root} holds more than ${WEB_FILES_MAX} files or ${WEB_BYTES_MAX} bytes: is it the built web UI?`);
      }
      const url = `/${relative(root, path).split(sep).join("/")}`;
      files.set(url, { body: readFileSync(path), type: CONTENT_TYPES[extname(path)] ?? "application/octet-stream", immutable: url.startsWith("/assets/") });
    }
  };
  walk(root);
  return files;
}

function registerStaticFiles(app: FastifyInstance, root: string | null): void {
  const files = root === null ? new Map<string, WebFile>() : loadWebFiles(root);
  const send = (path: string, reply: FastifyReply) => {
    const file = files.get(path);
    if (file === undefined) {
      const message = files.size === 0 ? "the web UI is not built: run npm run build:web" : `no file ${path}`;
      return reply.code(404).type("application/json").send({ code: ErrorCode.NOT_FOUND, message });
    }
    return reply
      .header("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache")
      .header("content-security-policy", CONTENT_SECURITY_POLICY)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .type(file.type)
      .send(file.body);
  };
  // Public: the UI's files hold no data; the token is asked for by the page itself.
  const common = { method: "GET" as const, config: { access: "public" as const }, schema: { hide: true } };
  app.route({ ...common, url: "/", handler: (_request, reply) => send("/index.html", reply) });
  app.route({ ...common, url: "/index.html", handler: (_request, reply) => send("/index.html", reply) });
  app.route({ ...common, url: "/assets/*", handler: (request, reply) => send(`/assets/${(request.params as Record<string, string>)["*"] ?? ""}`, reply) });
}

/** Owner/backup per bucket of a group's current table, and the buckets a transition fills. */
export function bucketMapOf(d: OrchestratorDaemon, group: string): BucketMap | null {
  const doc = d.distribution(group); // TANDEM_SG_NOT_FOUND
  if (doc === null) return null;
  let filling = "";
  if (doc.fills.length > 0) {
    const bits = new Uint8Array(Math.ceil(doc.bucketCount / 8));
    for (const f of doc.fills) bits[f.bucket >> 3]! |= 1 << (f.bucket & 7);
    filling = Buffer.from(bits).toString("base64");
  }
  return { group, epoch: doc.epoch, bucketCount: doc.bucketCount, members: doc.members, owner: doc.owner, backup: doc.backup, filling };
}

/** Every group, member and spare appliance as the UI shows them, now. Throws NOT_LEADER on a standby. */
export function snapshotOf(d: OrchestratorDaemon): StreamSnapshot {
  const view = d.controlPlane.view();
  const nowMs = d.nowMs();
  const groups = view.groups(nowMs) as unknown as GroupSummary[];
  const members: StreamMember[] = [];
  const ruleHits: Record<string, Record<string, number>> = {};
  for (const g of groups) {
    ruleHits[g.name] = d.ruleHitsOf(g.name);
    for (const m of view.members(g.name, nowMs)) {
      const counters = d.countersOf(m.appliance);
      // A silent member's last report is history, not its load: charts and tables show a gap.
      const load = m.alive ? m.load : null;
      members.push({
        appliance: m.appliance,
        group: m.group,
        state: m.state,
        alive: m.alive,
        weight: m.weight,
        inTable: m.inTable,
        owned: m.owned,
        backups: m.backups,
        cpuPct: load?.cpuPct ?? null,
        packetsPerSec: load?.packetsPerSec ?? null,
        connections: load?.connections ?? null,
        corrections: counters?.corrections ?? null,
        syncLagMs: counters?.syncLagMs ?? null,
        epoch: m.load?.epoch ?? null,
      });
    }
  }
  const pool = view.appliances(nowMs).filter((a) => a.group === null);
  return { atMs: Date.now(), groups, members, pool, ruleHits, distributor: d.distributorLoad() };
}

function eventText(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The streams and the sampler behind them. */
class LiveHub {
  private readonly streams = new Set<ServerResponse>();
  private readonly history: StreamSample[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastEventSeq: number | null = null;
  private polling = false;
  private closed = false;

  constructor(
    private readonly d: OrchestratorDaemon,
    private readonly log: FastifyBaseLogger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), STREAM_INTERVAL_MS);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  /** Takes over the response: history, a first snapshot and the recent events, then every tick. */
  subscribe(res: ServerResponse): void {
    if (this.closed) throw new TandemError(ErrorCode.NOT_LEADER, "the orchestrator is shutting down");
    if (this.streams.size >= STREAMS_MAX) throw new TandemError(ErrorCode.BUSY, `${STREAMS_MAX} live streams are open already; close a browser tab`);
    const snapshot = snapshotOf(this.d); // a standby refuses here, before any byte is sent
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" });
    this.streams.add(res);
    res.on("close", () => this.streams.delete(res));
    this.write(res, eventText("history", this.history) + eventText("snapshot", snapshot));
    this.d.events({ limit: STREAM_EVENTS_MAX }).then(
      (events) => this.write(res, eventText("events", events)),
      (error: unknown) => this.log.warn({ err: error }, "stream: reading the recent events failed"),
    );
  }

  private write(res: ServerResponse, text: string): void {
    if (!this.streams.has(res)) return;
    if (res.writableLength > STREAM_BUFFER_BYTES_MAX) {
      this.log.warn({ queuedBytes: res.writableLength }, "stream: the reader stopped reading; closing it");
      this.streams.delete(res);
      res.destroy();
      return;
    }
    res.write(text);
  }

  private broadcast(text: string): void {
    for (const res of this.streams) this.write(res, text);
  }

  private async tick(): Promise<void> {
    let snapshot: StreamSnapshot;
    try {
      snapshot = snapshotOf(this.d);
    } catch (error) {
      if (!(error instanceof TandemError)) throw error;
      // A standby (or a closing daemon) has no view: say so, and keep the streams for its return.
      this.broadcast(eventText("unavailable", { code: error.code, message: error.message }));
      return;
    }
    const load: StreamSample["load"] = {};
    for (const m of snapshot.members) load[m.appliance] = [m.packetsPerSec, m.connections];
    this.history.push({ atMs: snapshot.atMs, load });
    if (this.history.length > HISTORY_SAMPLES_MAX) this.history.shift();
    if (this.streams.size === 0) return;
    this.broadcast(eventText("snapshot", snapshot));
    await this.pollEvents();
  }

  /** New events since the last poll (a store read per tick, only while someone watches). */
  private async pollEvents(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      if (this.lastEventSeq === null) {
        // New streams got the recent events at connect; follow from the newest.
        const newest = await this.d.events({ limit: 1 });
        this.lastEventSeq = newest[0]?.seq ?? 0;
        return;
      }
      const events = await this.d.events({ afterSeq: this.lastEventSeq, limit: STREAM_EVENTS_MAX });
      if (events.length === 0) return;
      this.lastEventSeq = events[events.length - 1]!.seq ?? this.lastEventSeq;
      this.broadcast(eventText("events", events));
    } catch (error) {
      if (!(error instanceof TandemError)) throw error;
      this.log.warn({ err: error }, "stream: reading new events failed; retrying at the next tick");
    } finally {
      this.polling = false;
    }
  }
}

export function registerWebRoutes(app: FastifyInstance, d: OrchestratorDaemon, options: { webRoot?: string | null } = {}): void {
  const O = "operations";
  route(app, { method: "GET", url: "/api/whoami", access: "monitor", tag: O, summary: "The caller's token name and role (the web UI shows actions by role)" }, (c) => ({
    name: c.principal.name,
    role: c.principal.role,
  }));
  route(
    app,
    {
      method: "GET",
      url: "/api/groups/:name/buckets",
      access: "monitor",
      tag: O,
      summary: "The group's bucket map: owner and backup per bucket, buckets being filled (null: no table yet)",
      description: "owner and backup are base64 of little-endian int16 indexes into members (-1: none); filling is a base64 bitmap (bit b%8 of byte b/8), empty when no transition fills.",
      params: S.PARAMS_GROUP,
    },
    (c) => bucketMapOf(d, c.params.name!),
  );

  const hub = new LiveHub(d, app.log);
  hub.start();
  app.addHook("preClose", async () => hub.close());
  route(
    app,
    {
      method: "GET",
      url: "/api/stream",
      access: "monitor",
      tag: O,
      summary: "Live updates as server-sent events: snapshot (each second), history (at connect), events, unavailable",
      description:
        "text/event-stream. Read it with fetch and the Authorization header. Events: history (StreamSample[], the last minutes, at connect), snapshot (StreamSnapshot, at connect and each second), events (EventRecord[], new ones), unavailable ({code, message}: this orchestrator is a standby).",
    },
    (_c, _request, reply) => {
      hub.subscribe(reply.raw); // throws (before taking over) when refused
      reply.hijack();
    },
  );

  registerStaticFiles(app, options.webRoot === undefined ? findWebRoot() : options.webRoot);
}
