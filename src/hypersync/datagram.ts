// The HyperSync datagram: a versioned, authenticated envelope around records (or NACK ranges).
//
//    0       2       3       4               8               12               16
//   | "TS"  | ver u8| type u8| clusterId u32 | senderId u32  | receiverId u32 | session u32  |
//   20                24            28            32            36             40        42        44
//   | peerSession u32 | epoch u32   | seq u32     | ack u32     | firstSeq u32 | flags u16 | count u16 |
//   44 ..................................................... len-16          len
//   | payload: records (DATA) or (first u32, last u32) ranges (NACK)  | HMAC-SHA256[0..16) |
//
// - receiverId: the member the datagram is for, so authentic traffic between two members
//   cannot be replayed into a third member's channel with the same sender.
// - session: the sender's incarnation; it must grow across restarts of a member, so a receiver
//   can tell a restarted peer (whose sequence numbers begin again) from a replay of old traffic.
// - peerSession: the receiver's session as the sender last saw it; `ack` refers to sequence
//   numbers of that session only, so acknowledgements never leak across a restart.
// - seq: DATA sequence number; in ACK/NACK/KEEPALIVE, the highest DATA seq sent so far, which
//   lets the receiver see a lost tail.
// - ack: cumulative, the highest DATA seq received in order from the peer.
// - firstSeq: the oldest DATA seq the sender still retransmits; a receiver waiting for an older
//   one gives up on it (the sender has queued a bulk resync of its buckets instead).
// - count: records in a DATA payload, ranges in a NACK payload, 0 otherwise.
//
// The MAC covers every byte before it, with the cluster key. openDatagram checks, in order:
// length, magic, version, cluster id (cheap, and names a misconfigured neighbour cluster), MAC
// (constant-time), then the authenticated fields (type, epoch, payload shape). Nothing here
// throws on wire bytes; every failure is a result code the channel counts.

import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import {
  CLUSTER_KEY_BYTES_MIN,
  DATAGRAM_BYTES_MAX,
  DATAGRAM_HEADER_BYTES,
  DATAGRAM_PAYLOAD_BYTES_MAX,
  MAC_BYTES,
  NACK_RANGES_MAX,
  PROTOCOL_VERSION,
} from "./constants.js";

const MAGIC_0 = 0x54; // 'T'
const MAGIC_1 = 0x53; // 'S'

export const DatagramType = {
  DATA: 1,
  ACK: 2,
  KEEPALIVE: 3,
  NACK: 4,
} as const;
export type DatagramType = (typeof DatagramType)[keyof typeof DatagramType];

export const DatagramFlag = {
  /** The receiver should acknowledge at once (sent on retransmissions and a filling queue). */
  ACK_NOW: 0x0001,
  /** This DATA datagram is a retransmission (diagnostics only). */
  RETRANSMIT: 0x0002,
} as const;
const KNOWN_FLAGS = DatagramFlag.ACK_NOW | DatagramFlag.RETRANSMIT;

/** Result of openDatagram: OK or why the datagram was dropped. */
export const OpenResult = {
  OK: 0,
  TRUNCATED: 1,
  TOO_LONG: 2,
  BAD_MAGIC: 3,
  BAD_VERSION: 4,
  WRONG_CLUSTER: 5,
  BAD_MAC: 6,
  STALE_EPOCH: 7,
  BAD_TYPE: 8,
  MALFORMED: 9,
} as const;
export type OpenResult = (typeof OpenResult)[keyof typeof OpenResult];
export const OPEN_RESULT_NAMES: readonly string[] = [
  "ok",
  "truncated",
  "too-long",
  "bad-magic",
  "bad-version",
  "wrong-cluster",
  "bad-mac",
  "stale-epoch",
  "bad-type",
  "malformed",
];

/** Header fields as numbers; one reusable object per sender or receiver. */
export class DatagramHeader {
  type = 0;
  clusterId = 0;
  senderId = 0;
  receiverId = 0;
  session = 0;
  peerSession = 0;
  epoch = 0;
  seq = 0;
  ack = 0;
  firstSeq = 0;
  flags = 0;
  count = 0;
  /** Set by openDatagram: the payload is buf[payloadOffset, payloadEnd). */
  payloadOffset = DATAGRAM_HEADER_BYTES;
  payloadEnd = DATAGRAM_HEADER_BYTES;
}

/**
 * The cluster key, prepared once: Node keeps it as a KeyObject so each MAC skips importing
 * the key bytes (measured faster than reusing copied ipad/opad hash states).
 */
export class MacKey {
  private readonly keyObject: KeyObject;

  constructor(key: Uint8Array) {
    if (key.length < CLUSTER_KEY_BYTES_MIN) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `cluster key must be at least ${CLUSTER_KEY_BYTES_MIN} bytes, got ${key.length}`);
    }
    this.keyObject = createSecretKey(key);
  }

  /** Full HMAC-SHA256 of buf[0, end) (32 bytes; the wire keeps the first MAC_BYTES). */
  digest(buf: Uint8Array, end: number): Buffer {
    return createHmac("sha256", this.keyObject).update(buf.subarray(0, end)).digest();
  }
}

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

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/**
 * Writes the header `h` into buf[0, 40), then the MAC of buf[0, 40 + payloadLength) after the
 * payload (which the caller wrote at buf[40, ...)). Returns the datagram's length. Resealing
 * a retransmission is the same call with fresh ack/epoch fields.
 */
export function sealDatagram(buf: Uint8Array, h: DatagramHeader, payloadLength: number, key: MacKey): number {
  assert(payloadLength >= 0 && payloadLength <= DATAGRAM_PAYLOAD_BYTES_MAX, "payload larger than a datagram");
  assert(buf.length >= DATAGRAM_HEADER_BYTES + payloadLength + MAC_BYTES, "buffer too small for the datagram");
  assert(h.type >= DatagramType.DATA && h.type <= DatagramType.NACK, "unknown datagram type");
  assert(
    isU32(h.clusterId) && isU32(h.senderId) && isU32(h.receiverId) && isU32(h.session) && isU32(h.peerSession) && isU32(h.epoch),
    "header identity fields are u32",
  );
  assert(isU32(h.seq) && isU32(h.ack) && isU32(h.firstSeq), "sequence fields are u32");
  assert((h.flags & ~KNOWN_FLAGS) === 0 && h.count >= 0 && h.count <= 0xffff, "flags or count out of range");
  buf[0] = MAGIC_0;
  buf[1] = MAGIC_1;
  buf[2] = PROTOCOL_VERSION;
  buf[3] = h.type;
  w32(buf, 4, h.clusterId);
  w32(buf, 8, h.senderId);
  w32(buf, 12, h.receiverId);
  w32(buf, 16, h.session);
  w32(buf, 20, h.peerSession);
  w32(buf, 24, h.epoch);
  w32(buf, 28, h.seq);
  w32(buf, 32, h.ack);
  w32(buf, 36, h.firstSeq);
  w16(buf, 40, h.flags);
  w16(buf, 42, h.count);
  const macOffset = DATAGRAM_HEADER_BYTES + payloadLength;
  const mac = key.digest(buf, macOffset);
  for (let i = 0; i < MAC_BYTES; i++) buf[macOffset + i] = mac[i]!;
  return macOffset + MAC_BYTES;
}

/**
 * Verifies buf[0, len) and fills `out`. Returns OpenResult.OK or the reason to drop it.
 * `minEpoch`: datagrams stamped with an older epoch are stale (a replay or a lagging member).
 */
export function openDatagram(
  buf: Uint8Array,
  len: number,
  key: MacKey,
  clusterId: number,
  minEpoch: number,
  out: DatagramHeader,
): OpenResult {
  if (len < DATAGRAM_HEADER_BYTES + MAC_BYTES || len > buf.length) return OpenResult.TRUNCATED;
  if (len > DATAGRAM_BYTES_MAX) return OpenResult.TOO_LONG;
  if (buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) return OpenResult.BAD_MAGIC;
  if (buf[2] !== PROTOCOL_VERSION) return OpenResult.BAD_VERSION;
  if (r32(buf, 4) !== clusterId >>> 0) return OpenResult.WRONG_CLUSTER;
  const macOffset = len - MAC_BYTES;
  const mac = key.digest(buf, macOffset);
  if (!timingSafeEqual(mac.subarray(0, MAC_BYTES), buf.subarray(macOffset, len))) return OpenResult.BAD_MAC;
  // Authenticated from here on.
  const type = buf[3]!;
  if (type < DatagramType.DATA || type > DatagramType.NACK) return OpenResult.BAD_TYPE;
  out.type = type;
  out.clusterId = clusterId >>> 0;
  out.senderId = r32(buf, 8);
  out.receiverId = r32(buf, 12);
  out.session = r32(buf, 16);
  out.peerSession = r32(buf, 20);
  out.epoch = r32(buf, 24);
  out.seq = r32(buf, 28);
  out.ack = r32(buf, 32);
  out.firstSeq = r32(buf, 36);
  out.flags = r16(buf, 40);
  out.count = r16(buf, 42);
  out.payloadOffset = DATAGRAM_HEADER_BYTES;
  out.payloadEnd = macOffset;
  if (out.epoch < minEpoch) return OpenResult.STALE_EPOCH;
  const payloadLength = macOffset - DATAGRAM_HEADER_BYTES;
  switch (type) {
    case DatagramType.DATA:
      if (out.count === 0 || payloadLength === 0) return OpenResult.MALFORMED;
      break;
    case DatagramType.NACK:
      if (out.count === 0 || out.count > NACK_RANGES_MAX || payloadLength !== out.count * 8) return OpenResult.MALFORMED;
      break;
    default:
      if (out.count !== 0 || payloadLength !== 0) return OpenResult.MALFORMED;
  }
  if (out.session === 0) return OpenResult.MALFORMED;
  return OpenResult.OK;
}

/**
 * The claimed sender of a datagram, unauthenticated, for demultiplexing to a channel (which
 * then verifies everything). -1 when too short to carry a header.
 */
export function readSenderId(buf: Uint8Array, len: number): number {
  if (len < DATAGRAM_HEADER_BYTES || len > buf.length) return -1;
  return r32(buf, 8);
}

/** The claimed receiver, unauthenticated (see readSenderId). -1 when too short. */
export function readReceiverId(buf: Uint8Array, len: number): number {
  if (len < DATAGRAM_HEADER_BYTES || len > buf.length) return -1;
  return r32(buf, 12);
}

/** Writes NACK range i (first..last inclusive) into a NACK payload starting at payloadOffset. */
export function writeNackRange(buf: Uint8Array, payloadOffset: number, i: number, first: number, last: number): void {
  w32(buf, payloadOffset + i * 8, first);
  w32(buf, payloadOffset + i * 8 + 4, last);
}

/** Reads the first seq of NACK range i. */
export function nackRangeFirst(buf: Uint8Array, payloadOffset: number, i: number): number {
  return r32(buf, payloadOffset + i * 8);
}

/** Reads the last seq of NACK range i. */
export function nackRangeLast(buf: Uint8Array, payloadOffset: number, i: number): number {
  return r32(buf, payloadOffset + i * 8 + 4);
}
