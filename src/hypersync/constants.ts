// Every bound of HyperSync in one place: datagram and record sizes, the reliable channel's
// timers and queue sizes. The assertions at the bottom tie them together, so changing one
// number cannot silently break another (a NACK that no longer fits a datagram, a resend queue
// larger than the receiver's reorder window, a dead-peer timeout shorter than the keep-alive).

import { assert } from "../stdx/assert.js";

/** Wire protocol version carried in every datagram; a receiver drops versions it does not speak. */
export const PROTOCOL_VERSION = 1;

// ---- datagram -------------------------------------------------------------------------

/** Largest datagram on the wire (fits a 1500-byte MTU with IPv6 + UDP + tunnel headroom). */
export const DATAGRAM_BYTES_MAX = 1400;
/** Fixed datagram header (datagram.ts has the layout). */
export const DATAGRAM_HEADER_BYTES = 44;
/** Truncated HMAC-SHA256 tag at the end of every datagram. */
export const MAC_BYTES = 16;
/** Room for records (or NACK ranges) in one datagram. */
export const DATAGRAM_PAYLOAD_BYTES_MAX = DATAGRAM_BYTES_MAX - DATAGRAM_HEADER_BYTES - MAC_BYTES;
/** A cluster key shorter than this is refused (128 bits of secret at least). */
export const CLUSTER_KEY_BYTES_MIN = 16;

// ---- records --------------------------------------------------------------------------

/** kind u8, length u16, bucket u32: the part every record starts with. */
export const RECORD_HEADER_BYTES = 7;
/** A flow key on the wire: zone u16, protocol u8, flags u8, two addresses, two ports. */
export const RECORD_KEY_BYTES_V4 = 4 + 4 + 4 + 4;
export const RECORD_KEY_BYTES_V6 = 4 + 16 + 16 + 4;
export const RECORD_KEY_BYTES_MAX = RECORD_KEY_BYTES_V6;
/** One TCP direction: end, maxEnd, maxWindow (u32 each), scale u8, flags u8. */
export const RECORD_TCP_DIRECTION_BYTES = 14;
/** Longest value of one type/length extension (the length is a u8). */
export const RECORD_EXTENSION_VALUE_BYTES_MAX = 255;
/** Largest CREATE/UPDATE record: IPv6 key, state, expiry, both TCP directions, one extension. */
export const RECORD_STATE_BYTES_MAX =
  RECORD_HEADER_BYTES + RECORD_KEY_BYTES_V6 + 1 + 4 + 2 * RECORD_TCP_DIRECTION_BYTES + 2 + RECORD_EXTENSION_VALUE_BYTES_MAX;
/** A digest list record: header, pair count u16, then (bucket u32, digest u32) pairs. */
export const RECORD_DIGEST_PAIR_BYTES = 8;
export const DIGEST_PAIRS_MAX = Math.floor((DATAGRAM_PAYLOAD_BYTES_MAX - RECORD_HEADER_BYTES - 2) / RECORD_DIGEST_PAIR_BYTES);
/** Largest record of any kind: it must fit an empty datagram. */
export const RECORD_BYTES_MAX = DATAGRAM_PAYLOAD_BYTES_MAX;
/** Default bound of the refresh coalescer (pending idle-timer refreshes, one per flow key). */
export const REFRESH_PENDING_MAX = 4096;

// ---- channel --------------------------------------------------------------------------

/** An open (unsealed) datagram is sent at the latest this long after its first record. */
export const FLUSH_INTERVAL_MS = 1;
/**
 * Sealed, unacknowledged datagrams kept for retransmission (a power of two: slots are indexed
 * by seq & (size - 1), which stays continuous across the u32 wrap).
 */
export const RESEND_QUEUE_DATAGRAMS_MAX = 256;
/**
 * How far behind a peer may fall, in datagrams, before the sender gives up retransmitting the
 * oldest ones and resyncs their buckets by bulk transfer instead. It is the resend queue: a
 * datagram leaves the queue either acknowledged or abandoned-with-resync, never silently.
 */
export const RESYNC_BEHIND_DATAGRAMS = RESEND_QUEUE_DATAGRAMS_MAX;
/** Out-of-order datagrams the receiver buffers (power of two, at least the peer's resend queue). */
export const RECEIVE_WINDOW_DATAGRAMS = 256;
/** The receiver acknowledges after this many accepted datagrams (conntrackd FTFW: every 300 messages)... */
export const ACK_EVERY_DATAGRAMS = 16;
/** ...or at the latest this long after the first unacknowledged one. */
export const ACK_DELAY_MS = 1;
/** NACK ranges in one NACK datagram (first u32, last u32 each). */
export const NACK_RANGES_MAX = 32;
/** A gap that persists is NACKed again after this long. */
export const NACK_REPEAT_MS = 5;
/** Retransmission timeout before any RTT sample, and its bounds (RFC 6298, scaled to a LAN). */
export const RTO_INITIAL_MS = 20;
export const RTO_MIN_MS = 2;
export const RTO_MAX_MS = 200;
/** The same datagram is not retransmitted twice within this long because of NACKs. */
export const RESEND_MIN_INTERVAL_MS = 1;
/** Retransmissions per tick: bounds the work of one tick when a whole window times out. */
export const RETRANSMIT_BURST_MAX = 64;
/**
 * An idle channel sends a keep-alive this often: a dozen fit in PEER_DEAD_AFTER_MS, so even
 * 30% loss declares a live peer dead with odds of about 0.3^12 per window.
 */
export const KEEPALIVE_INTERVAL_MS = 25;
/** A peer silent for this long is declared dead. */
export const PEER_DEAD_AFTER_MS = 300;

// ---- the ties between them ------------------------------------------------------------

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

assert(DATAGRAM_PAYLOAD_BYTES_MAX > 0, "datagram header and MAC leave no payload");
assert(DATAGRAM_BYTES_MAX <= 65507, "datagram larger than a UDP payload");
assert(RECORD_STATE_BYTES_MAX <= RECORD_BYTES_MAX, "a state record must fit an empty datagram");
assert(RECORD_HEADER_BYTES + 2 + DIGEST_PAIRS_MAX * RECORD_DIGEST_PAIR_BYTES <= DATAGRAM_PAYLOAD_BYTES_MAX, "digest list overflows");
assert(DIGEST_PAIRS_MAX <= 0xffff, "digest pair count is a u16");
assert(RECORD_BYTES_MAX <= 0xffff, "record length is a u16");
assert(NACK_RANGES_MAX * 8 <= DATAGRAM_PAYLOAD_BYTES_MAX, "a full NACK must fit one datagram");
assert(isPowerOfTwo(RESEND_QUEUE_DATAGRAMS_MAX), "resend queue size must be a power of two");
assert(isPowerOfTwo(RECEIVE_WINDOW_DATAGRAMS), "receive window must be a power of two");
// The sender never has more datagrams in flight than the receiver can buffer, so a datagram
// beyond the window only arrives from a misconfigured peer.
assert(RESEND_QUEUE_DATAGRAMS_MAX <= RECEIVE_WINDOW_DATAGRAMS, "resend queue larger than the receive window");
assert(RESYNC_BEHIND_DATAGRAMS === RESEND_QUEUE_DATAGRAMS_MAX, "resync threshold is the resend queue bound");
assert(ACK_EVERY_DATAGRAMS >= 1 && ACK_EVERY_DATAGRAMS * 4 <= RESEND_QUEUE_DATAGRAMS_MAX, "ACKs must come well before the queue fills");
assert(ACK_DELAY_MS >= FLUSH_INTERVAL_MS, "ack delay below flush interval");
assert(RTO_MIN_MS > ACK_DELAY_MS, "RTO must exceed the receiver's ack delay");
assert(RTO_MIN_MS <= RTO_INITIAL_MS && RTO_INITIAL_MS <= RTO_MAX_MS, "RTO bounds out of order");
assert(NACK_REPEAT_MS >= RESEND_MIN_INTERVAL_MS, "NACK repeat faster than resend interval");
assert(RETRANSMIT_BURST_MAX >= 1 && RETRANSMIT_BURST_MAX <= RESEND_QUEUE_DATAGRAMS_MAX, "retransmit burst out of range");
assert(RTO_MAX_MS < PEER_DEAD_AFTER_MS, "a live peer must get retransmissions before it is declared dead");
assert(PEER_DEAD_AFTER_MS >= 10 * KEEPALIVE_INTERVAL_MS, "dead-peer timeout must span many keep-alives (lossy links)");
assert(REFRESH_PENDING_MAX >= 1, "refresh coalescer needs room");
