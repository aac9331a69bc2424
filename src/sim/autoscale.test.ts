// Autoscaling in the simulator: the orchestrator's Autoscaler grows a group from the pool while
// the offered load peaks and shrinks it after, through ordinary joins and drains
// (make-before-break), with the sweeps' invariants checked all along. Each test prints its seed.

import { describe, expect, it } from "vitest";
import { runAutoscaleSimulation, type AutoscaleRun, type LoadCurve } from "./autoscale-scenario.js";

function report(seed: number, run: AutoscaleRun): void {
  const r = run.result;
  const actions = run.actions.map((a) => `${(a.atMs / 1000).toFixed(0)}s ${a.action.kind} ${a.action.appliance}`).join(", ");
  console.log(`autoscale seed ${seed}: ${actions}; ${r.stats.flows} flows, ${r.violationCount} violations`);
  if (r.violationCount > 0) console.log(`seed ${seed}: replay with runAutoscaleSimulation(${seed});`, r.violations.slice(0, 5));
}

describe("autoscaling simulation", () => {
  for (const seed of [1, 2, 3]) {
    it(`load rises, peaks and falls: the group grows during the peak and shrinks after, no connection lost (seed ${seed})`, () => {
      const run = runAutoscaleSimulation(seed);
      report(seed, run);
      const r = run.result;
      expect(r.violations).toEqual([]);
      expect(r.violationCount).toBe(0);
      expect(r.stats.flowsFailed).toBe(0);
      expect(r.stats.flowsCompleted).toBe(r.stats.flows);
      expect(r.stats.eventsSkipped).toBe(0);

      // Default curve: ramp 3-8 s, peak 8-17 s, fall 17-20 s, base after.
      const adds = run.actions.filter((a) => a.action.kind === "add");
      const removes = run.actions.filter((a) => a.action.kind === "remove");
      expect(adds.length).toBeGreaterThanOrEqual(1);
      expect(removes.length).toBeGreaterThanOrEqual(1);
      for (const a of adds) {
        expect(a.atMs).toBeGreaterThan(3_000);
        expect(a.atMs).toBeLessThanOrEqual(20_000);
      }
      for (const a of removes) expect(a.atMs).toBeGreaterThan(17_000);
      expect(Math.max(...adds.map((a) => a.atMs))).toBeLessThan(Math.min(...removes.map((a) => a.atMs)));
      // Every decision became a completed join or drain; the group ends where it started.
      expect(r.stats.joins).toBe(adds.length);
      expect(r.stats.drains).toBe(removes.length);
      const peak = Math.max(...run.trace.map((p) => p.members));
      expect(peak).toBe(2 + adds.length);
      expect(run.trace[run.trace.length - 1]!.members).toBe(2);
      // Actions are a cooldown apart, with human reasons.
      for (let i = 1; i < run.actions.length; i++) expect(run.actions[i]!.atMs - run.actions[i - 1]!.atMs).toBeGreaterThanOrEqual(4_000);
      expect(adds[0]!.action.reason).toMatch(/^mean CPU \d+(\.\d)?% > 75% for 3 s$/);
      expect(removes[0]!.action.reason).toMatch(/^mean CPU \d+(\.\d)?% < 30% for 3 s; m\d carries the least load/);
    });
  }

  it("a second peak takes back an appliance drained after the first one (seed 7)", () => {
    const curve: LoadCurve = {
      points: [
        [2_000, 20],
        [5_000, 200],
        [10_000, 200],
        [12_000, 20],
        [23_000, 20],
        [26_000, 200],
        [31_000, 200],
        [33_000, 20],
      ],
      trafficEndMs: 36_000,
    };
    const run = runAutoscaleSimulation(7, { curve });
    report(7, run);
    expect(run.result.violations).toEqual([]);
    expect(run.result.stats.flowsFailed).toBe(0);
    const removed = new Set(run.actions.filter((a) => a.action.kind === "remove" && a.atMs < 23_000).map((a) => a.action.appliance));
    const readded = run.actions.filter((a) => a.action.kind === "add" && a.atMs > 23_000 && removed.has(a.action.appliance));
    expect(removed.size).toBeGreaterThanOrEqual(1);
    expect(readded.length).toBeGreaterThanOrEqual(1);
    // It came back through the scenario's restart path (a new session of the same appliance).
    expect(run.result.log.some((l) => l.includes(`restart ${readded[0]!.action.appliance} (session 2)`))).toBe(true);
  });
});
