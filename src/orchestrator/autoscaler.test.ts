// The autoscaler's decision core against synthetic load: a group whose members share a demand
// (in percent of one member's CPU) evenly, sampled once a virtual second, with every action
// applied at once (the best case for flapping: the new membership is measured immediately).

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Prng } from "../stdx/prng.js";
import {
  Autoscaler,
  SYNC_LAG_REMOVE_MAX_MS,
  windowMsOf,
  type AutoscaleAction,
  type AutoscaleGroupInput,
  type LoadSample,
  type SpareAppliance,
} from "./autoscaler.js";
import { AUTOSCALE_DEFAULTS, resolveAutoscale, type AutoscaleRules } from "./model.js";

const SEED = 42;
const SECOND = 1000;

function rules(input: Partial<AutoscaleRules> = {}): AutoscaleRules {
  return resolveAutoscale({ enabled: true, ...input });
}

function spare(id: string, model = "tg-4", version = "1.0", cores = 4): SpareAppliance {
  return { id, model, version, cores };
}

function sample(atMs: number, cpuPct: number, extra: Partial<LoadSample> = {}): LoadSample {
  return { atMs, cpuPct, packetsPerSec: cpuPct * 1000, connections: 100, syncLagMs: 0, ...extra };
}

interface Timed {
  atMs: number;
  action: AutoscaleAction;
  members: number;
}

/** One group, its pool, and a demand curve; every action applied at once. */
class Harness {
  readonly autoscaler = new Autoscaler();
  readonly actions: Timed[] = [];
  readonly members: string[];
  readonly pool: SpareAppliance[];
  lastWhy = "";

  constructor(
    readonly rules: AutoscaleRules,
    members: number,
    spares: number,
    /** Demand at a time, in percent of one member (split evenly, each member capped at 100). */
    readonly demand: (atMs: number) => number,
    readonly noise: Prng | null = null,
  ) {
    this.members = Array.from({ length: members }, (_, i) => `m${i + 1}`);
    this.pool = Array.from({ length: spares }, (_, i) => spare(`s${i + 1}`));
  }

  group(): AutoscaleGroupInput {
    return { name: "g", rules: this.rules, allowMixedModels: false, model: "tg-4", version: "1.0", members: [...this.members], busy: false };
  }

  run(untilMs: number, stepMs = SECOND): this {
    for (let t = 0; t <= untilMs; t += stepMs) {
      const per = this.demand(t) / this.members.length;
      for (const m of this.members) {
        const jitter = this.noise === null ? 0 : (this.noise.nextFloat() - 0.5) * 10;
        this.autoscaler.record(m, sample(t, Math.min(100, Math.max(0, per + jitter))));
      }
      const [d] = this.autoscaler.evaluate(t, [this.group()], this.pool);
      this.lastWhy = d!.why;
      const a = d!.action;
      if (a === null) continue;
      if (a.kind === "add") {
        const i = this.pool.findIndex((s) => s.id === a.appliance);
        expect(i).toBeGreaterThanOrEqual(0);
        this.pool.splice(i, 1);
        this.members.push(a.appliance);
      } else {
        const i = this.members.indexOf(a.appliance);
        expect(i).toBeGreaterThanOrEqual(0);
        this.members.splice(i, 1);
        this.pool.push(spare(a.appliance));
      }
      this.actions.push({ atMs: t, action: a, members: this.members.length });
    }
    return this;
  }
}

describe("autoscaler defaults", () => {
  it("is off unless enabled, and judges a 30 s window with the default 300 s cooldown", () => {
    expect(AUTOSCALE_DEFAULTS.enabled).toBe(false);
    expect(windowMsOf(AUTOSCALE_DEFAULTS)).toBe(30_000);
    expect(windowMsOf({ ...AUTOSCALE_DEFAULTS, cooldownMs: 0 })).toBe(1_000);
    const h = new Harness(resolveAutoscale(undefined), 2, 3, () => 190).run(120 * SECOND);
    expect(h.actions).toEqual([]);
    expect(h.lastWhy).toBe("autoscaling is disabled");
  });

  it("adds with a human reason after one full window at the defaults (only enabled)", () => {
    const h = new Harness(rules(), 2, 3, () => 166).run(60 * SECOND);
    expect(h.actions.map((a) => [a.atMs, a.action])).toEqual([[30_000, { kind: "add", group: "g", appliance: "s1", reason: "mean CPU 83% > 75% for 30 s" }]]);
  });
});

describe("autoscaler rules", () => {
  it("rising load adds exactly once per cooldown, up to maxMembers", () => {
    const r = rules({ cooldownMs: 60_000, maxMembers: 6 });
    // Demand far above what 6 members handle: every cooldown, one add, never two.
    const h = new Harness(r, 2, 10, (t) => 400 + t / 1000).run(600 * SECOND);
    const times = h.actions.map((a) => a.atMs);
    expect(h.actions.every((a) => a.action.kind === "add")).toBe(true);
    expect(times).toEqual([6_000, 66_000, 126_000, 186_000]);
    expect(h.members.length).toBe(6);
    expect(h.lastWhy).toMatch(/but the group is at maxMembers 6$/);
  });

  it("a gentle ramp adds only when the mean crosses the high mark, each add at least a cooldown apart", () => {
    const r = rules({ cooldownMs: 60_000 });
    // 2 members at 25% each rising by 0.5 percentage points of demand per second.
    const h = new Harness(r, 2, 10, (t) => 50 + (t / 1000) * 0.5).run(900 * SECOND);
    expect(h.actions.length).toBeGreaterThanOrEqual(2);
    expect(h.actions.every((a) => a.action.kind === "add")).toBe(true);
    for (let i = 1; i < h.actions.length; i++) expect(h.actions[i]!.atMs - h.actions[i - 1]!.atMs).toBeGreaterThanOrEqual(60_000);
    // The first add: demand 150 + 2 * 75 needs t > 200 s, then a full 6 s window.
    expect(h.actions[0]!.atMs).toBeGreaterThan(200_000);
  });

  it("falling load removes the least-loaded member, down to minMembers and no further", () => {
    const r = rules({ cooldownMs: 30_000, minMembers: 2 });
    const h = new Harness(r, 6, 0, () => 48).run(600 * SECOND);
    expect(h.actions.map((a) => a.action.kind)).toEqual(["remove", "remove", "remove", "remove"]);
    expect(h.actions.map((a) => a.atMs)).toEqual([3_000, 33_000, 63_000, 93_000]);
    expect(h.members.length).toBe(2);
    expect(h.actions[0]!.action.reason).toBe("mean CPU 8% < 30% for 3 s; m1 carries the least load (CPU 8%)");
    expect(h.lastWhy).toMatch(/but the group is at minMembers 2$/);
  });

  it("removes the member with the least load", () => {
    const a = new Autoscaler({ windowMs: 10 * SECOND });
    const g: AutoscaleGroupInput = { name: "g", rules: rules({ cooldownMs: 0 }), allowMixedModels: false, model: "x", version: "1", members: ["a", "b", "c"], busy: false };
    a.evaluate(0, [g], []);
    for (let t = 0; t <= 10 * SECOND; t += SECOND) {
      a.record("a", sample(t, 20));
      a.record("b", sample(t, 5));
      a.record("c", sample(t, 12));
    }
    const [d] = a.evaluate(10 * SECOND, [g], []);
    expect(d!.action).toEqual({ kind: "remove", group: "g", appliance: "b", reason: "mean CPU 12.3% < 30% for 10 s; b carries the least load (CPU 5%)" });
  });

  it("hysteresis: load between the thresholds does nothing, whatever the member count", () => {
    const r = rules({ cooldownMs: 10_000 });
    for (const members of [2, 3, 4, 8]) {
      // 31%..74% per member.
      const h = new Harness(r, members, 5, (t) => members * (31 + ((t / 1000) % 44))).run(600 * SECOND);
      expect(h.actions).toEqual([]);
    }
  });

  it("connectionsPerMemberHigh adds, and blocks removals that would cross half of it", () => {
    const r = rules({ cooldownMs: 10_000, connectionsPerMemberHigh: 1000 });
    const a = new Autoscaler();
    const group = (members: string[]): AutoscaleGroupInput => ({ name: "g", rules: r, allowMixedModels: false, model: "x", version: "1", members, busy: false });
    a.evaluate(0, [group(["a", "b"])], []);
    for (let t = 0; t <= 1000; t += 100) for (const m of ["a", "b"]) a.record(m, sample(t, 40, { connections: 1500 }));
    const [d] = a.evaluate(1000, [group(["a", "b"])], [spare("s", "x", "1")]);
    expect(d!.action).toEqual({ kind: "add", group: "g", appliance: "s", reason: "mean 1500 connections per member > 1000 for 1 s" });

    const b = new Autoscaler();
    b.evaluate(0, [group(["a", "b", "c"])], []);
    for (let t = 0; t <= 1000; t += 100) for (const m of ["a", "b", "c"]) b.record(m, sample(t, 10, { connections: 400 }));
    const [e] = b.evaluate(1000, [group(["a", "b", "c"])], []);
    expect(e!.action).toBeNull();
    expect(e!.why).toBe("mean CPU 10% < 30% for 1 s, but 2 members would hold 600 connections each");
  });

  it("no removal while sync lags, no action while busy, and the window restarts after", () => {
    const r = rules({ cooldownMs: 10_000 });
    const a = new Autoscaler();
    const g = (busy: boolean): AutoscaleGroupInput => ({ name: "g", rules: r, allowMixedModels: false, model: "x", version: "1", members: ["a", "b", "c"], busy });
    a.evaluate(0, [g(false)], []);
    for (let t = 0; t <= 1000; t += 100) for (const m of ["a", "b", "c"]) a.record(m, sample(t, 5, { syncLagMs: SYNC_LAG_REMOVE_MAX_MS + 1 }));
    expect(a.evaluate(1000, [g(false)], [])[0]!.why).toBe("mean CPU 5% < 30% for 1 s, but sync lags 1001 ms (> 1000 ms)");
    for (let t = 1100; t <= 3000; t += 100) for (const m of ["a", "b", "c"]) a.record(m, sample(t, 5));
    expect(a.evaluate(2500, [g(true)], [])[0]!.action).toBeNull();
    // Busy at 2.5 s: a full window must pass after it, whatever the samples say.
    expect(a.evaluate(3000, [g(false)], [])[0]!.why).toBe("measuring: 0.5 s until a full window of 1 s");
    for (let t = 3100; t <= 3500; t += 100) for (const m of ["a", "b", "c"]) a.record(m, sample(t, 5));
    expect(a.evaluate(3500, [g(false)], [])[0]!.action?.kind).toBe("remove");
  });

  it("an incomplete window (a member silent in its first half) decides nothing", () => {
    const r = rules({ cooldownMs: 10_000 });
    const a = new Autoscaler();
    const g: AutoscaleGroupInput = { name: "g", rules: r, allowMixedModels: false, model: "x", version: "1", members: ["a", "b"], busy: false };
    a.evaluate(0, [g], []);
    for (let t = 0; t <= 1000; t += 100) a.record("a", sample(t, 95));
    a.record("b", sample(900, 95));
    const [d] = a.evaluate(1000, [g], [spare("s", "x", "1")]);
    expect(d!.action).toBeNull();
    expect(d!.why).toBe("incomplete window: b reported no load in the first 0.5 s of the window");
  });

  it("below minMembers it adds whatever the load; above maxMembers it removes", () => {
    const a = new Autoscaler();
    const g = (members: string[], r: AutoscaleRules): AutoscaleGroupInput => ({ name: "g", rules: r, allowMixedModels: false, model: "x", version: "1", members, busy: false });
    const small = rules({ cooldownMs: 10_000, minMembers: 3 });
    a.evaluate(0, [g(["a", "b"], small)], []);
    expect(a.evaluate(1000, [g(["a", "b"], small)], [spare("s", "x", "1")])[0]!.action).toEqual({ kind: "add", group: "g", appliance: "s", reason: "2 members < minMembers 3" });
    const b = new Autoscaler();
    const big = rules({ cooldownMs: 10_000, maxMembers: 2, minMembers: 1 });
    b.evaluate(0, [g(["a", "b", "c"], big)], []);
    for (let t = 0; t <= 1000; t += 100) for (const m of ["a", "b", "c"]) b.record(m, sample(t, m === "c" ? 50 : 60));
    expect(b.evaluate(1000, [g(["a", "b", "c"], big)], [])[0]!.action).toEqual({
      kind: "remove",
      group: "g",
      appliance: "c",
      reason: "3 members > maxMembers 2; c carries the least load (CPU 50%)",
    });
  });
});

describe("autoscaler: spares and priority", () => {
  const overloaded = (a: Autoscaler, name: string, cpu: number, members: string[], extra: Partial<AutoscaleGroupInput> = {}): AutoscaleGroupInput => {
    for (let t = 0; t <= 1000; t += 100) for (const m of members) a.record(m, sample(t, cpu));
    return { name, rules: rules({ cooldownMs: 10_000 }), allowMixedModels: false, model: "tg-4", version: "1.0", members, busy: false, ...extra };
  };

  function contest(order: "ab" | "ba", extraA: Partial<AutoscaleGroupInput> = {}, cpuA = 80, cpuB = 90) {
    const a = new Autoscaler();
    const ga = overloaded(a, "alpha", cpuA, ["a1", "a2"], extraA);
    const gb = overloaded(a, "beta", cpuB, ["b1", "b2"]);
    const groups = order === "ab" ? [ga, gb] : [gb, ga];
    a.evaluate(0, groups, []);
    const pool = [spare("last")];
    const first = a.evaluate(1000, groups, pool);
    // The caller stages the winner's assign: the spare leaves the pool. The loser sees none.
    const second = a.evaluate(2000, groups, []);
    const byName = (ds: typeof first) => Object.fromEntries(ds.map((d) => [d.group, d]));
    return { first: byName(first), second: byName(second) };
  }

  it("two groups, one spare: the larger overload ratio wins, in any input order; the loser waits without flapping", () => {
    for (const order of ["ab", "ba"] as const) {
      const { first, second } = contest(order);
      expect(first.beta!.action).toEqual({ kind: "add", group: "beta", appliance: "last", reason: "mean CPU 90% > 75% for 1 s" });
      expect(first.alpha!.action).toBeNull();
      expect(first.alpha!.why).toBe("mean CPU 80% > 75% for 1 s, but spare last went to beta first (priority); waiting for a spare");
      expect(second.alpha!.action).toBeNull();
      expect(second.alpha!.why).toBe("mean CPU 80% > 75% for 1 s, but no compatible spare (version 1.0, model tg-4)");
      expect(second.beta!.why).toMatch(/^cooling down/);
    }
  });

  it("a stated priority beats the overload ratio; equal everything falls to the group name", () => {
    expect(contest("ba", { rules: rules({ cooldownMs: 10_000, priority: 1 }) }).first.alpha!.action?.appliance).toBe("last");
    const tie = contest("ba", {}, 90, 90);
    expect(tie.first.alpha!.action?.appliance).toBe("last");
    expect(tie.first.beta!.action).toBeNull();
  });

  it("priority comes from the stored rules: a negative one yields even to a milder overload", () => {
    const low = contest("ab", { rules: rules({ cooldownMs: 10_000, priority: -5 }) }, 99, 76);
    expect(low.first.beta!.action?.appliance).toBe("last");
    expect(low.first.alpha!.why).toBe("mean CPU 99% > 75% for 1 s, but spare last went to beta first (priority); waiting for a spare");
  });

  it("a spare of another model is used only with allowMixedModels; another version never", () => {
    const a = new Autoscaler();
    const g = overloaded(a, "g", 90, ["m1", "m2"]);
    a.evaluate(0, [g], []);
    const pool = [spare("other-model", "tg-8", "1.0", 8), spare("other-version", "tg-4", "2.0")];
    const [d] = a.evaluate(1000, [g], pool);
    expect(d!.action).toBeNull();
    expect(d!.why).toBe("mean CPU 90% > 75% for 1 s, but no compatible spare (version 1.0, model tg-4)");

    const b = new Autoscaler();
    const mixed = overloaded(b, "g", 90, ["m1", "m2"], { allowMixedModels: true });
    b.evaluate(0, [mixed], []);
    expect(b.evaluate(1000, [mixed], pool)[0]!.action?.appliance).toBe("other-model");
    // With mixing allowed a same-model spare is still preferred, even with fewer cores.
    const c = new Autoscaler();
    const mixed2 = overloaded(c, "g", 90, ["m1", "m2"], { allowMixedModels: true });
    c.evaluate(0, [mixed2], []);
    expect(c.evaluate(1000, [mixed2], [...pool, spare("same", "tg-4", "1.0", 2)])[0]!.action?.appliance).toBe("same");
  });

  it("decides the same way on every run (deterministic)", () => {
    const runOnce = () => {
      const h = new Harness(rules({ cooldownMs: 20_000 }), 3, 4, (t) => 300 * Math.sin(t / 90_000) + 200, new Prng(SEED));
      return h.run(1200 * SECOND).actions;
    };
    expect(runOnce()).toEqual(runOnce());
  });
});

describe("autoscaler: no flapping (property)", () => {
  const level = fc.record({ demand: fc.integer({ min: 0, max: 1200 }), holdS: fc.integer({ min: 1, max: 120 }) });
  const trace = fc.record({
    levels: fc.array(level, { minLength: 1, maxLength: 12 }),
    minMembers: fc.integer({ min: 1, max: 6 }),
    extra: fc.integer({ min: 0, max: 10 }),
    cooldownS: fc.integer({ min: 5, max: 60 }),
    noiseSeed: fc.integer({ min: 0, max: 0xffff }),
  });
  type Trace = typeof trace extends fc.Arbitrary<infer T> ? T : never;

  function play(t: Trace, noisy: boolean): { h: Harness; r: AutoscaleRules; ends: number[] } {
    const r = rules({ cooldownMs: t.cooldownS * SECOND, minMembers: t.minMembers, maxMembers: t.minMembers + t.extra });
    const ends: number[] = [];
    let at = 0;
    for (const l of t.levels) ends.push((at += l.holdS * SECOND));
    const demand = (ms: number): number => {
      const i = ends.findIndex((e) => ms < e);
      return t.levels[i === -1 ? t.levels.length - 1 : i]!.demand;
    };
    const h = new Harness(r, t.minMembers, 12, demand, noisy ? new Prng(t.noiseSeed) : null).run(at + 60 * SECOND);
    return { h, r, ends };
  }

  it(`random noisy load traces: no add/remove alternation within a cooldown, member count within bounds (seed ${SEED})`, () => {
    const prop = fc.property(trace, (t) => {
      const { h, r } = play(t, true);
      let alternations = 0;
      for (let i = 1; i < h.actions.length; i++) {
        const prev = h.actions[i - 1]!;
        const cur = h.actions[i]!;
        expect(cur.atMs - prev.atMs).toBeGreaterThanOrEqual(r.cooldownMs);
        if (cur.action.kind !== prev.action.kind && cur.atMs - prev.atMs < r.cooldownMs) alternations++;
      }
      expect(alternations).toBe(0);
      for (const a of h.actions) {
        expect(a.members).toBeGreaterThanOrEqual(r.minMembers);
        expect(a.members).toBeLessThanOrEqual(r.maxMembers);
      }
    });
    fc.assert(prop, { seed: SEED, numRuns: 150 });
  });

  it(`random steady levels: while demand holds still, actions go one way only (seed ${SEED})`, () => {
    const prop = fc.property(trace, (t) => {
      const { h, r, ends } = play(t, false);
      const windowMs = windowMsOf(r);
      let start = 0;
      for (const end of [...ends.slice(0, -1), Infinity]) {
        // Windows that began at this level's start or later see only this level's demand.
        const kinds = new Set(h.actions.filter((a) => a.atMs >= start + windowMs && a.atMs < end).map((a) => a.action.kind));
        expect(kinds.size).toBeLessThanOrEqual(1);
        start = end;
      }
    });
    fc.assert(prop, { seed: SEED, numRuns: 150 });
  });
});

describe("autoscaler: status (last evaluation, last action, window)", () => {
  const g = (members: string[]): AutoscaleGroupInput => ({ name: "g", rules: rules({ cooldownMs: 20_000 }), allowMixedModels: false, model: "x", version: "1", members, busy: false });

  it("is null before the first evaluation, then keeps the window each evaluation judged", () => {
    const a = new Autoscaler();
    expect(a.statusOf("g")).toBeNull();
    a.evaluate(0, [g(["a", "b"])], []);
    const first = a.statusOf("g")!;
    expect(first.lastEvaluation).toEqual({ atMs: 0, action: null, why: "measuring: 2 s until a full window of 2 s" });
    expect(first.lastAction).toBeNull();
    expect(first.window).toEqual({ startMs: 0, lengthMs: 2000, samples: 0, members: 2, membersReporting: 0, cpuPct: null, packetsPerSec: null, connectionsPerMember: null, syncLagMsMax: null });
    // A partial window has figures too.
    for (const t of [500, 1000]) a.record("a", sample(t, 80, { connections: 10, syncLagMs: 4 }));
    a.record("b", sample(700, 40, { connections: 30 }));
    a.evaluate(1000, [g(["a", "b"])], []);
    expect(a.statusOf("g")!.window).toMatchObject({ startMs: 0, samples: 3, membersReporting: 2, cpuPct: 60 });
    // a: 4 samples at 80%; b: 40% then 60%. Each member counts once: (80 + 50) / 2.
    for (const t of [1500, 2000]) a.record("a", sample(t, 80, { connections: 10, syncLagMs: 4 }));
    a.record("b", sample(1800, 60, { connections: 30, syncLagMs: 9 }));
    a.evaluate(2000, [g(["a", "b"])], [spare("s", "x", "1")]);
    const s = a.statusOf("g")!;
    expect(s.lastEvaluation).toEqual({ atMs: 2000, action: null, why: "mean CPU 65% within 30%..75% for 2 s, 20 connections per member" });
    expect(s.window).toEqual({ startMs: 0, lengthMs: 2000, samples: 6, members: 2, membersReporting: 2, cpuPct: 65, packetsPerSec: 65_000, connectionsPerMember: 20, syncLagMsMax: 4.5 });
    expect(s.lastAction).toBeNull();
  });

  it("keeps the last action beside later evaluations, and the window the action rested on", () => {
    const a = new Autoscaler();
    a.evaluate(0, [g(["a", "b"])], []);
    for (let t = 0; t <= 2000; t += 250) for (const m of ["a", "b"]) a.record(m, sample(t, 90));
    const [d] = a.evaluate(2000, [g(["a", "b"])], [spare("s", "x", "1")]);
    const added = { kind: "add", group: "g", appliance: "s", reason: "mean CPU 90% > 75% for 2 s" };
    expect(d!.action).toEqual(added);
    expect(a.statusOf("g")).toEqual({ lastEvaluation: { atMs: 2000, action: added, why: added.reason }, lastAction: { ...added, atMs: 2000 }, window: expect.objectContaining({ startMs: 0, samples: 18, cpuPct: 90 }) });
    a.record("s", sample(3000, 10));
    a.evaluate(3000, [g(["a", "b", "s"])], []);
    const later = a.statusOf("g")!;
    expect(later.lastEvaluation.why).toBe("cooling down: 19 s left");
    expect(later.lastAction).toEqual({ ...added, atMs: 2000 });
    // The window restarted with the new membership.
    expect(later.window).toMatchObject({ startMs: 3000, members: 3, membersReporting: 1, samples: 1 });
    // A copy: the caller cannot change the autoscaler's state through it.
    later.window.samples = 99;
    expect(a.statusOf("g")!.window.samples).toBe(1);
  });
});
