// ClusterNode: one member of a security group. It wraps the engine with the cluster's rules:
// which frames it processes (bucket ownership), where it corrects the others to, and how it
// keeps its buckets' connections alive on a second member (HyperSync owner -> backup).
//
//   frame -> parse once -> bucket (FragmentTracker; ICMP errors: the quoted flow's bucket)
//     owner of the bucket in this epoch         -> engine, then replicate what changed
//     backup/fill holding the connection        -> engine (the connection is promoted)
//     otherwise                                 -> correctTo = owner (FORWARD, not processed)
//
// Replication (owner -> backup and the bucket's extra "fill" backups). What a backup must hold
// is what failover needs: every connection whose handshake completed (TCP ESTABLISHED or later;
// other protocols once a reply was seen), in a state close enough that the new owner carries
// it on. So changes are sent at two speeds:
//   protected       the change that completes the handshake -> CREATE/UPDATE at once (within
//                   the channel's FLUSH_INTERVAL_MS): the guarantee depends on it.
//   everything else (a new connection, handshake steps, FIN_WAIT/CLOSE_WAIT/LAST_ACK/TIME_WAIT,
//                   seen-reply, assured) -> deferred SYNC_DEFER_MS and coalesced: the state as
//                   it is then goes out once, riding (up to SYNC_LAZY_MS more) in the next
//                   datagram to the same target. A connection that appears and disappears
//                   within the window costs nothing; a handshake-and-close costs two records.
//   entry removed   -> DELETE, only if a copy was ever sent (ConnectionTable.onRemove sees every
//                   removal: expiry, RST/needsNew replacement, eviction).
//   idle timer      -> REFRESH only when a copy would otherwise expire before the connection:
//                   the housekeeping sweep finds owned entries whose expiry moved past what
//                   the targets hold, REFRESH_LEAD_MS before the copies' expiry. Packets cost
//                   nothing per packet; a busy flow costs one REFRESH per timeout period.
//   new target, resync -> BULK_BEGIN, CREATE..., BULK_END (one bucket at once)
// A bucket in a transition (an extra "fill" target) sends every change at once: the members of
// a make-before-break move must agree on every connection, handshakes included. An epoch change
// first sends every deferred change, so a flip never strands one.
// The guarantee only needs the protected part before a failure; the simulator's protection
// check wants every connection quiet for 300 ms to agree on owner and backup, which the deferral
// (SYNC_DEFER_MS + SYNC_LAZY_MS, 150 ms, one retransmission included: asserted) keeps.
// Windows learned by processing packets are forgotten (F_RELEARNED cleared) when the bucket
// becomes a copy here: the owner's packets move them on, so the next packet processed here
// re-learns them.
//
// Bookkeeping, per entry id and per bucket (typed arrays, sized once):
//   bucket lists  head[b] -> id -> next[id] -> ... (doubly linked): every live entry is in the
//                 list of its bucket exactly once, so bulk, promotion and stale removal walk
//                 one bucket, never the whole table.
//   digests       BucketDigests: the sum of connectionDigest(key, state) of the bucket's entries,
//                 updated on every insert, state change and removal.
//   entryFlags    the state/seen-reply/assured last accounted, plus BULK_SEEN (re-sent by the
//                 running bulk), RELEARNED (TCP windows reset), DIRTY (processed here as a
//                 non-owner, not yet replicated), GRACE, REPLICATED (a copy may exist elsewhere:
//                 removal sends DELETE), PENDING (in the deferred queue), SENT_PROTECTED (the
//                 copies have the completed handshake).
//   deferred      a FIFO of (entry id, due time): times grow, so the head is the next due. A
//                 removed entry's slot is skipped (PENDING cleared); a reused id may be flushed
//                 early by its old slot, never late.
// Invariants (verifyBookkeeping() checks them): list membership = table liveness; per-bucket
// count and digest equal a full scan of the table; role OWNER buckets have no bulk in progress.
//
// Failover and TCP windows: a promoted connection forgets its maxWindow (both directions) and
// its MAXACK flags, so the tracker's "no window known yet" branch re-learns each direction from
// its next segment (Linux's mid-stream pick-up); from then on segments are checked. So records
// carry windows only during the handshake (a SYN/ACK is checked against the SYN's end); later
// ones carry the window scales and per-direction flags, which cannot be re-learned.
//
// Expiry: the owner decides. tick() runs the engine's bounded expiry sweep every
// HOUSEKEEPING_INTERVAL_MS; what an owner expires goes out as DELETE (onRemove), flushed at once.
// Copies carry BACKUP_EXPIRY_GRACE_MS on top of the owner's expiry, so a backup's own sweep only
// matters when an owner vanished; the grace comes off on promotion.
//
// Apply: a backup applies a CREATE/UPDATE straight from the decoded record into the table's
// words (no snapshot object), hashing the key once for both the bucket and the table.
//
// Epoch lag: the distributor may route by a newer table than this node knows. A backup or
// fill copy that receives packets is processed (promoted) and marked DIRTY; when the node's
// epoch makes it the owner it replicates those copies at once. A node that owns a bucket and
// receives a record of a connection it does not hold (the previous owner, one epoch behind,
// created it) adopts it. Copies of buckets the node no longer holds are dropped once no record
// arrived for them in STALE_HOLD_MS (a peer ahead of us may be filling them already).
//
// Protocol versions: every channel reads the node's range (options.protocolVersions) and seals
// with the node's send version (setProtocolVersion: the distribution document's
// hypersyncVersion in the runtime); channels made later start with the current one.
//
// Time: the caller passes nowMs to every call and calls tick() when nextDeadlineMs() is due;
// nothing here reads a clock. Per-packet work allocates nothing; setEpoch, bulk transfers,
// verification and the outbox entries (one per datagram) do.

import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { readU32 } from "../packet/addr.js";
import { flowHash4, flowHashOfView, flowHashRaw, type FlowKey } from "../packet/flow-hash.js";
import { parseFrame, parseQuotedIp } from "../packet/parse.js";
import { IpProto, PacketView, ParseFailure } from "../packet/view.js";
import { Engine } from "../engine/engine.js";
import {
  ENTRY_WORDS,
  META_ASSURED,
  META_SEEN_REPLY,
  TCP_DIR_FLAGS_MASK,
  TCP_FLAGS_SHIFT,
  TCP_LAST_INDEX_NONE,
  TCP_LAST_INDEX_SHIFT,
  TCP_SCALE_SHIFT,
  W_END,
  W_EXPIRES,
  W_MAX_END,
  W_MAX_WIN,
  W_META,
  W_TCP,
} from "../engine/connection-table.js";
import type { RuleBase } from "../engine/rule-base.js";
import type { RouteTable } from "../engine/routing.js";
import { ConnState, DropReason, TcpDirFlag, Verdict, type ConnectionSnapshot, type TcpDirectionSnapshot } from "../engine/types.js";
import { FragmentTracker } from "../distribution/bucket-hash.js";
import type { EpochTable } from "../distribution/epoch.js";
import { isPowerOfTwo, NO_MEMBER } from "../distribution/rendezvous.js";
import { ChannelEvent, ReceiveResult, SyncChannel, type ChannelPort } from "./channel.js";
import { DATAGRAM_PAYLOAD_BYTES_MAX, DIGEST_PAIRS_MAX, FLUSH_INTERVAL_MS, RECORD_BYTES_MAX, RESEND_QUEUE_DATAGRAMS_MAX, RTO_INITIAL_MS } from "./constants.js";
import { MacKey } from "./datagram.js";
import { assertProtocolVersionRange, inProtocolVersionRange, PROTOCOL_VERSIONS_DEFAULT, type ProtocolVersionRange } from "./protocol-version.js";
import { connectionDigestRaw } from "./digest.js";
import {
  encodeBulkBegin,
  encodeBulkEnd,
  encodeCreate,
  encodeDelete,
  encodeDigestList,
  encodeRefresh,
  encodeResyncRequest,
  encodeUpdate,
  RecordKind,
  stateRecordBytesMax,
  type DecodedRecord,
} from "./records.js";

// ---- bounds and timers ------------------------------------------------------------------

/**
 * Changes that do not complete a handshake wait this long and go out coalesced (see the file
 * comment). Well under the simulator's QUIET_MS (300), so a quiet connection's copies agree.
 */
export const SYNC_DEFER_MS = 50;
/**
 * A deferred change, once due, may wait this much longer for a datagram to the same target
 * that goes out anyway (the channel's lazy flush): late by design already, it should not cost
 * a datagram of its own. SYNC_DEFER_MS + SYNC_LAZY_MS stays well under the 300 ms in which the
 * simulator expects a quiet connection's copies to agree.
 */
export const SYNC_LAZY_MS = 100;
/**
 * An owner refreshes its targets' copy of a connection whose expiry moved on, this long before
 * the expiry the copy holds (it must get there before the copy could expire). At least the
 * refresh sweep's pass time (REFRESH_SWEEP_PASSES_MS) plus flush and transit.
 */
export const REFRESH_LEAD_MS = 2000;
/** After a connection is re-learned, its segments are watched this long for re-anchoring (see reanchor). */
export const RELEARN_WATCH_MS = 10_000;
/** The refresh sweep visits every entry at least this often. */
export const REFRESH_SWEEP_PASSES_MS = 1000;
/**
 * Added to every expiry a backup holds, so its copy never expires before the owner's: the
 * owner decides when a connection ends and sends DELETE. A copy's grace is removed when its
 * bucket is promoted (the copy is the connection now) and added when an owner becomes the
 * backup of its bucket (flip).
 */
export const BACKUP_EXPIRY_GRACE_MS = 3000;
/** Expiry sweep and stale-bucket removal run this often (bounded work each time). */
export const HOUSEKEEPING_INTERVAL_MS = 10;
/** Entries of stale buckets removed per housekeeping run. */
export const STALE_REMOVE_BUDGET = 1024;
/**
 * A bucket this node neither owns, backs up nor fills keeps its copies this long after the
 * last record for it arrived: a peer one epoch ahead may already be filling it for us.
 */
export const STALE_HOLD_MS = 1000;
/** Buckets one peer's bulk transfer sends per tick (bounded work per tick). */
export const BULK_BUCKETS_PER_TICK_MAX = 64;
/** Resend-queue datagrams a bulk transfer leaves free for live records. */
export const BULK_RESERVE_DATAGRAMS = 32;
/** A bucket's owner syncs to its backup and at most this many extra (fill) backups. */
export const FILL_TARGETS_MAX = 2;
const TARGETS_MAX = 1 + FILL_TARGETS_MAX;
/** The zone of frames from the distributor (one zone per security group today). */
const FRAME_ZONE = 0;

assert(REFRESH_LEAD_MS >= REFRESH_SWEEP_PASSES_MS + HOUSEKEEPING_INTERVAL_MS + 100, "a refresh must reach the copy before it expires");
assert(BACKUP_EXPIRY_GRACE_MS >= 1000 + HOUSEKEEPING_INTERVAL_MS, "backup grace must cover expiry rounding and sweep lag");
assert(BULK_RESERVE_DATAGRAMS < RESEND_QUEUE_DATAGRAMS_MAX / 2, "bulk reserve leaves no room for bulk");
assert(SYNC_DEFER_MS >= FLUSH_INTERVAL_MS && SYNC_LAZY_MS >= FLUSH_INTERVAL_MS, "deferral shorter than the channel flush");
assert(SYNC_DEFER_MS + SYNC_LAZY_MS + RTO_INITIAL_MS < 300, "a deferred change reaches the backup (one retransmission included) before a quiet connection is checked");

// ---- public types -----------------------------------------------------------------------

export interface ClusterNodeOptions {
  /** Member (appliance) id, as in MemberWeight.id. */
  name: string;
  /** 1..65535, unique in the cluster; HyperSync sender/receiver id. */
  memberId: number;
  clusterId: number;
  /** >= 16 bytes, HMAC key of every sync datagram. */
  clusterKey: Uint8Array;
  /** Cluster seed: flow hash, bucket table seed, engine hash seed. */
  hashSeed: number;
  /** Connection table capacity. */
  capacity: number;
  /** null/undefined: accept every new connection. */
  ruleBase?: RuleBase | null;
  /** Optional route table (TTL decrement, egress); null/undefined: no routing. */
  routes?: RouteTable | null;
  /** Grows across restarts of the same member (HyperSync session). */
  session: number;
  /**
   * HyperSync protocol versions this node reads (default PROTOCOL_VERSIONS_DEFAULT, this
   * build's). It sends its min until setProtocolVersion says otherwise.
   */
  protocolVersions?: ProtocolVersionRange;
}

export type ConnectionRole = "owner" | "backup" | "fill" | "stale";

export interface OutboxEntry {
  to: string;
  bytes: Uint8Array;
}

export interface VerifyResult {
  peer: string;
  /** Buckets held by both whose digests differ, ascending. */
  differing: number[];
}

/** Role codes per bucket (Uint8Array). NONE: the node has no business with the bucket. */
const Role = { NONE: 0, OWNER: 1, BACKUP: 2, FILL: 3 } as const;
const ROLE_NAMES: readonly ConnectionRole[] = ["stale", "owner", "backup", "fill"];

/** State of one sync target of an owned bucket. */
const Target = { NONE: 0, LIVE: 1, PENDING: 2 } as const;
/** Which measured round a pending bulk belongs to. */
const Round = { NONE: 0, REPROTECT: 1, FILL: 2 } as const;

// entryFlags bits.
const F_ACCOUNTED = 0x3f; // state (4 bits) | seen-reply | assured, as last accounted
const F_SEEN_REPLY = 0x10;
const F_ASSURED = 0x20;
const F_BULK_SEEN = 0x40;
const F_RELEARNED = 0x80;
/**
 * Changed here while this node did not own the bucket (the distributor already routes it
 * here and this node's epoch lags): replicated at once when the node becomes the owner. A
 * record from the owner clears it (the copy is the owner's again).
 */
const F_DIRTY = 0x100;
/** The expiry includes BACKUP_EXPIRY_GRACE_MS (set from a record, or kept as a backup). */
const F_GRACE = 0x200;
/** A copy may exist on another member (a record was sent, or this is one): removal sends DELETE. */
const F_REPLICATED = 0x400;
/** In the deferred queue: its state goes out when the slot is due. */
const F_PENDING = 0x800;
/** The targets were sent a state with the handshake completed (so later changes may wait). */
const F_SENT_PROTECTED = 0x1000;
/**
 * A packet of the connection was processed here since the last record for it was applied (or
 * since this node demoted its bucket): this node's state is newer than the last owner's.
 */
const F_TOUCHED = 0x2000;
const NIL = -1;

// bucketWords layout (see the field).
const BW = 4;
const BW_HEAD = 0;
const BW_SIZE = 1;
const BW_DIGEST = 2;
const BW_BULK_FROM = 3;

function newCounters() {
  return {
    /** Frames given to receiveFrame. */
    frames: 0,
    /** Frames processed by the engine here (owned bucket or a held copy). */
    framesProcessed: 0,
    /** Frames for a bucket owned elsewhere, without a local copy: forwarded to the owner. */
    corrections: 0,
    /** Frames dropped because no epoch is installed yet (no owner known). */
    notOwnerDrops: 0,
    /** Connections promoted by their first packet here as a non-owner. */
    promotions: 0,
    /** Buckets, and their connections, this node took over as owner through setEpoch. */
    promotedBuckets: 0,
    promotedConnections: 0,
    /** Records enqueued to peers (live and bulk, each target counted). */
    syncRecordsSent: 0,
    /** Sealed datagrams handed to the transport (records per datagram = the batching). */
    syncDatagramsSent: 0,
    createsSent: 0,
    updatesSent: 0,
    deletesSent: 0,
    refreshesSent: 0,
    /** Changes that went out at once because they completed a handshake (or the bucket is moving). */
    syncsUrgent: 0,
    /** Deferred changes sent when due (each may stand for several state changes). */
    syncsDeferred: 0,
    /** Connections removed within the deferral window before any copy was sent: nothing to send. */
    syncsElided: 0,
    /** CREATE/UPDATE/DELETE/REFRESH records applied to the local table. */
    syncRecordsApplied: 0,
    /** Records dropped: for a bucket this node owns, or a bulk end without its begin. */
    recordsIgnored: 0,
    /** Authentic records that do not make sense (key outside the record's bucket). */
    recordsInvalid: 0,
    /** DELETE/REFRESH for a key not held (already gone). */
    recordsUnknownKey: 0,
    /** Records of an owned bucket taken from its previous owner (an epoch behind): connections not held, or held and untouched here since. */
    adopted: 0,
    /** Copies that could not be stored (table full, nothing evictable). */
    applyFailed: 0,
    bulkBucketsSent: 0,
    bulkRecordsSent: 0,
    bulkBucketsReceived: 0,
    /** Bulk transfers whose result did not match the sender's digest (a resync is requested). */
    bulkMismatches: 0,
    resyncRequestsSent: 0,
    resyncRequestsReceived: 0,
    /** Bulks scheduled again: RESYNC_NEEDED, RESYNC_REQUEST, restarted peer. */
    rebulks: 0,
    /** Virtual ms from the setEpoch that gave buckets a new backup to the ACK of the last one's BULK_END; -1 before any. */
    reprotectMs: -1,
    reprotectBuckets: 0,
    /** The same for the extra backups of a fill phase; -1 before any. */
    fillMs: -1,
    fillBuckets: 0,
    /** Copies removed because this node no longer owns, backs up or fills their bucket. */
    staleRemoved: 0,
    /** Sync datagrams dropped (any reason: bad MAC, stale epoch, malformed, unknown peer...). */
    badDatagrams: 0,
    staleEpoch: 0,
    /** ...of them, long-form datagrams of a protocol version outside this node's range. */
    badVersion: 0,
    unknownPeer: 0,
    peerUps: 0,
    peerDeaths: 0,
    peerRestarts: 0,
    verifyRequests: 0,
    verifyRepliesSent: 0,
  };
}
export type ClusterNodeCounters = ReturnType<typeof newCounters>;

// ---- helpers -------------------------------------------------------------------------------

function newDirection(): TcpDirectionSnapshot {
  return { end: 0, maxEnd: 0, maxWindow: 0, scale: 0, flags: 0 };
}

/** A reusable snapshot with `length`-byte addresses and its own TCP section. */
class ScratchSnapshot {
  readonly s: ConnectionSnapshot;
  readonly tcp: { original: TcpDirectionSnapshot; reply: TcpDirectionSnapshot };
  constructor(length: number) {
    this.tcp = { original: newDirection(), reply: newDirection() };
    this.s = {
      zone: 0,
      protocol: 0,
      src: new Uint8Array(length),
      dst: new Uint8Array(length),
      srcPort: 0,
      dstPort: 0,
      state: 0 as ConnState,
      expiresAtMs: 0,
      seenReply: false,
      assured: false,
      tcp: null,
    };
  }
}

/** Datagrams a bulk transfer of `count` connections may take (worst case: IPv6 TCP records with windows and a zone). */
function bulkDatagramsFor(count: number): number {
  return Math.ceil((count * stateRecordBytesMax(16, true, true, 1) + 64) / DATAGRAM_PAYLOAD_BYTES_MAX) + 1;
}

/** TCP states before the handshake completed: their copies need the windows (a SYN/ACK is checked against the SYN). */
function isHandshakeState(state: number): boolean {
  return state === ConnState.TCP_SYN_SENT || state === ConnState.TCP_SYN_RECV || state === ConnState.TCP_SYN_SENT2;
}

/** TCP states after a completed handshake: a connection the guarantee protects. */
function isProtectedTcpState(state: number): boolean {
  return state >= ConnState.TCP_ESTABLISHED && state <= ConnState.TCP_TIME_WAIT;
}

function isIcmp(protocol: number): boolean {
  return protocol === IpProto.ICMP || protocol === IpProto.ICMPV6;
}

/** Smallest power of two >= n. */
function powerOfTwoAtLeast(n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/** One peer: its channel and the buckets waiting for a bulk transfer to it. */
class PeerLink {
  channel!: SyncChannel;
  /** Buckets to bulk-send, FIFO from bulkHead; an entry is stale unless its target is PENDING. */
  bulkQueue: number[] = [];
  bulkHead = 0;
  constructor(
    readonly index: number,
    readonly name: string,
    readonly memberId: number,
  ) {}
}

/** A measured set of bulk transfers: done when all were sent and their BULK_END acknowledged. */
interface BulkRound {
  kind: number;
  startMs: number;
  /** Bulks of the round not sent yet. */
  unsent: number;
  buckets: number;
  /** Peer index -> seq of the datagram holding its latest BULK_END of this round. */
  lastSeq: Map<number, number>;
}

interface PendingVerify {
  link: PeerLink;
  /** bucket -> this node's digest at request time (owner role) or -1 (compare at reply time). */
  asked: Map<number, number>;
  answered: number;
  differing: number[];
}

// ---- the node ------------------------------------------------------------------------------

export class ClusterNode {
  readonly name: string;
  readonly memberId: number;
  readonly engine: Engine;
  readonly outbox: OutboxEntry[] = [];
  readonly filled = new Set<number>();
  readonly counters: ClusterNodeCounters = newCounters();
  /** After receiveFrame: the member to forward the frame to (correction), else null. */
  correctTo: string | null = null;
  /** After receiveFrame: the drop reason (NONE when forwarded or corrected). */
  dropReason: number = DropReason.NONE;
  /** After receiveFrame: the frame's bucket, -1 when it has none (not IP, parse error). */
  bucket = -1;
  /** Result of the last requestVerify, once every asked bucket was answered. */
  lastVerify: VerifyResult | null = null;

  private readonly clusterId: number;
  private readonly session: number;
  private readonly hashSeed: number;
  private readonly key: MacKey;
  private readonly capacity: number;
  private readonly versions: ProtocolVersionRange;
  private sendVersion: number;
  private epochTable: EpochTable | null = null;
  private fillMap: ReadonlyMap<number, readonly string[]> = new Map();
  /** The clock of the call in progress (channel callbacks carry no time). */
  private nowMs: number;

  // Peers.
  private readonly links: (PeerLink | null)[] = [];
  private readonly linkByName = new Map<string, PeerLink>();

  // Per bucket (allocated by the first setEpoch; the bucket count never changes).
  private bucketCount = 0;
  private bucketMask = 0;
  private role = new Uint8Array(0);
  /** Owner's peer index (-1: this node, or the owner has no channel). */
  private ownerLink = new Int16Array(0);
  private targetPeer = new Int16Array(0);
  private targetState = new Uint8Array(0);
  private targetRound = new Uint8Array(0);
  /**
   * What a record touches per bucket, interleaved so that applying one costs one cache line,
   * not one per array: [head of the bucket list, size, digest (u32 bits), bulkFrom (peer index
   * whose bulk is running, or -1)] * bucketCount.
   */
  private bucketWords = new Int32Array(0);
  private bulkApplyFailed = new Uint8Array(0);
  private lastRecordMs = new Float64Array(0);
  private staleQueued = new Uint8Array(0);
  private staleQueue: number[] = [];
  private fragments: FragmentTracker | null = null;

  // Per entry id.
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly entryBucket: Int32Array;
  private readonly entryDigest: Uint32Array;
  private readonly entryFlags: Uint16Array;
  /** The owner's expiry (owner clock) as last sent to the targets: their copies last at least that long. */
  private readonly syncedExpiresAtMs: Float64Array;

  // Deferred changes: a ring of (entry id, due time), due times non-decreasing.
  private readonly deferIds: Int32Array;
  private readonly deferDueMs: Float64Array;
  private readonly deferMask: number;
  private deferHead = 0;
  private deferCount = 0;
  private refreshCursor = 0;
  /** Until then, TCP frames check for half-learned connections (see reanchor). */
  private relearnWatchUntilMs = -Infinity;
  private readonly refreshBudget: number;

  // Scratch (reused; nothing on the packet path allocates).
  private readonly view = new PacketView();
  private readonly quote = new PacketView();
  private readonly encode4 = new ScratchSnapshot(4);
  private readonly encode6 = new ScratchSnapshot(16);
  private readonly key4 = new ScratchSnapshot(4);
  private readonly key6 = new ScratchSnapshot(16);
  /** A view holding a record's key, for the table's lookup and insert (see applyState). */
  private readonly applyView = new PacketView();
  private readonly applyAddresses = new Uint8Array(32);
  private readonly hashAddresses = new Uint8Array(32);
  private readonly recordBuf = new Uint8Array(RECORD_BYTES_MAX);
  private nextHousekeepingMs: number;

  private readonly oldTargetPeer = new Int16Array(TARGETS_MAX);
  private readonly oldTargetState = new Uint8Array(TARGETS_MAX);
  private readonly oldTargetRound = new Uint8Array(TARGETS_MAX);
  private reprotectRound: BulkRound | null = null;
  private fillRound: BulkRound | null = null;
  private pendingVerify: PendingVerify | null = null;

  constructor(options: ClusterNodeOptions, nowMs: number) {
    assert(options.name.length > 0, "a member needs a name");
    assert(Number.isInteger(options.memberId) && options.memberId >= 1 && options.memberId <= 0xffff, "memberId must be 1..65535");
    assert(options.session >>> 0 === options.session && options.session !== 0, "session must be a nonzero u32");
    this.name = options.name;
    this.memberId = options.memberId;
    this.clusterId = options.clusterId >>> 0;
    this.session = options.session;
    this.hashSeed = options.hashSeed | 0;
    this.key = new MacKey(options.clusterKey);
    this.capacity = options.capacity;
    const versions = options.protocolVersions ?? PROTOCOL_VERSIONS_DEFAULT;
    assertProtocolVersionRange(versions);
    this.versions = Object.freeze({ min: versions.min, max: versions.max });
    // The range's min: a node of the previous build reads it (see protocol-version.ts).
    this.sendVersion = versions.min;
    this.engine = new Engine({
      capacity: options.capacity,
      hashSeed: options.hashSeed,
      ruleBase: options.ruleBase ?? null,
      routes: options.routes ?? null,
      // A full expiry pass at least every 100 housekeeping runs (one second).
      sweepBudget: Math.max(1024, Math.ceil(options.capacity / 100)),
    });
    const capacity = this.engine.table.capacity;
    this.next = new Int32Array(capacity).fill(NIL);
    this.prev = new Int32Array(capacity).fill(NIL);
    this.entryBucket = new Int32Array(capacity).fill(NIL);
    this.entryDigest = new Uint32Array(capacity);
    this.entryFlags = new Uint16Array(capacity);
    this.syncedExpiresAtMs = new Float64Array(capacity);
    const deferSize = powerOfTwoAtLeast(Math.max(1024, capacity));
    this.deferIds = new Int32Array(deferSize);
    this.deferDueMs = new Float64Array(deferSize);
    this.deferMask = deferSize - 1;
    // A full refresh pass every REFRESH_SWEEP_PASSES_MS of housekeeping runs.
    this.refreshBudget = Math.ceil(capacity / Math.floor(REFRESH_SWEEP_PASSES_MS / HOUSEKEEPING_INTERVAL_MS));
    this.engine.table.onRemove = (id) => this.onEntryRemoved(id);
    this.nowMs = nowMs;
    this.nextHousekeepingMs = nowMs + HOUSEKEEPING_INTERVAL_MS;
  }

  /** Current epoch number (0 before the first setEpoch). */
  get epoch(): number {
    return this.epochTable === null ? 0 : this.epochTable.epoch;
  }

  // ---- protocol versions -------------------------------------------------------------------

  /** The HyperSync protocol versions this node reads (what the member reports in heartbeats). */
  get protocolVersions(): ProtocolVersionRange {
    return this.versions;
  }

  /** The version this node seals its datagrams with. */
  get protocolVersion(): number {
    return this.sendVersion;
  }

  /**
   * Seals every datagram from now on with version v, on every channel (and on channels made
   * later). v outside this node's range is a TandemError (an orchestrator naming a version this
   * build does not speak); the caller keeps the current version then.
   */
  setProtocolVersion(v: number): void {
    if (!inProtocolVersionRange(this.versions, v)) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `HyperSync protocol version ${v} is outside ${this.name}'s range ${this.versions.min}..${this.versions.max}`, {
        version: v,
        min: this.versions.min,
        max: this.versions.max,
      });
    }
    this.sendVersion = v;
    for (const link of this.links) if (link !== null) link.channel.setProtocolVersion(v);
  }

  // ---- epochs ------------------------------------------------------------------------------

  /**
   * Installs an epoch's bucket table (or the same epoch with a new fill map: a fill phase
   * routes by the old table). See the API brief; in short, one pass over the buckets decides
   * each role change: newly owned buckets are promoted, owned buckets get bulk transfers to
   * targets that do not hold them yet, buckets left with no role are forgotten (after
   * STALE_HOLD_MS without records).
   */
  setEpoch(epoch: EpochTable, fill: ReadonlyMap<number, readonly string[]>, peers: ReadonlyMap<string, number>, nowMs: number): void {
    this.nowMs = nowMs;
    const table = epoch.table;
    assert(isPowerOfTwo(table.bucketCount), "bucket count must be a power of two");
    assert((epoch.seed | 0) === this.hashSeed, "the epoch's seed must be the cluster seed the node hashes with");
    assert(this.epochTable === null || epoch.epoch >= this.epochTable.epoch, "epochs never go back");
    if (this.epochTable === null) this.allocateBuckets(table.bucketCount);
    assert(table.bucketCount === this.bucketCount, "the bucket count never changes across epochs");
    // Deferred changes go to the targets they were meant for before roles and targets change:
    // a bucket that moves must not carry a change only its old owner knows.
    this.drainDeferred(nowMs, true);

    this.updatePeers(peers, nowMs);
    // Members switch epochs at slightly different times (the controller tells each in turn,
    // and a fill phase keeps the old number), so a peer one epoch behind still sends records
    // that matter: the old owner's last live updates, stragglers it processed, a fill that
    // started under the previous epoch. A peer two epochs behind missed a whole transition:
    // what it sends describes a table that no longer exists, and is dropped as stale.
    const minEpoch = epoch.epoch > 0 ? epoch.epoch - 1 : 0;
    for (const link of this.links) if (link !== null) link.channel.setEpoch(epoch.epoch, minEpoch);

    const previous = this.epochTable;
    const previousFill = this.fillMap;
    this.epochTable = epoch;
    this.fillMap = fill;
    const me = table.members.indexOf(this.name);
    const linkOfMember = Int16Array.from(table.members, (m) => this.linkByName.get(m)?.index ?? NIL);

    // Extra backups per bucket, as peer indexes; and which buckets this node fills.
    const extra = new Int16Array(this.bucketCount * FILL_TARGETS_MAX).fill(NIL);
    const fillsHere = new Uint8Array(this.bucketCount);
    for (const [bucket, targets] of fill) {
      assert(Number.isInteger(bucket) && bucket >= 0 && bucket < this.bucketCount, "fill bucket out of range");
      assert(targets.length <= FILL_TARGETS_MAX, "too many extra backups for one bucket");
      let k = 0;
      for (const t of targets) {
        if (t === this.name) fillsHere[bucket] = 1;
        else extra[bucket * FILL_TARGETS_MAX + k++] = this.linkByName.get(t)?.index ?? NIL;
      }
    }

    const reprotect: BulkRound = { kind: Round.REPROTECT, startMs: nowMs, unsent: 0, buckets: 0, lastSeq: new Map() };
    const filling: BulkRound = { kind: Round.FILL, startMs: nowMs, unsent: 0, buckets: 0, lastSeq: new Map() };
    const newTargets = new Int16Array(TARGETS_MAX);
    for (let b = 0; b < this.bucketCount; b++) {
      const ownerIndex = table.owner[b]!;
      const backupIndex = table.backup[b]!;
      const oldRole = this.role[b]!;
      let newRole: number = Role.NONE;
      if (me !== NO_MEMBER && ownerIndex === me) newRole = Role.OWNER;
      else if (me !== NO_MEMBER && backupIndex === me) newRole = Role.BACKUP;
      else if (fillsHere[b] === 1) newRole = Role.FILL;
      this.role[b] = newRole;
      this.ownerLink[b] = newRole === Role.OWNER ? NIL : linkOfMember[ownerIndex]!;

      if (newRole === Role.OWNER) {
        newTargets.fill(NIL);
        newTargets[0] = backupIndex === NO_MEMBER ? NIL : linkOfMember[backupIndex]!;
        for (let k = 0; k < FILL_TARGETS_MAX; k++) newTargets[1 + k] = extra[b * FILL_TARGETS_MAX + k]!;
        // Filling a bucket that has no backup is re-protection (after a failure, the controller
        // may fill the future backups during the promote epoch); other fills are moves.
        this.retarget(b, oldRole === Role.OWNER, newTargets, previous, previousFill, reprotect, backupIndex === NO_MEMBER ? reprotect : filling);
        // The first table promotes nothing: a node starts with an empty table.
        if (oldRole !== Role.OWNER && previous !== null) this.promoteBucket(b);
      } else {
        this.clearTargets(b);
        if (oldRole === Role.OWNER && newRole !== Role.NONE) this.demoteBucket(b);
        else if (newRole !== Role.NONE) this.forgetLearnedWindows(b);
        if (newRole === Role.NONE && oldRole !== Role.NONE) this.queueStale(b);
      }
    }
    if (reprotect.unsent > 0) this.reprotectRound = reprotect;
    if (filling.unsent > 0) this.fillRound = filling;
  }

  private allocateBuckets(bucketCount: number): void {
    this.bucketCount = bucketCount;
    this.bucketMask = bucketCount - 1;
    this.role = new Uint8Array(bucketCount);
    this.ownerLink = new Int16Array(bucketCount).fill(NIL);
    this.targetPeer = new Int16Array(bucketCount * TARGETS_MAX).fill(NIL);
    this.targetState = new Uint8Array(bucketCount * TARGETS_MAX);
    this.targetRound = new Uint8Array(bucketCount * TARGETS_MAX);
    this.bucketWords = new Int32Array(bucketCount * BW);
    for (let b = 0; b < bucketCount; b++) {
      this.bucketWords[b * BW + BW_HEAD] = NIL;
      this.bucketWords[b * BW + BW_BULK_FROM] = NIL;
    }
    this.bulkApplyFailed = new Uint8Array(bucketCount);
    this.lastRecordMs = new Float64Array(bucketCount).fill(-Infinity);
    this.staleQueued = new Uint8Array(bucketCount);
    this.fragments = new FragmentTracker({ seed: this.hashSeed, bucketCount });
  }

  /** Channels follow `peers`: new names get one, names no longer listed lose theirs. */
  private updatePeers(peers: ReadonlyMap<string, number>, nowMs: number): void {
    for (const link of this.linkByName.values()) {
      const id = peers.get(link.name);
      if (id === link.memberId) continue;
      this.linkByName.delete(link.name);
      this.links[link.index] = null;
    }
    for (const [name, memberId] of peers) {
      if (name === this.name || this.linkByName.has(name)) continue;
      assert(memberId !== this.memberId, `peer ${name} has this node's memberId`);
      // Indexes are never reused: a target slot naming a departed peer's index must not
      // pass for a new peer's (setEpoch compares indexes to keep a target's state).
      const index = this.links.length;
      assert(index <= 0x7fff, "too many peers over the node's life");
      const link = new PeerLink(index, name, memberId);
      const port: ChannelPort = {
        send: (bytes, offset, length) => {
          this.counters.syncDatagramsSent++;
          this.outbox.push({ to: name, bytes: bytes.slice(offset, offset + length) });
        },
        deliver: (record) => this.onRecord(link, record),
        event: (event) => this.onChannelEvent(link, event),
      };
      link.channel = new SyncChannel(
        {
          clusterId: this.clusterId,
          localId: this.memberId,
          peerId: memberId,
          session: this.session,
          key: this.key,
          protocolVersions: this.versions,
          protocolVersion: this.sendVersion,
          bucketOfRecord: (rec) => this.bucketOfRecord(rec),
        },
        port,
        nowMs,
      );
      this.links[index] = link;
      this.linkByName.set(name, link);
    }
  }

  /**
   * Sets the sync targets of an owned bucket. A target keeps its state when it already was
   * one; otherwise it is LIVE when it held the bucket in the previous table (owner, backup or
   * extra backup: it has every connection already) or when this is the node's first table,
   * else PENDING with a bulk queued.
   */
  private retarget(
    b: number,
    wasOwner: boolean,
    newTargets: Int16Array,
    previous: EpochTable | null,
    previousFill: ReadonlyMap<number, readonly string[]>,
    reprotect: BulkRound,
    filling: BulkRound,
  ): void {
    const base = b * TARGETS_MAX;
    const oldPeer = this.oldTargetPeer;
    const oldState = this.oldTargetState;
    const oldRound = this.oldTargetRound;
    for (let k = 0; k < TARGETS_MAX; k++) {
      oldPeer[k] = this.targetPeer[base + k]!;
      oldState[k] = this.targetState[base + k]!;
      oldRound[k] = this.targetRound[base + k]!;
    }
    for (let k = 0; k < TARGETS_MAX; k++) {
      const p = newTargets[k]!;
      // A member listed twice (backup and extra) is one target.
      let duplicate = false;
      for (let j = 0; j < k; j++) if (newTargets[j] === p) duplicate = true;
      if (p === NIL || duplicate) {
        this.targetPeer[base + k] = NIL;
        this.targetState[base + k] = Target.NONE;
        this.targetRound[base + k] = Round.NONE;
        continue;
      }
      this.targetPeer[base + k] = p;
      let kept = -1;
      if (wasOwner) for (let j = 0; j < TARGETS_MAX; j++) if (oldPeer[j] === p && oldState[j] !== Target.NONE) kept = j;
      if (kept >= 0) {
        this.targetState[base + k] = oldState[kept]!;
        this.targetRound[base + k] = oldRound[kept]!;
        // A bulk still waiting from an earlier round is measured with the new one.
        if (oldState[kept] === Target.PENDING && oldRound[kept] !== Round.NONE) {
          const round = oldRound[kept] === Round.REPROTECT ? reprotect : filling;
          round.unsent++;
          round.buckets++;
        }
        continue;
      }
      const link = this.links[p]!;
      // This node's first table: it holds nothing yet, so there is nothing to transfer. (A
      // restarted member rejoins through a fill phase, where it owns nothing.)
      if (!wasOwner && (previous === null || heldBefore(previous, previousFill, b, link.name))) {
        this.targetState[base + k] = Target.LIVE;
        this.targetRound[base + k] = Round.NONE;
        continue;
      }
      const round = k === 0 ? reprotect : filling;
      this.targetState[base + k] = Target.PENDING;
      this.targetRound[base + k] = round.kind;
      round.unsent++;
      round.buckets++;
      link.bulkQueue.push(b);
    }
  }

  private clearTargets(b: number): void {
    const base = b * TARGETS_MAX;
    for (let k = 0; k < TARGETS_MAX; k++) {
      this.targetPeer[base + k] = NIL;
      this.targetState[base + k] = Target.NONE;
      this.targetRound[base + k] = Round.NONE;
    }
  }

  /** The bucket is this node's now: its copies become connections, TCP windows to re-learn. */
  private promoteBucket(b: number): void {
    this.bucketWords[b * BW + BW_BULK_FROM] = NIL;
    this.counters.promotedBuckets++;
    for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL; id = this.next[id]!) {
      if ((this.entryFlags[id]! & F_DIRTY) !== 0) {
        // Processed here before this epoch arrived: the targets have only older records.
        this.entryFlags[id] = this.entryFlags[id]! & ~F_DIRTY;
        this.syncNow(id, b, this.nowMs);
      }
      if ((this.entryFlags[id]! & F_GRACE) !== 0) {
        this.entryFlags[id] = this.entryFlags[id]! & ~F_GRACE;
        const table = this.engine.table;
        table.setExpiresAt(id, table.expiresAt(id) - BACKUP_EXPIRY_GRACE_MS);
      }
      this.relearn(id);
      this.counters.promotedConnections++;
    }
  }

  /** The bucket was this node's and is now a copy: give its entries the backup's grace. */
  private demoteBucket(b: number): void {
    const table = this.engine.table;
    for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL; id = this.next[id]!) {
      // The new owner's records are newer than anything this node saw as owner, and the windows
      // it learned stop following the connection: a later promotion re-learns them.
      this.entryFlags[id] = this.entryFlags[id]! & ~(F_TOUCHED | F_RELEARNED);
      if ((this.entryFlags[id]! & F_GRACE) !== 0) continue;
      this.entryFlags[id] = this.entryFlags[id]! | F_GRACE;
      table.setExpiresAt(id, table.expiresAt(id) + BACKUP_EXPIRY_GRACE_MS);
    }
  }

  /**
   * The bucket is a copy here in the new epoch: windows this node learned while it processed
   * its packets (as an owner, or ahead of its epoch) no longer follow the connection, which the
   * owner processes. The next packet processed here re-learns them (relearn).
   */
  private forgetLearnedWindows(b: number): void {
    for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL; id = this.next[id]!) this.entryFlags[id] = this.entryFlags[id]! & ~F_RELEARNED;
  }

  /**
   * Forgets the TCP windows of a copy (see the file comment): maxWindow 0 in both directions
   * makes the tracker take each direction's window from its next segment, and without the
   * MAXACK flags a RST is judged against the re-learned window rather than a stale end.
   */
  private relearn(id: number): void {
    this.entryFlags[id] = this.entryFlags[id]! | F_RELEARNED;
    const table = this.engine.table;
    if (table.protocolOf(id) !== IpProto.TCP) return;
    this.relearnWatchUntilMs = Math.max(this.relearnWatchUntilMs, this.nowMs + RELEARN_WATCH_MS);
    const words = table.words;
    const base = id * ENTRY_WORDS;
    words[base + W_MAX_WIN] = 0;
    words[base + W_MAX_WIN + 1] = 0;
    const maxack = (TcpDirFlag.MAXACK_SET << TCP_FLAGS_SHIFT) | (TcpDirFlag.MAXACK_SET << (TCP_FLAGS_SHIFT + 6));
    // BE_LIBERAL: the ends of the other direction are as old as the last record; the first
    // segment they call impossible re-anchors them instead of being dropped (Tracker.resync).
    const liberal = (TcpDirFlag.BE_LIBERAL << TCP_FLAGS_SHIFT) | (TcpDirFlag.BE_LIBERAL << (TCP_FLAGS_SHIFT + 6));
    words[base + W_TCP] = (words[base + W_TCP]! & ~maxack) | liberal;
  }

  /**
   * A segment of a re-learning connection whose other side has not spoken since: it anchors
   * its sender's window again (as the first one did). The first segment after a failover may be
   * a late duplicate; anchoring on it alone would make the next, newer segment look like it
   * acknowledges data never seen (the simulator's "moved by a join" finding). Once both sides
   * have spoken, every segment is checked against what both said.
   */
  private reanchor(id: number, direction: number): void {
    const words = this.engine.table.words;
    const base = id * ENTRY_WORDS;
    if (words[base + W_MAX_WIN + (direction ^ 1)] !== 0) return;
    words[base + W_MAX_WIN + direction] = 0;
    words[base + W_TCP] = words[base + W_TCP]! & ~(TcpDirFlag.MAXACK_SET << (TCP_FLAGS_SHIFT + 6 * direction));
  }

  /** The bucket lost its role here: its copies stay STALE_HOLD_MS (longer if records keep coming). */
  private queueStale(b: number): void {
    this.lastRecordMs[b] = this.nowMs;
    if (this.staleQueued[b] === 1 || this.bucketWords[b * BW + BW_SIZE] === 0) return;
    this.staleQueued[b] = 1;
    this.staleQueue.push(b);
  }

  // ---- frames ------------------------------------------------------------------------------

  /** See the API brief. Never throws on frame bytes. */
  receiveFrame(frame: Uint8Array, offset: number, length: number, linkType: number, nowMs: number): number {
    this.nowMs = nowMs;
    this.correctTo = null;
    this.bucket = -1;
    this.counters.frames++;
    const view = this.view;
    const engine = this.engine;
    parseFrame(view, frame, offset, length, linkType);
    const epoch = this.epochTable;
    if (view.failure !== ParseFailure.NONE || view.ipVersion === 0) {
      // No flow, no bucket: the engine drops and counts it (parse error, not IP).
      this.counters.framesProcessed++;
      const verdict = engine.process(view, FRAME_ZONE, nowMs);
      this.dropReason = engine.dropReason;
      return verdict;
    }
    if (epoch === null) {
      this.counters.notOwnerDrops++;
      this.dropReason = DropReason.NOT_OWNER;
      return Verdict.DROP;
    }

    // The bucket. An ICMP error belongs to the connection it quotes (that is where the engine
    // looks it up); a later fragment to its first fragment.
    let lookupView = view;
    let hash: number;
    const quoteOffset = view.icmpQuoteOffset;
    if (view.icmpIsError && quoteOffset >= 0 && quoteOffset <= view.l3End && parseQuotedIp(this.quote, view.buf, quoteOffset, view.l3End)) {
      lookupView = this.quote;
      hash = flowHashOfView(this.hashSeed, this.quote);
    } else {
      hash = this.fragments!.flowHashOfPacket(view, nowMs);
    }
    const b = hash & this.bucketMask;
    this.bucket = b;
    const role = this.role[b]!;

    const laterFragment = view.isFragment && view.fragmentOffset !== 0 && lookupView === view;
    let held = -1;
    if (role !== Role.OWNER) {
      if ((role === Role.BACKUP || role === Role.FILL) && !laterFragment) {
        const id = engine.table.lookup(FRAME_ZONE, lookupView, hash);
        if (id >= 0 && !engine.table.isExpired(id, nowMs)) held = id;
      }
      if (held < 0) {
        this.counters.corrections++;
        this.correctTo = epoch.table.members[epoch.table.owner[b]!]!;
        this.dropReason = DropReason.NONE;
        return Verdict.FORWARD;
      }
      if ((this.entryFlags[held]! & F_RELEARNED) === 0) {
        this.relearn(held);
        this.counters.promotions++;
      }
    }
    // For a while after connections were re-learned (failover, promotion), TCP segments look
    // their connection up first, to re-anchor a half-learned one. Otherwise no extra lookup.
    if (nowMs < this.relearnWatchUntilMs && view.protocol === IpProto.TCP && lookupView === view && !laterFragment) {
      const id = held >= 0 ? held : engine.table.lookup(FRAME_ZONE, view, hash);
      if (id >= 0 && (this.entryFlags[id]! & F_RELEARNED) !== 0) this.reanchor(id, engine.table.lastDirection);
    }

    this.counters.framesProcessed++;
    const created = engine.counters.connectionsCreated;
    const verdict = engine.process(view, FRAME_ZONE, nowMs);
    this.dropReason = engine.dropReason;
    const id = engine.connection;
    if (id >= 0 && engine.table.isLive(id)) {
      if (engine.counters.connectionsCreated !== created) this.onCreated(id, nowMs);
      else this.onTracked(id, verdict === Verdict.FORWARD, nowMs);
    }
    return verdict;
  }

  /** A connection the engine just inserted: account it, replicate it if the bucket is ours. */
  private onCreated(id: number, nowMs: number): void {
    const table = this.engine.table;
    const b = table.hashOf(id) & this.bucketMask;
    this.link(id, b);
    const owner = this.role[b] === Role.OWNER;
    this.entryFlags[id] = this.accountedFlags(id) | F_TOUCHED | (owner ? 0 : F_DIRTY);
    this.entryDigest[id] = this.digestOfEntry(id);
    this.digestAdd(b, this.entryDigest[id]!);
    if (owner) this.noteChange(id, b, nowMs);
  }

  /** A packet of an existing connection: replicate a state change (idle-timer refreshes are the sweep's). */
  private onTracked(id: number, accepted: boolean, nowMs: number): void {
    const b = this.entryBucket[id]!;
    assert(b >= 0, "a live entry is in a bucket list");
    this.entryFlags[id] = this.entryFlags[id]! | F_TOUCHED | (this.role[b] !== Role.OWNER ? F_DIRTY : 0);
    // An accepted packet gave the entry a fresh expiry of its own, without grace.
    if (accepted) this.entryFlags[id] = this.entryFlags[id]! & ~F_GRACE;
    const flags = this.entryFlags[id]!;
    const now = this.accountedFlags(id);
    if (now !== (flags & F_ACCOUNTED)) {
      if (((now ^ flags) & 0xf) !== 0) {
        const digest = this.digestOfEntry(id);
        this.digestReplace(b, this.entryDigest[id]!, digest);
        this.entryDigest[id] = digest;
      }
      this.entryFlags[id] = (flags & ~F_ACCOUNTED) | now;
      if (this.role[b] === Role.OWNER) this.noteChange(id, b, nowMs);
    }
  }

  /** Does the connection's current state complete its handshake (the guarantee protects it)? */
  private isProtected(id: number): boolean {
    const table = this.engine.table;
    if (table.protocolOf(id) === IpProto.TCP) return isProtectedTcpState(table.state(id));
    return table.seenReply(id);
  }

  /**
   * An owned connection changed (created, or its accounted state moved). The change that
   * completes the handshake goes out at once, and so does every change of a moving bucket;
   * the others join the deferred queue (once: the state sent is the one at the due time).
   */
  private noteChange(id: number, b: number, nowMs: number): void {
    if (!this.hasLiveTarget(b)) return; // a pending bulk will carry the state
    const flags = this.entryFlags[id]!;
    if (((flags & F_SENT_PROTECTED) === 0 && this.isProtected(id)) || this.isMoving(b)) {
      this.counters.syncsUrgent++;
      this.syncNow(id, b, nowMs);
      return;
    }
    if ((flags & F_PENDING) !== 0) return;
    if (this.deferCount === this.deferIds.length) this.popDeferred(nowMs);
    const slot = (this.deferHead + this.deferCount) & this.deferMask;
    this.deferIds[slot] = id;
    this.deferDueMs[slot] = nowMs + SYNC_DEFER_MS;
    this.deferCount++;
    this.entryFlags[id] = flags | F_PENDING;
  }

  /** Sends the deferred changes that are due (all of them when `all`). Bounded by the queue. */
  private drainDeferred(nowMs: number, all: boolean): void {
    while (this.deferCount > 0 && (all || this.deferDueMs[this.deferHead]! <= nowMs)) this.popDeferred(nowMs);
  }

  /** Takes the head of the deferred queue and sends its entry's state if it still waits. */
  private popDeferred(nowMs: number): void {
    const id = this.deferIds[this.deferHead]!;
    this.deferHead = (this.deferHead + 1) & this.deferMask;
    this.deferCount--;
    const flags = this.entryFlags[id]!;
    // A removed entry's flags are 0; a reused id's new connection may go out early: harmless.
    if ((flags & F_PENDING) === 0) return;
    this.entryFlags[id] = flags & ~F_PENDING;
    const b = this.entryBucket[id]!;
    if (b === NIL || this.role[b] !== Role.OWNER) return;
    this.counters.syncsDeferred++;
    this.syncNow(id, b, nowMs, nowMs + SYNC_LAZY_MS);
  }

  /** Does the bucket have targets besides its backup (a make-before-break move in progress)? */
  private isMoving(b: number): boolean {
    const base = b * TARGETS_MAX;
    for (let k = 1; k < TARGETS_MAX; k++) if (this.targetState[base + k] !== Target.NONE) return true;
    return false;
  }

  private accountedFlags(id: number): number {
    const table = this.engine.table;
    return table.state(id) | (table.seenReply(id) ? F_SEEN_REPLY : 0) | (table.isAssured(id) ? F_ASSURED : 0);
  }

  // ---- bucket lists and digests -------------------------------------------------------------

  private link(id: number, b: number): void {
    assert(this.entryBucket[id] === NIL, "entry already in a bucket list");
    const first = this.bucketWords[b * BW + BW_HEAD]!;
    this.next[id] = first;
    this.prev[id] = NIL;
    if (first !== NIL) this.prev[first] = id;
    this.bucketWords[b * BW + BW_HEAD] = id;
    this.entryBucket[id] = b;
    this.bucketWords[b * BW + BW_SIZE]!++;
  }

  private unlink(id: number): void {
    const b = this.entryBucket[id]!;
    const before = this.prev[id]!;
    const after = this.next[id]!;
    if (before === NIL) this.bucketWords[b * BW + BW_HEAD] = after;
    else this.next[before] = after;
    if (after !== NIL) this.prev[after] = before;
    this.next[id] = NIL;
    this.prev[id] = NIL;
    this.entryBucket[id] = NIL;
    this.bucketWords[b * BW + BW_SIZE]!--;
  }

  /** ConnectionTable.onRemove: every removal, whoever makes it. The owner replicates it. */
  private onEntryRemoved(id: number): void {
    const b = this.entryBucket[id]!;
    assert(b !== NIL, "a removed entry was in a bucket list");
    const flags = this.entryFlags[id]!;
    if (this.role[b] === Role.OWNER && this.hasLiveTarget(b)) {
      if ((flags & F_REPLICATED) !== 0) {
        const end = encodeDelete(this.recordBuf, 0, this.recordBuf.length, this.keyOf(id));
        this.counters.deletesSent += this.sendToTargets(b, end);
      } else if ((flags & F_PENDING) !== 0) {
        // Created and gone within the deferral window: no copy exists, nothing to say.
        this.counters.syncsElided++;
      }
    }
    this.digestRemove(b, this.entryDigest[id]!);
    this.entryFlags[id] = 0;
    this.unlink(id);
  }

  /** The entry's key (ORIGINAL direction) in a scratch object: valid until the next call. */
  private keyOf(id: number): FlowKey {
    const table = this.engine.table;
    return table.keyInto(id, (table.isIpv6(id) ? this.key6 : this.key4).s);
  }

  private digestOfEntry(id: number): number {
    const k = this.keyOf(id);
    return connectionDigestRaw(k.zone, k.protocol, k.src, 0, k.dst, 0, k.src.length, k.srcPort, k.dstPort, this.engine.table.state(id));
  }

  // Bucket digests: the sum mod 2^32 of the bucket's connection digests (digest.ts).
  private digestAdd(b: number, digest: number): void {
    const at = b * BW + BW_DIGEST;
    this.bucketWords[at] = (this.bucketWords[at]! + digest) | 0;
  }

  private digestRemove(b: number, digest: number): void {
    const at = b * BW + BW_DIGEST;
    this.bucketWords[at] = (this.bucketWords[at]! - digest) | 0;
  }

  private digestReplace(b: number, before: number, after: number): void {
    const at = b * BW + BW_DIGEST;
    this.bucketWords[at] = (this.bucketWords[at]! - before + after) | 0;
  }

  private digestOf(b: number): number {
    return this.bucketWords[b * BW + BW_DIGEST]! >>> 0;
  }

  /** Order-independent digest of the connections this node holds in `bucket` (any role). O(1). */
  bucketDigest(bucket: number): number {
    if (this.bucketCount === 0) return 0;
    assert(Number.isInteger(bucket) && bucket >= 0 && bucket < this.bucketCount, "bucket out of range");
    return this.digestOf(bucket);
  }

  /**
   * Every bucket's digest from one scan of the table (ground truth, independent of the
   * incremental bookkeeping that bucketDigest reads). Allocates the result.
   */
  allBucketDigests(): Uint32Array {
    const out = new Uint32Array(this.bucketCount);
    const table = this.engine.table;
    table.forEachLive((id) => {
      const b = table.hashOf(id) & this.bucketMask;
      out[b] = (out[b]! + this.digestOfEntry(id)) >>> 0;
    });
    return out;
  }

  /** Buckets among `buckets` whose digest here differs from `peerDigests[bucket]` (a peer's allBucketDigests()). */
  verifyAgainst(peerDigests: Uint32Array, buckets: readonly number[]): number[] {
    const out: number[] = [];
    for (const b of buckets) if (this.bucketDigest(b) !== (peerDigests[b] ?? 0)) out.push(b);
    return out;
  }

  /** This node's role for `bucket` in the current epoch ("stale" when none), null before any epoch. */
  roleOf(bucket: number): ConnectionRole | null {
    if (this.epochTable === null) return null;
    return ROLE_NAMES[this.role[bucket]!]!;
  }

  /** Connections held in `bucket` (any role). */
  connectionsIn(bucket: number): number {
    return this.bucketCount === 0 ? 0 : this.bucketWords[bucket * BW + BW_SIZE]!;
  }

  /** Every connection held, with its bucket and this node's role for that bucket. Allocates. */
  forEachConnection(fn: (bucket: number, s: ConnectionSnapshot, role: ConnectionRole) => void): void {
    const table = this.engine.table;
    table.forEachLive((id) => {
      const b = table.hashOf(id) & this.bucketMask;
      fn(b, table.snapshot(id), ROLE_NAMES[this.bucketCount === 0 ? 0 : this.role[b]!]!);
    });
  }

  // ---- sending -------------------------------------------------------------------------------

  private hasLiveTarget(b: number): boolean {
    const base = b * TARGETS_MAX;
    for (let k = 0; k < TARGETS_MAX; k++) if (this.targetState[base + k] === Target.LIVE) return true;
    return false;
  }

  /** Enqueues recordBuf[0, end) to the bucket's LIVE targets, to go out by latestMs at the latest (see SyncChannel.enqueue); returns how many. */
  private sendToTargets(b: number, end: number, latestMs = this.nowMs): number {
    assert(end > 0, "record did not fit an empty buffer");
    const base = b * TARGETS_MAX;
    let sent = 0;
    for (let k = 0; k < TARGETS_MAX; k++) {
      if (this.targetState[base + k] !== Target.LIVE) continue;
      const link = this.links[this.targetPeer[base + k]!];
      if (link === null || link === undefined) continue;
      link.channel.enqueue(this.recordBuf, 0, end, this.nowMs, latestMs);
      sent++;
    }
    this.counters.syncRecordsSent += sent;
    return sent;
  }

  /** The connection as a snapshot in scratch (valid until the next call). */
  private snapshotOf(id: number): ConnectionSnapshot {
    const table = this.engine.table;
    const scratch = table.isIpv6(id) ? this.encode6 : this.encode4;
    const s = scratch.s;
    table.keyInto(id, s);
    s.state = table.state(id);
    s.expiresAtMs = table.expiresAt(id);
    s.seenReply = table.seenReply(id);
    s.assured = table.isAssured(id);
    if (s.protocol === IpProto.TCP) {
      table.tcpDirection(id, 0, scratch.tcp.original);
      table.tcpDirection(id, 1, scratch.tcp.reply);
      s.tcp = scratch.tcp;
    } else {
      s.tcp = null;
    }
    return s;
  }

  /**
   * Sends the connection's current state to the bucket's live targets now: CREATE the first
   * time, UPDATE after. The windows travel only during the handshake (file comment).
   */
  private syncNow(id: number, b: number, nowMs: number, latestMs = nowMs): void {
    if (!this.hasLiveTarget(b)) return;
    const flags = this.entryFlags[id]!;
    const s = this.snapshotOf(id);
    const buf = this.recordBuf;
    const windows = isHandshakeState(s.state);
    const create = (flags & F_REPLICATED) === 0;
    const end = create ? encodeCreate(buf, 0, buf.length, s, nowMs, windows) : encodeUpdate(buf, 0, buf.length, s, nowMs, windows);
    const sent = this.sendToTargets(b, end, latestMs);
    if (create) this.counters.createsSent += sent;
    else this.counters.updatesSent += sent;
    this.entryFlags[id] = (flags & ~F_PENDING) | F_REPLICATED | (this.isProtected(id) ? F_SENT_PROTECTED : 0);
    this.syncedExpiresAtMs[id] = s.expiresAtMs;
  }

  /**
   * The refresh sweep: visits refreshBudget entries from a rotating cursor (every entry within
   * REFRESH_SWEEP_PASSES_MS) and sends REFRESH for owned, replicated connections whose expiry
   * moved past what their copies hold, once the copies' expiry is REFRESH_LEAD_MS away.
   * A pending entry is skipped: its deferred record carries the expiry anyway.
   */
  private refreshSweep(nowMs: number): void {
    const table = this.engine.table;
    table.clockMs = nowMs;
    const capacity = this.syncedExpiresAtMs.length;
    let cursor = this.refreshCursor;
    for (let step = 0; step < this.refreshBudget; step++) {
      const id = cursor;
      cursor = cursor + 1 === capacity ? 0 : cursor + 1;
      const b = this.entryBucket[id]!;
      if (b === NIL || this.role[b] !== Role.OWNER) continue;
      const flags = this.entryFlags[id]!;
      if ((flags & (F_REPLICATED | F_PENDING)) !== F_REPLICATED) continue;
      const synced = this.syncedExpiresAtMs[id]!;
      if (nowMs < synced - REFRESH_LEAD_MS) continue;
      const expiresAtMs = table.expiresAt(id);
      if (expiresAtMs <= synced) continue;
      const buf = this.recordBuf;
      const sent = this.sendToTargets(b, encodeRefresh(buf, 0, buf.length, this.keyOf(id), expiresAtMs - nowMs), nowMs + SYNC_LAZY_MS);
      this.counters.refreshesSent += sent;
      this.syncedExpiresAtMs[id] = expiresAtMs;
    }
    this.refreshCursor = cursor;
  }

  // ---- bulk transfer -------------------------------------------------------------------------

  /** The target slot of `b` that is PENDING for peer `p`, or -1. */
  private pendingSlot(b: number, p: number): number {
    if (this.role[b] !== Role.OWNER) return -1;
    const base = b * TARGETS_MAX;
    for (let k = 0; k < TARGETS_MAX; k++) {
      if (this.targetPeer[base + k] === p && this.targetState[base + k] === Target.PENDING) return base + k;
    }
    return -1;
  }

  /** Marks peer `p`'s copy of owned bucket `b` for a new bulk transfer (resync). */
  private scheduleRebulk(b: number, link: PeerLink): void {
    if (b >= this.bucketCount || this.role[b] !== Role.OWNER) return;
    const base = b * TARGETS_MAX;
    for (let k = 0; k < TARGETS_MAX; k++) {
      if (this.targetPeer[base + k] !== link.index || this.targetState[base + k] !== Target.LIVE) continue;
      this.targetState[base + k] = Target.PENDING;
      this.targetRound[base + k] = Round.NONE;
      link.bulkQueue.push(b);
      this.counters.rebulks++;
    }
  }

  /** True when the head of the link's bulk queue can be sent now. */
  private bulkReady(link: PeerLink): boolean {
    while (link.bulkHead < link.bulkQueue.length) {
      const b = link.bulkQueue[link.bulkHead]!;
      if (this.pendingSlot(b, link.index) < 0) {
        link.bulkHead++;
        continue;
      }
      const channel = link.channel;
      // A bucket too large for the free queue waits for ACKs, unless nothing is in flight:
      // then it goes anyway (it cannot get more room than that).
      return channel.inFlight === 0 || bulkDatagramsFor(this.bucketWords[b * BW + BW_SIZE]!) <= channel.resendQueueFree - BULK_RESERVE_DATAGRAMS;
    }
    link.bulkQueue.length = 0;
    link.bulkHead = 0;
    return false;
  }

  private runBulks(nowMs: number): void {
    for (const link of this.links) {
      if (link === null) continue;
      let sent = 0;
      while (sent < BULK_BUCKETS_PER_TICK_MAX && this.bulkReady(link)) {
        const b = link.bulkQueue[link.bulkHead++]!;
        this.sendBulk(link, b, this.pendingSlot(b, link.index), nowMs);
        sent++;
      }
      // The round's time ends with the acknowledgement: ask for it at once.
      if (sent > 0) link.channel.flush(nowMs, true);
    }
  }

  /** BULK_BEGIN, a CREATE per connection, BULK_END: all at once, so no live record interleaves. */
  private sendBulk(link: PeerLink, b: number, slot: number, nowMs: number): void {
    const channel = link.channel;
    const buf = this.recordBuf;
    const count = this.bucketWords[b * BW + BW_SIZE]!;
    const digest = this.digestOf(b);
    channel.enqueue(buf, 0, encodeBulkBegin(buf, 0, buf.length, b, count, digest), nowMs);
    for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL; id = this.next[id]!) {
      const s = this.snapshotOf(id);
      channel.enqueue(buf, 0, encodeCreate(buf, 0, buf.length, s, nowMs, isHandshakeState(s.state)), nowMs);
      const flags = this.entryFlags[id]!;
      // The other targets' copies may be older: the refresh sweep goes by the oldest expiry sent.
      if ((flags & F_REPLICATED) === 0) this.syncedExpiresAtMs[id] = s.expiresAtMs;
      this.entryFlags[id] = flags | F_REPLICATED | (this.isProtected(id) ? F_SENT_PROTECTED : 0);
    }
    channel.enqueue(buf, 0, encodeBulkEnd(buf, 0, buf.length, b, count, digest), nowMs);
    this.counters.syncRecordsSent += count + 2;
    this.counters.bulkRecordsSent += count;
    this.counters.bulkBucketsSent++;
    this.targetState[slot] = Target.LIVE;
    const round = this.targetRound[slot] === Round.REPROTECT ? this.reprotectRound : this.targetRound[slot] === Round.FILL ? this.fillRound : null;
    this.targetRound[slot] = Round.NONE;
    if (round !== null) {
      round.unsent--;
      round.lastSeq.set(link.index, channel.lastEnqueuedSeq);
    }
  }

  /** Ends measured rounds whose bulks were all sent and acknowledged. */
  private checkRounds(nowMs: number): void {
    const reprotect = this.reprotectRound;
    if (reprotect !== null && this.roundDone(reprotect)) {
      this.counters.reprotectMs = nowMs - reprotect.startMs;
      this.counters.reprotectBuckets = reprotect.buckets;
      this.reprotectRound = null;
    }
    const filling = this.fillRound;
    if (filling !== null && this.roundDone(filling)) {
      this.counters.fillMs = nowMs - filling.startMs;
      this.counters.fillBuckets = filling.buckets;
      this.fillRound = null;
    }
  }

  private roundDone(round: BulkRound): boolean {
    if (round.unsent > 0) return false;
    for (const [p, seq] of round.lastSeq) {
      const link = this.links[p];
      if (link !== null && link !== undefined && !link.channel.isAcknowledged(seq)) return false;
    }
    return true;
  }

  // ---- receiving sync ------------------------------------------------------------------------

  /** A HyperSync datagram from peer `from` (authenticated inside; bad ones are counted and dropped). */
  receiveSync(from: string, bytes: Uint8Array, length: number, nowMs: number): void {
    this.nowMs = nowMs;
    const link = this.linkByName.get(from);
    if (link === undefined) {
      this.counters.unknownPeer++;
      this.counters.badDatagrams++;
      return;
    }
    const result = link.channel.receive(bytes, length, nowMs);
    if (result !== ReceiveResult.OK) {
      this.counters.badDatagrams++;
      if (result === ReceiveResult.STALE_EPOCH) this.counters.staleEpoch++;
      else if (result === ReceiveResult.BAD_VERSION) this.counters.badVersion++;
      return;
    }
    this.checkRounds(nowMs);
  }

  private onRecord(link: PeerLink, rec: DecodedRecord): void {
    switch (rec.kind) {
      case RecordKind.CREATE:
      case RecordKind.UPDATE:
      case RecordKind.DELETE:
      case RecordKind.REFRESH:
        this.applyState(link, rec);
        return;
      default:
    }
    const b = rec.bucket;
    if (b < 0 || b >= this.bucketCount) {
      this.counters.recordsInvalid++;
      return;
    }
    switch (rec.kind) {
      case RecordKind.BULK_BEGIN:
        if (this.role[b] === Role.OWNER) {
          this.counters.recordsIgnored++;
          return;
        }
        this.bucketWords[b * BW + BW_BULK_FROM] = link.index;
        this.bulkApplyFailed[b] = 0;
        for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL; id = this.next[id]!) this.entryFlags[id] = this.entryFlags[id]! & ~F_BULK_SEEN;
        this.noteRecordFor(b);
        return;
      case RecordKind.BULK_END:
        this.endBulk(link, rec);
        return;
      case RecordKind.DIGEST_REQUEST:
        this.replyDigests(link, rec);
        return;
      case RecordKind.DIGEST_REPLY:
        this.takeDigestReply(link, rec);
        return;
      case RecordKind.RESYNC_REQUEST:
        this.counters.resyncRequestsReceived++;
        this.scheduleRebulk(b, link);
        return;
      default:
        this.counters.recordsInvalid++;
    }
  }

  /**
   * A record arrived for bucket b: a stale bucket keeps its copies STALE_HOLD_MS longer. (A
   * bucket with a role needs no time: losing the role starts the hold, see queueStale.)
   */
  private noteRecordFor(b: number): void {
    if (this.role[b] === Role.NONE) {
      this.lastRecordMs[b] = this.nowMs;
      if (this.staleQueued[b] === 0) {
        this.staleQueued[b] = 1;
        this.staleQueue.push(b);
      }
    }
  }

  /** The bucket of a state record: on the wire for bulk records, from the key for the others. */
  private bucketOfRecord(rec: DecodedRecord): number {
    if (rec.kind === RecordKind.BULK_BEGIN || rec.kind === RecordKind.BULK_END) return rec.bucket < this.bucketCount ? rec.bucket : -1;
    return this.hashOfRecord(rec) & this.bucketMask;
  }

  /** The flow hash of a decoded key record (the bucket and the table's hash both come from it). */
  private hashOfRecord(rec: DecodedRecord): number {
    if (rec.addressLength === 4) return flowHash4(this.hashSeed, rec.protocol, readU32(rec.src, 0), readU32(rec.dst, 0), rec.srcPort, rec.dstPort);
    const a = this.hashAddresses;
    for (let i = 0; i < 16; i++) {
      a[i] = rec.src[i]!;
      a[16 + i] = rec.dst[i]!;
    }
    return flowHashRaw(this.hashSeed, rec.protocol, a, 0, 16, 16, rec.srcPort, rec.dstPort);
  }

  /** Fills applyView with the record's key (original direction), as the table's lookup and insert read it. */
  private viewOfRecord(rec: DecodedRecord): PacketView {
    const view = this.applyView;
    if (rec.addressLength === 4) {
      view.ipVersion = 4;
      view.src4 = readU32(rec.src, 0);
      view.dst4 = readU32(rec.dst, 0);
    } else {
      const a = this.applyAddresses;
      for (let i = 0; i < 16; i++) {
        a[i] = rec.src[i]!;
        a[16 + i] = rec.dst[i]!;
      }
      view.ipVersion = 6;
      view.buf = a;
      view.srcAddrOffset = 0;
      view.dstAddrOffset = 16;
      view.src4 = 0;
      view.dst4 = 0;
    }
    view.protocol = rec.protocol;
    view.srcPort = rec.srcPort;
    view.dstPort = rec.dstPort;
    // An ICMP key names an echo request from its originator (the table's viewOfKey does the same).
    const icmp = isIcmp(rec.protocol);
    view.icmpIsEcho = icmp;
    view.icmpType = icmp ? (rec.protocol === IpProto.ICMP ? 8 : 128) : 0;
    view.icmpId = icmp ? rec.srcPort : 0;
    return view;
  }

  /**
   * CREATE/UPDATE/DELETE/REFRESH from the bucket's owner, applied straight from the decoded
   * record: the key is hashed once (bucket and table slot), the entry is found or inserted
   * through a view of the key, and its words are written in place (what ConnectionTable.restore
   * does, without building a snapshot).
   */
  private applyState(link: PeerLink, rec: DecodedRecord): void {
    const hash = this.hashOfRecord(rec);
    const b = hash & this.bucketMask;
    const table = this.engine.table;
    const nowMs = this.nowMs;
    const stateRecord = rec.kind === RecordKind.CREATE || rec.kind === RecordKind.UPDATE;
    // The decoder checked the wire format; the table also needs flags it can store, and an
    // ICMP key whose two "ports" are its echo identifier (as the table keeps it, so that the
    // digest of the record and of the stored entry agree). An authentic peer sending anything
    // else is a bug to count, not to crash on.
    if (
      (stateRecord && rec.hasTcp && ((rec.tcpOriginal.flags | rec.tcpReply.flags) & ~TCP_DIR_FLAGS_MASK) !== 0) ||
      (isIcmp(rec.protocol) && rec.srcPort !== rec.dstPort)
    ) {
      this.counters.recordsInvalid++;
      return;
    }
    const view = this.viewOfRecord(rec);
    table.clockMs = nowMs;
    let id = table.lookup(rec.zone, view, hash);
    const owned = this.role[b] === Role.OWNER;
    if (owned) {
      // Ours. Records for it come from the previous owner, one epoch behind, which still
      // processed frames routed before its switch (and whose last records may still be on
      // their way). Its record is newer than our copy unless we processed a packet since: take
      // it then; and take the connections it created that we do not have at all.
      if ((id >= 0 && (this.entryFlags[id]! & F_TOUCHED) !== 0) || (id < 0 && !stateRecord)) {
        this.counters.recordsIgnored++;
        return;
      }
    } else {
      this.noteRecordFor(b);
    }
    if (!stateRecord) {
      if (id < 0) {
        this.counters.recordsUnknownKey++;
        return;
      }
      if (rec.kind === RecordKind.DELETE) {
        table.remove(id);
      } else if (owned) {
        table.setExpiresAt(id, nowMs + rec.remainingMs);
      } else {
        table.setExpiresAt(id, nowMs + rec.remainingMs + BACKUP_EXPIRY_GRACE_MS);
        this.entryFlags[id] = this.entryFlags[id]! | F_GRACE;
      }
      this.counters.syncRecordsApplied++;
      return;
    }
    if (id >= 0 && table.lastDirection !== 0) {
      // Same connection, opened from the other side this time: re-key the direction.
      table.remove(id);
      id = -1;
    }
    const state = rec.state;
    let created = false;
    if (id < 0) {
      id = table.insert(rec.zone, view, hash, state, nowMs);
      if (id < 0) {
        this.counters.applyFailed++;
        if (this.bucketWords[b * BW + BW_BULK_FROM] === link.index) this.bulkApplyFailed[b] = 1;
        return;
      }
      created = true;
    }
    const words = table.words;
    const base = id * ENTRY_WORDS;
    // The record carries no packet history: start it afresh, as for a new entry.
    let packed = state | (TCP_LAST_INDEX_NONE << TCP_LAST_INDEX_SHIFT);
    if (rec.hasTcp) {
      const o = rec.tcpOriginal;
      const r = rec.tcpReply;
      words[base + W_END] = o.end;
      words[base + W_END + 1] = r.end;
      words[base + W_MAX_END] = o.maxEnd;
      words[base + W_MAX_END + 1] = r.maxEnd;
      words[base + W_MAX_WIN] = o.maxWindow;
      words[base + W_MAX_WIN + 1] = r.maxWindow;
      packed |= (o.scale << TCP_SCALE_SHIFT) | (r.scale << (TCP_SCALE_SHIFT + 4)) | (o.flags << TCP_FLAGS_SHIFT) | (r.flags << (TCP_FLAGS_SHIFT + 6));
    }
    words[base + W_TCP] = packed;
    const grace = owned ? 0 : BACKUP_EXPIRY_GRACE_MS;
    words[base + W_EXPIRES] = nowMs + rec.remainingMs + grace;
    words[base + W_META] = (words[base + W_META]! & ~(META_SEEN_REPLY | META_ASSURED)) | (rec.seenReply ? META_SEEN_REPLY : 0) | (rec.assured ? META_ASSURED : 0);

    const accounted = state | (rec.seenReply ? F_SEEN_REPLY : 0) | (rec.assured ? F_ASSURED : 0);
    if (created) {
      this.link(id, b);
      const digest = connectionDigestRaw(rec.zone, rec.protocol, rec.src, 0, rec.dst, 0, rec.addressLength, rec.srcPort, rec.dstPort, state);
      this.digestAdd(b, digest);
      this.entryDigest[id] = digest;
    } else if ((this.entryFlags[id]! & 0xf) !== state) {
      const digest = connectionDigestRaw(rec.zone, rec.protocol, rec.src, 0, rec.dst, 0, rec.addressLength, rec.srcPort, rec.dstPort, state);
      this.digestReplace(b, this.entryDigest[id]!, digest);
      this.entryDigest[id] = digest;
    }
    this.counters.syncRecordsApplied++;
    if (owned) {
      // Adopted: an owned connection from now on, re-learning its windows like a promoted copy.
      // The previous owner (its sender) holds it; our targets get it from us.
      this.entryFlags[id] = accounted | F_REPLICATED;
      this.relearn(id);
      this.counters.adopted++;
      this.noteChange(id, b, nowMs);
      return;
    }
    // The owner's windows replace any re-learned ones: promotion must relax them again.
    const inBulk = this.bucketWords[b * BW + BW_BULK_FROM] === link.index;
    this.entryFlags[id] = accounted | F_GRACE | F_REPLICATED | (isProtectedRecord(rec) ? F_SENT_PROTECTED : 0) | (inBulk ? F_BULK_SEEN : 0);
  }

  /**
   * BULK_END: copies the bulk did not re-send are gone at the owner; drop them. The bucket is
   * filled when count and digest match the sender's; otherwise ask for the bucket again.
   */
  private endBulk(link: PeerLink, rec: DecodedRecord): void {
    const b = rec.bucket;
    if (this.bucketWords[b * BW + BW_BULK_FROM] !== link.index || this.role[b] === Role.OWNER) {
      this.counters.recordsIgnored++;
      return;
    }
    this.bucketWords[b * BW + BW_BULK_FROM] = NIL;
    const table = this.engine.table;
    let id = this.bucketWords[b * BW + BW_HEAD]!;
    while (id !== NIL) {
      const after = this.next[id]!;
      if ((this.entryFlags[id]! & F_BULK_SEEN) === 0) table.remove(id);
      else this.entryFlags[id] = this.entryFlags[id]! & ~F_BULK_SEEN;
      id = after;
    }
    this.noteRecordFor(b);
    if (this.bucketWords[b * BW + BW_SIZE] === rec.recordCount && this.digestOf(b) === rec.digest) {
      this.counters.bulkBucketsReceived++;
      this.filled.add(b);
      return;
    }
    this.counters.bulkMismatches++;
    // A table too full to hold the copies would fail again: do not loop on it.
    if (this.bulkApplyFailed[b] === 1) return;
    const buf = this.recordBuf;
    link.channel.enqueue(buf, 0, encodeResyncRequest(buf, 0, buf.length, b), this.nowMs);
    this.counters.resyncRequestsSent++;
  }

  private onChannelEvent(link: PeerLink, event: number): void {
    switch (event) {
      case ChannelEvent.PEER_UP:
        this.counters.peerUps++;
        return;
      case ChannelEvent.PEER_DEAD:
        this.counters.peerDeaths++;
        return;
      case ChannelEvent.PEER_RESTARTED:
        // Its copies are gone: send it every bucket it holds for us again.
        this.counters.peerRestarts++;
        for (let b = 0; b < this.bucketCount; b++) this.scheduleRebulk(b, link);
        return;
      case ChannelEvent.RESYNC_NEEDED: {
        const buckets = link.channel.needsResync;
        for (const b of buckets) this.scheduleRebulk(b, link);
        buckets.clear();
        return;
      }
      default:
        assert(false, `unknown channel event ${event}`);
    }
  }

  // ---- verification ------------------------------------------------------------------------

  /**
   * Asks `peerName` for its digests of every bucket the two share (this node owns it and the
   * peer is a live target, or the peer owns it and this node backs it up or fills it). The
   * answer lands in lastVerify. Digests of owned buckets are compared with their value at
   * request time (the request follows every record sent before it on the same channel), the
   * others with their value when the reply arrives (the reply follows the owner's records).
   */
  requestVerify(peerName: string, nowMs: number): void {
    this.nowMs = nowMs;
    const link = this.linkByName.get(peerName);
    if (link === undefined) throw new TandemError(ErrorCode.NOT_FOUND, `cannot verify against ${peerName}: not a peer of ${this.name}`, { peer: peerName });
    const buckets: number[] = [];
    const asked = new Map<number, number>();
    for (let b = 0; b < this.bucketCount; b++) {
      const role = this.role[b]!;
      if (role === Role.OWNER) {
        const base = b * TARGETS_MAX;
        let shared = false;
        for (let k = 0; k < TARGETS_MAX; k++) if (this.targetPeer[base + k] === link.index && this.targetState[base + k] === Target.LIVE) shared = true;
        if (shared) asked.set(b, this.digestOf(b));
      } else if ((role === Role.BACKUP || role === Role.FILL) && this.ownerLink[b] === link.index) {
        asked.set(b, -1);
      }
      if (asked.has(b)) buckets.push(b);
    }
    this.counters.verifyRequests++;
    this.pendingVerify = { link, asked, answered: 0, differing: [] };
    this.lastVerify = null;
    if (buckets.length === 0) {
      this.lastVerify = { peer: peerName, differing: [] };
      this.pendingVerify = null;
      return;
    }
    const digests = Uint32Array.from(buckets, (b) => this.digestOf(b));
    this.sendDigestList(link, RecordKind.DIGEST_REQUEST, buckets, digests, nowMs);
    link.channel.flush(nowMs);
  }

  private sendDigestList(
    link: PeerLink,
    kind: typeof RecordKind.DIGEST_REQUEST | typeof RecordKind.DIGEST_REPLY,
    buckets: ArrayLike<number>,
    digests: ArrayLike<number>,
    nowMs: number,
  ): void {
    const buf = this.recordBuf;
    for (let start = 0; start < buckets.length; start += DIGEST_PAIRS_MAX) {
      const count = Math.min(DIGEST_PAIRS_MAX, buckets.length - start);
      link.channel.enqueue(buf, 0, encodeDigestList(buf, 0, buf.length, kind, buckets, digests, start, count), nowMs);
    }
  }

  private replyDigests(link: PeerLink, rec: DecodedRecord): void {
    const count = rec.pairCount;
    const buckets = rec.pairBuckets.slice(0, count);
    const digests = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const b = buckets[i]!;
      digests[i] = b < this.bucketCount ? this.digestOf(b) : 0;
    }
    this.counters.verifyRepliesSent++;
    this.sendDigestList(link, RecordKind.DIGEST_REPLY, buckets, digests, this.nowMs);
  }

  private takeDigestReply(link: PeerLink, rec: DecodedRecord): void {
    const pending = this.pendingVerify;
    if (pending === null || pending.link !== link) {
      this.counters.recordsIgnored++;
      return;
    }
    for (let i = 0; i < rec.pairCount; i++) {
      const b = rec.pairBuckets[i]!;
      const mine = pending.asked.get(b);
      if (mine === undefined) continue;
      const local = mine >= 0 ? mine : this.digestOf(b);
      if (local !== rec.pairDigests[i]) pending.differing.push(b);
      pending.answered++;
    }
    if (pending.answered >= pending.asked.size) {
      pending.differing.sort((x, y) => x - y);
      this.lastVerify = { peer: link.name, differing: pending.differing };
      this.pendingVerify = null;
    }
  }

  // ---- time ------------------------------------------------------------------------------

  /** Sync lag: age of the oldest sync datagram a peer has not acknowledged yet (0 when all are). */
  syncLagMs(nowMs: number): number {
    // Only peers with a role now: members of the routing table and fill targets. A member that
    // died or left keeps its link (and its unacknowledged datagrams) until it is dropped from
    // the peers, and would otherwise read as seconds of lag that no live bucket has.
    const roles = new Set(this.epochTable?.table.members ?? []);
    for (const targets of this.fillMap.values()) for (const t of targets) roles.add(t);
    let lag = 0;
    for (const link of this.links) if (link !== null && roles.has(link.name)) lag = Math.max(lag, link.channel.oldestUnackedAgeMs(nowMs));
    return lag;
  }

  /** Timers: deferred changes, bulk pacing, expiry and refresh sweeps, stale removal, then the channels' flush, retransmit, ACK and keep-alive. */
  tick(nowMs: number): void {
    this.nowMs = nowMs;
    this.drainDeferred(nowMs, false);
    if (this.bucketCount > 0) this.runBulks(nowMs);
    if (nowMs >= this.nextHousekeepingMs) {
      this.nextHousekeepingMs = nowMs + HOUSEKEEPING_INTERVAL_MS;
      // Owners replicate what expires (onRemove); backups drop their expired copies silently.
      const deletes = this.counters.deletesSent;
      this.engine.tick(nowMs);
      // An expired connection is gone here: its copies go now, not a flush interval later, so
      // owner and backup never disagree about a connection that ended.
      if (this.counters.deletesSent !== deletes) for (const link of this.links) if (link !== null) link.channel.flush(nowMs);
      if (this.bucketCount > 0) this.refreshSweep(nowMs);
      this.removeStale(nowMs);
    }
    for (const link of this.links) if (link !== null) link.channel.tick(nowMs);
    this.checkRounds(nowMs);
  }

  /** Earliest time at which tick() has work (the simulator's clock may jump to it). */
  nextDeadlineMs(): number {
    let due = this.deferCount > 0 ? this.deferDueMs[this.deferHead]! : Infinity;
    if (this.engine.table.size > 0 || this.staleQueue.length > 0) due = Math.min(due, this.nextHousekeepingMs);
    for (const link of this.links) {
      if (link === null) continue;
      due = Math.min(due, link.channel.nextDeadlineMs());
      if (this.bulkReady(link)) due = Math.min(due, this.nowMs);
    }
    return due;
  }

  /** Removes copies of buckets this node has no role for, STALE_REMOVE_BUDGET entries per call. */
  private removeStale(nowMs: number): void {
    if (this.staleQueue.length === 0) return;
    const table = this.engine.table;
    let budget = STALE_REMOVE_BUDGET;
    const keep: number[] = [];
    for (const b of this.staleQueue) {
      if (this.role[b] !== Role.NONE || this.bucketWords[b * BW + BW_SIZE] === 0) {
        this.staleQueued[b] = 0;
        continue;
      }
      if (budget === 0 || nowMs - this.lastRecordMs[b]! < STALE_HOLD_MS) {
        keep.push(b);
        continue;
      }
      this.bucketWords[b * BW + BW_BULK_FROM] = NIL;
      while (budget > 0 && this.bucketWords[b * BW + BW_HEAD] !== NIL) {
        table.remove(this.bucketWords[b * BW + BW_HEAD]!);
        this.counters.staleRemoved++;
        budget--;
      }
      if (this.bucketWords[b * BW + BW_HEAD] !== NIL) keep.push(b);
      else this.staleQueued[b] = 0;
    }
    this.staleQueue = keep;
  }

  // ---- checks ------------------------------------------------------------------------------

  /**
   * Checks the bookkeeping against the table (O(capacity), for tests): bucket lists hold
   * exactly the live entries, sizes and digests agree with a full scan.
   */
  verifyBookkeeping(): void {
    const table = this.engine.table;
    table.verify();
    let linked = 0;
    for (let b = 0; b < this.bucketCount; b++) {
      let n = 0;
      for (let id = this.bucketWords[b * BW + BW_HEAD]!; id !== NIL && n <= this.capacity; id = this.next[id]!) {
        assert(table.isLive(id), `bucket ${b} lists a free entry ${id}`);
        assert(this.entryBucket[id] === b && (table.hashOf(id) & this.bucketMask) === b, `entry ${id} in the wrong bucket list`);
        n++;
      }
      assert(n === this.bucketWords[b * BW + BW_SIZE], `bucket ${b}: size ${this.bucketWords[b * BW + BW_SIZE]} but ${n} listed`);
      linked += n;
    }
    assert(linked === table.size, `${linked} entries listed, ${table.size} live`);
    const scanned = this.allBucketDigests();
    for (let b = 0; b < this.bucketCount; b++) {
      assert(scanned[b] === this.digestOf(b), `bucket ${b}: digest out of date`);
      assert(this.role[b] !== Role.OWNER || this.bucketWords[b * BW + BW_BULK_FROM] === NIL, `bucket ${b}: owned and receiving a bulk`);
    }
  }
}

/** Does a decoded CREATE/UPDATE describe a connection whose handshake completed? */
function isProtectedRecord(rec: DecodedRecord): boolean {
  return rec.protocol === IpProto.TCP ? isProtectedTcpState(rec.state) : rec.seenReply;
}

/** Did member `name` hold bucket b in the previous table (owner, backup or extra backup)? */
function heldBefore(previous: EpochTable | null, previousFill: ReadonlyMap<number, readonly string[]>, b: number, name: string): boolean {
  if (previous === null) return false;
  const t = previous.table;
  const owner = t.owner[b]!;
  const backup = t.backup[b]!;
  if (owner !== NO_MEMBER && t.members[owner] === name) return true;
  if (backup !== NO_MEMBER && t.members[backup] === name) return true;
  return previousFill.get(b)?.includes(name) ?? false;
}
