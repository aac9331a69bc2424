// Weighted rendezvous (highest random weight) ranking: which member owns each bucket, and
// which one holds its backup copy.
//
// For bucket b and member m, u = hash(seed, b, m) lies in (0, 1) and the member's score is
// -weight / ln(u). The highest score owns the bucket (rank 1), the second keeps the backup
// (rank 2). Because a member's score depends only on the bucket and that member, adding or
// removing a member never reorders the others: removing a member hands each of its buckets to
// the runner-up, which is already its backup, and a new member only takes buckets where it
// beats the current owner. P(member i wins) = weight_i / sum(weights) exactly (-ln(u)/w is an
// exponential race), so weights are honoured in expectation; balance is statistical.
//
// Invariants kept:
// - The table is a pure function of (member ids, weights, bucket count, seed): members are
//   sorted by id first, so the order a caller lists them in does not matter. Ties follow one
//   order everywhere (compareRank): higher key, then higher u, then lower index (smaller id);
//   equal u is practically never seen with 52-bit u.
// - owner[b] !== backup[b] whenever there are two or more members; backup is NO_MEMBER (-1)
//   with a single member. Both are indexes into table.members.
// - u is never 0 or 1: u = (x + 0.5) / 2^52 for a 52-bit integer x, so ln(u) is finite and < 0.
//
// Cost: buildBucketTable evaluates B x N hashes and keeps the top two per bucket. With equal
// weights (the usual case: one SG, one appliance model) u alone orders members and no
// logarithm is taken; with a few distinct weights, only each weight class's top two pay for a
// logarithm; with many, a cheap upper bound of ln(u) skips members that cannot place. All three
// loops are exact, not approximations, and give the same table as referenceBucketTable. The
// cost is O(B x N): with B >= 1024 N it grows as N^2 (measured CPU time, equal weights:
// 64 members 30 ms, 128 members 120 ms, 256 members 450 ms).

import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { fmix32, mixWord } from "../stdx/hash.js";

/** A member as the distribution sees it: an appliance id and a positive weight (default: core count). */
export interface MemberWeight {
  id: string;
  weight: number;
}

/** Owner and backup per bucket. Member fields are indexes into `members` (sorted by id). */
export interface BucketTable {
  /** Number of buckets, a power of two. */
  readonly bucketCount: number;
  /** Member ids sorted by id (code-unit order); a member's index is its position here. */
  readonly members: readonly string[];
  /** Weights, parallel to `members`. */
  readonly weights: readonly number[];
  /** Rank-1 member index per bucket. */
  readonly owner: Int16Array;
  /** Rank-2 member index per bucket, NO_MEMBER when there is a single member. */
  readonly backup: Int16Array;
}

/** Marks "no member" in owner/backup arrays (like -1 offsets in PacketView). */
export const NO_MEMBER = -1;
export const BUCKET_COUNT_DEFAULT = 65536;
export const BUCKETS_PER_MEMBER_MIN = 1024;
/** Member indexes live in Int16Array; a security group this large is far beyond any plan. */
export const MEMBER_COUNT_MAX = 4096;
/** 1024 buckets for each of MEMBER_COUNT_MAX members. */
export const BUCKET_COUNT_MAX = BUCKETS_PER_MEMBER_MIN * MEMBER_COUNT_MAX;

assert(MEMBER_COUNT_MAX <= 0x7fff, "member indexes must fit Int16Array");
assert(BUCKET_COUNT_DEFAULT >= BUCKETS_PER_MEMBER_MIN, "default must hold at least one member");

// Domain separators so the two halves of u and the flow hash never share a stream.
const DOMAIN_HI = 0x52454e48; // "RENH"
const DOMAIN_LO = 0x52454e4c; // "RENL"
const TWO_POW_20 = 1048576;
const TWO_POW_MINUS_32 = 1 / 4294967296;
const TWO_POW_MINUS_52 = 1 / 4503599627370496;

/** Smallest power of two >= value (value >= 1). */
function nextPowerOfTwo(value: number): number {
  let p = 1;
  while (p < value) p *= 2;
  return p;
}

export function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && (value & (value - 1)) === 0;
}

/**
 * Bucket count for a member count: a power of two, at least BUCKETS_PER_MEMBER_MIN per
 * member, and never below the default (so small groups get the default 65,536).
 */
export function autoBucketCount(memberCount: number): number {
  assert(Number.isInteger(memberCount) && memberCount >= 0, "memberCount must be a non-negative integer");
  if (memberCount > MEMBER_COUNT_MAX) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `at most ${MEMBER_COUNT_MAX} members per security group, got ${memberCount}`);
  }
  return Math.max(BUCKET_COUNT_DEFAULT, nextPowerOfTwo(BUCKETS_PER_MEMBER_MIN * Math.max(1, memberCount)));
}

/** UTF-8 bytes of a string; slow path (member ids only). */
function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** FNV-1a 32-bit over bytes. */
function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3-style hash over bytes, independent of FNV-1a: the member's second 32 bits. */
function murmurBytes32(bytes: Uint8Array, seed: number): number {
  let h = seed | 0;
  let i = 0;
  for (; i + 4 <= bytes.length; i += 4) {
    h = mixWord(h, bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
  }
  let tail = 0;
  for (let shift = 0; i < bytes.length; i++, shift += 8) tail |= bytes[i]! << shift;
  h = mixWord(h, tail);
  return fmix32(h ^ bytes.length);
}

/**
 * Stable 32-bit hash of a member id: FNV-1a over its UTF-8 bytes. The same in every process
 * and language that hashes the same bytes.
 */
export function memberHashId(id: string): number {
  return fnv1a32(utf8(id));
}

/** Sorted, validated copy of a member list. Operator input, so bad values are TandemErrors. */
export function normalizeMembers(members: readonly MemberWeight[]): MemberWeight[] {
  if (members.length === 0) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, "a bucket table needs at least one member");
  }
  if (members.length > MEMBER_COUNT_MAX) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `at most ${MEMBER_COUNT_MAX} members per security group, got ${members.length}`);
  }
  const sorted = members.map((m) => ({ id: m.id, weight: m.weight }));
  sorted.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const m = sorted[i]!;
    if (typeof m.id !== "string" || m.id.length === 0) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, "member id must be a non-empty string");
    }
    if (!(Number.isFinite(m.weight) && m.weight > 0)) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `member ${m.id}: weight must be a positive finite number, got ${m.weight}`, {
        member: m.id,
      });
    }
    if (i > 0 && sorted[i - 1]!.id === m.id) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `duplicate member id ${m.id}`, { member: m.id });
    }
  }
  return sorted;
}

/** Per-member constants of the ranking: two 32-bit hash states and 1 / weight. */
interface MemberKeys {
  hi: Int32Array;
  lo: Int32Array;
  inverseWeight: Float64Array;
}

function memberKeys(sorted: readonly MemberWeight[], seed: number): MemberKeys {
  const n = sorted.length;
  const keys: MemberKeys = { hi: new Int32Array(n), lo: new Int32Array(n), inverseWeight: new Float64Array(n) };
  const seedHi = mixWord(seed | 0, DOMAIN_HI);
  const seedLo = mixWord(seed | 0, DOMAIN_LO);
  for (let m = 0; m < n; m++) {
    const bytes = utf8(sorted[m]!.id);
    // Two independent 32-bit id hashes: members whose FNV-1a ids collide still rank apart.
    keys.hi[m] = mixWord(seedHi, fnv1a32(bytes));
    keys.lo[m] = mixWord(seedLo, murmurBytes32(bytes, 0x9747b28c));
    keys.inverseWeight[m] = 1 / sorted[m]!.weight;
  }
  return keys;
}

/** u in (0, 1) of (bucket, member m): (x + 0.5) / 2^52 for a 52-bit x from two 32-bit hashes. */
function unitOf(keys: MemberKeys, m: number, bucket: number): number {
  const hi = fmix32(mixWord(keys.hi[m]!, bucket));
  const lo = fmix32(mixWord(keys.lo[m]!, bucket));
  return (hi * TWO_POW_20 + (lo >>> 12) + 0.5) * TWO_POW_MINUS_52;
}

/** u in (0, 1) for (seed, bucket, member id); for tests and diagnostics. */
export function rendezvousUnit(seed: number, bucket: number, id: string): number {
  return unitOf(memberKeys([{ id, weight: 1 }], seed), 0, bucket);
}

interface RankEntry {
  id: string;
  index: number;
  u: number;
  key: number;
}

/**
 * The one ranking order, best first: higher key = ln(u) / weight (the same order as the score
 * -weight / ln(u)); on an equal key (rounding can merge keys of different u) the higher u; on
 * an equal u the lower index. With equal weights this is exactly "higher u, then lower index",
 * which lets the table skip logarithms altogether.
 */
function compareRank(a: RankEntry, b: RankEntry): number {
  if (a.key !== b.key) return a.key > b.key ? -1 : 1;
  if (a.u !== b.u) return a.u > b.u ? -1 : 1;
  return a.index - b.index;
}

/**
 * Builds owner and backup for every bucket. Members may come in any order; the table lists
 * them sorted by id. bucketCount must be a power of two.
 */
export function buildBucketTable(members: readonly MemberWeight[], bucketCount: number, seed: number): BucketTable {
  if (!isPowerOfTwo(bucketCount) || bucketCount > BUCKET_COUNT_MAX) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `bucket count must be a power of two <= ${BUCKET_COUNT_MAX}, got ${bucketCount}`);
  }
  const sorted = normalizeMembers(members);
  const keys = memberKeys(sorted, seed);
  const owner = new Int16Array(bucketCount);
  const backup = new Int16Array(bucketCount);
  const classes = weightClasses(sorted);
  if (classes.inverseWeight.length <= WEIGHT_CLASS_COUNT_MAX) fillByWeightClass(keys, classes, owner, backup);
  else fillGeneral(keys, owner, backup);
  return { bucketCount, members: sorted.map((m) => m.id), weights: sorted.map((m) => m.weight), owner, backup };
}

/**
 * Members grouped by equal weight. Inside a class ln(u) / w orders members exactly as u does
 * (compareRank), so a class's top two need no logarithm. Classes are few in practice: weights
 * are core counts, and a security group runs one appliance model.
 */
interface WeightClasses {
  /** Member indexes, grouped by class, ascending within a class. */
  order: Int32Array;
  /** Class c holds order[start[c] .. start[c + 1]). */
  start: Int32Array;
  inverseWeight: Float64Array;
}

/** Above this many distinct weights the general loop (one pass with bounds) is used. */
const WEIGHT_CLASS_COUNT_MAX = 16;

function weightClasses(sorted: readonly MemberWeight[]): WeightClasses {
  const weights: number[] = [];
  const totals: number[] = [];
  for (const m of sorted) {
    const c = weights.indexOf(m.weight);
    if (c < 0) {
      weights.push(m.weight);
      totals.push(m.weight);
    } else {
      totals[c]! += m.weight;
    }
  }
  // Heaviest class first: its winners set a high bar that lets later classes skip members.
  const byTotal = weights.map((w, c) => ({ w, total: totals[c]! }));
  byTotal.sort((a, b) => b.total - a.total || b.w - a.w);
  for (let c = 0; c < byTotal.length; c++) weights[c] = byTotal[c]!.w;
  const order = new Int32Array(sorted.length);
  const start = new Int32Array(weights.length + 1);
  let next = 0;
  for (let c = 0; c < weights.length; c++) {
    start[c] = next;
    for (let m = 0; m < sorted.length; m++) if (sorted[m]!.weight === weights[c]) order[next++] = m;
  }
  start[weights.length] = next;
  return { order, start, inverseWeight: Float64Array.from(weights, (w) => 1 / w) };
}

/** compareRank for the fill loops: does (key a, u a, index a) rank before (b)? */
function ranksBefore(keyA: number, uA: number, indexA: number, keyB: number, uB: number, indexB: number): boolean {
  if (keyA !== keyB) return keyA > keyB;
  if (uA !== uB) return uA > uB;
  return indexA < indexB;
}

// The fill loops below inline fmix32(mixWord(key, bucket)) from stdx/hash.ts: a call through a
// module namespace (as test runners rewrite imports) costs several times the hash itself, and
// the bucket's half of mixWord is computed once per bucket. Tests check both loops against
// referenceBucketTable, which uses the stdx functions and no shortcuts. Floating-point work
// per (bucket, member) pair is kept to a minimum on purpose: it costs more than the hash.

/**
 * Few distinct weights. Per bucket, class by class (heaviest class first):
 * 1. The top two of the class by u's 52-bit numerator x = hi * 2^20 + (lo >>> 12), compared as
 *    the integer pair (hi, lo >>> 12); lo is hashed only when hi can still place. A member is
 *    also skipped when hi < limit, the smallest hi whose key bound ((hi + 1) / 2^32 - 1) / w
 *    reaches the runner-up key of the classes already done (hiLimit): it cannot place either.
 * 2. Those two are merged into the overall top two by key = ln(u) / w (compareRank's order),
 *    the second only if its bound (u - 1) / w can still beat the overall runner-up.
 * Any member of the final top two is in its class's top two (same w: key follows u), so the
 * result is exact. With one class no logarithm is taken at all.
 */
function fillByWeightClass(keys: MemberKeys, classes: WeightClasses, owner: Int16Array, backup: Int16Array): void {
  const bucketCount = owner.length;
  const classCount = classes.inverseWeight.length;
  const order = classes.order;
  const start = classes.start;
  const classInverseWeight = classes.inverseWeight;
  const n = order.length;
  // Hash states in class order, so the inner loop reads them sequentially.
  const keyHi = new Int32Array(n);
  const keyLo = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    keyHi[i] = keys.hi[order[i]!]!;
    keyLo[i] = keys.lo[order[i]!]!;
  }
  for (let b = 0; b < bucketCount; b++) {
    let kb = Math.imul(b, 0xcc9e2d51);
    kb = Math.imul((kb << 15) | (kb >>> 17), 0x1b873593);
    let top = NO_MEMBER;
    let runner = NO_MEMBER;
    let topKey = -Infinity;
    let runnerKey = -Infinity;
    let topU = 0;
    let runnerU = 0;
    for (let c = 0; c < classCount; c++) {
      const w = classInverseWeight[c]!;
      const limit = runner === NO_MEMBER ? -1 : hiLimit(runnerKey, w);
      // Top two of the class by (hi, lo12) compared as integers, lexicographically.
      let best = NO_MEMBER;
      let second = NO_MEMBER;
      let bestHi = -1;
      let bestLo = -1;
      let secondHi = -1;
      let secondLo = -1;
      let skipBelow = limit;
      const end = start[c + 1]!;
      for (let i = start[c]!; i < end; i++) {
        let h = keyHi[i]! ^ kb;
        h = (h << 13) | (h >>> 19);
        h = (Math.imul(h, 5) + 0xe6546b64) | 0;
        h ^= h >>> 16;
        h = Math.imul(h, 0x85ebca6b);
        h ^= h >>> 13;
        h = Math.imul(h, 0xc2b2ae35);
        h ^= h >>> 16;
        const hi = h >>> 0;
        if (hi < skipBelow) continue; // cannot enter the class's (or the overall) top two
        let l = keyLo[i]! ^ kb;
        l = (l << 13) | (l >>> 19);
        l = (Math.imul(l, 5) + 0xe6546b64) | 0;
        l ^= l >>> 16;
        l = Math.imul(l, 0x85ebca6b);
        l ^= l >>> 13;
        l = Math.imul(l, 0xc2b2ae35);
        l ^= l >>> 16;
        const lo = l >>> 12;
        // Strict '>': on an equal x the lower member index (seen first) keeps its rank.
        if (hi > bestHi || (hi === bestHi && lo > bestLo)) {
          second = best;
          secondHi = bestHi;
          secondLo = bestLo;
          best = i;
          bestHi = hi;
          bestLo = lo;
        } else if (hi > secondHi || lo > secondLo) {
          // hi >= secondHi here, so this is (hi, lo) > (secondHi, secondLo).
          second = i;
          secondHi = hi;
          secondLo = lo;
        } else {
          continue;
        }
        if (secondHi > skipBelow) skipBelow = secondHi;
      }
      if (classCount === 1) {
        top = best === NO_MEMBER ? NO_MEMBER : order[best]!;
        runner = second === NO_MEMBER ? NO_MEMBER : order[second]!;
        break;
      }
      for (let rank = 0; rank < 2; rank++) {
        const i = rank === 0 ? best : second;
        if (i === NO_MEMBER) break;
        const m = order[i]!;
        const u = ((rank === 0 ? bestHi : secondHi) * TWO_POW_20 + (rank === 0 ? bestLo : secondLo) + 0.5) * TWO_POW_MINUS_52;
        // ln(u) <= u - 1, and multiplying by w > 0 keeps the order in floating point too.
        if ((u - 1) * w < runnerKey) break;
        const key = Math.log(u) * w;
        if (top === NO_MEMBER || ranksBefore(key, u, m, topKey, topU, top)) {
          runner = top;
          runnerKey = topKey;
          runnerU = topU;
          top = m;
          topKey = key;
          topU = u;
        } else if (runner === NO_MEMBER || ranksBefore(key, u, m, runnerKey, runnerU, runner)) {
          runner = m;
          runnerKey = key;
          runnerU = u;
        } else {
          break;
        }
      }
    }
    owner[b] = top;
    backup[b] = runner;
  }
}

/**
 * The smallest hi in [0, 2^32] whose key bound ((hi + 1) / 2^32 - 1) * inverseWeight is >=
 * runnerKey (2^32: none is). The bound is non-decreasing in hi in floating point too, so "hi <
 * hiLimit" is exactly "bound < runnerKey". The estimate is off by a step or two at most.
 */
function hiLimit(runnerKey: number, inverseWeight: number): number {
  let hi = Math.floor((1 + runnerKey / inverseWeight) * 4294967296) - 1;
  if (!(hi >= 0)) hi = 0;
  if (hi > 4294967296) hi = 4294967296;
  while (hi > 0 && (hi * TWO_POW_MINUS_32 - 1) * inverseWeight >= runnerKey) hi--;
  while (hi < 4294967296 && ((hi + 1) * TWO_POW_MINUS_32 - 1) * inverseWeight < runnerKey) hi++;
  return hi;
}

/**
 * Many distinct weights: one pass per bucket with key = ln(u) / w. ln(u) <= u - 1 (also in
 * floating point: u - 1 is exact for u >= 1/2, Math.log is faithfully rounded, multiplying by
 * w > 0 keeps the order), so (u - 1) / w bounds the key from above and a member whose bound
 * is below the runner-up's key is skipped without a logarithm; the first test uses hi alone
 * (u < (hi + 1) / 2^32). About ten logarithms per bucket remain for 64 members.
 */
function fillGeneral(keys: MemberKeys, owner: Int16Array, backup: Int16Array): void {
  const n = keys.hi.length;
  const keyHi = keys.hi;
  const keyLo = keys.lo;
  const inverseWeight = keys.inverseWeight;
  const bucketCount = owner.length;
  for (let b = 0; b < bucketCount; b++) {
    let kb = Math.imul(b, 0xcc9e2d51);
    kb = Math.imul((kb << 15) | (kb >>> 17), 0x1b873593);
    let best = NO_MEMBER;
    let second = NO_MEMBER;
    let bestKey = -Infinity;
    let secondKey = -Infinity;
    let bestU = 0;
    let secondU = 0;
    for (let m = 0; m < n; m++) {
      let h = keyHi[m]! ^ kb;
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
      h ^= h >>> 16;
      h = Math.imul(h, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h ^= h >>> 16;
      const hi = h >>> 0;
      const w = inverseWeight[m]!;
      if (((hi + 1) * TWO_POW_MINUS_32 - 1) * w < secondKey) continue;
      let l = keyLo[m]! ^ kb;
      l = (l << 13) | (l >>> 19);
      l = (Math.imul(l, 5) + 0xe6546b64) | 0;
      l ^= l >>> 16;
      l = Math.imul(l, 0x85ebca6b);
      l ^= l >>> 13;
      l = Math.imul(l, 0xc2b2ae35);
      l ^= l >>> 16;
      const u = (hi * TWO_POW_20 + (l >>> 12) + 0.5) * TWO_POW_MINUS_52;
      if ((u - 1) * w < secondKey) continue;
      const key = Math.log(u) * w;
      // Members arrive in index order, so strict comparisons keep the lower index on a full tie.
      if (key > bestKey || (key === bestKey && u > bestU)) {
        second = best;
        secondKey = bestKey;
        secondU = bestU;
        best = m;
        bestKey = key;
        bestU = u;
      } else if (key > secondKey || (key === secondKey && u > secondU)) {
        second = m;
        secondKey = key;
        secondU = u;
      }
    }
    owner[b] = best;
    backup[b] = second;
  }
}

/**
 * Full ranking of members for one bucket, best first (slow path: tests, diagnostics, the
 * API's "why does this flow go there"). Agrees with buildBucketTable: ranking[0] is the owner
 * and ranking[1] the backup.
 */
export function ranking(bucket: number, members: readonly MemberWeight[], seed: number): string[] {
  assert(Number.isInteger(bucket) && bucket >= 0, "bucket must be a non-negative integer");
  const sorted = normalizeMembers(members);
  const keys = memberKeys(sorted, seed);
  const order: RankEntry[] = sorted.map((m, index) => ({ id: m.id, index, u: unitOf(keys, index, bucket), key: 0 }));
  for (const entry of order) entry.key = Math.log(entry.u) * keys.inverseWeight[entry.index]!;
  order.sort(compareRank);
  return order.map((o) => o.id);
}

/**
 * Reference implementation of buildBucketTable: every key evaluated with Math.log, no
 * shortcuts, stdx hash functions. It is the specification the fast loops are tested against
 * (and a diagnostic); it is many times slower.
 */
export function referenceBucketTable(members: readonly MemberWeight[], bucketCount: number, seed: number): BucketTable {
  assert(isPowerOfTwo(bucketCount), "bucket count must be a power of two");
  const sorted = normalizeMembers(members);
  const keys = memberKeys(sorted, seed);
  const owner = new Int16Array(bucketCount);
  const backup = new Int16Array(bucketCount);
  for (let b = 0; b < bucketCount; b++) {
    let best = NO_MEMBER;
    let second = NO_MEMBER;
    let bestKey = 0;
    let secondKey = 0;
    let bestU = 0;
    let secondU = 0;
    for (let m = 0; m < sorted.length; m++) {
      const u = unitOf(keys, m, b);
      const key = Math.log(u) * keys.inverseWeight[m]!;
      if (best === NO_MEMBER || ranksBefore(key, u, m, bestKey, bestU, best)) {
        second = best;
        secondKey = bestKey;
        secondU = bestU;
        best = m;
        bestKey = key;
        bestU = u;
      } else if (second === NO_MEMBER || ranksBefore(key, u, m, secondKey, secondU, second)) {
        second = m;
        secondKey = key;
        secondU = u;
      }
    }
    owner[b] = best;
    backup[b] = second;
  }
  return { bucketCount, members: sorted.map((m) => m.id), weights: sorted.map((m) => m.weight), owner, backup };
}

/** Index of a member in a table, or NO_MEMBER. */
export function memberIndexOf(table: BucketTable, id: string): number {
  return table.members.indexOf(id);
}

/** The member list (with weights) a table was built from. */
export function membersOf(table: BucketTable): MemberWeight[] {
  return table.members.map((id, i) => ({ id, weight: table.weights[i]! }));
}
