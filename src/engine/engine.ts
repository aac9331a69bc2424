// The single-member gateway engine: one packet in, one verdict out.
//
//   frame -> parse -> [not IP: drop] -> [routing: TTL, route] -> connection lookup
//         -> existing: track state (TCP window, timers)      -> forward / drop(reason)
//         -> new:      policy (first match) -> insert + init -> forward / drop / reject
//
// Every packet ends in exactly one verdict and every non-forwarded packet in exactly one
// DropReason with a counter (see counters.ts for the invariant). The engine is synchronous
// and I/O-free: the caller passes the clock (nowMs) and sends what the engine builds
// (`reply` for rejects and ICMP time exceeded). No allocation per packet.
//
// Without a rule base the engine accepts every new connection (track-only mode, used by
// `tandem replay` without --policy). Without a route table it does not route: packets keep
// their TTL and `egress` is -1.

import { flowHashOfView } from "../packet/flow-hash.js";
import { decrementTtl } from "../packet/checksum.js";
import { parseFrame, parseQuotedIp } from "../packet/parse.js";
import { PacketView, ParseFailure } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import { ConnectionTable } from "./connection-table.js";
import { Tracker } from "./conntrack.js";
import { EngineCounters } from "./counters.js";
import { ReplyBuilder, ReplyKind } from "./reply.js";
import { RuleAction, type RuleBase } from "./rule-base.js";
import type { RouteTable } from "./routing.js";
import { ConnState, DropReason, Verdict } from "./types.js";

export interface EngineOptions {
  /** Connection table capacity (fixed for the engine's life). */
  capacity: number;
  /** Seed of the symmetric flow hash (the cluster seed in a cluster). */
  hashSeed: number;
  /** Compiled policy; null accepts every new connection (track only). */
  ruleBase?: RuleBase | null;
  /** Route table; null disables routing (no TTL decrement, egress -1). */
  routes?: RouteTable | null;
  /** Source address for ICMP errors the gateway sends (IPv4 as a number, IPv6 as bytes). */
  localAddress4?: number | null;
  localAddress6?: Uint8Array | null;
  /** Entries the expiry sweep examines per tick (bounded work per tick). */
  sweepBudget?: number;
}

/** Non-first fragments are matched to their connection through the first fragment. */
const FRAGMENT_SLOTS = 4096;
const FRAGMENT_TTL_MS = 30_000;

export class Engine {
  readonly table: ConnectionTable;
  readonly tracker: Tracker;
  readonly counters = new EngineCounters();
  readonly hashSeed: number;
  ruleBase: RuleBase | null;
  routes: RouteTable | null;
  /** After process(): egress interface index for FORWARD (-1 when routing is off). */
  egress = -1;
  /** After process(): the drop reason (NONE for forward). */
  dropReason: number = DropReason.NONE;
  /** After process(): connection entry id the packet belonged to, or -1. */
  connection = -1;
  /** After process(): the direction of the packet in its connection (0 original, 1 reply). */
  direction = 0;
  /** After process(): rule index that decided a new connection, or -1. */
  rule = -1;
  /** A packet the engine built (RST, ICMP error); reply.length > 0 when one must be sent back. */
  readonly reply = new ReplyBuilder();

  private readonly view = new PacketView();
  private readonly quote = new PacketView();
  private readonly localAddress4: number | null;
  private readonly localAddress6: Uint8Array | null;
  private readonly sweepBudget: number;
  // Fragment cache: direct-mapped on a hash of (addresses, protocol, fragment id).
  private readonly fragKey = new Uint32Array(FRAGMENT_SLOTS);
  private readonly fragConnection = new Int32Array(FRAGMENT_SLOTS).fill(-1);
  private readonly fragExpiresAt = new Float64Array(FRAGMENT_SLOTS);

  constructor(options: EngineOptions) {
    assert(options.capacity > 0, "capacity must be positive");
    this.table = new ConnectionTable({ capacity: options.capacity });
    this.tracker = new Tracker(this.table);
    this.hashSeed = options.hashSeed | 0;
    this.ruleBase = options.ruleBase ?? null;
    this.routes = options.routes ?? null;
    this.localAddress4 = options.localAddress4 ?? null;
    this.localAddress6 = options.localAddress6 ?? null;
    this.sweepBudget = options.sweepBudget ?? 1024;
  }

  /** Parses and processes one frame. The frame's bytes may be modified (TTL, checksum). */
  processFrame(buf: Uint8Array, offset: number, length: number, linkType: number, zone: number, nowMs: number): Verdict {
    const view = this.view;
    if (!parseFrame(view, buf, offset, length, linkType)) {
      this.counters.packets++;
      this.counters.bytes += length;
      this.counters.parseFailures[view.failure]++;
      return this.finish(Verdict.DROP, DropReason.PARSE_ERROR);
    }
    return this.process(view, zone, nowMs);
  }

  /** Processes an already-parsed packet. */
  process(view: PacketView, zone: number, nowMs: number): Verdict {
    const counters = this.counters;
    counters.packets++;
    counters.bytes += view.frameEnd - view.frameOffset;
    this.egress = -1;
    this.connection = -1;
    this.direction = 0;
    this.rule = -1;
    this.reply.length = 0;
    if (view.failure !== ParseFailure.NONE) {
      counters.parseFailures[view.failure]++;
      return this.finish(Verdict.DROP, DropReason.PARSE_ERROR);
    }
    if (view.ipVersion === 0) return this.finish(Verdict.DROP, DropReason.NOT_IP);

    // Routing first: a packet we cannot route or whose TTL ran out creates no state.
    const routes = this.routes;
    if (routes !== null) {
      if (view.ttl <= 1) {
        this.reply.build(ReplyKind.ICMP_TIME_EXCEEDED, view, this.localAddress4, this.localAddress6);
        if (this.reply.length > 0) counters.repliesBuilt++;
        return this.finish(Verdict.DROP, DropReason.TTL_EXCEEDED);
      }
      const egress = routes.lookup(view);
      if (egress < 0) return this.finish(Verdict.DROP, DropReason.NO_ROUTE);
      this.egress = egress;
    }

    const reason = this.classify(view, zone, nowMs);
    if (reason !== DropReason.NONE) {
      if (reason === DropReason.POLICY_REJECT) {
        this.reply.build(ReplyKind.TCP_RESET, view, this.localAddress4, this.localAddress6);
        if (this.reply.length > 0) counters.repliesBuilt++;
        return this.finish(Verdict.REJECT, reason);
      }
      return this.finish(Verdict.DROP, reason);
    }
    if (routes !== null) decrementTtl(view);
    return this.finish(Verdict.FORWARD, DropReason.NONE);
  }

  /** Expires idle connections: bounded work per call. Call it as the clock advances. */
  tick(nowMs: number): number {
    const expired = this.table.expire(nowMs, this.sweepBudget);
    this.counters.connectionsExpired += expired;
    return expired;
  }

  /** Connection tracking and policy. Returns DropReason.NONE to forward. */
  private classify(view: PacketView, zone: number, nowMs: number): number {
    if (view.icmpIsError) return this.classifyIcmpError(view, zone, nowMs);
    if (view.isFragment && view.fragmentOffset !== 0) return this.classifyLaterFragment(view, nowMs);

    const table = this.table;
    const tracker = this.tracker;
    const hash = flowHashOfView(this.hashSeed, view);
    let id = table.lookup(zone, view, hash);
    if (id >= 0 && table.isExpired(id, nowMs)) {
      table.remove(id);
      this.counters.connectionsExpired++;
      id = -1;
    }
    if (id >= 0) {
      const direction = table.lastDirection;
      const reason = tracker.track(id, direction, view, nowMs);
      this.connection = id;
      this.direction = direction;
      if (reason !== DropReason.NONE) return reason;
      this.countTransition(tracker.oldState, tracker.newState, tracker.lastWasRst);
      if (tracker.needsNew) {
        // A SYN re-opened a closed connection (TIME_WAIT/CLOSE): the old entry is gone and
        // the SYN is a new connection that must pass the policy again.
        table.remove(id);
        this.connection = -1;
      } else {
        if (view.isFragment) this.rememberFragment(view, id, nowMs);
        return DropReason.NONE;
      }
    }

    const initial = tracker.newConnectionState(view);
    if (initial < 0) return -initial;
    const ruleBase = this.ruleBase;
    if (ruleBase !== null) {
      const rule = ruleBase.match(view);
      this.rule = rule;
      if (rule < 0) return DropReason.POLICY_DEFAULT;
      ruleBase.hits[rule]++;
      if (ruleBase.logOf(rule)) this.counters.logged++;
      const action = ruleBase.actionOf(rule);
      if (action === RuleAction.DROP) return DropReason.POLICY_DROP;
      if (action === RuleAction.REJECT) return DropReason.POLICY_REJECT;
    }
    id = table.insert(zone, view, hash, initial, nowMs);
    if (id < 0) return DropReason.TABLE_FULL;
    tracker.initNew(id, view, nowMs);
    this.connection = id;
    this.direction = 0;
    this.counters.connectionsCreated++;
    if (view.isFragment) this.rememberFragment(view, id, nowMs);
    return DropReason.NONE;
  }

  /** ICMP errors are forwarded only when they quote a connection we track ("related"). */
  private classifyIcmpError(view: PacketView, zone: number, nowMs: number): number {
    const quote = this.quote;
    if (view.icmpQuoteOffset < 0 || !parseQuotedIp(quote, view.buf, view.icmpQuoteOffset, view.l3End)) {
      return DropReason.ICMP_ERROR_NO_CONNECTION;
    }
    const hash = flowHashOfView(this.hashSeed, quote);
    const id = this.table.lookup(zone, quote, hash);
    if (id < 0 || this.table.isExpired(id, nowMs)) return DropReason.ICMP_ERROR_NO_CONNECTION;
    this.connection = id;
    this.direction = this.table.lastDirection ^ 1; // the error travels against the quoted packet
    this.counters.icmpErrorsRelated++;
    return DropReason.NONE;
  }

  private classifyLaterFragment(view: PacketView, nowMs: number): number {
    const slot = this.fragmentSlot(view);
    const key = this.fragmentKey(view);
    const id = this.fragConnection[slot]!;
    if (id < 0 || this.fragKey[slot] !== key || this.fragExpiresAt[slot]! < nowMs || !this.table.isLive(id)) {
      return DropReason.FRAGMENT_NO_CONNECTION;
    }
    this.connection = id;
    return DropReason.NONE;
  }

  private rememberFragment(view: PacketView, id: number, nowMs: number): void {
    const slot = this.fragmentSlot(view);
    this.fragKey[slot] = this.fragmentKey(view);
    this.fragConnection[slot] = id;
    this.fragExpiresAt[slot] = nowMs + FRAGMENT_TTL_MS;
  }

  private fragmentKey(view: PacketView): number {
    let h = mixWord(0x5eed, view.fragmentId);
    h = mixWord(h, view.protocol);
    if (view.ipVersion === 4) {
      h = mixWord(h, view.src4);
      h = mixWord(h, view.dst4);
    } else {
      const buf = view.buf;
      for (let i = 0; i < 16; i += 4) {
        h = mixWord(h, (buf[view.srcAddrOffset + i]! << 24) | (buf[view.srcAddrOffset + i + 1]! << 16) | (buf[view.srcAddrOffset + i + 2]! << 8) | buf[view.srcAddrOffset + i + 3]!);
        h = mixWord(h, (buf[view.dstAddrOffset + i]! << 24) | (buf[view.dstAddrOffset + i + 1]! << 16) | (buf[view.dstAddrOffset + i + 2]! << 8) | buf[view.dstAddrOffset + i + 3]!);
      }
    }
    return fmix32(h);
  }

  private fragmentSlot(view: PacketView): number {
    return (fmix32(this.fragmentKey(view) ^ 0x9e3779b9) & (FRAGMENT_SLOTS - 1)) >>> 0;
  }

  private countTransition(oldState: number, newState: number, wasRst: boolean): void {
    if (oldState === newState) return;
    const counters = this.counters;
    if (
      newState === ConnState.TCP_ESTABLISHED ||
      newState === ConnState.UDP_ASSURED ||
      newState === ConnState.ICMP_REPLIED ||
      newState === ConnState.OTHER_REPLIED
    ) {
      if (oldState !== ConnState.TCP_ESTABLISHED) counters.connectionsEstablished++;
      return;
    }
    if (newState === ConnState.TCP_CLOSE && wasRst) {
      counters.connectionsReset++;
      return;
    }
    if (
      (newState === ConnState.TCP_TIME_WAIT || newState === ConnState.TCP_CLOSE) &&
      oldState !== ConnState.TCP_TIME_WAIT &&
      oldState !== ConnState.TCP_CLOSE
    ) {
      counters.connectionsClosed++;
    }
  }

  private finish(verdict: Verdict, reason: number): Verdict {
    this.dropReason = reason;
    this.counters.verdicts[verdict]++;
    if (verdict !== Verdict.FORWARD) this.counters.dropReasons[reason]++;
    return verdict;
  }
}

