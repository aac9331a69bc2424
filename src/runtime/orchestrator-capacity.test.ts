// Weights from measured capacity in the orchestrator daemon, on a fake clock over a real
// SQLite store and the real API: a group that mixes two models, whose heartbeats show model
// tg-8 forwarding twice as many packets per CPU-second as tg-4, ends with weights proportional
// to measured capacity (cores x per-core rate), staged and applied through the command queue
// with the actor "capacity: <reason>"; the members' estimates show in GET .../members.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { TandemClient } from "../api/client.js";
import { buildApi } from "../api/server.js";
import { OrchestratorDaemon } from "./orchestrator-daemon.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const silent = pino({ level: "silent" });

describe("weights from measured capacity in the daemon", () => {
  it("a mixed group ends with weights proportional to measured capacity, audited as capacity: <reason>", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-capacity-"));
    dirs.push(dir);
    let t = 1000;
    const clock = { nowMs: () => t, nowIso: () => new Date(1_800_000_000_000 + t).toISOString() };
    const daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: silent, clock, tickIntervalMs: 5 });
    const { adminToken } = await daemon.start();
    const app = await buildApi(daemon, { logger: silent });
    try {
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      const admin = new TandemClient({ server: url, token: adminToken });
      const appliances = [
        { id: "a1", model: "tg-4", cores: 4 },
        { id: "a2", model: "tg-4", cores: 4 },
        { id: "b1", model: "tg-8", cores: 8 },
      ];
      await admin.createGroup({ name: "g", allowMixedModels: true, bucketCount: 1024 });
      for (const a of appliances) {
        await admin.addAppliance({ ...a, memoryMb: 8192, version: "1.0", address: `${a.id}:7471` });
        await admin.assign("g", a.id);
      }
      await admin.applyChanges("g");
      expect((await admin.getGroup("g")).weightsSource).toBe("cores");

      // tg-4: 40,000 packets/s at 40% of a core = 100k per core; tg-8: the same at 20% = 200k.
      const beat = (): void => {
        daemon.heartbeat("a1", { cpuPct: 40, packetsPerSec: 40_000, connections: 10 });
        daemon.heartbeat("a2", { cpuPct: 40, packetsPerSec: 40_000, connections: 10 });
        daemon.heartbeat("b1", { cpuPct: 20, packetsPerSec: 40_000, connections: 10 });
        // The members confirm the fills of a running transition (as member processes would).
        const cp = daemon.controlPlane;
        if (cp.current.groups.get("g")!.transition === null) return;
        const dist = cp.view().distribution("g");
        if (dist === null) return;
        const byMember = new Map<string, number[]>();
        for (const [bucket, members] of dist.fills) for (const m of members) byMember.set(m, [...(byMember.get(m) ?? []), bucket]);
        for (const [m, buckets] of byMember) daemon.fillReport(m, { epoch: dist.table.epoch, buckets });
      };
      const settled = (): boolean => {
        const g = daemon.controlPlane.current.groups.get("g")!;
        return g.weightsSource === "measured" && g.transition === null;
      };
      const giveUpAt = Date.now() + 20_000;
      while (!settled()) {
        if (Date.now() > giveUpAt) throw new Error("timed out waiting for measured weights");
        t += 50;
        beat();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }

      // Capacity: 4 x 100k, 4 x 100k, 8 x 200k: weights 40, 40, 160 (ten per core of the slowest model).
      const g = daemon.controlPlane.current.groups.get("g")!;
      expect(g.weights).toEqual({ a1: 40, a2: 40, b1: 160 });
      expect(Object.fromEntries(g.tableMembers.map((m) => [m.id, m.weight]))).toEqual({ a1: 40, a2: 40, b1: 160 });
      const members = await admin.listMembers("g");
      expect(members.map((m) => [m.appliance, m.weight, m.capacity.perCorePps])).toEqual([
        ["a1", 40, 100_000],
        ["a2", 40, 100_000],
        ["b1", 160, 200_000],
      ]);
      expect(members.every((m) => m.capacity.samples >= 20)).toBe(true);
      const b1 = members.find((m) => m.appliance === "b1")!;
      expect(b1.owned).toBeGreaterThan(2 * members.find((m) => m.appliance === "a1")!.owned);
      expect((await admin.getGroup("g")).weightsSource).toBe("measured");

      const audit = (await admin.audit({ limit: 50 })).filter((r) => r.actor.startsWith("capacity: "));
      expect(audit.map((r) => `${r.command} ${r.result}`).sort()).toEqual(["changes.apply ok", "weights.measured ok"]);
      expect(audit[0]!.actor).toBe("capacity: model tg-8 forwards 2.0x tg-4 per core (200k vs 100k packets/s per core); a1's share moves 33%");

      // The operator takes over: the automatic path leaves the weights alone from then on.
      await admin.setWeight("g", "b1", 8);
      await admin.applyChanges("g");
      const until = t + 30_000;
      while (t < until || daemon.controlPlane.current.groups.get("g")!.transition !== null) {
        if (Date.now() > giveUpAt + 20_000) throw new Error("timed out");
        t += 250;
        beat();
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      expect(daemon.controlPlane.current.groups.get("g")!).toMatchObject({ weightsSource: "operator", weights: { a1: 40, a2: 40, b1: 8 } });
      expect(daemon.capacityWeights.weigher.lastDecisionOf("g")!.why).toMatch(/^the operator set the weights/);
    } finally {
      await app.close();
      await daemon.close();
    }
  });
});
