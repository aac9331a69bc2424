// Auto-scaling in the orchestrator daemon, on a fake clock over a real SQLite store and the
// real API: two groups compete for the last spare and the one whose STORED rules state the
// higher priority gets it (although the other is more overloaded); GET
// /api/groups/{name}/autoscale (monitor) shows the rules, the last decision with its reason,
// the last action and the window; viewOf turns the autoscaler's monotonic times into wall
// clock and ages.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { TandemClient } from "../api/client.js";
import { buildApi } from "../api/server.js";
import { AUTOSCALE_DEFAULTS } from "../orchestrator/model.js";
import { viewOf } from "./autoscale-view.js";
import { OrchestratorDaemon } from "./orchestrator-daemon.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const silent = pino({ level: "silent" });
const appliance = (id: string) => ({ id, model: "tg", cores: 4, memoryMb: 8192, version: "1.0", address: `${id}:7471` });

describe("auto-scaling in the daemon", () => {
  it("the last spare goes to the group whose stored rules state the higher priority; the API shows why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-autoscale-"));
    dirs.push(dir);
    let t = 1000;
    const wallZeroMs = 1_800_000_000_000;
    const clock = { nowMs: () => t, nowIso: () => new Date(wallZeroMs + t).toISOString() };
    const daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: silent, clock, tickIntervalMs: 5 });
    const { adminToken } = await daemon.start();
    const app = await buildApi(daemon, { logger: silent });
    try {
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      const admin = new TandemClient({ server: url, token: adminToken });
      const { token: monitorToken } = await admin.createToken("watcher", "monitor");
      const monitor = new TandemClient({ server: url, token: monitorToken });
      for (const id of ["a1", "b1", "spare"]) await admin.addAppliance(appliance(id));
      const rules = { enabled: true, minMembers: 1, maxMembers: 2, cooldownMs: 10_000 };
      // alpha is the more overloaded (95% against 80%): by the overload ratio it would win.
      await admin.createGroup({ name: "alpha", autoscale: rules });
      await admin.createGroup({ name: "beta", autoscale: { ...rules, priority: 3 } });
      for (const [group, id] of [["alpha", "a1"], ["beta", "b1"]] as const) {
        await admin.assign(group, id);
        await admin.applyChanges(group);
      }
      // The priority reached the store: a restart would read it back.
      expect((await admin.getGroup("beta")).autoscale.priority).toBe(3);

      const beat = (): void => {
        daemon.heartbeat("a1", { cpuPct: 95, packetsPerSec: 1000, connections: 10 });
        daemon.heartbeat("b1", { cpuPct: 80, packetsPerSec: 800, connections: 10 });
        daemon.heartbeat("spare", { cpuPct: 1, packetsPerSec: 0, connections: 0 });
      };
      const giveUpAt = Date.now() + 20_000;
      let winner: string | undefined;
      while (winner === undefined) {
        if (Date.now() > giveUpAt) throw new Error("timed out waiting for the autoscaler to assign the spare");
        t += 50;
        beat();
        winner = daemon.controlPlane.current.members.get("spare")?.group;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(winner).toBe("beta");
      const audit = (await admin.audit({ limit: 30 })).filter((r) => r.actor.startsWith("autoscaler: "));
      expect(audit.map((r) => `${r.command} ${JSON.stringify(r.args)}`).sort()).toEqual(['changes.apply {"group":"beta"}', 'sg.assign {"group":"beta","appliance":"spare"}']);
      expect(audit[0]!.actor).toMatch(/^autoscaler: mean CPU 80% > 75% for 1 s$/);

      // beta's view: its action (by a monitor).
      const beta = await monitor.groupAutoscale("beta");
      expect(beta.rules).toEqual({ ...AUTOSCALE_DEFAULTS, ...rules, priority: 3 });
      expect(beta.lastAction).toMatchObject({ kind: "add", appliance: "spare", reason: "mean CPU 80% > 75% for 1 s" });
      expect(Date.parse(beta.lastAction!.at)).toBeGreaterThan(wallZeroMs);
      expect(beta.lastDecision).not.toBeNull();
      // alpha's: no action, and the reason says it lost the spare (or, one evaluation later, that none is left).
      const alpha = await monitor.groupAutoscale("alpha");
      expect(alpha.lastAction).toBeNull();
      expect(alpha.lastDecision!.action).toBeNull();
      expect(alpha.lastDecision!.reason).toMatch(/^mean CPU 95% > 75% for 1 s, but (spare spare went to beta first \(priority\); waiting for a spare|no compatible spare \(version 1\.0, model tg\))$/);
      expect(alpha.window).toMatchObject({ lengthMs: 1000, members: 1, membersReporting: 1, cpuPct: 95, packetsPerSec: 1000, connectionsPerMember: 10 });
      expect(alpha.window!.samples).toBeGreaterThan(0);
      await expect(monitor.groupAutoscale("nope")).rejects.toMatchObject({ code: "TANDEM_SG_NOT_FOUND" });
    } finally {
      await app.close();
      await daemon.close();
    }
  });
});

describe("viewOf", () => {
  const rules = { ...AUTOSCALE_DEFAULTS, enabled: true };

  it("answers nulls before the first evaluation", () => {
    expect(viewOf("g", rules, null, 5000, Date.UTC(2030, 0, 1))).toEqual({ group: "g", rules, lastDecision: null, lastAction: null, window: null });
  });

  it("turns monotonic times into wall-clock times and ages", () => {
    const wall = Date.UTC(2030, 0, 1, 12, 0, 0);
    const add = { kind: "add" as const, group: "g", appliance: "s1", reason: "mean CPU 90% > 75% for 30 s" };
    const v = viewOf(
      "g",
      rules,
      {
        lastEvaluation: { atMs: 99_000, action: null, why: "cooling down: 259 s left" },
        lastAction: { ...add, atMs: 58_000 },
        window: { startMs: 69_000, lengthMs: 30_000, samples: 1500, members: 3, membersReporting: 3, cpuPct: 50, packetsPerSec: 12_000, connectionsPerMember: 400, syncLagMsMax: 2 },
      },
      100_000,
      wall,
    );
    expect(v.lastDecision).toEqual({ at: "2030-01-01T11:59:59.000Z", ageMs: 1000, action: null, reason: "cooling down: 259 s left" });
    expect(v.lastAction).toEqual({ kind: "add", appliance: "s1", reason: add.reason, at: "2030-01-01T11:59:18.000Z", ageMs: 42_000 });
    expect(v.window).toEqual({
      startedAt: "2030-01-01T11:59:29.000Z",
      coveredMs: 30_000,
      lengthMs: 30_000,
      samples: 1500,
      members: 3,
      membersReporting: 3,
      cpuPct: 50,
      packetsPerSec: 12_000,
      connectionsPerMember: 400,
      syncLagMsMax: 2,
    });
  });
});
