// The daemon over a real SQLite store in a temporary directory: the first admin token, restarts,
// the single FIFO mutation loop (bounded, audited, answered only after the commit), the health
// ticker, and what happens when a commit fails before or after it reached the disk.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { TandemError } from "../stdx/errors.js";
import { openSqliteStore } from "../store/sqlite-store.js";
import type { Mutation, OpenedStore } from "../store/store.js";
import { OrchestratorDaemon, type OrchestratorDaemonOptions } from "./orchestrator-daemon.js";
import { allows, hashToken } from "./tokens.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tandem-daemon-"));
  dirs.push(dir);
  return dir;
}

const silent = pino({ level: "silent" });
const appliance = (id: string) => ({ id, model: "tg", cores: 4, memoryMb: 8192, version: "1.0", address: `${id}:7471` });

async function started(options: Partial<OrchestratorDaemonOptions> & { dataDir: string }): Promise<{ daemon: OrchestratorDaemon; adminToken: string | null }> {
  const daemon = await OrchestratorDaemon.open({ logger: silent, ...options });
  const { adminToken } = await daemon.start();
  return { daemon, adminToken };
}

async function deadline<T>(probe: () => T | undefined, ms: number, what: string): Promise<T> {
  const giveUpAt = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("admin token", () => {
  it("is made at the first start only: returned once, in DIR/admin-token (0600), stored as a hash", async () => {
    const dir = tempDir();
    const first = await started({ dataDir: dir });
    expect(first.adminToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const file = join(dir, "admin-token");
    expect(readFileSync(file, "utf8").trim()).toBe(first.adminToken);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(first.daemon.authenticate(first.adminToken!)).toEqual({ name: "admin", role: "admin" });
    expect(first.daemon.authenticate("guess")).toBeNull();
    await first.daemon.submit("appliance.add", appliance("a1"), "admin");
    await first.daemon.close();
    const database = readFileSync(join(dir, "tandem.db"), "latin1");
    expect(database).toContain(hashToken(first.adminToken!));
    expect(database).not.toContain(first.adminToken);

    const second = await started({ dataDir: dir });
    expect(second.adminToken).toBeNull();
    expect(second.daemon.authenticate(first.adminToken!)?.role).toBe("admin");
    expect(second.daemon.controlPlane.current.appliances.has("a1")).toBe(true);
    await second.daemon.close();

    const reset = await started({ dataDir: dir, resetAdminToken: true });
    expect(reset.adminToken).not.toBe(first.adminToken);
    expect(reset.daemon.authenticate(first.adminToken!)).toBeNull();
    expect(reset.daemon.authenticate(reset.adminToken!)?.role).toBe("admin");
    await reset.daemon.close();
  });
});

describe("roles", () => {
  it("nest admin > operator > monitor; member tokens only reach member routes", () => {
    expect(allows("admin", "operator")).toBe(true);
    expect(allows("operator", "admin")).toBe(false);
    expect(allows("monitor", "monitor")).toBe(true);
    expect(allows("monitor", "operator")).toBe(false);
    expect(allows("member", "monitor")).toBe(false);
    expect(allows("member", "member")).toBe(true);
    expect(allows("operator", "member")).toBe(true);
    expect(allows("monitor", "member")).toBe(false);
  });
});

describe("the mutation loop", () => {
  it("runs commands one at a time in arrival order, answering after the commit; refusals are audited", async () => {
    const { daemon } = await started({ dataDir: tempDir() });
    const ids = Array.from({ length: 20 }, (_, i) => `a${String(i).padStart(2, "0")}`);
    const results = await Promise.allSettled([...ids.map((id) => daemon.submit("appliance.add", appliance(id), "op")), daemon.submit("appliance.add", appliance("a00"), "op")]);
    expect(results.slice(0, 20).every((r) => r.status === "fulfilled")).toBe(true);
    const refused = results[20]!;
    expect(refused.status === "rejected" && (refused.reason as TandemError).code).toBe("TANDEM_APPLIANCE_EXISTS");
    const audit = (await daemon.audit({ limit: 21 })).reverse();
    expect(audit.map((a) => (a.args as { id: string }).id)).toEqual([...ids, "a00"]);
    expect(audit[20]).toMatchObject({ result: "error", code: "TANDEM_APPLIANCE_EXISTS", actor: "op" });
    await daemon.close();
  });

  it("refuses with TANDEM_BUSY once the bounded queue is full", async () => {
    const { daemon } = await started({ dataDir: tempDir(), controlPlane: { queueWaitingMax: 3 } });
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => daemon.submit("appliance.add", appliance(`b${i}`), "op")));
    const busy = results.filter((r) => r.status === "rejected" && (r.reason as TandemError).code === "TANDEM_BUSY");
    expect(busy.length).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === "fulfilled").length + busy.length).toBe(12);
    await daemon.close();
  });

  it("fails a silent member over through the ticker (DOWN within downAfterMs)", async () => {
    const { daemon } = await started({ dataDir: tempDir(), tickIntervalMs: 5, controlPlane: { health: { heartbeatIntervalMs: 10, downAfterMs: 60 } } });
    for (const id of ["m1", "m2"]) await daemon.submit("appliance.add", appliance(id), "op");
    await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "op");
    for (const id of ["m1", "m2"]) await daemon.submit("sg.assign", { group: "g", appliance: id }, "op");
    await daemon.submit("changes.apply", { group: "g" }, "op");
    const beating = setInterval(() => daemon.heartbeat("m1", { cpuPct: 5 }), 10);
    try {
      await deadline(() => (daemon.controlPlane.current.members.get("m2")?.state === "DOWN" ? true : undefined), 5000, "m2 DOWN");
      expect(daemon.controlPlane.current.members.get("m1")?.state).toBe("UP");
      const ticks = (await daemon.audit({ limit: 10 })).filter((a) => a.command === "health.tick");
      expect(ticks.length).toBeGreaterThan(0);
      expect(ticks[0]!.actor).toBe("system");
    } finally {
      clearInterval(beating);
      await daemon.close();
    }
  });
});

describe("failure detection", () => {
  it("derives each member's downAfterMs from its measured round trips; the configured value is the floor", async () => {
    const { daemon } = await started({ dataDir: tempDir(), controlPlane: { health: { heartbeatIntervalMs: 40, downAfterMs: 200 } } });
    try {
      for (const id of ["m1", "m2"]) await daemon.submit("appliance.add", appliance(id), "op");
      await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "op");
      for (const id of ["m1", "m2"]) await daemon.submit("sg.assign", { group: "g", appliance: id }, "op");
      await daemon.submit("changes.apply", { group: "g" }, "op");
      for (let i = 0; i < 20; i++) {
        daemon.heartbeat("m1", { rttMs: 0.4 });
        daemon.heartbeat("m2", { rttMs: i % 2 === 0 ? 30 : 70 });
      }
      const detection = new Map(daemon.controlPlane.view().members("g", daemon.nowMs()).map((m) => [m.appliance, m.detection]));
      expect(detection.get("m1")).toEqual({ srttMs: 0.4, rttvarMs: expect.any(Number) as number, heartbeatIntervalMs: 40, downAfterMs: 200 });
      expect(detection.get("m2")!.srttMs).toBeGreaterThan(40);
      expect(detection.get("m2")!.downAfterMs).toBeGreaterThan(200);
      expect(detection.get("m2")!.downAfterMs).toBeLessThanOrEqual(2000);
    } finally {
      await daemon.close();
    }
  });
});

/** A real SQLite store whose next commit fails, before or after writing. */
async function flakyStore(dir: string): Promise<{ opened: OpenedStore; failNext: (when: "before" | "after") => void }> {
  const real = await openSqliteStore({ dataDir: dir });
  let fail: "before" | "after" | null = null;
  const store = Object.create(real.store) as typeof real.store;
  store.commit = async (mutation: Mutation): Promise<number> => {
    const when = fail;
    fail = null;
    if (when === "before") throw new TandemError("TANDEM_STORE_UNAVAILABLE", "disk unplugged (simulated)");
    const revision = await real.store.commit(mutation);
    if (when === "after") throw new TandemError("TANDEM_STORE_UNAVAILABLE", "connection lost after the write (simulated)");
    return revision;
  };
  return { opened: { store, leadership: real.leadership }, failNext: (when) => (fail = when) };
}

describe("store failures", () => {
  it("refuses the command whose commit failed, reloads, and rebuilds the model when the write did land", async () => {
    const dir = tempDir();
    const flaky = await flakyStore(dir);
    const { daemon } = await started({ dataDir: dir, opened: flaky.opened });
    flaky.failNext("before");
    await expect(daemon.submit("appliance.add", appliance("x1"), "op")).rejects.toMatchObject({ code: "TANDEM_STORE_UNAVAILABLE" });
    expect(daemon.controlPlane.current.appliances.has("x1")).toBe(false);
    await daemon.submit("appliance.add", appliance("x2"), "op");
    flaky.failNext("after");
    await expect(daemon.submit("appliance.add", appliance("x3"), "op")).rejects.toMatchObject({ code: "TANDEM_STORE_UNAVAILABLE" });
    await daemon.submit("appliance.add", appliance("x4"), "op");
    // x3 reached the disk: after the reload the model has it (the caller was told the outcome was unknown).
    expect([...daemon.controlPlane.current.appliances.keys()].sort()).toEqual(["x2", "x3", "x4"]);
    await daemon.close();
  });
});

describe("auto-scaling", () => {
  it("adds a heartbeating spare to a group whose CPU stays high, as an audited, make-before-break change", async () => {
    let t = 1000;
    const clock = { nowMs: () => t, nowIso: () => new Date(1_800_000_000_000 + t).toISOString() };
    const { daemon } = await started({ dataDir: tempDir(), clock, tickIntervalMs: 5 });
    for (const id of ["a1", "a2"]) await daemon.submit("appliance.add", appliance(id), "admin");
    await daemon.submit("sg.create", { name: "g1", autoscale: { enabled: true, minMembers: 1, maxMembers: 2, cooldownMs: 10_000 } }, "admin");
    await daemon.submit("sg.assign", { group: "g1", appliance: "a1" }, "admin");
    await daemon.submit("changes.apply", { group: "g1" }, "admin");
    // a1 serves the group at 95% CPU; a2 waits in the pool (alive: its process heartbeats).
    const beat = (): void => {
      daemon.heartbeat("a1", { cpuPct: 95, packetsPerSec: 1000, connections: 10 });
      daemon.heartbeat("a2", { cpuPct: 1, packetsPerSec: 0, connections: 0 });
    };
    const member = await deadline(
      () => {
        t += 50;
        beat();
        const m = daemon.controlPlane.current.members.get("a2");
        return m !== undefined && m.group === "g1" ? m : undefined;
      },
      20_000,
      "the autoscaler to add a2",
    ).catch(async (error: unknown) => {
      await daemon.close();
      throw error;
    });
    expect(["JOINING", "UP"]).toContain(member.state);
    const audit = await daemon.audit({ limit: 20 });
    const mine = audit.filter((r) => r.actor.startsWith("autoscaler: "));
    expect(mine.map((r) => r.command).sort()).toEqual(["changes.apply", "sg.assign"]);
    expect(mine[0]!.actor).toMatch(/^autoscaler: mean CPU 95% > \d+% for \d+ s/);
    // One action per cooldown: still high, nothing more to add (maxMembers 2) and no second action.
    for (let i = 0; i < 40; i++) {
      t += 50;
      beat();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect((await daemon.audit({ limit: 50 })).filter((r) => r.actor.startsWith("autoscaler: "))).toHaveLength(2);
    await daemon.close();
  });
});

describe("HyperSync protocol versions", () => {
  it("the distribution names the highest version every member reads, follows reported ranges (cache included), and keeps its version when ranges do not overlap", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
    const { daemon } = await started({ dataDir: tempDir(), logger });
    try {
      for (const id of ["m1", "m2"]) await daemon.submit("appliance.add", appliance(id), "op");
      await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "op");
      for (const id of ["m1", "m2"]) await daemon.submit("sg.assign", { group: "g", appliance: id }, "op");
      await daemon.submit("changes.apply", { group: "g" }, "op");
      const version = (): number => (JSON.parse(daemon.distributionJson("g")!) as { hypersyncVersion: number }).hypersyncVersion;
      // Nobody reported yet: both count as {2, 2}.
      expect(version()).toBe(2);
      // m1 of a newer build: m2 has not reported, so the group stays at 2.
      daemon.heartbeat("m1", { hypersync: { min: 2, max: 3 } });
      expect(version()).toBe(2);
      // m2 too: the next document (not the cached one) says 3.
      daemon.heartbeat("m2", { hypersync: { min: 2, max: 3 } });
      expect(version()).toBe(3);
      expect(daemon.distribution("g")!.hypersyncVersion).toBe(3);
      // The same range again changes nothing; a member back on the old build brings the group back to 2.
      daemon.heartbeat("m2", { hypersync: { min: 2, max: 3 } });
      expect(version()).toBe(3);
      daemon.heartbeat("m2", { hypersync: { min: 2, max: 2 } });
      expect(version()).toBe(2);
      daemon.heartbeat("m2", { hypersync: { min: 2, max: 3 } });
      expect(version()).toBe(3);
      // Ranges that do not overlap: the document keeps 3 and an error names both members.
      daemon.heartbeat("m1", { hypersync: { min: 4, max: 5 } });
      daemon.heartbeat("m2", { hypersync: { min: 2, max: 3 } });
      expect(version()).toBe(3);
      const errors = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 50 && l.msg.includes("HyperSync"));
      expect(errors).toHaveLength(1);
      expect(errors[0]!.msg).toBe(
        "HyperSync protocol version of group g stays at 3: no HyperSync protocol version is spoken by every member: m2 (2..3) reads at most version 3, m1 (4..5) reads only version 4 and above",
      );
      // A malformed range is ignored: m1 counts as not reported ({2, 2}).
      daemon.heartbeat("m1", { hypersync: { min: 3, max: 2 } });
      expect(version()).toBe(2);
    } finally {
      await daemon.close();
    }
  });
});
