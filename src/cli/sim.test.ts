// `tandem sim` in-process: argument checks, the summary's JSON shape, and the replay line.
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TandemError } from "../stdx/errors.js";
import { registerSim, replayCommand, summarize } from "./sim.js";
import type { SimResult } from "../sim/simulator.js";

function tandem(...args: string[]): string {
  const program = new Command().exitOverride();
  registerSim(program);
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    program.parse(["node", "tandem", ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

afterEach(() => {
  process.exitCode = undefined;
});

describe("tandem sim", () => {
  it("runs K seeds and prints runs, violations and failingSeeds as JSON", () => {
    const summary = JSON.parse(tandem("sim", "--seeds", "2", "--from", "4", "--json"));
    expect(summary.runs).toBe(2);
    expect(summary).toHaveProperty("violations");
    expect(Array.isArray(summary.failingSeeds)).toBe(true);
    expect(summary.stats.flows).toBeGreaterThan(0);
    expect(summary.meanRunMs).toBeGreaterThanOrEqual(0);
  });

  it("replays one seed and prints the command that replays it", () => {
    const text = tandem("sim", "--seed", "4");
    expect(text).toMatch(/^seed 4: \d+ violations? \(trace [0-9a-f]{8}/);
    expect(text).toContain("replay: tandem sim --seed 4");
  });

  it("refuses bad arguments with a TandemError", () => {
    expect(() => tandem("sim", "--seed", "x")).toThrow(TandemError);
    expect(() => tandem("sim", "--seeds", "0")).toThrow(/--seeds must be an integer/);
    expect(() => tandem("sim", "--seed", "1", "--seeds", "2")).toThrow(/either --seed or --seeds/);
  });

  it("sums statistics, keeps maxima of *Max fields, and lists failing seeds", () => {
    const fake = (seed: number, violationCount: number, detectMsMax: number): SimResult =>
      ({ seed, violationCount, violations: [], traceHash: "0", log: [], stats: { flows: 10, detectMsMax } }) as unknown as SimResult;
    const s = summarize([
      { result: fake(1, 0, 60), runMs: 100 },
      { result: fake(2, 3, 75), runMs: 300 },
    ]);
    expect(s).toMatchObject({ runs: 2, violations: 3, failingSeeds: [2], meanRunMs: 200, maxRunMs: 300 });
    expect(s.stats).toEqual({ flows: 20, detectMsMax: 75 });
    expect(replayCommand(2)).toBe("tandem sim --seed 2");
  });
});
