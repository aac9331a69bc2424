import { describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { measuredDownAfterMsOf } from "./failure-detection.js";
import { FlapDamper, HEALTH_DEFAULTS, HealthTracker, resolveHealthOptions } from "./health.js";

describe("HealthTracker", () => {
  it("is silent at downAfterMs, not one millisecond before", () => {
    const h = new HealthTracker();
    h.heartbeat("m", 1000);
    expect(h.isSilent("m", 1299)).toBe(false);
    expect(h.isSilent("m", 1300)).toBe(true);
    expect(h.silentMs("m", 1300)).toBe(300);
    expect(h.nextSilenceMs(["m"])).toBe(1300);
    expect(h.isSilent("unknown", 5000)).toBe(false);
  });

  it("gives a watched member a grace period and keeps the latest heartbeat", () => {
    const h = new HealthTracker();
    h.watch("m", 0);
    expect(h.lastHeartbeatMs("m")).toBeNull();
    expect(h.isSilent("m", 299)).toBe(false);
    expect(h.isSilent("m", 300)).toBe(true);
    h.heartbeat("m", 500);
    h.heartbeat("m", 400); // late delivery does not move the clock back
    expect(h.lastHeartbeatMs("m")).toBe(500);
    h.watch("m", 900); // already heard: watch does not reset it
    expect(h.lastHeartbeatMs("m")).toBe(500);
  });

  it("counts a recovery only for heartbeats after the DOWN", () => {
    const h = new HealthTracker();
    h.heartbeat("m", 0);
    h.markDown("m", 300);
    expect(h.isRecovered("m", 310)).toBe(false);
    h.heartbeat("m", 320);
    expect(h.isRecovered("m", 330)).toBe(true);
    expect(h.isRecovered("m", 620)).toBe(false); // silent again for 300 ms
  });

  it("derives downAfterMs from the smoothed RTT through the hook", () => {
    const h = new HealthTracker({ downAfterMsOf: (_id, rtt) => (rtt === null ? 300 : Math.max(300, 3 * 100 + 4 * rtt)) });
    h.heartbeat("m", 0, 100);
    expect(h.smoothedRttMs("m")).toBe(100);
    h.heartbeat("m", 100, 180); // EWMA 1/8: 100 + 80/8
    expect(h.smoothedRttMs("m")).toBe(110);
    expect(h.downAfterMsOf("m")).toBe(740);
    expect(h.isSilent("m", 100 + 739)).toBe(false);
    expect(h.isSilent("m", 100 + 740)).toBe(true);
  });

  it("with measured detection, fails a low-RTT member at the floor's silence but gives a high-RTT one longer", () => {
    const health = { heartbeatIntervalMs: 40, downAfterMs: 200 };
    const h = new HealthTracker({ ...health, downAfterMsOf: measuredDownAfterMsOf(health) });
    // 40 heartbeats 40 ms apart: "near" measures 0.3-0.5 ms round trips, "far" 30 or 70 ms (a jittery ~50 ms link).
    for (let i = 0; i < 40; i++) {
      h.heartbeat("near", i * 40, i % 2 === 0 ? 0.3 : 0.5);
      h.heartbeat("far", i * 40, i % 3 === 0 ? 30 : 70);
    }
    const last = 39 * 40;
    expect(h.downAfterMsOf("near")).toBe(200);
    const far = h.downAfterMsOf("far");
    expect(far).toBeGreaterThan(200);
    expect(h.isSilent("near", last + 200)).toBe(true);
    expect(h.isSilent("far", last + 200)).toBe(false);
    expect(h.isAlive("far", last + 200)).toBe(true);
    expect(h.isSilent("far", last + far - 1)).toBe(false);
    expect(h.isSilent("far", last + far)).toBe(true);
    expect(h.nextSilenceMs(["far"])).toBe(last + far);
    expect(h.detectionOf("far")).toEqual({ srttMs: expect.any(Number) as number, rttvarMs: expect.any(Number) as number, heartbeatIntervalMs: 40, downAfterMs: far });
    expect(h.detectionOf("never-heard")).toEqual({ srttMs: null, rttvarMs: null, heartbeatIntervalMs: 40, downAfterMs: 200 });
  });

  it("refuses inconsistent options", () => {
    const bad = (input: Parameters<typeof resolveHealthOptions>[0]): string => {
      try {
        resolveHealthOptions(input);
        return "none";
      } catch (error) {
        return (error as TandemError).code;
      }
    };
    expect(bad({ downAfterMs: 100 })).toBe(ErrorCode.INVALID_ARGUMENT); // not above the interval
    expect(bad({ damping: { reuseBelow: 3000 } })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ damping: { halfLifeMs: 0 } })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(resolveHealthOptions({})).toEqual({ ...HEALTH_DEFAULTS, damping: { ...HEALTH_DEFAULTS.damping } });
  });
});

describe("FlapDamper", () => {
  const options = { penaltyPerFlap: 1000, halfLifeMs: 10_000, suppressAbove: 2000, reuseBelow: 750, suppressMaxMs: 60_000 };

  it("decays the penalty with the half-life", () => {
    const d = new FlapDamper(options);
    d.recordFlap("m", 0);
    expect(d.penaltyOf("m", 0)).toBe(1000);
    expect(d.penaltyOf("m", 10_000)).toBeCloseTo(500, 9);
    expect(d.penaltyOf("m", 20_000)).toBeCloseTo(250, 9);
  });

  it("suppresses above the threshold and releases below the reuse threshold", () => {
    const d = new FlapDamper(options);
    expect(d.recordFlap("m", 0).suppressed).toBe(false);
    expect(d.recordFlap("m", 1).suppressed).toBe(false); // 1999.9: not above 2000
    const third = d.recordFlap("m", 2);
    expect(third).toMatchObject({ suppressed: true, newlySuppressed: true });
    expect(d.isSuppressed("m")).toBe(true);
    // ~3000 -> 750 takes two half-lives.
    const at = d.releaseAtMs("m")!;
    expect(at).toBeGreaterThan(2 + 19_000);
    expect(at).toBeLessThan(2 + 21_000);
    expect(d.releaseDue("m", at - 1)).toBe(false);
    expect(d.releaseDue("m", at)).toBe(true);
    d.release("m", at);
    expect(d.isSuppressed("m")).toBe(false);
    expect(d.flapsOf("m")).toBe(3);
  });

  it("holds longer with each further flap, and never beyond suppressMaxMs after the last", () => {
    const d = new FlapDamper(options);
    for (let i = 0; i < 3; i++) d.recordFlap("m", i);
    const first = d.releaseAtMs("m")! - 2;
    d.recordFlap("m", 3);
    const second = d.releaseAtMs("m")! - 3;
    expect(second).toBeGreaterThan(first);
    for (let i = 4; i < 200; i++) d.recordFlap("m", i);
    expect(d.penaltyOf("m", 199)).toBeLessThanOrEqual(d.ceiling);
    expect(d.releaseAtMs("m")! - 199).toBeLessThanOrEqual(options.suppressMaxMs + 1);
  });

  it("preview does not change the state", () => {
    const d = new FlapDamper(options);
    d.recordFlap("m", 0);
    d.recordFlap("m", 0);
    expect(d.preview("m", 0)).toEqual({ penalty: 3000, suppressed: true });
    expect(d.isSuppressed("m")).toBe(false);
    expect(d.penaltyOf("m", 0)).toBe(2000);
  });
});
