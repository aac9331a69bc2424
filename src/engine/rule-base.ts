// The compiled rule base: first-match policy lookup whose cost does not grow with the rule
// count the way a linear scan does, with no allocation per lookup.
//
// Algorithm: bit vectors per dimension (Lakshman & Stiliadis), chunked and deduplicated.
// The five dimensions are source address, destination address, protocol, "L4 destination"
// (the destination port for TCP/UDP, the ICMP type for ICMP/ICMPv6) and source port. Each
// dimension's value space is cut at every rule boundary into elementary intervals; each
// interval knows the set of rules that match in that dimension, as a bitset in rule order.
// A packet's matching rules are the AND of its five bitsets; the first match is the lowest
// set bit. Folding the ICMP type into the destination-port dimension is sound because a rule
// constrains it only together with an ICMP protocol, which the protocol dimension checks.
//
// Bitsets are stored as 256-rule chunks (8 x 32-bit words). Per dimension, equal chunks are
// stored once in a pool and each interval holds one 16-bit chunk id per 256-rule position.
// Id 0 is the all-zero chunk (the position is skipped after one read) and id 1 the all-ones
// chunk (typically "any": the dimension is left out of that position's AND):
//
//   interval row (dimension d):  [ id p0 | id p1 | ... | id pP-1 ]   P = ceil(rules / 256)
//                                     |
//   chunk pool (dimension d):    id -> 8 words = bits of rules p*256 .. p*256+255
//
//   match: for each position p: if any of the 5 ids is 0, skip; else AND the 8 words of the
//   non-full chunks; the first non-zero word gives the first matching rule.
//
// Finding the interval is a two-level binary search for addresses (a sampled index that stays
// in cache, then a 16-entry block) and a direct table for protocol (256 entries) and ports
// (65536 entries). IPv4 and IPv6 rules are compiled separately, so a packet only looks at
// rules of its own family; a rule whose source and destination both allow a family (e.g.
// "any") is in that family's set.
//
// Bounds: a group holds at most GROUP_RULES_MAX rules (so P <= 64) and at most
// GROUP_RANGES_MAX ranges per dimension (every chunk id is created at a boundary where one of
// its rules toggles, so ids stay below 2 + 2 * GROUP_RANGES_MAX <= 65536). Larger policies are
// split into several groups searched in rule order; the first group with a match wins.
// Memory is therefore at most about 300 bytes per address / port range (a range adds <= 2
// interval rows of <= 64 two-byte ids and <= 2 chunks of 32 bytes), never quadratic in the
// rule count. Worst-case lookup work is P word-ANDs per dimension per group: rules / 32.
//
// hits: the caller counts, `hits[match(view)]++`; match() itself is pure so that "what would
// this packet hit" queries (policy test, replay what-if) do not disturb the counters.

import type { PacketView } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import { mixWord } from "../stdx/hash.js";
import { v4RangeOf, v6Value, networkOf, type Cidr } from "./cidr.js";
import {
  analysePolicy,
  POLICY_LIMITS,
  FAMILY_V4,
  FAMILY_V6,
  PROTOCOL_ANY,
  RULE_ACTION_NAMES,
  type ParsedAddressSet,
  type ParsedRule,
  type PolicySpec,
} from "./policy.js";

export { RuleAction, RULE_ACTION_NAMES } from "./policy.js";

const CHUNK_RULES = 256;
const CHUNK_WORDS = 8;
const CHUNK_SHIFT = 8; // log2(CHUNK_RULES)
/** Pool ids reserved in every dimension: the all-zero chunk and the all-ones chunk. */
const EMPTY_ID = 0;
const FULL_ID = 1;
const FULL_POOL: Uint32Array = new Uint32Array(CHUNK_WORDS).fill(0xffffffff);
const GROUP_RULES_MAX = 16_384;
const GROUP_RANGES_MAX = 32_767;
const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;

const DOMAIN_V4 = 1n << 32n;
const DOMAIN_V6 = 1n << 128n;
const DOMAIN_PROTOCOL = 256n;
const DOMAIN_PORT = 65536n;

interface GroupLimits {
  rulesMax: number;
  rangesMax: number;
}

/** An interval boundary during compilation: a number, or for IPv6 33 hex digits (sortable as text). */
type PointKey = number | string;

/** One dimension of one group: interval boundaries, a row of chunk ids per interval, the chunk pool. */
interface Dimension {
  /** Sorted interval starts; the first is 0. */
  boundKeys: PointKey[];
  ids: Uint16Array;
  pool: Uint32Array;
}

/**
 * A run of consecutive rules of one family (in rule order), compiled as one bit-vector
 * classifier. Fields are typed arrays only, read by match() without allocation.
 */
class RuleGroup {
  constructor(
    /** Local rule position -> global rule index (increasing). */
    readonly ruleIndex: Int32Array,
    /** Number of 256-rule positions in each row. */
    readonly positions: number,
    readonly srcBounds: AddressBounds,
    readonly srcIds: Uint16Array,
    readonly srcPool: Uint32Array,
    readonly dstBounds: AddressBounds,
    readonly dstIds: Uint16Array,
    readonly dstPool: Uint32Array,
    /** Value -> interval index, for the small dimensions. */
    readonly protoMap: Uint16Array,
    readonly protoIds: Uint16Array,
    readonly protoPool: Uint32Array,
    readonly l4DstMap: Uint16Array,
    readonly l4DstIds: Uint16Array,
    readonly l4DstPool: Uint32Array,
    readonly l4SrcMap: Uint16Array,
    readonly l4SrcIds: Uint16Array,
    readonly l4SrcPool: Uint32Array,
  ) {}

  get memoryBytes(): number {
    let total = this.ruleIndex.byteLength + this.srcBounds.byteLength + this.dstBounds.byteLength;
    for (const array of [
      this.srcIds,
      this.srcPool,
      this.dstIds,
      this.dstPool,
      this.protoMap,
      this.protoIds,
      this.protoPool,
      this.l4DstMap,
      this.l4DstIds,
      this.l4DstPool,
      this.l4SrcMap,
      this.l4SrcIds,
      this.l4SrcPool,
    ]) {
      total += array.byteLength;
    }
    return total;
  }
}

/** Per-family statistics, for `policy show` and benchmarks. */
export interface RuleBaseStats {
  rules: number;
  rules4: number;
  rules6: number;
  groups4: number;
  groups6: number;
  memoryBytes: number;
}

export class RuleBase {
  /** The validated policy this was compiled from (for display). */
  readonly spec: PolicySpec;
  readonly ruleCount: number;
  /** Per-rule hit counters; the caller increments hits[i] (match() does not). */
  readonly hits: Float64Array;
  private readonly names: string[];
  private readonly actions: Uint8Array;
  private readonly logs: Uint8Array;
  private readonly groups4: RuleGroup[];
  private readonly groups6: RuleGroup[];
  private readonly rules4: number;
  private readonly rules6: number;

  /** Use compilePolicy(). */
  constructor(spec: PolicySpec, rules: ParsedRule[], limits: GroupLimits) {
    this.spec = spec;
    this.ruleCount = rules.length;
    this.hits = new Float64Array(rules.length);
    this.names = rules.map((rule) => rule.name);
    this.actions = Uint8Array.from(rules, (rule) => rule.action);
    this.logs = Uint8Array.from(rules, (rule) => (rule.log ? 1 : 0));
    const v4 = rules.filter((rule) => (rule.families & FAMILY_V4) !== 0);
    const v6 = rules.filter((rule) => (rule.families & FAMILY_V6) !== 0);
    this.rules4 = v4.length;
    this.rules6 = v6.length;
    this.groups4 = splitGroups(v4, limits).map((members) => buildGroup(members, 4));
    this.groups6 = splitGroups(v6, limits).map((members) => buildGroup(members, 6));
  }

  nameOf(rule: number): string {
    assert(rule >= 0 && rule < this.ruleCount, "rule index out of range");
    return this.names[rule]!;
  }

  /** RuleAction of a rule: 0 accept, 1 drop, 2 reject. */
  actionOf(rule: number): number {
    return this.actions[rule]!;
  }

  actionNameOf(rule: number): string {
    return RULE_ACTION_NAMES[this.actions[rule]!]!;
  }

  logOf(rule: number): boolean {
    return this.logs[rule] === 1;
  }

  stats(): RuleBaseStats {
    let memoryBytes = this.hits.byteLength + this.actions.byteLength + this.logs.byteLength;
    for (const group of this.groups4) memoryBytes += group.memoryBytes;
    for (const group of this.groups6) memoryBytes += group.memoryBytes;
    return {
      rules: this.ruleCount,
      rules4: this.rules4,
      rules6: this.rules6,
      groups4: this.groups4.length,
      groups6: this.groups6.length,
      memoryBytes,
    };
  }

  /**
   * Index of the first rule matching the packet, or -1 (no rule: default drop). Reads the
   * view's ipVersion, addresses, protocol, ports and ICMP type. Non-IP views match nothing.
   * Allocates nothing.
   */
  match(view: PacketView): number {
    const protocol = view.protocol;
    const l4Dst = protocol === PROTO_ICMP || protocol === PROTO_ICMPV6 ? view.icmpType : view.dstPort;
    const l4Src = view.srcPort;
    if (view.ipVersion === 4) {
      const groups = this.groups4;
      for (let g = 0; g < groups.length; g++) {
        const group = groups[g]!;
        const srcRow = search4(group.srcBounds, view.src4 >>> 0);
        const dstRow = search4(group.dstBounds, view.dst4 >>> 0);
        const found = scan(group, srcRow, dstRow, protocol, l4Dst, l4Src);
        if (found >= 0) return found;
      }
      return -1;
    }
    if (view.ipVersion === 6) {
      const groups = this.groups6;
      const buf = view.buf;
      for (let g = 0; g < groups.length; g++) {
        const group = groups[g]!;
        const srcRow = search6(group.srcBounds, buf, view.srcAddrOffset);
        const dstRow = search6(group.dstBounds, buf, view.dstAddrOffset);
        const found = scan(group, srcRow, dstRow, protocol, l4Dst, l4Src);
        if (found >= 0) return found;
      }
      return -1;
    }
    return -1;
  }
}

/** Group bounds; tests lower them to exercise multi-group policies with few rules. */
export interface CompileOptions {
  /** Rules per group, at most 16384. */
  groupRulesMax?: number;
  /** Ranges per dimension per group, at most 32767. */
  groupRangesMax?: number;
}

/** Validates (again: the input may come straight from an API body) and compiles a policy. */
export function compilePolicy(spec: PolicySpec, options: CompileOptions = {}): RuleBase {
  const analysed = analysePolicy(spec);
  const limits = {
    rulesMax: options.groupRulesMax ?? GROUP_RULES_MAX,
    rangesMax: options.groupRangesMax ?? GROUP_RANGES_MAX,
  };
  assert(limits.rulesMax > 0 && limits.rulesMax <= GROUP_RULES_MAX, "groupRulesMax out of range");
  assert(limits.rangesMax >= POLICY_LIMITS.portRangesPerFieldMax && limits.rangesMax <= GROUP_RANGES_MAX, "groupRangesMax out of range");
  return new RuleBase(analysed.spec, analysed.rules, limits);
}

// ---- lookup --------------------------------------------------------------------------------

/**
 * Interval starts of an address dimension, searched in two levels: `top` holds every
 * SAMPLE_STRIDE-th start, small enough to stay in cache, and picks the block of `bounds` to
 * finish in. A plain binary search over 20,000 starts misses the cache at nearly every step.
 */
class AddressBounds {
  constructor(
    /** IPv4: one word per interval start; IPv6: four words (most significant first). */
    readonly bounds: Uint32Array,
    readonly count: number,
    readonly top: Uint32Array,
    readonly topCount: number,
  ) {}

  get byteLength(): number {
    return this.bounds.byteLength + this.top.byteLength;
  }
}

const SAMPLE_SHIFT = 4;
const SAMPLE_STRIDE = 1 << SAMPLE_SHIFT;

function sampleBounds(bounds: Uint32Array, count: number, words: number): AddressBounds {
  const topCount = Math.ceil(count / SAMPLE_STRIDE);
  const top = new Uint32Array(topCount * words);
  for (let j = 0; j < topCount; j++) top.set(bounds.subarray(j * SAMPLE_STRIDE * words, (j * SAMPLE_STRIDE + 1) * words), j * words);
  return new AddressBounds(bounds, count, top, topCount);
}

/** Index of the last interval whose start is <= key (the first start is 0, so always >= 0). */
function search4(index: AddressBounds, key: number): number {
  const top = index.top;
  let lo = 0;
  let hi = index.topCount - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (top[mid]! <= key) lo = mid;
    else hi = mid - 1;
  }
  const bounds = index.bounds;
  lo = lo << SAMPLE_SHIFT;
  hi = Math.min(lo + SAMPLE_STRIDE - 1, index.count - 1);
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (bounds[mid]! <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** True when the 4-word start at array[at..at+3] is <= (k0, k1, k2, k3). */
function lessOrEqual6(array: Uint32Array, at: number, k0: number, k1: number, k2: number, k3: number): boolean {
  const b0 = array[at]!;
  if (b0 !== k0) return b0 < k0;
  const b1 = array[at + 1]!;
  if (b1 !== k1) return b1 < k1;
  const b2 = array[at + 2]!;
  if (b2 !== k2) return b2 < k2;
  return array[at + 3]! <= k3;
}

function search6(index: AddressBounds, buf: Uint8Array, offset: number): number {
  const k0 = ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
  const k1 = ((buf[offset + 4]! << 24) | (buf[offset + 5]! << 16) | (buf[offset + 6]! << 8) | buf[offset + 7]!) >>> 0;
  const k2 = ((buf[offset + 8]! << 24) | (buf[offset + 9]! << 16) | (buf[offset + 10]! << 8) | buf[offset + 11]!) >>> 0;
  const k3 = ((buf[offset + 12]! << 24) | (buf[offset + 13]! << 16) | (buf[offset + 14]! << 8) | buf[offset + 15]!) >>> 0;
  const top = index.top;
  let lo = 0;
  let hi = index.topCount - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (lessOrEqual6(top, mid * 4, k0, k1, k2, k3)) lo = mid;
    else hi = mid - 1;
  }
  const bounds = index.bounds;
  lo = lo << SAMPLE_SHIFT;
  hi = Math.min(lo + SAMPLE_STRIDE - 1, index.count - 1);
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (lessOrEqual6(bounds, mid * 4, k0, k1, k2, k3)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * First matching rule of a group for the given intervals / values, or -1. Dimensions whose
 * chunk is all-ones (FULL_ID: every rule of the position matches there, typically "any")
 * are left out of the word loop, so wildcards cost no reads.
 */
function scan(group: RuleGroup, srcInterval: number, dstInterval: number, protocol: number, l4Dst: number, l4Src: number): number {
  const positions = group.positions;
  const srcRow = srcInterval * positions;
  const dstRow = dstInterval * positions;
  const protoRow = group.protoMap[protocol & 255]! * positions;
  const l4DstRow = group.l4DstMap[l4Dst & 0xffff]! * positions;
  const l4SrcRow = group.l4SrcMap[l4Src & 0xffff]! * positions;
  const srcIds = group.srcIds;
  const dstIds = group.dstIds;
  const protoIds = group.protoIds;
  const l4DstIds = group.l4DstIds;
  const l4SrcIds = group.l4SrcIds;
  for (let p = 0; p < positions; p++) {
    // Most selective dimensions first: an all-zero chunk (id 0) rules out 256 rules at once.
    const d = dstIds[dstRow + p]!;
    if (d === EMPTY_ID) continue;
    const s = srcIds[srcRow + p]!;
    if (s === EMPTY_ID) continue;
    const l = l4DstIds[l4DstRow + p]!;
    if (l === EMPTY_ID) continue;
    const r = protoIds[protoRow + p]!;
    if (r === EMPTY_ID) continue;
    const q = l4SrcIds[l4SrcRow + p]!;
    if (q === EMPTY_ID) continue;
    // Gather the dimensions that constrain this position into (a..e), k of them.
    let k = 0;
    let a = FULL_POOL;
    let aOff = 0;
    let b = FULL_POOL;
    let bOff = 0;
    let c = FULL_POOL;
    let cOff = 0;
    let e = FULL_POOL;
    let eOff = 0;
    let f = FULL_POOL;
    let fOff = 0;
    if (d !== FULL_ID) {
      a = group.dstPool;
      aOff = d * CHUNK_WORDS;
      k = 1;
    }
    if (s !== FULL_ID) {
      if (k === 0) {
        a = group.srcPool;
        aOff = s * CHUNK_WORDS;
      } else {
        b = group.srcPool;
        bOff = s * CHUNK_WORDS;
      }
      k++;
    }
    if (l !== FULL_ID) {
      if (k === 0) {
        a = group.l4DstPool;
        aOff = l * CHUNK_WORDS;
      } else if (k === 1) {
        b = group.l4DstPool;
        bOff = l * CHUNK_WORDS;
      } else {
        c = group.l4DstPool;
        cOff = l * CHUNK_WORDS;
      }
      k++;
    }
    if (r !== FULL_ID) {
      // Past the third slot the order no longer matters for speed: use the fixed slots.
      e = group.protoPool;
      eOff = r * CHUNK_WORDS;
      k = Math.max(k, 4);
    }
    if (q !== FULL_ID) {
      f = group.l4SrcPool;
      fOff = q * CHUNK_WORDS;
      k = 5;
    }
    if (k === 0) return group.ruleIndex[p << CHUNK_SHIFT]!; // every rule of the position matches
    // Branch-free AND of the 8 words (unused slots read the all-ones chunk), then one test:
    // the common outcome, "no rule of this position", costs no per-word branches.
    let w0 = a[aOff]! & b[bOff]!;
    let w1 = a[aOff + 1]! & b[bOff + 1]!;
    let w2 = a[aOff + 2]! & b[bOff + 2]!;
    let w3 = a[aOff + 3]! & b[bOff + 3]!;
    let w4 = a[aOff + 4]! & b[bOff + 4]!;
    let w5 = a[aOff + 5]! & b[bOff + 5]!;
    let w6 = a[aOff + 6]! & b[bOff + 6]!;
    let w7 = a[aOff + 7]! & b[bOff + 7]!;
    if (k > 2) {
      w0 &= c[cOff]! & e[eOff]! & f[fOff]!;
      w1 &= c[cOff + 1]! & e[eOff + 1]! & f[fOff + 1]!;
      w2 &= c[cOff + 2]! & e[eOff + 2]! & f[fOff + 2]!;
      w3 &= c[cOff + 3]! & e[eOff + 3]! & f[fOff + 3]!;
      w4 &= c[cOff + 4]! & e[eOff + 4]! & f[fOff + 4]!;
      w5 &= c[cOff + 5]! & e[eOff + 5]! & f[fOff + 5]!;
      w6 &= c[cOff + 6]! & e[eOff + 6]! & f[fOff + 6]!;
      w7 &= c[cOff + 7]! & e[eOff + 7]! & f[fOff + 7]!;
    }
    if ((w0 | w1 | w2 | w3 | w4 | w5 | w6 | w7) === 0) continue;
    let base = p << CHUNK_SHIFT;
    let bits = w0;
    if (bits === 0) {
      base += 32;
      bits = w1;
      if (bits === 0) {
        base += 32;
        bits = w2;
        if (bits === 0) {
          base += 32;
          bits = w3;
          if (bits === 0) {
            base += 32;
            bits = w4;
            if (bits === 0) {
              base += 32;
              bits = w5;
              if (bits === 0) {
                base += 32;
                bits = w6;
                if (bits === 0) {
                  base += 32;
                  bits = w7;
                }
              }
            }
          }
        }
      }
    }
    return group.ruleIndex[base + 31 - Math.clz32(bits & -bits)]!;
  }
  return -1;
}

// ---- compilation ---------------------------------------------------------------------------

/** Ranges of one rule in one dimension: flattened [lo, end) pairs, sorted and merged. */
type Ranges = bigint[];

interface RuleRanges {
  rule: ParsedRule;
  src: Ranges;
  dst: Ranges;
  proto: Ranges;
  l4Dst: Ranges;
  l4Src: Ranges;
}

function mergeRanges(pairs: Array<[bigint, bigint]>): Ranges {
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Ranges = [];
  for (const [lo, end] of pairs) {
    const last = out.length - 1;
    if (last > 0 && lo <= out[last]!) {
      if (end > out[last]!) out[last] = end;
    } else {
      out.push(lo, end);
    }
  }
  return out;
}

function addressRanges(set: ParsedAddressSet, family: 4 | 6): Ranges {
  if (set.any) return family === 4 ? [0n, DOMAIN_V4] : [0n, DOMAIN_V6];
  const pairs: Array<[bigint, bigint]> = [];
  const cidrs: Cidr[] = family === 4 ? set.v4 : set.v6;
  for (const cidr of cidrs) {
    if (family === 4) {
      const [lo, hi] = v4RangeOf(cidr);
      pairs.push([BigInt(lo), BigInt(hi) + 1n]);
    } else {
      const lo = v6Value(networkOf(cidr));
      pairs.push([lo, lo + (1n << BigInt(128 - cidr.length))]);
    }
  }
  return mergeRanges(pairs);
}

function inclusiveRanges(values: number[] | null, domain: bigint): Ranges {
  if (values === null) return [0n, domain];
  const pairs: Array<[bigint, bigint]> = [];
  for (let i = 0; i < values.length; i += 2) pairs.push([BigInt(values[i]!), BigInt(values[i + 1]!) + 1n]);
  return mergeRanges(pairs);
}

function rangesOf(rule: ParsedRule, family: 4 | 6): RuleRanges {
  let l4Dst: Ranges;
  if (rule.icmpTypes !== null) l4Dst = inclusiveRanges(rule.icmpTypes.flatMap((type) => [type, type]), DOMAIN_PORT);
  else l4Dst = inclusiveRanges(rule.ports, DOMAIN_PORT);
  return {
    rule,
    src: addressRanges(rule.source, family),
    dst: addressRanges(rule.destination, family),
    proto: rule.protocol === PROTOCOL_ANY ? [0n, DOMAIN_PROTOCOL] : [BigInt(rule.protocol), BigInt(rule.protocol) + 1n],
    l4Dst,
    l4Src: inclusiveRanges(rule.sourcePorts, DOMAIN_PORT),
  };
}

/** Cuts a family's rules (in order) into groups that respect the per-group bounds. */
function splitGroups(rules: ParsedRule[], limits: GroupLimits): Array<{ rules: ParsedRule[] }> {
  const groups: Array<{ rules: ParsedRule[] }> = [];
  let current: ParsedRule[] = [];
  const totals = [0, 0, 0, 0, 0];
  for (const rule of rules) {
    const counts = rangeCounts(rule, limits.rangesMax);
    const overflow = current.length === limits.rulesMax || counts.some((count, d) => totals[d]! + count > limits.rangesMax);
    if (overflow && current.length > 0) {
      groups.push({ rules: current });
      current = [];
      totals.fill(0);
    }
    current.push(rule);
    counts.forEach((count, d) => (totals[d] = totals[d]! + count));
  }
  if (current.length > 0) groups.push({ rules: current });
  return groups;
}

/** Upper bounds on the ranges a rule contributes per dimension (either family, before merging). */
function rangeCounts(rule: ParsedRule, rangesMax: number): number[] {
  const addresses = (set: ParsedAddressSet): number => (set.any ? 1 : set.v4.length + set.v6.length);
  const counts = [
    addresses(rule.source),
    addresses(rule.destination),
    1,
    rule.icmpTypes !== null ? rule.icmpTypes.length : rule.ports !== null ? rule.ports.length / 2 : 1,
    rule.sourcePorts !== null ? rule.sourcePorts.length / 2 : 1,
  ];
  // Policy limits (10,000 addresses, 1,024 port ranges per field) keep one rule within a group.
  for (const count of counts) assert(count <= rangesMax, "one rule exceeds the per-group range bound");
  return counts;
}

function buildGroup(group: { rules: ParsedRule[] }, family: 4 | 6): RuleGroup {
  const members = group.rules.map((rule) => rangesOf(rule, family));
  const count = members.length;
  assert(count > 0 && count <= GROUP_RULES_MAX, "group size out of bounds");
  const positions = Math.ceil(count / CHUNK_RULES);
  const ruleIndex = Int32Array.from(members, (member) => member.rule.index);
  for (let i = 1; i < count; i++) assert(ruleIndex[i - 1]! < ruleIndex[i]!, "group rules out of order");

  const addressDomain = family === 4 ? DOMAIN_V4 : DOMAIN_V6;
  const src = buildDimension(members.map((m) => m.src), positions, addressDomain);
  const dst = buildDimension(members.map((m) => m.dst), positions, addressDomain);
  const proto = buildDimension(members.map((m) => m.proto), positions, DOMAIN_PROTOCOL);
  const l4Dst = buildDimension(members.map((m) => m.l4Dst), positions, DOMAIN_PORT);
  const l4Src = buildDimension(members.map((m) => m.l4Src), positions, DOMAIN_PORT);
  const boundsOf = (dim: Dimension): AddressBounds =>
    family === 4 ? sampleBounds(v4Bounds(dim.boundKeys), dim.boundKeys.length, 1) : sampleBounds(v6Bounds(dim.boundKeys), dim.boundKeys.length, 4);
  return new RuleGroup(
    ruleIndex,
    positions,
    boundsOf(src),
    src.ids,
    src.pool,
    boundsOf(dst),
    dst.ids,
    dst.pool,
    directMap(proto.boundKeys, DOMAIN_PROTOCOL),
    proto.ids,
    proto.pool,
    directMap(l4Dst.boundKeys, DOMAIN_PORT),
    l4Dst.ids,
    l4Dst.pool,
    directMap(l4Src.boundKeys, DOMAIN_PORT),
    l4Src.ids,
    l4Src.pool,
  );
}

function v4Bounds(bounds: PointKey[]): Uint32Array {
  return Uint32Array.from(bounds as number[]);
}

function v6Bounds(bounds: PointKey[]): Uint32Array {
  const out = new Uint32Array(bounds.length * 4);
  for (let i = 0; i < bounds.length; i++) {
    const hex = (bounds[i] as string).slice(1); // 32 digits: the 33rd (2^128) is never a start
    for (let w = 0; w < 4; w++) out[i * 4 + w] = parseInt(hex.slice(w * 8, w * 8 + 8), 16);
  }
  return out;
}

function directMap(bounds: PointKey[], domain: bigint): Uint16Array {
  const map = new Uint16Array(Number(domain));
  for (let i = 0; i < bounds.length; i++) {
    const start = bounds[i] as number;
    const end = i + 1 < bounds.length ? (bounds[i + 1] as number) : Number(domain);
    map.fill(i, start, end);
  }
  return map;
}

/**
 * Builds one dimension by a sweep over the interval boundaries. Each rule's ranges are
 * merged (disjoint, non-adjacent), so at any boundary a rule either enters or leaves: its
 * bit toggles. Only the chunks of toggled rules can change, so the work per boundary is
 * proportional to its events, plus copying one row of ids.
 */
function buildDimension(ruleRanges: Ranges[], positions: number, domainEnd: bigint): Dimension {
  // Points are sorted and ranked as numbers (domains up to 2^32) or fixed-width hex strings
  // (IPv6): V8 hashes bigint Map keys poorly, which made large policies compile slowly.
  const keyOf = domainEnd <= 1n << 53n ? (x: bigint): PointKey => Number(x) : (x: bigint): PointKey => x.toString(16).padStart(33, "0");
  const domainEndKey = keyOf(domainEnd);
  const points: PointKey[] = [keyOf(0n)];
  let eventCount = 0;
  const rangeKeys: PointKey[][] = ruleRanges.map((ranges) => {
    const keys = ranges.map(keyOf);
    for (const key of keys) if (key !== domainEndKey) points.push(key);
    eventCount += keys.length;
    return keys;
  });
  // The domain end is never an interval start (it was left out above): the last interval runs to it.
  const sorted: ArrayLike<PointKey> = typeof points[0] === "number" ? Float64Array.from(points as number[]).sort() : points.sort();
  const boundKeys: PointKey[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const point = sorted[i]!;
    if (boundKeys.length === 0 || boundKeys[boundKeys.length - 1] !== point) boundKeys.push(point);
  }
  const rankOf = new Map<PointKey, number>();
  boundKeys.forEach((bound, rank) => rankOf.set(bound, rank));
  const intervals = boundKeys.length;

  // Events in compressed rows by rank: eventRules[eventStart[r] .. eventStart[r + 1]).
  const eventStart = new Int32Array(intervals + 1);
  const rankOfEvent = new Int32Array(eventCount);
  const ruleOfEvent = new Int32Array(eventCount);
  let e = 0;
  rangeKeys.forEach((keys, rule) => {
    for (let i = 0; i < keys.length; i++) {
      const rank = rankOf.get(keys[i]!);
      if (rank === undefined) continue; // a range ending at the domain end
      rankOfEvent[e] = rank;
      ruleOfEvent[e] = rule;
      eventStart[rank + 1] += 1;
      e++;
    }
  });
  for (let r = 0; r < intervals; r++) eventStart[r + 1] = eventStart[r + 1]! + eventStart[r]!;
  const eventRules = new Int32Array(e);
  const fill = eventStart.slice(0, intervals);
  for (let i = 0; i < e; i++) {
    const rank = rankOfEvent[i]!;
    eventRules[fill[rank]!] = ruleOfEvent[i]!;
    fill[rank] += 1;
  }

  const bits = new Uint32Array(positions * CHUNK_WORDS);
  const current = new Uint16Array(positions);
  const dirty = new Uint8Array(positions);
  const dirtyList: number[] = [];
  const ids = new Uint16Array(intervals * positions);
  // Ids 0 and 1 are the empty and the full chunk. Every other id is created at a boundary
  // where one of its rules toggled, so ids <= 2 + events < 65536 (the group range bound).
  const pool: number[] = [...new Array<number>(CHUNK_WORDS).fill(0), ...new Array<number>(CHUNK_WORDS).fill(0xffffffff)];
  // Equal chunks share one id, whatever their position: hash of the words -> candidate ids.
  const chunkIds = new Map<number, number[]>();
  for (let r = 0; r < intervals; r++) {
    for (let i = eventStart[r]!; i < eventStart[r + 1]!; i++) {
      const rule = eventRules[i]!;
      bits[rule >>> 5] = bits[rule >>> 5]! ^ (1 << (rule & 31));
      const position = rule >>> CHUNK_SHIFT;
      if (dirty[position] === 0) {
        dirty[position] = 1;
        dirtyList.push(position);
      }
    }
    for (const position of dirtyList) {
      dirty[position] = 0;
      const base = position * CHUNK_WORDS;
      let empty = true;
      let full = true;
      for (let w = 0; w < CHUNK_WORDS; w++) {
        if (bits[base + w] !== 0) empty = false;
        if (bits[base + w] !== 0xffffffff) full = false;
      }
      if (empty || full) {
        current[position] = empty ? EMPTY_ID : FULL_ID;
        continue;
      }
      let hash = 0;
      for (let w = 0; w < CHUNK_WORDS; w++) hash = mixWord(hash, bits[base + w]!);
      let chain = chunkIds.get(hash);
      if (chain === undefined) {
        chain = [];
        chunkIds.set(hash, chain);
      }
      let id = -1;
      for (const candidate of chain) {
        let same = true;
        for (let w = 0; w < CHUNK_WORDS && same; w++) same = pool[candidate * CHUNK_WORDS + w] === bits[base + w];
        if (same) {
          id = candidate;
          break;
        }
      }
      if (id < 0) {
        id = pool.length / CHUNK_WORDS;
        assert(id <= 0xffff, "chunk ids exceed 16 bits (group range bound broken)");
        for (let w = 0; w < CHUNK_WORDS; w++) pool.push(bits[base + w]!);
        chain.push(id);
      }
      current[position] = id;
    }
    dirtyList.length = 0;
    ids.set(current, r * positions);
  }
  return { boundKeys, ids, pool: Uint32Array.from(pool) };
}
