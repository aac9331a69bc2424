// A small sweep in CI: seeds 1-20, every fault the scenario generator draws, shortened
// (40% of the traffic, 2.5 s of it) to stay fast. `tandem sim --seeds K` runs the full-size runs.
// A failing seed prints its violations; replay it with runSimulation(seed, SWEEP_OPTIONS).

import { describe, expect, it } from "vitest";
import { runSimulation, type SimOptions } from "./simulator.js";

const SWEEP_OPTIONS: SimOptions = { trafficScale: 0.4, trafficMs: 2500 };

describe("simulator sweep", () => {
  it("finds no violation in seeds 1-20 (shortened runs)", () => {
    const failing: string[] = [];
    let crashes = 0;
    let joins = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const r = runSimulation(seed, SWEEP_OPTIONS);
      crashes += r.stats.crashes;
      joins += r.stats.joins;
      if (r.violationCount > 0) failing.push(`seed ${seed}: ${r.violations.slice(0, 3).join(" | ")}`);
    }
    expect(failing).toEqual([]);
    // The sweep exercised faults at all.
    expect(crashes).toBeGreaterThan(5);
    expect(joins).toBeGreaterThan(5);
  });
});
