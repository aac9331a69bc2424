// The HyperSync datagram: a versioned, authenticated envelope around records (or NACK ranges).
//
// Two header forms. Both peers of a channel know most identity fields already (cluster, who
// sends to whom, both sessions, the protocol version), so once each side has proved that it
// knows the other's session those fields stop travelling: they are still authenticated, as a
// pseudo-header the MAC covers (TCP's checksum pseudo-header, ESP's implicit sequence bits).
//
//   short (10 bytes, 12 with FIRST):
//     0             1         2          6          10
//     | type|flags | epoch lo | seq u32  | ack u32  | [back u16] | payload ... | MAC 8 |
//   long (32 bytes):
//     | type|flags | version | epoch u32 | seq u32 | ack u32 | back u16 | clusterId u32 |
//     | senderId u16 | receiverId u16 | session u32 | peerSession u32 | payload ... | MAC 8 |
//
//   MAC = SipHash-2-4 (128-bit key, 64-bit tag) over the pseudo-header
//         | clusterId u32 | version u8, 0, senderId u16 | receiverId u32 | session u32 | peerSession u32 | epoch u32 |
//         followed by every datagram byte before the tag (so the long form's version byte is
//         covered twice, and the short form's implied version once).
//
// - type|flags: type in bits 0-2 (DATA, ACK, KEEPALIVE, NACK); ACK_NOW 0x08, RETRANSMIT 0x10,
//   LONG 0x20, FIRST 0x40 (the short form carries `back`).
// - session: the sender's incarnation; it grows across restarts of a member, so a receiver can
//   tell a restarted peer (whose sequence numbers begin again) from a replay of old traffic.
// - peerSession: the receiver's session as the sender last saw it (0: unknown); `ack` refers to
//   sequence numbers of that session only, so acknowledgements never leak across a restart.
// - A sender uses the short form only when it knows the peer's session and the peer has shown
//   (by a datagram naming our session) that it knows ours; the receiver then fills the
//   pseudo-header from its own state. A short datagram from an old session, for another member,
//   another cluster or of a protocol version outside the receiver's range does not verify: the
//   MAC is the check (counted as bad-mac). The version travels in the long form, which every
//   channel starts with (see "Versions" below for the short form).
// - epoch: the short form carries its low 8 bits; the receiver takes the epoch nearest its own
//   with those bits (members of one cluster are never 128 epochs apart: a member that far
//   behind is stale anyway, and a wrong guess fails the MAC).
// - seq: DATA sequence number; in ACK/NACK/KEEPALIVE, the highest DATA seq sent so far, which
//   lets the receiver see a lost tail. ack: cumulative, the highest DATA seq received in order.
// - back: seq + 1 - firstSeq, where firstSeq is the oldest DATA seq the sender still retransmits;
//   a receiver waiting for an older one gives up on it (the sender has queued a bulk resync).
//   The short form carries it only while the peer may be waiting for an abandoned datagram.
//
// Versions (protocol-version.ts). The sender seals with its send version (h.version); a
// receiver accepts any version in its range [ctx.versionMin, ctx.versionMax] and drops a long
// form outside it as bad-version. The short form carries no version: the receiver tries the
// version of the peer's last authentic datagram (ctx.peerVersion) first and, only when that
// MAC fails, each other version of its range. So a peer that changed its send version is
// understood from its next datagram, whatever order datagrams arrive in; a datagram verifies
// only under the version it was sealed with (the MAC covers it), never under a version outside
// the receiver's range. Trying k versions gives a forger k chances instead of one (2^-63 for
// the two versions of an upgrade) and costs k MACs per forged datagram, on the failure path
// only; the channel keeps the short form for peers that send the version it sends, so the
// fallback runs only while a group changes version. A future format whose short header
// differs must parse the short form per version in the fallback.
//
// The MAC. SipHash-2-4 is a keyed pseudo-random function designed as a MAC for short inputs
// (Aumasson and Bernstein, 2012): 128-bit key, 64-bit tag. A forgery succeeds with probability
// about 2^-64 per attempt, and every failed attempt is counted (badDatagrams), so an attacker on
// the sync network cannot get near that; the 128-bit key is derived from the cluster key with
// HMAC-SHA256, so cluster keys stay as they were. The trade-off against HMAC-SHA256 (the
// version 1 MAC, 128-bit tag): a 64-bit tag and a younger, less studied primitive, for a MAC that
// costs no native call (createHmac costs ~4-6 us per datagram whatever its size, SipHash in
// JS ~0.5 us for a small datagram and about the same as HMAC for a full one). Replays are not
// the MAC's job: sequence numbers and sessions (both authenticated) reject them.
//
// openDatagram checks, in order: length, form; for the long form the version (in the receiver's
// range) and the cluster id (cheap, and names a misconfigured neighbour); the MAC (constant-time
// compare; for the short form, under each version of the range if need be); then the
// authenticated fields (type, member ids, epoch, payload shape). Nothing here throws on wire
// bytes; every failure is a result code the channel counts.

import { createHmac } from "node:crypto";
import { assert } from "../stdx/assert.js";
import { isU16, isU32, r16, r32, w16, w32 } from "../stdx/bytes.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import {
  CLUSTER_KEY_BYTES_MIN,
  DATAGRAM_BYTES_MAX,
  DATAGRAM_LONG_HEADER_BYTES,
  DATAGRAM_PAYLOAD_BYTES_MAX,
  DATAGRAM_SHORT_HEADER_BYTES,
  DATAGRAM_SHORT_HEADER_FIRST_BYTES,
  MAC_BYTES,
  NACK_RANGES_MAX,
  PROTOCOL_VERSION_MIN,
  PROTOCOL_VERSION_WIRE_MIN,
} from "./constants.js";

export const DatagramType = {
  DATA: 1,
  ACK: 2,
  KEEPALIVE: 3,
  NACK: 4,
} as const;
export type DatagramType = (typeof DatagramType)[keyof typeof DatagramType];

const TYPE_MASK = 0x07;

export const DatagramFlag = {
  /** The receiver should acknowledge at once (retransmissions, a filling queue, the end of a bulk). */
  ACK_NOW: 0x08,
  /** This DATA datagram is a retransmission (diagnostics only). */
  RETRANSMIT: 0x10,
} as const;
/** Set by sealDatagram for the long form; not a caller's flag. */
const FLAG_LONG = 0x20;
/** Set by sealDatagram when a short header carries `back` (firstSeq); not a caller's flag. */
const FLAG_FIRST = 0x40;
const KNOWN_FLAGS = DatagramFlag.ACK_NOW | DatagramFlag.RETRANSMIT;

/** Result of openDatagram: OK or why the datagram was dropped. */
export const OpenResult = {
  OK: 0,
  TRUNCATED: 1,
  TOO_LONG: 2,
  BAD_VERSION: 3,
  WRONG_CLUSTER: 4,
  BAD_MAC: 5,
  STALE_EPOCH: 6,
  BAD_TYPE: 7,
  MALFORMED: 8,
  /** A short-form datagram from a peer whose session this receiver does not know: it cannot be verified. */
  UNKNOWN_SESSION: 9,
  /** Authentic (long form), but from another member than expected. */
  WRONG_PEER: 10,
  /** Authentic (long form), but addressed to another member (a replay from another channel). */
  MISADDRESSED: 11,
} as const;
export type OpenResult = (typeof OpenResult)[keyof typeof OpenResult];
export const OPEN_RESULT_NAMES: readonly string[] = [
  "ok",
  "truncated",
  "too-long",
  "bad-version",
  "wrong-cluster",
  "bad-mac",
  "stale-epoch",
  "bad-type",
  "malformed",
  "unknown-session",
  "wrong-peer",
  "misaddressed",
];

/** Header fields as numbers (full values, whichever form travels); one reusable object per sender or receiver. */
export class DatagramHeader {
  type = 0;
  flags = 0;
  /** Long form: identities and sessions travel. Set by openDatagram; chosen by the sender for sealDatagram. */
  long = true;
  /**
   * firstSeq travels (always in the long form). A sender sets it while the peer may wait for
   * an abandoned datagram; openDatagram sets it when the datagram carried it (else firstSeq is
   * meaningless).
   */
  hasFirstSeq = true;
  /** Protocol version: the sender's send version (sealDatagram); the version it verified under (openDatagram). */
  version = PROTOCOL_VERSION_MIN;
  clusterId = 0;
  senderId = 0;
  receiverId = 0;
  session = 0;
  peerSession = 0;
  epoch = 0;
  seq = 0;
  ack = 0;
  firstSeq = 0;
  /** Set by openDatagram: the payload is buf[payloadOffset, payloadEnd). */
  payloadOffset = 0;
  payloadEnd = 0;
}

/** What a receiver knows, to check a datagram and to fill a short form's pseudo-header. */
export interface OpenContext {
  clusterId: number;
  /** This member (the expected receiver). */
  localId: number;
  /** The member the channel expects datagrams from. */
  peerId: number;
  /** This member's session (a short form implies it as peerSession). */
  localSession: number;
  /** The peer's session as last heard, 0 when unknown (a short form implies it as session). */
  peerSession: number;
  /** This member's epoch: a short form's epoch is the nearest with the same low 16 bits. */
  epoch: number;
  /** Datagrams stamped with an older epoch are stale (a replay or a lagging member). */
  minEpoch: number;
  /** The versions this member reads (protocol-version.ts): others are dropped (bad-version). */
  versionMin: number;
  versionMax: number;
  /** Version of the peer's last authentic datagram (in range): a short form's first guess. */
  peerVersion: number;
}

/** Bytes of the pseudo-header the MAC covers in front of the datagram. */
const PSEUDO_HEADER_BYTES = 24;

/**
 * The cluster's MAC key, prepared once: a SipHash-2-4 key derived from the cluster key, and the
 * scratch of one MAC computation (the pseudo-header bytes and the resulting tag).
 */
export class MacKey {
  /** k0 low, k0 high, k1 low, k1 high (SipHash reads its key as two little-endian u64). */
  private readonly words = new Int32Array(4);
  private readonly pseudo = new Uint8Array(PSEUDO_HEADER_BYTES);
  /** The last tag(): high and low 32 bits of the 64-bit tag. */
  readonly result = new Uint32Array(2);

  constructor(key: Uint8Array) {
    if (key.length < CLUSTER_KEY_BYTES_MIN) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `cluster key must be at least ${CLUSTER_KEY_BYTES_MIN} bytes, got ${key.length}`);
    }
    // A key of its own for this use of the cluster key (domain separation), whatever its length.
    const derived = createHmac("sha256", key).update("tandem hypersync datagram mac v2").digest();
    for (let i = 0; i < 4; i++) this.words[i] = le32(derived, i * 4);
  }

  /**
   * SipHash-2-4 of pseudo-header(clusterId, version, senderId, receiverId, session, peerSession,
   * epoch) followed by buf[start, end); the tag lands in `result`. Allocates nothing.
   */
  tag(h: DatagramHeader, buf: Uint8Array, start: number, end: number): void {
    const p = this.pseudo;
    w32(p, 0, h.clusterId);
    w32(p, 4, ((h.version << 24) | h.senderId) >>> 0);
    w32(p, 8, h.receiverId);
    w32(p, 12, h.session);
    w32(p, 16, h.peerSession);
    w32(p, 20, h.epoch);
    sipHash24Into(this.words, p, PSEUDO_HEADER_BYTES, buf, start, end, this.result);
  }
}

/**
 * SipHash-2-4 (the reference algorithm, 64-bit output) of prefix[0, prefixLength) followed by
 * buf[start, end), keyed by `key` (k0 lo, k0 hi, k1 lo, k1 hi). prefixLength is a multiple of 8.
 * Writes the tag's high and low halves to out[0], out[1]. 64-bit words are (hi, lo) pairs of
 * 32-bit integers: additions carry by hand, rotations move bits across the halves.
 */
function sipHash24Into(key: Int32Array, prefix: Uint8Array, prefixLength: number, buf: Uint8Array, start: number, end: number, out: Uint32Array): void {
  const k0l = key[0]!;
  const k0h = key[1]!;
  const k1l = key[2]!;
  const k1h = key[3]!;
  let v0h = k0h ^ 0x736f6d65; // "somepseudorandomlygeneratedbytes", big-endian halves
  let v0l = k0l ^ 0x70736575;
  let v1h = k1h ^ 0x646f7261;
  let v1l = k1l ^ 0x6e646f6d;
  let v2h = k0h ^ 0x6c796765;
  let v2l = k0l ^ 0x6e657261;
  let v3h = k1h ^ 0x74656462;
  let v3l = k1l ^ 0x79746573;
  let th = 0;
  let tl = 0;
  let mh = 0;
  let ml = 0;
  const total = prefixLength + (end - start);
  const prefixWords = prefixLength >>> 3;
  // The last word holds the tail bytes and the length (SipHash padding); bounded by the length.
  const words = (total >>> 3) + 1;
  for (let i = 0; i < words; i++) {
    if (i < prefixWords) {
      ml = le32(prefix, i * 8);
      mh = le32(prefix, i * 8 + 4);
    } else {
      const at = start + (i - prefixWords) * 8;
      if (i < words - 1) {
        ml = buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24);
        mh = buf[at + 4]! | (buf[at + 5]! << 8) | (buf[at + 6]! << 16) | (buf[at + 7]! << 24);
      } else {
        ml = 0;
        mh = (total & 0xff) << 24;
        const rest = end - at;
        for (let k = 0; k < rest; k++) {
          if (k < 4) ml |= buf[at + k]! << (8 * k);
          else mh |= buf[at + k]! << (8 * (k - 4));
        }
      }
    }
    v3h ^= mh;
    v3l ^= ml;
    // Two compression rounds (c = 2), written out: a call per round costs more than the round.
    for (let r = 0; r < 2; r++) {
      v0l = (v0l + v1l) | 0;
      v0h = (v0h + v1h + ((v0l >>> 0) < (v1l >>> 0) ? 1 : 0)) | 0;
      th = (v1h << 13) | (v1l >>> 19);
      tl = (v1l << 13) | (v1h >>> 19);
      v1h = th ^ v0h;
      v1l = tl ^ v0l;
      th = v0h;
      v0h = v0l;
      v0l = th;
      v2l = (v2l + v3l) | 0;
      v2h = (v2h + v3h + ((v2l >>> 0) < (v3l >>> 0) ? 1 : 0)) | 0;
      th = (v3h << 16) | (v3l >>> 16);
      tl = (v3l << 16) | (v3h >>> 16);
      v3h = th ^ v2h;
      v3l = tl ^ v2l;
      v0l = (v0l + v3l) | 0;
      v0h = (v0h + v3h + ((v0l >>> 0) < (v3l >>> 0) ? 1 : 0)) | 0;
      th = (v3h << 21) | (v3l >>> 11);
      tl = (v3l << 21) | (v3h >>> 11);
      v3h = th ^ v0h;
      v3l = tl ^ v0l;
      v2l = (v2l + v1l) | 0;
      v2h = (v2h + v1h + ((v2l >>> 0) < (v1l >>> 0) ? 1 : 0)) | 0;
      th = (v1h << 17) | (v1l >>> 15);
      tl = (v1l << 17) | (v1h >>> 15);
      v1h = th ^ v2h;
      v1l = tl ^ v2l;
      th = v2h;
      v2h = v2l;
      v2l = th;
    }
    v0h ^= mh;
    v0l ^= ml;
  }
  v2l ^= 0xff;
  // Four finalization rounds (d = 4).
  for (let r = 0; r < 4; r++) {
    v0l = (v0l + v1l) | 0;
    v0h = (v0h + v1h + ((v0l >>> 0) < (v1l >>> 0) ? 1 : 0)) | 0;
    th = (v1h << 13) | (v1l >>> 19);
    tl = (v1l << 13) | (v1h >>> 19);
    v1h = th ^ v0h;
    v1l = tl ^ v0l;
    th = v0h;
    v0h = v0l;
    v0l = th;
    v2l = (v2l + v3l) | 0;
    v2h = (v2h + v3h + ((v2l >>> 0) < (v3l >>> 0) ? 1 : 0)) | 0;
    th = (v3h << 16) | (v3l >>> 16);
    tl = (v3l << 16) | (v3h >>> 16);
    v3h = th ^ v2h;
    v3l = tl ^ v2l;
    v0l = (v0l + v3l) | 0;
    v0h = (v0h + v3h + ((v0l >>> 0) < (v3l >>> 0) ? 1 : 0)) | 0;
    th = (v3h << 21) | (v3l >>> 11);
    tl = (v3l << 21) | (v3h >>> 11);
    v3h = th ^ v0h;
    v3l = tl ^ v0l;
    v2l = (v2l + v1l) | 0;
    v2h = (v2h + v1h + ((v2l >>> 0) < (v1l >>> 0) ? 1 : 0)) | 0;
    th = (v1h << 17) | (v1l >>> 15);
    tl = (v1l << 17) | (v1h >>> 15);
    v1h = th ^ v2h;
    v1l = tl ^ v2l;
    th = v2h;
    v2h = v2l;
    v2l = th;
  }
  out[0] = v0h ^ v1h ^ v2h ^ v3h;
  out[1] = v0l ^ v1l ^ v2l ^ v3l;
}

/**
 * SipHash-2-4 of `message` under a 16-byte key, as the reference implementation's 8 output
 * bytes (little-endian). For the reference test vectors; allocates, not for the data path.
 */
export function sipHash24(key: Uint8Array, message: Uint8Array): Uint8Array {
  assert(key.length === 16, "SipHash takes a 16-byte key");
  const words = new Int32Array([le32(key, 0), le32(key, 4), le32(key, 8), le32(key, 12)]);
  const tag = new Uint32Array(2);
  sipHash24Into(words, message, 0, message, 0, message.length, tag);
  const out = new Uint8Array(8);
  for (let i = 0; i < 4; i++) {
    out[i] = tag[1]! >>> (8 * i);
    out[4 + i] = tag[0]! >>> (8 * i);
  }
  return out;
}

function le32(buf: Uint8Array, offset: number): number {
  return buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 24);
}


/** Header bytes of a form (the short one with or without firstSeq). */
export function headerBytes(long: boolean, hasFirstSeq: boolean): number {
  return long ? DATAGRAM_LONG_HEADER_BYTES : hasFirstSeq ? DATAGRAM_SHORT_HEADER_FIRST_BYTES : DATAGRAM_SHORT_HEADER_BYTES;
}

/** Writes the tag stored in `key` at buf[at, at + 8). */
function writeTag(buf: Uint8Array, at: number, key: MacKey): void {
  w32(buf, at, key.result[0]!);
  w32(buf, at + 4, key.result[1]!);
}

/**
 * Seals a datagram whose payload the caller wrote at buf[payloadOffset, payloadOffset +
 * payloadLength): writes the header of form h.long just in front of it and the MAC after it.
 * Returns the datagram's first byte offset; its length is datagramBytes(h.long, payloadLength).
 * Resealing a retransmission is the same call with fresh fields (the form may change).
 */
export function sealDatagram(buf: Uint8Array, payloadOffset: number, payloadLength: number, h: DatagramHeader, key: MacKey): number {
  const headerLength = headerBytes(h.long, h.hasFirstSeq);
  const start = payloadOffset - headerLength;
  assert(start >= 0, "no room for the header in front of the payload");
  assert(payloadLength >= 0 && payloadLength <= DATAGRAM_PAYLOAD_BYTES_MAX, "payload larger than a datagram");
  assert(buf.length >= payloadOffset + payloadLength + MAC_BYTES, "buffer too small for the datagram");
  assert(h.type >= DatagramType.DATA && h.type <= DatagramType.NACK, "unknown datagram type");
  assert(isU32(h.clusterId) && isU16(h.senderId) && isU16(h.receiverId), "cluster id is a u32, member ids u16");
  assert(isU32(h.session) && isU32(h.peerSession) && isU32(h.epoch), "sessions and epoch are u32");
  assert(isU32(h.seq) && isU32(h.ack) && isU32(h.firstSeq), "sequence fields are u32");
  const back = (h.seq + 1 - h.firstSeq) >>> 0;
  assert(back <= 0xffff, "firstSeq too far behind seq");
  assert((h.flags & ~KNOWN_FLAGS) === 0, "unknown flags");
  assert((h.version & 0xff) === h.version && h.version >= PROTOCOL_VERSION_WIRE_MIN, "protocol version is 1..255");
  if (h.long) {
    buf[start] = h.type | h.flags | FLAG_LONG;
    buf[start + 1] = h.version;
    w32(buf, start + 2, h.epoch);
    w32(buf, start + 6, h.seq);
    w32(buf, start + 10, h.ack);
    w16(buf, start + 14, back);
    w32(buf, start + 16, h.clusterId);
    w16(buf, start + 20, h.senderId);
    w16(buf, start + 22, h.receiverId);
    w32(buf, start + 24, h.session);
    w32(buf, start + 28, h.peerSession);
  } else {
    buf[start] = h.type | h.flags | (h.hasFirstSeq ? FLAG_FIRST : 0);
    buf[start + 1] = h.epoch;
    w32(buf, start + 2, h.seq);
    w32(buf, start + 6, h.ack);
    if (h.hasFirstSeq) w16(buf, start + 10, back);
  }
  const macOffset = payloadOffset + payloadLength;
  key.tag(h, buf, start, macOffset);
  writeTag(buf, macOffset, key);
  return start;
}

/** Length of a sealed datagram. */
export function datagramBytes(h: DatagramHeader, payloadLength: number): number {
  return headerBytes(h.long, h.hasFirstSeq) + payloadLength + MAC_BYTES;
}

/**
 * Verifies buf[0, len) and fills `out` (full values). Returns OpenResult.OK or the reason to
 * drop it. Never throws on any bytes.
 */
export function openDatagram(buf: Uint8Array, len: number, key: MacKey, ctx: OpenContext, out: DatagramHeader): OpenResult {
  if (len < DATAGRAM_SHORT_HEADER_BYTES + MAC_BYTES || len > buf.length) return OpenResult.TRUNCATED;
  if (len > DATAGRAM_BYTES_MAX) return OpenResult.TOO_LONG;
  const typeByte = buf[0]!;
  const long = (typeByte & FLAG_LONG) !== 0;
  const hasFirstSeq = long || (typeByte & FLAG_FIRST) !== 0;
  const headerLength = headerBytes(long, hasFirstSeq);
  if (len < headerLength + MAC_BYTES) return OpenResult.TRUNCATED;
  let seq: number;
  let ack: number;
  let back = 0;
  if (long) {
    const version = buf[1]!;
    if (version < ctx.versionMin || version > ctx.versionMax) return OpenResult.BAD_VERSION;
    if (r32(buf, 16) !== ctx.clusterId >>> 0) return OpenResult.WRONG_CLUSTER;
    out.version = version;
    out.epoch = r32(buf, 2);
    seq = r32(buf, 6);
    ack = r32(buf, 10);
    back = r16(buf, 14);
    out.clusterId = ctx.clusterId >>> 0;
    out.senderId = r16(buf, 20);
    out.receiverId = r16(buf, 22);
    out.session = r32(buf, 24);
    out.peerSession = r32(buf, 28);
  } else {
    if (ctx.peerSession === 0) return OpenResult.UNKNOWN_SESSION;
    // The epoch nearest the receiver's with these low bits (signed 8-bit distance).
    out.epoch = (ctx.epoch + ((((buf[1]! - ctx.epoch) & 0xff) << 24) >> 24)) >>> 0;
    seq = r32(buf, 2);
    ack = r32(buf, 6);
    if (hasFirstSeq) back = r16(buf, 10);
    out.clusterId = ctx.clusterId >>> 0;
    out.senderId = ctx.peerId;
    out.receiverId = ctx.localId;
    out.session = ctx.peerSession;
    out.peerSession = ctx.localSession;
    // Never a first guess outside the range: a datagram must not verify under such a version.
    out.version = ctx.peerVersion >= ctx.versionMin && ctx.peerVersion <= ctx.versionMax ? ctx.peerVersion : ctx.versionMin;
  }
  const macOffset = len - MAC_BYTES;
  if (!macMatches(buf, macOffset, key, out)) {
    // The short form's version is implied: the peer may have changed its send version since
    // its last datagram here. Each other version of our range (bounded by the range's width).
    if (long) return OpenResult.BAD_MAC;
    const tried = out.version;
    let verified = false;
    for (let v = ctx.versionMin; v <= ctx.versionMax && !verified; v++) {
      if (v === tried) continue;
      out.version = v;
      verified = macMatches(buf, macOffset, key, out);
    }
    if (!verified) return OpenResult.BAD_MAC;
  }
  // Authenticated from here on.
  const type = typeByte & TYPE_MASK;
  if (type < DatagramType.DATA || type > DatagramType.NACK) return OpenResult.BAD_TYPE;
  out.type = type;
  out.long = long;
  out.hasFirstSeq = hasFirstSeq;
  out.flags = typeByte & KNOWN_FLAGS;
  out.seq = seq;
  out.ack = ack;
  out.firstSeq = (seq + 1 - back) >>> 0;
  out.payloadOffset = headerLength;
  out.payloadEnd = macOffset;
  if ((typeByte & ~(TYPE_MASK | KNOWN_FLAGS | FLAG_LONG | FLAG_FIRST)) !== 0) return OpenResult.MALFORMED;
  if (long) {
    if (out.senderId !== ctx.peerId) return OpenResult.WRONG_PEER;
    if (out.receiverId !== ctx.localId) return OpenResult.MISADDRESSED;
  }
  if (out.epoch < ctx.minEpoch) return OpenResult.STALE_EPOCH;
  const payloadLength = macOffset - headerLength;
  switch (type) {
    case DatagramType.DATA:
      if (payloadLength === 0) return OpenResult.MALFORMED;
      break;
    case DatagramType.NACK:
      if (payloadLength === 0 || payloadLength > NACK_RANGES_MAX * 8 || payloadLength % 8 !== 0) return OpenResult.MALFORMED;
      break;
    default:
      if (payloadLength !== 0) return OpenResult.MALFORMED;
  }
  if (out.session === 0) return OpenResult.MALFORMED;
  return OpenResult.OK;
}

/** Computes the tag of buf[0, macOffset) under header `h` and compares it with the one at macOffset. */
function macMatches(buf: Uint8Array, macOffset: number, key: MacKey, h: DatagramHeader): boolean {
  key.tag(h, buf, 0, macOffset);
  // Constant-time: both words compared in full whatever the first one says.
  return ((r32(buf, macOffset) ^ key.result[0]!) | (r32(buf, macOffset + 4) ^ key.result[1]!)) >>> 0 === 0;
}

/** Writes NACK range i (first..last inclusive) into a NACK payload starting at payloadOffset. */
export function writeNackRange(buf: Uint8Array, payloadOffset: number, i: number, first: number, last: number): void {
  w32(buf, payloadOffset + i * 8, first);
  w32(buf, payloadOffset + i * 8 + 4, last);
}

/** Ranges in a NACK payload of `payloadLength` bytes. */
export function nackRangeCount(payloadLength: number): number {
  return payloadLength >>> 3;
}

/** Reads the first seq of NACK range i. */
export function nackRangeFirst(buf: Uint8Array, payloadOffset: number, i: number): number {
  return r32(buf, payloadOffset + i * 8);
}

/** Reads the last seq of NACK range i. */
export function nackRangeLast(buf: Uint8Array, payloadOffset: number, i: number): number {
  return r32(buf, payloadOffset + i * 8 + 4);
}
