// The REST API in process (fastify.inject, no sockets) over a real daemon on a temporary SQLite
// store: authentication and roles, validation errors naming the field, error codes and
// statuses, the OpenAPI document covering every route, metrics, tokens, member reports.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import { TandemError } from "../stdx/errors.js";
import { TandemClient } from "./client.js";
import { buildApi, routesOf } from "./server.js";

let dir: string;
let daemon: OrchestratorDaemon;
let app: FastifyInstance;
const tokens = { admin: "", operator: "", monitor: "", member: "" };

// Answers are loosely typed here: the assertions check their shape.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

async function call(method: string, url: string, token: string | null, body?: unknown): Promise<{ status: number; json: Json }> {
  const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  const r = await app.inject({ method: method as "GET", url, headers, ...(body === undefined ? {} : { payload: body as object }) });
  return { status: r.statusCode, json: r.body.length > 0 && r.headers["content-type"]?.toString().includes("json") ? JSON.parse(r.body) : r.body };
}

const appliance = (id: string, model = "tg-4000") => ({ id, model, cores: 8, memoryMb: 16384, version: "1.0.0", address: `${id}.lab:7471` });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tandem-api-"));
  daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: pino({ level: "silent" }) });
  const started = await daemon.start();
  tokens.admin = started.adminToken!;
  app = await buildApi(daemon);
  for (const role of ["operator", "monitor"] as const) {
    const r = await call("POST", "/api/tokens", tokens.admin, { name: `${role}-1`, role });
    expect(r.status).toBe(201);
    tokens[role] = r.json.token as unknown as string;
  }
  const m = await call("POST", "/api/tokens", tokens.admin, { name: "a1", role: "member" });
  tokens.member = m.json.token as unknown as string;
});

afterAll(async () => {
  await app.close();
  await daemon.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("authentication and roles", () => {
  it("serves health without a token", async () => {
    const r = await call("GET", "/api/health", null);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ status: "ok", role: "active", store: "sqlite" });
    expect(r.json.storeRevision).toBeGreaterThan(0);
  });

  it("refuses a call without a token, or with an unknown one, with 401 TANDEM_UNAUTHENTICATED", async () => {
    for (const token of [null, "not-a-token"]) {
      const r = await call("GET", "/api/appliances", token);
      expect(r.status).toBe(401);
      expect(r.json.code).toBe("TANDEM_UNAUTHENTICATED");
      expect(typeof r.json.message).toBe("string");
    }
  });

  it("lets a monitor read but not mutate (403 TANDEM_FORBIDDEN)", async () => {
    expect((await call("GET", "/api/appliances", tokens.monitor)).status).toBe(200);
    const r = await call("POST", "/api/appliances", tokens.monitor, appliance("m1"));
    expect(r.status).toBe(403);
    expect(r.json.code).toBe("TANDEM_FORBIDDEN");
    expect(r.json.message).toMatch(/monitor.*needs operator/);
  });

  it("keeps tokens and appliance removal for admins", async () => {
    expect((await call("GET", "/api/tokens", tokens.operator)).status).toBe(403);
    expect((await call("DELETE", "/api/appliances/zz", tokens.operator)).status).toBe(403);
    expect((await call("DELETE", "/api/appliances/zz", tokens.admin)).json.code).toBe("TANDEM_APPLIANCE_NOT_FOUND");
  });

  it("keeps member tokens to their own member routes", async () => {
    expect((await call("GET", "/api/appliances", tokens.member)).status).toBe(403);
    const other = await call("POST", "/api/members/a2/heartbeat", tokens.member, {});
    expect(other.status).toBe(403);
    expect(other.json.code).toBe("TANDEM_FORBIDDEN");
  });

  it("never stores a token's secret, and refuses to revoke the last admin token", async () => {
    const list = await call("GET", "/api/tokens", tokens.admin);
    expect(list.json.map((t: { name: string }) => t.name)).toEqual(["a1", "admin", "monitor-1", "operator-1"]);
    expect(JSON.stringify(list.json)).not.toContain(tokens.admin);
    const last = await call("DELETE", "/api/tokens/admin", tokens.admin);
    expect(last.status).toBe(409);
    expect(last.json.code).toBe("TANDEM_CONFLICT");
    const created = await call("POST", "/api/tokens", tokens.admin, { name: "short-lived", role: "monitor" });
    expect((await call("GET", "/api/status", created.json.token as unknown as string)).status).toBe(200);
    expect((await call("DELETE", "/api/tokens/short-lived", tokens.admin)).status).toBe(200);
    expect((await call("GET", "/api/status", created.json.token as unknown as string)).status).toBe(401);
  });
});

describe("validation", () => {
  it.each([
    [{ ...appliance("v1"), cores: "8" }, /body\.cores: must be integer/],
    [{ ...appliance("v1"), color: "red" }, /body: unknown field "color"/],
    [{ id: "v1", cores: 8 }, /body\.model: is required/],
    [{ ...appliance("v1"), id: "bad id" }, /body\.id: must match pattern/],
    [{ ...appliance("v1"), cores: 0 }, /body\.cores: must be >= 1/],
  ])("refuses %j with 400 TANDEM_INVALID_ARGUMENT naming the field", async (body, message) => {
    const r = await call("POST", "/api/appliances", tokens.operator, body);
    expect(r.status).toBe(400);
    expect(r.json.code).toBe("TANDEM_INVALID_ARGUMENT");
    expect(r.json.message).toMatch(message);
  });

  it("checks path parameters and query strings too", async () => {
    const p = await call("GET", "/api/appliances/bad%20name", tokens.monitor);
    expect(p.status).toBe(400);
    expect(p.json.message).toMatch(/params\.id/);
    const q = await call("GET", "/api/events?limit=ten", tokens.monitor);
    expect(q.status).toBe(400);
    expect(q.json.message).toMatch(/querystring\.limit/);
    const c = await call("GET", "/api/connections?dstPort=http", tokens.monitor);
    expect(c.status).toBe(400);
    expect(c.json.message).toMatch(/querystring\.dstPort/);
    const none = await call("GET", "/api/connections", tokens.monitor);
    expect(none.status).toBe(400);
  });

  it("answers malformed JSON with 400 TANDEM_INVALID_ARGUMENT", async () => {
    const r = await app.inject({ method: "POST", url: "/api/appliances", headers: { authorization: `Bearer ${tokens.operator}`, "content-type": "application/json" }, payload: "{nope" });
    expect(r.statusCode).toBe(400);
    expect(JSON.parse(r.body).code).toBe("TANDEM_INVALID_ARGUMENT");
  });
});

describe("resources", () => {
  it("answers unknown objects and routes with 404 and a specific code", async () => {
    expect((await call("GET", "/api/appliances/nope", tokens.monitor)).json).toMatchObject({ code: "TANDEM_APPLIANCE_NOT_FOUND" });
    expect((await call("GET", "/api/groups/nope", tokens.monitor)).json).toMatchObject({ code: "TANDEM_SG_NOT_FOUND" });
    const r = await call("GET", "/api/nothing-here", tokens.monitor);
    expect(r.status).toBe(404);
    expect(r.json.code).toBe("TANDEM_NOT_FOUND");
  });

  it("registers appliances, stages and applies a group, refuses a mismatched model (409)", async () => {
    for (const id of ["a1", "a2", "a3"]) expect((await call("POST", "/api/appliances", tokens.operator, appliance(id))).status).toBe(201);
    expect((await call("POST", "/api/appliances", tokens.operator, appliance("b1", "tg-9000"))).status).toBe(201);
    expect((await call("POST", "/api/appliances", tokens.operator, appliance("a1"))).json.code).toBe("TANDEM_APPLIANCE_EXISTS");
    const sg = await call("POST", "/api/groups", tokens.operator, { name: "web", bucketCount: 1024, seed: 7 });
    expect(sg.status).toBe(201);
    for (const id of ["a1", "a2"]) expect((await call("POST", "/api/groups/web/members", tokens.operator, { appliance: id })).status).toBe(200);
    const show = await call("GET", "/api/groups/web/changes", tokens.monitor);
    expect(show.json.changes).toHaveLength(2);
    expect((show.json.pending as { members: unknown[] }).members).toHaveLength(2);
    const applied = await call("POST", "/api/groups/web/changes/apply", tokens.operator);
    expect(applied.status).toBe(200);
    expect(applied.json).toMatchObject({ group: "web", applied: 2, epoch: 1, transition: null });
    const mismatch = await call("POST", "/api/groups/web/members", tokens.operator, { appliance: "b1" });
    expect(mismatch.status).toBe(409);
    expect(mismatch.json.code).toBe("TANDEM_MODEL_MISMATCH");
    const members = await call("GET", "/api/groups/web/members", tokens.monitor);
    expect(members.json.map((m: { appliance: string; state: string }) => `${m.appliance}:${m.state}`)).toEqual(["a1:UP", "a2:UP"]);
    const audit = await call("GET", "/api/audit?limit=1", tokens.monitor);
    expect(audit.json[0]).toMatchObject({ command: "sg.assign", result: "error", code: "TANDEM_MODEL_MISMATCH", actor: "operator-1" });
  });

  it("answers heartbeats with what the member should run and counts them in /metrics", async () => {
    const hb = await call("POST", "/api/members/a1/heartbeat", tokens.member, { epoch: 1, cpuPct: 12.5, packetsPerSec: 1000, connections: 42, counters: { packets: 5000, drops: { "policy-drop": 3 }, syncLagMs: 2 } });
    expect(hb.status).toBe(200);
    expect(hb.json).toMatchObject({ appliance: "a1", group: "web", state: "UP", epoch: 1 });
    const dist = await call("GET", "/api/groups/web/distribution", tokens.member);
    expect(dist.json).toMatchObject({ group: "web", epoch: 1, bucketCount: 1024, members: ["a1", "a2"], fills: [] });
    const metrics = await app.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${tokens.monitor}` } });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('tandem_member_state{group="web",member="a1",state="UP"} 1');
    expect(metrics.body).toContain('tandem_member_connections{group="web",member="a1"} 42');
    expect(metrics.body).toContain('tandem_member_drops_total{group="web",member="a1",reason="policy-drop"} 3');
    expect(metrics.body).toContain('tandem_member_sync_lag_seconds{group="web",member="a1"} 0.002');
    expect(metrics.body).toContain("tandem_group_epoch{group=\"web\"} 1");
  });

  it("accepts heartbeats from a newer member with fields it does not know (ignored), and still checks the ones it knows", async () => {
    const newer = await call("POST", "/api/members/a1/heartbeat", tokens.member, { epoch: 1, cpuPct: 3, futureField: { x: 1 }, counters: { packets: 10, futureCounter: 7 } });
    expect(newer.status).toBe(200);
    expect(newer.json).toMatchObject({ appliance: "a1", refused: null });
    const bad = await call("POST", "/api/members/a1/heartbeat", tokens.member, { cpuPct: -1, futureField: 1 });
    expect(bad.status).toBe(400);
  });

  it("finds a connection's owner and backup", async () => {
    const r = await call("GET", "/api/connections?src=198.18.0.1&dst=198.19.0.1&srcPort=40000&dstPort=443", tokens.monitor);
    expect(r.status).toBe(200);
    expect(r.json).toHaveLength(1);
    const [loc] = r.json as { group: string; owner: string; backup: string; ownerState: string; bucket: number }[];
    expect(loc!.group).toBe("web");
    expect(new Set([loc!.owner, loc!.backup])).toEqual(new Set(["a1", "a2"]));
    expect(loc!.ownerState).toBe("UP");
    expect(loc!.bucket).toBeLessThan(1024);
  });

  it("runs a verification round with the members' answers", async () => {
    const started = await call("POST", "/api/groups/web/verify", tokens.operator);
    expect(started.status).toBe(201);
    expect(started.json).toMatchObject({ expected: ["a1", "a2"], done: false });
    const id = started.json.id as unknown as number;
    const hb = await call("POST", "/api/members/a2/heartbeat", tokens.operator, {});
    expect(hb.json.verify).toEqual({ id, epoch: 1 });
    await call("POST", "/api/members/a1/verify", tokens.member, { id, bucketsChecked: 512, mismatched: [] });
    const done = await call("POST", "/api/members/a2/verify", tokens.operator, { id, bucketsChecked: 512, mismatched: [17] });
    expect(done.json).toMatchObject({ done: true, timedOut: false, bucketsChecked: 1024, mismatches: [{ member: "a2", count: 1, buckets: [17] }] });
    expect((await call("GET", `/api/groups/web/verify/${id}`, tokens.monitor)).json.done).toBe(true);
  });

  it("reports sync status per member", async () => {
    const r = await call("GET", "/api/sync?group=web", tokens.monitor);
    const [web] = r.json as { members: { appliance: string; reportedEpoch: number | null; epochLag: number | null }[] }[];
    expect(web!.members.find((m) => m.appliance === "a1")).toMatchObject({ reportedEpoch: 1, epochLag: 0 });
  });
});

describe("the OpenAPI document", () => {
  it("is JSON, lists every route with its method, and needs no token", async () => {
    const r = await app.inject({ method: "GET", url: "/api/openapi.json" });
    expect(r.statusCode).toBe(200);
    const doc = JSON.parse(r.body) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toMatch(/^3\./);
    const routes = routesOf(app);
    expect(routes.length).toBeGreaterThan(30);
    for (const spec of routes) {
      const path = spec.url.replace(/:([A-Za-z]+)/g, "{$1}");
      expect(doc.paths[path]?.[spec.method.toLowerCase()], `${spec.method} ${path}`).toBeDefined();
    }
    const docs = await app.inject({ method: "GET", url: "/api/docs/" });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toMatch(/swagger/i);
  });
});

describe("the typed client", () => {
  it("returns answers and throws the server's error codes as TandemErrors", async () => {
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const client = new TandemClient({ server: url, token: tokens.monitor });
    expect((await client.health()).role).toBe("active");
    expect((await client.listGroups()).map((g) => g.name)).toEqual(["web"]);
    await expect(client.getAppliance("nope")).rejects.toMatchObject({ code: "TANDEM_APPLIANCE_NOT_FOUND", details: { status: 404 } });
    await expect(client.addAppliance(appliance("c1"))).rejects.toMatchObject({ code: "TANDEM_FORBIDDEN" });
    await expect(new TandemClient({ server: url, token: null }).status()).rejects.toMatchObject({ code: "TANDEM_UNAUTHENTICATED" });
    expect(await client.metrics()).toContain("tandem_orchestrator_active 1");
    const closedPort = new TandemClient({ server: "http://127.0.0.1:1", token: null });
    await expect(closedPort.health()).rejects.toMatchObject({ code: "TANDEM_SERVER_UNREACHABLE" });
    await expect(closedPort.health()).rejects.toBeInstanceOf(TandemError);
  });
});
