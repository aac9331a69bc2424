import { describe, expect, it } from "vitest";
import { bucketOf } from "../distribution/bucket-hash.js";
import { backupOf, bucketsOwnedBy, ownerOf } from "../distribution/epoch.js";
import { buildBucketTable, NO_MEMBER } from "../distribution/rendezvous.js";
import { parseIp } from "../packet/addr.js";
import { flowHashOfKey } from "../packet/flow-hash.js";
import { AssertionError } from "../stdx/assert.js";
import { ErrorCode, exitCodeOf, httpStatusOf } from "../stdx/errors.js";
import { MemoryHarness } from "./memory-harness.js";
import { checkModelInvariants } from "./model.js";
import { ControlPlane } from "./orchestrator.js";

const BUCKETS = 1024;
const SEED = 0x1234abcd;

const INTERFACES = [
  { name: "inside", vni: 100, siteEndpoint: "192.0.2.10", gateway: "10.1.0.1/24" },
  { name: "outside", vni: 200, siteEndpoint: "192.0.2.20", gateway: "10.2.0.1/24" },
];

function appliance(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, model: "tx-100", cores: 8, memoryMb: 16384, version: "1.0.0", address: `10.9.0.${id.replace(/\D/g, "") || "1"}`, ...extra };
}

/** A harness with group sg1 and appliances a1..aN in the pool. */
function setup(n = 5, groupExtra: Record<string, unknown> = {}): MemoryHarness {
  const h = new MemoryHarness({ seedSource: () => SEED });
  h.ok("sg.create", { name: "sg1", bucketCount: BUCKETS, interfaces: INTERFACES, policy: { rules: [{ name: "all", action: "accept" }] }, ...groupExtra });
  for (let i = 1; i <= n; i++) h.ok("appliance.add", appliance(`a${i}`));
  return h;
}

/** sg1 with members a1..ak applied (epoch 1, all UP, heartbeating). */
function withMembers(k: number, n = 5): MemoryHarness {
  const h = setup(n);
  for (let i = 1; i <= k; i++) h.ok("sg.assign", { group: "sg1", appliance: `a${i}` });
  h.ok("changes.apply", { group: "sg1" });
  return h;
}

function states(h: MemoryHarness, group = "sg1"): Record<string, string> {
  return Object.fromEntries(h.cp.view().members(group).map((m) => [m.appliance, m.state]));
}

function expectCode(h: MemoryHarness, command: string, input: unknown, code: string): void {
  const step = h.run(command, input);
  expect(step.ok).toBe(false);
  expect(step.error?.code).toBe(code);
  expect(step.mutation.puts).toEqual([]);
  expect(step.mutation.deletes).toEqual([]);
}

/** Keeps every member of sg1 heartbeating while time passes, in 50 ms steps. */
function liveFor(h: MemoryHarness, ms: number, except: readonly string[] = []): void {
  for (let t = 0; t < ms; t += 50) {
    const alive = h.cp.view().appliances().filter((a) => !except.includes(a.id)).map((a) => a.id);
    h.heartbeat(...alive);
    h.advance(50);
    h.tick();
  }
}

describe("consistency", () => {
  it("refuses a second model with TANDEM_MODEL_MISMATCH when staged", () => {
    const h = withMembers(2);
    h.ok("appliance.add", appliance("b1", { model: "tx-200" }));
    expectCode(h, "sg.assign", { group: "sg1", appliance: "b1" }, ErrorCode.MODEL_MISMATCH);
    // Also as a swap: the leaving members would serve beside it until the flip.
    h.ok("sg.unassign", { group: "sg1", appliance: "a1" });
    h.ok("sg.unassign", { group: "sg1", appliance: "a2" });
    expectCode(h, "sg.assign", { group: "sg1", appliance: "b1" }, ErrorCode.MODEL_MISMATCH);
    const step = h.run("sg.assign", { group: "sg1", appliance: "b1" });
    expect(step.error?.message).toMatch(/b1 is model "tx-200" but a1 is "tx-100"/);
    expect(step.error?.details).toMatchObject({ group: "sg1", appliance: "b1", model: "tx-200", expected: "tx-100" });
  });

  it("refuses another software version with TANDEM_VERSION_MISMATCH", () => {
    const h = withMembers(2);
    h.ok("appliance.add", appliance("v2", { version: "2.0.0" }));
    expectCode(h, "sg.assign", { group: "sg1", appliance: "v2" }, ErrorCode.VERSION_MISMATCH);
    // Updating a member's version outside an upgrade is refused too.
    expectCode(h, "appliance.update", { id: "a1", version: "2.0.0" }, ErrorCode.VERSION_MISMATCH);
  });

  it("checks two pending assigns against each other", () => {
    const h = setup(0);
    h.ok("appliance.add", appliance("x1"));
    h.ok("appliance.add", appliance("x2", { model: "tx-200" }));
    h.ok("sg.assign", { group: "sg1", appliance: "x1" });
    expectCode(h, "sg.assign", { group: "sg1", appliance: "x2" }, ErrorCode.MODEL_MISMATCH);
  });

  it("allows mixed models when the group says so, never mixed versions", () => {
    const h = setup(1, { allowMixedModels: true });
    h.ok("appliance.add", appliance("big", { model: "tx-400", cores: 32 }));
    h.ok("appliance.add", appliance("new", { version: "2.0.0" }));
    h.ok("sg.assign", { group: "sg1", appliance: "a1" });
    h.ok("sg.assign", { group: "sg1", appliance: "big" });
    expectCode(h, "sg.assign", { group: "sg1", appliance: "new" }, ErrorCode.VERSION_MISMATCH);
    h.ok("changes.apply", { group: "sg1" });
    const table = h.cp.view().epochTable("sg1")!;
    expect(table.table.weights).toEqual([8, 32]); // weights default to cores
    // Turning mixing off with mixed members is refused.
    expectCode(h, "sg.update", { name: "sg1", allowMixedModels: false }, ErrorCode.MODEL_MISMATCH);
  });

  it("accepts the target version during a rolling upgrade and finishes only when all run it", () => {
    const h = withMembers(2);
    h.ok("appliance.add", appliance("n1", { version: "2.0.0" }));
    h.ok("sg.upgrade.start", { group: "sg1", targetVersion: "2.0.0" });
    h.ok("sg.assign", { group: "sg1", appliance: "n1" });
    h.ok("appliance.add", appliance("odd", { version: "3.0.0" }));
    expectCode(h, "sg.assign", { group: "sg1", appliance: "odd" }, ErrorCode.VERSION_MISMATCH);
    h.ok("appliance.update", { id: "a1", version: "2.0.0" });
    expectCode(h, "sg.upgrade.finish", { group: "sg1" }, ErrorCode.VERSION_MISMATCH);
    h.ok("appliance.update", { id: "a2", version: "2.0.0" });
    expect(h.ok("sg.upgrade.finish", { group: "sg1" })).toEqual({ group: "sg1", version: "2.0.0" });
    expectCode(h, "appliance.update", { id: "a1", version: "1.0.0" }, ErrorCode.VERSION_MISMATCH);
  });

  it("pauses, resumes, rolls back and aborts an upgrade only where that is safe", () => {
    const h = withMembers(2);
    expectCode(h, "sg.upgrade.pause", { group: "sg1" }, ErrorCode.INVALID_STATE);
    h.ok("sg.upgrade.start", { group: "sg1", targetVersion: "2.0.0" });
    h.ok("upgrade.step", { group: "sg1", current: { appliance: "a1", step: "drain" } });
    expectCode(h, "upgrade.step", { group: "sg1", current: { appliance: "a1", step: "reboot" } }, ErrorCode.INVALID_ARGUMENT);
    expect(h.ok("sg.upgrade.pause", { group: "sg1" })).toMatchObject({ paused: true });
    // The driver cannot move a paused upgrade on.
    expectCode(h, "upgrade.step", { group: "sg1", current: null }, ErrorCode.INVALID_STATE);
    h.ok("sg.upgrade.resume", { group: "sg1" });
    const u = () => h.cp.current.groups.get("sg1")!.upgrade!;
    expect(u()).toMatchObject({ paused: false, reason: null, direction: "forward", current: { appliance: "a1", step: "drain" } });
    h.ok("upgrade.step", { group: "sg1", pause: "a1 went DOWN during its drain step" });
    expect(u()).toMatchObject({ paused: true, reason: "a1 went DOWN during its drain step" });
    // a1 moved: the members run two versions, so abort is refused and rollback is the way back.
    h.ok("appliance.update", { id: "a1", version: "2.0.0" });
    expectCode(h, "sg.upgrade.abort", { group: "sg1" }, ErrorCode.VERSION_MISMATCH);
    expect(h.ok("sg.upgrade.rollback", { group: "sg1" })).toEqual({ group: "sg1", direction: "back", goal: "1.0.0" });
    expect(u()).toMatchObject({ paused: false, direction: "back" });
    expectCode(h, "sg.upgrade.rollback", { group: "sg1" }, ErrorCode.INVALID_STATE);
    h.ok("appliance.update", { id: "a1", version: "1.0.0" });
    expect(h.ok("sg.upgrade.abort", { group: "sg1" })).toEqual({ group: "sg1", version: "1.0.0" });
    expect(h.cp.current.groups.get("sg1")!.upgrade).toBeNull();
    const kinds = h.store.events.map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["upgrade.started", "upgrade.member", "upgrade.paused", "upgrade.resumed", "upgrade.rollback", "upgrade.aborted"]));
  });
});

describe("bucket count", () => {
  it("follows the member count the group may reach: >= 1,024 buckets per member up to autoscale maxMembers, 65,536 at least", () => {
    const h = new MemoryHarness({ seedSource: () => SEED });
    const count = (name: string, autoscale?: Record<string, unknown>): number =>
      (h.ok("sg.create", { name, ...(autoscale ? { autoscale } : {}) }) as { bucketCount: number }).bucketCount;
    expect(count("small")).toBe(65_536);
    expect(count("big", { maxMembers: 100 })).toBe(131_072);
    expect(count("huge", { maxMembers: 1000 })).toBe(1_048_576);
  });
});

describe("inventory and groups", () => {
  it("refuses duplicates, unknown names and removal of assigned appliances", () => {
    const h = withMembers(1);
    expectCode(h, "appliance.add", appliance("a1"), ErrorCode.APPLIANCE_EXISTS);
    expectCode(h, "sg.create", { name: "sg1" }, ErrorCode.SG_EXISTS);
    expectCode(h, "sg.assign", { group: "nope", appliance: "a2" }, ErrorCode.SG_NOT_FOUND);
    expectCode(h, "sg.assign", { group: "sg1", appliance: "zz" }, ErrorCode.APPLIANCE_NOT_FOUND);
    expectCode(h, "appliance.remove", { id: "a1" }, ErrorCode.APPLIANCE_IN_USE);
    h.ok("sg.assign", { group: "sg1", appliance: "a2" });
    expectCode(h, "appliance.remove", { id: "a2" }, ErrorCode.APPLIANCE_IN_USE); // pending assign
    expectCode(h, "sg.assign", { group: "sg1", appliance: "a2" }, ErrorCode.CHANGE_PENDING);
    expectCode(h, "sg.delete", { name: "sg1" }, ErrorCode.SG_NOT_EMPTY);
    expectCode(h, "sg.unassign", { group: "sg1", appliance: "a3" }, ErrorCode.MEMBER_NOT_FOUND);
    expectCode(h, "sg.create", { name: "bad name" }, ErrorCode.INVALID_ARGUMENT);
    expectCode(h, "appliance.add", { ...appliance("q"), cores: 0 }, ErrorCode.INVALID_ARGUMENT);
    expectCode(h, "nope.nope", {}, ErrorCode.INVALID_ARGUMENT);
    h.ok("appliance.remove", { id: "a5" });
    expect(h.cp.view().appliances().map((a) => a.id)).toEqual(["a1", "a2", "a3", "a4"]);
  });

  it("validates policy and interfaces, and refuses a VNI another group uses (the distributor tells groups apart by VNI)", () => {
    const h = setup(0);
    expectCode(h, "policy.apply", { group: "sg1", policy: { rules: [{ name: "x", action: "maybe" }] } }, ErrorCode.POLICY_INVALID);
    const result = h.ok("policy.apply", { group: "sg1", policyText: "rules:\n  - name: web\n    protocol: tcp\n    ports: 443\n    action: accept\n" });
    expect(result).toEqual({ group: "sg1", policyRevision: 2, rules: 1 });
    expect(h.effects).toContainEqual({ kind: "push-config", group: "sg1" });
    expectCode(h, "sg.create", { name: "sg2", interfaces: [{ name: "i", vni: 100, siteEndpoint: "192.0.2.10", gateway: "10.5.0.1/24" }] }, ErrorCode.CONFLICT);
    expectCode(h, "sg.create", { name: "sg2", interfaces: [{ name: "i", vni: 7, siteEndpoint: "192.0.2.10", gateway: "10.5.0.0/24" }] }, ErrorCode.INVALID_ARGUMENT);
    expectCode(
      h,
      "sg.update",
      { name: "sg1", interfaces: [...INTERFACES, { name: "dup", vni: 300, siteEndpoint: "192.0.2.30", gateway: "10.1.0.9/24" }] },
      ErrorCode.INVALID_ARGUMENT,
    );
    expectCode(h, "sg.create", { name: "sg2", interfaces: [{ name: "i", vni: 100, siteEndpoint: "192.0.2.99", gateway: "10.5.0.1/24" }] }, ErrorCode.CONFLICT);
    h.ok("sg.create", { name: "sg2", interfaces: [{ name: "i", vni: 101, siteEndpoint: "192.0.2.99", gateway: "10.5.0.1/24", mac: "02:AA:00:00:00:01" }] });
    const sg2 = h.cp.view().group("sg2") as { interfaces: { mac: string }[]; bucketCount: number };
    expect(sg2.interfaces[0]!.mac).toBe("02:aa:00:00:00:01");
    expect(sg2.bucketCount).toBe(65536); // automatic
    expect((h.cp.view().group("sg1") as { interfaces: { mac: string }[] }).interfaces[1]!.mac).toBe("02:74:00:00:c8:01"); // default from VNI 200, #1
  });
});

describe("staged changes", () => {
  it("assign x3 then apply: one epoch with three members and a valid table", () => {
    const h = setup(5);
    for (const a of ["a1", "a2", "a3"]) h.ok("sg.assign", { group: "sg1", appliance: a });
    expect(h.cp.view().pending("sg1").map((c) => c.kind)).toEqual(["assign", "assign", "assign"]);
    expect(h.cp.view().epochTable("sg1")).toBeNull();
    const result = h.ok("changes.apply", { group: "sg1" });
    expect(result).toMatchObject({ group: "sg1", applied: 3, epoch: 1, transition: null });
    const table = h.cp.view().epochTable("sg1")!;
    expect(table.epoch).toBe(1);
    expect(table.table.members).toEqual(["a1", "a2", "a3"]);
    expect(table.table).toEqual(buildBucketTable([{ id: "a1", weight: 8 }, { id: "a2", weight: 8 }, { id: "a3", weight: 8 }], BUCKETS, SEED));
    for (let b = 0; b < BUCKETS; b++) expect(table.table.owner[b]).not.toBe(table.table.backup[b]);
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "UP" });
    expect(h.cp.view().pending("sg1")).toEqual([]);
    expect(h.effects).toContainEqual({ kind: "install-epoch", group: "sg1", epoch: 1 });
  });

  it("a join into a running group is make-before-break: JOINING and fill, then UP at the flip", () => {
    const h = withMembers(3);
    h.ok("sg.assign", { group: "sg1", appliance: "a4" });
    const result = h.ok("changes.apply", { group: "sg1" }) as { transition: { kind: string; running: boolean } };
    expect(result.transition).toMatchObject({ kind: "join", running: true });
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "UP", a4: "JOINING" });
    const dist = h.cp.view().distribution("sg1")!;
    expect(dist.table.epoch).toBe(1); // the old table routes during the fill
    expect(dist.fills.size).toBeGreaterThan(0);
    for (const targets of dist.fills.values()) expect(targets).toEqual(["a4"]);
    const t = h.cp.view().transition("sg1", h.nowMs)!;
    expect(t).toMatchObject({ kind: "join", phase: "fill", fromEpoch: 1, routingEpoch: 1, finalEpoch: 2, confirmed: 0, progress: 0 });
    // Half the fills: progress, no flip.
    const buckets = [...dist.fills.keys()];
    expect(h.cp.fillReport({ appliance: "a4", epoch: 1, buckets: buckets.slice(0, buckets.length / 2) }, h.nowMs)).toMatchObject({ accepted: Math.floor(buckets.length / 2), awaitingEpoch: 1 });
    // Stale epoch: ignored, and the answer names the epoch fills are awaited under (the member
    // reports such early fills again once it runs it: src/runtime/fill-reporter.ts).
    expect(h.cp.fillReport({ appliance: "a4", epoch: 0, buckets }, h.nowMs)).toMatchObject({ accepted: 0, awaitingEpoch: 1 });
    expect(h.cp.view().transition("sg1")!.progress).toBeCloseTo(Math.floor(buckets.length / 2) / buckets.length, 6);
    h.heartbeat("a1", "a2", "a3", "a4");
    expect(h.tick()).toBeNull();
    h.confirmAllFills("sg1");
    const step = h.tick()!;
    expect(step.command).toBe("health.tick");
    expect(step.result).toMatchObject({ completed: ["sg1"] });
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "UP", a4: "UP" });
    const table = h.cp.view().epochTable("sg1")!;
    expect(table.epoch).toBe(2);
    expect(table.table).toEqual(buildBucketTable(["a1", "a2", "a3", "a4"].map((id) => ({ id, weight: 8 })), BUCKETS, SEED));
    expect(bucketsOwnedBy(table, "a4").length).toBeGreaterThan(BUCKETS / 8);
    expect(h.cp.view().distribution("sg1")!.fills.size).toBe(0);
  });

  it("drain: DRAINING then DETACHED, unassign: back to the pool", () => {
    const h = withMembers(4);
    h.ok("sg.drain", { group: "sg1", appliance: "a2" });
    h.ok("sg.unassign", { group: "sg1", appliance: "a3" });
    h.ok("changes.apply", { group: "sg1" });
    expect(states(h)).toMatchObject({ a2: "DRAINING", a3: "DRAINING" });
    expectCode(h, "sg.weight", { group: "sg1", appliance: "a2", weight: 3 }, ErrorCode.TRANSITION_IN_PROGRESS);
    h.ok("sg.assign", { group: "sg1", appliance: "a5" }); // staging continues during a transition
    expectCode(h, "changes.apply", { group: "sg1" }, ErrorCode.TRANSITION_IN_PROGRESS);
    h.heartbeat("a1", "a2", "a3", "a4");
    h.confirmAllFills("sg1");
    h.tick();
    expect(states(h)).toEqual({ a1: "UP", a2: "DETACHED", a4: "UP" });
    expect(h.cp.view().appliance("a3")).toMatchObject({ state: "UNASSIGNED", group: null });
    expect(h.cp.view().epochTable("sg1")!.table.members).toEqual(["a1", "a4"]);
    expect(h.effects).toContainEqual({ kind: "release-member", group: "sg1", appliance: "a3" });
    // A DETACHED member can be assigned again (it rejoins), or unassigned without a transition.
    h.ok("changes.discard", { group: "sg1" });
    h.ok("sg.unassign", { group: "sg1", appliance: "a2" });
    expect(h.ok("changes.apply", { group: "sg1" })).toMatchObject({ transition: null, epoch: 2 });
    expect(h.cp.view().appliance("a2").state).toBe("UNASSIGNED");
  });

  it("discard drops pending changes; nothing left is TANDEM_NO_PENDING_CHANGES", () => {
    const h = withMembers(2);
    h.ok("sg.assign", { group: "sg1", appliance: "a3" });
    h.ok("sg.assign", { group: "sg1", appliance: "a4" });
    expect(h.ok("changes.discard", { group: "sg1", appliance: "a3" })).toEqual({ group: "sg1", discarded: 1 });
    expect(h.cp.view().pending("sg1").map((c) => c.appliance)).toEqual(["a4"]);
    expect(h.ok("changes.discard", { group: "sg1" })).toEqual({ group: "sg1", discarded: 1 });
    expectCode(h, "changes.discard", { group: "sg1" }, ErrorCode.NO_PENDING_CHANGES);
    expectCode(h, "changes.apply", { group: "sg1" }, ErrorCode.NO_PENDING_CHANGES);
    expect(h.cp.view().epochTable("sg1")!.epoch).toBe(1);
  });

  it("shows pending beside applied: members and bucket ownership before and after", () => {
    const h = withMembers(2);
    h.ok("sg.assign", { group: "sg1", appliance: "a3" });
    h.ok("sg.weight", { group: "sg1", appliance: "a1", weight: 16 });
    const v = h.cp.view().changes("sg1");
    expect(v.changes.map((c) => `${c.kind}:${c.appliance}`)).toEqual(["weight:a1", "assign:a3"]);
    expect(v.problem).toBeNull();
    expect(v.applied.epoch).toBe(1);
    expect(v.applied.members.map((m) => [m.appliance, m.state, m.weight, m.change])).toEqual([
      ["a1", "UP", 8, "weight"],
      ["a2", "UP", 8, null],
      ["a3", "UNASSIGNED", 8, "assign"],
    ]);
    expect(v.applied.members[0]!.owned + v.applied.members[1]!.owned).toBe(BUCKETS);
    const p = v.pending!;
    expect(p.epoch).toBe(2);
    expect(p.transition).toBe(true);
    expect(p.members.map((m) => [m.appliance, m.weight])).toEqual([["a1", 16], ["a2", 8], ["a3", 8]]);
    expect(p.members.reduce((s, m) => s + m.owned, 0)).toBe(BUCKETS);
    expect(p.members[0]!.owned).toBeGreaterThan(p.members[1]!.owned); // weight 16 vs 8
    expect(p.movedBuckets).toBeGreaterThan(0);
    expect(p.fills).toBeGreaterThan(0);
    // A change that can no longer apply shows its problem instead of a table: the pending
    // appliance was re-registered as another model after it was staged.
    h.ok("appliance.update", { id: "a3", model: "tx-200" });
    const bad = h.cp.view().changes("sg1");
    expect(bad.pending).toBeNull();
    expect(bad.problem?.code).toBe(ErrorCode.MODEL_MISMATCH);
    expectCode(h, "changes.apply", { group: "sg1" }, ErrorCode.MODEL_MISMATCH);
  });

  it("a fill that does not complete in time is rolled back and its changes are pending again", () => {
    const h = new MemoryHarness({ seedSource: () => SEED, fillTimeoutMs: 5_000 });
    h.ok("sg.create", { name: "sg1", bucketCount: BUCKETS });
    for (const id of ["a1", "a2", "a3"]) h.ok("appliance.add", appliance(id));
    h.ok("sg.assign", { group: "sg1", appliance: "a1" });
    h.ok("sg.assign", { group: "sg1", appliance: "a2" });
    h.ok("changes.apply", { group: "sg1" });
    h.ok("sg.assign", { group: "sg1", appliance: "a3", weight: 4 });
    h.ok("changes.apply", { group: "sg1" });
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "JOINING" });
    liveFor(h, 4_950);
    expect(h.cp.view().transition("sg1")).not.toBeNull();
    liveFor(h, 100);
    expect(h.cp.view().transition("sg1")).toBeNull();
    expect(h.cp.view().appliance("a3").state).toBe("UNASSIGNED");
    expect(h.cp.view().pending("sg1")).toMatchObject([{ appliance: "a3", kind: "assign", weight: 4 }]);
    expect(h.cp.view().epochTable("sg1")!.epoch).toBe(1);
    expect(h.store.events.map((e) => e.kind)).toContain("transition.rolled-back");
    expect(h.cp.view().distribution("sg1")!.fills.size).toBe(0);
  });

  it("a fill that keeps progressing is not cut off: it times out 5 s after its last confirmed fill, and at 10 x 5 s at the latest", () => {
    const joinWithTimeout = (): { h: MemoryHarness; buckets: number[] } => {
      const h = new MemoryHarness({ seedSource: () => SEED, fillTimeoutMs: 5_000 });
      h.ok("sg.create", { name: "sg1", bucketCount: BUCKETS });
      for (const id of ["a1", "a2", "a3"]) h.ok("appliance.add", appliance(id));
      h.ok("sg.assign", { group: "sg1", appliance: "a1" });
      h.ok("sg.assign", { group: "sg1", appliance: "a2" });
      h.ok("changes.apply", { group: "sg1" });
      h.ok("sg.assign", { group: "sg1", appliance: "a3" });
      h.ok("changes.apply", { group: "sg1" });
      return { h, buckets: [...h.cp.view().distribution("sg1")!.fills.keys()] };
    };
    // One bucket confirmed every 4 s: alive at 20 s (four timeouts after its start).
    const slow = joinWithTimeout();
    for (let i = 0; i < 5; i++) {
      liveFor(slow.h, 4_000);
      expect(slow.h.cp.fillReport({ appliance: "a3", epoch: 1, buckets: [slow.buckets[i]!] }, slow.h.nowMs).accepted).toBe(1);
    }
    expect(slow.h.cp.view().transition("sg1", slow.h.nowMs)).toMatchObject({ kind: "join", timesOutInMs: 5_000 });
    // Then nothing: timed out 5 s after the last progress, not before.
    liveFor(slow.h, 4_950);
    expect(slow.h.cp.view().transition("sg1")).not.toBeNull();
    liveFor(slow.h, 100);
    expect(slow.h.cp.view().transition("sg1")).toBeNull();
    expect(slow.h.store.events.map((e) => e.kind)).toContain("transition.rolled-back");
    // Progress every 4 s forever: cut off at 50 s all the same.
    const endless = joinWithTimeout();
    let i = 0;
    while (endless.h.cp.view().transition("sg1") !== null) {
      liveFor(endless.h, 4_000);
      endless.h.cp.fillReport({ appliance: "a3", epoch: 1, buckets: [endless.buckets[i++]!] }, endless.h.nowMs);
      expect(i).toBeLessThan(20);
    }
    expect(i).toBe(13); // 13 x 4 s = 52 s: timed out during the 13th wait, at 50 s
  });
});

describe("health", () => {
  it("a silent member is DOWN at 300 ms, not at 299, and a failure transition is planned", () => {
    const h = withMembers(3);
    h.heartbeat("a1", "a2", "a3");
    const t0 = h.nowMs;
    h.advance(100);
    h.heartbeat("a1", "a2");
    h.advance(199); // a3 silent for 299 ms
    h.heartbeat("a1", "a2");
    expect(h.nowMs - t0).toBe(299);
    expect(h.cp.needsTick(h.nowMs)).toBe(false);
    expect(h.tick()).toBeNull();
    expect(states(h).a3).toBe("UP");
    h.advance(1); // 300 ms
    const step = h.tick()!;
    expect(step.result).toMatchObject({ down: ["a3"] });
    expect(step.actor).toBe("system");
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "DOWN" });
    // Promote at once (epoch 2, a3 named nowhere), reprotect fills pending.
    const before = buildBucketTable(["a1", "a2", "a3"].map((id) => ({ id, weight: 8 })), BUCKETS, SEED);
    const dist = h.cp.view().distribution("sg1")!;
    expect(dist.table.epoch).toBe(2);
    expect(dist.table.table.members).toEqual(["a1", "a2"]);
    for (let b = 0; b < BUCKETS; b++) {
      const oldOwner = before.members[before.owner[b]!]!;
      const oldBackup = before.members[before.backup[b]!]!;
      const owner = ownerOf(dist.table, b);
      if (oldOwner === "a3") expect(owner).toBe(oldBackup);
      else expect(owner).toBe(oldOwner);
      if (oldOwner === "a3" || oldBackup === "a3") {
        expect(backupOf(dist.table, b)).toBeNull();
        expect(dist.fills.get(b)).toEqual([owner === "a1" ? "a2" : "a1"]);
      }
    }
    expect(h.cp.view().transition("sg1")).toMatchObject({ kind: "failure", phase: "reprotect", dead: "a3", routingEpoch: 2, finalEpoch: 3 });
    h.confirmAllFills("sg1");
    h.heartbeat("a1", "a2");
    h.tick();
    const final = h.cp.view().epochTable("sg1")!;
    expect(final.epoch).toBe(3);
    expect(final.table).toEqual(buildBucketTable(["a1", "a2"].map((id) => ({ id, weight: 8 })), BUCKETS, SEED));
    expect(h.store.events.filter((e) => e.kind === "member.down").map((e) => e.member)).toEqual(["a3"]);
  });

  it("a DOWN member that heartbeats again rejoins make-before-break", () => {
    const h = withMembers(3);
    liveFor(h, 200);
    liveFor(h, 400, ["a2"]);
    h.confirmAllFills("sg1");
    liveFor(h, 50, ["a2"]);
    expect(states(h).a2).toBe("DOWN");
    expect(h.cp.view().transition("sg1")).toBeNull();
    liveFor(h, 50);
    expect(states(h).a2).toBe("JOINING");
    expect(h.cp.view().transition("sg1")!.kind).toBe("join");
    h.confirmAllFills("sg1");
    liveFor(h, 50);
    expect(states(h)).toEqual({ a1: "UP", a2: "UP", a3: "UP" });
    expect(h.cp.view().epochTable("sg1")!.epoch).toBe(4); // 1 -> promote 2 -> reprotect 3 -> join 4
  });

  it("flap damping holds a flapping member DOWN and releases it after the penalty decays", () => {
    const h = new MemoryHarness({ seedSource: () => SEED, health: { damping: { halfLifeMs: 10_000, suppressMaxMs: 60_000 } } });
    h.ok("sg.create", { name: "sg1", bucketCount: BUCKETS });
    for (const id of ["a1", "a2", "a3"]) h.ok("appliance.add", appliance(id));
    for (const id of ["a1", "a2", "a3"]) h.ok("sg.assign", { group: "sg1", appliance: id });
    h.ok("changes.apply", { group: "sg1" });
    const flap = (): void => {
      liveFor(h, 400, ["a3"]); // DOWN
      h.confirmAllFills("sg1");
      liveFor(h, 100, ["a3"]); // reprotected
      liveFor(h, 100); // back: rejoin starts unless suppressed
      h.confirmAllFills("sg1");
      liveFor(h, 100);
    };
    flap();
    flap();
    expect(states(h).a3).toBe("UP"); // two flaps: penalty ~2000, not above the threshold
    flap();
    expect(states(h).a3).toBe("DOWN"); // third: suppressed
    const m = h.cp.view().members("sg1", h.nowMs).find((x) => x.appliance === "a3")!;
    expect(m.suppressed).toBe(true);
    expect(m.flaps).toBe(3);
    expect(m.alive).toBe(true);
    expect(h.store.events.some((e) => e.kind === "member.suppressed" && e.member === "a3")).toBe(true);
    // Heartbeating while suppressed: held DOWN. Penalty ~2900 decays to 750 in ~2 half-lives.
    liveFor(h, 15_000);
    expect(states(h).a3).toBe("DOWN");
    const releaseAt = h.cp.health.damper.releaseAtMs("a3")!;
    expect(releaseAt).toBeGreaterThan(h.nowMs);
    expect(h.cp.nextDeadlineMs(h.nowMs)).toBeLessThanOrEqual(h.nowMs + 300);
    liveFor(h, releaseAt - h.nowMs + 100);
    expect(h.store.events.some((e) => e.kind === "member.released" && e.member === "a3")).toBe(true);
    expect(states(h).a3).toBe("JOINING");
    h.confirmAllFills("sg1");
    liveFor(h, 50);
    expect(states(h).a3).toBe("UP");
  });

  it("a second failure during re-protection keeps every surviving copy (rescue)", () => {
    const h = withMembers(4);
    liveFor(h, 100);
    liveFor(h, 350, ["a4"]);
    expect(h.cp.view().transition("sg1")).toMatchObject({ kind: "failure", dead: "a4" });
    const promote = h.cp.view().epochTable("sg1")!;
    liveFor(h, 350, ["a4", "a3"]);
    const t = h.cp.view().transition("sg1")!;
    expect(t).toMatchObject({ kind: "rescue", dead: "a3" });
    const rescue = h.cp.view().epochTable("sg1")!;
    expect(rescue.epoch).toBe(promote.epoch + 1);
    expect(rescue.table.members).toEqual(["a1", "a2"]);
    let lost = 0;
    for (let b = 0; b < BUCKETS; b++) {
      const o = ownerOf(promote, b);
      const k = backupOf(promote, b);
      if (o !== "a3") expect(ownerOf(rescue, b)).toBe(o);
      else if (k !== null) expect(ownerOf(rescue, b)).toBe(k);
      else lost++;
    }
    expect(t.lostBuckets).toBe(lost);
    expect(lost).toBeGreaterThan(0); // buckets a4 and a3 both held lost every copy
    h.confirmAllFills("sg1");
    liveFor(h, 50, ["a4", "a3"]);
    const final = h.cp.view().epochTable("sg1")!;
    expect(final.epoch).toBe(rescue.epoch + 1);
    expect(final.table).toEqual(buildBucketTable(["a1", "a2"].map((id) => ({ id, weight: 8 })), BUCKETS, SEED));
    for (let b = 0; b < BUCKETS; b++) expect(final.table.backup[b]).not.toBe(NO_MEMBER);
  });

  it("a member failing during a join's fill rolls the join back first", () => {
    const h = withMembers(3);
    h.ok("sg.assign", { group: "sg1", appliance: "a4" });
    h.ok("changes.apply", { group: "sg1" });
    liveFor(h, 100);
    liveFor(h, 350, ["a1"]);
    expect(states(h)).toMatchObject({ a1: "DOWN", a2: "UP", a3: "UP" });
    expect(h.cp.view().appliance("a4").state).toBe("UNASSIGNED");
    expect(h.cp.view().pending("sg1").map((c) => c.appliance)).toEqual(["a4"]);
    expect(h.cp.view().transition("sg1")).toMatchObject({ kind: "failure", dead: "a1" });
  });

  it("the only member going DOWN keeps the table; it serves again when it is back", () => {
    const h = withMembers(1);
    liveFor(h, 100);
    liveFor(h, 350, ["a1"]);
    expect(states(h)).toEqual({ a1: "DOWN" });
    expect(h.cp.view().epochTable("sg1")!.epoch).toBe(1);
    liveFor(h, 100);
    expect(states(h)).toEqual({ a1: "UP" });
  });
});

describe("queue, audit and restore", () => {
  it("refuses a second prepare while a step is outstanding", () => {
    const h = setup(1);
    const step = h.cp.prepare("appliance.add", appliance("x9"), h.ctx());
    expect(() => h.cp.prepare("appliance.add", appliance("x8"), h.ctx())).toThrow(AssertionError);
    expect(h.cp.tick(h.ctx("system"))).toBeNull();
    expect(h.cp.view().appliances().map((a) => a.id)).toEqual(["a1"]); // not confirmed yet
    h.cp.abort(step);
    expect(h.cp.view().appliances().map((a) => a.id)).toEqual(["a1"]);
    h.ok("appliance.add", appliance("x9"));
    expect(h.cp.view().appliances().map((a) => a.id)).toEqual(["a1", "x9"]);
  });

  it("a failed commit changes nothing", () => {
    const h = setup(1);
    h.store.failNext = true;
    expect(() => h.run("appliance.add", appliance("x9"))).toThrow(/unavailable/);
    expect(h.cp.queue.idle).toBe(true);
    expect(h.cp.view().appliances().map((a) => a.id)).toEqual(["a1"]);
  });

  it("audits every command, refused ones with their error code", () => {
    const h = setup(2);
    const start = h.store.audit.length;
    expect(start).toBe(3); // sg.create + 2 appliance.add
    h.ok("sg.assign", { group: "sg1", appliance: "a1" }, "alice");
    h.run("sg.assign", { group: "sg1", appliance: "zz" }, "bob");
    h.run("sg.create", { name: "sg1" }, "carol");
    h.ok("changes.apply", { group: "sg1" }, "alice");
    const records = h.store.audit.slice(start);
    expect(records.map((r) => [r.actor, r.command, r.result, r.code ?? null])).toEqual([
      ["alice", "sg.assign", "ok", null],
      ["bob", "sg.assign", "error", ErrorCode.APPLIANCE_NOT_FOUND],
      ["carol", "sg.create", "error", ErrorCode.SG_EXISTS],
      ["alice", "changes.apply", "ok", null],
    ]);
    expect(records[1]).toMatchObject({ args: { group: "sg1", appliance: "zz" }, message: "no appliance with id zz", at: h.nowIso });
    expect(records.every((r, i) => r.seq === start + i + 1)).toBe(true);
    // A policy is summarised in the audit, not copied.
    h.ok("policy.apply", { group: "sg1", policy: { rules: [{ name: "a", action: "accept" }] } });
    expect(h.store.audit.at(-1)!.args).toEqual({ group: "sg1", policy: { rules: 1 } });
  });

  it("restoring from the store gives back exactly the same model, mid-transition too", () => {
    const h = withMembers(3);
    h.ok("sg.assign", { group: "sg1", appliance: "a4", weight: 12 });
    h.ok("sg.upgrade.start", { group: "sg1", targetVersion: "1.1.0" });
    h.ok("changes.apply", { group: "sg1" });
    h.ok("sg.drain", { group: "sg1", appliance: "a2" });
    h.ok("sg.create", { name: "sg2", bucketCount: 256, autoscale: { enabled: true, maxMembers: 4 } });
    const before = h.cp.view().documents();
    const model = h.cp.current;
    const dist = h.cp.view().distribution("sg1")!;
    const restored = h.restart();
    expect(restored.view().documents()).toEqual(before);
    expect(restored.current).toEqual(model);
    expect(restored.view().distribution("sg1")).toEqual(dist);
    expect(restored.revision).toBe(h.store.revision);
    // After the restart the fill continues: members report again, the flip happens.
    h.nowMs += 1000;
    h.confirmAllFills("sg1");
    h.heartbeat("a1", "a2", "a3", "a4");
    expect(h.tick()!.result).toMatchObject({ completed: ["sg1"] });
    expect(states(h)).toMatchObject({ a4: "UP" });
  });

  it("a restarted control plane gives members a grace period before declaring them DOWN", () => {
    const h = withMembers(2);
    h.nowMs = 50_000;
    h.restart();
    expect(h.tick()).toBeNull();
    h.advance(299);
    expect(h.tick()).toBeNull();
    h.advance(1);
    expect(h.tick()!.result).toMatchObject({ down: ["a1", "a2"] });
  });

  it("refuses a corrupt snapshot with TANDEM_STORE_CORRUPT", () => {
    const h = withMembers(1);
    const snap = h.store.snapshot();
    snap.collections.members[0] = { ...snap.collections.members[0]!, state: "SLEEPING" };
    expect(() => new ControlPlane(snap)).toThrow(expect.objectContaining({ code: ErrorCode.STORE_CORRUPT }));
    const snap2 = h.store.snapshot();
    snap2.collections.members[0] = { ...snap2.collections.members[0]!, group: "ghost" };
    expect(() => new ControlPlane(snap2)).toThrow(expect.objectContaining({ code: ErrorCode.STORE_CORRUPT }));
  });
});

describe("views", () => {
  it("locates a flow's connection: owner and backup of its bucket", () => {
    const h = withMembers(3);
    const loc = h.cp.view().connectionsLocation("sg1", { protocol: "tcp", src: "10.1.0.5", dst: "10.2.0.9", srcPort: 40000, dstPort: 443 });
    const hash = flowHashOfKey(SEED, { zone: 0, protocol: 6, src: parseIp("10.1.0.5")!, dst: parseIp("10.2.0.9")!, srcPort: 40000, dstPort: 443 });
    const table = h.cp.view().epochTable("sg1")!;
    expect(loc).toEqual({ group: "sg1", epoch: 1, bucket: bucketOf(hash, BUCKETS), owner: ownerOf(table, loc.bucket), backup: backupOf(table, loc.bucket), filling: [] });
    // Symmetric: the reply direction lands in the same bucket.
    const back = h.cp.view().connectionsLocation("sg1", { protocol: "tcp", src: "10.2.0.9", dst: "10.1.0.5", srcPort: 443, dstPort: 40000 });
    expect(back.bucket).toBe(loc.bucket);
    expect(() => h.cp.view().connectionsLocation("sg1", { protocol: "tcp", src: "nope", dst: "10.2.0.9" })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => h.cp.view().connectionsLocation("sgX", { protocol: "tcp", src: "10.1.0.5", dst: "10.2.0.9" })).toThrow(expect.objectContaining({ code: ErrorCode.SG_NOT_FOUND }));
  });

  it("lists appliances with their state and liveness, groups without their seed", () => {
    const h = withMembers(2);
    h.heartbeat("a1");
    h.cp.heartbeat({ appliance: "a2", cpuPct: 40, connections: 1200, epoch: 1 }, h.nowMs);
    const list = h.cp.view().appliances(h.nowMs);
    expect(list.map((a) => [a.id, a.state, a.group, a.alive])).toEqual([
      ["a1", "UP", "sg1", true],
      ["a2", "UP", "sg1", true],
      ["a3", "UNASSIGNED", null, false],
      ["a4", "UNASSIGNED", null, false],
      ["a5", "UNASSIGNED", null, false],
    ]);
    expect(h.cp.view().members("sg1", h.nowMs)[1]!.load).toMatchObject({ cpuPct: 40, connections: 1200, epoch: 1 });
    expect(h.cp.view().group("sg1")).not.toHaveProperty("seed");
    expect(() => h.cp.heartbeat({ appliance: "ghost" }, h.nowMs)).toThrow(expect.objectContaining({ code: ErrorCode.APPLIANCE_NOT_FOUND }));
    expect(() => h.cp.view().members("nope")).toThrow(expect.objectContaining({ code: ErrorCode.SG_NOT_FOUND }));
  });

  it("startup effects re-send every group's table and configuration", () => {
    const h = withMembers(2);
    h.ok("sg.create", { name: "empty", bucketCount: 64 });
    expect(h.restart().startupEffects()).toEqual([
      { kind: "push-config", group: "empty" },
      { kind: "push-config", group: "sg1" },
      { kind: "install-epoch", group: "sg1", epoch: 1 },
    ]);
  });
});

describe("error codes", () => {
  it("map to HTTP statuses and CLI exit codes", () => {
    expect(httpStatusOf(ErrorCode.SG_NOT_FOUND)).toBe(404);
    expect(httpStatusOf(ErrorCode.APPLIANCE_NOT_FOUND)).toBe(404);
    expect(httpStatusOf(ErrorCode.MODEL_MISMATCH)).toBe(409);
    expect(httpStatusOf(ErrorCode.VERSION_MISMATCH)).toBe(409);
    expect(httpStatusOf(ErrorCode.TRANSITION_IN_PROGRESS)).toBe(409);
    expect(httpStatusOf(ErrorCode.SG_EXISTS)).toBe(409);
    expect(httpStatusOf(ErrorCode.APPLIANCE_IN_USE)).toBe(409);
    expect(httpStatusOf(ErrorCode.INVALID_ARGUMENT)).toBe(400);
    expect(httpStatusOf(ErrorCode.POLICY_INVALID)).toBe(400);
    expect(httpStatusOf(ErrorCode.UNAUTHENTICATED)).toBe(401);
    expect(httpStatusOf(ErrorCode.FORBIDDEN)).toBe(403);
    expect(httpStatusOf(ErrorCode.STORE_UNAVAILABLE)).toBe(503);
    expect(httpStatusOf(ErrorCode.NOT_LEADER)).toBe(503);
    expect(httpStatusOf(ErrorCode.BUSY)).toBe(503);
    expect(httpStatusOf(ErrorCode.INTERNAL)).toBe(500);
    expect(httpStatusOf("TANDEM_SOMETHING_NEW")).toBe(500);
    expect(exitCodeOf(ErrorCode.MODEL_MISMATCH)).toBe(2);
    expect(exitCodeOf(ErrorCode.TRANSITION_IN_PROGRESS)).toBe(1);
    expect(exitCodeOf(ErrorCode.STORE_UNAVAILABLE)).toBe(1);
  });
});

describe("model invariants after the scenarios above", () => {
  it("hold for a busy harness", () => {
    const h = withMembers(4);
    h.ok("sg.drain", { group: "sg1", appliance: "a1" });
    h.ok("changes.apply", { group: "sg1" });
    expect(checkModelInvariants(h.cp.current)).toEqual([]);
  });
});
