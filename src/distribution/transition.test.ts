// Transition plans: final tables equal a fresh build, moves touch only the changing member's
// buckets, and (the property that keeps connections alive) no member is ever named owner or
// backup of a bucket before it holds the bucket's state. Seeds appear in the test names.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { createEpochTable, ownerOf, unprotectedCount, type EpochTable } from "./epoch.js";
import { buildBucketTable, NO_MEMBER, ranking, type BucketTable, type MemberWeight } from "./rendezvous.js";
import { diffTables, extraBackupsOf, planDrain, planFailure, planJoin, planWeights, type TransitionPlan } from "./transition.js";

const B = 2048;

function membersOf(count: number, weight = (i: number): number => 4 + (i % 3) * 4): MemberWeight[] {
  return Array.from({ length: count }, (_, i) => ({ id: `gw-${String(i).padStart(2, "0")}`, weight: weight(i) }));
}

/** Typed arrays compared in one step: expect().toEqual walks them element by element, slowly. */
function sameArray(a: Int16Array, b: Int16Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function sameTable(a: BucketTable, b: BucketTable): void {
  expect(a.bucketCount).toBe(b.bucketCount);
  expect(a.members).toEqual(b.members);
  expect(a.weights).toEqual(b.weights);
  expect(sameArray(a.owner, b.owner)).toBe(true);
  expect(sameArray(a.backup, b.backup)).toBe(true);
}

function idAt(t: EpochTable, bucket: number, role: "owner" | "backup"): string | null {
  const index = t.table[role][bucket]!;
  return index === NO_MEMBER ? null : t.table.members[index]!;
}

/**
 * Replays a plan the way the sync layer would and returns every violation of
 * make-before-break: a member named owner or backup in a phase's table while it does not
 * hold the bucket (holders start as {owner, backup}; fills add their targets; a phase's
 * table then keeps only the members it names). `dead` is removed from holders at once.
 * Holders are bit sets over member ids, so a replay of thousands of buckets stays fast.
 */
function replayHolders(plan: TransitionPlan, dead: string | null): string[] {
  const problems: string[] = [];
  const bits = new Map<string, number>();
  const bitOf = (id: string): number => {
    if (!bits.has(id)) bits.set(id, 1 << bits.size);
    return bits.get(id)!;
  };
  const bucketCount = plan.from.table.bucketCount;
  const holders = new Int32Array(bucketCount);
  for (let b = 0; b < bucketCount; b++) {
    for (const role of ["owner", "backup"] as const) {
      const id = idAt(plan.from, b, role);
      if (id !== null && id !== dead) holders[b]! |= bitOf(id);
    }
  }
  for (const phase of plan.phases) {
    for (const move of phase.moves) {
      if (move.fillTo.length === 0) continue;
      if (move.fillFrom === null || (holders[move.bucket]! & bitOf(move.fillFrom)) === 0) {
        problems.push(`${phase.kind} bucket ${move.bucket}: fill source ${move.fillFrom} holds nothing`);
      }
      for (const id of move.fillTo) holders[move.bucket]! |= bitOf(id);
    }
    for (let b = 0; b < bucketCount; b++) {
      const owner = idAt(phase.table, b, "owner");
      const backup = idAt(phase.table, b, "backup");
      if (owner === null || (holders[b]! & bitOf(owner)) === 0) problems.push(`${phase.kind} bucket ${b}: owner ${owner} holds nothing`);
      if (backup !== null && (holders[b]! & bitOf(backup)) === 0) problems.push(`${phase.kind} bucket ${b}: backup ${backup} holds nothing`);
      if (phase.kind === "fill") continue; // extra backups keep their copy until the flip
      holders[b] = (owner === null ? 0 : bitOf(owner)) | (backup === null ? 0 : bitOf(backup));
    }
  }
  return problems;
}

/** Collects failed checks so a loop over thousands of moves costs one expect. */
function checker(): { check: (ok: boolean, what: string) => void; problems: string[] } {
  const problems: string[] = [];
  return { problems, check: (ok, what) => void (ok || problems.length > 20 || problems.push(what)) };
}

const groupArb = fc.record({
  count: fc.integer({ min: 2, max: 12 }),
  equal: fc.boolean(),
  seed: fc.integer(),
  pick: fc.nat(),
});

function groupOf(g: { count: number; equal: boolean }): MemberWeight[] {
  return membersOf(g.count, g.equal ? () => 8 : undefined);
}

describe("diffTables", () => {
  it("is empty for equal tables and names changed owner/backup by id", () => {
    const a = buildBucketTable(membersOf(5), B, 1);
    expect(diffTables(a, buildBucketTable(membersOf(5), B, 1))).toEqual([]);
    const b = buildBucketTable(membersOf(5).slice(1), B, 1);
    const changes = diffTables(a, b);
    expect(changes.length).toBeGreaterThan(0);
    for (const c of changes) expect(c.fromOwner === "gw-00" || c.fromBackup === "gw-00").toBe(true);
  });
});

describe("planJoin", () => {
  it("fills the joining member as an extra backup, then flips; final = buildBucketTable (seed 201)", () => {
    fc.assert(
      fc.property(groupArb, (g) => {
        const old = createEpochTable(groupOf(g), g.seed, { bucketCount: B, epoch: 3 });
        const joining = { id: "gw-new", weight: 8 };
        const plan = planJoin(old, joining);
        expect(plan.kind).toBe("join");
        expect(plan.final.epoch).toBe(4);
        sameTable(plan.final.table, buildBucketTable([...groupOf(g), joining], B, g.seed));
        const [fill, flip] = plan.phases;
        expect(fill!.kind).toBe("fill");
        expect(fill!.table).toBe(old);
        expect(flip!.kind).toBe("flip");
        expect(flip!.table).toBe(plan.final);
        // Fill exactly the buckets the new member will own or back up, from the current owner.
        const takes = diffTables(old.table, plan.final.table).map((c) => c.bucket);
        expect(fill!.moves.map((m) => m.bucket)).toEqual(takes);
        const { check, problems } = checker();
        for (const m of fill!.moves) {
          check(m.fillTo.length === 1 && m.fillTo[0] === "gw-new", `fill ${m.bucket}: fills ${m.fillTo.join()}`);
          check(m.fillFrom === ownerOf(old, m.bucket), `fill ${m.bucket}: source ${m.fillFrom} is not the owner`);
          check(m.toOwner === m.fromOwner && m.toBackup === m.fromBackup, `fill ${m.bucket}: changed owner/backup`);
        }
        for (const m of flip!.moves) {
          check(m.toOwner === "gw-new" || m.toBackup === "gw-new", `flip ${m.bucket}: not the new member's`);
          if (m.toOwner === "gw-new") check(m.toBackup === m.fromOwner, `flip ${m.bucket}: old owner is not the backup`);
          check(m.release.length === (m.fromBackup === null ? 0 : 1) && (m.fromBackup === null || m.release[0] === m.fromBackup), `flip ${m.bucket}: release`);
        }
        expect(problems).toEqual([]);
        expect(replayHolders(plan, null)).toEqual([]);
        expect(extraBackupsOf(fill!).size).toBe(fill!.moves.length);
      }),
      { seed: 201, numRuns: 30 },
    );
  });

  it("moves about 1/(N+1) of owners with 8 members, B = 65,536 (seed 202)", () => {
    const old = createEpochTable(membersOf(8, () => 8), 202);
    const plan = planJoin(old, { id: "gw-new", weight: 8 });
    const owned = plan.phases[1]!.moves.filter((m) => m.toOwner === "gw-new").length;
    const p = 1 / 9;
    expect(Math.abs(owned - 65536 * p)).toBeLessThan(6 * Math.sqrt(65536 * p * (1 - p)));
  });

  it("refuses a member that is already in the table", () => {
    const old = createEpochTable(membersOf(3), 1, { bucketCount: B });
    expect(() => planJoin(old, { id: "gw-01", weight: 1 })).toThrow(TandemError);
  });

  it("from a single member: the newcomer fills, and the old member becomes backup where it loses ownership", () => {
    const old = createEpochTable([{ id: "solo", weight: 1 }], 7, { bucketCount: B });
    const plan = planJoin(old, { id: "second", weight: 1 });
    expect(plan.phases[0]!.moves.length).toBe(B); // it owns or backs up every bucket
    expect(unprotectedCount(plan.final)).toBe(0);
    expect(replayHolders(plan, null)).toEqual([]);
  });
});

describe("planDrain", () => {
  it("fills new backups before the flip, then removes the member; final = buildBucketTable (seed 211)", () => {
    fc.assert(
      fc.property(groupArb, (g) => {
        const members = groupOf(g);
        const draining = members[g.pick % members.length]!.id;
        const old = createEpochTable(members, g.seed, { bucketCount: B, epoch: 10 });
        const plan = planDrain(old, draining);
        expect(plan.final.epoch).toBe(11);
        sameTable(
          plan.final.table,
          buildBucketTable(
            members.filter((m) => m.id !== draining),
            B,
            g.seed,
          ),
        );
        const [fill, flip] = plan.phases;
        const { check, problems } = checker();
        for (const [k, m] of fill!.moves.entries()) {
          check(m.fromOwner === draining || m.fromBackup === draining, `fill ${m.bucket}: not the draining member's`);
          check(m.fillFrom === m.fromOwner, `fill ${m.bucket}: source is not the owner`);
          check(!m.fillTo.includes(draining), `fill ${m.bucket}: fills the draining member`);
          // The one filled is the bucket's rank 3 today: its new backup (sampled: ranking is slow).
          if (k % 16 === 0) check(m.fillTo.length === 1 && m.fillTo[0] === ranking(m.bucket, members, g.seed)[2], `fill ${m.bucket}: not rank 3`);
        }
        for (const m of flip!.moves) {
          check(m.release.includes(draining), `flip ${m.bucket}: draining member kept`);
          check(m.toOwner === (m.fromOwner === draining ? m.fromBackup : m.fromOwner), `flip ${m.bucket}: wrong owner`);
        }
        expect(problems).toEqual([]);
        expect(plan.final.table.members).not.toContain(draining);
        expect(replayHolders(plan, null)).toEqual([]);
      }),
      { seed: 211, numRuns: 30 },
    );
  });

  it("refuses an unknown member and the last member", () => {
    const old = createEpochTable(membersOf(2), 1, { bucketCount: B });
    expect(() => planDrain(old, "nope")).toThrow(expect.objectContaining({ code: ErrorCode.NOT_FOUND }));
    const solo = createEpochTable([{ id: "solo", weight: 1 }], 1, { bucketCount: B });
    expect(() => planDrain(solo, "solo")).toThrow(expect.objectContaining({ code: ErrorCode.CONFLICT }));
  });
});

describe("planFailure", () => {
  it("promotes every bucket the dead member owned to its backup at once, then reprotects (seed 221)", () => {
    fc.assert(
      fc.property(groupArb, (g) => {
        const members = groupOf(g);
        const dead = members[g.pick % members.length]!.id;
        const old = createEpochTable(members, g.seed, { bucketCount: B, epoch: 20 });
        const plan = planFailure(old, dead);
        const [promote, reprotect] = plan.phases;
        expect(promote!.kind).toBe("promote");
        expect(promote!.table.epoch).toBe(21);
        expect(reprotect!.kind).toBe("reprotect");
        expect(plan.final.epoch).toBe(22);
        sameTable(
          plan.final.table,
          buildBucketTable(
            members.filter((m) => m.id !== dead),
            B,
            g.seed,
          ),
        );
        const touched: number[] = [];
        const { check, problems } = checker();
        for (let b = 0; b < B; b++) {
          const owner = idAt(old, b, "owner");
          const backup = idAt(old, b, "backup");
          const promotedOwner = idAt(promote!.table, b, "owner");
          const promotedBackup = idAt(promote!.table, b, "backup");
          check(promotedOwner === (owner === dead ? backup : owner), `bucket ${b}: promoted owner ${promotedOwner}`);
          if (owner === dead || backup === dead) {
            touched.push(b);
            check(promotedBackup === null, `bucket ${b}: unprotected bucket names backup ${promotedBackup}`);
          } else {
            check(promotedBackup === backup, `bucket ${b}: untouched backup changed`);
          }
        }
        expect(promote!.moves.map((m) => m.bucket)).toEqual(touched);
        const remaining = members.length - 1;
        expect(reprotect!.moves.length).toBe(remaining >= 2 ? touched.length : 0);
        for (const m of reprotect!.moves) {
          check(m.fillFrom === m.toOwner, `reprotect ${m.bucket}: source is not the owner`);
          check(m.fillTo.length === 1 && m.fillTo[0] === m.toBackup && m.toBackup !== dead, `reprotect ${m.bucket}: target`);
        }
        expect(problems).toEqual([]);
        expect(replayHolders(plan, dead)).toEqual([]);
      }),
      { seed: 221, numRuns: 30 },
    );
  });

  it("with two members, the survivor owns everything and nothing can be reprotected", () => {
    const old = createEpochTable(membersOf(2), 3, { bucketCount: B });
    const plan = planFailure(old, "gw-00");
    expect(plan.phases[1]!.moves).toEqual([]);
    expect(unprotectedCount(plan.final)).toBe(B);
    for (let b = 0; b < B; b += 101) expect(ownerOf(plan.final, b)).toBe("gw-01");
  });
});

describe("planWeights", () => {
  it("reaches buildBucketTable of any new member list without naming a holder early (seed 231)", () => {
    fc.assert(
      fc.property(groupArb, fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 12, maxLength: 12 }), (g, weights) => {
        const members = groupOf(g);
        const old = createEpochTable(members, g.seed, { bucketCount: B });
        const reweighted = members.map((m, i) => ({ id: m.id, weight: weights[i]! }));
        const plan = planWeights(old, reweighted);
        sameTable(plan.final.table, buildBucketTable(reweighted, B, g.seed));
        expect(replayHolders(plan, null)).toEqual([]);
      }),
      { seed: 231, numRuns: 30 },
    );
  });
});

describe("purity", () => {
  it("the same inputs give the same plan", () => {
    const old = createEpochTable(membersOf(6), 77, { bucketCount: B });
    const strip = (p: TransitionPlan): unknown => p.phases.map((ph) => ({ kind: ph.kind, epoch: ph.table.epoch, moves: ph.moves }));
    expect(strip(planJoin(old, { id: "x", weight: 3 }))).toEqual(strip(planJoin(old, { id: "x", weight: 3 })));
    expect(strip(planFailure(old, "gw-02"))).toEqual(strip(planFailure(old, "gw-02")));
  });
});
