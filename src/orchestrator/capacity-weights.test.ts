// Weights from measured capacity, pure: the estimator (thresholds, smoothing, minimum samples,
// what counts), the proposal (proportional to measured capacity, hands off for one model, for
// an operator's weights and for a busy group, hysteresis on shares) and the weigher's cooldown.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CAPACITY_APPLIANCES_MAX,
  CAPACITY_COOLDOWN_MS,
  CAPACITY_RATIO_MAX,
  CAPACITY_SAMPLES_MIN,
  CAPACITY_WEIGHT_SCALE,
  capacityGroupInputs,
  CapacityEstimator,
  CapacityWeigher,
  leftoverMeasuredChanges,
  proposeWeights,
  type CapacityGroupInput,
  type CapacityMemberInput,
} from "./capacity-weights.js";
import { MemoryHarness } from "./memory-harness.js";
import { ORCHESTRATOR_LIMITS, type ControlModel } from "./model.js";

const SEED = 0x7e1a;

/** A harness with mixed group g: a1 (tg-4, 4 cores) and b1 (tg-8, 8 cores) UP. */
function mixedGroup(): MemoryHarness {
  const h = new MemoryHarness({ seedSource: () => 7 });
  h.ok("sg.create", { name: "g", bucketCount: 256, allowMixedModels: true });
  h.ok("appliance.add", { id: "a1", model: "tg-4", cores: 4, memoryMb: 1024, version: "1.0", address: "10.0.0.1" });
  h.ok("appliance.add", { id: "b1", model: "tg-8", cores: 8, memoryMb: 1024, version: "1.0", address: "10.0.0.2" });
  h.ok("sg.assign", { group: "g", appliance: "a1" });
  h.ok("sg.assign", { group: "g", appliance: "b1" });
  h.ok("changes.apply", { group: "g" });
  return h;
}

function member(appliance: string, model: string, cores: number, perCorePps: number | null, weight = cores): CapacityMemberInput {
  return { appliance, model, cores, weight, estimate: { perCorePps, samples: perCorePps === null ? 0 : CAPACITY_SAMPLES_MIN } };
}

function group(members: CapacityMemberInput[], extra: Partial<CapacityGroupInput> = {}): CapacityGroupInput {
  return { name: "g", allowMixedModels: true, weightsSource: "cores", busy: false, members, ...extra };
}

describe("the estimator", () => {
  it("counts only loaded samples of UP members, and only after the minimum sample count", () => {
    const h = mixedGroup();
    const e = new CapacityEstimator();
    const model = h.cp.current;
    // Noise below the thresholds: idle CPU, or CPU with few packets.
    expect(e.observe(model, "a1", 0, 5, 50_000)).toBe(false);
    expect(e.observe(model, "a1", 0, 50, 999)).toBe(false);
    expect(e.observe(model, "a1", 0, null, 50_000)).toBe(false);
    expect(e.observe(model, "nobody", 0, 50, 50_000)).toBe(false);
    expect(e.estimateOf("a1")).toEqual({ perCorePps: null, samples: 0 });
    for (let i = 0; i < CAPACITY_SAMPLES_MIN - 1; i++) expect(e.observe(model, "a1", i * 100, 50, 50_000)).toBe(true);
    expect(e.estimateOf("a1")).toEqual({ perCorePps: null, samples: CAPACITY_SAMPLES_MIN - 1 });
    e.observe(model, "a1", 5_000, 50, 50_000);
    // 50,000 packets/s at half a core: 100,000 packets per CPU-second.
    expect(e.estimateOf("a1")).toEqual({ perCorePps: 100_000, samples: CAPACITY_SAMPLES_MIN });
    // Interleaved noise changes nothing.
    e.observe(model, "a1", 5_100, 3, 200_000);
    e.observe(model, "a1", 5_200, 90, 10);
    expect(e.estimateOf("a1")).toEqual({ perCorePps: 100_000, samples: CAPACITY_SAMPLES_MIN });
  });

  it("ignores members in a transition or not UP, and restarts when the model or version changes", () => {
    const h = mixedGroup();
    const e = new CapacityEstimator();
    h.ok("appliance.add", { id: "a2", model: "tg-4", cores: 4, memoryMb: 1024, version: "1.0", address: "10.0.0.3" });
    h.ok("sg.assign", { group: "g", appliance: "a2" });
    h.ok("changes.apply", { group: "g" }); // a join: fills pending
    expect(h.cp.current.groups.get("g")!.transition).not.toBeNull();
    expect(e.observe(h.cp.current, "a1", 0, 50, 50_000)).toBe(false);
    const settled = mixedGroup();
    for (let i = 0; i < 3; i++) e.observe(settled.cp.current, "a1", i, 50, 50_000);
    expect(e.estimateOf("a1").samples).toBe(3);
    const upgraded: ControlModel = {
      ...settled.cp.current,
      appliances: new Map([...settled.cp.current.appliances].map(([id, a]) => [id, id === "a1" ? { ...a, version: "1.1" } : a])),
    };
    e.observe(upgraded, "a1", 10, 50, 50_000);
    expect(e.estimateOf("a1").samples).toBe(1);
    const down: ControlModel = { ...settled.cp.current, members: new Map([...settled.cp.current.members].map(([id, m]) => [id, { ...m, state: "DOWN" as const }])) };
    expect(e.observe(down, "b1", 20, 50, 50_000)).toBe(false);
  });

  it(`a fixed cost per packet reads as exactly that rate, whatever the load pattern (seed ${SEED})`, () => {
    const h = mixedGroup();
    const model = h.cp.current;
    fc.assert(
      fc.property(
        fc.integer({ min: 20_000, max: 2_000_000 }),
        fc.array(fc.record({ cpuPct: fc.double({ min: 10, max: 400, noNaN: true }), gapMs: fc.integer({ min: 1, max: 120_000 }), noise: fc.boolean() }), {
          minLength: CAPACITY_SAMPLES_MIN,
          maxLength: 200,
        }),
        (perCorePps, samples) => {
          const e = new CapacityEstimator();
          let t = 0;
          let counted = 0;
          for (const s of samples) {
            t += s.gapMs;
            // A member's share of the traffic changes its CPU, not its cost per packet.
            if (s.noise) expect(e.observe(model, "a1", t, s.cpuPct / 41, (perCorePps * s.cpuPct) / 100)).toBe(false);
            else if (e.observe(model, "a1", t, s.cpuPct, (perCorePps * s.cpuPct) / 100)) counted++;
          }
          const est = e.estimateOf("a1");
          expect(est.samples).toBe(counted);
          if (counted >= CAPACITY_SAMPLES_MIN) expect(Math.abs(est.perCorePps! - perCorePps)).toBeLessThanOrEqual(Math.max(1, perCorePps * 1e-9));
          else expect(est.perCorePps).toBeNull();
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("smooths: a step in the cost per packet moves the estimate over a minute, not at once", () => {
    const model = mixedGroup().cp.current;
    const e = new CapacityEstimator();
    let t = 0;
    for (let i = 0; i < 600; i++, t += 1000) e.observe(model, "a1", t, 50, 50_000); // 100k per core for 10 min
    e.observe(model, "a1", t, 50, 100_000); // one sample at 200k
    const after = e.estimateOf("a1").perCorePps!;
    expect(after).toBeGreaterThan(100_000);
    expect(after).toBeLessThan(105_000);
    for (let i = 0; i < 600; i++, t += 1000) e.observe(model, "a1", t, 50, 100_000);
    expect(e.estimateOf("a1").perCorePps!).toBeGreaterThan(199_000);
  });

  it("keeps at most CAPACITY_APPLIANCES_MAX appliances (the oldest goes)", () => {
    const h = new MemoryHarness({ seedSource: () => 7 });
    h.ok("sg.create", { name: "g", bucketCount: ORCHESTRATOR_LIMITS.bucketCountMax });
    const n = CAPACITY_APPLIANCES_MAX + 1;
    // A model with n UP members, built directly (the harness would take long).
    const base = h.cp.current;
    const appliances = new Map(base.appliances);
    const members = new Map(base.members);
    for (let i = 0; i < n; i++) {
      const id = `m${i}`;
      appliances.set(id, { id, model: "tg", cores: 1, memoryMb: 1, version: "1", address: "x", registeredAt: "" });
      members.set(id, { appliance: id, group: "g", state: "UP", since: "" });
    }
    const model: ControlModel = { ...base, appliances, members };
    const e = new CapacityEstimator();
    for (let i = 0; i < n; i++) e.observe(model, `m${i}`, i, 50, 50_000);
    expect(e.size).toBe(CAPACITY_APPLIANCES_MAX);
    expect(e.estimateOf("m0").samples).toBe(0);
    expect(e.estimateOf(`m${n - 1}`).samples).toBe(1);
  });
});

describe("the proposal", () => {
  it("gives the model that forwards more per core proportionally more weight, with the numbers in the reason", () => {
    const r = proposeWeights(group([member("a1", "tg-4", 4, 217_000), member("b1", "tg-8", 4, 412_000)]));
    expect(r.proposal).not.toBeNull();
    // 4 cores x 1.0 x 10 and 4 cores x 1.9 x 10.
    expect(r.proposal!.weights).toEqual({ a1: 40, b1: 76 });
    expect(r.proposal!.reason).toBe("model tg-8 forwards 1.9x tg-4 per core (412k vs 217k packets/s per core); a1's share moves 31%");
  });

  it(`weights are integers in range, proportional to measured capacity within rounding (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ model: fc.constantFrom("x", "y", "z"), cores: fc.integer({ min: 1, max: ORCHESTRATOR_LIMITS.coresMax }) }), { minLength: 2, maxLength: 12 }),
        fc.record({ x: fc.integer({ min: 1_000, max: 5_000_000 }), y: fc.integer({ min: 1_000, max: 5_000_000 }), z: fc.integer({ min: 1_000, max: 5_000_000 }) }),
        (specs, rates) => {
          const members = specs.map((s, i) => member(`m${String(i).padStart(2, "0")}`, s.model, s.cores, rates[s.model as "x" | "y" | "z"], 1));
          const models = new Set(specs.map((s) => s.model));
          const r = proposeWeights(group(members));
          if (models.size < 2) {
            expect(r.proposal).toBeNull();
            return;
          }
          const slowest = Math.min(...[...models].map((m) => rates[m as "x" | "y" | "z"]));
          const exact = new Map(members.map((m) => [m.appliance, m.cores * Math.min(CAPACITY_RATIO_MAX, m.estimate.perCorePps! / slowest) * CAPACITY_WEIGHT_SCALE]));
          if (r.proposal === null) {
            // Hysteresis: then no member's share moves by more than 25% (all weigh 1 now).
            const total = [...exact.values()].reduce((a, b) => a + Math.min(ORCHESTRATOR_LIMITS.weightMax, Math.round(b)), 0);
            for (const w of exact.values()) expect(Math.abs(Math.min(ORCHESTRATOR_LIMITS.weightMax, Math.round(w)) / total - 1 / members.length) * members.length).toBeLessThanOrEqual(0.25 + 1e-9);
            return;
          }
          for (const m of members) {
            const w = r.proposal.weights[m.appliance] ?? m.weight;
            expect(Number.isInteger(w)).toBe(true);
            expect(w).toBeGreaterThanOrEqual(1);
            expect(w).toBeLessThanOrEqual(ORCHESTRATOR_LIMITS.weightMax);
            const x = exact.get(m.appliance)!;
            if (x <= ORCHESTRATOR_LIMITS.weightMax) expect(Math.abs(w - x)).toBeLessThanOrEqual(0.5 + 1e-9);
            else expect(w).toBe(ORCHESTRATOR_LIMITS.weightMax);
          }
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it("proposes nothing for one model, for a group that does not mix models, or before every model is measured", () => {
    expect(proposeWeights(group([member("a1", "tg-4", 4, 100_000), member("a2", "tg-4", 8, 300_000)])).why).toBe("one model (tg-4): weights are cores");
    expect(proposeWeights(group([member("a1", "tg-4", 4, 100_000), member("b1", "tg-8", 4, 300_000)], { allowMixedModels: false })).proposal).toBeNull();
    const measuring = proposeWeights(group([member("a1", "tg-4", 4, 100_000), member("b1", "tg-8", 4, null)]));
    expect(measuring.proposal).toBeNull();
    expect(measuring.why).toMatch(/^measuring: no member of model tg-8 has 20 samples/);
  });

  it("leaves an operator's weights and a busy group alone", () => {
    const members = [member("a1", "tg-4", 4, 100_000), member("b1", "tg-8", 4, 300_000)];
    expect(proposeWeights(group(members, { weightsSource: "operator" }))).toEqual({ proposal: null, why: "the operator set the weights (tandem sg weight g --auto returns them to automatic)" });
    expect(proposeWeights(group(members, { busy: true })).proposal).toBeNull();
  });

  it("hysteresis: no proposal until some member's share would move by more than 25%", () => {
    const at = (bRate: number, bWeight = 80) => proposeWeights(group([member("a1", "tg-4", 4, 100_000, 40), member("b1", "tg-8", 4, bRate, bWeight)], { weightsSource: "measured" }));
    expect(at(200_000).proposal).toBeNull(); // as weighed
    expect(at(220_000).why).toMatch(/^weights follow measured capacity within 25% \(largest move 6%, a1\)/);
    expect(at(300_000).proposal).toBeNull(); // a1: 1/3 -> 1/4 of the total is exactly 25%
    expect(at(350_000).proposal!.weights).toEqual({ b1: 140 });
    // Raw weights do not matter, only shares: cores 4 and 8 route like 40 and 80.
    expect(proposeWeights(group([member("a1", "tg-4", 4, 100_000, 4), member("b1", "tg-8", 4, 200_000, 8)])).proposal).toBeNull();
  });

  it("on the measured scale, a joiner of a model not measured yet weighs as the slowest, and one model stays proportional to cores", () => {
    const joiner = proposeWeights(
      group([member("a1", "tg-4", 4, 100_000, 40), member("b1", "tg-8", 4, 200_000, 80), member("c1", "tg-16", 16, null, 16)], { weightsSource: "measured" }),
    );
    expect(joiner.proposal!.weights).toEqual({ c1: 160 });
    expect(joiner.proposal!.reason).toMatch(/model tg-16 not measured yet: weighed as tg-4/);
    const alone = proposeWeights(group([member("a1", "tg-4", 4, 100_000, 40), member("a2", "tg-4", 8, null, 8)], { weightsSource: "measured", allowMixedModels: false }));
    expect(alone.proposal!.weights).toEqual({ a2: 80 });
  });

  it("bounds the ratio a model is believed", () => {
    const r = proposeWeights(group([member("a1", "tg-4", 1, 1_000), member("b1", "tg-8", 1, 1_000_000)]));
    expect(r.proposal!.weights).toEqual({ a1: CAPACITY_WEIGHT_SCALE, b1: CAPACITY_RATIO_MAX * CAPACITY_WEIGHT_SCALE });
  });
});

describe("the weigher", () => {
  it("proposes at most once per cooldown for the same members; a change of members lifts it", () => {
    const w = new CapacityWeigher();
    const members = [member("a1", "tg-4", 4, 100_000), member("b1", "tg-8", 4, 200_000)];
    const first = w.evaluate(0, [group(members)]);
    expect(first[0]!.proposal!.weights).toEqual({ a1: 40, b1: 80 });
    // The commands failed (weights unchanged): not again within the cooldown.
    const again = w.evaluate(60_000, [group(members)]);
    expect(again[0]!.proposal).toBeNull();
    expect(again[0]!.why).toMatch(/, but cooling down: 540 s left$/);
    expect(w.lastDecisionOf("g")).toMatchObject({ atMs: 60_000, proposal: null });
    expect(w.evaluate(CAPACITY_COOLDOWN_MS, [group(members)])[0]!.proposal).not.toBeNull();
    // A joiner (cores weight, off the measured scale) is weighed at once.
    const joined = [member("a1", "tg-4", 4, 100_000, 40), member("b1", "tg-8", 4, 200_000, 80), member("a2", "tg-4", 4, null, 4)];
    expect(w.evaluate(CAPACITY_COOLDOWN_MS + 1_000, [group(joined, { weightsSource: "measured" })])[0]!.proposal!.weights).toEqual({ a2: 40 });
  });

  it("reads groups from the model: busy with pending changes, members with their weights and estimates", () => {
    const h = mixedGroup();
    const e = new CapacityEstimator();
    for (let i = 0; i < CAPACITY_SAMPLES_MIN; i++) e.observe(h.cp.current, "b1", i * 100, 25, 50_000);
    let [g] = capacityGroupInputs(h.cp.current, e);
    expect(g).toEqual({
      name: "g",
      allowMixedModels: true,
      weightsSource: "cores",
      busy: false,
      members: [
        { appliance: "a1", model: "tg-4", cores: 4, weight: 4, estimate: { perCorePps: null, samples: 0 } },
        { appliance: "b1", model: "tg-8", cores: 8, weight: 8, estimate: { perCorePps: 200_000, samples: CAPACITY_SAMPLES_MIN } },
      ],
    });
    h.ok("sg.weight", { group: "g", appliance: "a1", weight: 5 });
    [g] = capacityGroupInputs(h.cp.current, e);
    expect(g!.busy).toBe(true);
  });

  it("finds measured weights left pending by a rollback, and only when nothing else is pending", () => {
    const h = mixedGroup();
    h.ok("appliance.add", { id: "a2", model: "tg-4", cores: 4, memoryMb: 1024, version: "1.0", address: "10.0.0.3" });
    h.ok("sg.assign", { group: "g", appliance: "a2" });
    h.ok("changes.apply", { group: "g" });
    h.confirmAllFills("g");
    h.tick();
    h.ok("weights.measured", { group: "g", weights: { a1: 40, a2: 40, b1: 160 }, reason: "r" }, "capacity: r");
    // Staged and not applied looks the same: the runner never evaluates between its stage and its apply.
    expect(leftoverMeasuredChanges(h.cp.current)).toHaveLength(3);
    h.ok("changes.apply", { group: "g" }, "capacity: r");
    expect(leftoverMeasuredChanges(h.cp.current)).toEqual([]); // its transition runs
    for (let t = 0; t <= h.cp.fillTimeoutMs + 100; t += 50) {
      h.heartbeat("a1", "a2", "b1");
      h.advance(50);
      h.tick();
    }
    expect(leftoverMeasuredChanges(h.cp.current).map((c) => c.appliance)).toEqual(["a1", "a2", "b1"]);
    h.ok("changes.discard", { group: "g", appliance: "a1" });
    h.ok("sg.weight", { group: "g", appliance: "a1", weight: 3 });
    expect(leftoverMeasuredChanges(h.cp.current)).toEqual([]); // the operator's to settle
  });
});
