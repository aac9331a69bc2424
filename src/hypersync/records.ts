// HyperSync records: the compact binary units of connection-state replication, and the
// coalescer that keeps at most one pending idle-timer refresh per flow.
//
// Every record starts with the same 7 bytes, so a receiver can skip a record by its length
// and sort records by bucket without understanding them. All integers are big-endian.
//
//   record:  | kind u8 | length u16 (whole record) | bucket u32 | body ... |
//
//   key   (DELETE, REFRESH, CREATE, UPDATE):
//            | zone u16 | protocol u8 | flags u8 | src 4|16 | dst 4|16 | srcPort u16 | dstPort u16 |
//            flags: 0x01 IPv6, 0x02 seenReply, 0x04 assured, 0x08 TCP section follows
//            (only 0x01 is allowed in DELETE and REFRESH).
//   CREATE / UPDATE (same layout; UPDATE means "state transition", and a receiver that does
//            not know the key treats it as a create, so a lost CREATE heals on the next UPDATE):
//            | key | state u8 | remainingMs u32 | [TCP original 14 | TCP reply 14] | extensions |
//            TCP direction: | end u32 | maxEnd u32 | maxWindow u32 | scale u8 | flags u8 |
//            extensions: zero or more | type u8 | len u8 | value len bytes | up to the record's
//            end. Type 1 is the NAT binding (reserved: no engine writes it yet, the decoder
//            reports where it is); unknown types are skipped, so the format can grow.
//   DELETE:  | key |
//   REFRESH: | key | remainingMs u32 |
//   BULK_BEGIN / BULK_END: | recordCount u32 | digest u32 |
//   DIGEST_REQUEST / DIGEST_REPLY: | pairCount u16 | (bucket u32, digest u32) * pairCount |
//            (the header's bucket is the first listed bucket, 0 for an empty list)
//   RESYNC_REQUEST: (no body; the header's bucket is the bucket to resend)
//
// Expiry travels as remaining milliseconds, never as an absolute time: members' clocks differ.
//
// Sizes (bytes, IPv4/IPv6): CREATE/UPDATE TCP 56/80, UDP 28/52; DELETE 23/47; REFRESH 27/51;
// BULK_BEGIN/END 15; RESYNC_REQUEST 7; digest list 9 + 8 per pair. So a 1400-byte datagram
// (1340 bytes of records) carries 23 IPv4 TCP creates or 49 IPv4 refreshes.
//
// Invariants: encoders write exactly the bytes they report and nothing past `limit`; they
// allocate nothing. decodeRecord never throws on any bytes: a malformed record returns -1
// with `out.error` set and the caller counts it.

import { assert } from "../stdx/assert.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import type { FlowKey } from "../packet/flow-hash.js";
import type { ConnectionSnapshot, ConnState, TcpDirectionSnapshot } from "../engine/types.js";
import {
  DIGEST_PAIRS_MAX,
  RECORD_DIGEST_PAIR_BYTES,
  RECORD_EXTENSION_VALUE_BYTES_MAX,
  RECORD_HEADER_BYTES,
  RECORD_KEY_BYTES_MAX,
  RECORD_KEY_BYTES_V4,
  RECORD_KEY_BYTES_V6,
  RECORD_TCP_DIRECTION_BYTES,
  REFRESH_PENDING_MAX,
} from "./constants.js";

export const RecordKind = {
  CREATE: 1,
  UPDATE: 2,
  DELETE: 3,
  REFRESH: 4,
  BULK_BEGIN: 5,
  BULK_END: 6,
  DIGEST_REQUEST: 7,
  DIGEST_REPLY: 8,
  RESYNC_REQUEST: 9,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];
export const RECORD_KIND_NAMES: readonly string[] = [
  "none",
  "create",
  "update",
  "delete",
  "refresh",
  "bulk-begin",
  "bulk-end",
  "digest-request",
  "digest-reply",
  "resync-request",
];

/** Why a record did not decode. Counted by the receiver, never thrown. */
export const RecordError = {
  NONE: 0,
  TRUNCATED: 1, // fewer bytes left than the record header or its length claims
  BAD_KIND: 2, // unknown kind
  BAD_LENGTH: 3, // the length does not match what the kind and flags require
  BAD_FIELD: 4, // a field out of range (state, window scale, flags, extension overrun)
} as const;
export type RecordError = (typeof RecordError)[keyof typeof RecordError];
export const RECORD_ERROR_NAMES: readonly string[] = ["none", "truncated", "bad-kind", "bad-length", "bad-field"];

/** Key flag bits (the key's flags byte). */
export const KeyFlag = {
  IPV6: 0x01,
  SEEN_REPLY: 0x02,
  ASSURED: 0x04,
  TCP: 0x08,
} as const;

/** Extension types inside CREATE/UPDATE. */
export const RecordExtension = {
  NAT_BINDING: 1,
} as const;

/** Highest ConnState value (types.ts): a larger state byte is malformed. */
const CONN_STATE_MAX = 15;
/** Largest TCP window scale shift (RFC 7323). */
const TCP_SCALE_MAX = 14;
const U32_MAX = 0xffffffff;

/** Record sizes without extensions, for callers that budget space. */
export function stateRecordBytes(addressLength: number, tcp: boolean): number {
  return RECORD_HEADER_BYTES + keyBytes(addressLength) + 1 + 4 + (tcp ? 2 * RECORD_TCP_DIRECTION_BYTES : 0);
}
export function deleteRecordBytes(addressLength: number): number {
  return RECORD_HEADER_BYTES + keyBytes(addressLength);
}
export function refreshRecordBytes(addressLength: number): number {
  return RECORD_HEADER_BYTES + keyBytes(addressLength) + 4;
}
export const BULK_RECORD_BYTES = RECORD_HEADER_BYTES + 8;
export const RESYNC_REQUEST_RECORD_BYTES = RECORD_HEADER_BYTES;
export function digestListRecordBytes(pairCount: number): number {
  return RECORD_HEADER_BYTES + 2 + pairCount * RECORD_DIGEST_PAIR_BYTES;
}

function keyBytes(addressLength: number): number {
  return addressLength === 16 ? RECORD_KEY_BYTES_V6 : RECORD_KEY_BYTES_V4;
}

// ---- byte helpers (big-endian, no DataView so nothing is allocated) ----------------------

function w16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 8;
  buf[offset + 1] = value;
}
function w32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = value >>> 16;
  buf[offset + 2] = value >>> 8;
  buf[offset + 3] = value;
}
function r16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}
function r32(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

// Range checks as integer identities: cheaper than Number.isInteger on the encode path, and
// false for fractions, negatives, NaN and anything too large.
function isU32(n: number): boolean {
  return n >>> 0 === n;
}
function isU16(n: number): boolean {
  return (n & 0xffff) === n;
}
function isU8(n: number): boolean {
  return (n & 0xff) === n;
}

function assertKey(key: FlowKey): void {
  const length = key.src.length;
  assert(length === 4 || length === 16, "address must be 4 or 16 bytes");
  assert(key.dst.length === length, "src and dst of one family");
  assert(isU16(key.zone), "zone is a u16 on the wire");
  assert(isU8(key.protocol), "protocol is a u8");
  assert(isU16(key.srcPort) && isU16(key.dstPort), "ports are u16");
}

function writeHeader(buf: Uint8Array, offset: number, kind: number, length: number, bucket: number): void {
  assert(isU32(bucket), "bucket is a u32");
  buf[offset] = kind;
  w16(buf, offset + 1, length);
  w32(buf, offset + 3, bucket);
}

/** Writes a key at offset (space already checked); returns the offset after it. */
function writeKey(buf: Uint8Array, offset: number, key: FlowKey, stateFlags: number): number {
  const addressLength = key.src.length;
  w16(buf, offset, key.zone);
  buf[offset + 2] = key.protocol;
  buf[offset + 3] = (addressLength === 16 ? KeyFlag.IPV6 : 0) | stateFlags;
  let p = offset + 4;
  // Loops, not buf.set: for 4 or 16 bytes the native call costs more than the copy.
  const src = key.src;
  const dst = key.dst;
  for (let i = 0; i < addressLength; i++) buf[p + i] = src[i]!;
  p += addressLength;
  for (let i = 0; i < addressLength; i++) buf[p + i] = dst[i]!;
  p += addressLength;
  w16(buf, p, key.srcPort);
  w16(buf, p + 2, key.dstPort);
  return p + 4;
}

/** Milliseconds until `expiresAtMs`, as the u32 the wire carries (0 when already expired). */
export function remainingMsOf(expiresAtMs: number, nowMs: number): number {
  const remaining = Math.ceil(expiresAtMs - nowMs);
  if (!(remaining > 0)) return 0;
  return remaining > U32_MAX ? U32_MAX : remaining;
}

function writeTcpDirection(buf: Uint8Array, offset: number, d: TcpDirectionSnapshot): void {
  assert(isU32(d.end) && isU32(d.maxEnd) && isU32(d.maxWindow), "TCP window fields are u32");
  assert(isU8(d.scale) && d.scale <= TCP_SCALE_MAX, "TCP window scale 0..14");
  assert(isU8(d.flags), "TCP direction flags are a u8");
  w32(buf, offset, d.end);
  w32(buf, offset + 4, d.maxEnd);
  w32(buf, offset + 8, d.maxWindow);
  buf[offset + 12] = d.scale;
  buf[offset + 13] = d.flags;
}

function encodeState(
  kind: number,
  buf: Uint8Array,
  offset: number,
  limit: number,
  bucket: number,
  s: ConnectionSnapshot,
  nowMs: number,
  natBinding: Uint8Array | null,
): number {
  assertKey(s);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(isU8(s.state) && s.state <= CONN_STATE_MAX, "state out of range");
  assert(natBinding === null || natBinding.length <= RECORD_EXTENSION_VALUE_BYTES_MAX, "NAT binding too long");
  const tcp = s.tcp !== null;
  const length = stateRecordBytes(s.src.length, tcp) + (natBinding === null ? 0 : 2 + natBinding.length);
  if (offset + length > limit) return -1;
  writeHeader(buf, offset, kind, length, bucket);
  const stateFlags = (s.seenReply ? KeyFlag.SEEN_REPLY : 0) | (s.assured ? KeyFlag.ASSURED : 0) | (tcp ? KeyFlag.TCP : 0);
  let p = writeKey(buf, offset + RECORD_HEADER_BYTES, s, stateFlags);
  buf[p] = s.state;
  w32(buf, p + 1, remainingMsOf(s.expiresAtMs, nowMs));
  p += 5;
  if (s.tcp !== null) {
    writeTcpDirection(buf, p, s.tcp.original);
    writeTcpDirection(buf, p + RECORD_TCP_DIRECTION_BYTES, s.tcp.reply);
    p += 2 * RECORD_TCP_DIRECTION_BYTES;
  }
  if (natBinding !== null) {
    buf[p] = RecordExtension.NAT_BINDING;
    buf[p + 1] = natBinding.length;
    buf.set(natBinding, p + 2);
    p += 2 + natBinding.length;
  }
  assert(p === offset + length, "state record length mismatch");
  return p;
}

/**
 * CREATE: the full connection. Writes into buf[offset, limit); returns the offset after the
 * record, or -1 when it does not fit. `natBinding` is the reserved NAT extension (null today).
 */
export function encodeCreate(
  buf: Uint8Array,
  offset: number,
  limit: number,
  bucket: number,
  s: ConnectionSnapshot,
  nowMs: number,
  natBinding: Uint8Array | null = null,
): number {
  return encodeState(RecordKind.CREATE, buf, offset, limit, bucket, s, nowMs, natBinding);
}

/** UPDATE: a state transition or NAT binding change; same layout as CREATE. */
export function encodeUpdate(
  buf: Uint8Array,
  offset: number,
  limit: number,
  bucket: number,
  s: ConnectionSnapshot,
  nowMs: number,
  natBinding: Uint8Array | null = null,
): number {
  return encodeState(RecordKind.UPDATE, buf, offset, limit, bucket, s, nowMs, natBinding);
}

/** DELETE: the key only. */
export function encodeDelete(buf: Uint8Array, offset: number, limit: number, bucket: number, key: FlowKey): number {
  assertKey(key);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  const length = deleteRecordBytes(key.src.length);
  if (offset + length > limit) return -1;
  writeHeader(buf, offset, RecordKind.DELETE, length, bucket);
  return writeKey(buf, offset + RECORD_HEADER_BYTES, key, 0);
}

/** REFRESH: the key and the new remaining idle time. Prefer RefreshCoalescer on the packet path. */
export function encodeRefresh(
  buf: Uint8Array,
  offset: number,
  limit: number,
  bucket: number,
  key: FlowKey,
  remainingMs: number,
): number {
  assertKey(key);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(isU32(remainingMs), "remainingMs is a u32");
  const length = refreshRecordBytes(key.src.length);
  if (offset + length > limit) return -1;
  writeHeader(buf, offset, RecordKind.REFRESH, length, bucket);
  const p = writeKey(buf, offset + RECORD_HEADER_BYTES, key, 0);
  w32(buf, p, remainingMs);
  return p + 4;
}

function encodeBulk(kind: number, buf: Uint8Array, offset: number, limit: number, bucket: number, recordCount: number, digest: number): number {
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(isU32(recordCount) && isU32(digest), "record count and digest are u32");
  if (offset + BULK_RECORD_BYTES > limit) return -1;
  writeHeader(buf, offset, kind, BULK_RECORD_BYTES, bucket);
  w32(buf, offset + RECORD_HEADER_BYTES, recordCount);
  w32(buf, offset + RECORD_HEADER_BYTES + 4, digest);
  return offset + BULK_RECORD_BYTES;
}

/**
 * BULK_BEGIN: a full transfer of `bucket` follows (`recordCount` CREATE records whose digests
 * sum to `digest`). The receiver may mark its copies of the bucket stale until BULK_END.
 */
export function encodeBulkBegin(buf: Uint8Array, offset: number, limit: number, bucket: number, recordCount: number, digest: number): number {
  return encodeBulk(RecordKind.BULK_BEGIN, buf, offset, limit, bucket, recordCount, digest);
}

/** BULK_END: the transfer of `bucket` is complete; connections not re-sent are gone. */
export function encodeBulkEnd(buf: Uint8Array, offset: number, limit: number, bucket: number, recordCount: number, digest: number): number {
  return encodeBulk(RecordKind.BULK_END, buf, offset, limit, bucket, recordCount, digest);
}

/**
 * DIGEST_REQUEST or DIGEST_REPLY: (bucket, digest) pairs buckets[start..start+count) and
 * digests[start..start+count). At most DIGEST_PAIRS_MAX pairs.
 */
export function encodeDigestList(
  buf: Uint8Array,
  offset: number,
  limit: number,
  kind: typeof RecordKind.DIGEST_REQUEST | typeof RecordKind.DIGEST_REPLY,
  buckets: ArrayLike<number>,
  digests: ArrayLike<number>,
  start: number,
  count: number,
): number {
  assert(kind === RecordKind.DIGEST_REQUEST || kind === RecordKind.DIGEST_REPLY, "not a digest kind");
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(count >= 0 && count <= DIGEST_PAIRS_MAX, "too many digest pairs for one record");
  assert(start >= 0 && start + count <= buckets.length && start + count <= digests.length, "digest pairs out of range");
  const length = digestListRecordBytes(count);
  if (offset + length > limit) return -1;
  writeHeader(buf, offset, kind, length, count > 0 ? buckets[start]! : 0);
  w16(buf, offset + RECORD_HEADER_BYTES, count);
  let p = offset + RECORD_HEADER_BYTES + 2;
  for (let i = 0; i < count; i++) {
    const bucket = buckets[start + i]!;
    const digest = digests[start + i]!;
    assert(isU32(bucket) && isU32(digest), "digest pair fields are u32");
    w32(buf, p, bucket);
    w32(buf, p + 4, digest);
    p += RECORD_DIGEST_PAIR_BYTES;
  }
  return p;
}

/** RESYNC_REQUEST: the backup asks the owner for a bulk transfer of `bucket`. */
export function encodeResyncRequest(buf: Uint8Array, offset: number, limit: number, bucket: number): number {
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  if (offset + RESYNC_REQUEST_RECORD_BYTES > limit) return -1;
  writeHeader(buf, offset, RecordKind.RESYNC_REQUEST, RESYNC_REQUEST_RECORD_BYTES, bucket);
  return offset + RESYNC_REQUEST_RECORD_BYTES;
}

// ---- decoding ---------------------------------------------------------------------------

function newDirection(): TcpDirectionSnapshot {
  return { end: 0, maxEnd: 0, maxWindow: 0, scale: 0, flags: 0 };
}

/**
 * One decoded record, overwritten by every decodeRecord call (one per receiver, reused).
 * Only the fields of `kind` are meaningful; the others keep stale values.
 */
export class DecodedRecord {
  kind = 0;
  error: RecordError = RecordError.NONE;
  bucket = 0;
  /** Where the record sits in the decoded buffer. */
  recordOffset = 0;
  recordLength = 0;
  // Key (CREATE, UPDATE, DELETE, REFRESH). Addresses are the first addressLength bytes.
  zone = 0;
  protocol = 0;
  addressLength = 0;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  srcPort = 0;
  dstPort = 0;
  // CREATE, UPDATE (remainingMs also REFRESH)
  state = 0;
  remainingMs = 0;
  seenReply = false;
  assured = false;
  hasTcp = false;
  readonly tcpOriginal: TcpDirectionSnapshot = newDirection();
  readonly tcpReply: TcpDirectionSnapshot = newDirection();
  /** NAT binding extension: offset of its value in the decoded buffer, -1 when absent. */
  natOffset = -1;
  natLength = 0;
  // BULK_BEGIN, BULK_END
  recordCount = 0;
  digest = 0;
  // DIGEST_REQUEST, DIGEST_REPLY: pairs [0, pairCount)
  pairCount = 0;
  readonly pairBuckets = new Uint32Array(DIGEST_PAIRS_MAX);
  readonly pairDigests = new Uint32Array(DIGEST_PAIRS_MAX);
}

function fail(out: DecodedRecord, error: RecordError): number {
  out.error = error;
  return -1;
}

/** Reads a key at p within the record ending at end; returns the offset after it or -1. */
function readKey(buf: Uint8Array, p: number, end: number, out: DecodedRecord, allowedFlags: number): number {
  if (p + RECORD_KEY_BYTES_V4 > end) return fail(out, RecordError.BAD_LENGTH);
  const flags = buf[p + 3]!;
  if ((flags & ~allowedFlags) !== 0) return fail(out, RecordError.BAD_FIELD);
  const addressLength = (flags & KeyFlag.IPV6) !== 0 ? 16 : 4;
  if (p + keyBytes(addressLength) > end) return fail(out, RecordError.BAD_LENGTH);
  out.zone = r16(buf, p);
  out.protocol = buf[p + 2]!;
  out.addressLength = addressLength;
  out.seenReply = (flags & KeyFlag.SEEN_REPLY) !== 0;
  out.assured = (flags & KeyFlag.ASSURED) !== 0;
  out.hasTcp = (flags & KeyFlag.TCP) !== 0;
  p += 4;
  for (let i = 0; i < addressLength; i++) out.src[i] = buf[p + i]!;
  p += addressLength;
  for (let i = 0; i < addressLength; i++) out.dst[i] = buf[p + i]!;
  p += addressLength;
  out.srcPort = r16(buf, p);
  out.dstPort = r16(buf, p + 2);
  return p + 4;
}

function readTcpDirection(buf: Uint8Array, p: number, d: TcpDirectionSnapshot): boolean {
  d.end = r32(buf, p);
  d.maxEnd = r32(buf, p + 4);
  d.maxWindow = r32(buf, p + 8);
  d.scale = buf[p + 12]!;
  d.flags = buf[p + 13]!;
  return d.scale <= TCP_SCALE_MAX;
}

function readState(buf: Uint8Array, p: number, end: number, out: DecodedRecord): number {
  p = readKey(buf, p, end, out, KeyFlag.IPV6 | KeyFlag.SEEN_REPLY | KeyFlag.ASSURED | KeyFlag.TCP);
  if (p < 0) return -1;
  if (p + 5 > end) return fail(out, RecordError.BAD_LENGTH);
  out.state = buf[p]!;
  if (out.state > CONN_STATE_MAX) return fail(out, RecordError.BAD_FIELD);
  out.remainingMs = r32(buf, p + 1);
  p += 5;
  if (out.hasTcp) {
    if (p + 2 * RECORD_TCP_DIRECTION_BYTES > end) return fail(out, RecordError.BAD_LENGTH);
    if (!readTcpDirection(buf, p, out.tcpOriginal)) return fail(out, RecordError.BAD_FIELD);
    if (!readTcpDirection(buf, p + RECORD_TCP_DIRECTION_BYTES, out.tcpReply)) return fail(out, RecordError.BAD_FIELD);
    p += 2 * RECORD_TCP_DIRECTION_BYTES;
  }
  out.natOffset = -1;
  out.natLength = 0;
  // Extensions up to the record's end; each is bounded by the record, so the loop is too.
  while (p < end) {
    if (p + 2 > end) return fail(out, RecordError.BAD_FIELD);
    const type = buf[p]!;
    const length = buf[p + 1]!;
    if (p + 2 + length > end) return fail(out, RecordError.BAD_FIELD);
    if (type === RecordExtension.NAT_BINDING) {
      out.natOffset = p + 2;
      out.natLength = length;
    }
    p += 2 + length;
  }
  return p;
}

/**
 * Decodes the record at buf[offset, end). Returns the offset of the next record, or -1 with
 * out.error set. Never throws on any input bytes.
 */
export function decodeRecord(buf: Uint8Array, offset: number, end: number, out: DecodedRecord): number {
  out.error = RecordError.NONE;
  if (offset < 0 || end > buf.length || end - offset < RECORD_HEADER_BYTES) return fail(out, RecordError.TRUNCATED);
  const kind = buf[offset]!;
  const length = r16(buf, offset + 1);
  if (length < RECORD_HEADER_BYTES) return fail(out, RecordError.BAD_LENGTH);
  if (offset + length > end) return fail(out, RecordError.TRUNCATED);
  const recordEnd = offset + length;
  out.kind = kind;
  out.bucket = r32(buf, offset + 3);
  out.recordOffset = offset;
  out.recordLength = length;
  let p = offset + RECORD_HEADER_BYTES;
  switch (kind) {
    case RecordKind.CREATE:
    case RecordKind.UPDATE:
      p = readState(buf, p, recordEnd, out);
      break;
    case RecordKind.DELETE:
      p = readKey(buf, p, recordEnd, out, KeyFlag.IPV6);
      break;
    case RecordKind.REFRESH:
      p = readKey(buf, p, recordEnd, out, KeyFlag.IPV6);
      if (p < 0) return -1;
      if (p + 4 > recordEnd) return fail(out, RecordError.BAD_LENGTH);
      out.remainingMs = r32(buf, p);
      p += 4;
      break;
    case RecordKind.BULK_BEGIN:
    case RecordKind.BULK_END:
      if (length !== BULK_RECORD_BYTES) return fail(out, RecordError.BAD_LENGTH);
      out.recordCount = r32(buf, p);
      out.digest = r32(buf, p + 4);
      p += 8;
      break;
    case RecordKind.DIGEST_REQUEST:
    case RecordKind.DIGEST_REPLY: {
      if (p + 2 > recordEnd) return fail(out, RecordError.BAD_LENGTH);
      const count = r16(buf, p);
      if (count > DIGEST_PAIRS_MAX) return fail(out, RecordError.BAD_FIELD);
      if (length !== digestListRecordBytes(count)) return fail(out, RecordError.BAD_LENGTH);
      p += 2;
      for (let i = 0; i < count; i++) {
        out.pairBuckets[i] = r32(buf, p);
        out.pairDigests[i] = r32(buf, p + 4);
        p += RECORD_DIGEST_PAIR_BYTES;
      }
      out.pairCount = count;
      break;
    }
    case RecordKind.RESYNC_REQUEST:
      if (length !== RESYNC_REQUEST_RECORD_BYTES) return fail(out, RecordError.BAD_LENGTH);
      break;
    default:
      return fail(out, RecordError.BAD_KIND);
  }
  if (p < 0) return -1;
  if (p !== recordEnd) return fail(out, RecordError.BAD_LENGTH);
  return p;
}

/** Reads only the common header: the bucket of the record at offset (the caller knows it is whole). */
export function recordBucketAt(buf: Uint8Array, offset: number): number {
  return r32(buf, offset + 3);
}

/** Reads only the common header: the kind of the record at offset. */
export function recordKindAt(buf: Uint8Array, offset: number): number {
  return buf[offset]!;
}

/** True for records that carry connection state of their bucket (losing one needs a resync). */
export function isStateRecordKind(kind: number): boolean {
  return kind >= RecordKind.CREATE && kind <= RecordKind.BULK_END;
}

// ---- slow-path conversions (allocate; API, tests, applying records to a table) ----------

/** The flow key of a decoded key-carrying record, as fresh values. */
export function flowKeyOfRecord(rec: DecodedRecord): FlowKey {
  return {
    zone: rec.zone,
    protocol: rec.protocol,
    src: rec.src.slice(0, rec.addressLength),
    dst: rec.dst.slice(0, rec.addressLength),
    srcPort: rec.srcPort,
    dstPort: rec.dstPort,
  };
}

/** A decoded CREATE/UPDATE as a snapshot on the receiver's clock (expiry = now + remaining). */
export function snapshotOfRecord(rec: DecodedRecord, nowMs: number): ConnectionSnapshot {
  assert(rec.kind === RecordKind.CREATE || rec.kind === RecordKind.UPDATE, "not a state record");
  return {
    zone: rec.zone,
    protocol: rec.protocol,
    src: rec.src.slice(0, rec.addressLength),
    dst: rec.dst.slice(0, rec.addressLength),
    srcPort: rec.srcPort,
    dstPort: rec.dstPort,
    state: rec.state as ConnState,
    expiresAtMs: nowMs + rec.remainingMs,
    seenReply: rec.seenReply,
    assured: rec.assured,
    tcp: rec.hasTcp ? { original: { ...rec.tcpOriginal }, reply: { ...rec.tcpReply } } : null,
  };
}

// ---- refresh coalescing ------------------------------------------------------------------

/** Where records go: the channel implements it (channel.ts). */
export interface RecordSink {
  /** Appends one whole record, bytes[offset, offset + length). The sink copies it. */
  enqueue(bytes: Uint8Array, offset: number, length: number, nowMs: number): void;
}

/**
 * At most one pending REFRESH per flow key. The packet path calls note() for every packet that
 * extends a connection's idle timer; the sync agent calls drainTo() when it flushes (at least
 * every FLUSH_INTERVAL_MS), so a busy flow costs one REFRESH per flush, not one per packet.
 * Before it sends an UPDATE or DELETE of a key the agent calls cancel(key): a refresh noted
 * under the old state must not follow the transition and stretch the new state's timeout.
 *
 *   entries (insertion order, dense):  [key bytes | bucket | expiresAtMs | live] * capacity
 *   index (open addressing, linear probing, 2x capacity, power of two): slot -> entry or -1
 *
 * Memory is fixed at construction; nothing is allocated per note. A cancelled key keeps its
 * entry (and its room) until the next drain, so cancel never reorders the dense array.
 */
export class RefreshCoalescer {
  readonly capacity: number;
  private readonly keys: Uint8Array;
  private readonly keyLengths: Uint8Array;
  private readonly buckets: Uint32Array;
  private readonly expiresAtMs: Float64Array;
  private readonly live: Uint8Array;
  private readonly slotOfEntry: Int32Array;
  private readonly index: Int32Array;
  private readonly indexMask: number;
  private readonly scratch: Uint8Array;
  /** Entries used, cancelled ones included. */
  private used = 0;
  /** Live entries: refreshes that drainTo() will send. */
  pending = 0;

  constructor(capacity = REFRESH_PENDING_MAX) {
    assert(Number.isInteger(capacity) && capacity >= 1 && capacity <= 1 << 24, "coalescer capacity out of range");
    this.capacity = capacity;
    // One spare entry past the end is the scratch area for a candidate key when full.
    this.keys = new Uint8Array((capacity + 1) * RECORD_KEY_BYTES_MAX);
    this.keyLengths = new Uint8Array(capacity);
    this.buckets = new Uint32Array(capacity);
    this.expiresAtMs = new Float64Array(capacity);
    this.live = new Uint8Array(capacity);
    this.slotOfEntry = new Int32Array(capacity);
    let size = 2;
    while (size < capacity * 2) size *= 2;
    this.index = new Int32Array(size).fill(-1);
    this.indexMask = size - 1;
    this.scratch = new Uint8Array(RECORD_HEADER_BYTES + RECORD_KEY_BYTES_MAX + 4);
  }

  /**
   * Notes that `key` (in `bucket`) now expires at `expiresAtMs` (owner clock). Returns false,
   * changing nothing, when the key is new and the coalescer is full: drain, then note again.
   */
  note(bucket: number, key: FlowKey, expiresAtMs: number): boolean {
    assert(isU32(bucket), "bucket is a u32");
    assertKey(key);
    const candidate = this.used < this.capacity ? this.used : this.capacity;
    const length = writeKey(this.keys, candidate * RECORD_KEY_BYTES_MAX, key, 0) - candidate * RECORD_KEY_BYTES_MAX;
    const slot = this.findSlot(candidate * RECORD_KEY_BYTES_MAX, length);
    const entry = this.index[slot]!;
    if (entry >= 0) {
      this.buckets[entry] = bucket;
      this.expiresAtMs[entry] = expiresAtMs;
      if (this.live[entry] === 0) {
        this.live[entry] = 1;
        this.pending++;
      }
      return true;
    }
    if (this.used === this.capacity) return false;
    const e = this.used++;
    this.keyLengths[e] = length;
    this.buckets[e] = bucket;
    this.expiresAtMs[e] = expiresAtMs;
    this.live[e] = 1;
    this.slotOfEntry[e] = slot;
    this.index[slot] = e;
    this.pending++;
    return true;
  }

  /** Forgets a pending refresh of `key` (before an UPDATE or DELETE of it). True if one was pending. */
  cancel(key: FlowKey): boolean {
    assertKey(key);
    const candidate = this.used < this.capacity ? this.used : this.capacity;
    const length = writeKey(this.keys, candidate * RECORD_KEY_BYTES_MAX, key, 0) - candidate * RECORD_KEY_BYTES_MAX;
    const entry = this.index[this.findSlot(candidate * RECORD_KEY_BYTES_MAX, length)]!;
    if (entry < 0 || this.live[entry] === 0) return false;
    this.live[entry] = 0;
    this.pending--;
    return true;
  }

  /** Sends every pending refresh to `sink` (in first-noted order) and empties the coalescer. Returns the count sent. */
  drainTo(sink: RecordSink, nowMs: number): number {
    const scratch = this.scratch;
    let sent = 0;
    for (let e = 0; e < this.used; e++) {
      this.index[this.slotOfEntry[e]!] = -1;
      if (this.live[e] === 0) continue;
      const keyLength = this.keyLengths[e]!;
      const length = RECORD_HEADER_BYTES + keyLength + 4;
      writeHeader(scratch, 0, RecordKind.REFRESH, length, this.buckets[e]!);
      const from = e * RECORD_KEY_BYTES_MAX;
      for (let i = 0; i < keyLength; i++) scratch[RECORD_HEADER_BYTES + i] = this.keys[from + i]!;
      w32(scratch, RECORD_HEADER_BYTES + keyLength, remainingMsOf(this.expiresAtMs[e]!, nowMs));
      sink.enqueue(scratch, 0, length, nowMs);
      sent++;
    }
    this.used = 0;
    this.pending = 0;
    return sent;
  }

  /** The index slot holding the key at keys[keyOffset, +length), or the empty slot where it would go. */
  private findSlot(keyOffset: number, length: number): number {
    const keys = this.keys;
    let h = length;
    for (let i = 0; i < length; i += 4) h = mixWord(h, r32(keys, keyOffset + i));
    let slot = fmix32(h) & this.indexMask;
    // Bounded: the index is at least twice the entries, so an empty slot always exists.
    for (let probes = 0; probes <= this.indexMask; probes++) {
      const entry = this.index[slot]!;
      if (entry < 0) return slot;
      if (this.keyLengths[entry] === length && bytesEqual(keys, entry * RECORD_KEY_BYTES_MAX, keyOffset, length)) return slot;
      slot = (slot + 1) & this.indexMask;
    }
    assert(false, "refresh coalescer index has no empty slot");
    return -1;
  }
}

function bytesEqual(buf: Uint8Array, a: number, b: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (buf[a + i] !== buf[b + i]) return false;
  return true;
}
