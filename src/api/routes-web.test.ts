// The web UI's routes over a real daemon on a temporary SQLite store: the static files (from
// memory, public, with cache and security headers, nothing outside the built directory), who
// the caller is, the bucket map for monitors (the same table as the members' distribution),
// error details on the wire (a policy error's rule, field and line), and the live stream read
// through TandemClient.stream (history, snapshot, events; refused to member tokens; ended by
// app.close() rather than holding it open).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeRoles } from "../orchestrator/transitions.js";
import { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import { TandemError } from "../stdx/errors.js";
import { TandemClient } from "./client.js";
import { buildApi } from "./server.js";
import type { BucketMap, StreamSample, StreamSnapshot } from "./types.js";

let dir: string;
let webRoot: string;
let daemon: OrchestratorDaemon;
let app: FastifyInstance;
let url: string;
const tokens = { admin: "", monitor: "", member: "" };

const appliance = (id: string) => ({ id, model: "tg-4000", cores: 4, memoryMb: 8192, version: "1.0.0", address: `${id}.lab:7471` });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tandem-web-api-"));
  webRoot = join(dir, "web");
  mkdirSync(join(webRoot, "assets"), { recursive: true });
  writeFileSync(join(webRoot, "index.html"), "<!doctype html><title>t</title>");
  writeFileSync(join(webRoot, "assets", "app-1a2b.js"), "console.log(1)");
  // Slow failure detection: a1 heartbeats once and must stay alive for the whole file.
  daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: pino({ level: "silent" }), controlPlane: { health: { heartbeatIntervalMs: 1_000, downAfterMs: 60_000 } } });
  tokens.admin = (await daemon.start()).adminToken!;
  app = await buildApi(daemon, { webRoot });
  url = await app.listen({ host: "127.0.0.1", port: 0 });
  const admin = new TandemClient({ server: url, token: tokens.admin });
  tokens.monitor = (await admin.createToken("watcher", "monitor")).token;
  tokens.member = (await admin.createToken("a1", "member")).token;
  for (const id of ["a1", "a2", "a3"]) await admin.addAppliance(appliance(id));
  await admin.createGroup({ name: "web", bucketCount: 1024, seed: 7 });
  await admin.createGroup({ name: "empty" });
  for (const id of ["a1", "a2"]) await admin.assign("web", id);
  await admin.applyChanges("web");
  await new TandemClient({ server: url, token: tokens.member }).heartbeat("a1", { epoch: 1, cpuPct: 10, packetsPerSec: 500, connections: 7 });
});

afterAll(async () => {
  await app.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("static files of the web UI", () => {
  it("serves index.html at / without a token, uncached, with a content security policy", async () => {
    const r = await app.inject({ method: "GET", url: "/" });
    expect(r.statusCode).toBe(200);
    expect(r.headers["content-type"]).toContain("text/html");
    expect(r.body).toContain("<title>t</title>");
    expect(r.headers["cache-control"]).toBe("no-cache");
    expect(r.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("serves hashed assets as immutable, and nothing that is not a file of the build", async () => {
    const js = await app.inject({ method: "GET", url: "/assets/app-1a2b.js" });
    expect(js.statusCode).toBe(200);
    expect(js.headers["content-type"]).toContain("text/javascript");
    expect(js.headers["cache-control"]).toContain("immutable");
    for (const path of ["/assets/missing.js", "/assets/../index.html", "/assets/%2e%2e/%2e%2e/package.json", "/assets/"]) {
      const r = await app.inject({ method: "GET", url: path });
      expect(r.statusCode, path).toBe(path === "/assets/../index.html" ? 200 : 404); // the URL normalises to /index.html
      if (r.statusCode === 404) expect(JSON.parse(r.body).code).toBe("TANDEM_NOT_FOUND");
    }
  });

  it("says how to build the UI when it is not built", async () => {
    const bare = await buildApi(daemon, { webRoot: null });
    try {
      const r = await bare.inject({ method: "GET", url: "/" });
      expect(r.statusCode).toBe(404);
      expect(JSON.parse(r.body).message).toContain("npm run build:web");
    } finally {
      await bare.close();
    }
  });
});

describe("routes for the web UI", () => {
  it("says who the caller is; member tokens are not for people", async () => {
    expect(await new TandemClient({ server: url, token: tokens.monitor }).whoami()).toEqual({ name: "watcher", role: "monitor" });
    expect(await new TandemClient({ server: url, token: tokens.admin }).whoami()).toMatchObject({ role: "admin" });
    await expect(new TandemClient({ server: url, token: tokens.member }).whoami()).rejects.toMatchObject({ code: "TANDEM_FORBIDDEN" });
  });

  it("gives monitors the bucket map: the members' own table, owner and backup per bucket", async () => {
    const map = (await new TandemClient({ server: url, token: tokens.monitor }).buckets("web")) as BucketMap;
    const dist = (await new TandemClient({ server: url, token: tokens.member }).distribution("web"))!;
    expect(map).toMatchObject({ group: "web", epoch: dist.epoch, bucketCount: 1024, members: ["a1", "a2"], filling: "" });
    expect(map.owner).toBe(dist.owner);
    expect(map.backup).toBe(dist.backup);
    const owner = decodeRoles(map.owner, map.bucketCount)!;
    const backup = decodeRoles(map.backup, map.bucketCount)!;
    for (let b = 0; b < map.bucketCount; b++) {
      expect(owner[b]! === 0 || owner[b]! === 1).toBe(true);
      expect(backup[b]).toBe(1 - owner[b]!);
    }
    expect(await new TandemClient({ server: url, token: tokens.monitor }).buckets("empty")).toBeNull();
    await expect(new TandemClient({ server: url, token: tokens.monitor }).buckets("nope")).rejects.toMatchObject({ code: "TANDEM_SG_NOT_FOUND", details: { status: 404 } });
  });

  it("sends a TandemError's details with its code: a policy error names the rule, field and line", async () => {
    const text = ["rules:", "  - name: web", "    protocol: tcp", "    ports: [80, 99999]", "    action: accept", ""].join("\n");
    const r = await app.inject({ method: "PUT", url: "/api/groups/web/policy", headers: { authorization: `Bearer ${tokens.admin}` }, payload: { policyText: text } });
    expect(r.statusCode).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ code: "TANDEM_POLICY_INVALID", details: { rule: "web", ruleIndex: 0, field: "ports", line: 4 } });
    const error = await new TandemClient({ server: url, token: tokens.admin }).applyPolicy("web", { policyText: text }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).details).toEqual({ rule: "web", ruleIndex: 0, field: "ports", line: 4, status: 400 });
    // An error without details keeps the plain {code, message} body.
    const plain = await app.inject({ method: "GET", url: "/api/groups" });
    expect(Object.keys(JSON.parse(plain.body)).sort()).toEqual(["code", "message"]);
  });

  it("streams the load history, a snapshot at once and the recent events to a monitor", async () => {
    const abort = new AbortController();
    const seen: { name: string; data: unknown }[] = [];
    await new TandemClient({ server: url, token: tokens.monitor }).stream((name, data) => {
      seen.push({ name, data });
      if (seen.some((s) => s.name === "events")) abort.abort();
    }, abort.signal);
    expect(seen.map((s) => s.name).slice(0, 2)).toEqual(["history", "snapshot"]);
    expect(Array.isArray(seen[0]!.data as StreamSample[])).toBe(true);
    const snapshot = seen[1]!.data as StreamSnapshot;
    expect(snapshot.groups.map((g) => g.name).sort()).toEqual(["empty", "web"]);
    expect(snapshot.members.find((m) => m.appliance === "a1")).toMatchObject({ group: "web", state: "UP", alive: true, packetsPerSec: 500, connections: 7, cpuPct: 10 });
    // a2 never heartbeat: no load figures rather than stale ones.
    expect(snapshot.members.find((m) => m.appliance === "a2")).toMatchObject({ packetsPerSec: null, connections: null });
    expect(snapshot.pool.map((a) => a.id)).toEqual(["a3"]);
    const events = seen.find((s) => s.name === "events")!.data as { kind: string }[];
    expect(events.some((e) => e.kind === "group.created")).toBe(true);
  });

  it("refuses the stream to member tokens and to no token", async () => {
    const never = new AbortController().signal;
    await expect(new TandemClient({ server: url, token: tokens.member }).stream(() => undefined, never)).rejects.toMatchObject({ code: "TANDEM_FORBIDDEN" });
    await expect(new TandemClient({ server: url, token: null }).stream(() => undefined, never)).rejects.toMatchObject({ code: "TANDEM_UNAUTHENTICATED" });
  });

  it("ends open streams when the app closes, so close() does not wait for browsers", async () => {
    const other = await buildApi(daemon, { webRoot: null });
    const otherUrl = await other.listen({ host: "127.0.0.1", port: 0 });
    let snapshots = 0;
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const following = new TandemClient({ server: otherUrl, token: tokens.monitor }).stream((name) => {
      if (name === "snapshot" && ++snapshots === 1) opened();
    }, new AbortController().signal);
    await open;
    await other.close(); // would hang on the open response without preClose
    await expect(following).resolves.toBeUndefined();
  });
});
