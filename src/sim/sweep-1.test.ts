// CI sweep, part 1 of 2: seeds 1-100, full-size runs (see sweep.ts).
import { describe, expect, it } from "vitest";
import { sweep } from "./sweep.js";

describe("simulator sweep", () => {
  it("finds no violation in seeds 1-100", () => {
    const s = sweep(1, 100);
    expect(s.failing).toEqual([]);
    // The sweep exercised every kind of fault.
    expect(s.crashes).toBeGreaterThan(50);
    expect(s.crashesDuringFill).toBeGreaterThan(5);
    expect(s.joins).toBeGreaterThan(50);
    expect(s.drains).toBeGreaterThan(5);
    expect(s.partitions).toBeGreaterThan(5);
    expect(s.handshakes).toBeGreaterThan(5000);
  }, 300_000);
});
