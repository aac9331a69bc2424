// Executing a transition plan (src/distribution/transition.ts) over time: which table routes
// while it runs, which (bucket, member) fills must be confirmed, and when it is done.
//
// Every plan the control plane runs has exactly one phase that waits for fills; the other
// phase takes effect at once:
//
//   join / drain / weights / rescue     failure
//   [fill]  old table routes; extra      [promote] epoch e+1 routes at once (the dead
//           backups receive state         member's buckets owned by their backups)
//           (WAIT for confirmations)     [reprotect] promote table routes while each
//   [flip]  epoch e+1 routes              unprotected bucket's new backup is filled
//                                          (WAIT); then epoch e+2 routes
//
// So a running transition is: `routingTableOf` routes, `fillMapOf(awaited phase)` tells the
// owners whom to sync each bucket to, and when every pair is confirmed the plan's final table
// routes and the transition is over (commands.ts completes it through the queue).
//
// Timeouts: a fill phase times out when no fill has been confirmed for fillTimeoutMs (from the
// phase's start or its last confirmed fill), and at the latest FILL_TIMEOUT_CAP_FACTOR x
// fillTimeoutMs after its start. So the time allowed follows the amount of state to move: a
// large table that keeps filling is not cut off at a fixed time, and a stuck fill is found
// as fast as before. A make-before-break fill (join, drain, weights) that times out is
// ABORTED AND ROLLED BACK: its fill phase never
// changed the routing table, so the group simply stays at the old epoch; the old table is
// re-sent without a fill map (members drop the partial extra copies), joiners return to where
// they came from, leavers are UP again, and the pending changes it consumed are pending again
// (the operator may apply them again or discard them). A failure's reprotect or a rescue
// cannot be rolled back (a member is gone, the promoted table already routes): on timeout
// the phase is restarted (fills re-sent, timer reset) and a "transition.stalled" event says so.
//
// A second failure while a failure or rescue transition runs: the routing table then has
// unprotected buckets, which planFailure does not accept. rescueOf builds the table that keeps
// every surviving copy (a bucket's owner if alive, else its backup; a bucket with no
// surviving copy gets its final owner and is counted as lost), and the transition continues as
// a make-before-break from that table to the rendezvous table of the survivors (kind "rescue").
//
// Invariants kept: epochs only grow along a transition; the routing table never names as owner
// a member that did not hold the bucket's state (except lost buckets, counted); confirmations
// of another epoch or of pairs the phase does not expect are ignored.

import { createEpochTable, type EpochTable } from "../distribution/epoch.js";
import { buildBucketTable, NO_MEMBER, type BucketTable, type MemberWeight } from "../distribution/rendezvous.js";
import { planDrain, planFailure, planJoin, planWeights, type TransitionPhase, type TransitionPlan } from "../distribution/transition.js";
import { assert } from "../stdx/assert.js";
import type { SecurityGroup, TableRecord, TransitionRecord } from "./model.js";

export const TRANSITION_DEFAULTS = {
  /** A fill phase times out after this long without a fill confirmed (from its start, or its last progress). */
  fillTimeoutMs: 60_000,
} as const;

/**
 * However steadily a fill progresses, it times out this many fill timeouts after its start
 * (10 minutes with the default): a fill that moves one bucket a minute is stuck all the same.
 */
export const FILL_TIMEOUT_CAP_FACTOR = 10;

// ---------------------------------------------------------------------------------------------
// Tables as persisted values.

/** Owner or backup array as base64 of little-endian int16 (only for non-rendezvous tables). */
export function encodeRoles(roles: Int16Array): string {
  const bytes = new Uint8Array(roles.length * 2);
  for (let i = 0; i < roles.length; i++) {
    bytes[i * 2] = roles[i]! & 0xff;
    bytes[i * 2 + 1] = (roles[i]! >> 8) & 0xff;
  }
  return Buffer.from(bytes).toString("base64");
}

export function decodeRoles(text: string, bucketCount: number): Int16Array | null {
  const bytes = Buffer.from(text, "base64");
  if (bytes.length !== bucketCount * 2) return null;
  const roles = new Int16Array(bucketCount);
  for (let i = 0; i < bucketCount; i++) roles[i] = (bytes[i * 2]! | (bytes[i * 2 + 1]! << 8)) << 16 >> 16;
  return roles;
}

function sameMembers(a: readonly MemberWeight[], b: readonly MemberWeight[]): boolean {
  if (a.length !== b.length) return false;
  const sa = [...a].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  const sb = [...b].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  return sa.every((m, i) => m.id === sb[i]!.id && m.weight === sb[i]!.weight);
}

const tableCache = new WeakMap<object, EpochTable>();

/** The EpochTable a record describes (cached per record object: records are immutable). */
export function epochTableOfRecord(record: TableRecord, seed: number, bucketCount: number): EpochTable {
  const cached = tableCache.get(record);
  if (cached !== undefined) return cached;
  let table: EpochTable;
  if (record.owner === null || record.backup === null) {
    table = createEpochTable(record.members, seed, { bucketCount, epoch: record.epoch });
  } else {
    const owner = decodeRoles(record.owner, bucketCount);
    const backup = decodeRoles(record.backup, bucketCount);
    assert(owner !== null && backup !== null, "encoded table of the wrong size");
    const sorted = [...record.members].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    table = {
      epoch: record.epoch,
      seed,
      table: { bucketCount, members: sorted.map((m) => m.id), weights: sorted.map((m) => m.weight), owner, backup },
    };
  }
  tableCache.set(record, table);
  return table;
}

/** A record of `t`; `rendezvous` says t is the rendezvous table of its members (nothing to encode). */
export function tableRecordOf(t: EpochTable, rendezvous: boolean): TableRecord {
  const members = t.table.members.map((id, i) => ({ id, weight: t.table.weights[i]! }));
  const record: TableRecord = rendezvous
    ? { epoch: t.epoch, members, owner: null, backup: null }
    : { epoch: t.epoch, members, owner: encodeRoles(t.table.owner), backup: encodeRoles(t.table.backup) };
  tableCache.set(record, t);
  return record;
}

/** The settled routing table of a group without a transition (null: no members in the table). */
export function settledTableOf(group: SecurityGroup): EpochTable | null {
  if (group.tableMembers.length === 0) return null;
  const key = group.tableMembers;
  const cached = tableCache.get(key);
  if (cached !== undefined && cached.epoch === group.epoch && cached.seed === group.seed && cached.table.bucketCount === group.bucketCount) return cached;
  const table = createEpochTable(group.tableMembers, group.seed, { bucketCount: group.bucketCount, epoch: group.epoch });
  tableCache.set(key, table);
  return table;
}

// ---------------------------------------------------------------------------------------------
// Plans.

const planCache = new WeakMap<TransitionRecord, TransitionPlan>();

/** Recomputes the plan of a group's transition (pure: same record, same plan, everywhere). */
export function planOf(group: SecurityGroup): TransitionPlan {
  const record = group.transition;
  assert(record !== null, "planOf needs a transition");
  const cached = planCache.get(record);
  if (cached !== undefined) return cached;
  const from = epochTableOfRecord(record.from, group.seed, group.bucketCount);
  let plan: TransitionPlan;
  switch (record.kind) {
    case "join": {
      assert(record.joining.length === 1, "a join plan has one joiner");
      const joiner = record.target.find((m) => m.id === record.joining[0]!.appliance);
      assert(joiner !== undefined, "the joiner is in the target");
      plan = planJoin(from, joiner);
      break;
    }
    case "drain":
      assert(record.leaving.length === 1, "a drain plan has one leaver");
      plan = planDrain(from, record.leaving[0]!.appliance);
      break;
    case "weights":
    case "rescue":
      plan = planWeights(from, record.target);
      break;
    case "failure":
      assert(record.dead !== null, "a failure names the dead member");
      plan = planFailure(from, record.dead);
      break;
  }
  assert(sameMembers(record.target, plan.final.table.members.map((id, i) => ({ id, weight: plan.final.table.weights[i]! }))), "plan final members equal the target");
  planCache.set(record, plan);
  return plan;
}

/** Chooses the planner for a make-before-break change from `from` to `target`. */
export function makeBeforeBreakKind(joining: readonly string[], leaving: readonly string[], from: EpochTable, target: readonly MemberWeight[]): "join" | "drain" | "weights" {
  const weightsKept = target.every((m) => {
    const i = from.table.members.indexOf(m.id);
    return i < 0 || from.table.weights[i] === m.weight;
  });
  if (!weightsKept) return "weights";
  if (joining.length === 1 && leaving.length === 0) return "join";
  if (leaving.length === 1 && joining.length === 0) return "drain";
  return "weights";
}

/** The phase that waits for fill confirmations. */
export function awaitedPhaseOf(plan: TransitionPlan): TransitionPhase {
  const phase = plan.phases.find((p) => p.kind === "fill" || p.kind === "reprotect");
  assert(phase !== undefined, "every plan has one fill or reprotect phase");
  return phase;
}

/** The table that routes while the transition waits for its fills. */
export function routingTableOf(plan: TransitionPlan): EpochTable {
  const awaited = awaitedPhaseOf(plan);
  if (awaited.kind === "fill") return awaited.table; // the old epoch
  const index = plan.phases.indexOf(awaited);
  assert(index > 0, "reprotect follows promote");
  return plan.phases[index - 1]!.table;
}

/** The routing table of a group now: settled, or the running transition's. */
export function currentTableOf(group: SecurityGroup): EpochTable | null {
  return group.transition === null ? settledTableOf(group) : routingTableOf(planOf(group));
}

/** Bucket -> members that must receive its state from its owner during `phase` (fill and reprotect). */
export function fillMapOf(phase: TransitionPhase): Map<number, readonly string[]> {
  const map = new Map<number, readonly string[]>();
  if (phase.kind !== "fill" && phase.kind !== "reprotect") return map;
  for (const move of phase.moves) if (move.fillTo.length > 0) map.set(move.bucket, move.fillTo);
  return map;
}

export function fillPairCount(phase: TransitionPhase): number {
  let count = 0;
  for (const move of phase.moves) count += move.fillTo.length;
  return count;
}

// ---------------------------------------------------------------------------------------------
// Fill confirmations (soft state: not persisted; after a restart members report again).

const EXPECTED = 1;
const CONFIRMED = 2;

/**
 * Which (bucket, member) pairs of the awaited phase are confirmed. Per member one byte per
 * bucket: 0 not expected, 1 expected, 2 confirmed. Bounded: one array per receiving member.
 */
export class FillProgress {
  readonly total: number;
  confirmed = 0;
  /** Epoch the fills run under: reports of any other epoch are stale. */
  readonly epoch: number;
  startedAtMs: number;
  /** When the phase started or last confirmed a fill. */
  lastProgressMs: number;
  private readonly flags = new Map<string, Uint8Array>();

  constructor(
    readonly group: string,
    readonly seq: number,
    plan: TransitionPlan,
    startedAtMs: number,
  ) {
    const phase = awaitedPhaseOf(plan);
    const bucketCount = plan.from.table.bucketCount;
    this.epoch = routingTableOf(plan).epoch;
    this.startedAtMs = startedAtMs;
    this.lastProgressMs = startedAtMs;
    let total = 0;
    for (const move of phase.moves) {
      for (const member of move.fillTo) {
        let flags = this.flags.get(member);
        if (flags === undefined) {
          flags = new Uint8Array(bucketCount);
          this.flags.set(member, flags);
        }
        assert(flags[move.bucket] === 0, "a pair is expected once");
        flags[move.bucket] = EXPECTED;
        total++;
      }
    }
    this.total = total;
  }

  get complete(): boolean {
    return this.confirmed === this.total;
  }

  /** 0..1 for progress bars (1 when there was nothing to fill). */
  get progress(): number {
    return this.total === 0 ? 1 : this.confirmed / this.total;
  }

  /** When this phase times out if nothing more is confirmed (see "Timeouts" above). */
  deadlineMs(fillTimeoutMs: number): number {
    return Math.min(this.lastProgressMs + fillTimeoutMs, this.startedAtMs + fillTimeoutMs * FILL_TIMEOUT_CAP_FACTOR);
  }

  /** The phase starts again (fills re-sent): both clocks restart. */
  restart(nowMs: number): void {
    this.startedAtMs = nowMs;
    this.lastProgressMs = nowMs;
  }

  /** Records `member`'s report that it holds `buckets` in `epoch`; returns how many were newly confirmed (progress at nowMs). */
  confirm(member: string, epoch: number, buckets: readonly number[], nowMs: number | null = null): number {
    if (epoch !== this.epoch) return 0;
    const flags = this.flags.get(member);
    if (flags === undefined) return 0;
    let newly = 0;
    for (const b of buckets) {
      if (!Number.isInteger(b) || b < 0 || b >= flags.length) continue;
      if (flags[b] !== EXPECTED) continue;
      flags[b] = CONFIRMED;
      newly++;
    }
    this.confirmed += newly;
    if (newly > 0 && nowMs !== null) this.lastProgressMs = Math.max(this.lastProgressMs, nowMs);
    return newly;
  }

  /** Buckets `member` still has to confirm, ascending. */
  outstandingOf(member: string): number[] {
    const flags = this.flags.get(member);
    const out: number[] = [];
    if (flags === undefined) return out;
    for (let b = 0; b < flags.length; b++) if (flags[b] === EXPECTED) out.push(b);
    return out;
  }

  /** Receiving members with their outstanding count, sorted by id. */
  outstandingPerMember(): { member: string; outstanding: number; expected: number }[] {
    const out: { member: string; outstanding: number; expected: number }[] = [];
    for (const [member, flags] of this.flags) {
      let expected = 0;
      let outstanding = 0;
      for (let b = 0; b < flags.length; b++) {
        if (flags[b] === EXPECTED) outstanding++;
        if (flags[b] !== 0) expected++;
      }
      out.push({ member, outstanding, expected });
    }
    out.sort((a, b) => (a.member < b.member ? -1 : a.member > b.member ? 1 : 0));
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Failure handling helpers.

/** True when every bucket has a backup (planFailure's precondition, with two or more members). */
export function isFullyProtected(t: EpochTable): boolean {
  if (t.table.members.length < 2) return false;
  for (let b = 0; b < t.table.bucketCount; b++) if (t.table.backup[b] === NO_MEMBER) return false;
  return true;
}

/**
 * The table after `dead` fails while `current` (possibly with unprotected buckets) routes:
 * each bucket keeps a surviving copy as owner (the owner if alive, else the backup) and the
 * surviving backup if any; a bucket with no surviving copy is owned by its final owner (the
 * rendezvous table of the survivors) and counted lost. Epoch current + 1. Needs a survivor.
 */
export function rescueOf(current: EpochTable, dead: string): { table: EpochTable; survivors: MemberWeight[]; lostBuckets: number } {
  const old = current.table;
  const survivors = old.members.map((id, i) => ({ id, weight: old.weights[i]! })).filter((m) => m.id !== dead);
  assert(survivors.length > 0 && survivors.length < old.members.length, "rescue needs the dead member and a survivor");
  const final = buildBucketTable(survivors, old.bucketCount, current.seed);
  const map = new Int16Array(old.members.length);
  for (let i = 0; i < old.members.length; i++) map[i] = final.members.indexOf(old.members[i]!);
  const owner = new Int16Array(old.bucketCount);
  const backup = new Int16Array(old.bucketCount);
  let lost = 0;
  for (let b = 0; b < old.bucketCount; b++) {
    const o = old.owner[b] === NO_MEMBER ? NO_MEMBER : map[old.owner[b]!]!;
    const k = old.backup[b] === NO_MEMBER ? NO_MEMBER : map[old.backup[b]!]!;
    if (o !== NO_MEMBER) {
      owner[b] = o;
      backup[b] = k;
    } else if (k !== NO_MEMBER) {
      owner[b] = k;
      backup[b] = NO_MEMBER;
    } else {
      owner[b] = final.owner[b]!;
      backup[b] = NO_MEMBER;
      lost++;
    }
  }
  const table: BucketTable = { bucketCount: old.bucketCount, members: final.members, weights: final.weights, owner, backup };
  return { table: { epoch: current.epoch + 1, seed: current.seed, table }, survivors, lostBuckets: lost };
}
