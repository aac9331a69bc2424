// Who set a group's weights (SecurityGroup.weightsSource), through the commands: an operator's
// sg.weight makes them "operator" (and the automatic path is refused), the system command
// weights.measured makes them "measured" once applied, sg.weights.auto returns them to "cores";
// the store keeps the source, and documents written before it existed read back sensibly.
import { describe, expect, it } from "vitest";
import { ErrorCode } from "../stdx/errors.js";
import { modelFromDocuments } from "./documents.js";
import { MemoryHarness } from "./memory-harness.js";
import { checkModelInvariants, type SecurityGroup } from "./model.js";
import { ControlPlane } from "./orchestrator.js";

const ACTOR = "capacity: model tg-8 forwards 2.0x tg-4 per core (200k vs 100k packets/s per core)";

/** Mixed group g: a1, a2 (tg-4, 4 cores) and b1 (tg-8, 8 cores) UP; fills confirmed as they come. */
function mixedGroup(): MemoryHarness {
  const h = new MemoryHarness({ seedSource: () => 7 });
  h.ok("sg.create", { name: "g", bucketCount: 256, allowMixedModels: true });
  for (const [id, model, cores] of [["a1", "tg-4", 4], ["a2", "tg-4", 4], ["b1", "tg-8", 8]] as const) {
    h.ok("appliance.add", { id, model, cores, memoryMb: 1024, version: "1.0", address: "10.0.0.1" });
    h.ok("sg.assign", { group: "g", appliance: id });
  }
  h.ok("changes.apply", { group: "g" });
  return h;
}

/** changes.apply, then every fill confirmed and a tick: the transition (if any) completes. */
function applyAndSettle(h: MemoryHarness, actor = "admin"): void {
  h.ok("changes.apply", { group: "g" }, actor);
  h.heartbeat("a1", "a2", "b1");
  h.confirmAllFills("g");
  h.tick();
  expect(group(h).transition).toBeNull();
}

function group(h: MemoryHarness): SecurityGroup {
  return h.cp.current.groups.get("g")!;
}

function tableWeights(h: MemoryHarness): Record<string, number> {
  return Object.fromEntries(group(h).tableMembers.map((m) => [m.id, m.weight]));
}

function expectRefused(h: MemoryHarness, command: string, input: unknown, code: string, actor = "system"): string {
  const step = h.run(command, input, actor);
  expect(step.ok).toBe(false);
  expect(step.error?.code).toBe(code);
  expect(step.mutation.puts).toEqual([]);
  return step.error!.message;
}

describe("weightsSource", () => {
  it("a new group's weights are its members' cores", () => {
    const h = mixedGroup();
    expect(group(h).weightsSource).toBe("cores");
    expect(tableWeights(h)).toEqual({ a1: 4, a2: 4, b1: 8 });
    expect(h.cp.view().group("g").weightsSource).toBe("cores");
  });

  it("weights.measured stages measured weights with the reason; applied, they are 'measured'", () => {
    const h = mixedGroup();
    const r = h.ok("weights.measured", { group: "g", weights: { a1: 40, a2: 40, b1: 160 }, reason: "model tg-8 forwards 2.0x" }, ACTOR) as { staged: number };
    expect(r.staged).toBe(3);
    const pending = h.cp.view().pending("g");
    expect(pending.map((c) => [c.appliance, c.kind, c.weight, c.weightsSource, c.stagedBy])).toEqual([
      ["a1", "weight", 40, "measured", ACTOR],
      ["a2", "weight", 40, "measured", ACTOR],
      ["b1", "weight", 160, "measured", ACTOR],
    ]);
    expect(group(h).weightsSource).toBe("cores"); // not before it applies
    expect(h.store.events.at(-1)).toMatchObject({ kind: "weights.measured", group: "g" });
    applyAndSettle(h, ACTOR);
    expect(group(h).weightsSource).toBe("measured");
    expect(group(h).weights).toEqual({ a1: 40, a2: 40, b1: 160 });
    expect(tableWeights(h)).toEqual({ a1: 40, a2: 40, b1: 160 });
    expect(h.store.audit.filter((a) => a.actor === ACTOR).map((a) => [a.command, a.result])).toEqual([
      ["weights.measured", "ok"],
      ["changes.apply", "ok"],
    ]);
  });

  it("an operator's sg.weight makes the weights the operator's; weights.measured is then refused", () => {
    const h = mixedGroup();
    h.ok("sg.weight", { group: "g", appliance: "b1", weight: 12 });
    expect(h.cp.view().pending("g")[0]!.weightsSource).toBe("operator");
    applyAndSettle(h);
    expect(group(h).weightsSource).toBe("operator");
    const message = expectRefused(h, "weights.measured", { group: "g", weights: { b1: 160 }, reason: "x" }, ErrorCode.INVALID_STATE, ACTOR);
    expect(message).toMatch(/the operator set its weights; automatic weights resume after tandem sg weight g --auto/);
    // An assign with a weight is an operator's weight too; one without is not.
    h.ok("appliance.add", { id: "a3", model: "tg-4", cores: 4, memoryMb: 1024, version: "1.0", address: "10.0.0.1" });
    h.ok("sg.assign", { group: "g", appliance: "a3" });
    expect(h.cp.view().pending("g")[0]!.weightsSource).toBeNull();
  });

  it("an operator's weight wins over measured ones applied with it", () => {
    const h = mixedGroup();
    h.ok("weights.measured", { group: "g", weights: { a1: 40, a2: 40 }, reason: "r" }, ACTOR);
    h.ok("sg.weight", { group: "g", appliance: "b1", weight: 100 });
    applyAndSettle(h);
    expect(group(h).weightsSource).toBe("operator");
  });

  it("sg.weight --auto stages the overrides back to cores; applied, the weights are cores again", () => {
    const h = mixedGroup();
    h.ok("sg.weight", { group: "g", appliance: "b1", weight: 12 });
    h.ok("sg.weight", { group: "g", appliance: "a1", weight: 3 });
    applyAndSettle(h);
    const r = h.ok("sg.weights.auto", { group: "g" }) as { staged: number; weightsSource: string };
    expect(r).toMatchObject({ group: "g", staged: 2, pending: 2, weightsSource: "operator" });
    expect(h.cp.view().pending("g").map((c) => [c.appliance, c.weight, c.weightsSource])).toEqual([
      ["a1", 4, "cores"],
      ["b1", 8, "cores"],
    ]);
    applyAndSettle(h);
    expect(group(h).weightsSource).toBe("cores");
    expect(group(h).weights).toEqual({});
    expect(tableWeights(h)).toEqual({ a1: 4, a2: 4, b1: 8 });
    // The automatic path may act again.
    h.ok("weights.measured", { group: "g", weights: { b1: 160 }, reason: "r" }, ACTOR);
  });

  it("with no override left, sg.weights.auto sets 'cores' at once; from measured weights it stages like any change", () => {
    const h = mixedGroup();
    h.ok("sg.weight", { group: "g", appliance: "a2", weight: 9 });
    applyAndSettle(h);
    h.ok("sg.unassign", { group: "g", appliance: "a2" }); // its override leaves with it
    applyAndSettle(h);
    expect(group(h)).toMatchObject({ weights: {}, weightsSource: "operator" });
    expect(h.ok("sg.weights.auto", { group: "g" })).toMatchObject({ staged: 0, weightsSource: "cores" });
    expect(group(h).weightsSource).toBe("cores");
    expect(h.store.events.at(-1)).toMatchObject({ kind: "weights.auto" });

    h.ok("weights.measured", { group: "g", weights: { a1: 40, b1: 160 }, reason: "r" }, ACTOR);
    applyAndSettle(h, ACTOR);
    expect(group(h).weightsSource).toBe("measured");
    h.ok("sg.weights.auto", { group: "g" });
    applyAndSettle(h);
    expect(group(h)).toMatchObject({ weights: {}, weightsSource: "cores" });
  });

  it("weights.measured is refused on a busy group and checks its input", () => {
    const h = mixedGroup();
    expectRefused(h, "weights.measured", { group: "g", weights: { a1: 4.5 }, reason: "r" }, ErrorCode.INVALID_ARGUMENT);
    expectRefused(h, "weights.measured", { group: "g", weights: {}, reason: "r" }, ErrorCode.INVALID_ARGUMENT);
    expectRefused(h, "weights.measured", { group: "g", weights: { a1: 40 }, reason: "" }, ErrorCode.INVALID_ARGUMENT);
    expectRefused(h, "weights.measured", { group: "g", weights: { nobody: 40 }, reason: "r" }, ErrorCode.APPLIANCE_NOT_FOUND);
    expectRefused(h, "weights.measured", { group: "nope", weights: { a1: 40 }, reason: "r" }, ErrorCode.SG_NOT_FOUND);
    h.ok("appliance.add", { id: "p1", model: "tg-4", cores: 4, memoryMb: 1024, version: "1.0", address: "10.0.0.1" });
    expectRefused(h, "weights.measured", { group: "g", weights: { p1: 40 }, reason: "r" }, ErrorCode.MEMBER_NOT_FOUND);
    h.ok("sg.assign", { group: "g", appliance: "p1" });
    expectRefused(h, "weights.measured", { group: "g", weights: { a1: 40 }, reason: "r" }, ErrorCode.CHANGE_PENDING);
    h.ok("changes.apply", { group: "g" }); // a join with fills: a transition runs
    expect(group(h).transition).not.toBeNull();
    expectRefused(h, "weights.measured", { group: "g", weights: { a1: 40 }, reason: "r" }, ErrorCode.TRANSITION_IN_PROGRESS);
  });

  it("a rolled-back measured transition leaves the source as it was and the changes pending, still 'measured'", () => {
    const h = mixedGroup();
    h.ok("weights.measured", { group: "g", weights: { a1: 40, a2: 40, b1: 160 }, reason: "r" }, ACTOR);
    h.ok("changes.apply", { group: "g" }, ACTOR);
    expect(group(h).transition?.kind).toBe("weights");
    // No fill is confirmed: the fill timeout rolls it back.
    for (let t = 0; t <= h.cp.fillTimeoutMs + 100; t += 50) {
      h.heartbeat("a1", "a2", "b1");
      h.advance(50);
      h.tick();
    }
    expect(group(h).transition).toBeNull();
    expect(group(h).weightsSource).toBe("cores");
    expect(h.cp.view().pending("g").map((c) => c.weightsSource)).toEqual(["measured", "measured", "measured"]);
  });

  it("the store keeps it; documents written before it existed read as the operator's when they hold overrides", () => {
    const h = mixedGroup();
    h.ok("sg.weight", { group: "g", appliance: "b1", weight: 12 });
    applyAndSettle(h);
    h.ok("sg.weight", { group: "g", appliance: "a1", weight: 5 });
    const restored = new ControlPlane(h.store.snapshot());
    expect(restored.current).toEqual(h.cp.current);
    expect(restored.current.groups.get("g")!.weightsSource).toBe("operator");

    const docs = h.store.snapshot().collections;
    const old = <T extends Record<string, unknown>>(d: T): T => {
      const { weightsSource: _dropped, ...rest } = d;
      return rest as T;
    };
    const withOverrides = modelFromDocuments({ ...docs, groups: docs.groups.map(old), changes: docs.changes.map(old) });
    expect(withOverrides.groups.get("g")!.weightsSource).toBe("operator");
    expect(withOverrides.changes.get("a1")!.weightsSource).toBe("operator");
    const plain = modelFromDocuments({ ...docs, groups: docs.groups.map((d) => ({ ...old(d), weights: {} })), changes: [] });
    expect(plain.groups.get("g")!.weightsSource).toBe("cores");
    expect(checkModelInvariants(plain)).toEqual([]);
    expect(() => modelFromDocuments({ ...docs, groups: docs.groups.map((d) => ({ ...d, weightsSource: "guess" })) })).toThrow(/weightsSource/);
  });
});
