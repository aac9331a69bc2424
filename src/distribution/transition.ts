// Transition plans: how the cluster gets from one bucket table to the next without losing a
// connection. Pure functions of the old epoch table and the change: no clock, no I/O, so every
// orchestrator (and the simulator) computes the same plan from the same inputs.
//
// Three shapes:
//
//   join / drain / weights (make-before-break)      failure (the member is already gone)
//   epoch e   "fill":  old table routes; members      epoch e+1 "promote": each bucket the dead
//             that will own or back up a bucket               member owned is owned by its backup;
//             and hold nothing yet receive its                 buckets it touched have no backup
//             state (bulk + live) as EXTRA backups.  epoch e+2 "reprotect": each such bucket gets
//   epoch e+1 "flip":  the new table routes; the              its new backup, filled by its owner.
//             extra backups are owner / backup.
//
// Invariants kept (checked by assertions, since rendezvous hashing guarantees them):
// - plan.final.table equals buildBucketTable(new members, old bucket count, seed).
// - join: only buckets where the joining member ranks first or second change.
// - drain and failure: only buckets the leaving member owned or backed up change; a bucket it
//   owned goes to its backup, which already holds the state.
// - failure's promote table has the final owners; its unprotected buckets have backup NO_MEMBER.
// - The bucket count never changes in a transition: changing it re-buckets every flow, which is
//   a full reshuffle and not a transition.

import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { EpochTable } from "./epoch.js";
import { buildBucketTable, membersOf, NO_MEMBER, type BucketTable, type MemberWeight } from "./rendezvous.js";

export type MoveKind = "fill" | "flip" | "promote" | "reprotect";
export type TransitionKind = "join" | "drain" | "failure" | "weights";

/** One bucket's change within one phase. Members are ids; null means none. */
export interface BucketMove {
  bucket: number;
  kind: MoveKind;
  /** Owner and backup before the phase. */
  fromOwner: string | null;
  fromBackup: string | null;
  /** Owner and backup after the phase (for "fill": unchanged). */
  toOwner: string | null;
  toBackup: string | null;
  /** Member that sends the bucket's state (bulk copy, then live updates): the current owner. */
  fillFrom: string | null;
  /**
   * Members that receive it during this phase. In a "fill" phase these are the extra backups:
   * the owner syncs to its backup AND to them until the flip. In "reprotect": the new backup.
   */
  fillTo: readonly string[];
  /** Members that stop holding the bucket once this phase is done (dropped backup, leaving member). */
  release: readonly string[];
}

export interface TransitionPhase {
  kind: MoveKind;
  /** The table that routes while this phase runs (fill: the old epoch; otherwise its new epoch). */
  table: EpochTable;
  /** Buckets this phase touches, ascending. */
  moves: BucketMove[];
}

export interface TransitionPlan {
  kind: TransitionKind;
  from: EpochTable;
  /** In order; the orchestrator completes (fills confirmed) one before starting the next. */
  phases: TransitionPhase[];
  /** The last phase's table: from.epoch + 1 (join, drain, weights) or + 2 (failure). */
  final: EpochTable;
}

/** A bucket whose owner or backup differs between two tables. */
export interface BucketChange {
  bucket: number;
  fromOwner: string | null;
  fromBackup: string | null;
  toOwner: string | null;
  toBackup: string | null;
}

function idOf(table: BucketTable, index: number): string | null {
  return index === NO_MEMBER ? null : table.members[index]!;
}

/** Maps member indexes of `a` to indexes of `b` (-2 when absent from b, so never equal). */
function indexMap(a: BucketTable, b: BucketTable): Int32Array {
  const map = new Int32Array(a.members.length);
  for (let i = 0; i < a.members.length; i++) {
    const j = b.members.indexOf(a.members[i]!);
    map[i] = j === NO_MEMBER ? -2 : j;
  }
  return map;
}

/** Buckets whose owner or backup changed from a to b (compared by member id), ascending. */
export function diffTables(a: BucketTable, b: BucketTable): BucketChange[] {
  assert(a.bucketCount === b.bucketCount, "diffTables needs tables with one bucket count");
  const map = indexMap(a, b);
  const changes: BucketChange[] = [];
  for (let k = 0; k < a.bucketCount; k++) {
    const ao = a.owner[k]!;
    const ab = a.backup[k]!;
    const ownerSame = (ao === NO_MEMBER ? NO_MEMBER : map[ao]!) === b.owner[k];
    const backupSame = (ab === NO_MEMBER ? NO_MEMBER : map[ab]!) === b.backup[k];
    if (ownerSame && backupSame) continue;
    changes.push({ bucket: k, fromOwner: idOf(a, ao), fromBackup: idOf(a, ab), toOwner: idOf(b, b.owner[k]!), toBackup: idOf(b, b.backup[k]!) });
  }
  return changes;
}

function nextEpoch(from: EpochTable, step: number, table: BucketTable): EpochTable {
  const epoch = from.epoch + step;
  assert(Number.isSafeInteger(epoch), "epoch overflow");
  return { epoch, seed: from.seed, table };
}

function requireMember(old: EpochTable, memberId: string, verb: string): void {
  if (!old.table.members.includes(memberId)) {
    throw new TandemError(ErrorCode.NOT_FOUND, `cannot ${verb} ${memberId}: not a member of epoch ${old.epoch}`, { member: memberId });
  }
  if (old.table.members.length === 1) {
    throw new TandemError(ErrorCode.CONFLICT, `cannot ${verb} ${memberId}: it is the only member`, { member: memberId });
  }
}

/**
 * Make-before-break plan from `old` to the table of `newMembers` (same bucket count and seed).
 * Phase "fill" (old epoch routes): a member that will own or back up a bucket and is neither
 * its owner nor its backup now receives the bucket from the owner, as an extra backup. Phase
 * "flip" (epoch + 1): the new table routes; a new owner that was the backup or an extra backup
 * already holds every connection, and the old owner, if kept, becomes the backup.
 */
export function planWeights(old: EpochTable, newMembers: readonly MemberWeight[]): TransitionPlan {
  return makeBeforeBreak("weights", old, newMembers);
}

function makeBeforeBreak(kind: TransitionKind, old: EpochTable, newMembers: readonly MemberWeight[]): TransitionPlan {
  const finalTable = buildBucketTable(newMembers, old.table.bucketCount, old.seed);
  const final = nextEpoch(old, 1, finalTable);
  const fills: BucketMove[] = [];
  const flips: BucketMove[] = [];
  // Plain comparisons, no per-bucket temporaries: a join or drain touches most of 65,536 buckets
  // and this runs on the orchestrator's event loop.
  for (const c of diffTables(old.table, finalTable)) {
    const fo = c.fromOwner;
    const fb = c.fromBackup;
    const to = c.toOwner;
    const tb = c.toBackup;
    let fillTo: string[] | null = null;
    if (to !== null && to !== fo && to !== fb) fillTo = [to];
    if (tb !== null && tb !== fo && tb !== fb) {
      if (fillTo === null) fillTo = [tb];
      else fillTo.push(tb);
    }
    if (fillTo !== null) {
      fills.push({ bucket: c.bucket, kind: "fill", fromOwner: fo, fromBackup: fb, toOwner: fo, toBackup: fb, fillFrom: fo, fillTo, release: [] });
    }
    const release: string[] = [];
    if (fo !== null && fo !== to && fo !== tb) release.push(fo);
    if (fb !== null && fb !== to && fb !== tb) release.push(fb);
    flips.push({ bucket: c.bucket, fromOwner: fo, fromBackup: fb, toOwner: to, toBackup: tb, kind: "flip", fillFrom: null, fillTo: [], release });
  }
  return {
    kind,
    from: old,
    phases: [
      { kind: "fill", table: old, moves: fills },
      { kind: "flip", table: final, moves: flips },
    ],
    final,
  };
}

/**
 * A member joins. Fill: for each bucket it will own or back up, it becomes an extra backup and
 * receives the bucket's state from the owner. Flip (epoch + 1): it owns its buckets, with the
 * old owner as backup; where it becomes backup, it replaces the old backup. Nothing else moves.
 */
export function planJoin(old: EpochTable, newMember: MemberWeight): TransitionPlan {
  if (old.table.members.includes(newMember.id)) {
    throw new TandemError(ErrorCode.CONFLICT, `cannot join ${newMember.id}: already a member of epoch ${old.epoch}`, {
      member: newMember.id,
    });
  }
  const plan = makeBeforeBreak("join", old, [...membersOf(old.table), newMember]);
  for (const move of plan.phases[1]!.moves) {
    assert(move.toOwner === newMember.id || move.toBackup === newMember.id, "join moved a bucket the new member does not take");
    if (move.toOwner === newMember.id) assert(move.toBackup === move.fromOwner, "join: the old owner becomes the backup");
    else assert(move.toOwner === move.fromOwner, "join: a bucket the new member backs up keeps its owner");
  }
  for (const move of plan.phases[0]!.moves) assert(move.fillTo.length === 1 && move.fillTo[0] === newMember.id, "join fills only the new member");
  return plan;
}

/**
 * A member drains (leaves without losing anything). Fill: each bucket it owns gets its new
 * backup (rank 3 today) filled from it, and each bucket it backs up gets its new backup filled
 * from the owner; the new owner of its buckets is their current backup, which holds the state
 * already. Flip (epoch + 1): it owns and backs up nothing.
 */
export function planDrain(old: EpochTable, memberId: string): TransitionPlan {
  requireMember(old, memberId, "drain");
  const plan = makeBeforeBreak(
    "drain",
    old,
    membersOf(old.table).filter((m) => m.id !== memberId),
  );
  for (const move of plan.phases[1]!.moves) {
    assert(move.fromOwner === memberId || move.fromBackup === memberId, "drain moved a bucket the member did not hold");
    if (move.fromOwner === memberId) assert(move.toOwner === move.fromBackup, "drain: the backup becomes the owner");
    else assert(move.toOwner === move.fromOwner, "drain: a bucket it backed up keeps its owner");
  }
  return plan;
}

/**
 * A member failed. Promote (epoch + 1, at once): each bucket it owned is owned by its backup,
 * which holds the state; each bucket it touched (owned or backed up) is unprotected (backup
 * NO_MEMBER). Reprotect (epoch + 2, once the fills are confirmed): each unprotected bucket gets
 * its new backup, filled by its owner. Two epochs, so the table never names a backup that does
 * not hold the bucket. With one member left the reprotect phase is empty.
 */
export function planFailure(old: EpochTable, deadMemberId: string): TransitionPlan {
  requireMember(old, deadMemberId, "fail over");
  const finalTable = buildBucketTable(
    membersOf(old.table).filter((m) => m.id !== deadMemberId),
    old.table.bucketCount,
    old.seed,
  );
  const promoteTable: BucketTable = {
    bucketCount: finalTable.bucketCount,
    members: finalTable.members,
    weights: finalTable.weights,
    owner: Int16Array.from(finalTable.owner),
    backup: Int16Array.from(finalTable.backup),
  };
  const promotes: BucketMove[] = [];
  const reprotects: BucketMove[] = [];
  for (const c of diffTables(old.table, finalTable)) {
    const ownedByDead = c.fromOwner === deadMemberId;
    assert(ownedByDead || c.fromBackup === deadMemberId, "failure moved a bucket the dead member did not hold");
    assert(c.toOwner === (ownedByDead ? c.fromBackup : c.fromOwner), "failure: the backup becomes the owner");
    promoteTable.backup[c.bucket] = NO_MEMBER;
    promotes.push({
      bucket: c.bucket,
      kind: "promote",
      fromOwner: c.fromOwner,
      fromBackup: c.fromBackup,
      toOwner: c.toOwner,
      toBackup: null,
      fillFrom: null,
      fillTo: [],
      release: [deadMemberId],
    });
    if (c.toBackup === null) continue; // one member left: nobody to protect it with
    reprotects.push({
      bucket: c.bucket,
      kind: "reprotect",
      fromOwner: c.toOwner,
      fromBackup: null,
      toOwner: c.toOwner,
      toBackup: c.toBackup,
      fillFrom: c.toOwner,
      fillTo: [c.toBackup],
      release: [],
    });
  }
  const promoted = nextEpoch(old, 1, promoteTable);
  const final = nextEpoch(old, 2, finalTable);
  return {
    kind: "failure",
    from: old,
    phases: [
      { kind: "promote", table: promoted, moves: promotes },
      { kind: "reprotect", table: final, moves: reprotects },
    ],
    final,
  };
}

/** Buckets -> extra backups during a phase (fill phases only have them), for the sync layer. */
export function extraBackupsOf(phase: TransitionPhase): Map<number, readonly string[]> {
  const extra = new Map<number, readonly string[]>();
  if (phase.kind !== "fill") return extra;
  for (const move of phase.moves) extra.set(move.bucket, move.fillTo);
  return extra;
}
