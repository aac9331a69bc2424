// Rolling upgrades in the daemon, with fake heartbeats and a fake clock: versions reported by
// members become records (or are refused), and the driver takes a member through its cycle —
// drain, the restart directive on its heartbeat answer, rejoin, verification — to the end.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { OrchestratorDaemon } from "./orchestrator-daemon.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const appliance = (id: string, version = "1.0") => ({ id, model: "tg", cores: 4, memoryMb: 8192, version, address: `${id}:7471` });

async function until<T>(step: () => T | undefined, what: string, ms = 20_000): Promise<T> {
  const giveUpAt = Date.now() + ms;
  for (;;) {
    const v = step();
    if (v !== undefined) return v;
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "tandem-upgrade-"));
  dirs.push(dir);
  let t = 1000;
  const clock = { nowMs: () => t, nowIso: () => new Date(1_800_000_000_000 + t).toISOString() };
  const daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: pino({ level: "silent" }), clock, tickIntervalMs: 5 });
  await daemon.start();
  return { daemon, advance: (ms: number) => (t += ms) };
}

describe("rolling upgrade in the daemon", () => {
  it("records the version a pool appliance reports, and refuses a member running another version outside an upgrade", async () => {
    const { daemon, advance } = await setup();
    try {
      for (const id of ["a1", "p1"]) await daemon.submit("appliance.add", appliance(id), "admin");
      await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "admin");
      await daemon.submit("sg.assign", { group: "g", appliance: "a1" }, "admin");
      await daemon.submit("changes.apply", { group: "g" }, "admin");

      expect(daemon.heartbeat("p1", { version: "1.1" }).refused).toBeNull();
      await until(() => (daemon.controlPlane.current.appliances.get("p1")!.version === "1.1" ? true : undefined), "p1's record to follow");

      const answer = daemon.heartbeat("a1", { version: "2.0" });
      expect(answer.refused).toMatch(/a1 runs 2\.0 but security group g runs 1\.0; start a rolling upgrade/);
      expect(answer.restart).toBeNull();
      advance(10);
      expect(daemon.controlPlane.current.appliances.get("a1")!.version).toBe("1.0");
      // The refused heartbeat did not count: a1 is silent to the health tracker and goes DOWN.
      // Small steps of the fake clock: a jump larger than a tick reads as a stall of the daemon,
      // during which it does not judge silence.
      await until(() => {
        advance(3);
        daemon.heartbeat("a1", { version: "2.0" });
        return daemon.controlPlane.current.members.get("a1")!.state === "DOWN" ? true : undefined;
      }, "a1 DOWN");
    } finally {
      await daemon.close();
    }
  });

  it("takes a member through drain, restart, rejoin and verification, then finishes", async () => {
    const { daemon, advance } = await setup();
    try {
      await daemon.submit("appliance.add", appliance("a1"), "admin");
      await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "admin");
      await daemon.submit("sg.assign", { group: "g", appliance: "a1" }, "admin");
      await daemon.submit("changes.apply", { group: "g" }, "admin");
      let running = "1.0";
      const restarts: string[] = [];
      const verified = new Set<number>();
      const beat = (): void => {
        advance(20);
        const a = daemon.heartbeat("a1", { version: running, cpuPct: 1, packetsPerSec: 0, connections: 0 });
        if (a.restart !== null) {
          // The member's agent: switch the release and come back on it.
          restarts.push(a.restart.version);
          running = a.restart.version;
        }
        if (a.verify !== null && !verified.has(a.verify.id)) {
          verified.add(a.verify.id);
          daemon.verifyReport("a1", { id: a.verify.id, bucketsChecked: 64, mismatched: [] });
        }
      };
      await until(() => {
        beat();
        return daemon.controlPlane.current.members.get("a1")?.state === "UP" ? true : undefined;
      }, "a1 UP");
      await daemon.submit("sg.upgrade.start", { group: "g", targetVersion: "2.0" }, "admin");
      const steps = new Set<string>();
      await until(() => {
        beat();
        const u = daemon.upgradeStatus("g").upgrade;
        if (u?.current) steps.add(u.current.step);
        if (u?.paused) throw new Error(`paused: ${u.reason}`);
        return u === null ? true : undefined;
      }, "the upgrade to finish");
      expect([...steps]).toEqual(["drain", "restart", "rejoin", "verify"]);
      expect(restarts).toEqual(["2.0"]);
      expect(daemon.controlPlane.current.appliances.get("a1")!.version).toBe("2.0");
      expect(daemon.controlPlane.current.members.get("a1")!.state).toBe("UP");
      const audit = await daemon.audit({ limit: 50 });
      expect(audit.filter((r) => r.actor === "upgrade").map((r) => r.command)).toEqual(
        expect.arrayContaining(["upgrade.step", "sg.drain", "changes.apply", "sg.assign", "sg.upgrade.finish"]),
      );
      const kinds = (await daemon.events({ limit: 50 })).map((e) => e.kind);
      expect(kinds).toEqual(expect.arrayContaining(["upgrade.started", "upgrade.member", "upgrade.member-done", "upgrade.finished"]));
    } finally {
      await daemon.close();
    }
  });
});
