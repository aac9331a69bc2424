// Epochs: a bucket table with its version number and the cluster seed it was built with.
//
// Every change of the table (join, drain, failure, weights) makes a new epoch; members and
// the distributor route by the table of the newest epoch they know, and sync traffic carries
// the epoch so stale datagrams can be dropped. An EpochTable is a plain value (no methods), so
// it can be stored, sent and compared; the helpers below answer questions about it.
//
// Invariants kept:
// - epoch is a non-negative safe integer; a successor table has a larger epoch.
// - The bucket count stays the same across transitions (see transition.ts): buckets keep
//   their identity, so a member's state for bucket b stays meaningful.

import { assert } from "../stdx/assert.js";
import { autoBucketCount, buildBucketTable, NO_MEMBER, type BucketTable, type MemberWeight } from "./rendezvous.js";

export interface EpochTable {
  readonly epoch: number;
  /** Cluster seed: keys the flow hash and the rendezvous ranking. */
  readonly seed: number;
  readonly table: BucketTable;
}

export interface EpochTableOptions {
  /** Defaults to autoBucketCount(members.length). */
  bucketCount?: number;
  /** Defaults to 1. */
  epoch?: number;
}

/** The first table of a security group. */
export function createEpochTable(members: readonly MemberWeight[], seed: number, options: EpochTableOptions = {}): EpochTable {
  const epoch = options.epoch ?? 1;
  assert(Number.isSafeInteger(epoch) && epoch >= 0, "epoch must be a non-negative safe integer");
  const bucketCount = options.bucketCount ?? autoBucketCount(members.length);
  return { epoch, seed, table: buildBucketTable(members, bucketCount, seed) };
}

function checkBucket(t: EpochTable, bucket: number): void {
  assert(Number.isInteger(bucket) && bucket >= 0 && bucket < t.table.bucketCount, "bucket out of range");
}

/** Id of the bucket's owner. */
export function ownerOf(t: EpochTable, bucket: number): string {
  checkBucket(t, bucket);
  const index = t.table.owner[bucket]!;
  assert(index !== NO_MEMBER, "every bucket has an owner");
  return t.table.members[index]!;
}

/** Id of the bucket's backup, or null (single member, or unprotected after a failure). */
export function backupOf(t: EpochTable, bucket: number): string | null {
  checkBucket(t, bucket);
  const index = t.table.backup[bucket]!;
  return index === NO_MEMBER ? null : t.table.members[index]!;
}

function bucketsWhere(roles: Int16Array, index: number): number[] {
  const out: number[] = [];
  if (index === NO_MEMBER) return out;
  for (let b = 0; b < roles.length; b++) if (roles[b] === index) out.push(b);
  return out;
}

/** Buckets the member owns, ascending (empty for an unknown member). */
export function bucketsOwnedBy(t: EpochTable, memberId: string): number[] {
  return bucketsWhere(t.table.owner, t.table.members.indexOf(memberId));
}

/** Buckets the member keeps the backup copy of, ascending (empty for an unknown member). */
export function bucketsBackedUpBy(t: EpochTable, memberId: string): number[] {
  return bucketsWhere(t.table.backup, t.table.members.indexOf(memberId));
}

export interface MemberLoad {
  id: string;
  weight: number;
  /** Buckets owned and backed up. */
  owned: number;
  backups: number;
  /** owned / bucketCount, and the share the weight asks for (weight / sum of weights). */
  ownedShare: number;
  weightShare: number;
}

/** Per-member load, in table order (sorted by id). */
export function loadPerMember(t: EpochTable): MemberLoad[] {
  const { members, weights, owner, backup, bucketCount } = t.table;
  const owned = new Int32Array(members.length);
  const backups = new Int32Array(members.length);
  for (let b = 0; b < bucketCount; b++) {
    owned[owner[b]!]!++;
    if (backup[b] !== NO_MEMBER) backups[backup[b]!]!++;
  }
  let weightSum = 0;
  for (const w of weights) weightSum += w;
  return members.map((id, i) => ({
    id,
    weight: weights[i]!,
    owned: owned[i]!,
    backups: backups[i]!,
    ownedShare: owned[i]! / bucketCount,
    weightShare: weights[i]! / weightSum,
  }));
}

/** Number of buckets that have no backup (unprotected). */
export function unprotectedCount(t: EpochTable): number {
  let count = 0;
  for (let b = 0; b < t.table.bucketCount; b++) if (t.table.backup[b] === NO_MEMBER) count++;
  return count;
}
