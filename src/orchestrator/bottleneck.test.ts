// BottleneckDetector: enters only after saturation with member headroom held 10 s, leaves only
// after low utilization held 10 s, restarts on holes, and never flaps (property, fixed seed).

import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { BOTTLENECK_CLEARED_EVENT, BOTTLENECK_DEFAULTS, BOTTLENECK_EVENT, BottleneckDetector, type BottleneckChange } from "./bottleneck.js";

const FC_SEED = 42;
console.log(`bottleneck tests fast-check seed=${FC_SEED}`);

/** Feeds one 1-second sample per entry, starting at t = 1 s; returns the changes with their time. */
function feed(d: BottleneckDetector, samples: [number, number | null][], startMs = 1000): { atMs: number; change: BottleneckChange }[] {
  const out: { atMs: number; change: BottleneckChange }[] = [];
  samples.forEach(([utilization, memberCpuPct], i) => {
    const atMs = startMs + i * 1000;
    const change = d.observe({ atMs, intervalMs: 1000, utilization, framesPerSec: utilization * 100_000, memberCpuPct });
    if (change !== null) out.push({ atMs, change });
  });
  return out;
}

const repeat = <T>(n: number, x: T): T[] => Array.from({ length: n }, () => x);

describe("BottleneckDetector", () => {
  it("enters after 10 s above 85% with members below 60%, and says so with the figures", () => {
    const d = new BottleneckDetector();
    const changes = feed(d, repeat(10, [0.9, 40] as [number, number]));
    expect(changes).toHaveLength(1);
    const { atMs, change } = changes[0]!;
    expect(atMs).toBe(10_000); // the 10th one-second sample completes 10 s
    expect(change.kind).toBe(BOTTLENECK_EVENT);
    expect(change.limited).toBe(true);
    expect(change.utilization).toBeCloseTo(0.9);
    expect(change.framesPerSec).toBeCloseTo(90_000);
    expect(change.memberCpuPct).toBeCloseTo(40);
    expect(change.message).toContain("90%");
    expect(change.message).toContain("90,000 frames/s");
    expect(change.message).toContain("40%");
    expect(d.view()).toEqual({ utilization: 0.9, framesPerSec: 90_000, limited: true, sinceMs: 10_000 });
  });

  it("does not enter after 9 s, nor when members are busy, nor when member CPU is unknown", () => {
    expect(feed(new BottleneckDetector(), repeat(9, [0.95, 10] as [number, number]))).toEqual([]);
    expect(feed(new BottleneckDetector(), repeat(30, [0.95, 75] as [number, number]))).toEqual([]);
    expect(feed(new BottleneckDetector(), repeat(30, [0.95, null] as [number, null]))).toEqual([]);
    // exactly at the marks is not beyond them
    expect(feed(new BottleneckDetector(), repeat(30, [0.85, 59] as [number, number]))).toEqual([]);
    expect(feed(new BottleneckDetector(), repeat(30, [0.9, 60] as [number, number]))).toEqual([]);
  });

  it("one sample below the mark restarts the 10 s", () => {
    const d = new BottleneckDetector();
    const changes = feed(d, [...repeat(8, [0.9, 30] as [number, number]), [0.5, 30], ...repeat(10, [0.9, 30] as [number, number])]);
    expect(changes.map((c) => c.atMs)).toEqual([19_000]);
  });

  it("a hole longer than sampleGapMaxMs restarts the run", () => {
    const d = new BottleneckDetector();
    feed(d, repeat(8, [0.9, 30] as [number, number]));
    // next sample 5 s late: its interval starts 4 s after the last sample ended
    expect(d.observe({ atMs: 13_000, intervalMs: 1000, utilization: 0.9, framesPerSec: 1, memberCpuPct: 30 })).toBeNull();
    const later = feed(d, repeat(9, [0.9, 30] as [number, number]), 14_000);
    expect(later.map((c) => c.atMs)).toEqual([22_000]); // the run restarted at 12 s (the late sample's start)
  });

  it("leaves only after 10 s below 70% (hysteresis: 75% keeps it limited)", () => {
    const d = new BottleneckDetector();
    feed(d, repeat(10, [0.9, 30] as [number, number]));
    expect(d.limited).toBe(true);
    expect(feed(d, repeat(30, [0.75, 30] as [number, number]), 11_000)).toEqual([]);
    expect(d.limited).toBe(true);
    const out = feed(d, repeat(10, [0.4, 30] as [number, number]), 41_000);
    expect(out).toHaveLength(1);
    expect(out[0]!.atMs).toBe(50_000);
    expect(out[0]!.change.kind).toBe(BOTTLENECK_CLEARED_EVENT);
    expect(out[0]!.change.message).toContain("40%");
    expect(d.view().limited).toBe(false);
    expect(d.view().sinceMs).toBeNull();
  });

  it("rules are checked: exit below enter", () => {
    expect(() => new BottleneckDetector({ enterUtilization: 0.5, exitUtilization: 0.6 })).toThrow();
    expect(() => new BottleneckDetector({ holdMs: 0 })).toThrow();
  });

  it("property: transitions alternate, and each is at least holdMs after the previous (no flapping)", () => {
    const sample = fc.record({
      utilization: fc.double({ min: 0, max: 1, noNaN: true }),
      cpu: fc.option(fc.double({ min: 0, max: 100, noNaN: true }), { nil: null }),
      stepMs: fc.integer({ min: 200, max: 6000 }),
    });
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 300 }), (samples) => {
        const d = new BottleneckDetector();
        let atMs = 0;
        let lastChangeMs = -Infinity;
        let limited = false;
        for (const s of samples) {
          atMs += s.stepMs;
          const c = d.observe({ atMs, intervalMs: 1000, utilization: s.utilization, framesPerSec: 1, memberCpuPct: s.cpu });
          if (c === null) continue;
          if (c.limited === limited) return false;
          limited = c.limited;
          if (atMs - lastChangeMs < BOTTLENECK_DEFAULTS.holdMs) return false;
          if (c.heldMs < BOTTLENECK_DEFAULTS.holdMs) return false;
          if (c.limited && !(c.utilization > BOTTLENECK_DEFAULTS.enterUtilization)) return false;
          if (!c.limited && !(c.utilization < BOTTLENECK_DEFAULTS.exitUtilization)) return false;
          lastChangeMs = atMs;
        }
        return d.limited === limited;
      }),
      { seed: FC_SEED, numRuns: 300 },
    );
  });
});
