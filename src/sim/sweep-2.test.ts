// CI sweep, part 2 of 2: seeds 101-200, full-size runs (see sweep.ts).
import { describe, expect, it } from "vitest";
import { sweep } from "./sweep.js";

describe("simulator sweep", () => {
  it("finds no violation in seeds 101-200", () => {
    const s = sweep(101, 100);
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
