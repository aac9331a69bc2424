// The rolling-upgrade driver against a small model of a group: each action is carried out the
// way the daemon does (drain/rejoin complete one call later, a restart reports the goal
// version), and the properties of the cycle are checked at every call.

import { describe, expect, it } from "vitest";
import type { UpgradeState } from "./model.js";
import { nextUpgradeAction, UPGRADE_STEP_TIMEOUT_MS, type UpgradeAction, type UpgradeMemberView, type UpgradeVerifyState } from "./upgrade.js";

interface World {
  upgrade: UpgradeState | null;
  members: UpgradeMemberView[];
  busy: boolean;
  verify: UpgradeVerifyState;
  nowMs: number;
  stepSinceMs: number;
  /** Appliances that come back on the version they are asked for. */
  restartWorks: boolean;
  log: string[];
}

function world(): World {
  return {
    upgrade: { fromVersion: "1.0", targetVersion: "2.0", startedAt: "t", direction: "forward", paused: false, reason: null, current: null },
    members: ["a", "b", "c"].map((appliance) => ({ appliance, state: "UP", inTable: true, version: "1.0", alive: true, restartError: null })),
    busy: false,
    verify: { kind: "none" },
    nowMs: 0,
    stepSinceMs: 0,
    restartWorks: true,
    log: [],
  };
}

function member(w: World, id: string): UpgradeMemberView {
  return w.members.find((m) => m.appliance === id)!;
}

/** One driver call, carried out. */
function turn(w: World): UpgradeAction {
  const u = w.upgrade!;
  const action = nextUpgradeAction({ group: "g", upgrade: u, nowMs: w.nowMs, stepSinceMs: w.stepSinceMs, members: w.members, busy: w.busy, verify: w.verify });
  w.nowMs += 500;
  if (w.busy) w.busy = false; // a transition completes by the next call
  const goal = u.direction === "back" ? u.fromVersion : u.targetVersion;
  switch (action.kind) {
    case "step":
      w.upgrade = { ...u, current: { appliance: action.appliance, step: action.step, since: "t" } };
      w.stepSinceMs = w.nowMs;
      if (action.step === "restart") w.verify = { kind: "none" };
      w.log.push(`${action.appliance}:${action.step}`);
      break;
    case "drain":
      Object.assign(member(w, action.appliance), { state: "DETACHED", inTable: false });
      w.busy = true;
      break;
    case "rejoin":
      Object.assign(member(w, action.appliance), { state: "UP", inTable: true });
      w.busy = true;
      break;
    case "verify":
      w.verify = { kind: "clean" };
      break;
    case "member-done":
      w.upgrade = { ...u, current: null };
      w.log.push(`${action.appliance}:done`);
      break;
    case "pause":
      w.upgrade = { ...u, paused: true, reason: action.reason };
      break;
    case "finish":
      w.upgrade = null;
      break;
    case "wait":
      break;
  }
  // The directive of a restart step: a working agent brings the member back on the goal.
  const cur = w.upgrade?.current;
  if (cur?.step === "restart" && w.restartWorks) member(w, cur.appliance).version = goal;
  // Invariant: at most one member out of the table while upgrading.
  expect(w.members.filter((m) => !m.inTable).length).toBeLessThanOrEqual(1);
  return action;
}

function runUntil(w: World, done: (a: UpgradeAction) => boolean, turns = 200): UpgradeAction {
  for (let i = 0; i < turns; i++) {
    const a = turn(w);
    if (done(a)) return a;
  }
  throw new Error(`not done after ${turns} turns; log ${w.log.join(" ")}`);
}

describe("rolling upgrade driver", () => {
  it("takes every member through drain, restart, rejoin and verify, one at a time, then finishes", () => {
    const w = world();
    runUntil(w, (a) => a.kind === "finish");
    expect(w.log).toEqual(["a:drain", "a:restart", "a:rejoin", "a:verify", "a:done", "b:drain", "b:restart", "b:rejoin", "b:verify", "b:done", "c:drain", "c:restart", "c:rejoin", "c:verify", "c:done"]);
    expect(w.members.every((m) => m.version === "2.0" && m.state === "UP" && m.inTable)).toBe(true);
  });

  it("waits while the group is busy and starts no member then", () => {
    const w = world();
    w.busy = true;
    const a = nextUpgradeAction({ group: "g", upgrade: w.upgrade!, nowMs: 0, stepSinceMs: 0, members: w.members, busy: true, verify: w.verify });
    expect(a.kind).toBe("wait");
  });

  it("a rollback mid-way walks back exactly the members that moved", () => {
    const w = world();
    runUntil(w, (a) => a.kind === "member-done"); // a is on 2.0
    runUntil(w, () => w.upgrade!.current?.step === "rejoin"); // b restarted on 2.0, not yet rejoined
    expect(member(w, "b").version).toBe("2.0");
    w.upgrade = { ...w.upgrade!, direction: "back" };
    w.log = [];
    runUntil(w, (a) => a.kind === "finish");
    // b's restart step is behind it: it rejoins and is verified on 2.0, then is cycled back.
    expect(w.members.map((m) => m.version)).toEqual(["1.0", "1.0", "1.0"]);
    expect(w.log.filter((l) => l.endsWith(":drain")).sort()).toEqual(["a:drain", "b:drain"]);
    expect(w.log.some((l) => l.startsWith("c:"))).toBe(false);
  });

  it("pauses when a restart reports an error, and does nothing while paused", () => {
    const w = world();
    w.restartWorks = false;
    runUntil(w, () => w.upgrade!.current?.step === "restart");
    member(w, "a").restartError = "no release 2.0 in /opt/tandem/releases";
    const a = runUntil(w, (x) => x.kind === "pause");
    expect(a).toEqual({ kind: "pause", reason: "a cannot restart on 2.0: no release 2.0 in /opt/tandem/releases" });
    expect(turn(w).kind).toBe("wait");
    expect(w.upgrade!.paused).toBe(true);
  });

  it("pauses when a step is overdue", () => {
    const w = world();
    w.restartWorks = false;
    runUntil(w, () => w.upgrade!.current?.step === "restart");
    w.nowMs = w.stepSinceMs + UPGRADE_STEP_TIMEOUT_MS + 1;
    const a = turn(w);
    expect(a.kind).toBe("pause");
    expect((a as { reason: string }).reason).toContain("restart on 2.0 did not complete within 120 s");
  });

  it("pauses when the member goes DOWN mid-cycle, and when verification finds differences", () => {
    const w = world();
    runUntil(w, () => w.upgrade!.current?.step === "rejoin");
    member(w, "a").state = "DOWN";
    expect(turn(w)).toEqual({ kind: "pause", reason: "a went DOWN during its rejoin step" });

    const v = world();
    runUntil(v, () => v.upgrade!.current?.step === "verify");
    const a = nextUpgradeAction({ group: "g", upgrade: v.upgrade!, nowMs: v.nowMs, stepSinceMs: v.stepSinceMs, members: v.members, busy: false, verify: { kind: "differs", buckets: 3 } });
    expect(a).toEqual({ kind: "pause", reason: "verification after a rejoined found 3 bucket(s) differing" });
  });

  it("skips a DETACHED member's drain and finishes at once when every member is on the goal", () => {
    const w = world();
    Object.assign(member(w, "c"), { state: "DETACHED", inTable: false });
    expect(nextUpgradeAction({ group: "g", upgrade: w.upgrade!, nowMs: 0, stepSinceMs: 0, members: w.members, busy: false, verify: w.verify })).toEqual({ kind: "step", appliance: "c", step: "restart" });
    for (const m of w.members) m.version = "2.0";
    expect(nextUpgradeAction({ group: "g", upgrade: w.upgrade!, nowMs: 0, stepSinceMs: 0, members: w.members, busy: false, verify: w.verify })).toEqual({ kind: "finish" });
  });
});
