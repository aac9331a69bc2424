// Connection table: every tracked connection in a fixed-capacity, allocation-free store.
//
// One entry serves both directions of a connection. Its endpoints are stored canonically
// (A = the smaller (address, port), the ordering flow-hash.ts uses), so a packet and its reply
// find the same entry from the same index slot; a flag records which endpoint opened the
// connection, and a packet's direction is whether its source is that endpoint.
//
// Entries are records of ENTRY_WORDS 32-bit words in one Uint32Array (array of structs), so
// that tracking one packet touches one or two cache lines. A struct-of-arrays layout touches
// one line per field: with a million live connections it measured 2.4 M random accesses/s
// against 5 to 7 M/s for this layout on the same machine.
//
//   words[id * 13 + ...]:
//   | hash | addrA | addrB | ports A<<16|B | meta | expiresAt | tcp | end0 end1 | maxEnd0 maxEnd1 | maxWin0 maxWin1 |
//   meta = zone << 16 | protocol << 8 | META_* flags;  tcp = packed state and per-direction TCP bits (TCP_*)
//   IPv6: addrA holds a slot of the v6 address pool (8 words: A then B); addrB is 0.
//   ICMP echo: ports = id << 16 | ECHO_MARK | (1 when the requester is endpoint B); the key names
//   the requester, so A's ping to B and B's ping to A with the same id are two connections.
//
// The index is an open-addressing table of ceil(capacity * 1.3) Int32 slots with linear probing:
//   slot value = (hash << idBits) | (id + 1)   (0 = empty)
// The low hash bits in the high part are a tag that rejects most foreign slots without reading
// the entry; the home slot comes from the high hash bits (multiply-shift), so tag and position
// are independent. Deletion shifts later cluster members back (no tombstones), so a lookup
// stops at the first empty slot.
//
// Invariants (checked by verify()):
// - every live entry is in the index exactly once, reachable from its home slot without
//   crossing an empty slot; the index holds size values; free ids and free v6 slots are
//   chained through the free records themselves (no extra arrays) and with the live ones
//   account for the whole capacity.
// - expiry uses 32-bit serial arithmetic: an entry is expired when ((expiresAt - now) | 0) <= 0,
//   valid because every timeout (at most 5 days) is far below 2^31 ms.
// The table never throws on packets: a full table evicts by policy or reports -1.

import { readU32 } from "../packet/addr.js";
import type { FlowKey } from "../packet/flow-hash.js";
import { IpProto, PacketView } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import { CONN_STATE_NAMES, STATE_TIMEOUT_MS, type ConnectionSnapshot, type ConnState, type TcpDirectionSnapshot } from "./types.js";

/** Words per entry record. */
export const ENTRY_WORDS = 13;
export const W_HASH = 0;
export const W_ADDR_A = 1;
export const W_ADDR_B = 2;
export const W_PORTS = 3;
export const W_META = 4;
export const W_EXPIRES = 5;
export const W_TCP = 6;
/** Per-direction TCP words: word + direction (0 original, 1 reply). */
export const W_END = 7;
export const W_MAX_END = 9;
export const W_MAX_WIN = 11;

// Low byte of the meta word.
export const META_LIVE = 0x01;
export const META_IPV6 = 0x02;
/** The original direction's source is endpoint B. */
export const META_ORIG_IS_B = 0x04;
export const META_SEEN_REPLY = 0x08;
export const META_ASSURED = 0x10;
/** Zone, protocol and address family: the part of meta that belongs to the key. */
const META_KEY_MASK = 0xffffff00 | META_IPV6;

// The packed TCP word (the state lives here for every protocol).
export const TCP_STATE_MASK = 0xf;
/** Window scale of direction d: bits TCP_SCALE_SHIFT + 4d, 4 bits. */
export const TCP_SCALE_SHIFT = 4;
/** TcpDirFlag bits of direction d: bits TCP_FLAGS_SHIFT + 6d, 6 bits. */
export const TCP_FLAGS_SHIFT = 12;
export const TCP_DIR_FLAGS_MASK = 0x3f;
/** Linux last_index (packet class of the last packet that counted), 3 bits. */
export const TCP_LAST_INDEX_SHIFT = 24;
/** last_index of an entry that has seen no TCP packet yet (Linux TCP_NONE_SET). */
export const TCP_LAST_INDEX_NONE = 5;
/** Linux last_dir, 1 bit. */
export const TCP_LAST_DIR_SHIFT = 27;
/** Simultaneous open seen (Linux IP_CT_TCP_SIMULTANEOUS_OPEN). */
export const TCP_X_SIMULTANEOUS_OPEN = 1 << 28;
/** An RFC 5961 challenge ACK is expected (Linux IP_CT_EXP_CHALLENGE_ACK). */
export const TCP_X_CHALLENGE_ACK = 1 << 29;
/** The tracker's ignored-segment cache may hold this entry's last ignored segment. */
export const TCP_X_IGNORED_CACHED = 1 << 30;

/** Marks the ports word of an ICMP echo entry (a non-echo ICMP view never matches one). */
const ECHO_MARK = 0x100;
const ECHO_REQUESTER_IS_B = 0x1;
/** End of a free chain. */
const NIL = 0xffffffff;
const V6_POOL_WORDS = 8;
/** Index slots per entry. */
const INDEX_LOAD = 1.3;
/** Entry ids need at most this many bits, leaving at least 4 tag bits per index slot. */
const ID_BITS_MAX = 28;
const ZONE_MAX = 0xffff;

export interface ConnectionTableOptions {
  /** Connections the table can hold (fixed for its life). */
  capacity: number;
  /** IPv6 connections it can hold (address pool size); default ceil(capacity / 8). */
  ipv6Capacity?: number;
  /** Entries a full table examines for one eviction. */
  evictScanMax?: number;
}

export interface ConnectionTableStats {
  inserted: number;
  /** Removed by remove() (the caller's decision). */
  removed: number;
  /** Removed because their expiry passed (expire(), expireIfDue(), or reclaimed by a full table). */
  expired: number;
  /** Live, unexpired, not-assured entries dropped to make room (early drop). */
  evicted: number;
  /** Inserts refused: full and nothing evictable. */
  insertFailed: number;
}

export class ConnectionTable {
  readonly capacity: number;
  readonly ipv6Capacity: number;
  readonly evictScanMax: number;
  /** Live entries. */
  size = 0;
  /** Live IPv6 entries (v6 pool slots in use). */
  ipv6Size = 0;
  /** Direction of the packet found by the last successful lookup(): 0 original, 1 reply. */
  lastDirection = 0;
  /**
   * The latest clock value the table was given (insert, expire, isExpired, expireIfDue). Only
   * used to turn stored 32-bit expiries back into absolute milliseconds (expiresAt, snapshot);
   * correct while it is within 2^31 ms - 5 days (about 19 days) of the real clock.
   */
  clockMs = 0;
  readonly stats: ConnectionTableStats = { inserted: 0, removed: 0, expired: 0, evicted: 0, insertFailed: 0 };
  /**
   * Called with the id of every entry about to leave the table (remove, expiry, eviction, the
   * re-keying in restore), while its fields are still readable. HyperSync uses it to replicate
   * removals the engine makes on its own. It must not insert or remove entries.
   */
  onRemove: ((id: number) => void) | null = null;

  /** Entry records (see the file comment); public for the tracker in this directory. */
  readonly words: Uint32Array;
  readonly index: Int32Array;
  readonly indexSize: number;
  readonly v6Pool: Uint32Array;

  private readonly indexScale: number;
  private readonly idBits: number;
  private readonly idMask: number;
  private readonly tagMask: number;
  private freeHead: number;
  private v6FreeHead: number;
  private expireCursor = 0;
  private evictCursor = 0;
  // Canonical key of the view being looked up or inserted (set by canonicalKey, no allocation).
  private keyA = 0;
  private keyB = 0;
  private keyPorts = 0;
  private keySwapped = false;
  private keyDirection = 0;
  // Slow paths (lookupKey, restore) go through a private view so that they share the packet code.
  private readonly scratchView = new PacketView();
  private readonly scratchBuf = new Uint8Array(32);

  constructor(options: ConnectionTableOptions) {
    const capacity = options.capacity;
    assert(Number.isInteger(capacity) && capacity > 0, "ConnectionTable: capacity must be a positive integer");
    const idBits = 32 - Math.clz32(capacity);
    assert(idBits <= ID_BITS_MAX, "ConnectionTable: capacity too large");
    const ipv6Capacity = options.ipv6Capacity ?? Math.ceil(capacity / 8);
    assert(Number.isInteger(ipv6Capacity) && ipv6Capacity >= 0 && ipv6Capacity <= capacity, "ConnectionTable: bad ipv6Capacity");
    const evictScanMax = options.evictScanMax ?? 64;
    assert(Number.isInteger(evictScanMax) && evictScanMax > 0, "ConnectionTable: evictScanMax must be positive");
    assert(CONN_STATE_NAMES.length <= TCP_STATE_MASK + 1, "ConnectionTable: states must fit 4 bits");

    this.capacity = capacity;
    this.ipv6Capacity = ipv6Capacity;
    this.evictScanMax = Math.min(evictScanMax, capacity);
    this.words = new Uint32Array(capacity * ENTRY_WORDS);
    this.indexSize = Math.ceil(capacity * INDEX_LOAD);
    assert(this.indexSize > capacity, "ConnectionTable: the index needs an empty slot");
    this.index = new Int32Array(this.indexSize);
    this.indexScale = this.indexSize / 4294967296;
    this.idBits = idBits;
    this.idMask = (1 << idBits) - 1;
    this.tagMask = ~this.idMask | 0;
    this.v6Pool = new Uint32Array(ipv6Capacity * V6_POOL_WORDS);

    for (let id = 0; id < capacity; id++) {
      this.words[id * ENTRY_WORDS + W_ADDR_A] = id + 1 < capacity ? id + 1 : NIL;
    }
    this.freeHead = 0;
    for (let slot = 0; slot < ipv6Capacity; slot++) {
      this.v6Pool[slot * V6_POOL_WORDS] = slot + 1 < ipv6Capacity ? slot + 1 : NIL;
    }
    this.v6FreeHead = ipv6Capacity > 0 ? 0 : -1;
  }

  /** Sum of all typed arrays' bytes. */
  memoryBytes(): number {
    return this.words.byteLength + this.index.byteLength + this.v6Pool.byteLength;
  }

  // ---- packet paths --------------------------------------------------------------------------

  /**
   * Entry id of the packet's connection in `zone`, or -1. Sets lastDirection. `hash` is the
   * flow hash of the view (flowHashOfView). Works on views from parseFrame and parseQuotedIp.
   * Does not look at expiry. Allocates nothing.
   */
  lookup(zone: number, view: PacketView, hash: number): number {
    hash = hash >>> 0;
    const v6 = view.ipVersion === 6;
    this.canonicalKey(view);
    const keyMeta = (zone << 16) | (view.protocol << 8) | (v6 ? META_IPV6 : 0);
    const words = this.words;
    const index = this.index;
    const indexSize = this.indexSize;
    const tag = (hash << this.idBits) | 0;
    const tagMask = this.tagMask;
    const idMask = this.idMask;
    const keyA = this.keyA;
    const keyB = this.keyB;
    const keyPorts = this.keyPorts;
    let slot = (hash * this.indexScale) | 0;
    // Bound: a full cycle; the index always has an empty slot, so the loop ends before.
    for (let probes = 0; probes < indexSize; probes++) {
      const value = index[slot]!;
      if (value === 0) return -1;
      if ((value & tagMask) === tag) {
        const id = (value & idMask) - 1;
        const base = id * ENTRY_WORDS;
        if (
          words[base + W_HASH] === hash &&
          words[base + W_PORTS] === keyPorts &&
          ((words[base + W_META]! ^ keyMeta) & META_KEY_MASK) === 0 &&
          (v6 ? this.v6AddressesMatch(view, words[base + W_ADDR_A]!) : words[base + W_ADDR_A] === keyA && words[base + W_ADDR_B] === keyB)
        ) {
          this.lastDirection =
            this.keyDirection >= 0 ? this.keyDirection : (this.keySwapped ? 1 : 0) ^ ((words[base + W_META]! & META_ORIG_IS_B) !== 0 ? 1 : 0);
          return id;
        }
      }
      slot++;
      if (slot === indexSize) slot = 0;
    }
    return -1;
  }

  /**
   * New entry for the packet's connection, the packet's direction being ORIGINAL, in `state`
   * with expiry nowMs + STATE_TIMEOUT_MS[state]. The caller has checked that lookup() finds
   * nothing. When full, evicts by policy (see evictOne); returns -1 (insertFailed) if it cannot.
   */
  insert(zone: number, view: PacketView, hash: number, state: number, nowMs: number): number {
    assert(zone >= 0 && zone <= ZONE_MAX && Number.isInteger(zone), "insert: zone out of range");
    assert(state >= 0 && state < CONN_STATE_NAMES.length, "insert: bad state");
    assert(view.ipVersion === 4 || view.ipVersion === 6, "insert: not an IP packet");
    this.clockMs = nowMs;
    hash = hash >>> 0;
    const v6 = view.ipVersion === 6;
    if (this.freeHead < 0 || (v6 && this.v6FreeHead < 0)) {
      if (!this.evictOne(v6, nowMs)) {
        this.stats.insertFailed++;
        return -1;
      }
    }
    const id = this.freeHead;
    const words = this.words;
    const base = id * ENTRY_WORDS;
    const next = words[base + W_ADDR_A]!;
    this.freeHead = next === NIL ? -1 : next;

    this.canonicalKey(view);
    words[base + W_HASH] = hash;
    words[base + W_PORTS] = this.keyPorts;
    let flags = META_LIVE;
    if (this.keySwapped) flags |= META_ORIG_IS_B;
    if (v6) {
      flags |= META_IPV6;
      const slot = this.v6FreeHead;
      const poolBase = slot * V6_POOL_WORDS;
      const nextSlot = this.v6Pool[poolBase]!;
      this.v6FreeHead = nextSlot === NIL ? -1 : nextSlot;
      this.writeV6Addresses(view, poolBase);
      words[base + W_ADDR_A] = slot;
      words[base + W_ADDR_B] = 0;
      this.ipv6Size++;
    } else {
      words[base + W_ADDR_A] = this.keyA;
      words[base + W_ADDR_B] = this.keyB;
    }
    words[base + W_META] = (zone << 16) | (view.protocol << 8) | flags;
    words[base + W_EXPIRES] = nowMs + STATE_TIMEOUT_MS[state]!;
    words[base + W_TCP] = state | (TCP_LAST_INDEX_NONE << TCP_LAST_INDEX_SHIFT);
    for (let w = W_END; w < ENTRY_WORDS; w++) words[base + w] = 0;

    this.indexInsert(id, hash);
    this.size++;
    this.stats.inserted++;
    return id;
  }

  /** Removes a live entry (stats.removed). */
  remove(id: number): void {
    this.removeEntry(id);
    this.stats.removed++;
  }

  /** True when the entry's expiry has passed at nowMs. */
  isExpired(id: number, nowMs: number): boolean {
    this.clockMs = nowMs;
    return ((this.words[id * ENTRY_WORDS + W_EXPIRES]! - nowMs) | 0) <= 0;
  }

  /** Removes the entry if its expiry has passed (stats.expired); true when it did. */
  expireIfDue(id: number, nowMs: number): boolean {
    if (!this.isLive(id) || !this.isExpired(id, nowMs)) return false;
    this.removeEntry(id);
    this.stats.expired++;
    return true;
  }

  /**
   * Sweeps at most `budget` entry slots from a rotating cursor and removes the live entries
   * whose expiry has passed. Returns how many it removed (also added to stats.expired).
   * Calling it with budget B every tick visits every slot within ceil(capacity / B) ticks.
   */
  expire(nowMs: number, budget: number): number {
    this.clockMs = nowMs;
    const words = this.words;
    const capacity = this.capacity;
    const steps = Math.min(Math.max(0, Math.floor(budget)), capacity);
    let cursor = this.expireCursor;
    let removed = 0;
    for (let step = 0; step < steps; step++) {
      const base = cursor * ENTRY_WORDS;
      if ((words[base + W_META]! & META_LIVE) !== 0 && ((words[base + W_EXPIRES]! - nowMs) | 0) <= 0) {
        this.removeEntry(cursor);
        removed++;
      }
      cursor++;
      if (cursor === capacity) cursor = 0;
    }
    this.expireCursor = cursor;
    this.stats.expired += removed;
    return removed;
  }

  // ---- field access ---------------------------------------------------------------------------

  isLive(id: number): boolean {
    return id >= 0 && id < this.capacity && (this.words[id * ENTRY_WORDS + W_META]! & META_LIVE) !== 0;
  }

  state(id: number): ConnState {
    return (this.words[id * ENTRY_WORDS + W_TCP]! & TCP_STATE_MASK) as ConnState;
  }

  setState(id: number, state: number): void {
    assert(state >= 0 && state < CONN_STATE_NAMES.length, "setState: bad state");
    const at = id * ENTRY_WORDS + W_TCP;
    this.words[at] = (this.words[at]! & ~TCP_STATE_MASK) | state;
  }

  /** Absolute expiry in ms on the engine clock (reconstructed around clockMs). */
  expiresAt(id: number): number {
    return this.clockMs + ((this.words[id * ENTRY_WORDS + W_EXPIRES]! - this.clockMs) | 0);
  }

  setExpiresAt(id: number, ms: number): void {
    this.words[id * ENTRY_WORDS + W_EXPIRES] = ms;
  }

  hashOf(id: number): number {
    return this.words[id * ENTRY_WORDS + W_HASH]!;
  }

  protocolOf(id: number): number {
    return (this.words[id * ENTRY_WORDS + W_META]! >>> 8) & 0xff;
  }

  zoneOf(id: number): number {
    return this.words[id * ENTRY_WORDS + W_META]! >>> 16;
  }

  isIpv6(id: number): boolean {
    return (this.words[id * ENTRY_WORDS + W_META]! & META_IPV6) !== 0;
  }

  isAssured(id: number): boolean {
    return (this.words[id * ENTRY_WORDS + W_META]! & META_ASSURED) !== 0;
  }

  setAssured(id: number, assured = true): void {
    this.setMetaFlag(id, META_ASSURED, assured);
  }

  seenReply(id: number): boolean {
    return (this.words[id * ENTRY_WORDS + W_META]! & META_SEEN_REPLY) !== 0;
  }

  setSeenReply(id: number, seen = true): void {
    this.setMetaFlag(id, META_SEEN_REPLY, seen);
  }

  /** TCP window data of one direction (0 original, 1 reply) as ordinary values. */
  tcpDirection(id: number, direction: number, out?: TcpDirectionSnapshot): TcpDirectionSnapshot {
    const base = id * ENTRY_WORDS;
    const packed = this.words[base + W_TCP]!;
    const result = out ?? { end: 0, maxEnd: 0, maxWindow: 0, scale: 0, flags: 0 };
    result.end = this.words[base + W_END + direction]!;
    result.maxEnd = this.words[base + W_MAX_END + direction]!;
    result.maxWindow = this.words[base + W_MAX_WIN + direction]!;
    result.scale = (packed >>> (TCP_SCALE_SHIFT + 4 * direction)) & 0xf;
    result.flags = (packed >>> (TCP_FLAGS_SHIFT + 6 * direction)) & TCP_DIR_FLAGS_MASK;
    return result;
  }

  /** Calls fn for every live entry id, in id order. fn must not insert or remove entries. */
  forEachLive(fn: (id: number) => void): void {
    const words = this.words;
    for (let id = 0; id < this.capacity; id++) {
      if ((words[id * ENTRY_WORDS + W_META]! & META_LIVE) !== 0) fn(id);
    }
  }

  // ---- slow paths: keys and snapshots ---------------------------------------------------------

  /** Entry id of the connection named by key (either direction), or -1. Sets lastDirection. */
  lookupKey(key: FlowKey, hash: number): number {
    return this.lookup(key.zone, this.viewOfKey(key), hash);
  }

  /**
   * keyOf without allocation: writes the key into `out`, whose src and dst must already have
   * the entry's address length (4, or 16 when isIpv6(id)). Returns out.
   */
  keyInto(id: number, out: FlowKey): FlowKey {
    assert(this.isLive(id), "keyInto: entry not live");
    const words = this.words;
    const base = id * ENTRY_WORDS;
    const meta = words[base + W_META]!;
    const protocol = (meta >>> 8) & 0xff;
    const origIsB = (meta & META_ORIG_IS_B) !== 0;
    const v6 = (meta & META_IPV6) !== 0;
    const length = v6 ? 16 : 4;
    assert(out.src.length === length && out.dst.length === length, "keyInto: out has the wrong address length");
    const aOut = origIsB ? out.dst : out.src;
    const bOut = origIsB ? out.src : out.dst;
    if (v6) {
      const poolBase = words[base + W_ADDR_A]! * V6_POOL_WORDS;
      wordsInto(this.v6Pool, poolBase, 4, aOut);
      wordsInto(this.v6Pool, poolBase + 4, 4, bOut);
    } else {
      wordsInto(words, base + W_ADDR_A, 1, aOut);
      wordsInto(words, base + W_ADDR_B, 1, bOut);
    }
    const ports = words[base + W_PORTS]!;
    const portA = ports >>> 16;
    let portB = ports & 0xffff;
    if (isIcmpProtocol(protocol)) portB = portA; // echo: both "ports" are the identifier
    out.zone = meta >>> 16;
    out.protocol = protocol;
    out.srcPort = origIsB ? portB : portA;
    out.dstPort = origIsB ? portA : portB;
    return out;
  }

  /** The connection's key in its ORIGINAL direction (allocates). */
  keyOf(id: number): FlowKey {
    assert(this.isLive(id), "keyOf: entry not live");
    const words = this.words;
    const base = id * ENTRY_WORDS;
    const meta = words[base + W_META]!;
    const protocol = (meta >>> 8) & 0xff;
    const origIsB = (meta & META_ORIG_IS_B) !== 0;
    let a: Uint8Array;
    let b: Uint8Array;
    if ((meta & META_IPV6) !== 0) {
      const poolBase = words[base + W_ADDR_A]! * V6_POOL_WORDS;
      a = wordsToBytes(this.v6Pool, poolBase, 4);
      b = wordsToBytes(this.v6Pool, poolBase + 4, 4);
    } else {
      a = wordsToBytes(words, base + W_ADDR_A, 1);
      b = wordsToBytes(words, base + W_ADDR_B, 1);
    }
    const ports = words[base + W_PORTS]!;
    let portA = ports >>> 16;
    let portB = ports & 0xffff;
    if (isIcmpProtocol(protocol)) portB = portA; // echo: both "ports" are the identifier
    if (origIsB) {
      const t = portA;
      portA = portB;
      portB = t;
    }
    return {
      zone: meta >>> 16,
      protocol,
      src: origIsB ? b : a,
      dst: origIsB ? a : b,
      srcPort: portA,
      dstPort: portB,
    };
  }

  /** The connection as ordinary values (addresses and ports in the ORIGINAL direction). */
  snapshot(id: number, out?: ConnectionSnapshot): ConnectionSnapshot {
    const key = this.keyOf(id);
    const meta = this.words[id * ENTRY_WORDS + W_META]!;
    const tcp =
      key.protocol === IpProto.TCP ? { original: this.tcpDirection(id, 0), reply: this.tcpDirection(id, 1) } : null;
    const result: ConnectionSnapshot = out ?? {
      zone: 0,
      protocol: 0,
      src: key.src,
      dst: key.dst,
      srcPort: 0,
      dstPort: 0,
      state: 0 as ConnState,
      expiresAtMs: 0,
      seenReply: false,
      assured: false,
      tcp: null,
    };
    result.zone = key.zone;
    result.protocol = key.protocol;
    result.src = key.src;
    result.dst = key.dst;
    result.srcPort = key.srcPort;
    result.dstPort = key.dstPort;
    result.state = this.state(id);
    result.expiresAtMs = this.expiresAt(id);
    result.seenReply = (meta & META_SEEN_REPLY) !== 0;
    result.assured = (meta & META_ASSURED) !== 0;
    result.tcp = tcp;
    return result;
  }

  /**
   * Writes a snapshot into the table: overwrites the entry with the same key (whichever its
   * original direction was) or inserts one (evicting by policy when full). Returns the id, or
   * -1 when the table is full and nothing is evictable. Used by HyperSync backups, which
   * validate snapshots from the wire first: a malformed snapshot here is a programmer error.
   */
  restore(s: ConnectionSnapshot, hash: number): number {
    assert(s.src.length === s.dst.length && (s.src.length === 4 || s.src.length === 16), "restore: bad addresses");
    assert(Number.isInteger(s.state) && s.state >= 0 && s.state < CONN_STATE_NAMES.length, "restore: bad state");
    assert(Number.isInteger(s.zone) && s.zone >= 0 && s.zone <= ZONE_MAX, "restore: bad zone");
    const view = this.viewOfKey(s);
    let id = this.lookup(s.zone, view, hash);
    if (id >= 0 && this.lastDirection !== 0) {
      // Same connection, opened from the other side this time: re-key the direction.
      this.removeEntry(id);
      this.stats.removed++;
      id = -1;
    }
    if (id < 0) {
      id = this.insert(s.zone, view, hash, s.state, this.clockMs);
      if (id < 0) return -1;
    }
    const words = this.words;
    const base = id * ENTRY_WORDS;
    // The snapshot carries no packet history: start it afresh, as for a new entry.
    let packed = s.state | (TCP_LAST_INDEX_NONE << TCP_LAST_INDEX_SHIFT);
    if (s.tcp !== null) {
      const dirs = [s.tcp.original, s.tcp.reply];
      for (let d = 0; d < 2; d++) {
        const t = dirs[d]!;
        assert(t.scale >= 0 && t.scale <= 14 && t.flags >= 0 && t.flags <= TCP_DIR_FLAGS_MASK, "restore: bad TCP direction");
        words[base + W_END + d] = t.end;
        words[base + W_MAX_END + d] = t.maxEnd;
        words[base + W_MAX_WIN + d] = t.maxWindow;
        packed |= (t.scale << (TCP_SCALE_SHIFT + 4 * d)) | (t.flags << (TCP_FLAGS_SHIFT + 6 * d));
      }
    }
    words[base + W_TCP] = packed;
    words[base + W_EXPIRES] = s.expiresAtMs;
    this.setMetaFlag(id, META_SEEN_REPLY, s.seenReply);
    this.setMetaFlag(id, META_ASSURED, s.assured);
    return id;
  }

  /**
   * Checks every structural invariant; throws (assert) on the first broken one. O(capacity):
   * for tests and debugging, not the data path.
   */
  verify(): void {
    const words = this.words;
    let live = 0;
    let liveV6 = 0;
    for (let id = 0; id < this.capacity; id++) {
      const meta = words[id * ENTRY_WORDS + W_META]!;
      if ((meta & META_LIVE) === 0) continue;
      live++;
      if ((meta & META_IPV6) !== 0) liveV6++;
      const slot = this.slotOf(id);
      assert(slot >= 0, `verify: live entry ${id} not reachable from its home slot`);
    }
    assert(live === this.size, `verify: size ${this.size} but ${live} live entries`);
    assert(liveV6 === this.ipv6Size, `verify: ipv6Size ${this.ipv6Size} but ${liveV6} live IPv6 entries`);
    let used = 0;
    for (let slot = 0; slot < this.indexSize; slot++) {
      const value = this.index[slot]!;
      if (value === 0) continue;
      used++;
      const id = (value & this.idMask) - 1;
      assert(id >= 0 && id < this.capacity && (words[id * ENTRY_WORDS + W_META]! & META_LIVE) !== 0, `verify: slot ${slot} names a free entry`);
      assert(((value & this.tagMask) | 0) === ((words[id * ENTRY_WORDS + W_HASH]! << this.idBits) | 0), `verify: slot ${slot} has a wrong tag`);
    }
    assert(used === live, `verify: index holds ${used} values for ${live} live entries`);
    let free = 0;
    for (let id = this.freeHead; id >= 0 && free <= this.capacity; free++) {
      assert((words[id * ENTRY_WORDS + W_META]! & META_LIVE) === 0, "verify: free list holds a live entry");
      const next = words[id * ENTRY_WORDS + W_ADDR_A]!;
      id = next === NIL ? -1 : next;
    }
    assert(free + live === this.capacity, `verify: ${free} free + ${live} live != capacity ${this.capacity}`);
    let freeV6 = 0;
    for (let slot = this.v6FreeHead; slot >= 0 && freeV6 <= this.ipv6Capacity; freeV6++) {
      const next = this.v6Pool[slot * V6_POOL_WORDS]!;
      slot = next === NIL ? -1 : next;
    }
    assert(freeV6 + liveV6 === this.ipv6Capacity, `verify: ${freeV6} free + ${liveV6} live v6 slots != ${this.ipv6Capacity}`);
  }

  // ---- internals --------------------------------------------------------------------------------

  private setMetaFlag(id: number, flag: number, on: boolean): void {
    const at = id * ENTRY_WORDS + W_META;
    this.words[at] = on ? this.words[at]! | flag : this.words[at]! & ~flag;
  }

  /**
   * Sets keyA/keyB/keyPorts/keySwapped/keyDirection from the view. keySwapped: the packet's
   * source is endpoint B. keyDirection: the direction when the packet alone decides it (ICMP
   * echo: request 0, reply 1), else -1.
   */
  private canonicalKey(view: PacketView): void {
    const protocol = view.protocol;
    let swapped: boolean;
    let addressesEqual: boolean;
    if (view.ipVersion === 4) {
      const src = view.src4 >>> 0;
      const dst = view.dst4 >>> 0;
      addressesEqual = src === dst;
      swapped = src > dst || (addressesEqual && view.srcPort > view.dstPort);
      this.keyA = swapped ? dst : src;
      this.keyB = swapped ? src : dst;
    } else {
      const order = compareV6(view.buf, view.srcAddrOffset, view.dstAddrOffset);
      addressesEqual = order === 0;
      swapped = order > 0 || (addressesEqual && view.srcPort > view.dstPort);
      this.keyA = 0;
      this.keyB = 0;
    }
    this.keySwapped = swapped;
    if ((protocol === IpProto.ICMP || protocol === IpProto.ICMPV6) && view.icmpIsEcho) {
      const request = view.icmpType === ICMP_ECHO_REQUEST || view.icmpType === ICMPV6_ECHO_REQUEST;
      // The requester is the source of a request and the destination of a reply.
      const requesterIsB = !addressesEqual && (request ? swapped : !swapped);
      this.keyPorts = ((view.srcPort << 16) | ECHO_MARK | (requesterIsB ? ECHO_REQUESTER_IS_B : 0)) >>> 0;
      this.keyDirection = request ? 0 : 1;
    } else {
      const portA = swapped ? view.dstPort : view.srcPort;
      const portB = swapped ? view.srcPort : view.dstPort;
      this.keyPorts = ((portA << 16) | portB) >>> 0;
      this.keyDirection = -1;
    }
  }

  private v6AddressesMatch(view: PacketView, poolSlot: number): boolean {
    const pool = this.v6Pool;
    const poolBase = poolSlot * V6_POOL_WORDS;
    const buf = view.buf;
    const aOffset = this.keySwapped ? view.dstAddrOffset : view.srcAddrOffset;
    const bOffset = this.keySwapped ? view.srcAddrOffset : view.dstAddrOffset;
    for (let i = 0; i < 4; i++) {
      if (pool[poolBase + i] !== readU32(buf, aOffset + 4 * i)) return false;
      if (pool[poolBase + 4 + i] !== readU32(buf, bOffset + 4 * i)) return false;
    }
    return true;
  }

  private writeV6Addresses(view: PacketView, poolBase: number): void {
    const buf = view.buf;
    const aOffset = this.keySwapped ? view.dstAddrOffset : view.srcAddrOffset;
    const bOffset = this.keySwapped ? view.srcAddrOffset : view.dstAddrOffset;
    for (let i = 0; i < 4; i++) {
      this.v6Pool[poolBase + i] = readU32(buf, aOffset + 4 * i);
      this.v6Pool[poolBase + 4 + i] = readU32(buf, bOffset + 4 * i);
    }
  }

  private homeSlot(hash: number): number {
    return ((hash >>> 0) * this.indexScale) | 0;
  }

  private indexInsert(id: number, hash: number): void {
    const index = this.index;
    const indexSize = this.indexSize;
    let slot = this.homeSlot(hash);
    for (let probes = 0; probes < indexSize; probes++) {
      if (index[slot] === 0) {
        index[slot] = (hash << this.idBits) | (id + 1);
        return;
      }
      slot++;
      if (slot === indexSize) slot = 0;
    }
    assert(false, "indexInsert: index full");
  }

  /** Index slot holding the entry, or -1 (only for a broken index). */
  private slotOf(id: number): number {
    const index = this.index;
    const indexSize = this.indexSize;
    const idMask = this.idMask;
    let slot = this.homeSlot(this.words[id * ENTRY_WORDS + W_HASH]!);
    for (let probes = 0; probes < indexSize; probes++) {
      const value = index[slot]!;
      if (value === 0) return -1;
      if ((value & idMask) === id + 1) return slot;
      slot++;
      if (slot === indexSize) slot = 0;
    }
    return -1;
  }

  /**
   * Backward-shift deletion. After emptying a slot, each later member of the cluster moves
   * into the hole unless its home lies cyclically in (hole, member's slot]: then it is still
   * reachable from its home and must stay.
   *
   *   home h of x:  [ .. hole .. h .. x ]  -> x stays   (h in (hole, x])
   *                 [ .. h .. hole .. x ]  -> x moves to hole, the hole moves to x's slot
   */
  private indexDelete(slot: number): void {
    const index = this.index;
    const indexSize = this.indexSize;
    const idMask = this.idMask;
    const words = this.words;
    let hole = slot;
    let current = slot;
    for (let probes = 0; probes < indexSize; probes++) {
      current++;
      if (current === indexSize) current = 0;
      const value = index[current]!;
      if (value === 0) break;
      const home = this.homeSlot(words[((value & idMask) - 1) * ENTRY_WORDS + W_HASH]!);
      const stays = hole <= current ? hole < home && home <= current : hole < home || home <= current;
      if (stays) continue;
      index[hole] = value;
      hole = current;
    }
    index[hole] = 0;
  }

  private removeEntry(id: number): void {
    assert(this.isLive(id), "remove: entry not live");
    if (this.onRemove !== null) this.onRemove(id);
    const words = this.words;
    const base = id * ENTRY_WORDS;
    const slot = this.slotOf(id);
    assert(slot >= 0, "remove: entry missing from the index");
    this.indexDelete(slot);
    if ((words[base + W_META]! & META_IPV6) !== 0) {
      const poolSlot = words[base + W_ADDR_A]!;
      this.v6Pool[poolSlot * V6_POOL_WORDS] = this.v6FreeHead < 0 ? NIL : this.v6FreeHead;
      this.v6FreeHead = poolSlot;
      this.ipv6Size--;
    }
    words[base + W_META] = 0;
    words[base + W_TCP] = 0;
    words[base + W_ADDR_A] = this.freeHead < 0 ? NIL : this.freeHead;
    this.freeHead = id;
    this.size--;
  }

  /**
   * Makes room for one insert (an entry id, and a v6 pool slot when needsV6). Scans up to
   * evictScanMax entries from a rotating cursor and removes the best candidate: among live
   * entries that are expired or not assured (and IPv6 when a pool slot is what is missing), the
   * one with the earliest expiry. Linux's early drop does the same with unassured entries.
   * Returns false when the scan found no candidate.
   */
  private evictOne(needsV6: boolean, nowMs: number): boolean {
    const words = this.words;
    const capacity = this.capacity;
    const requireV6 = needsV6 && this.v6FreeHead < 0;
    let cursor = this.evictCursor;
    let best = -1;
    let bestExpiresAt = 0;
    for (let step = 0; step < this.evictScanMax; step++) {
      const base = cursor * ENTRY_WORDS;
      const meta = words[base + W_META]!;
      const expiresAt = words[base + W_EXPIRES]!;
      if (
        (meta & META_LIVE) !== 0 &&
        (!requireV6 || (meta & META_IPV6) !== 0) &&
        ((meta & META_ASSURED) === 0 || ((expiresAt - nowMs) | 0) <= 0) &&
        (best < 0 || ((expiresAt - bestExpiresAt) | 0) < 0)
      ) {
        best = cursor;
        bestExpiresAt = expiresAt;
      }
      cursor++;
      if (cursor === capacity) cursor = 0;
    }
    this.evictCursor = cursor;
    if (best < 0) return false;
    const expired = ((bestExpiresAt - nowMs) | 0) <= 0;
    this.removeEntry(best);
    if (expired) this.stats.expired++;
    else this.stats.evicted++;
    return this.freeHead >= 0 && (!needsV6 || this.v6FreeHead >= 0);
  }

  /** Fills the scratch view from a key (original direction; ICMP keys are echo requests). */
  private viewOfKey(key: FlowKey): PacketView {
    const view = this.scratchView;
    const buf = this.scratchBuf;
    assert(key.src.length === key.dst.length && (key.src.length === 4 || key.src.length === 16), "key: bad addresses");
    buf.fill(0);
    buf.set(key.src, 0);
    buf.set(key.dst, 16);
    view.reset(buf, 0, buf.length);
    view.ipVersion = key.src.length === 4 ? 4 : 6;
    view.srcAddrOffset = 0;
    view.dstAddrOffset = 16;
    view.src4 = key.src.length === 4 ? readU32(buf, 0) : 0;
    view.dst4 = key.src.length === 4 ? readU32(buf, 16) : 0;
    view.protocol = key.protocol;
    view.srcPort = key.srcPort;
    view.dstPort = key.dstPort;
    if (isIcmpProtocol(key.protocol)) {
      view.icmpIsEcho = true;
      view.icmpType = key.protocol === IpProto.ICMP ? ICMP_ECHO_REQUEST : ICMPV6_ECHO_REQUEST;
      view.icmpId = key.srcPort;
    }
    return view;
  }
}

const ICMP_ECHO_REQUEST = 8;
const ICMPV6_ECHO_REQUEST = 128;

function isIcmpProtocol(protocol: number): boolean {
  return protocol === IpProto.ICMP || protocol === IpProto.ICMPV6;
}

/** Compares two 16-byte addresses in one buffer: <0, 0, >0. */
function compareV6(buf: Uint8Array, aOffset: number, bOffset: number): number {
  for (let i = 0; i < 16; i += 4) {
    const a = readU32(buf, aOffset + i);
    const b = readU32(buf, bOffset + i);
    if (a !== b) return a < b ? -1 : 1;
  }
  return 0;
}

function wordsInto(words: Uint32Array, offset: number, count: number, out: Uint8Array): void {
  for (let i = 0; i < count; i++) {
    const w = words[offset + i]!;
    out[i * 4] = w >>> 24;
    out[i * 4 + 1] = (w >>> 16) & 0xff;
    out[i * 4 + 2] = (w >>> 8) & 0xff;
    out[i * 4 + 3] = w & 0xff;
  }
}

function wordsToBytes(words: Uint32Array, offset: number, count: number): Uint8Array {
  const out = new Uint8Array(count * 4);
  for (let i = 0; i < count; i++) {
    const w = words[offset + i]!;
    out[i * 4] = w >>> 24;
    out[i * 4 + 1] = (w >>> 16) & 0xff;
    out[i * 4 + 2] = (w >>> 8) & 0xff;
    out[i * 4 + 3] = w & 0xff;
  }
  return out;
}
