// SyncChannel: the reliable, authenticated, per-peer HyperSync channel (conntrackd FTFW and
// TCP ideas, in datagrams). One channel per (local member, peer member) pair carries records
// both ways. It is synchronous and clock-driven: the caller passes nowMs to every call and
// calls tick(nowMs) by nextDeadlineMs(); it never reads a clock or sets a timer.
//
// The seam (ChannelPort) is three callbacks, the narrowest that both the simulator and the
// runtime can implement: send(bytes, offset, length) hands one sealed datagram to the transport
// (the bytes are only valid during the call: copy them to keep them), deliver(record) hands one
// decoded record to the sync agent (a reused object, valid during the call), and event(kind)
// tells of peer up / dead / restarted and of buckets that need a bulk resync.
//
// Sender:
//   records --enqueue--> [open datagram] --full or due--> seal, send, keep in resend queue
//   (ring of RESEND_QUEUE_DATAGRAMS_MAX slots, slot = seq & mask). An open datagram is due
//   FLUSH_INTERVAL_MS after its first record, or later when every record in it said it may
//   wait (enqueue's latestMs: coalesced changes ride with the next record that cannot):
//
//        oldestSeq                        nextSeq (the open datagram gets this seq)
//        v                                v
//   ... | acked | sealed, unacked ...     | open |  free ...
//
//   A cumulative ACK frees slots up to it; a NACK range or an RTO retransmits (resealed with
//   fresh ack/epoch fields). RTT is estimated from ACKs (RFC 6298, Karn's rule: never from a
//   retransmitted datagram). When a datagram must open and the queue is full, the oldest
//   unacked datagram is abandoned, never silently: the buckets of its state records go into
//   needsResync (the agent sends those buckets by bulk transfer) and the header's firstSeq
//   tells the receiver not to wait for it. That is the resync rule: a peer that falls
//   RESYNC_BEHIND_DATAGRAMS (= the resend queue) behind is caught up by bulk, per bucket.
//
// Receiver:
//   verifies (datagram.ts), delivers records of DATA datagrams in seq order exactly once,
//   buffers out-of-order ones within RECEIVE_WINDOW_DATAGRAMS, drops and counts duplicates,
//   ACKs every ACK_EVERY_DATAGRAMS or within ACK_DELAY_MS (every outgoing datagram piggybacks
//   the ACK, so a pure ACK is only sent when the receiver has nothing else to say), and NACKs
//   gaps (at most NACK_RANGES_MAX ranges) when they appear and again every NACK_REPEAT_MS while
//   they persist.
//
// Header form (datagram.ts): long until both sides have shown they know each other's session
// (peerConfirmed: a datagram from the peer named our session), short after. A slot keeps room
// for the long header in front of its payload, so a retransmission can change form.
//
// Protocol versions (protocol-version.ts): the channel reads every version of its range and
// seals with its send version (setProtocolVersion; default the range's min, which an older
// build shares). It sends the long form, which names the version, while the peer's last
// authentic datagram had another version than ours: while a group changes version, and
// towards a peer that cannot read ours (it counts every datagram as bad-version, which names
// the problem, instead of bad-mac). A retransmission is resealed with the current version.
//
// Keep-alives: only a channel that sent nothing for KEEPALIVE_INTERVAL_MS sends one, so an
// active member pays nothing for liveness and an idle one a datagram per peer per interval.
// Two more announce this instance's session at once: a hello at the first tick, and a reply
// to a short-form datagram from a peer we have not heard yet (it still talks to our previous
// instance, and would otherwise wait for the next keep-alive to learn of the restart).
//
// Sessions: each channel instance has a session number that must grow across restarts. A
// datagram from a newer peer session resets the receive side (the peer began again at its
// firstSeq) and raises PEER_RESTARTED: the peer lost its replica state. An older session is a
// replay and is dropped (a short-form datagram of an old session does not verify at all).
//
// Invariants: 0 <= nextSeq - oldestSeq <= queue size; every record enqueued stays in the
// resend queue until the peer acknowledges it, unless its datagram is abandoned (its buckets
// then are in needsResync; control records are counted in controlRecordsAbandoned); deliver()
// sees each peer seq at most once, in increasing order. Handlers may call enqueue()/flush()
// but must not call receive() re-entrantly (asserted).

import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import {
  ACK_DELAY_MS,
  ACK_EVERY_DATAGRAMS,
  DATAGRAM_BYTES_MAX,
  DATAGRAM_HEADER_BYTES,
  DATAGRAM_PAYLOAD_BYTES_MAX,
  FLUSH_INTERVAL_MS,
  KEEPALIVE_INTERVAL_MS,
  NACK_RANGES_MAX,
  NACK_REPEAT_MS,
  PEER_DEAD_AFTER_MS,
  RECEIVE_WINDOW_DATAGRAMS,
  RESEND_MIN_INTERVAL_MS,
  RESEND_QUEUE_DATAGRAMS_MAX,
  RETRANSMIT_BURST_MAX,
  RTO_INITIAL_MS,
  RTO_MAX_MS,
  RTO_MIN_MS,
} from "./constants.js";
import {
  DatagramFlag,
  DatagramHeader,
  DatagramType,
  MacKey,
  OpenResult,
  datagramBytes,
  nackRangeCount,
  nackRangeFirst,
  nackRangeLast,
  openDatagram,
  sealDatagram,
  writeNackRange,
  type OpenContext,
} from "./datagram.js";
import { assertProtocolVersionRange, inProtocolVersionRange, PROTOCOL_VERSIONS_DEFAULT, type ProtocolVersionRange } from "./protocol-version.js";
import { DecodedRecord, decodeRecord, isStateRecordKind, type RecordSink } from "./records.js";

export const PeerState = {
  UNKNOWN: 0, // nothing heard yet
  UP: 1,
  DEAD: 2, // silent for PEER_DEAD_AFTER_MS
} as const;
export type PeerState = (typeof PeerState)[keyof typeof PeerState];

export const ChannelEvent = {
  PEER_UP: 1, // first valid datagram, or the first after PEER_DEAD
  PEER_DEAD: 2,
  PEER_RESTARTED: 3, // the peer came back with a new session: its replica state is gone
  RESYNC_NEEDED: 4, // buckets were added to needsResync
} as const;
export type ChannelEvent = (typeof ChannelEvent)[keyof typeof ChannelEvent];

/** What receive() did with a datagram: OpenResult codes, plus a channel-level drop. */
export const ReceiveResult = {
  ...OpenResult,
  STALE_SESSION: 12, // from an older session of the peer (a replay)
} as const;
export type ReceiveResult = (typeof ReceiveResult)[keyof typeof ReceiveResult];

export interface ChannelPort {
  /** Transmit one sealed datagram. bytes[offset, offset + length) is valid only during this call. */
  send(bytes: Uint8Array, offset: number, length: number): void;
  /** One record from the peer, in order, exactly once. Reused object, valid only during this call. */
  deliver(record: DecodedRecord): void;
  /** Peer and resync events; needsResync holds the buckets for RESYNC_NEEDED. */
  event(event: ChannelEvent): void;
}

export interface ChannelConfig {
  clusterId: number;
  /** Member ids, 1..65535. */
  localId: number;
  peerId: number;
  /** This instance's session: nonzero, and greater (mod 2^32) than any earlier instance's. */
  session: number;
  key: MacKey;
  /** Epoch stamped on outgoing datagrams. */
  epoch?: number;
  /** Incoming datagrams with an older epoch are dropped as stale. */
  minEpoch?: number;
  /** Resend queue slots (power of two, at most RESEND_QUEUE_DATAGRAMS_MAX). */
  resendQueueDatagrams?: number;
  /** Receive reorder window (power of two, at most RECEIVE_WINDOW_DATAGRAMS). */
  receiveWindowDatagrams?: number;
  /** Protocol versions this channel reads (default PROTOCOL_VERSIONS_DEFAULT). */
  protocolVersions?: ProtocolVersionRange;
  /** The version it seals with (in the range; default the range's min). */
  protocolVersion?: number;
  /**
   * The bucket of a state record (for resync when its datagram is abandoned). Records that
   * name a connection carry no bucket: the agent derives it from the key. Default: rec.bucket.
   */
  bucketOfRecord?: (rec: DecodedRecord) => number;
}

/** Everything the channel does, counted. rttMs is a gauge (smoothed RTT, -1 before a sample). */
export class ChannelCounters {
  // sender
  recordsEnqueued = 0;
  sent = 0; // DATA datagrams, first transmission
  resent = 0; // DATA retransmissions (NACK or RTO)
  bytesSent = 0; // all datagrams
  timeouts = 0; // RTO expiries
  acked = 0; // DATA datagrams acknowledged
  badAcks = 0; // ACKs for sequence numbers never sent
  nacksReceived = 0;
  queueFullEvents = 0; // datagrams abandoned because the resend queue was full
  resyncs = 0; // buckets added to needsResync
  controlRecordsAbandoned = 0; // non-state records in abandoned datagrams (the agent retries those)
  keepalivesSent = 0;
  rttMs = -1;
  // receiver
  datagramsReceived = 0; // authentic datagrams of any type
  received = 0; // distinct DATA datagrams accepted
  recordsDelivered = 0;
  duplicates = 0;
  outOfOrder = 0;
  beyondWindow = 0;
  skipped = 0; // seqs the sender abandoned before we got them
  acksSent = 0;
  nacksSent = 0;
  // drops (receiver)
  truncated = 0;
  tooLong = 0;
  badVersion = 0;
  wrongCluster = 0;
  badMac = 0;
  staleEpoch = 0;
  badType = 0;
  malformed = 0; // malformed datagrams and malformed records inside authentic ones
  unknownSession = 0; // short-form datagrams before the peer's session is known
  wrongPeer = 0;
  misaddressed = 0;
  staleSession = 0;
  // header forms sent
  longHeaders = 0;
  shortHeaders = 0;
  // peer
  peerRestarts = 0;
  peerDeaths = 0;
}

function isMemberId(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 0xffff;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Serial-number difference a - b of two u32 sequence numbers (RFC 1982), as a signed int. */
function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export class SyncChannel implements RecordSink {
  readonly clusterId: number;
  readonly localId: number;
  readonly peerId: number;
  readonly session: number;
  readonly counters = new ChannelCounters();
  /** Buckets whose records may not reach the peer: send them by bulk transfer, then delete them here. */
  readonly needsResync = new Set<number>();
  epoch: number;
  minEpoch: number;
  peerState: PeerState = PeerState.UNKNOWN;
  /** The peer's session, 0 until heard. */
  peerSession = 0;
  /** The peer has shown it knows this channel's session: short headers may go out. */
  peerConfirmed = false;
  /** Protocol versions this channel reads. */
  readonly protocolVersionMin: number;
  readonly protocolVersionMax: number;
  /** Version of the peer's last authentic datagram (0 until heard). */
  peerVersion = 0;

  private readonly key: MacKey;
  private readonly port: ChannelPort;
  private readonly outHeader = new DatagramHeader();
  private readonly inHeader = new DatagramHeader();
  private readonly record = new DecodedRecord();
  /** Its own, so abandoning (inside an enqueue a handler makes) never overwrites a record being delivered. */
  private readonly abandonRecord = new DecodedRecord();
  private readonly controlBuf = new Uint8Array(DATAGRAM_BYTES_MAX);
  private readonly openContext: OpenContext;
  private readonly bucketOfRecord: (rec: DecodedRecord) => number;
  /** The version outgoing datagrams are sealed with. */
  private sendVersion: number;

  // ---- send side ----
  private readonly queueSize: number;
  private readonly queueMask: number;
  private readonly slots: Uint8Array[];
  private readonly slotPayloadBytes: Uint16Array;
  private readonly slotFirstSentMs: Float64Array;
  private readonly slotLastSentMs: Float64Array;
  private readonly slotSends: Uint16Array;
  private oldestSeq = 1;
  private nextSeq = 1;
  private open = false;
  private openPayloadBytes = 0;
  private openRecordCount = 0;
  /** When the open datagram must go: FLUSH_INTERVAL_MS after its first record that cannot wait. */
  private openFlushDueMs = Infinity;
  private srttMs = -1;
  private rttvarMs = 0;
  private baseRtoMs = RTO_INITIAL_MS;
  private rtoMs = RTO_INITIAL_MS;
  private lastSentAnyMs: number;
  /** Highest DATA seq the peer acknowledged (meaningful once ackedAny). */
  private ackedSeq = 0;
  private ackedAny = false;
  /**
   * The highest ack the peer sent (serial), also when it acknowledged nothing new: once it
   * reaches oldestSeq - 1 the peer has skipped every abandoned datagram and short headers stop
   * carrying firstSeq.
   */
  private peerAck = 0;

  // ---- receive side ----
  private readonly windowSize: number;
  private readonly windowMask: number;
  private readonly windowSlab: Uint8Array;
  private readonly windowPresent: Uint8Array;
  private readonly windowSeq: Uint32Array;
  private readonly windowPayloadBytes: Uint16Array;
  /** Next DATA seq to deliver; the cumulative ACK is expected - 1. */
  private expected = 1;
  /** Highest DATA seq known to be sent by the peer (within the window). */
  private highestSeen = 0;
  private ackPendingCount = 0;
  private ackDueAtMs = Infinity;
  private ackNow = false;
  private lastNackMs = -Infinity;
  /** A datagram of this receive() revealed a seq missing that was not known missing before. */
  private newHole = false;
  private lastHeardMs: number;
  private lastAnnounceMs = -Infinity;
  private receiving = false;

  constructor(config: ChannelConfig, port: ChannelPort, nowMs: number) {
    assert(config.session >>> 0 === config.session && config.session !== 0, "session must be a nonzero u32");
    assert(config.localId !== config.peerId, "a channel needs two different members");
    assert(isMemberId(config.localId) && isMemberId(config.peerId), "member ids are 1..65535");
    const queueSize = config.resendQueueDatagrams ?? RESEND_QUEUE_DATAGRAMS_MAX;
    const windowSize = config.receiveWindowDatagrams ?? RECEIVE_WINDOW_DATAGRAMS;
    assert(isPowerOfTwo(queueSize) && queueSize >= 2 && queueSize <= RESEND_QUEUE_DATAGRAMS_MAX, "resend queue size out of range");
    assert(isPowerOfTwo(windowSize) && windowSize >= 2 && windowSize <= RECEIVE_WINDOW_DATAGRAMS, "receive window out of range");
    const versions = config.protocolVersions ?? PROTOCOL_VERSIONS_DEFAULT;
    assertProtocolVersionRange(versions);
    const sendVersion = config.protocolVersion ?? versions.min;
    assert(inProtocolVersionRange(versions, sendVersion), "the send version must lie in the channel's range");
    this.protocolVersionMin = versions.min;
    this.protocolVersionMax = versions.max;
    this.sendVersion = sendVersion;
    this.clusterId = config.clusterId >>> 0;
    this.localId = config.localId >>> 0;
    this.peerId = config.peerId >>> 0;
    this.session = config.session;
    this.key = config.key;
    this.port = port;
    this.epoch = config.epoch ?? 0;
    this.minEpoch = config.minEpoch ?? 0;
    this.bucketOfRecord = config.bucketOfRecord ?? ((rec) => rec.bucket);
    this.openContext = {
      clusterId: this.clusterId,
      localId: this.localId,
      peerId: this.peerId,
      localSession: this.session,
      peerSession: 0,
      epoch: this.epoch,
      minEpoch: this.minEpoch,
      versionMin: versions.min,
      versionMax: versions.max,
      peerVersion: sendVersion,
    };

    this.queueSize = queueSize;
    this.queueMask = queueSize - 1;
    const slab = new Uint8Array(queueSize * DATAGRAM_BYTES_MAX);
    this.slots = [];
    for (let i = 0; i < queueSize; i++) this.slots.push(slab.subarray(i * DATAGRAM_BYTES_MAX, (i + 1) * DATAGRAM_BYTES_MAX));
    this.slotPayloadBytes = new Uint16Array(queueSize);
    this.slotFirstSentMs = new Float64Array(queueSize);
    this.slotLastSentMs = new Float64Array(queueSize);
    this.slotSends = new Uint16Array(queueSize);

    this.windowSize = windowSize;
    this.windowMask = windowSize - 1;
    this.windowSlab = new Uint8Array(windowSize * DATAGRAM_PAYLOAD_BYTES_MAX);
    this.windowPresent = new Uint8Array(windowSize);
    this.windowSeq = new Uint32Array(windowSize);
    this.windowPayloadBytes = new Uint16Array(windowSize);

    // A new channel says hello at its first tick: a peer that knew an earlier instance of this
    // member learns the new session (and that its copies are gone) at once.
    this.lastSentAnyMs = nowMs - KEEPALIVE_INTERVAL_MS;
    this.lastHeardMs = nowMs;
  }

  /** Sets the epoch stamped on outgoing datagrams and the oldest epoch accepted. */
  setEpoch(epoch: number, minEpoch: number): void {
    assert(epoch >>> 0 === epoch && minEpoch >>> 0 === minEpoch, "epochs are u32");
    this.epoch = epoch;
    this.minEpoch = minEpoch;
    this.openContext.epoch = epoch;
    this.openContext.minEpoch = minEpoch;
  }

  /** The version outgoing datagrams are sealed with. */
  get protocolVersion(): number {
    return this.sendVersion;
  }

  /**
   * Seals every datagram from now on (retransmissions included) with version v. The peer
   * reads it only if v is in its range: the orchestrator picks a version every member reads.
   */
  setProtocolVersion(v: number): void {
    if (!Number.isInteger(v) || v < this.protocolVersionMin || v > this.protocolVersionMax) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `HyperSync protocol version ${v} is outside this channel's range ${this.protocolVersionMin}..${this.protocolVersionMax}`, {
        version: v,
        min: this.protocolVersionMin,
        max: this.protocolVersionMax,
      });
    }
    this.sendVersion = v;
  }

  /** Sealed datagrams awaiting acknowledgement. */
  get inFlight(): number {
    return (this.nextSeq - this.oldestSeq) >>> 0;
  }

  /** How long the oldest datagram not yet acknowledged has waited since its first send (0: none). */
  oldestUnackedAgeMs(nowMs: number): number {
    if (this.inFlight === 0) return 0;
    const first = this.slotFirstSentMs[this.oldestSeq & this.queueMask]!;
    return Math.max(0, nowMs - first);
  }

  /** Datagrams that can still be sealed before the oldest would be abandoned (for pacing bulk transfers). */
  get resendQueueFree(): number {
    return this.queueSize - this.inFlight - (this.open ? 1 : 0);
  }

  /**
   * Sequence number of the DATA datagram holding the last enqueued record (it is open, or
   * sealed since). With isAcknowledged, a caller learns when a given record reached the peer.
   */
  get lastEnqueuedSeq(): number {
    return this.open ? this.nextSeq : (this.nextSeq - 1) >>> 0;
  }

  /** True once the peer has cumulatively acknowledged DATA datagram `seq` (this session). */
  isAcknowledged(seq: number): boolean {
    return this.ackedAny && seqDiff(seq, this.ackedSeq) <= 0;
  }

  /** Current retransmission timeout. */
  get retransmitTimeoutMs(): number {
    return this.rtoMs;
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Appends one whole record (bytes[offset, offset + length)); seals the open datagram first if
   * it would not fit. The datagram goes out within FLUSH_INTERVAL_MS, or by `latestMs` when that
   * is later: a record that may wait (a coalesced change, already late by design) rides with
   * the next record that cannot instead of costing a datagram of its own.
   */
  enqueue(bytes: Uint8Array, offset: number, length: number, nowMs: number, latestMs = nowMs + FLUSH_INTERVAL_MS): void {
    assert(length >= 1 && length <= DATAGRAM_PAYLOAD_BYTES_MAX, "record length out of range");
    assert(offset >= 0 && offset + length <= bytes.length, "record outside its buffer");
    if (this.open && this.openPayloadBytes + length > DATAGRAM_PAYLOAD_BYTES_MAX) this.sealAndSend(nowMs);
    if (!this.open) this.openDatagram();
    const slot = this.slots[this.nextSeq & this.queueMask]!;
    const at = DATAGRAM_HEADER_BYTES + this.openPayloadBytes;
    // A plain loop: records are short, and subarray() would allocate a view per record.
    for (let i = 0; i < length; i++) slot[at + i] = bytes[offset + i]!;
    this.openPayloadBytes += length;
    this.openRecordCount++;
    this.counters.recordsEnqueued++;
    const dueMs = Math.max(latestMs, nowMs + FLUSH_INTERVAL_MS);
    if (dueMs < this.openFlushDueMs) this.openFlushDueMs = dueMs;
  }

  /**
   * Seals and sends the open datagram now (e.g. at the end of an engine batch). ackNow asks the
   * peer to acknowledge it at once (a caller that waits for the acknowledgement: bulk ends).
   */
  flush(nowMs: number, ackNow = false): void {
    if (this.open) this.sealAndSend(nowMs, ackNow);
  }

  private openDatagram(): void {
    if (this.inFlight === this.queueSize) this.abandonOldest();
    this.open = true;
    this.openPayloadBytes = 0;
    this.openRecordCount = 0;
    this.openFlushDueMs = Infinity;
  }

  /** The resend queue is full: give up the oldest datagram and resync its buckets instead. */
  private abandonOldest(): void {
    const index = this.oldestSeq & this.queueMask;
    const slot = this.slots[index]!;
    const end = DATAGRAM_HEADER_BYTES + this.slotPayloadBytes[index]!;
    const rec = this.abandonRecord;
    let added = 0;
    // Records were whole when enqueued, so decoding walks the payload exactly (bounded by it).
    for (let p = DATAGRAM_HEADER_BYTES; p < end; ) {
      const next = decodeRecord(slot, p, end, rec);
      assert(next > p, "an enqueued record does not decode");
      p = next;
      if (!isStateRecordKind(rec.kind)) {
        this.counters.controlRecordsAbandoned++;
        continue;
      }
      const bucket = this.bucketOfRecord(rec);
      if (bucket >= 0 && !this.needsResync.has(bucket)) {
        this.needsResync.add(bucket);
        added++;
      }
    }
    this.oldestSeq = (this.oldestSeq + 1) >>> 0;
    this.counters.queueFullEvents++;
    this.counters.resyncs += added;
    if (added > 0) this.port.event(ChannelEvent.RESYNC_NEEDED);
  }

  private fillHeader(type: number, seq: number, flags: number): DatagramHeader {
    const h = this.outHeader;
    h.type = type;
    // Short only when both sides know each other's session (the receiver fills them in) and
    // the peer sends our version (else the long form names ours: see the file comment).
    h.long = !this.peerConfirmed || this.peerSession === 0 || this.peerVersion !== this.sendVersion;
    if (h.long) this.counters.longHeaders++;
    else this.counters.shortHeaders++;
    h.clusterId = this.clusterId;
    h.senderId = this.localId;
    h.receiverId = this.peerId;
    h.session = this.session;
    h.peerSession = this.peerSession;
    h.epoch = this.epoch;
    h.seq = seq;
    h.ack = this.peerSession === 0 ? 0 : (this.expected - 1) >>> 0;
    h.firstSeq = this.oldestSeq;
    h.hasFirstSeq = h.long || seqDiff(this.oldestSeq, this.peerAck + 1) > 0;
    h.flags = flags;
    h.version = this.sendVersion;
    return h;
  }

  /** Every outgoing datagram carries the cumulative ACK, so a pending ACK is satisfied. */
  private afterSend(length: number, nowMs: number): void {
    this.counters.bytesSent += length;
    this.lastSentAnyMs = nowMs;
    if (this.peerSession !== 0) {
      this.ackPendingCount = 0;
      this.ackDueAtMs = Infinity;
      this.ackNow = false;
    }
  }

  private sealAndSend(nowMs: number, ackNow = false): void {
    assert(this.open && this.openRecordCount > 0, "no open datagram to seal");
    const seq = this.nextSeq;
    const index = seq & this.queueMask;
    // Ask for a prompt ACK when half the queue waits, so a slow ACK never abandons datagrams.
    const flags = ackNow || this.inFlight + 1 >= this.queueSize >>> 1 ? DatagramFlag.ACK_NOW : 0;
    const h = this.fillHeader(DatagramType.DATA, seq, flags);
    const start = sealDatagram(this.slots[index]!, DATAGRAM_HEADER_BYTES, this.openPayloadBytes, h, this.key);
    const length = datagramBytes(h, this.openPayloadBytes);
    this.slotPayloadBytes[index] = this.openPayloadBytes;
    this.slotFirstSentMs[index] = nowMs;
    this.slotLastSentMs[index] = nowMs;
    this.slotSends[index] = 1;
    this.nextSeq = (seq + 1) >>> 0;
    this.open = false;
    this.counters.sent++;
    this.port.send(this.slots[index]!, start, length);
    this.afterSend(length, nowMs);
  }

  private retransmit(seq: number, nowMs: number): void {
    const index = seq & this.queueMask;
    const h = this.fillHeader(DatagramType.DATA, seq, DatagramFlag.ACK_NOW | DatagramFlag.RETRANSMIT);
    const start = sealDatagram(this.slots[index]!, DATAGRAM_HEADER_BYTES, this.slotPayloadBytes[index]!, h, this.key);
    const length = datagramBytes(h, this.slotPayloadBytes[index]!);
    this.slotLastSentMs[index] = nowMs;
    if (this.slotSends[index]! < 0xffff) this.slotSends[index]!++;
    this.counters.resent++;
    this.port.send(this.slots[index]!, start, length);
    this.afterSend(length, nowMs);
  }

  /** ACK, NACK (ranges already written at DATAGRAM_HEADER_BYTES of controlBuf) or KEEPALIVE. */
  private sendControl(type: number, payloadBytes: number, nowMs: number): void {
    const h = this.fillHeader(type, (this.nextSeq - 1) >>> 0, 0);
    const start = sealDatagram(this.controlBuf, DATAGRAM_HEADER_BYTES, payloadBytes, h, this.key);
    const length = datagramBytes(h, payloadBytes);
    this.port.send(this.controlBuf, start, length);
    this.afterSend(length, nowMs);
  }

  private sampleRtt(sampleMs: number): void {
    if (this.srttMs < 0) {
      this.srttMs = sampleMs;
      this.rttvarMs = sampleMs / 2;
    } else {
      this.rttvarMs = 0.75 * this.rttvarMs + 0.25 * Math.abs(this.srttMs - sampleMs);
      this.srttMs = 0.875 * this.srttMs + 0.125 * sampleMs;
    }
    const rto = this.srttMs + Math.max(1, 4 * this.rttvarMs);
    this.baseRtoMs = Math.min(RTO_MAX_MS, Math.max(RTO_MIN_MS, rto));
    this.counters.rttMs = this.srttMs;
  }

  private processAck(ack: number, nowMs: number): void {
    if (seqDiff(ack, this.peerAck) > 0 && seqDiff(ack, this.nextSeq) < 0) this.peerAck = ack;
    const advance = seqDiff(ack, this.oldestSeq) + 1;
    if (advance <= 0) return; // old news
    if (advance > this.inFlight) {
      this.counters.badAcks++;
      return;
    }
    // Karn's rule: a retransmitted datagram's ACK cannot tell which copy it answers. And a
    // cumulative ACK that covers a repaired hole waited for the repair, so any retransmission
    // in the newly acknowledged range disqualifies the sample (bounded by the queue size).
    let clean = true;
    for (let k = 0; k < advance && clean; k++) clean = this.slotSends[(this.oldestSeq + k) & this.queueMask] === 1;
    if (clean) this.sampleRtt(Math.max(0, nowMs - this.slotFirstSentMs[ack & this.queueMask]!));
    this.oldestSeq = (ack + 1) >>> 0;
    this.ackedSeq = ack;
    this.ackedAny = true;
    this.counters.acked += advance;
    // Progress ends any backoff (as TCP stacks do), so one bad spell does not slow recovery for long.
    this.rtoMs = this.baseRtoMs;
  }

  private processNack(buf: Uint8Array, h: DatagramHeader, nowMs: number): void {
    this.counters.nacksReceived++;
    const resendAfterMs = Math.max(RESEND_MIN_INTERVAL_MS, this.srttMs);
    const last = (this.nextSeq - 1) >>> 0;
    const ranges = nackRangeCount(h.payloadEnd - h.payloadOffset);
    for (let i = 0; i < ranges; i++) {
      let from = nackRangeFirst(buf, h.payloadOffset, i);
      let to = nackRangeLast(buf, h.payloadOffset, i);
      if (seqDiff(from, this.oldestSeq) < 0) from = this.oldestSeq;
      if (seqDiff(to, last) > 0) to = last;
      const span = seqDiff(to, from);
      if (span < 0 || span >= this.queueSize) continue; // empty after clamping, or nonsense
      for (let k = 0; k <= span; k++) {
        const seq = (from + k) >>> 0;
        const index = seq & this.queueMask;
        // A first NACK of a datagram is news: resend at once. A datagram already resent is
        // resent again only once the previous copy had time to arrive (repeated NACKs).
        if (this.slotSends[index] === 1 || nowMs >= this.slotLastSentMs[index]! + resendAfterMs) this.retransmit(seq, nowMs);
      }
    }
  }

  // ---- receiving -------------------------------------------------------------------------

  /** Verifies and processes one datagram from the network. Never throws on its bytes. */
  receive(buf: Uint8Array, len: number, nowMs: number): ReceiveResult {
    assert(!this.receiving, "receive() re-entered from a handler");
    this.receiving = true;
    try {
      return this.receiveInner(buf, len, nowMs);
    } finally {
      this.receiving = false;
    }
  }

  private countDrop(result: OpenResult): void {
    const c = this.counters;
    switch (result) {
      case OpenResult.TRUNCATED:
        c.truncated++;
        break;
      case OpenResult.TOO_LONG:
        c.tooLong++;
        break;
      case OpenResult.BAD_VERSION:
        c.badVersion++;
        break;
      case OpenResult.WRONG_CLUSTER:
        c.wrongCluster++;
        break;
      case OpenResult.BAD_MAC:
        c.badMac++;
        break;
      case OpenResult.STALE_EPOCH:
        c.staleEpoch++;
        break;
      case OpenResult.BAD_TYPE:
        c.badType++;
        break;
      case OpenResult.UNKNOWN_SESSION:
        c.unknownSession++;
        break;
      case OpenResult.WRONG_PEER:
        c.wrongPeer++;
        break;
      case OpenResult.MISADDRESSED:
        c.misaddressed++;
        break;
      default:
        c.malformed++;
    }
  }

  private receiveInner(buf: Uint8Array, len: number, nowMs: number): ReceiveResult {
    const h = this.inHeader;
    const opened = openDatagram(buf, len, this.key, this.openContext, h);
    if (opened !== OpenResult.OK) {
      this.countDrop(opened);
      // A short header from a peer we have not heard: it knew an earlier instance of this
      // member. Tell it our session (a long keep-alive), so it stops sending what we cannot read.
      if (opened === OpenResult.UNKNOWN_SESSION && nowMs >= this.lastAnnounceMs + NACK_REPEAT_MS) {
        this.lastAnnounceMs = nowMs;
        this.counters.keepalivesSent++;
        this.sendControl(DatagramType.KEEPALIVE, 0, nowMs);
      }
      return opened;
    }
    if (h.session !== this.peerSession) {
      if (this.peerSession !== 0 && seqDiff(h.session, this.peerSession) < 0) {
        this.counters.staleSession++;
        return ReceiveResult.STALE_SESSION;
      }
      const restarted = this.peerSession !== 0;
      this.resetReceive(h.session, h.firstSeq);
      this.openContext.peerSession = h.session;
      if (restarted) {
        this.counters.peerRestarts++;
        this.port.event(ChannelEvent.PEER_RESTARTED);
      }
    }
    this.counters.datagramsReceived++;
    this.lastHeardMs = nowMs;
    // The first guess for the peer's next short datagram (datagram.ts, "Versions").
    this.peerVersion = h.version;
    this.openContext.peerVersion = h.version;
    // A datagram naming our session (explicitly, or implied by a verified short header) shows
    // the peer knows it; one naming another (0: not heard yet; older: we restarted) shows it does not.
    this.peerConfirmed = h.peerSession === this.session;
    if (this.peerState !== PeerState.UP) {
      this.peerState = PeerState.UP;
      this.port.event(ChannelEvent.PEER_UP);
    }
    // Our side of the conversation: the peer's ACK and NACKs of our DATA.
    if (h.peerSession === this.session) {
      this.processAck(h.ack, nowMs);
      if (h.type === DatagramType.NACK) this.processNack(buf, h, nowMs);
    }
    // The peer's side: its DATA to us.
    if (h.hasFirstSeq && seqDiff(h.firstSeq, this.expected) > 0) this.skipTo(h.firstSeq);
    this.noteHighest(h.seq);
    if (h.type === DatagramType.DATA) this.acceptData(buf, h);
    if ((h.flags & DatagramFlag.ACK_NOW) !== 0 && h.type !== DatagramType.ACK && h.type !== DatagramType.NACK) this.ackNow = true;
    this.respond(nowMs);
    return ReceiveResult.OK;
  }

  private resetReceive(peerSession: number, firstSeq: number): void {
    this.peerSession = peerSession;
    this.expected = firstSeq;
    this.highestSeen = (firstSeq - 1) >>> 0;
    this.newHole = false;
    this.windowPresent.fill(0);
    this.ackPendingCount = 0;
    this.ackDueAtMs = Infinity;
    this.ackNow = false;
    this.lastNackMs = -Infinity;
  }

  /** Records that the peer has sent `seq`; jumping past highestSeen + 1 opens a new hole to NACK. */
  private noteHighest(seq: number): void {
    const d = seqDiff(seq, this.expected);
    if (d < 0 || d >= this.windowSize) return;
    const ahead = seqDiff(seq, this.highestSeen);
    if (ahead <= 0) return;
    // DATA seq == highestSeen + 1 fills no hole and opens none; a control datagram's seq means
    // that seq itself was sent but not (yet) received.
    if (ahead > 1 || this.inHeader.type !== DatagramType.DATA) this.newHole = true;
    this.highestSeen = seq;
  }

  private acceptData(buf: Uint8Array, h: DatagramHeader): void {
    const seq = h.seq;
    const d = seqDiff(seq, this.expected);
    if (d < 0) {
      // Our ACK may have been lost: say it again soon.
      this.counters.duplicates++;
      this.ackNow = true;
      return;
    }
    if (d >= this.windowSize) {
      this.counters.beyondWindow++;
      return;
    }
    const index = seq & this.windowMask;
    if (d === 0) {
      this.counters.received++;
      this.ackPendingCount++;
      this.deliverPayload(buf, h.payloadOffset, h.payloadEnd);
      this.expected = (this.expected + 1) >>> 0;
      this.deliverBuffered();
      return;
    }
    if (this.windowPresent[index] === 1 && this.windowSeq[index] === seq) {
      this.counters.duplicates++;
      return;
    }
    const payloadBytes = h.payloadEnd - h.payloadOffset;
    this.windowSlab.set(buf.subarray(h.payloadOffset, h.payloadEnd), index * DATAGRAM_PAYLOAD_BYTES_MAX);
    this.windowPresent[index] = 1;
    this.windowSeq[index] = seq;
    this.windowPayloadBytes[index] = payloadBytes;
    this.counters.received++;
    this.counters.outOfOrder++;
    this.ackPendingCount++;
  }

  /** Delivers buffered datagrams that are now in order. Bounded by the window. */
  private deliverBuffered(): void {
    for (let n = 0; n < this.windowSize; n++) {
      const index = this.expected & this.windowMask;
      if (this.windowPresent[index] === 0 || this.windowSeq[index] !== this.expected) return;
      this.deliverFromWindow(index);
      this.expected = (this.expected + 1) >>> 0;
    }
  }

  private deliverFromWindow(index: number): void {
    this.windowPresent[index] = 0;
    const start = index * DATAGRAM_PAYLOAD_BYTES_MAX;
    this.deliverPayload(this.windowSlab, start, start + this.windowPayloadBytes[index]!);
  }

  /** The peer no longer retransmits seqs below firstSeq: deliver what we have of them, skip the rest. */
  private skipTo(firstSeq: number): void {
    const gap = seqDiff(firstSeq, this.expected);
    const scan = Math.min(gap, this.windowSize);
    for (let k = 0; k < scan; k++) {
      const seq = (this.expected + k) >>> 0;
      const index = seq & this.windowMask;
      if (this.windowPresent[index] === 1 && this.windowSeq[index] === seq) this.deliverFromWindow(index);
      else this.counters.skipped++;
    }
    this.counters.skipped += gap - scan;
    this.expected = firstSeq;
    if (seqDiff(this.highestSeen, this.expected) < 0) this.highestSeen = (firstSeq - 1) >>> 0;
    this.deliverBuffered();
    this.ackPendingCount++;
  }

  private deliverPayload(buf: Uint8Array, start: number, end: number): void {
    const rec = this.record;
    let p = start;
    // Bounded by the payload: every record is at least one byte long. A record that does not
    // decode ends the payload (what follows it cannot be delimited).
    while (p < end) {
      const next = decodeRecord(buf, p, end, rec);
      if (next < 0) {
        this.counters.malformed++;
        return;
      }
      this.port.deliver(rec);
      this.counters.recordsDelivered++;
      p = next;
    }
  }

  private hasGap(): boolean {
    // expected itself is missing whenever something at or beyond it is known to exist.
    return seqDiff(this.highestSeen, this.expected) >= 0;
  }

  private respond(nowMs: number): void {
    const newHole = this.newHole;
    this.newHole = false;
    if (this.hasGap() && (newHole || nowMs >= this.lastNackMs + NACK_REPEAT_MS)) {
      this.sendNack(nowMs);
      return;
    }
    if (this.ackNow || this.ackPendingCount >= ACK_EVERY_DATAGRAMS) {
      this.sendAck(nowMs);
      return;
    }
    if (this.ackPendingCount > 0 && this.ackDueAtMs === Infinity) this.ackDueAtMs = nowMs + ACK_DELAY_MS;
  }

  private sendAck(nowMs: number): void {
    this.counters.acksSent++;
    this.sendControl(DatagramType.ACK, 0, nowMs);
  }

  private sendNack(nowMs: number): void {
    const buf = this.controlBuf;
    let ranges = 0;
    let runStart = -1;
    const span = seqDiff(this.highestSeen, this.expected);
    // Missing runs in [expected, highestSeen]; bounded by the window and NACK_RANGES_MAX.
    for (let k = 0; k <= span && ranges < NACK_RANGES_MAX; k++) {
      const seq = (this.expected + k) >>> 0;
      const index = seq & this.windowMask;
      const missing = this.windowPresent[index] === 0 || this.windowSeq[index] !== seq;
      if (missing && runStart < 0) runStart = k;
      if (!missing && runStart >= 0) {
        writeNackRange(buf, DATAGRAM_HEADER_BYTES, ranges++, (this.expected + runStart) >>> 0, (seq - 1) >>> 0);
        runStart = -1;
      }
    }
    // highestSeen may be a seq announced by a control datagram and not received: a run can end there.
    if (runStart >= 0 && ranges < NACK_RANGES_MAX) {
      writeNackRange(buf, DATAGRAM_HEADER_BYTES, ranges++, (this.expected + runStart) >>> 0, this.highestSeen);
    }
    assert(ranges > 0, "NACK without a gap");
    this.counters.nacksSent++;
    this.lastNackMs = nowMs;
    this.newHole = false;
    this.sendControl(DatagramType.NACK, ranges * 8, nowMs);
  }

  // ---- time ------------------------------------------------------------------------------

  /** Does everything that is due at nowMs: flush, retransmit, ACK, NACK, keep-alive, dead-peer check. */
  tick(nowMs: number): void {
    // Each check is written as `nowMs >= the deadline nextDeadlineMs() computes`, the same
    // float expression, so a deadline reported is a deadline acted on.
    if (this.open && nowMs >= this.openFlushDueMs) this.sealAndSend(nowMs);

    const inFlight = this.inFlight;
    let burst = 0;
    let oldestExpired = false;
    for (let k = 0; k < inFlight && burst < RETRANSMIT_BURST_MAX; k++) {
      const seq = (this.oldestSeq + k) >>> 0;
      if (nowMs >= this.slotLastSentMs[seq & this.queueMask]! + this.rtoMs) {
        if (k === 0) oldestExpired = true;
        this.retransmit(seq, nowMs);
        burst++;
      }
    }
    // The timer, as in TCP, is the oldest datagram's: its expiry backs off the RTO once, however
    // many ticks the burst bound spreads the retransmissions over.
    if (oldestExpired) {
      this.counters.timeouts++;
      this.rtoMs = Math.min(RTO_MAX_MS, this.rtoMs * 2);
    }

    if (this.peerSession !== 0) {
      if (this.hasGap() && nowMs >= this.lastNackMs + NACK_REPEAT_MS) this.sendNack(nowMs);
      else if (this.ackDueAtMs <= nowMs || this.ackNow) this.sendAck(nowMs);
    }

    if (nowMs >= this.lastSentAnyMs + KEEPALIVE_INTERVAL_MS) {
      this.counters.keepalivesSent++;
      this.sendControl(DatagramType.KEEPALIVE, 0, nowMs);
    }

    if (this.peerState !== PeerState.DEAD && nowMs >= this.lastHeardMs + PEER_DEAD_AFTER_MS) {
      this.peerState = PeerState.DEAD;
      this.counters.peerDeaths++;
      this.port.event(ChannelEvent.PEER_DEAD);
    }
  }

  /** The earliest time at which tick() has something to do (Infinity never happens: keep-alives). */
  nextDeadlineMs(): number {
    let due = this.lastSentAnyMs + KEEPALIVE_INTERVAL_MS;
    if (this.open) due = Math.min(due, this.openFlushDueMs);
    const inFlight = this.inFlight;
    for (let k = 0; k < inFlight; k++) {
      due = Math.min(due, this.slotLastSentMs[(this.oldestSeq + k) & this.queueMask]! + this.rtoMs);
    }
    if (this.peerSession !== 0) {
      due = Math.min(due, this.ackDueAtMs);
      if (this.hasGap()) due = Math.min(due, this.lastNackMs + NACK_REPEAT_MS);
    }
    if (this.peerState !== PeerState.DEAD) due = Math.min(due, this.lastHeardMs + PEER_DEAD_AFTER_MS);
    return due;
  }
}
