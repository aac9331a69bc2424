import { describe, it, expect } from "vitest";
import { pino } from "pino";
import { HypersyncVersions } from "./hypersync-versions.js";

function logged(): { versions: HypersyncVersions; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { versions: new HypersyncVersions(logger), lines };
}

describe("HypersyncVersions (the orchestrator's soft state)", () => {
  it("stores each appliance's range; the revision moves only when a range changes", () => {
    const { versions } = logged();
    expect(versions.rangeOf("a")).toBeNull();
    versions.report("a", { min: 2, max: 3 });
    const r = versions.revision;
    versions.report("a", { min: 2, max: 3 });
    expect(versions.revision).toBe(r);
    versions.report("a", { min: 2, max: 2 });
    expect(versions.revision).toBe(r + 1);
    expect(versions.rangeOf("a")).toEqual({ min: 2, max: 2 });
  });

  it("a malformed report drops the stored range (the appliance counts as unreported) and warns once", () => {
    const { versions, lines } = logged();
    versions.report("a", { min: 2, max: 3 });
    const r = versions.revision;
    for (let i = 0; i < 5; i++) versions.report("a", { min: 3, max: 2 });
    expect(versions.rangeOf("a")).toBeNull();
    expect(versions.revision).toBe(r + 1);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    // Unreported members count as {2, 2}.
    versions.report("b", { min: 2, max: 3 });
    expect(versions.versionFor("g", ["a", "b"])).toBe(2);
  });

  it("a group keeps its previous version while ranges do not overlap, logging each distinct error once", () => {
    const { versions, lines } = logged();
    versions.report("a", { min: 2, max: 3 });
    versions.report("b", { min: 2, max: 3 });
    expect(versions.versionFor("g", ["a", "b"])).toBe(3);
    expect(versions.errorOf("g")).toBeNull();
    versions.report("b", { min: 4, max: 4 });
    expect(versions.versionFor("g", ["a", "b"])).toBe(3);
    expect(versions.versionFor("g", ["a", "b"])).toBe(3);
    expect(versions.errorOf("g")).toContain("a (2..3) reads at most version 3, b (4..4) reads only version 4");
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    // A group with no version yet starts from the build's min.
    expect(versions.versionFor("h", ["a", "b"])).toBe(2);
    // Overlap again: the group follows, and the change is logged.
    versions.report("a", { min: 2, max: 4 });
    expect(versions.versionFor("g", ["a", "b"])).toBe(4);
    expect(versions.errorOf("g")).toBeNull();
    expect(lines.some((l) => l.msg === "group HyperSync protocol version changed")).toBe(true);
  });
});
