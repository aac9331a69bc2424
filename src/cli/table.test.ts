import { describe, expect, it } from "vitest";
import { compact, formatFields, formatTable } from "./table.js";

describe("formatTable", () => {
  it("pads columns, right-aligns numbers, shows empty cells as -", () => {
    const out = formatTable(["NAME", "COUNT", "NOTE"], [["a", 5, null], ["long-name", 12345, "x"]]);
    expect(out).toBe("NAME       COUNT  NOTE\na              5  -\nlong-name  12345  x\n");
  });

  it("says (none) for no rows", () => {
    expect(formatTable(["A", "B"], [])).toBe("A  B\n(none)\n");
  });
});

describe("formatFields and compact", () => {
  it("lines up keys and shortens large numbers", () => {
    expect(formatFields([["id", "a1"], ["alive", true]])).toBe("id:    a1\nalive: yes\n");
    expect([compact(12), compact(12_345), compact(2_500_000), compact(null)]).toEqual(["12", "12.3k", "2.50M", "-"]);
  });
});
