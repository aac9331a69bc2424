// Benchmark: rebuilding the bucket table (64 members x 65,536 buckets, target < 100 ms).
//
// Measures weighted rendezvous with equal weights (the usual case: one appliance model per
// security group), with four weight classes, and with 64 distinct weights (the slowest loop),
// and, in the same run, a
// baseline that does the least any table must do: plain modulo assignment, owner =
// members[hash(bucket) % N], backup = the next member. Medians of several runs after a warm-up.

import { buildBucketTable, type MemberWeight } from "../src/distribution/rendezvous.js";
import { fmix32, mixWord } from "../src/stdx/hash.js";

const MEMBER_COUNT = 64;
const BUCKET_COUNT = 65536;
const TARGET_MS = 100;
const SEED = 0x5eed;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timeMs(runs: number, fn: (run: number) => void): number {
  fn(-1); // warm-up: let the JIT compile the loop before timing it
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const start = performance.now();
    fn(r);
    times.push(performance.now() - start);
  }
  return median(times);
}

/** Baseline: unweighted modulo assignment with owner and backup, same output arrays. */
function moduloTable(memberCount: number, bucketCount: number, seed: number): { owner: Int16Array; backup: Int16Array } {
  const owner = new Int16Array(bucketCount);
  const backup = new Int16Array(bucketCount);
  for (let b = 0; b < bucketCount; b++) {
    const o = fmix32(mixWord(seed, b)) % memberCount;
    owner[b] = o;
    backup[b] = memberCount > 1 ? (o + 1) % memberCount : -1;
  }
  return { owner, backup };
}

export async function run(opts: { json: boolean; quick?: boolean }): Promise<Record<string, unknown>> {
  const runs = opts.quick === true ? 3 : 11;
  const equal: MemberWeight[] = [];
  const mixed: MemberWeight[] = [];
  const distinct: MemberWeight[] = [];
  for (let i = 0; i < MEMBER_COUNT; i++) {
    const id = `appliance-${String(i).padStart(3, "0")}`;
    equal.push({ id, weight: 8 });
    mixed.push({ id, weight: [4, 8, 16, 32][i % 4]! });
    distinct.push({ id, weight: 8 + i });
  }
  let sink = 0;
  const rebuildMs = timeMs(runs, (r) => {
    sink += buildBucketTable(equal, BUCKET_COUNT, SEED + r).owner[0]!;
  });
  const rebuildWeightedMs = timeMs(runs, (r) => {
    sink += buildBucketTable(mixed, BUCKET_COUNT, SEED + r).owner[0]!;
  });
  const rebuildDistinctMs = timeMs(runs, (r) => {
    sink += buildBucketTable(distinct, BUCKET_COUNT, SEED + r).owner[0]!;
  });
  const baselineMs = timeMs(runs, (r) => {
    sink += moduloTable(MEMBER_COUNT, BUCKET_COUNT, SEED + r).owner[0]!;
  });
  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    name: "distribution",
    members: MEMBER_COUNT,
    bucketCount: BUCKET_COUNT,
    runs,
    rebuildMs: round(rebuildMs),
    rebuildWeightedMs: round(rebuildWeightedMs),
    rebuildDistinctMs: round(rebuildDistinctMs),
    baselineMs: round(baselineMs),
    ratio: round(rebuildMs / baselineMs),
    ratioWeighted: round(rebuildWeightedMs / baselineMs),
    targetMs: TARGET_MS,
    withinTarget: rebuildMs < TARGET_MS && rebuildWeightedMs < TARGET_MS && rebuildDistinctMs < TARGET_MS,
    node: process.version,
    sink: sink & 1, // keeps the results alive so the work cannot be optimised away
  };
}
