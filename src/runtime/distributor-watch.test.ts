// The distributor watch: the served members' mean CPU, and the daemon wiring end to end (load
// samples from a fake distributor -> detector -> event in the store, status(), metrics).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createMetrics } from "../api/metrics.js";
import { createSocket } from "node:dgram";
import { startDistributor, threadCpuMs, type DistributorLoad } from "./distributor.js";
import { DistributorWatch, meanServingCpuPct } from "./distributor-watch.js";
import { OrchestratorDaemon, type DistributorPort } from "./orchestrator-daemon.js";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const load = (atMs: number, utilization: number): DistributorLoad => ({ atMs, intervalMs: 1000, utilization, cpuMs: null, frames: 50_000, framesPerSec: 50_000 });

describe("the distributor's load samples", () => {
  it("count the datagrams it received and its utilization, in the caller's timebase", async () => {
    const logger = { info: () => {}, warn: () => {}, error: () => {} };
    const d = await startDistributor({ vxlanListen: { address: "127.0.0.1", port: 0 }, memberLinkListen: { address: "127.0.0.1", port: 0 }, inline: true, logger, loadIntervalMs: 20 });
    const socket = createSocket("udp4");
    try {
      const samples: DistributorLoad[] = [];
      d.onLoad((l) => void samples.push(l));
      const before = performance.now();
      for (let i = 0; i < 5; i++) socket.send(Buffer.alloc(30), d.vxlan.port, "127.0.0.1");
      for (let i = 0; i < 200 && samples.reduce((a, s) => a + s.frames, 0) < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(samples.reduce((a, s) => a + s.frames, 0)).toBe(5); // counted once each (dropped as not-vxlan: still handled)
      const last = samples.at(-1)!;
      expect(d.load()).toEqual(last);
      expect(last.atMs).toBeGreaterThan(before);
      expect(last.atMs).toBeLessThanOrEqual(performance.now());
      expect(last.intervalMs).toBeGreaterThan(0);
      expect(last.utilization).toBeGreaterThanOrEqual(0);
      expect(last.utilization).toBeLessThanOrEqual(1);
      expect(last.framesPerSec).toBeCloseTo((last.frames * 1000) / last.intervalMs, 6);
      if (process.platform === "linux") expect(samples.some((s) => s.cpuMs !== null)).toBe(true);
    } finally {
      socket.close();
      await d.close();
    }
  });

  it("threadCpuMs grows with work on Linux (null elsewhere)", () => {
    const a = threadCpuMs();
    if (a === null) return expect(process.platform).not.toBe("linux");
    // Spin until two ticks were charged to this thread (bounded: a loaded machine gives less CPU).
    let x = 0;
    const start = performance.now();
    while (threadCpuMs()! < a + 20 && performance.now() - start < 3000) for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + i);
    expect(x).toBeGreaterThan(0);
    expect(threadCpuMs()!).toBeGreaterThanOrEqual(a + 20);
  });
});

describe("meanServingCpuPct", () => {
  it("averages alive serving members that report, and is null when none do", () => {
    expect(
      meanServingCpuPct([
        { alive: true, inTable: true, state: "UP", cpuPct: 20 },
        { alive: true, inTable: true, state: "DRAINING", cpuPct: 40 },
        { alive: false, inTable: true, state: "UP", cpuPct: 99 }, // silent: its last report is history
        { alive: true, inTable: false, state: "JOINING", cpuPct: 99 }, // not routed to yet
        { alive: true, inTable: true, state: "DOWN", cpuPct: 99 },
        { alive: true, inTable: true, state: "UP", cpuPct: null },
      ]),
    ).toBe(30);
    expect(meanServingCpuPct([{ alive: true, inTable: true, state: "UP", cpuPct: null }])).toBeNull();
  });
});

describe("DistributorWatch", () => {
  it("views the latest sample, and `since` is the caller's time of the change", () => {
    const w = new DistributorWatch({ holdMs: 2000 });
    expect(w.view()).toEqual({ utilization: null, framesPerSec: null, limited: false, since: null });
    expect(w.observe(load(1000, 0.9), 10, "t1")).toBeNull();
    expect(w.observe(load(2000, 0.9), 10, "t2")?.kind).toBe("distributor.bottleneck");
    expect(w.view()).toEqual({ utilization: 0.9, framesPerSec: 50_000, limited: true, since: "t2" });
    w.reset();
    expect(w.view().limited).toBe(false);
  });
});

describe("the orchestrator daemon", () => {
  it("records distributor.bottleneck and distributor.ok, shows them in status() and the metrics", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-watch-"));
    dirs.push(dir);
    let listener: ((l: DistributorLoad) => void) | null = null;
    const distributor: DistributorPort = {
      vxlan: { address: "127.0.0.1", port: 4789 },
      memberLink: { address: "127.0.0.1", port: 4790 },
      update: () => {},
      stats: () => Promise.resolve({}),
      onLoad: (l) => {
        listener = l;
      },
      close: () => Promise.resolve(),
    };
    const daemon = await OrchestratorDaemon.open({ dataDir: dir, logger: pino({ level: "silent" }), distributor });
    await daemon.start();
    try {
      expect(listener).not.toBeNull();
      await daemon.submit("appliance.add", { id: "m1", model: "tg", cores: 4, memoryMb: 8192, version: "1.0", address: "m1:7471" }, "op");
      await daemon.submit("sg.create", { name: "g", bucketCount: 64, seed: 1 }, "op");
      await daemon.submit("sg.assign", { group: "g", appliance: "m1" }, "op");
      await daemon.submit("changes.apply", { group: "g" }, "op");
      const feed = (fromS: number, count: number, utilization: number): void => {
        for (let i = 0; i < count; i++) {
          daemon.heartbeat("m1", { cpuPct: 25, packetsPerSec: 50_000, connections: 10 });
          listener!(load((fromS + i) * 1000, utilization));
        }
      };
      const kinds = async (): Promise<string[]> => (await daemon.events({ limit: 100 })).map((e) => e.kind).filter((k) => k.startsWith("distributor."));
      const settle = async (want: number): Promise<string[]> => {
        for (let i = 0; i < 200; i++) {
          const k = await kinds();
          if (k.length >= want) return k;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        return kinds();
      };

      feed(1, 9, 0.95);
      expect((daemon.status() as { distributor: { limited: boolean } }).distributor.limited).toBe(false);
      feed(10, 1, 0.95); // the 10th second above 85%
      expect(await settle(1)).toEqual(["distributor.bottleneck"]);
      const status = daemon.status() as { distributor: { vxlan: unknown; utilization: number; framesPerSec: number; limited: boolean; since: string | null } };
      expect(status.distributor).toMatchObject({ vxlan: { address: "127.0.0.1", port: 4789 }, utilization: 0.95, framesPerSec: 50_000, limited: true });
      expect(status.distributor.since).not.toBeNull();
      const event = (await daemon.events({ limit: 100 })).find((e) => e.kind === "distributor.bottleneck")!;
      expect(event.message).toContain("95%");
      expect(event.message).toContain("25%");
      const text = await createMetrics(daemon).render();
      expect(text).toMatch(/^tandem_distributor_limited 1$/m);
      expect(text).toMatch(/^tandem_distributor_utilization 0\.95$/m);
      expect(text).toMatch(/^tandem_distributor_frames_per_second 50000$/m);

      feed(11, 10, 0.3);
      expect(await settle(2)).toEqual(["distributor.bottleneck", "distributor.ok"]);
      expect((daemon.status() as { distributor: { limited: boolean; since: string | null } }).distributor).toMatchObject({ limited: false, since: null });
      expect(await createMetrics(daemon).render()).toMatch(/^tandem_distributor_limited 0$/m);
    } finally {
      await daemon.close();
    }
  });
});
