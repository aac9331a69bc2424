// Packet -> bucket: the symmetric flow hash (packet/flow-hash.ts) reduced to a bucket index,
// and a fragment tracker so that every fragment of an IP datagram reaches the bucket of its
// first fragment.
//
// Why fragments need a tracker: only the first fragment of a datagram (offset 0, more
// fragments set) carries the TCP/UDP header, hence the ports. Later fragments carry only
// addresses, protocol and the IP identification, so hashing them with ports is impossible and
// hashing them without ports would send them to another bucket (usually another member) than
// the first fragment, whose flow hash includes the ports. The tracker remembers, per
// (addresses, protocol, IP id), the flow hash of the first fragment; later fragments look it
// up. When a later fragment arrives first (reordering) or its entry is gone, it falls back to
// the addresses-only hash (ports = 0), counted in stats.fragmentMisses: that bucket is right
// for protocols without ports, and for others the owner that gets it must correct or drop it.
//
// Invariants kept:
// - bucketOf(hash, B) = hash & (B - 1) with B a power of two.
// - The tracker is sized once: capacity entries in typed arrays, replaced oldest-first (a
//   ring), never grown; the per-packet path allocates nothing.
// - An entry older than timeoutMs (default 30 s, like IPv4 reassembly) is never used.
//
//   entries (ring, cursor = next to reuse = oldest)     index (chained hash over the key)
//   +----+----+----+----+----+                           heads[h] -> entry -> next -> ... -> -1
//   | e0 | e1 | e2 | e3 | .. |  key words, flowHash,
//   +----+----+----+----+----+  bornMs, next, home

import { assert } from "../stdx/assert.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import { readU32 } from "../packet/addr.js";
import { flowHash4, flowHashOfView, flowHashRaw } from "../packet/flow-hash.js";
import type { PacketView } from "../packet/view.js";
import { isPowerOfTwo } from "./rendezvous.js";

/** Bucket of a 32-bit flow hash. bucketCount must be a power of two. */
export function bucketOf(hash: number, bucketCount: number): number {
  return hash & (bucketCount - 1);
}

/** Bucket of a parsed packet, ports included, fragments not considered (see FragmentTracker). */
export function bucketOfView(seed: number, view: PacketView, bucketCount: number): number {
  return flowHashOfView(seed, view) & (bucketCount - 1);
}

/** Addresses-only flow hash (ports = 0): the fallback for a non-first fragment without an entry. */
export function addressHashOfView(seed: number, view: PacketView): number {
  if (view.ipVersion === 4) return flowHash4(seed, view.protocol, view.src4, view.dst4, 0, 0);
  return flowHashRaw(seed, view.protocol, view.buf, view.srcAddrOffset, view.dstAddrOffset, 16, 0, 0, false);
}

export const FRAGMENT_CAPACITY_DEFAULT = 8192;
export const FRAGMENT_CAPACITY_MAX = 1 << 22;
/** How long a first fragment's entry serves later fragments (IPv4 reassembly uses 15-30 s). */
export const FRAGMENT_TIMEOUT_MS_DEFAULT = 30_000;

export interface FragmentTrackerOptions {
  /** Cluster seed of the flow hash. */
  seed: number;
  /** Power of two; may change later with setBucketCount. */
  bucketCount: number;
  capacity?: number;
  timeoutMs?: number;
}

/** Counters of the tracker; plain numeric fields, mutated in place. */
export class FragmentStats {
  /** First fragments seen (offset 0, more fragments set): remembered. */
  firstFragments = 0;
  /** Later fragments whose first fragment was remembered. */
  fragmentHits = 0;
  /** Later fragments with no live entry: sent to the addresses-only bucket. */
  fragmentMisses = 0;
  /** Live (unexpired) entries overwritten because the tracker was full. */
  replaced = 0;
}

// Key layout per entry, in 32-bit words: source address (4 words, IPv4 in word 0), destination
// address (4 words), meta = ipVersion << 8 | protocol, fragment id.
const KEY_WORDS = 10;
const META = 8;
const ID = 9;
const NONE = -1;

export class FragmentTracker {
  readonly capacity: number;
  readonly timeoutMs: number;
  readonly stats = new FragmentStats();
  private readonly seed: number;
  private bucketMask: number;
  private readonly keys: Uint32Array;
  private readonly flowHashes: Uint32Array;
  private readonly bornMs: Float64Array;
  /** Next entry in the same index chain, or NONE. */
  private readonly next: Int32Array;
  /** Index slot an entry is chained from, or NONE when the entry is free. */
  private readonly home: Int32Array;
  private readonly heads: Int32Array;
  private readonly indexMask: number;
  /** Ring position of the next entry to (re)use: always the oldest insertion. */
  private cursor = 0;

  constructor(options: FragmentTrackerOptions) {
    const capacity = options.capacity ?? FRAGMENT_CAPACITY_DEFAULT;
    const timeoutMs = options.timeoutMs ?? FRAGMENT_TIMEOUT_MS_DEFAULT;
    assert(Number.isInteger(capacity) && capacity >= 1 && capacity <= FRAGMENT_CAPACITY_MAX, "fragment tracker capacity out of range");
    assert(Number.isFinite(timeoutMs) && timeoutMs > 0, "fragment timeout must be positive");
    assert(isPowerOfTwo(options.bucketCount), "bucket count must be a power of two");
    this.capacity = capacity;
    this.timeoutMs = timeoutMs;
    this.seed = options.seed | 0;
    this.bucketMask = options.bucketCount - 1;
    this.keys = new Uint32Array(capacity * KEY_WORDS);
    this.flowHashes = new Uint32Array(capacity);
    this.bornMs = new Float64Array(capacity);
    this.next = new Int32Array(capacity).fill(NONE);
    this.home = new Int32Array(capacity).fill(NONE);
    // Index at least twice the capacity: chains stay about one entry long.
    let indexSize = 1;
    while (indexSize < capacity * 2) indexSize *= 2;
    this.heads = new Int32Array(indexSize).fill(NONE);
    this.indexMask = indexSize - 1;
  }

  /** Follows a bucket-count change (entries keep full flow hashes, so they stay valid). */
  setBucketCount(bucketCount: number): void {
    assert(isPowerOfTwo(bucketCount), "bucket count must be a power of two");
    this.bucketMask = bucketCount - 1;
  }

  get bucketCount(): number {
    return this.bucketMask + 1;
  }

  /** Number of entries that are still live at nowMs (slow: scans the table; for tests and metrics). */
  liveCount(nowMs: number): number {
    let live = 0;
    for (let e = 0; e < this.capacity; e++) if (this.home[e] !== NONE && nowMs - this.bornMs[e]! < this.timeoutMs) live++;
    return live;
  }

  /** Bucket of any IP packet, fragments included. See the file header for the cases. */
  bucketOfPacket(view: PacketView, nowMs: number): number {
    return this.flowHashOfPacket(view, nowMs) & this.bucketMask;
  }

  /**
   * Flow hash of any IP packet, fragments included: unfragmented (or an atomic fragment) ->
   * hash with ports; first fragment -> hash with ports, remembered; later fragment -> the
   * remembered hash, else the addresses-only hash (counted as a miss).
   */
  flowHashOfPacket(view: PacketView, nowMs: number): number {
    assert(view.ipVersion === 4 || view.ipVersion === 6, "flowHashOfPacket needs a parsed IP packet");
    if (!view.isFragment) return flowHashOfView(this.seed, view);
    if (view.fragmentOffset === 0) {
      const hash = flowHashOfView(this.seed, view);
      // An atomic fragment (offset 0, no more fragments) is a whole datagram: nothing follows.
      if (view.moreFragments) {
        this.stats.firstFragments++;
        this.remember(view, hash, nowMs);
      }
      return hash;
    }
    const entry = this.find(view, this.slotOf(view), nowMs);
    if (entry !== NONE) {
      this.stats.fragmentHits++;
      return this.flowHashes[entry]!;
    }
    this.stats.fragmentMisses++;
    return addressHashOfView(this.seed, view);
  }

  /** Forgets every entry (e.g. when the cluster seed changes, which needs a new tracker anyway). */
  clear(): void {
    this.heads.fill(NONE);
    this.next.fill(NONE);
    this.home.fill(NONE);
    this.cursor = 0;
  }

  // IPv6 keys leave the protocol out: the identification is unique per (source, destination)
  // (RFC 8200), and the upper-layer protocol a parser reports can differ between the first
  // fragment (extension headers walked) and later ones (only the fragment header's next header).
  private metaOf(view: PacketView): number {
    return view.ipVersion === 4 ? (4 << 8) | view.protocol : 6 << 8;
  }

  private slotOf(view: PacketView): number {
    let h = mixWord(this.seed, this.metaOf(view));
    h = mixWord(h, view.fragmentId);
    if (view.ipVersion === 4) {
      h = mixWord(h, view.src4);
      h = mixWord(h, view.dst4);
    } else {
      for (let i = 0; i < 16; i += 4) h = mixWord(h, readU32(view.buf, view.srcAddrOffset + i));
      for (let i = 0; i < 16; i += 4) h = mixWord(h, readU32(view.buf, view.dstAddrOffset + i));
    }
    return fmix32(h) & this.indexMask;
  }

  private matches(entry: number, view: PacketView): boolean {
    const k = this.keys;
    const base = entry * KEY_WORDS;
    if (k[base + META] !== this.metaOf(view) || k[base + ID] !== view.fragmentId >>> 0) return false;
    if (view.ipVersion === 4) return k[base] === view.src4 >>> 0 && k[base + 4] === view.dst4 >>> 0;
    for (let i = 0; i < 4; i++) {
      if (k[base + i] !== readU32(view.buf, view.srcAddrOffset + i * 4)) return false;
      if (k[base + 4 + i] !== readU32(view.buf, view.dstAddrOffset + i * 4)) return false;
    }
    return true;
  }

  /** Live entry for the view's key in chain `slot`, or NONE. */
  private find(view: PacketView, slot: number, nowMs: number): number {
    for (let e = this.heads[slot]!; e !== NONE; e = this.next[e]!) {
      if (nowMs - this.bornMs[e]! < this.timeoutMs && this.matches(e, view)) return e;
    }
    return NONE;
  }

  private remember(view: PacketView, hash: number, nowMs: number): void {
    const slot = this.slotOf(view);
    const existing = this.find(view, slot, nowMs);
    if (existing !== NONE) {
      // A repeated first fragment: refresh in place (its ring position stays).
      this.flowHashes[existing] = hash;
      this.bornMs[existing] = nowMs;
      return;
    }
    const e = this.cursor;
    this.cursor = e + 1 === this.capacity ? 0 : e + 1;
    if (this.home[e] !== NONE) {
      if (nowMs - this.bornMs[e]! < this.timeoutMs) this.stats.replaced++;
      this.unlink(e);
    }
    const k = this.keys;
    const base = e * KEY_WORDS;
    if (view.ipVersion === 4) {
      k[base] = view.src4;
      k[base + 1] = 0;
      k[base + 2] = 0;
      k[base + 3] = 0;
      k[base + 4] = view.dst4;
      k[base + 5] = 0;
      k[base + 6] = 0;
      k[base + 7] = 0;
    } else {
      for (let i = 0; i < 4; i++) {
        k[base + i] = readU32(view.buf, view.srcAddrOffset + i * 4);
        k[base + 4 + i] = readU32(view.buf, view.dstAddrOffset + i * 4);
      }
    }
    k[base + META] = this.metaOf(view);
    k[base + ID] = view.fragmentId;
    this.flowHashes[e] = hash;
    this.bornMs[e] = nowMs;
    this.home[e] = slot;
    this.next[e] = this.heads[slot]!;
    this.heads[slot] = e;
  }

  private unlink(e: number): void {
    const slot = this.home[e]!;
    let previous = NONE;
    let cur = this.heads[slot]!;
    while (cur !== e) {
      assert(cur !== NONE, "fragment entry missing from its chain");
      previous = cur;
      cur = this.next[cur]!;
    }
    if (previous === NONE) this.heads[slot] = this.next[e]!;
    else this.next[previous] = this.next[e]!;
    this.next[e] = NONE;
    this.home[e] = NONE;
  }
}
