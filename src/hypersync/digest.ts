// Per-bucket digests: how owner and backup check that they hold the same connections.
//
// A connection's digest is a strong 32-bit mix of its key and state (not its expiry: members'
// clocks differ, and refreshes are coalesced). A bucket's digest is the sum mod 2^32 of its
// connections' digests: order-independent, and incrementally maintainable (add on create,
// subtract on delete, subtract-old/add-new on a state change). A sum, not an XOR, so that a
// connection present twice does not cancel out. Two different sets collide with probability
// about 2^-32 per bucket compared, which a periodic re-check makes negligible.
//
// Invariant: BucketDigests.get(b) equals the sum of connectionDigest over the connections
// added to b and not removed, whatever the order of the calls.

import { assert } from "../stdx/assert.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import type { ConnectionSnapshot } from "../engine/types.js";
import { RecordKind, type DecodedRecord } from "./records.js";

/** Fixed seed: digests are compared across members, so it is a protocol constant. */
const DIGEST_SEED = 0x7a6d5e31;

function mixAddress(h: number, bytes: Uint8Array, offset: number, length: number): number {
  for (let i = 0; i < length; i += 4) {
    const word = ((bytes[offset + i]! << 24) | (bytes[offset + i + 1]! << 16) | (bytes[offset + i + 2]! << 8) | bytes[offset + i + 3]!) | 0;
    h = mixWord(h, word);
  }
  return h;
}

/** Digest of one connection from raw fields. addressLength is 4 or 16. */
export function connectionDigestRaw(
  zone: number,
  protocol: number,
  src: Uint8Array,
  srcOffset: number,
  dst: Uint8Array,
  dstOffset: number,
  addressLength: number,
  srcPort: number,
  dstPort: number,
  state: number,
): number {
  assert(addressLength === 4 || addressLength === 16, "address must be 4 or 16 bytes");
  let h = DIGEST_SEED;
  h = mixWord(h, ((zone & 0xffff) << 16) | ((protocol & 0xff) << 8) | addressLength);
  h = mixAddress(h, src, srcOffset, addressLength);
  h = mixAddress(h, dst, dstOffset, addressLength);
  h = mixWord(h, ((srcPort & 0xffff) << 16) | (dstPort & 0xffff));
  h = mixWord(h, state & 0xff);
  return fmix32(h ^ (addressLength * 2 + 12));
}

/** Digest of one connection: key and state. */
export function connectionDigest(s: ConnectionSnapshot): number {
  assert(s.src.length === s.dst.length, "src and dst of one family");
  return connectionDigestRaw(s.zone, s.protocol, s.src, 0, s.dst, 0, s.src.length, s.srcPort, s.dstPort, s.state);
}

/** Digest of the connection a decoded CREATE/UPDATE describes (equals connectionDigest of its snapshot). */
export function recordDigest(rec: DecodedRecord): number {
  assert(rec.kind === RecordKind.CREATE || rec.kind === RecordKind.UPDATE, "not a state record");
  return connectionDigestRaw(rec.zone, rec.protocol, rec.src, 0, rec.dst, 0, rec.addressLength, rec.srcPort, rec.dstPort, rec.state);
}

/** One digest per bucket, maintained incrementally as connections come and go. */
export class BucketDigests {
  readonly bucketCount: number;
  private readonly digests: Uint32Array;

  constructor(bucketCount: number) {
    assert(Number.isInteger(bucketCount) && bucketCount >= 1, "bucket count must be positive");
    this.bucketCount = bucketCount;
    this.digests = new Uint32Array(bucketCount);
  }

  add(bucket: number, digest: number): void {
    this.check(bucket);
    this.digests[bucket] = (this.digests[bucket]! + digest) >>> 0;
  }

  remove(bucket: number, digest: number): void {
    this.check(bucket);
    this.digests[bucket] = (this.digests[bucket]! - digest) >>> 0;
  }

  /** A connection of `bucket` changed from digest `before` to `after` (state transition). */
  replace(bucket: number, before: number, after: number): void {
    this.check(bucket);
    this.digests[bucket] = (this.digests[bucket]! - before + after) >>> 0;
  }

  get(bucket: number): number {
    this.check(bucket);
    return this.digests[bucket]!;
  }

  /** The bucket emptied (e.g. before a bulk transfer rebuilds it). */
  clear(bucket: number): void {
    this.check(bucket);
    this.digests[bucket] = 0;
  }

  /** All digests, indexed by bucket (a live view: do not modify). */
  values(): Uint32Array {
    return this.digests;
  }

  private check(bucket: number): void {
    assert(Number.isInteger(bucket) && bucket >= 0 && bucket < this.bucketCount, "bucket out of range");
  }
}

/** Buckets whose digests differ between two members' tables of one bucket count, ascending. */
export function diffDigests(a: Uint32Array, b: Uint32Array): number[] {
  assert(a.length === b.length, "digest tables of different bucket counts");
  const differ: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ.push(i);
  return differ;
}

/**
 * Buckets of a received (bucket, digest) list (a DIGEST_REQUEST/REPLY record's pairs) whose
 * digest differs from the local one, in list order.
 */
export function diffDigestPairs(buckets: Uint32Array, digests: Uint32Array, count: number, local: BucketDigests): number[] {
  assert(count >= 0 && count <= buckets.length && count <= digests.length, "pair count out of range");
  const differ: number[] = [];
  for (let i = 0; i < count; i++) {
    const bucket = buckets[i]!;
    if (bucket >= local.bucketCount || local.get(bucket) !== digests[i]) differ.push(bucket);
  }
  return differ;
}
