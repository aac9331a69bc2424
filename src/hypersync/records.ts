// HyperSync records: the compact binary units of connection-state replication.
//
// Records are self-delimiting: a receiver walks a payload by decoding, so no record carries a
// length, and a record that names a connection carries no bucket either: the receiver derives
// it from the key with the cluster's hash seed (it must hash the key anyway to find the entry,
// and a key outside the bucket it claims would be an error to check). All integers big-endian.
//
//   byte 0:  kind (low 4 bits); CREATE/UPDATE put the connection's state in the high 4 bits,
//            every other kind has them 0.
//   key   (CREATE, UPDATE, DELETE, REFRESH):
//            | flags u8 | protocol u8 | [zone u16] | src 4|16 | dst 4|16 | srcPort u16 | dstPort u16 |
//            flags: 0x01 IPv6, 0x02 zone present (absent: zone 0), 0x04 seenReply, 0x08 assured,
//            0x10 TCP section, 0x20 TCP windows, 0x40 default expiry, 0x80 extensions
//            (DELETE and REFRESH allow 0x01 and 0x02 only).
//   CREATE / UPDATE (same layout; UPDATE means "state transition", and a receiver that does not
//            know the key treats it as a create, so a lost CREATE heals on the next UPDATE):
//            | kind+state | key | [expiry] | [TCP section] | [windows] | [extensions] |
//            expiry: remaining whole seconds, rounded up, as unsigned LEB128 (1-3 bytes);
//              absent with the default-expiry flag: the state's full timeout (STATE_TIMEOUT_MS),
//              what a connection has right after the packet that changed it.
//            TCP section: | scale original << 4 | scale reply | flags original | flags reply |
//            windows: | end u32 | maxEnd u32 | maxWindow u32 | per direction, original first.
//              Sent only while they matter: a promoted copy forgets its windows and re-learns
//              them from the next segments (cluster-node.ts), except during the handshake, where
//              a SYN/ACK is checked against the SYN's end. A record without them leaves the
//              copy's windows at 0, which is the tracker's "no window known yet".
//            extensions: | length u8 | (type u8, len u8, value)... | Type 1 is the NAT binding
//              (reserved: no engine writes it yet, the decoder reports where it is); unknown types
//              are skipped, so the format can grow.
//   DELETE:  | kind | key |
//   REFRESH: | kind | key | expiry |
//   BULK_BEGIN / BULK_END: | kind | bucket u32 | recordCount u32 | digest u32 |
//   DIGEST_REQUEST / DIGEST_REPLY: | kind | pairCount u16 | (bucket u32, digest u32) * pairCount |
//   RESYNC_REQUEST: | kind | bucket u32 |
//
// Expiry travels as remaining time, never as an absolute time: members' clocks differ. Rounding
// up to seconds makes a copy live at most a second longer than its original, never shorter: the
// owner decides when a connection ends (DELETE), a copy only has to last until then.
//
// Sizes (bytes, IPv4/IPv6, zone 0): CREATE/UPDATE TCP 18/42 with the default expiry (+1-3 with an
// expiry, +24 with windows), UDP 15/39; DELETE 15/39; REFRESH 16-18/40-42; BULK 13; RESYNC 5;
// digest list 3 + 8 per pair. A 1400-byte datagram carries about 75 IPv4 TCP state records.
//
// Invariants: encoders write exactly the bytes they report and nothing past `limit`; they
// allocate nothing. decodeRecord never throws on any bytes: a malformed record returns -1 with
// `out.error` set and the caller counts it.

import { assert } from "../stdx/assert.js";
import { isU16, isU32, isU8, r16, r32, w16, w32 } from "../stdx/bytes.js";
import type { FlowKey } from "../packet/flow-hash.js";
import { STATE_TIMEOUT_MS, type ConnectionSnapshot, type ConnState, type TcpDirectionSnapshot } from "../engine/types.js";
import {
  DIGEST_PAIRS_MAX,
  RECORD_DIGEST_PAIR_BYTES,
  RECORD_EXPIRY_BYTES_MAX,
  RECORD_EXPIRY_S_MAX,
  RECORD_EXTENSION_BYTES_MAX,
  RECORD_TCP_BYTES,
  RECORD_TCP_WINDOWS_BYTES,
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
  TRUNCATED: 1, // fewer bytes left than the record needs
  BAD_KIND: 2, // unknown kind, or state bits on a kind without a state
  BAD_LENGTH: 3, // a length or count field does not fit what follows
  BAD_FIELD: 4, // a field out of range (flags, window scale, expiry, extension overrun)
} as const;
export type RecordError = (typeof RecordError)[keyof typeof RecordError];
export const RECORD_ERROR_NAMES: readonly string[] = ["none", "truncated", "bad-kind", "bad-length", "bad-field"];

/** Key flag bits (the key's flags byte). */
export const KeyFlag = {
  IPV6: 0x01,
  ZONE: 0x02,
  SEEN_REPLY: 0x04,
  ASSURED: 0x08,
  TCP: 0x10,
  WINDOWS: 0x20,
  DEFAULT_EXPIRY: 0x40,
  EXTENSIONS: 0x80,
} as const;
const KEY_ONLY_FLAGS = KeyFlag.IPV6 | KeyFlag.ZONE;

/** Extension types inside CREATE/UPDATE. */
export const RecordExtension = {
  NAT_BINDING: 1,
} as const;

/** Largest TCP window scale shift (RFC 7323). */
const TCP_SCALE_MAX = 14;
const KIND_MASK = 0x0f;

/** Fixed-size records. */
export const BULK_RECORD_BYTES = 13;
export const RESYNC_REQUEST_RECORD_BYTES = 5;
export function digestListRecordBytes(pairCount: number): number {
  return 3 + pairCount * RECORD_DIGEST_PAIR_BYTES;
}

function keyBytes(addressLength: number, zone: number): number {
  return 2 + (zone !== 0 ? 2 : 0) + 2 * addressLength + 4;
}

/** Bytes of the LEB128 encoding of `seconds` (1..3). */
function expiryBytes(seconds: number): number {
  return seconds < 0x80 ? 1 : seconds < 0x4000 ? 2 : 3;
}

/** Largest CREATE/UPDATE of a given shape (worst-case expiry, no extensions), for callers that budget space. */
export function stateRecordBytesMax(addressLength: number, tcp: boolean, windows: boolean, zone = 0): number {
  return 1 + keyBytes(addressLength, zone) + RECORD_EXPIRY_BYTES_MAX + (tcp ? RECORD_TCP_BYTES : 0) + (windows ? RECORD_TCP_WINDOWS_BYTES : 0);
}
export function deleteRecordBytes(addressLength: number, zone = 0): number {
  return 1 + keyBytes(addressLength, zone);
}




function assertKey(key: FlowKey): void {
  const length = key.src.length;
  assert(length === 4 || length === 16, "address must be 4 or 16 bytes");
  assert(key.dst.length === length, "src and dst of one family");
  assert(isU16(key.zone), "zone is a u16 on the wire");
  assert(isU8(key.protocol), "protocol is a u8");
  assert(isU16(key.srcPort) && isU16(key.dstPort), "ports are u16");
}

/** Writes a key at offset (space already checked); returns the offset after it. */
function writeKey(buf: Uint8Array, offset: number, key: FlowKey, flags: number): number {
  const addressLength = key.src.length;
  buf[offset] = flags | (addressLength === 16 ? KeyFlag.IPV6 : 0) | (key.zone !== 0 ? KeyFlag.ZONE : 0);
  buf[offset + 1] = key.protocol;
  let p = offset + 2;
  if (key.zone !== 0) {
    w16(buf, p, key.zone);
    p += 2;
  }
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

/** Whole seconds until `expiresAtMs`, rounded up and clamped to what the wire carries (0 when expired). */
export function remainingSecondsOf(expiresAtMs: number, nowMs: number): number {
  const remaining = Math.ceil((expiresAtMs - nowMs) / 1000);
  if (!(remaining > 0)) return 0;
  return remaining > RECORD_EXPIRY_S_MAX ? RECORD_EXPIRY_S_MAX : remaining;
}

function writeExpiry(buf: Uint8Array, p: number, seconds: number): number {
  while (seconds >= 0x80) {
    buf[p++] = (seconds & 0x7f) | 0x80;
    seconds >>>= 7;
  }
  buf[p++] = seconds;
  return p;
}

/**
 * CREATE or UPDATE: the connection `s` as of nowMs. `windows`: include the TCP windows (see the
 * file comment for when they matter). Writes into buf[offset, limit); returns the offset after
 * the record, or -1 when it does not fit. `natBinding` is the reserved NAT extension.
 */
function encodeState(
  kind: number,
  buf: Uint8Array,
  offset: number,
  limit: number,
  s: ConnectionSnapshot,
  nowMs: number,
  windows: boolean,
  natBinding: Uint8Array | null,
): number {
  assertKey(s);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(isU8(s.state) && s.state < STATE_TIMEOUT_MS.length, "state out of range");
  assert(natBinding === null || natBinding.length + 2 <= RECORD_EXTENSION_BYTES_MAX, "NAT binding too long");
  const tcp = s.tcp !== null;
  const withWindows = tcp && windows;
  const seconds = remainingSecondsOf(s.expiresAtMs, nowMs);
  // The state's full timeout (what the packet that changed the state gave it) needs no bytes.
  const defaultExpiry = STATE_TIMEOUT_MS[s.state]! > 0 && seconds * 1000 === STATE_TIMEOUT_MS[s.state]!;
  const length =
    1 +
    keyBytes(s.src.length, s.zone) +
    (defaultExpiry ? 0 : expiryBytes(seconds)) +
    (tcp ? RECORD_TCP_BYTES : 0) +
    (withWindows ? RECORD_TCP_WINDOWS_BYTES : 0) +
    (natBinding === null ? 0 : 3 + natBinding.length);
  if (offset + length > limit) return -1;
  buf[offset] = kind | (s.state << 4);
  const flags =
    (s.seenReply ? KeyFlag.SEEN_REPLY : 0) |
    (s.assured ? KeyFlag.ASSURED : 0) |
    (tcp ? KeyFlag.TCP : 0) |
    (withWindows ? KeyFlag.WINDOWS : 0) |
    (defaultExpiry ? KeyFlag.DEFAULT_EXPIRY : 0) |
    (natBinding !== null ? KeyFlag.EXTENSIONS : 0);
  let p = writeKey(buf, offset + 1, s, flags);
  if (!defaultExpiry) p = writeExpiry(buf, p, seconds);
  if (s.tcp !== null) {
    const o = s.tcp.original;
    const r = s.tcp.reply;
    assert(isU8(o.scale) && o.scale <= TCP_SCALE_MAX && isU8(r.scale) && r.scale <= TCP_SCALE_MAX, "TCP window scale 0..14");
    assert(isU8(o.flags) && isU8(r.flags), "TCP direction flags are a u8");
    buf[p] = (o.scale << 4) | r.scale;
    buf[p + 1] = o.flags;
    buf[p + 2] = r.flags;
    p += RECORD_TCP_BYTES;
    if (withWindows) {
      assert(isU32(o.end) && isU32(o.maxEnd) && isU32(o.maxWindow) && isU32(r.end) && isU32(r.maxEnd) && isU32(r.maxWindow), "TCP window fields are u32");
      w32(buf, p, o.end);
      w32(buf, p + 4, o.maxEnd);
      w32(buf, p + 8, o.maxWindow);
      w32(buf, p + 12, r.end);
      w32(buf, p + 16, r.maxEnd);
      w32(buf, p + 20, r.maxWindow);
      p += RECORD_TCP_WINDOWS_BYTES;
    }
  }
  if (natBinding !== null) {
    buf[p] = 2 + natBinding.length;
    buf[p + 1] = RecordExtension.NAT_BINDING;
    buf[p + 2] = natBinding.length;
    buf.set(natBinding, p + 3);
    p += 3 + natBinding.length;
  }
  assert(p === offset + length, "state record length mismatch");
  return p;
}

/** CREATE: the full connection. See encodeState for the arguments. */
export function encodeCreate(
  buf: Uint8Array,
  offset: number,
  limit: number,
  s: ConnectionSnapshot,
  nowMs: number,
  windows = true,
  natBinding: Uint8Array | null = null,
): number {
  return encodeState(RecordKind.CREATE, buf, offset, limit, s, nowMs, windows, natBinding);
}

/** UPDATE: a state transition or NAT binding change; same layout as CREATE. */
export function encodeUpdate(
  buf: Uint8Array,
  offset: number,
  limit: number,
  s: ConnectionSnapshot,
  nowMs: number,
  windows = true,
  natBinding: Uint8Array | null = null,
): number {
  return encodeState(RecordKind.UPDATE, buf, offset, limit, s, nowMs, windows, natBinding);
}

/** DELETE: the key only. */
export function encodeDelete(buf: Uint8Array, offset: number, limit: number, key: FlowKey): number {
  assertKey(key);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  const length = deleteRecordBytes(key.src.length, key.zone);
  if (offset + length > limit) return -1;
  buf[offset] = RecordKind.DELETE;
  return writeKey(buf, offset + 1, key, 0);
}

/** REFRESH: the key and the new remaining idle time (rounded up to whole seconds). */
export function encodeRefresh(buf: Uint8Array, offset: number, limit: number, key: FlowKey, remainingMs: number): number {
  assertKey(key);
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(remainingMs >= 0, "remainingMs is not negative");
  const seconds = remainingSecondsOf(remainingMs, 0);
  const length = deleteRecordBytes(key.src.length, key.zone) + expiryBytes(seconds);
  if (offset + length > limit) return -1;
  buf[offset] = RecordKind.REFRESH;
  const p = writeKey(buf, offset + 1, key, 0);
  return writeExpiry(buf, p, seconds);
}

function encodeBulk(kind: number, buf: Uint8Array, offset: number, limit: number, bucket: number, recordCount: number, digest: number): number {
  assert(limit <= buf.length && offset >= 0, "encode bounds outside the buffer");
  assert(isU32(bucket) && isU32(recordCount) && isU32(digest), "bucket, record count and digest are u32");
  if (offset + BULK_RECORD_BYTES > limit) return -1;
  buf[offset] = kind;
  w32(buf, offset + 1, bucket);
  w32(buf, offset + 5, recordCount);
  w32(buf, offset + 9, digest);
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
  buf[offset] = kind;
  w16(buf, offset + 1, count);
  let p = offset + 3;
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
  assert(isU32(bucket), "bucket is a u32");
  if (offset + RESYNC_REQUEST_RECORD_BYTES > limit) return -1;
  buf[offset] = RecordKind.RESYNC_REQUEST;
  w32(buf, offset + 1, bucket);
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
  /** BULK_*, RESYNC_REQUEST and the first pair of a digest list: the bucket on the wire; -1 for key records (derived by the receiver). */
  bucket = -1;
  /** Where the record sits in the decoded buffer. */
  recordOffset = 0;
  recordLength = 0;
  // Key (CREATE, UPDATE, DELETE, REFRESH). Addresses are the first addressLength bytes of src
  // and dst (copies), and also buf[srcOffset..] / buf[dstOffset..] of the decoded buffer.
  zone = 0;
  protocol = 0;
  addressLength = 0;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  srcOffset = 0;
  dstOffset = 0;
  srcPort = 0;
  dstPort = 0;
  // CREATE, UPDATE (remainingMs also REFRESH)
  state = 0;
  remainingMs = 0;
  seenReply = false;
  assured = false;
  hasTcp = false;
  /** The record carried TCP windows; without, tcpOriginal/tcpReply windows are 0 ("not known"). */
  hasWindows = false;
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

/** Reads a key at p (flags byte first) within buf[.., end); returns the offset after it or -1. */
function readKey(buf: Uint8Array, p: number, end: number, out: DecodedRecord, allowedFlags: number): number {
  if (p + 2 > end) return fail(out, RecordError.TRUNCATED);
  const flags = buf[p]!;
  if ((flags & ~allowedFlags) !== 0) return fail(out, RecordError.BAD_FIELD);
  const addressLength = (flags & KeyFlag.IPV6) !== 0 ? 16 : 4;
  const hasZone = (flags & KeyFlag.ZONE) !== 0;
  if (p + 2 + (hasZone ? 2 : 0) + 2 * addressLength + 4 > end) return fail(out, RecordError.TRUNCATED);
  out.protocol = buf[p + 1]!;
  p += 2;
  if (hasZone) {
    out.zone = r16(buf, p);
    // Zone 0 has one encoding (no field), so equal keys are equal bytes.
    if (out.zone === 0) return fail(out, RecordError.BAD_FIELD);
    p += 2;
  } else {
    out.zone = 0;
  }
  out.addressLength = addressLength;
  out.seenReply = (flags & KeyFlag.SEEN_REPLY) !== 0;
  out.assured = (flags & KeyFlag.ASSURED) !== 0;
  out.hasTcp = (flags & KeyFlag.TCP) !== 0;
  out.hasWindows = (flags & KeyFlag.WINDOWS) !== 0;
  out.srcOffset = p;
  const src = out.src;
  const dst = out.dst;
  for (let i = 0; i < addressLength; i++) src[i] = buf[p + i]!;
  p += addressLength;
  out.dstOffset = p;
  for (let i = 0; i < addressLength; i++) dst[i] = buf[p + i]!;
  p += addressLength;
  out.srcPort = r16(buf, p);
  out.dstPort = r16(buf, p + 2);
  return p + 4;
}

/** Reads a LEB128 expiry at p into out.remainingMs; returns the offset after it or -1. */
function readExpiry(buf: Uint8Array, p: number, end: number, out: DecodedRecord): number {
  let seconds = 0;
  for (let i = 0; i < RECORD_EXPIRY_BYTES_MAX; i++) {
    if (p >= end) return fail(out, RecordError.TRUNCATED);
    const byte = buf[p++]!;
    seconds |= (byte & 0x7f) << (7 * i);
    if ((byte & 0x80) === 0) {
      // One encoding per value: no trailing zero groups.
      if (byte === 0 && i > 0) return fail(out, RecordError.BAD_FIELD);
      out.remainingMs = seconds * 1000;
      return p;
    }
  }
  return fail(out, RecordError.BAD_FIELD);
}

function readState(buf: Uint8Array, p: number, end: number, out: DecodedRecord): number {
  const flagsAt = p;
  p = readKey(buf, p, end, out, 0xff);
  if (p < 0) return -1;
  const flags = buf[flagsAt]!;
  if ((flags & KeyFlag.DEFAULT_EXPIRY) !== 0) {
    const timeout = STATE_TIMEOUT_MS[out.state] ?? 0;
    if (timeout === 0) return fail(out, RecordError.BAD_FIELD);
    out.remainingMs = timeout;
  } else {
    p = readExpiry(buf, p, end, out);
    if (p < 0) return -1;
  }
  const o = out.tcpOriginal;
  const r = out.tcpReply;
  if (out.hasTcp) {
    if (p + RECORD_TCP_BYTES > end) return fail(out, RecordError.TRUNCATED);
    const scales = buf[p]!;
    o.scale = scales >>> 4;
    r.scale = scales & 0xf;
    if (o.scale > TCP_SCALE_MAX || r.scale > TCP_SCALE_MAX) return fail(out, RecordError.BAD_FIELD);
    o.flags = buf[p + 1]!;
    r.flags = buf[p + 2]!;
    p += RECORD_TCP_BYTES;
    if (out.hasWindows) {
      if (p + RECORD_TCP_WINDOWS_BYTES > end) return fail(out, RecordError.TRUNCATED);
      o.end = r32(buf, p);
      o.maxEnd = r32(buf, p + 4);
      o.maxWindow = r32(buf, p + 8);
      r.end = r32(buf, p + 12);
      r.maxEnd = r32(buf, p + 16);
      r.maxWindow = r32(buf, p + 20);
      p += RECORD_TCP_WINDOWS_BYTES;
    } else {
      o.end = o.maxEnd = o.maxWindow = 0;
      r.end = r.maxEnd = r.maxWindow = 0;
    }
  } else if (out.hasWindows) {
    return fail(out, RecordError.BAD_FIELD);
  }
  out.natOffset = -1;
  out.natLength = 0;
  if ((flags & KeyFlag.EXTENSIONS) !== 0) {
    if (p >= end) return fail(out, RecordError.TRUNCATED);
    const areaEnd = p + 1 + buf[p]!;
    if (areaEnd > end) return fail(out, RecordError.TRUNCATED);
    p++;
    // Each extension is bounded by the area, so the loop is too.
    while (p < areaEnd) {
      if (p + 2 > areaEnd) return fail(out, RecordError.BAD_FIELD);
      const type = buf[p]!;
      const length = buf[p + 1]!;
      if (p + 2 + length > areaEnd) return fail(out, RecordError.BAD_FIELD);
      if (type === RecordExtension.NAT_BINDING) {
        out.natOffset = p + 2;
        out.natLength = length;
      }
      p += 2 + length;
    }
  }
  return p;
}

/**
 * Decodes the record at buf[offset, end). Returns the offset of the next record, or -1 with
 * out.error set. Never throws on any input bytes.
 */
export function decodeRecord(buf: Uint8Array, offset: number, end: number, out: DecodedRecord): number {
  out.error = RecordError.NONE;
  if (offset < 0 || end > buf.length || offset >= end) return fail(out, RecordError.TRUNCATED);
  const first = buf[offset]!;
  const kind = first & KIND_MASK;
  const state = first >>> 4;
  out.kind = kind;
  out.bucket = -1;
  out.recordOffset = offset;
  if (state !== 0 && kind !== RecordKind.CREATE && kind !== RecordKind.UPDATE) return fail(out, RecordError.BAD_KIND);
  let p = offset + 1;
  switch (kind) {
    case RecordKind.CREATE:
    case RecordKind.UPDATE:
      out.state = state;
      p = readState(buf, p, end, out);
      break;
    case RecordKind.DELETE:
      p = readKey(buf, p, end, out, KEY_ONLY_FLAGS);
      break;
    case RecordKind.REFRESH:
      p = readKey(buf, p, end, out, KEY_ONLY_FLAGS);
      if (p < 0) return -1;
      p = readExpiry(buf, p, end, out);
      break;
    case RecordKind.BULK_BEGIN:
    case RecordKind.BULK_END:
      if (offset + BULK_RECORD_BYTES > end) return fail(out, RecordError.TRUNCATED);
      out.bucket = r32(buf, p);
      out.recordCount = r32(buf, p + 4);
      out.digest = r32(buf, p + 8);
      p += 12;
      break;
    case RecordKind.DIGEST_REQUEST:
    case RecordKind.DIGEST_REPLY: {
      if (p + 2 > end) return fail(out, RecordError.TRUNCATED);
      const count = r16(buf, p);
      if (count > DIGEST_PAIRS_MAX) return fail(out, RecordError.BAD_FIELD);
      if (offset + digestListRecordBytes(count) > end) return fail(out, RecordError.BAD_LENGTH);
      p += 2;
      for (let i = 0; i < count; i++) {
        out.pairBuckets[i] = r32(buf, p);
        out.pairDigests[i] = r32(buf, p + 4);
        p += RECORD_DIGEST_PAIR_BYTES;
      }
      out.pairCount = count;
      out.bucket = count > 0 ? out.pairBuckets[0]! : 0;
      break;
    }
    case RecordKind.RESYNC_REQUEST:
      if (offset + RESYNC_REQUEST_RECORD_BYTES > end) return fail(out, RecordError.TRUNCATED);
      out.bucket = r32(buf, p);
      p += 4;
      break;
    default:
      return fail(out, RecordError.BAD_KIND);
  }
  if (p < 0) return -1;
  out.recordLength = p - offset;
  return p;
}

/** Reads only the kind of the record at offset. */
export function recordKindAt(buf: Uint8Array, offset: number): number {
  return buf[offset]! & KIND_MASK;
}

/** True for records that carry connection state of their bucket (losing one needs a resync). */
export function isStateRecordKind(kind: number): boolean {
  return kind >= RecordKind.CREATE && kind <= RecordKind.BULK_END;
}

// ---- slow-path conversions (allocate; API and tests) ------------------------------------

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

/** Where records go: the channel implements it (channel.ts). */
export interface RecordSink {
  /** Appends one whole record, bytes[offset, offset + length). The sink copies it. */
  enqueue(bytes: Uint8Array, offset: number, length: number, nowMs: number): void;
}
