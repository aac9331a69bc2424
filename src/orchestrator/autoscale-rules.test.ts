// The group's autoscale rules as input, model and store document: the priority field (an
// integer in AUTOSCALE_PRIORITY_MIN..MAX, default 0) is validated like every other rule, kept
// by sg.update over the other rules, and a group document written before the field existed
// reads back with priority 0 (the store is never rewritten for a new field).

import { describe, expect, it } from "vitest";
import { documentsOf, modelFromDocuments } from "./documents.js";
import { MemoryHarness } from "./memory-harness.js";
import { AUTOSCALE_DEFAULTS, AUTOSCALE_PRIORITY_MAX, AUTOSCALE_PRIORITY_MIN, resolveAutoscale } from "./model.js";

describe("autoscale rules: priority", () => {
  it("defaults to 0 and accepts integers from -1000 to 1000 only", () => {
    expect(AUTOSCALE_DEFAULTS.priority).toBe(0);
    expect(resolveAutoscale({}).priority).toBe(0);
    expect(resolveAutoscale({ priority: AUTOSCALE_PRIORITY_MIN }).priority).toBe(-1000);
    expect(resolveAutoscale({ priority: AUTOSCALE_PRIORITY_MAX }).priority).toBe(1000);
    // Kept when other rules change (the base is the group's current rules).
    expect(resolveAutoscale({ maxMembers: 4 }, { ...AUTOSCALE_DEFAULTS, priority: 7 }).priority).toBe(7);
    for (const bad of [1001, -1001, 1.5, "3", null, true]) {
      expect(() => resolveAutoscale({ priority: bad })).toThrow(/autoscale\.priority/);
    }
  });

  it("goes through sg.create / sg.update into the model and the store", () => {
    const h = new MemoryHarness({ seedSource: () => 1 });
    h.ok("sg.create", { name: "g", autoscale: { priority: 5 } });
    expect(h.cp.current.groups.get("g")!.autoscale.priority).toBe(5);
    h.ok("sg.update", { name: "g", autoscale: { enabled: true } });
    expect(h.cp.current.groups.get("g")!.autoscale).toMatchObject({ enabled: true, priority: 5 });
    h.ok("sg.update", { name: "g", autoscale: { priority: -3 } });
    const docs = documentsOf(h.cp.current);
    expect((docs.groups[0]!.autoscale as { priority: number }).priority).toBe(-3);
    expect(modelFromDocuments(docs).groups.get("g")!.autoscale.priority).toBe(-3);
    const refused = h.run("sg.update", { name: "g", autoscale: { priority: 2000 } });
    expect(refused.ok).toBe(false);
    expect(refused.error?.code).toBe("TANDEM_INVALID_ARGUMENT");
  });

  it("a group document written before the field existed reads back with priority 0", () => {
    const h = new MemoryHarness({ seedSource: () => 1 });
    h.ok("sg.create", { name: "old", autoscale: { enabled: true, maxMembers: 6 } });
    const docs = documentsOf(h.cp.current);
    const autoscale = { ...(docs.groups[0]!.autoscale as Record<string, unknown>) };
    delete autoscale.priority;
    const old = { ...docs, groups: [{ ...docs.groups[0]!, autoscale }] };
    expect(modelFromDocuments(old).groups.get("old")!.autoscale).toEqual({ ...AUTOSCALE_DEFAULTS, enabled: true, maxMembers: 6, priority: 0 });
  });
});
