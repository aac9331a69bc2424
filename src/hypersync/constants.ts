// Every bound of HyperSync in one place: datagram and record sizes, the reliable channel's
// timers and queue sizes. The assertions at the bottom tie them together, so changing one
// number cannot silently break another (a NACK that no longer fits a datagram, a resend queue
// larger than the receiver's reorder window, a dead-peer timeout shorter than the keep-alive).

import { assert } from "../stdx/assert.js";

/**
 * Wire protocol versions this build reads and writes. A member seals every datagram with one
 * version (its send version: the orchestrator picks the highest every member of the group
 * speaks) and accepts any version in its range, so members of an old and a new build keep
 * syncing during a rolling upgrade (docs/hypersync.md, "Protocol versions"; protocol-version.ts).
 * A version exists only where the wire differs. Version 2: compact header with implicit
 * identities and sessions, 64-bit MAC, records without length or bucket fields (datagram.ts,
 * records.ts). A format change bumps MAX and keeps reading MIN..MAX for one release; only the
 * release after it may raise MIN.
 */
export const PROTOCOL_VERSION_MIN = 2;
export const PROTOCOL_VERSION_MAX = 2;
/** The newest version this build speaks (an alias of PROTOCOL_VERSION_MAX, for older callers). */
export const PROTOCOL_VERSION = PROTOCOL_VERSION_MAX;
/** Bounds of any version: it travels as one byte, and 0 is never a version. */
export const PROTOCOL_VERSION_WIRE_MIN = 1;
export const PROTOCOL_VERSION_WIRE_MAX = 255;

// ---- datagram -------------------------------------------------------------------------

/** Largest datagram on the wire (fits a 1500-byte MTU with IPv6 + UDP + tunnel headroom). */
export const DATAGRAM_BYTES_MAX = 1400;
/**
 * Short header: type and flags, epoch (low 8 bits), seq, ack. Used once both ends know each
 * other's session (datagram.ts has the layout); 2 more bytes while it carries firstSeq.
 */
export const DATAGRAM_SHORT_HEADER_BYTES = 10;
export const DATAGRAM_SHORT_HEADER_FIRST_BYTES = DATAGRAM_SHORT_HEADER_BYTES + 2;
/** Long header: type and flags, version, full epoch, seq, ack, firstSeq, cluster id, member ids, both sessions. */
export const DATAGRAM_LONG_HEADER_BYTES = 32;
/** Room a sender reserves before the payload: either header fits in front of it. */
export const DATAGRAM_HEADER_BYTES = DATAGRAM_LONG_HEADER_BYTES;
/** Keyed MAC tag at the end of every datagram (64 bits; datagram.ts says why that is enough). */
export const MAC_BYTES = 8;
/** Room for records (or NACK ranges) in one datagram, whichever header it gets. */
export const DATAGRAM_PAYLOAD_BYTES_MAX = DATAGRAM_BYTES_MAX - DATAGRAM_HEADER_BYTES - MAC_BYTES;
/** A cluster key shorter than this is refused (128 bits of secret at least). */
export const CLUSTER_KEY_BYTES_MIN = 16;

// ---- records --------------------------------------------------------------------------

/** A flow key on the wire: flags u8, protocol u8, [zone u16], two addresses, two ports. */
export const RECORD_KEY_BYTES_V4 = 2 + 4 + 4 + 4;
export const RECORD_KEY_BYTES_V6 = 2 + 16 + 16 + 4;
export const RECORD_KEY_BYTES_MAX = RECORD_KEY_BYTES_V6 + 2;
/** Remaining lifetime on the wire: unsigned LEB128 of whole seconds, at most 3 bytes. */
export const RECORD_EXPIRY_BYTES_MAX = 3;
/** Largest remaining lifetime a record carries (2^21 - 1 s, 24 days; every timeout is far below). */
export const RECORD_EXPIRY_S_MAX = 0x1fffff;
/** TCP section: both window scales (one byte), each direction's flags (one byte each). */
export const RECORD_TCP_BYTES = 3;
/** TCP windows (end, maxEnd, maxWindow u32 per direction), sent only while they matter. */
export const RECORD_TCP_WINDOWS_BYTES = 24;
/** Longest extension area of a state record (its length is a u8). */
export const RECORD_EXTENSION_BYTES_MAX = 255;
/** Largest CREATE/UPDATE record: kind, IPv6 key with zone, expiry, TCP section and windows, extensions. */
export const RECORD_STATE_BYTES_MAX =
  1 + RECORD_KEY_BYTES_MAX + RECORD_EXPIRY_BYTES_MAX + RECORD_TCP_BYTES + RECORD_TCP_WINDOWS_BYTES + 1 + RECORD_EXTENSION_BYTES_MAX;
/** A digest list record: kind, pair count u16, then (bucket u32, digest u32) pairs. */
export const RECORD_DIGEST_PAIR_BYTES = 8;
export const DIGEST_PAIRS_MAX = Math.floor((DATAGRAM_PAYLOAD_BYTES_MAX - 3) / RECORD_DIGEST_PAIR_BYTES);
/** Largest record of any kind: it must fit an empty datagram. */
export const RECORD_BYTES_MAX = DATAGRAM_PAYLOAD_BYTES_MAX;

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
/**
 * ...or at the latest this long after the first unacknowledged one. Every datagram the receiver
 * sends meanwhile carries the ACK, so the delay mostly decides how often an ACK rides on the
 * receiver's own records instead of costing a datagram of its own. A gap is NACKed at once and
 * a sender that needs an answer (retransmission, filling queue, end of a bulk) sets ACK_NOW, so
 * the delay only slows the release of resend-queue slots.
 */
export const ACK_DELAY_MS = 100;
/** NACK ranges in one NACK datagram (first u32, last u32 each). */
export const NACK_RANGES_MAX = 32;
/** A gap that persists is NACKed again after this long. */
export const NACK_REPEAT_MS = 5;
/**
 * Retransmission timeout before any RTT sample, and its bounds (RFC 6298, scaled to a LAN). The
 * RTT a sender measures includes the receiver's ACK delay, so the floor sits above it.
 */
export const RTO_INITIAL_MS = ACK_DELAY_MS + 20;
export const RTO_MIN_MS = ACK_DELAY_MS + 5;
export const RTO_MAX_MS = Math.max(200, 2 * RTO_INITIAL_MS);
/** The same datagram is not retransmitted twice within this long because of NACKs. */
export const RESEND_MIN_INTERVAL_MS = 1;
/** Retransmissions per tick: bounds the work of one tick when a whole window times out. */
export const RETRANSMIT_BURST_MAX = 64;
/**
 * A channel that has sent nothing for this long sends a keep-alive. Only an idle channel pays for
 * it: any datagram proves liveness, and lost data is recovered by NACK and retransmission
 * timeout, not by keep-alives. The members' failure detector is the orchestrator's heartbeat; the
 * channel's own peer state is informational, so it can afford a slow beat, and a member with N
 * peers spends N keep-alives per interval only when it has nothing else to say to any of them.
 */
export const KEEPALIVE_INTERVAL_MS = 1000;
/** A peer silent for this long is declared dead (a dozen keep-alives: 30% loss errs with odds ~0.3^12). */
export const PEER_DEAD_AFTER_MS = 10_000;

// ---- the ties between them ------------------------------------------------------------

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

assert(
  Number.isInteger(PROTOCOL_VERSION_MIN) && Number.isInteger(PROTOCOL_VERSION_MAX) && PROTOCOL_VERSION_WIRE_MIN <= PROTOCOL_VERSION_MIN && PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION_MAX && PROTOCOL_VERSION_MAX <= PROTOCOL_VERSION_WIRE_MAX,
  "protocol versions out of order or outside a byte",
);
assert(DATAGRAM_PAYLOAD_BYTES_MAX > 0, "datagram header and MAC leave no payload");
assert(DATAGRAM_BYTES_MAX <= 65507, "datagram larger than a UDP payload");
assert(RECORD_STATE_BYTES_MAX <= RECORD_BYTES_MAX, "a state record must fit an empty datagram");
assert(3 + DIGEST_PAIRS_MAX * RECORD_DIGEST_PAIR_BYTES <= DATAGRAM_PAYLOAD_BYTES_MAX, "digest list overflows");
assert(DIGEST_PAIRS_MAX <= 0xffff, "digest pair count is a u16");
assert(RESEND_QUEUE_DATAGRAMS_MAX + 1 <= 0xffff, "firstSeq travels as a u16 distance from seq");
assert(DATAGRAM_SHORT_HEADER_FIRST_BYTES < DATAGRAM_LONG_HEADER_BYTES, "the short header is the short one");
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
