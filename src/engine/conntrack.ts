// Connection state tracking over ConnectionTable entries: Linux nf_conntrack's TCP state machine
// and window checks (nf_conntrack_proto_tcp.c: tcp_conntracks, tcp_in_window, the ignore and
// RST rules), and the small UDP / ICMP echo / other-protocol machines.
//
// Per packet the caller does: lookup -> track(id, direction, view, now) -> verdict. A packet
// without a connection goes newConnectionState(view) -> (policy) -> insert -> initNew.
// After every track()/initNew() the fields oldState, newState, lastWasRst, needsNew and
// becameAssured describe what happened, so the caller counts events without allocation:
//   handshake completed:  oldState SYN_RECV -> newState ESTABLISHED (becameAssured set)
//   reset:                newState CLOSE with lastWasRst
//   closed by FIN:        newState TIME_WAIT (or CLOSE) from another state, lastWasRst false
//   needsNew:             a SYN re-opens a closed connection; the caller removes the entry and
//                         handles the SYN as a new connection (policy again), as Linux does.
//
// Invariants:
// - A dropped packet (any reason but NONE) leaves the entry as it was, except where Linux also
//   changes it (an out-of-window FIN/RST on an assured connection shortens its timer or notes
//   the packet; a SYN re-init of a window before its check fails).
// - Expiry is always now + a timeout from STATE_TIMEOUT_MS (or the unacknowledged-data and
//   close timeouts below), so it stays within the table's serial-arithmetic range.
// - Nothing here allocates per packet.
//
// Deliberate differences from Linux, each to keep an entry in 52 bytes:
// - td_maxack is not stored. Where Linux compares a RST's sequence with the receiver's highest
//   ACK, we use the sender's td_end when the receiver has acknowledged all of it (the
//   DATA_UNACKNOWLEDGED flag is clear: then the two are equal); otherwise a RST at the sender's
//   td_end closes and any other keeps the state (10 s timer). For the same reason an in-window
//   RST does not advance td_end.
// - last_seq/last_ack/last_end/last_win live only for ignored segments, in a small direct-mapped
//   cache (ignored segments are rare); a collision loses the re-sync that they allow. The
//   retransmission counter (5-minute RETRANS timeout) and the zero-window timeout are not kept.
// - No loose pick-up of mid-stream connections (nf_conntrack_tcp_loose=0) and no BE_LIBERAL.

import { readU32 } from "../packet/addr.js";
import { parseTcpOptions } from "../packet/parse.js";
import { IpProto, TcpFlag, type PacketView } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import {
  ENTRY_WORDS,
  META_ASSURED,
  META_SEEN_REPLY,
  TCP_DIR_FLAGS_MASK,
  TCP_FLAGS_SHIFT,
  TCP_LAST_DIR_SHIFT,
  TCP_LAST_INDEX_NONE,
  TCP_LAST_INDEX_SHIFT,
  TCP_SCALE_SHIFT,
  TCP_STATE_MASK,
  TCP_X_CHALLENGE_ACK,
  TCP_X_IGNORED_CACHED,
  TCP_X_SIMULTANEOUS_OPEN,
  W_END,
  W_EXPIRES,
  W_MAX_END,
  W_MAX_WIN,
  W_META,
  W_TCP,
  type ConnectionTable,
} from "./connection-table.js";
import { ConnState, DropReason, STATE_TIMEOUT_MS, TcpDirFlag } from "./types.js";

/** Linux TCP_CONNTRACK_UNACK: the longest timeout while data is unacknowledged. */
export const TCP_UNACKNOWLEDGED_TIMEOUT_MS = 5 * 60 * 1000;
/** Linux MAXACKWINCONST: how far below the receiver's end an ACK may lie. */
export const TCP_MAX_ACK_WINDOW = 66000;
const TCP_WINDOW_SCALE_MAX = 14;
/** Linux re-evaluates an assured connection's timer on an invalid FIN/RST only above this. */
const INVALID_CLOSE_TIMER_FLOOR_MS = 120 * 1000;

/** Packet classes of the TCP transition table (Linux enum tcp_bit_set). */
export const TcpPacketClass = { SYN: 0, SYNACK: 1, FIN: 2, ACK: 3, RST: 4, NONE: 5 } as const;
const C_SYN = TcpPacketClass.SYN;
const C_SYNACK = TcpPacketClass.SYNACK;
const C_FIN = TcpPacketClass.FIN;
const C_ACK = TcpPacketClass.ACK;
const C_RST = TcpPacketClass.RST;
const C_NONE = TcpPacketClass.NONE;
assert(C_NONE === TCP_LAST_INDEX_NONE, "conntrack: packet classes and the table disagree");

const TCP_STATES = 10; // NONE .. SYN_SENT2, as in Linux
const CLASSES = 6;
const S_IV = 0xfe; // invalid: drop
const S_IG = 0xff; // ignore: accept without touching the state

const sNO = ConnState.NONE;
const sSS = ConnState.TCP_SYN_SENT;
const sSR = ConnState.TCP_SYN_RECV;
const sES = ConnState.TCP_ESTABLISHED;
const sFW = ConnState.TCP_FIN_WAIT;
const sCW = ConnState.TCP_CLOSE_WAIT;
const sLA = ConnState.TCP_LAST_ACK;
const sTW = ConnState.TCP_TIME_WAIT;
const sCL = ConnState.TCP_CLOSE;
const sS2 = ConnState.TCP_SYN_SENT2;

// prettier-ignore
/** Linux tcp_conntracks[direction][packet class][old state]; see nf_conntrack_proto_tcp.c for each cell's reason. */
const TRANSITIONS = Uint8Array.from([
  // ORIGINAL      sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
  /* syn    */     sSS,  sSS,  S_IG, S_IG, S_IG, S_IG, S_IG, sSS,  sSS,  sS2,
  /* synack */     S_IV, S_IV, sSR,  S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, sSR,
  /* fin    */     S_IV, S_IV, sFW,  sFW,  sLA,  sLA,  sLA,  sTW,  sCL,  S_IV,
  /* ack    */     sES,  S_IV, sES,  sES,  sCW,  sCW,  sTW,  sTW,  sCL,  S_IV,
  /* rst    */     S_IV, sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,
  /* none   */     S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV,
  // REPLY         sNO   sSS   sSR   sES   sFW   sCW   sLA   sTW   sCL   sS2
  /* syn    */     S_IV, sS2,  S_IV, S_IV, S_IV, S_IV, S_IV, sSS,  S_IV, sS2,
  /* synack */     S_IV, sSR,  S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, S_IG, sSR,
  /* fin    */     S_IV, S_IV, sFW,  sFW,  sLA,  sLA,  sLA,  sTW,  sCL,  S_IV,
  /* ack    */     S_IV, S_IG, sSR,  sES,  sCW,  sCW,  sTW,  sTW,  sCL,  S_IG,
  /* rst    */     S_IV, sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,  sCL,
  /* none   */     S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV, S_IV,
]);

/** Valid combinations of FIN, SYN, RST, ACK, URG (PSH, ECE, CWR are always allowed); Linux tcp_valid_flags. */
const FLAG_CLASS_MASK = TcpFlag.FIN | TcpFlag.SYN | TcpFlag.RST | TcpFlag.ACK | TcpFlag.URG;
const VALID_FLAGS = new Uint8Array(FLAG_CLASS_MASK + 1);
for (const combination of [
  TcpFlag.SYN,
  TcpFlag.SYN | TcpFlag.URG,
  TcpFlag.SYN | TcpFlag.ACK,
  TcpFlag.RST,
  TcpFlag.RST | TcpFlag.ACK,
  TcpFlag.FIN | TcpFlag.ACK,
  TcpFlag.FIN | TcpFlag.ACK | TcpFlag.URG,
  TcpFlag.ACK,
  TcpFlag.ACK | TcpFlag.URG,
]) {
  VALID_FLAGS[combination] = 1;
}

const WINDOW_ACCEPT = 0;
const WINDOW_IGNORE = 1;
const WINDOW_INVALID = 2;

const LAST_INDEX_BITS = 0x7 << TCP_LAST_INDEX_SHIFT;
const LAST_DIR_BIT = 1 << TCP_LAST_DIR_SHIFT;
const ICMP_ECHO_REQUEST = 8;
const ICMPV6_ECHO_REQUEST = 128;
const IGNORED_CACHE_SLOTS_MIN = 64;

/** The TCP packet class of a flags byte (Linux get_conntrack_index). */
export function tcpPacketClass(flags: number): number {
  if ((flags & TcpFlag.RST) !== 0) return C_RST;
  if ((flags & TcpFlag.SYN) !== 0) return (flags & TcpFlag.ACK) !== 0 ? C_SYNACK : C_SYN;
  if ((flags & TcpFlag.FIN) !== 0) return C_FIN;
  if ((flags & TcpFlag.ACK) !== 0) return C_ACK;
  return C_NONE;
}

/** a < b in 32-bit sequence space. */
function before(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** a > b in 32-bit sequence space. */
function after(a: number, b: number): boolean {
  return ((b - a) | 0) < 0;
}

/** Sequence number after the segment: seq + data + 1 for SYN + 1 for FIN. */
function segmentEnd(view: PacketView): number {
  const flags = view.tcpFlags;
  return (view.tcpSeq + view.tcpDataLength + ((flags & TcpFlag.SYN) !== 0 ? 1 : 0) + ((flags & TcpFlag.FIN) !== 0 ? 1 : 0)) >>> 0;
}

function dirFlagsOf(packed: number, direction: number): number {
  return (packed >>> (TCP_FLAGS_SHIFT + 6 * direction)) & TCP_DIR_FLAGS_MASK;
}

function scaleOf(packed: number, direction: number): number {
  return (packed >>> (TCP_SCALE_SHIFT + 4 * direction)) & 0xf;
}

function withDirFlags(packed: number, direction: number, flags: number): number {
  const shift = TCP_FLAGS_SHIFT + 6 * direction;
  return (packed & ~(TCP_DIR_FLAGS_MASK << shift)) | (flags << shift);
}

function withScale(packed: number, direction: number, scale: number): number {
  const shift = TCP_SCALE_SHIFT + 4 * direction;
  return (packed & ~(0xf << shift)) | (scale << shift);
}

/** States in which a RST skips the sequence checks (Linux tcp_can_early_drop). */
function isClosingState(state: number): boolean {
  return state === sFW || state === sLA || state === sTW || state === sCL || state === sCW;
}

export class Tracker {
  /** Segments of BE_LIBERAL directions accepted by resync() (picked-up connections). */
  resyncs = 0;
  /** State before the last track()/initNew() (NONE for a new connection). */
  oldState = 0;
  /** State after it (equal to oldState when the packet changed nothing). */
  newState = 0;
  /** The last accepted packet was a TCP RST that the state machine acted on. */
  lastWasRst = false;
  /** The last packet is a SYN re-opening a closed connection: remove the entry, treat the packet as new. */
  needsNew = false;
  /** The last packet made the connection assured (TCP handshake done, or first UDP/ICMP/other reply). */
  becameAssured = false;

  private readonly table: ConnectionTable;
  private readonly words: Uint32Array;
  // Ignored-segment cache, direct-mapped by entry id (Linux last_end/last_ack/last_win/options).
  private readonly cacheMask: number;
  private readonly cacheOwner: Int32Array;
  private readonly cacheEnd: Uint32Array;
  private readonly cacheAck: Uint32Array;
  /** window (16 bits) | window scale << 16 (4 bits) | TcpDirFlag bits << 20. */
  private readonly cacheInfo: Uint32Array;

  constructor(table: ConnectionTable) {
    this.table = table;
    this.words = table.words;
    let slots = IGNORED_CACHE_SLOTS_MIN;
    while (slots < table.capacity >>> 8) slots *= 2;
    this.cacheMask = slots - 1;
    this.cacheOwner = new Int32Array(slots).fill(-1);
    this.cacheEnd = new Uint32Array(slots);
    this.cacheAck = new Uint32Array(slots);
    this.cacheInfo = new Uint32Array(slots);
  }

  /** Bytes of the tracker's own typed arrays (the ignored-segment cache). */
  memoryBytes(): number {
    return this.cacheOwner.byteLength + this.cacheEnd.byteLength + this.cacheAck.byteLength + this.cacheInfo.byteLength;
  }

  /**
   * For a packet without a connection: the state a new connection starts in, or the negative
   * of the DropReason when the packet cannot start one. Strict TCP: only a SYN opens.
   */
  newConnectionState(view: PacketView): number {
    switch (view.protocol) {
      case IpProto.TCP: {
        const flags = view.tcpFlags;
        if (VALID_FLAGS[flags & FLAG_CLASS_MASK] === 0) return -DropReason.TCP_INVALID_FLAGS;
        return tcpPacketClass(flags) === C_SYN ? sSS : -DropReason.TCP_NEW_NOT_SYN;
      }
      case IpProto.UDP:
        return ConnState.UDP_UNREPLIED;
      case IpProto.ICMP:
        return view.icmpIsEcho && view.icmpType === ICMP_ECHO_REQUEST ? ConnState.ICMP_UNREPLIED : -DropReason.ICMP_INVALID_NEW;
      case IpProto.ICMPV6:
        return view.icmpIsEcho && view.icmpType === ICMPV6_ECHO_REQUEST ? ConnState.ICMP_UNREPLIED : -DropReason.ICMP_INVALID_NEW;
      default:
        return ConnState.OTHER_UNREPLIED;
    }
  }

  /**
   * Initialises a just-inserted entry from the packet that opened it (direction ORIGINAL):
   * timers, and for TCP the window data and options of the SYN, then runs the SYN through the
   * state machine (NONE -> SYN_SENT), as Linux tcp_new + tcp_packet do.
   */
  initNew(id: number, view: PacketView, nowMs: number): void {
    const words = this.words;
    const base = id * ENTRY_WORDS;
    words[base + W_META] = words[base + W_META]! & ~(META_SEEN_REPLY | META_ASSURED);
    this.lastWasRst = false;
    this.needsNew = false;
    this.becameAssured = false;
    const state = words[base + W_TCP]! & TCP_STATE_MASK;
    if (view.protocol !== IpProto.TCP) {
      words[base + W_TCP] = state;
      words[base + W_EXPIRES] = nowMs + STATE_TIMEOUT_MS[state]!;
      this.oldState = sNO;
      this.newState = state;
      return;
    }
    assert(state === sSS && this.newConnectionState(view) === sSS, "initNew: a TCP connection starts with a SYN");
    for (let w = W_END; w < ENTRY_WORDS; w++) words[base + w] = 0;
    const end = segmentEnd(view);
    words[base + W_END] = end;
    words[base + W_MAX_END] = end;
    words[base + W_MAX_WIN] = view.tcpWindow === 0 ? 1 : view.tcpWindow;
    let packed = sNO | (TCP_LAST_INDEX_NONE << TCP_LAST_INDEX_SHIFT);
    packed = this.applyOptions(view, packed, 0);
    words[base + W_TCP] = packed;
    const reason = this.trackTcp(id, base, 0, view, nowMs);
    assert(reason === DropReason.NONE && this.newState === sSS, "initNew: the opening SYN must be accepted");
    this.oldState = sNO;
  }

  /**
   * A packet of an existing connection, in `direction` (table.lastDirection). Returns
   * DropReason.NONE to accept it, or why it must be dropped. Updates state, timers, seen-reply
   * and assured, and the TCP windows. Allocates nothing.
   */
  track(id: number, direction: number, view: PacketView, nowMs: number): number {
    this.lastWasRst = false;
    this.needsNew = false;
    this.becameAssured = false;
    const words = this.words;
    const base = id * ENTRY_WORDS;
    const meta = words[base + W_META]!;
    const protocol = (meta >>> 8) & 0xff;
    if (protocol === IpProto.TCP) return this.trackTcp(id, base, direction, view, nowMs);

    // UDP, ICMP echo and other protocols: a reply makes the connection replied and assured;
    // every accepted packet refreshes the timer. (ICMP echo lookups give direction 1 only to
    // the echo reply.)
    const packed = words[base + W_TCP]!;
    const oldState = packed & TCP_STATE_MASK;
    let newState = oldState;
    if (direction === 1) {
      if (protocol === IpProto.UDP) newState = ConnState.UDP_ASSURED;
      else if (protocol === IpProto.ICMP || protocol === IpProto.ICMPV6) newState = ConnState.ICMP_REPLIED;
      else newState = ConnState.OTHER_REPLIED;
      if ((meta & META_ASSURED) === 0) this.becameAssured = true;
      words[base + W_META] = meta | META_SEEN_REPLY | META_ASSURED;
      words[base + W_TCP] = (packed & ~TCP_STATE_MASK) | newState;
    }
    words[base + W_EXPIRES] = nowMs + STATE_TIMEOUT_MS[newState]!;
    this.oldState = oldState;
    this.newState = newState;
    return DropReason.NONE;
  }

  // ---- TCP ----------------------------------------------------------------------------------------

  private trackTcp(id: number, base: number, dir: number, view: PacketView, nowMs: number): number {
    const words = this.words;
    const flags = view.tcpFlags;
    let packed = words[base + W_TCP]!;
    const storedState = packed & TCP_STATE_MASK;
    this.oldState = storedState;
    this.newState = storedState;
    if (VALID_FLAGS[flags & FLAG_CLASS_MASK] === 0) return DropReason.TCP_INVALID_FLAGS;

    const index = tcpPacketClass(flags);
    const lastIndex = (packed >>> TCP_LAST_INDEX_SHIFT) & 0x7;
    const lastDir = (packed >>> TCP_LAST_DIR_SHIFT) & 1;
    const meta = words[base + W_META]!;
    // oldState may be rewritten by a re-sync (Linux does the same with its local old_state);
    // storedState stays what the entry held, which the window check and the caller see.
    let oldState = storedState;
    let newState = TRANSITIONS[(dir * CLASSES + index) * TCP_STATES + oldState]!;
    let checkWindow = true;

    switch (newState) {
      case sSS:
        if (oldState < sTW) break;
        // SYN on TIME_WAIT/CLOSE: a closed or aborted connection is being re-opened.
        if (
          ((dirFlagsOf(packed, 0) | dirFlagsOf(packed, 1)) & TcpDirFlag.CLOSE_INIT) !== 0 ||
          (lastDir === dir && lastIndex === C_RST)
        ) {
          this.needsNew = true;
          return DropReason.NONE;
        }
        return this.ignoreSegment(id, base, packed, dir, index, oldState, view);
      case S_IG: {
        const slot = id & this.cacheMask;
        if (
          index === C_SYNACK &&
          lastIndex === C_SYN &&
          lastDir !== dir &&
          this.hasCachedSegment(id, packed) &&
          view.tcpAck >>> 0 === this.cacheEnd[slot]
        ) {
          // This SYN/ACK answers a SYN we ignored: both ends are in sync, we are not. Take the
          // window of the ignored SYN and start over as SYN_SENT -> SYN_RECV.
          const info = this.cacheInfo[slot]!;
          const lastEnd = this.cacheEnd[slot]!;
          words[base + W_END + lastDir] = lastEnd;
          words[base + W_MAX_END + lastDir] = lastEnd;
          words[base + W_MAX_WIN + lastDir] = (info & 0xffff) === 0 ? 1 : info & 0xffff;
          words[base + W_END + dir] = 0;
          words[base + W_MAX_END + dir] = 0;
          words[base + W_MAX_WIN + dir] = 0;
          packed = withScale(packed, lastDir, (info >>> 16) & 0xf);
          packed = withDirFlags(packed, lastDir, (info >>> 20) & TCP_DIR_FLAGS_MASK);
          packed = withScale(packed, dir, 0);
          packed = withDirFlags(packed, dir, 0);
          packed &= ~TCP_X_CHALLENGE_ACK;
          oldState = sSS;
          newState = sSR;
          break;
        }
        return this.ignoreSegment(id, base, packed, dir, index, oldState, view);
      }
      case S_IV:
        return DropReason.TCP_INVALID_STATE;
      case sTW:
        // RFC 5961: an ACK answering a SYN we let through in LAST_ACK is a challenge ACK, not
        // the ACK of the last FIN.
        if (
          oldState === sLA &&
          index === C_ACK &&
          lastDir !== dir &&
          lastIndex === C_SYN &&
          (packed & TCP_X_CHALLENGE_ACK) !== 0
        ) {
          words[base + W_TCP] = packed & ~TCP_X_CHALLENGE_ACK;
          if (dir === 1) words[base + W_META] = meta | META_SEEN_REPLY;
          return DropReason.NONE;
        }
        break;
      case sS2:
        packed |= TCP_X_SIMULTANEOUS_OPEN;
        break;
      case sSR:
        if (dir === 1 && index === C_ACK && (packed & TCP_X_SIMULTANEOUS_OPEN) !== 0) newState = sES;
        break;
      case sCL: {
        if (index !== C_RST) break;
        if (isClosingState(storedState)) {
          checkWindow = false;
          break;
        }
        const established = storedState === sES && (meta & META_ASSURED) !== 0;
        const seq = view.tcpSeq >>> 0;
        if ((dirFlagsOf(packed, dir ^ 1) & TcpDirFlag.MAXACK_SET) !== 0 && lastIndex !== C_SYN) {
          if (seq === 0 && !established) break;
          const senderEnd = words[base + W_END + dir]!;
          if ((dirFlagsOf(packed, dir) & TcpDirFlag.DATA_UNACKNOWLEDGED) === 0) {
            // The receiver acknowledged everything the sender sent, so its highest ACK is the
            // sender's end: a RST below it is stale or forged.
            if (before(seq, senderEnd)) return DropReason.TCP_OUT_OF_WINDOW;
            if (!established || seq === senderEnd) break;
          } else if (!established) {
            break;
          }
          // A RST right behind the sender's last data (a "train") closes.
          if (lastIndex === C_ACK && lastDir === dir && seq === senderEnd) break;
          // Any other sequence keeps the state and lets a challenge ACK through.
          newState = oldState;
        }
        if (this.hasCachedSegment(id, packed)) {
          const slot = id & this.cacheMask;
          // RST answering a SYN or ACK we ignored: accept without window checks.
          if (
            (((meta & META_SEEN_REPLY) !== 0 && lastIndex === C_SYN) || ((meta & META_ASSURED) === 0 && lastIndex === C_ACK)) &&
            view.tcpAck >>> 0 === this.cacheEnd[slot]
          ) {
            checkWindow = false;
            break;
          }
          // RST answering a challenge ACK we let through in SYN_SENT.
          if (storedState === sSS && lastIndex === C_ACK && lastDir === 1 && seq === this.cacheAck[slot]) {
            checkWindow = false;
            break;
          }
        }
        break;
      }
      default:
        break;
    }

    words[base + W_TCP] = packed;
    if (checkWindow) {
      const verdict = this.inWindow(base, dir, view, storedState);
      if (verdict === WINDOW_IGNORE) {
        if (dir === 1) words[base + W_META] = words[base + W_META]! | META_SEEN_REPLY;
        return DropReason.NONE;
      }
      if (verdict === WINDOW_INVALID) {
        this.noteInvalid(base, dir, index, nowMs);
        return DropReason.TCP_OUT_OF_WINDOW;
      }
      packed = words[base + W_TCP]!;
    }

    // In window: commit the transition.
    packed = (packed & ~(TCP_STATE_MASK | LAST_INDEX_BITS | LAST_DIR_BIT)) | newState | (index << TCP_LAST_INDEX_SHIFT) | (dir << TCP_LAST_DIR_SHIFT);
    if (oldState !== newState && newState === sFW) {
      packed |= TcpDirFlag.CLOSE_INIT << (TCP_FLAGS_SHIFT + 6 * dir);
    }
    words[base + W_TCP] = packed;
    this.newState = newState;
    const isRst = index === C_RST;
    this.lastWasRst = isRst;

    let timeoutMs = STATE_TIMEOUT_MS[newState]!;
    if (isRst) {
      timeoutMs = STATE_TIMEOUT_MS[sCL]!;
    } else if (
      ((dirFlagsOf(packed, 0) | dirFlagsOf(packed, 1)) & TcpDirFlag.DATA_UNACKNOWLEDGED) !== 0 &&
      timeoutMs > TCP_UNACKNOWLEDGED_TIMEOUT_MS
    ) {
      timeoutMs = TCP_UNACKNOWLEDGED_TIMEOUT_MS;
    }

    let newMeta = words[base + W_META]!;
    if ((newMeta & META_SEEN_REPLY) === 0) {
      if (isRst) {
        // The only answer so far is a RST: the connection never existed. Expire it now.
        words[base + W_EXPIRES] = nowMs;
        return DropReason.NONE;
      }
      // A retransmitted SYN does not renew the timer (port reuse must not keep it alive).
      if (index === C_SYN && oldState === sSS) {
        if (dir === 1) words[base + W_META] = newMeta | META_SEEN_REPLY;
        return DropReason.NONE;
      }
      if (newState === sES && timeoutMs > TCP_UNACKNOWLEDGED_TIMEOUT_MS) timeoutMs = TCP_UNACKNOWLEDGED_TIMEOUT_MS;
    } else if ((newMeta & META_ASSURED) === 0 && (oldState === sSR || oldState === sES) && newState === sES) {
      newMeta |= META_ASSURED;
      this.becameAssured = true;
    }
    if (dir === 1) newMeta |= META_SEEN_REPLY;
    words[base + W_META] = newMeta;
    words[base + W_EXPIRES] = nowMs + timeoutMs;
    return DropReason.NONE;
  }

  /**
   * Linux tcp_in_window: checks the segment against the tracked windows and, when it fits,
   * updates them. Returns WINDOW_ACCEPT, WINDOW_IGNORE (pass without a state change) or
   * WINDOW_INVALID (drop).
   *
   *   I.   seq <= sender.maxEnd                              (upper bound of data)
   *   II.  seq + len >= sender.end - receiver.maxWindow      (lower bound of data)
   *   III. sack <= receiver.end                              (nothing acked that was not sent)
   *   IV.  sack >= receiver.end - max(sender.maxWindow, 66000)
   */
  private inWindow(base: number, dir: number, view: PacketView, storedState: number): number {
    const words = this.words;
    const rdir = dir ^ 1;
    const sEndAt = base + W_END + dir;
    const sMaxEndAt = base + W_MAX_END + dir;
    const sMaxWinAt = base + W_MAX_WIN + dir;
    const rEndAt = base + W_END + rdir;
    const rMaxEndAt = base + W_MAX_END + rdir;
    const rMaxWinAt = base + W_MAX_WIN + rdir;
    const flags = view.tcpFlags;
    const syn = (flags & TcpFlag.SYN) !== 0;
    const hasAck = (flags & TcpFlag.ACK) !== 0;
    const rst = (flags & TcpFlag.RST) !== 0;

    let seq = view.tcpSeq >>> 0;
    let ack = view.tcpAck >>> 0;
    let sack = ack;
    let win = view.tcpWindow;
    let end = segmentEnd(view);
    if ((dirFlagsOf(words[base + W_TCP]!, rdir) & TcpDirFlag.SACK_PERM) !== 0 && view.tcpOptionsLength > 0) {
      sack = highestSack(view, sack);
    }

    if (words[sMaxWinAt] === 0) {
      if (syn) {
        // SYN/ACK answering the SYN, or the reply side's SYN in a simultaneous open.
        this.initSender(base, dir, view, end, win);
        if (!hasAck) return WINDOW_ACCEPT;
      } else {
        // No window known for this side yet (e.g. its first packet is a RST): take the packet's.
        words[sEndAt] = end;
        const swin = (win << scaleOf(words[base + W_TCP]!, dir)) >>> 0;
        const maxWin = swin === 0 ? 1 : swin;
        words[sMaxWinAt] = maxWin;
        words[sMaxEndAt] = end + maxWin;
        if (words[rMaxWinAt] === 0) {
          words[rEndAt] = sack;
          words[rMaxEndAt] = sack;
        } else if (sack === ((words[rEndAt]! + 1) >>> 0)) {
          words[rEndAt] = sack; // likely the answer to a keep-alive
        }
      }
    } else if (syn && after(end, words[sEndAt]!) && (storedState === sSS || storedState === sSR)) {
      // RFC 793: a re-initialised TCP may restart with higher sequence numbers.
      this.initSender(base, dir, view, end, win);
      if (dir === 1 && !hasAck) return WINDOW_ACCEPT;
    }

    const rEnd = words[rEndAt]!;
    if (!hasAck || (rst && ack === 0)) {
      // No ACK (or a broken stack's RST with ack 0): pretend it acknowledges everything.
      ack = rEnd;
      sack = rEnd;
    }
    if (rst && seq === 0 && storedState === sSS) {
      // RST answering the SYN.
      seq = words[sEndAt]!;
      end = seq;
    }

    const sEnd = words[sEndAt]!;
    const sMaxEnd = words[sMaxEndAt]!;
    const sMaxWin = words[sMaxWinAt]!;
    const rMaxWin = words[rMaxWinAt]!;
    const maxAckWindow = sMaxWin > TCP_MAX_ACK_WINDOW ? sMaxWin : TCP_MAX_ACK_WINDOW;

    if (!before(seq, sMaxEnd + 1)) {
      // Beyond the receiver's window. Tolerate stacks that overshoot by less than a window:
      // note the data (its ACK must not look impossible later) but do not change the state.
      const overshot = (end - sMaxEnd + 1) >>> 0;
      if (
        rMaxWin !== 0 &&
        after(end, sEnd - rMaxWin - 1) &&
        after(sack, rEnd - maxAckWindow - 1) &&
        overshot <= rMaxWin &&
        before(sack, rEnd + 1)
      ) {
        words[sEndAt] = end;
        this.setDirFlag(base, dir, TcpDirFlag.DATA_UNACKNOWLEDGED);
        return WINDOW_IGNORE;
      }
      return this.liberal(base, dir) ? this.resync(base, dir, end, sack, win) : WINDOW_INVALID;
    }
    if (!before(sack, rEnd + 1)) return this.liberal(base, dir) ? this.resync(base, dir, end, sack, win) : WINDOW_INVALID; // acks data never seen
    if (rMaxWin !== 0 && !after(end, sEnd - rMaxWin - 1)) return WINDOW_IGNORE; // old data again
    if (!after(sack, rEnd - maxAckWindow - 1)) return WINDOW_IGNORE; // very late ACK

    let packed = words[base + W_TCP]!;
    if (!syn) win = (win << scaleOf(packed, dir)) >>> 0;
    const swin = (win + ((sack - ack) >>> 0)) >>> 0;
    if (sMaxWin < swin) words[sMaxWinAt] = swin;
    // A RST carries no data to acknowledge: unlike Linux, it does not move end. Otherwise an
    // in-window RST would leave DATA_UNACKNOWLEDGED set and hide the receiver's highest ACK
    // (which we infer from that flag, see the RST rules) from the exact RST that follows.
    if (!rst && after(end, sEnd)) {
      words[sEndAt] = end;
      packed |= TcpDirFlag.DATA_UNACKNOWLEDGED << (TCP_FLAGS_SHIFT + 6 * dir);
    }
    if (hasAck) packed |= TcpDirFlag.MAXACK_SET << (TCP_FLAGS_SHIFT + 6 * dir);
    if (rMaxWin !== 0 && after(end, sMaxEnd)) words[rMaxWinAt] = rMaxWin + ((end - sMaxEnd) >>> 0);
    if (after(sack + win, words[rMaxEndAt]! - 1)) {
      words[rMaxEndAt] = sack + win + (win === 0 ? 1 : 0);
    }
    if (ack === rEnd) packed &= ~(TcpDirFlag.DATA_UNACKNOWLEDGED << (TCP_FLAGS_SHIFT + 6 * rdir));
    // In window by the book: this direction is synchronised again (see resync).
    packed &= ~(TcpDirFlag.BE_LIBERAL << (TCP_FLAGS_SHIFT + 6 * dir));
    words[base + W_TCP] = packed;
    return WINDOW_ACCEPT;
  }

  private liberal(base: number, dir: number): boolean {
    return (dirFlagsOf(this.words[base + W_TCP]!, dir) & TcpDirFlag.BE_LIBERAL) !== 0;
  }

  /**
   * A BE_LIBERAL direction (a connection picked up mid-stream: a HyperSync backup promoted after
   * its owner died, whose window ends are as old as the last record) sent a segment the stale
   * ends call impossible. Like Linux's pick-up with be_liberal, accept it; unlike Linux, also
   * take the ends from it, so the next segments are checked by the book and the flag comes off
   * with the first one that passes.
   */
  private resync(base: number, dir: number, end: number, sack: number, win: number): number {
    const words = this.words;
    const rdir = dir ^ 1;
    const swin = ((win << scaleOf(words[base + W_TCP]!, dir)) >>> 0) || 1;
    if (after(end, words[base + W_END + dir]!)) words[base + W_END + dir] = end;
    if (words[base + W_MAX_WIN + dir]! < swin) words[base + W_MAX_WIN + dir] = swin;
    if (after(end + swin, words[base + W_MAX_END + dir]!)) words[base + W_MAX_END + dir] = end + swin;
    if (after(sack, words[base + W_END + rdir]!)) words[base + W_END + rdir] = sack;
    if (after(sack + swin, words[base + W_MAX_END + rdir]!)) words[base + W_MAX_END + rdir] = sack + swin;
    this.resyncs++;
    return WINDOW_ACCEPT;
  }

  /** Linux tcp_init_sender: window data of `dir` from its SYN or SYN/ACK. */
  private initSender(base: number, dir: number, view: PacketView, end: number, win: number): void {
    const words = this.words;
    words[base + W_END + dir] = end;
    words[base + W_MAX_END + dir] = end;
    words[base + W_MAX_WIN + dir] = win === 0 ? 1 : win;
    let packed = this.applyOptions(view, words[base + W_TCP]!, dir);
    // RFC 7323: scaling is on only when both sides offered it.
    const both = dirFlagsOf(packed, dir) & dirFlagsOf(packed, dir ^ 1) & TcpDirFlag.WINDOW_SCALE;
    if (dir === 1 && both === 0) {
      packed = withScale(withScale(packed, 0, 0), 1, 0);
    }
    words[base + W_TCP] = packed;
  }

  /**
   * Linux tcp_options: window scale and SACK-permitted of a SYN into direction `dir`. Like
   * Linux, a segment without options leaves the direction's scale and flags as they were.
   */
  private applyOptions(view: PacketView, packed: number, dir: number): number {
    if (view.tcpOptionsOffset < 0 || view.tcpOptionsLength === 0) return packed;
    // parseTcpOptions reports malformed options through view.failure; here, as in Linux, the
    // options before the malformed one still count, and the packet's parse status must not change.
    const failure = view.failure;
    parseTcpOptions(view);
    view.failure = failure;
    let flags = 0;
    let scale = 0;
    if (view.tcpWindowScale >= 0) {
      flags |= TcpDirFlag.WINDOW_SCALE;
      scale = view.tcpWindowScale > TCP_WINDOW_SCALE_MAX ? TCP_WINDOW_SCALE_MAX : view.tcpWindowScale;
    }
    if (view.tcpSackPermitted) flags |= TcpDirFlag.SACK_PERM;
    return withDirFlags(withScale(packed, dir, scale), dir, flags);
  }

  /**
   * Linux's IGNORE case: accept the segment without changing the state, and remember it (in
   * the cache) so that the answer to it can re-sync the connection or close it.
   */
  private ignoreSegment(id: number, base: number, packed: number, dir: number, index: number, oldState: number, view: PacketView): number {
    const words = this.words;
    const slot = id & this.cacheMask;
    this.cacheOwner[slot] = id;
    this.cacheEnd[slot] = segmentEnd(view);
    let info = view.tcpWindow & 0xffff;
    packed = (packed & ~(LAST_INDEX_BITS | LAST_DIR_BIT)) | (index << TCP_LAST_INDEX_SHIFT) | (dir << TCP_LAST_DIR_SHIFT) | TCP_X_IGNORED_CACHED;
    if (index === C_SYN && dir === 0) {
      // A SYN in the original direction: keep its options for a re-sync.
      packed &= ~(TCP_X_SIMULTANEOUS_OPEN | TCP_X_CHALLENGE_ACK);
      const options = this.applyOptions(view, 0, 0);
      info |= (scaleOf(options, 0) << 16) | (dirFlagsOf(options, 0) << 20);
      // In LAST_ACK the peer may answer this SYN with an RFC 5961 challenge ACK.
      if (oldState === sLA) packed |= TCP_X_CHALLENGE_ACK;
    }
    if (oldState === sSS && index === C_ACK && dir === 1) this.cacheAck[slot] = view.tcpAck >>> 0;
    this.cacheInfo[slot] = info;
    words[base + W_TCP] = packed;
    if (dir === 1) words[base + W_META] = words[base + W_META]! | META_SEEN_REPLY;
    return DropReason.NONE;
  }

  private hasCachedSegment(id: number, packed: number): boolean {
    return (packed & TCP_X_IGNORED_CACHED) !== 0 && this.cacheOwner[id & this.cacheMask] === id;
  }

  /**
   * Linux nf_tcp_handle_invalid: an out-of-window FIN or RST on an assured connection answering
   * the peer's FIN/RST shortens a long timer to the unacknowledged-data timeout (the ends are
   * likely gone); otherwise it is noted as the last packet.
   */
  private noteInvalid(base: number, dir: number, index: number, nowMs: number): void {
    const words = this.words;
    if ((words[base + W_META]! & META_ASSURED) === 0) return;
    if (index !== C_RST && index !== C_FIN) return;
    const packed = words[base + W_TCP]!;
    const lastIndex = (packed >>> TCP_LAST_INDEX_SHIFT) & 0x7;
    const lastDir = (packed >>> TCP_LAST_DIR_SHIFT) & 1;
    if (lastDir !== dir && (lastIndex === C_FIN || lastIndex === C_RST)) {
      const remainingMs = (words[base + W_EXPIRES]! - nowMs) | 0;
      if (remainingMs < INVALID_CLOSE_TIMER_FLOOR_MS) return;
      if (remainingMs > TCP_UNACKNOWLEDGED_TIMEOUT_MS) words[base + W_EXPIRES] = nowMs + TCP_UNACKNOWLEDGED_TIMEOUT_MS;
    } else {
      words[base + W_TCP] = (packed & ~(LAST_INDEX_BITS | LAST_DIR_BIT)) | (index << TCP_LAST_INDEX_SHIFT) | (dir << TCP_LAST_DIR_SHIFT);
    }
  }

  private setDirFlag(base: number, dir: number, flag: number): void {
    const words = this.words;
    words[base + W_TCP] = words[base + W_TCP]! | (flag << (TCP_FLAGS_SHIFT + 6 * dir));
  }
}

/**
 * Linux tcp_sack: the highest right edge among the SACK blocks of the segment's options, or
 * `sack` when none is higher. Skips the common timestamp-only layout without walking.
 */
function highestSack(view: PacketView, sack: number): number {
  const buf = view.buf;
  const start = view.tcpOptionsOffset;
  const end = start + view.tcpOptionsLength;
  if (start < 0 || end > buf.length) return sack;
  if (end - start === 12 && buf[start] === 1 && buf[start + 1] === 1 && buf[start + 2] === 8 && buf[start + 3] === 10) return sack;
  let i = start;
  // Each step advances at least one byte through at most 40 bytes of options.
  while (i < end) {
    const kind = buf[i]!;
    if (kind === 0) return sack; // end of options
    if (kind === 1) {
      i++; // no-op
      continue;
    }
    if (i + 2 > end) return sack;
    const size = buf[i + 1]!;
    if (size < 2 || i + size > end) return sack;
    if (kind === 5 && size >= 10 && ((size - 2) & 7) === 0) {
      for (let block = i + 2; block < i + size; block += 8) {
        const right = readU32(buf, block + 4);
        if (after(right, sack)) sack = right;
      }
      return sack;
    }
    i += size;
  }
  return sack;
}
