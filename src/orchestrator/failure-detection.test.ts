// The failure-detection formula: the RFC 6298 estimator, the floor on loopback round trips, the
// growth on a slow, jittery link, and the bounds (never below the floor, never above the ceiling).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Prng } from "../stdx/prng.js";
import {
  DOWN_AFTER_CEILING_FACTOR,
  downAfterMsOf,
  failureDetectionOptions,
  measuredDownAfterMsOf,
  nextRttEstimate,
  type FailureDetectionOptions,
  type RttEstimate,
} from "./failure-detection.js";

const SEED = 42;

/** The configurations in use: the defaults, `tandem up`, the cluster e2e test, the daemon test. */
const CONFIGS: readonly FailureDetectionOptions[] = [
  failureDetectionOptions({ heartbeatIntervalMs: 100, downAfterMs: 300 }),
  failureDetectionOptions({ heartbeatIntervalMs: 40, downAfterMs: 200 }),
  failureDetectionOptions({ heartbeatIntervalMs: 30, downAfterMs: 170 }),
  failureDetectionOptions({ heartbeatIntervalMs: 10, downAfterMs: 60 }),
];
const DEFAULTS = CONFIGS[0]!;
const TANDEM_UP = CONFIGS[1]!;

function estimateOf(samples: readonly number[]): RttEstimate | null {
  let e: RttEstimate | null = null;
  for (const s of samples) e = nextRttEstimate(e, s);
  return e;
}

/** A link of meanMs round trip whose samples sit jitterMs above or below it (mean deviation jitterMs). */
function jitteryLink(meanMs: number, jitterMs: number, count: number, prng: Prng): number[] {
  return Array.from({ length: count }, () => meanMs + (prng.chance(0.5) ? jitterMs : -jitterMs));
}

describe("nextRttEstimate (RFC 6298)", () => {
  it("starts at srtt = R, rttvar = R/2, then updates rttvar from the old srtt with 1/4 and srtt with 1/8", () => {
    const first = nextRttEstimate(null, 40);
    expect(first).toEqual({ srttMs: 40, rttvarMs: 20 });
    const second = nextRttEstimate(first, 80);
    expect(second.rttvarMs).toBe(0.75 * 20 + 0.25 * 40); // |40 - 80| with the old srtt
    expect(second.srttMs).toBe(40 + (80 - 40) / 8);
  });

  it(`stays within the samples' range, rttvar within their spread (property, seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { minLength: 1, maxLength: 200 }), (samples) => {
        const e = estimateOf(samples)!;
        const lo = Math.min(...samples);
        const hi = Math.max(...samples);
        expect(e.srttMs).toBeGreaterThanOrEqual(lo - 1e-9);
        expect(e.srttMs).toBeLessThanOrEqual(hi + 1e-9);
        expect(e.rttvarMs).toBeGreaterThanOrEqual(0);
        expect(e.rttvarMs).toBeLessThanOrEqual(Math.max(hi / 2, hi - lo) + 1e-9);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe("downAfterMsOf", () => {
  it("is the floor until a round trip is measured", () => {
    for (const c of CONFIGS) expect(downAfterMsOf(c, null)).toBe(c.downAfterMsFloor);
  });

  it(`stays at the configured floor with loopback round trips of 0.1-2 ms, any jitter within them (property, seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.1, max: 2, noNaN: true }), { minLength: 1, maxLength: 300 }), (samples) => {
        const e = estimateOf(samples);
        for (const c of CONFIGS) expect(downAfterMsOf(c, e)).toBe(c.downAfterMsFloor);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it(`grows above the floor on a 50 ms link with 20 ms of jitter (seed ${SEED})`, () => {
    const e = estimateOf(jitteryLink(50, 20, 200, new Prng(SEED)))!;
    expect(e.srttMs).toBeGreaterThan(40);
    expect(e.srttMs).toBeLessThan(60);
    expect(e.rttvarMs).toBeGreaterThan(15);
    // 2 * interval + srtt + 4 * rttvar: about 200 + 50 + 80 and 80 + 50 + 80.
    expect(downAfterMsOf(DEFAULTS, e)).toBeGreaterThan(DEFAULTS.downAfterMsFloor);
    expect(downAfterMsOf(TANDEM_UP, e)).toBeGreaterThan(TANDEM_UP.downAfterMsFloor);
    expect(downAfterMsOf(DEFAULTS, e)).toBe(Math.ceil(2 * 100 + e.srttMs + 4 * e.rttvarMs));
  });

  it("grows with a steady long round trip too (one heartbeat in flight spaces them by the RTT)", () => {
    const e = estimateOf(Array.from({ length: 100 }, () => 400))!;
    expect(e.rttvarMs).toBeLessThan(1);
    expect(downAfterMsOf(DEFAULTS, e)).toBe(Math.ceil(200 + 400 + 4 * e.rttvarMs));
  });

  it("is bounded by the ceiling, DOWN_AFTER_CEILING_FACTOR times the floor", () => {
    // A heartbeat answer later than 1 s is abandoned (heartbeat-thread.ts), so no sample exceeds it.
    const e: RttEstimate = { srttMs: 1000, rttvarMs: 500 };
    for (const c of CONFIGS) {
      expect(c.downAfterMsCeiling).toBe(DOWN_AFTER_CEILING_FACTOR * c.downAfterMsFloor);
      expect(downAfterMsOf(c, e)).toBe(c.downAfterMsCeiling);
    }
  });

  it(`is never below the floor nor above the ceiling, and never falls as srtt or rttvar rise (property, seed ${SEED})`, () => {
    const ms = fc.double({ min: 0, max: 20_000, noNaN: true });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 5000 }), ms, ms, ms, ms, (interval, extra, srtt, rttvar, dSrtt, dRttvar) => {
        const c = failureDetectionOptions({ heartbeatIntervalMs: interval, downAfterMs: interval + extra });
        const value = downAfterMsOf(c, { srttMs: srtt, rttvarMs: rttvar });
        expect(value).toBeGreaterThanOrEqual(c.downAfterMsFloor);
        expect(value).toBeLessThanOrEqual(c.downAfterMsCeiling);
        expect(downAfterMsOf(c, { srttMs: srtt + dSrtt, rttvarMs: rttvar + dRttvar })).toBeGreaterThanOrEqual(value);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("as the HealthTracker hook: the floor without a measurement, the formula with one", () => {
    const hook = measuredDownAfterMsOf({ heartbeatIntervalMs: 40, downAfterMs: 200 });
    expect(hook("m", null, null)).toBe(200);
    expect(hook("m", 0.4, 0.2)).toBe(200);
    expect(hook("m", 50, 20)).toBe(210);
  });
});
