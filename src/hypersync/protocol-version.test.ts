import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from "./constants.js";
import {
  inProtocolVersionRange,
  isProtocolVersionRange,
  negotiateProtocolVersion,
  PROTOCOL_VERSIONS_DEFAULT,
  type MemberProtocolVersions,
} from "./protocol-version.js";

const SEED = 42;
console.log(`protocol-version tests seed=${SEED}`);

function m(member: string, min: number, max: number): MemberProtocolVersions {
  return { member, min, max };
}

describe("negotiateProtocolVersion", () => {
  it("picks the highest version every member reads: the min of the maxima", () => {
    expect(negotiateProtocolVersion([m("a", 2, 2), m("b", 2, 3)])).toEqual({ version: 2 });
    expect(negotiateProtocolVersion([m("a", 2, 3), m("b", 2, 3)])).toEqual({ version: 3 });
    expect(negotiateProtocolVersion([m("a", 2, 4), m("b", 3, 5), m("c", 1, 4)])).toEqual({ version: 4 });
    expect(negotiateProtocolVersion([m("a", 3, 3)])).toEqual({ version: 3 });
  });

  it("a rolling upgrade: old and new share the old version until the last old member is gone", () => {
    const group = [m("m1", 2, 2), m("m2", 2, 2), m("m3", 2, 2)];
    const steps: number[] = [];
    for (let i = 0; i < group.length; i++) {
      group[i] = m(group[i]!.member, 2, 3);
      const r = negotiateProtocolVersion(group);
      expect("version" in r).toBe(true);
      steps.push((r as { version: number }).version);
    }
    expect(steps).toEqual([2, 2, 3]);
  });

  it("no members: the build's min", () => {
    expect(negotiateProtocolVersion([])).toEqual({ version: PROTOCOL_VERSION_MIN });
  });

  it("ranges that do not overlap: an error naming the members on both sides", () => {
    const r = negotiateProtocolVersion([m("m1", 2, 2), m("m2", 2, 3), m("m3", 3, 4), m("m4", 2, 2)]);
    expect("error" in r).toBe(true);
    const error = (r as { error: string }).error;
    expect(error).toBe(
      "no HyperSync protocol version is spoken by every member: m1 (2..2), m4 (2..2) read at most version 2, m3 (3..4) reads only version 3 and above",
    );
    expect(error).not.toContain("m2");
  });

  it("long lists are cut short in the message", () => {
    const ranges = Array.from({ length: 12 }, (_, i) => m(`old${String(i).padStart(2, "0")}`, 2, 2));
    ranges.push(m("new", 3, 3));
    const error = (negotiateProtocolVersion(ranges) as { error: string }).error;
    expect(error).toContain("old07 (2..2) and 4 more read at most version 2");
    expect(error).not.toContain("old08");
  });

  it("property: the version, when there is one, lies in every range and no higher one does", () => {
    const range = fc.tuple(fc.integer({ min: 1, max: 255 }), fc.integer({ min: 1, max: 255 })).map(([x, y]) => ({ min: Math.min(x, y), max: Math.max(x, y) }));
    fc.assert(
      fc.property(fc.array(range, { minLength: 1, maxLength: 12 }), (rs) => {
        const ranges = rs.map((r, i) => m(`m${i}`, r.min, r.max));
        const result = negotiateProtocolVersion(ranges);
        const common = Array.from({ length: 255 }, (_, i) => i + 1).filter((v) => ranges.every((r) => inProtocolVersionRange(r, v)));
        if (common.length === 0) {
          expect("error" in result).toBe(true);
        } else {
          expect(result).toEqual({ version: Math.max(...common) });
        }
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it("asserts on a malformed range (callers check network input with isProtocolVersionRange)", () => {
    expect(() => negotiateProtocolVersion([m("a", 3, 2)])).toThrow(/protocol version range/);
  });
});

describe("protocol version ranges", () => {
  it("this build's range is PROTOCOL_VERSION_MIN..PROTOCOL_VERSION_MAX", () => {
    expect(PROTOCOL_VERSIONS_DEFAULT).toEqual({ min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MAX });
    expect(Object.isFrozen(PROTOCOL_VERSIONS_DEFAULT)).toBe(true);
  });

  it("isProtocolVersionRange accepts integers 1 <= min <= max <= 255 and nothing else", () => {
    expect(isProtocolVersionRange({ min: 2, max: 3 })).toBe(true);
    expect(isProtocolVersionRange({ min: 1, max: 255 })).toBe(true);
    for (const bad of [null, 3, "2..3", {}, { min: 2 }, { min: 3, max: 2 }, { min: 0, max: 2 }, { min: 2, max: 256 }, { min: 2.5, max: 3 }, { min: "2", max: 3 }]) {
      expect(isProtocolVersionRange(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it("inProtocolVersionRange includes both ends", () => {
    const r = { min: 2, max: 3 };
    expect([1, 2, 3, 4, 2.5].map((v) => inProtocolVersionRange(r, v))).toEqual([false, true, true, false, false]);
  });
});
