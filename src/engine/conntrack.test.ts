// State tracking fixtures: TCP conversations (handshake, data, FIN close, RST, simultaneous
// open, window violations, re-open and re-sync), UDP, ICMP echo, other protocols, and the
// lookup of connections quoted by ICMP errors. Packets are built with the packet builder and
// parsed, then run through the same steps as the engine (lookup, expiry, track or create).

import { describe, expect, it } from "vitest";
import { packet, type PacketBuilder, type TcpOptionList } from "../packet/builder.js";
import { flowHashOfView } from "../packet/flow-hash.js";
import { parseFrame, parseQuotedIp } from "../packet/parse.js";
import { IpProto, PacketView } from "../packet/view.js";
import { ConnectionTable } from "./connection-table.js";
import { TCP_UNACKNOWLEDGED_TIMEOUT_MS, Tracker } from "./conntrack.js";
import { ConnState, DROP_REASON_NAMES, DropReason, STATE_TIMEOUT_MS, TcpDirFlag } from "./types.js";

const SEED = 0x51ab;
const CLIENT = "198.18.0.1";
const SERVER = "198.19.0.1";
const CLIENT6 = "2001:db8::1";
const SERVER6 = "2001:db8::2";
const CPORT = 40000;
const SPORT = 443;
const DAY_MS = 24 * 60 * 60 * 1000;

interface StepResult {
  reason: number;
  id: number;
  direction: number;
  oldState: number;
  newState: number;
  becameAssured: boolean;
  lastWasRst: boolean;
  reopened: boolean;
  created: boolean;
}

/** The engine's per-packet connection steps, without policy. */
class Harness {
  readonly table: ConnectionTable;
  readonly tracker: Tracker;
  readonly view = new PacketView();
  nowMs = 0;

  constructor(capacity = 64) {
    this.table = new ConnectionTable({ capacity });
    this.tracker = new Tracker(this.table);
  }

  send(builder: PacketBuilder, zone = 0): StepResult {
    const frame = builder.build();
    const view = this.view;
    expect(parseFrame(view, frame, 0, frame.length, builder.linkType())).toBe(true);
    return this.process(view, zone);
  }

  process(view: PacketView, zone: number): StepResult {
    const { table, tracker } = this;
    const hash = flowHashOfView(SEED, view);
    let id = table.lookup(zone, view, hash);
    if (id >= 0 && table.isExpired(id, this.nowMs)) {
      table.remove(id);
      id = -1;
    }
    let reopened = false;
    if (id >= 0) {
      const direction = table.lastDirection;
      const reason = tracker.track(id, direction, view, this.nowMs);
      if (reason !== DropReason.NONE || !tracker.needsNew) {
        return { reason, id, direction, created: false, reopened, ...this.events() };
      }
      reopened = true;
      table.remove(id);
    }
    const initial = tracker.newConnectionState(view);
    if (initial < 0) return { reason: -initial, id: -1, direction: 0, created: false, reopened, ...this.events() };
    id = table.insert(zone, view, hash, initial, this.nowMs);
    expect(id).toBeGreaterThanOrEqual(0);
    tracker.initNew(id, view, this.nowMs);
    return { reason: DropReason.NONE, id, direction: 0, created: true, reopened, ...this.events() };
  }

  private events(): Pick<StepResult, "oldState" | "newState" | "becameAssured" | "lastWasRst"> {
    const t = this.tracker;
    return { oldState: t.oldState, newState: t.newState, becameAssured: t.becameAssured, lastWasRst: t.lastWasRst };
  }
}

type Side = "c" | "s";

interface TcpStep {
  from: Side;
  flags: string;
  seq: number;
  ack?: number;
  win?: number;
  len?: number;
  options?: TcpOptionList;
  /** Milliseconds to advance the clock before the packet. */
  afterMs?: number;
  /** Expected outcome (default: accepted). */
  reason?: number;
  state: number;
  /** Expected expiry relative to now (checked when given). */
  timeoutMs?: number;
}

function tcpSegment(from: Side, step: Omit<TcpStep, "state">, v6 = false): PacketBuilder {
  const [client, server] = v6 ? [CLIENT6, SERVER6] : [CLIENT, SERVER];
  const src = from === "c" ? client : server;
  const dst = from === "c" ? server : client;
  const b = packet();
  if (v6) b.ipv6({ src, dst });
  else b.ipv4({ src, dst });
  b.tcp({
    sport: from === "c" ? CPORT : SPORT,
    dport: from === "c" ? SPORT : CPORT,
    flags: step.flags,
    seq: step.seq,
    ack: step.ack ?? 0,
    window: step.win ?? 64000,
    options: step.options,
  });
  if ((step.len ?? 0) > 0) b.payload(new Uint8Array(step.len!));
  return b;
}

/** Runs a conversation; every step must hit one connection entry. Returns the results. */
function runTcp(h: Harness, steps: TcpStep[], v6 = false): StepResult[] {
  const results: StepResult[] = [];
  let id = -1;
  steps.forEach((step, i) => {
    h.nowMs += step.afterMs ?? 0;
    const expiresBefore = id >= 0 ? h.table.expiresAt(id) : 0;
    const r = h.send(tcpSegment(step.from, step, v6));
    const where = `step ${i} (${step.from} ${step.flags} seq=${step.seq})`;
    expect(DROP_REASON_NAMES[r.reason], where).toBe(DROP_REASON_NAMES[step.reason ?? DropReason.NONE]);
    if (r.id >= 0) {
      if (id >= 0 && !r.reopened) expect(r.id, `${where}: same entry`).toBe(id);
      id = r.id;
    }
    expect(h.table.state(id), where).toBe(step.state);
    if (r.reason !== DropReason.NONE) expect(h.table.expiresAt(id), `${where}: expiry untouched`).toBe(expiresBefore);
    if (step.timeoutMs !== undefined) expect(h.table.expiresAt(id) - h.nowMs, `${where}: timeout`).toBe(step.timeoutMs);
    results.push(r);
  });
  return results;
}

const T = STATE_TIMEOUT_MS;
const SYN_OPTIONS: TcpOptionList = { mss: 1460, wscale: 7, sackPerm: true };
/** Client ISN 1000, server ISN 5000, both with window scale 7 and SACK. */
const HANDSHAKE: TcpStep[] = [
  { from: "c", flags: "S", seq: 1000, win: 64240, options: SYN_OPTIONS, state: ConnState.TCP_SYN_SENT, timeoutMs: T[ConnState.TCP_SYN_SENT] },
  { from: "s", flags: "SA", seq: 5000, ack: 1001, win: 65160, options: SYN_OPTIONS, state: ConnState.TCP_SYN_RECV, timeoutMs: T[ConnState.TCP_SYN_RECV] },
  { from: "c", flags: "A", seq: 1001, ack: 5001, win: 502, state: ConnState.TCP_ESTABLISHED, timeoutMs: 5 * DAY_MS },
];

describe("TCP: conversations", () => {
  it("handshake, data, FIN close: states, timers, assured, window scale", () => {
    const h = new Harness();
    const r = runTcp(h, [
      ...HANDSHAKE,
      // Unacknowledged data caps the timer at 5 minutes; the ACK restores 5 days.
      { from: "c", flags: "PA", seq: 1001, ack: 5001, win: 502, len: 100, state: ConnState.TCP_ESTABLISHED, timeoutMs: TCP_UNACKNOWLEDGED_TIMEOUT_MS },
      { from: "s", flags: "A", seq: 5001, ack: 1101, win: 509, state: ConnState.TCP_ESTABLISHED, timeoutMs: 5 * DAY_MS },
      { from: "c", flags: "FA", seq: 1101, ack: 5001, win: 502, state: ConnState.TCP_FIN_WAIT, timeoutMs: T[ConnState.TCP_FIN_WAIT] },
      { from: "s", flags: "A", seq: 5001, ack: 1102, win: 509, state: ConnState.TCP_CLOSE_WAIT, timeoutMs: T[ConnState.TCP_CLOSE_WAIT] },
      { from: "s", flags: "FA", seq: 5001, ack: 1102, win: 509, state: ConnState.TCP_LAST_ACK, timeoutMs: T[ConnState.TCP_LAST_ACK] },
      { from: "c", flags: "A", seq: 1102, ack: 5002, win: 502, state: ConnState.TCP_TIME_WAIT, timeoutMs: T[ConnState.TCP_TIME_WAIT] },
    ]);
    const id = r[0]!.id;
    expect(r.map((x) => x.direction)).toEqual([0, 1, 0, 0, 1, 0, 1, 1, 0]);
    expect(r[0]!.created).toBe(true);
    expect([r[0]!.oldState, r[0]!.newState]).toEqual([ConnState.NONE, ConnState.TCP_SYN_SENT]);
    // The handshake's last ACK completes it: SYN_RECV -> ESTABLISHED, assured.
    expect([r[2]!.oldState, r[2]!.newState, r[2]!.becameAssured]).toEqual([ConnState.TCP_SYN_RECV, ConnState.TCP_ESTABLISHED, true]);
    expect(r.filter((x) => x.becameAssured).length).toBe(1);
    expect(r.some((x) => x.lastWasRst)).toBe(false);
    expect(h.table.isAssured(id)).toBe(true);
    expect(h.table.seenReply(id)).toBe(true);
    const original = h.table.tcpDirection(id, 0);
    const reply = h.table.tcpDirection(id, 1);
    expect([original.scale, reply.scale]).toEqual([7, 7]);
    expect(original.flags & (TcpDirFlag.WINDOW_SCALE | TcpDirFlag.SACK_PERM | TcpDirFlag.CLOSE_INIT)).toBe(
      TcpDirFlag.WINDOW_SCALE | TcpDirFlag.SACK_PERM | TcpDirFlag.CLOSE_INIT,
    );
    expect(reply.flags & TcpDirFlag.CLOSE_INIT).toBe(0);
    expect(original.end).toBe(1102);
    expect(reply.end).toBe(5002);
    expect(h.table.size).toBe(1);
  });

  it("window scaling stays off unless both sides offer it", () => {
    const h = new Harness();
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, options: { wscale: 7 }, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "SA", seq: 5000, ack: 1001, options: { mss: 1460 }, state: ConnState.TCP_SYN_RECV },
    ]);
    expect(h.table.tcpDirection(r[0]!.id, 0).scale).toBe(0);
    expect(h.table.tcpDirection(r[0]!.id, 1).scale).toBe(0);
  });

  it("IPv6 handshake and close", () => {
    const h = new Harness();
    const r = runTcp(
      h,
      [
        ...HANDSHAKE,
        { from: "s", flags: "FA", seq: 5001, ack: 1001, state: ConnState.TCP_FIN_WAIT },
        { from: "c", flags: "FA", seq: 1001, ack: 5002, state: ConnState.TCP_LAST_ACK },
        { from: "s", flags: "A", seq: 5002, ack: 1002, state: ConnState.TCP_TIME_WAIT },
      ],
      true,
    );
    expect(h.table.isIpv6(r[0]!.id)).toBe(true);
    expect(h.table.isAssured(r[0]!.id)).toBe(true);
  });

  it("simultaneous open: SYN_SENT -> SYN_SENT2 -> SYN_RECV -> ESTABLISHED", () => {
    const h = new Harness();
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "S", seq: 5000, state: ConnState.TCP_SYN_SENT2 },
      { from: "c", flags: "SA", seq: 1000, ack: 5001, state: ConnState.TCP_SYN_RECV },
      { from: "s", flags: "SA", seq: 5000, ack: 1001, state: ConnState.TCP_SYN_RECV }, // ignored, passes
      { from: "s", flags: "A", seq: 5001, ack: 1001, state: ConnState.TCP_ESTABLISHED, timeoutMs: 5 * DAY_MS },
    ]);
    expect(r[4]!.becameAssured).toBe(true);
  });

  it("a SYN retransmission does not renew the SYN_SENT timer", () => {
    const h = new Harness();
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
      { from: "c", flags: "S", seq: 1000, afterMs: 3000, state: ConnState.TCP_SYN_SENT, timeoutMs: T[ConnState.TCP_SYN_SENT]! - 3000 },
    ]);
    expect(r[1]!.created).toBe(false);
  });
});

describe("TCP: RST", () => {
  it("a RST at the exact sequence closes an established connection (10 s)", () => {
    const h = new Harness();
    const r = runTcp(h, [...HANDSHAKE, { from: "s", flags: "R", seq: 5001, state: ConnState.TCP_CLOSE, timeoutMs: T[ConnState.TCP_CLOSE] }]);
    expect([r[3]!.oldState, r[3]!.newState, r[3]!.lastWasRst]).toEqual([ConnState.TCP_ESTABLISHED, ConnState.TCP_CLOSE, true]);
  });

  it("a RST below what the peer acknowledged is dropped; one inside the window keeps the state for a challenge ACK", () => {
    const h = new Harness();
    runTcp(h, [
      ...HANDSHAKE,
      { from: "s", flags: "R", seq: 4000, reason: DropReason.TCP_OUT_OF_WINDOW, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "R", seq: 5100, state: ConnState.TCP_ESTABLISHED, timeoutMs: T[ConnState.TCP_CLOSE] },
      // The challenge ACK and the RST at the right sequence then close it.
      { from: "c", flags: "A", seq: 1001, ack: 5001, win: 502, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "R", seq: 5001, state: ConnState.TCP_CLOSE },
    ]);
  });

  it("a RST answering the SYN ends the connection at once; the next SYN starts a new one", () => {
    const h = new Harness();
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "RA", seq: 0, ack: 1001, win: 0, state: ConnState.TCP_CLOSE },
    ]);
    expect(r[1]!.lastWasRst).toBe(true);
    expect(h.table.isExpired(r[1]!.id, h.nowMs)).toBe(true);
    const again = h.send(tcpSegment("c", { from: "c", flags: "S", seq: 2000 }));
    expect(again.created).toBe(true);
    expect(h.table.state(again.id)).toBe(ConnState.TCP_SYN_SENT);
    expect(h.table.size).toBe(1);
  });

  it("a RST with a wrong ACK in SYN_SENT is dropped", () => {
    const h = new Harness();
    runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "RA", seq: 0, ack: 999_999, win: 0, reason: DropReason.TCP_OUT_OF_WINDOW, state: ConnState.TCP_SYN_SENT },
    ]);
  });
});

describe("TCP: invalid segments", () => {
  it("drops segments far outside the window and ACKs of data never sent; passes old retransmissions", () => {
    const h = new Harness();
    runTcp(h, [
      ...HANDSHAKE,
      { from: "c", flags: "PA", seq: 1001 + 10_000_000, ack: 5001, len: 10, afterMs: 1000, reason: DropReason.TCP_OUT_OF_WINDOW, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "A", seq: 5001, ack: 9_999, reason: DropReason.TCP_OUT_OF_WINDOW, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "A", seq: 5001, ack: 1001 - 100_000, reason: DropReason.NONE, state: ConnState.TCP_ESTABLISHED, timeoutMs: 5 * DAY_MS - 1000 },
      // Data already acknowledged long ago: ignored (passes without refreshing anything).
      { from: "c", flags: "PA", seq: 1001 - 200_000, ack: 5001, len: 10, afterMs: 1000, state: ConnState.TCP_ESTABLISHED, timeoutMs: 5 * DAY_MS - 2000 },
      { from: "c", flags: "PA", seq: 1001, ack: 5001, len: 10, state: ConnState.TCP_ESTABLISHED, timeoutMs: TCP_UNACKNOWLEDGED_TIMEOUT_MS },
    ]);
  });

  it("checks SACK blocks against the data sent", () => {
    const h = new Harness();
    runTcp(h, [
      ...HANDSHAKE,
      { from: "c", flags: "PA", seq: 1001, ack: 5001, len: 100, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "A", seq: 5001, ack: 1001, options: { ts: [1, 2], sack: [[1051, 1101]] }, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "A", seq: 5001, ack: 1001, options: { sack: [[1051, 1201]] }, reason: DropReason.TCP_OUT_OF_WINDOW, state: ConnState.TCP_ESTABLISHED },
    ]);
  });

  it("rejects invalid flag combinations and packets the state does not allow, leaving the entry as it was", () => {
    const h = new Harness();
    const states = [ConnState.TCP_SYN_SENT];
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: states[0]! },
      { from: "c", flags: "A", seq: 1001, ack: 1, afterMs: 10, reason: DropReason.TCP_INVALID_STATE, state: ConnState.TCP_SYN_SENT },
      { from: "c", flags: "SF", seq: 1000, reason: DropReason.TCP_INVALID_FLAGS, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "F", seq: 5000, reason: DropReason.TCP_INVALID_FLAGS, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "FA", seq: 5000, ack: 1001, reason: DropReason.TCP_INVALID_STATE, state: ConnState.TCP_SYN_SENT },
    ]);
    expect(r.slice(1).every((x) => x.oldState === x.newState)).toBe(true);
  });

  it("new connections start only with a SYN (strict: no mid-stream pick-up)", () => {
    const h = new Harness();
    const t = h.tracker;
    const cases: Array<[string, number]> = [
      ["A", -DropReason.TCP_NEW_NOT_SYN],
      ["PA", -DropReason.TCP_NEW_NOT_SYN],
      ["RA", -DropReason.TCP_NEW_NOT_SYN],
      ["SA", -DropReason.TCP_NEW_NOT_SYN],
      ["FA", -DropReason.TCP_NEW_NOT_SYN],
      ["", -DropReason.TCP_INVALID_FLAGS],
      ["F", -DropReason.TCP_INVALID_FLAGS],
      ["SF", -DropReason.TCP_INVALID_FLAGS],
      ["SR", -DropReason.TCP_INVALID_FLAGS],
      ["FPU", -DropReason.TCP_INVALID_FLAGS],
      ["S", ConnState.TCP_SYN_SENT],
      ["SU", ConnState.TCP_SYN_SENT],
      ["SPEC", ConnState.TCP_SYN_SENT],
    ];
    for (const [flags, expected] of cases) {
      const b = tcpSegment("c", { from: "c", flags, seq: 1 });
      const frame = b.build();
      expect(parseFrame(h.view, frame, 0, frame.length, b.linkType())).toBe(true);
      expect(t.newConnectionState(h.view), `flags "${flags}"`).toBe(expected);
    }
    expect(h.send(tcpSegment("c", { from: "c", flags: "A", seq: 1, ack: 1 })).reason).toBe(DropReason.TCP_NEW_NOT_SYN);
    expect(h.table.size).toBe(0);
  });
});

describe("TCP: re-open and re-sync", () => {
  const CLOSED: TcpStep[] = [
    ...HANDSHAKE,
    { from: "c", flags: "FA", seq: 1001, ack: 5001, state: ConnState.TCP_FIN_WAIT },
    { from: "s", flags: "FA", seq: 5001, ack: 1002, state: ConnState.TCP_LAST_ACK },
    { from: "c", flags: "A", seq: 1002, ack: 5002, state: ConnState.TCP_TIME_WAIT },
  ];

  it("a new SYN on TIME_WAIT re-opens the connection as a new one", () => {
    const h = new Harness();
    const r = runTcp(h, [...CLOSED, { from: "c", flags: "S", seq: 90_000, afterMs: 5000, state: ConnState.TCP_SYN_SENT, timeoutMs: T[ConnState.TCP_SYN_SENT] }]);
    const last = r[r.length - 1]!;
    expect(last.reopened && last.created).toBe(true);
    expect(h.table.size).toBe(1);
    expect(h.table.isAssured(last.id)).toBe(false);
    expect(h.table.tcpDirection(last.id, 0).end).toBe(90_001);
    // The new connection works from here.
    runTcp(h, [
      { from: "s", flags: "SA", seq: 70_000, ack: 90_001, state: ConnState.TCP_SYN_RECV },
      { from: "c", flags: "A", seq: 90_001, ack: 70_001, state: ConnState.TCP_ESTABLISHED },
    ]);
  });

  it("a SYN from the server side re-opens TIME_WAIT with the roles switched", () => {
    const h = new Harness();
    const r = runTcp(h, [...CLOSED, { from: "s", flags: "S", seq: 90_000, state: ConnState.TCP_SYN_SENT }]);
    const last = r[r.length - 1]!;
    expect(last.reopened).toBe(true);
    const key = h.table.keyOf(last.id);
    expect([key.srcPort, key.dstPort]).toEqual([SPORT, CPORT]);
  });

  it("a SYN after a RST in the same direction re-opens CLOSE", () => {
    const h = new Harness();
    const r = runTcp(h, [
      ...HANDSHAKE,
      { from: "c", flags: "R", seq: 1001, state: ConnState.TCP_CLOSE },
      { from: "c", flags: "S", seq: 50_000, state: ConnState.TCP_SYN_SENT },
    ]);
    expect(r[4]!.reopened).toBe(true);
  });

  it("a SYN on ESTABLISHED is ignored; the SYN/ACK answering it re-syncs the connection", () => {
    const h = new Harness();
    const r = runTcp(h, [
      ...HANDSHAKE,
      // The client restarted and reuses the port: the gateway still holds the old connection.
      { from: "c", flags: "S", seq: 77_000, win: 29_200, options: { wscale: 6, sackPerm: true }, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "SA", seq: 88_000, ack: 77_001, options: { wscale: 7 }, state: ConnState.TCP_SYN_RECV },
      { from: "c", flags: "A", seq: 77_001, ack: 88_001, win: 400, state: ConnState.TCP_ESTABLISHED },
      { from: "c", flags: "PA", seq: 77_001, ack: 88_001, len: 50, state: ConnState.TCP_ESTABLISHED },
    ]);
    expect(r[3]!.created || r[3]!.reopened).toBe(false);
    const id = r[0]!.id;
    expect(h.table.tcpDirection(id, 0).scale).toBe(6);
    expect(h.table.tcpDirection(id, 1).scale).toBe(7);
    expect(h.table.tcpDirection(id, 0).end).toBe(77_051);
  });

  it("RFC 5961: in LAST_ACK, the challenge ACK answering a new SYN is not taken for the last ACK", () => {
    const h = new Harness();
    runTcp(h, [
      ...HANDSHAKE,
      { from: "s", flags: "FA", seq: 5001, ack: 1001, state: ConnState.TCP_FIN_WAIT },
      { from: "c", flags: "FA", seq: 1001, ack: 5002, state: ConnState.TCP_LAST_ACK },
      { from: "c", flags: "S", seq: 60_000, state: ConnState.TCP_LAST_ACK }, // ignored
      { from: "s", flags: "A", seq: 5002, ack: 1002, state: ConnState.TCP_LAST_ACK }, // the challenge ACK
      { from: "s", flags: "A", seq: 5002, ack: 1002, state: ConnState.TCP_TIME_WAIT }, // a real last ACK
    ]);
  });

  it("a RST answering a challenge ACK in SYN_SENT closes, and the retried SYN opens anew", () => {
    const h = new Harness();
    const r = runTcp(h, [
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
      { from: "s", flags: "A", seq: 5000, ack: 5_000_000, state: ConnState.TCP_SYN_SENT }, // ignored: a half-open peer
      { from: "c", flags: "R", seq: 5_000_000, state: ConnState.TCP_CLOSE, timeoutMs: T[ConnState.TCP_CLOSE] },
      { from: "c", flags: "S", seq: 1000, state: ConnState.TCP_SYN_SENT },
    ]);
    expect(r[3]!.reopened).toBe(true);
  });

  it("without the SYN/ACK matching the ignored SYN, the old connection stays", () => {
    const h = new Harness();
    runTcp(h, [
      ...HANDSHAKE,
      { from: "c", flags: "S", seq: 77_000, state: ConnState.TCP_ESTABLISHED },
      { from: "s", flags: "SA", seq: 88_000, ack: 12_345, state: ConnState.TCP_ESTABLISHED }, // ignored, passes
      { from: "c", flags: "A", seq: 1001, ack: 5001, win: 502, state: ConnState.TCP_ESTABLISHED },
    ]);
  });
});

describe("UDP, ICMP and other protocols", () => {
  function udp(from: Side): PacketBuilder {
    return from === "c"
      ? packet().ipv4({ src: CLIENT, dst: SERVER }).udp({ sport: 5353, dport: 53 }).payload("q")
      : packet().ipv4({ src: SERVER, dst: CLIENT }).udp({ sport: 53, dport: 5353 }).payload("a");
  }

  it("UDP: unreplied 30 s; the first reply makes it assured for 120 s; every packet refreshes", () => {
    const h = new Harness();
    const first = h.send(udp("c"));
    expect(h.table.state(first.id)).toBe(ConnState.UDP_UNREPLIED);
    expect(h.table.expiresAt(first.id) - h.nowMs).toBe(30_000);
    h.nowMs += 1000;
    const reply = h.send(udp("s"));
    expect([reply.id, reply.direction, reply.becameAssured, reply.newState]).toEqual([first.id, 1, true, ConnState.UDP_ASSURED]);
    expect(h.table.expiresAt(first.id) - h.nowMs).toBe(120_000);
    h.nowMs += 100_000;
    const again = h.send(udp("c"));
    expect([again.id, again.direction, again.becameAssured]).toEqual([first.id, 0, false]);
    expect(h.table.expiresAt(first.id) - h.nowMs).toBe(120_000);
    expect(h.table.isAssured(first.id) && h.table.seenReply(first.id)).toBe(true);
    // After expiry the next packet starts a new connection.
    h.nowMs += 120_000;
    const fresh = h.send(udp("s"));
    expect(fresh.created).toBe(true);
    expect(h.table.keyOf(fresh.id).srcPort).toBe(53);
  });

  it("ICMP and ICMPv6 echo: request -> UNREPLIED, reply -> REPLIED; an unsolicited reply is refused", () => {
    for (const v6 of [false, true]) {
      const h = new Harness();
      const [c, s, request, reply] = v6 ? [CLIENT6, SERVER6, 128, 129] : [CLIENT, SERVER, 8, 0];
      const echo = (src: string, dst: string, type: number): PacketBuilder => {
        const b = v6 ? packet().ipv6({ src, dst }).icmpv6({ type, id: 4242, seq: 1 }) : packet().ipv4({ src, dst }).icmp({ type, id: 4242, seq: 1 });
        return b;
      };
      expect(h.send(echo(s, c, reply)).reason).toBe(DropReason.ICMP_INVALID_NEW);
      const first = h.send(echo(c, s, request));
      expect(h.table.state(first.id)).toBe(ConnState.ICMP_UNREPLIED);
      const answer = h.send(echo(s, c, reply));
      expect([answer.id, answer.direction, answer.newState, answer.becameAssured]).toEqual([first.id, 1, ConnState.ICMP_REPLIED, true]);
      expect(h.table.expiresAt(first.id) - h.nowMs).toBe(30_000);
      // The other host pinging back with the same id is its own connection.
      const back = h.send(echo(s, c, request));
      expect(back.created).toBe(true);
      expect(back.id).not.toBe(first.id);
      expect(h.table.size).toBe(2);
    }
  });

  it("other protocols: tracked by addresses, replied on the first reply", () => {
    const h = new Harness();
    const gre = (src: string, dst: string): PacketBuilder => packet().ipv4({ src, dst, protocol: 47 }).payload("gre");
    const first = h.send(gre(CLIENT, SERVER));
    expect([first.created, h.table.state(first.id), h.table.protocolOf(first.id)]).toEqual([true, ConnState.OTHER_UNREPLIED, 47]);
    expect(h.table.expiresAt(first.id) - h.nowMs).toBe(T[ConnState.OTHER_UNREPLIED]);
    const back = h.send(gre(SERVER, CLIENT));
    expect([back.id, back.direction, back.newState]).toEqual([first.id, 1, ConnState.OTHER_REPLIED]);
  });
});

describe("ICMP errors: lookup of the quoted connection", () => {
  function quoteLookup(h: Harness, error: PacketBuilder): { id: number; direction: number } {
    const frame = error.build();
    const outer = new PacketView();
    expect(parseFrame(outer, frame, 0, frame.length, error.linkType())).toBe(true);
    expect(outer.icmpIsError).toBe(true);
    const quote = new PacketView();
    expect(parseQuotedIp(quote, outer.buf, outer.icmpQuoteOffset, outer.l3End)).toBe(true);
    const id = h.table.lookup(0, quote, flowHashOfView(SEED, quote));
    return { id, direction: h.table.lastDirection };
  }

  it("finds TCP, UDP and echo connections from the quote in either direction, IPv4 and IPv6", () => {
    const h = new Harness();
    const syn = tcpSegment("c", { from: "c", flags: "S", seq: 1000 });
    const tcp = h.send(syn);
    const synAck = tcpSegment("s", { from: "s", flags: "SA", seq: 5000, ack: 1001 });
    h.send(synAck);
    const router = "198.18.255.1";
    const unreachable = (quoted: PacketBuilder, dst: string): PacketBuilder =>
      packet().ipv4({ src: router, dst }).icmp({ type: 3, code: 1, quote: quoted.build().subarray(0, 28) });
    expect(quoteLookup(h, unreachable(syn, CLIENT))).toEqual({ id: tcp.id, direction: 0 });
    expect(quoteLookup(h, unreachable(synAck, SERVER))).toEqual({ id: tcp.id, direction: 1 });

    const ping = packet().ipv4({ src: CLIENT, dst: SERVER }).icmp({ type: 8, id: 7, seq: 1 });
    const echo = h.send(ping);
    expect(quoteLookup(h, unreachable(ping, CLIENT))).toEqual({ id: echo.id, direction: 0 });

    const syn6 = tcpSegment("c", { from: "c", flags: "S", seq: 1000 }, true);
    const tcp6 = h.send(syn6);
    const tooBig = packet().ipv6({ src: "2001:db8::ff", dst: CLIENT6 }).icmpv6({ type: 2, rest: 1280, quote: syn6.build().subarray(0, 48) });
    expect(quoteLookup(h, tooBig)).toEqual({ id: tcp6.id, direction: 0 });
  });
});

describe("Tracker: memory", () => {
  it("keeps its ignored-segment cache small", () => {
    const table = new ConnectionTable({ capacity: 1 << 20 });
    const tracker = new Tracker(table);
    expect(tracker.memoryBytes() / table.capacity).toBeLessThan(0.1);
  });
});

// Packets of a different protocol than the entry never reach track(): the key includes it.
it("keys include the protocol (a UDP packet never reaches a TCP entry)", () => {
  const h = new Harness();
  const tcp = h.send(tcpSegment("c", { from: "c", flags: "S", seq: 1 }));
  const udp = h.send(packet().ipv4({ src: CLIENT, dst: SERVER }).udp({ sport: CPORT, dport: SPORT }));
  expect(udp.created).toBe(true);
  expect(udp.id).not.toBe(tcp.id);
  expect(h.table.protocolOf(udp.id)).toBe(IpProto.UDP);
});
