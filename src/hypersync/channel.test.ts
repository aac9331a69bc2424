import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { ChannelEvent, PeerState, ReceiveResult, SyncChannel, type ChannelConfig, type ChannelPort } from "./channel.js";
import { DecodedRecord, RecordKind, encodeCreate, encodeDelete, encodeDigestList, encodeRefresh } from "./records.js";
import { MacKey } from "./datagram.js";
import {
  ACK_DELAY_MS,
  ACK_EVERY_DATAGRAMS,
  DATAGRAM_BYTES_MAX,
  DATAGRAM_SHORT_HEADER_BYTES,
  FLUSH_INTERVAL_MS,
  KEEPALIVE_INTERVAL_MS,
  MAC_BYTES,
  NACK_REPEAT_MS,
  PEER_DEAD_AFTER_MS,
  RTO_MAX_MS,
} from "./constants.js";
import { Prng } from "../stdx/prng.js";
import { TandemError } from "../stdx/errors.js";
import { ConnState, type ConnectionSnapshot } from "../engine/types.js";

const SEED = 42;
console.log(`channel tests seed=${SEED}`);

/** A datagram's type and DATA sequence number, read from either header form (datagram.ts). */
function typeOf(bytes: Uint8Array): number {
  return bytes[0]! & 7;
}
function seqOf(bytes: Uint8Array): number {
  const at = (bytes[0]! & 0x20) !== 0 ? 6 : 2;
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}
const KEY = new MacKey(Buffer.alloc(32, 0x11));
const CLUSTER = 7;

interface Faults {
  loss: number;
  duplicate: number;
  delayMinMs: number;
  delayMaxMs: number;
}
const PERFECT: Faults = { loss: 0, duplicate: 0, delayMinMs: 0.1, delayMaxMs: 0.1 };

/**
 * A seeded virtual network between two endpoints: loss, duplication, and a random delay per
 * copy (so datagrams reorder). Time is a number the test advances.
 */
class VirtualNet {
  faults: Faults;
  up = true;
  private inFlight: { atMs: number; order: number; to: 0 | 1; bytes: Uint8Array }[] = [];
  private order = 0;
  sentDatagrams = 0;
  maxLength = 0;

  constructor(
    private readonly prng: Prng,
    faults: Faults,
  ) {
    this.faults = faults;
  }

  send(to: 0 | 1, bytes: Uint8Array, length: number, nowMs: number): void {
    this.sentDatagrams++;
    this.maxLength = Math.max(this.maxLength, length);
    if (!this.up || this.prng.chance(this.faults.loss)) return;
    const copies = this.prng.chance(this.faults.duplicate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.faults.delayMinMs + this.prng.nextFloat() * (this.faults.delayMaxMs - this.faults.delayMinMs);
      this.inFlight.push({ atMs: nowMs + delay, order: this.order++, to, bytes: bytes.slice(0, length) });
    }
  }

  /** Datagrams due by nowMs, in arrival order. */
  due(nowMs: number): { to: 0 | 1; bytes: Uint8Array }[] {
    const ready = this.inFlight.filter((d) => d.atMs <= nowMs).sort((a, b) => a.atMs - b.atMs || a.order - b.order);
    this.inFlight = this.inFlight.filter((d) => d.atMs > nowMs);
    return ready;
  }

  nextArrivalMs(): number {
    let t = Infinity;
    for (const d of this.inFlight) t = Math.min(t, d.atMs);
    return t;
  }
}

/** One side: its channel, what it received, what happened to its peer. */
class Endpoint implements ChannelPort {
  channel!: SyncChannel;
  readonly delivered: number[] = [];
  readonly deliveredKinds: number[] = [];
  readonly events: number[] = [];
  nowMs = 0;

  constructor(
    private readonly net: VirtualNet,
    private readonly side: 0 | 1,
  ) {}

  send(bytes: Uint8Array, offset: number, length: number): void {
    expect(length).toBeLessThanOrEqual(DATAGRAM_BYTES_MAX);
    this.net.send(this.side === 0 ? 1 : 0, bytes.subarray(offset), length, this.nowMs);
  }
  deliver(record: DecodedRecord): void {
    this.deliveredKinds.push(record.kind);
    this.delivered.push(numberOf(record));
  }
  event(event: ChannelEvent): void {
    this.events.push(event);
  }
}

/** Test records number themselves: key records through their source port, the others through their bucket. */
function numberOf(record: DecodedRecord): number {
  return record.bucket >= 0 ? record.bucket : record.srcPort;
}

function config(localId: number, peerId: number, session: number, extra: Partial<ChannelConfig> = {}): ChannelConfig {
  return { clusterId: CLUSTER, localId, peerId, session, key: KEY, epoch: 1, minEpoch: 1, bucketOfRecord: numberOf, ...extra };
}

class Pair {
  readonly net: VirtualNet;
  readonly a: Endpoint;
  readonly b: Endpoint;
  nowMs = 0;
  private readonly scratch = new Uint8Array(256);
  private readonly conn: ConnectionSnapshot = {
    zone: 0,
    protocol: 6,
    src: new Uint8Array([10, 0, 0, 1]),
    dst: new Uint8Array([10, 0, 0, 2]),
    srcPort: 1000,
    dstPort: 80,
    state: ConnState.TCP_ESTABLISHED,
    expiresAtMs: 60_000,
    seenReply: true,
    assured: true,
    tcp: {
      original: { end: 1, maxEnd: 2, maxWindow: 3, scale: 0, flags: 0 },
      reply: { end: 1, maxEnd: 2, maxWindow: 3, scale: 0, flags: 0 },
    },
  };

  constructor(seed: number, faults: Faults, extraA: Partial<ChannelConfig> = {}, extraB: Partial<ChannelConfig> = {}) {
    this.net = new VirtualNet(new Prng(seed), faults);
    this.a = new Endpoint(this.net, 0);
    this.b = new Endpoint(this.net, 1);
    this.a.channel = new SyncChannel(config(1, 2, 100, extraA), this.a, 0);
    this.b.channel = new SyncChannel(config(2, 1, 200, extraB), this.b, 0);
  }

  endpoint(side: 0 | 1): Endpoint {
    return side === 0 ? this.a : this.b;
  }

  /** Enqueues a record numbered `n` (see numberOf) of a kind chosen by n. */
  enqueue(side: 0 | 1, n: number): void {
    const s = this.scratch;
    const conn = { ...this.conn, srcPort: n };
    let end: number;
    switch (n % 4) {
      case 0:
        end = encodeCreate(s, 0, s.length, conn, this.nowMs);
        break;
      case 1:
        end = encodeDelete(s, 0, s.length, conn);
        break;
      case 2:
        end = encodeRefresh(s, 0, s.length, conn, 5000);
        break;
      default:
        end = encodeDigestList(s, 0, s.length, RecordKind.DIGEST_REPLY, [n, n + 1], [1, 2], 0, 2);
    }
    const ep = this.endpoint(side);
    ep.nowMs = this.nowMs;
    ep.channel.enqueue(s, 0, end, this.nowMs);
  }

  /** Moves virtual time to `untilMs`, delivering datagrams and ticking both channels at every event. */
  run(untilMs: number): void {
    for (let guard = 0; guard < 1_000_000; guard++) {
      const next = Math.min(this.net.nextArrivalMs(), this.a.channel.nextDeadlineMs(), this.b.channel.nextDeadlineMs(), untilMs);
      this.nowMs = Math.max(this.nowMs, next);
      this.a.nowMs = this.b.nowMs = this.nowMs;
      for (const d of this.net.due(this.nowMs)) this.endpoint(d.to).channel.receive(d.bytes, d.bytes.length, this.nowMs);
      this.a.channel.tick(this.nowMs);
      this.b.channel.tick(this.nowMs);
      if (this.nowMs >= untilMs) return;
    }
    throw new Error("simulation did not reach its end time");
  }
}

function range(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

describe("SyncChannel over a perfect network", () => {
  it("delivers records in order, batched into full datagrams, and ACKs sparingly", () => {
    const pair = new Pair(1, PERFECT);
    for (let n = 0; n < 2000; n++) pair.enqueue(0, n);
    pair.run(50 + 2 * ACK_DELAY_MS);
    const a = pair.a.channel.counters;
    const b = pair.b.channel.counters;
    expect(pair.b.delivered).toEqual(range(2000));
    expect(pair.net.maxLength).toBeLessThanOrEqual(DATAGRAM_BYTES_MAX);
    expect(pair.net.maxLength).toBeGreaterThan(DATAGRAM_BYTES_MAX - 100);
    expect(a.resent).toBe(0);
    expect(b.nacksSent).toBe(0);
    expect(b.duplicates + b.outOfOrder + b.malformed + b.badMac).toBe(0);
    expect(a.acked).toBe(a.sent);
    expect(pair.a.channel.inFlight).toBe(0);
    // One ACK per ACK_EVERY_DATAGRAMS when the datagrams come in a burst, plus the tail.
    expect(b.acksSent).toBeLessThanOrEqual(Math.ceil(a.sent / ACK_EVERY_DATAGRAMS) + 2);
    expect(a.rttMs).toBeGreaterThan(0);
    expect(a.rttMs).toBeLessThan(ACK_DELAY_MS + 2);
  });

  it("sends an open datagram within FLUSH_INTERVAL_MS of its first record", () => {
    const pair = new Pair(1, PERFECT);
    pair.nowMs = 10;
    pair.run(10);
    pair.enqueue(0, 0);
    expect(pair.a.channel.nextDeadlineMs()).toBe(10 + FLUSH_INTERVAL_MS);
    pair.a.channel.tick(10.5);
    expect(pair.a.channel.counters.sent).toBe(0);
    pair.run(10 + FLUSH_INTERVAL_MS);
    expect(pair.a.channel.counters.sent).toBe(1);
    pair.run(12);
    expect(pair.b.delivered).toEqual([0]);
  });

  it("flush() seals at once", () => {
    const pair = new Pair(1, PERFECT);
    pair.enqueue(0, 0);
    pair.a.channel.flush(0);
    expect(pair.a.channel.counters.sent).toBe(1);
  });
});

describe("SyncChannel over a lossy, duplicating, reordering network", () => {
  it("delivers every record exactly once and in order, both ways (30% loss)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x7fffffff }), (seed) => {
        const pair = new Pair(seed, { loss: 0.3, duplicate: 0.2, delayMinMs: 0.05, delayMaxMs: 2 });
        const workload = new Prng(seed ^ 0x5eed);
        const total = [0, 0];
        // 300 ms of traffic in bursts, then quiet time to recover.
        for (let t = 0; t < 300; t += 0.5) {
          pair.run(t);
          for (const side of [0, 1] as const) {
            const burst = workload.nextInt(side === 0 ? 8 : 2);
            for (let i = 0; i < burst; i++) pair.enqueue(side, total[side]++);
          }
        }
        pair.run(2000);
        for (const side of [0, 1] as const) {
          const receiver = pair.endpoint(side === 0 ? 1 : 0);
          const sender = pair.endpoint(side).channel.counters;
          expect(sender.queueFullEvents).toBe(0);
          expect(receiver.delivered).toEqual(range(total[side]!));
          expect(pair.endpoint(side).channel.inFlight).toBe(0);
          expect(sender.resent).toBeGreaterThan(0);
        }
        const a = pair.a.channel.counters;
        const b = pair.b.channel.counters;
        console.log(
          `seed ${seed}: a->b records ${total[0]} datagrams ${a.sent} resent ${a.resent} timeouts ${a.timeouts} | ` +
            `b acks ${b.acksSent} nacks ${b.nacksSent} dups ${b.duplicates} ooo ${b.outOfOrder} | rtt ${a.rttMs.toFixed(2)} ms`,
        );
        expect(b.duplicates).toBeGreaterThan(0);
        expect(b.outOfOrder).toBeGreaterThan(0);
        expect(b.nacksSent).toBeGreaterThan(0);
        expect(b.badMac + b.malformed + b.beyondWindow + b.skipped).toBe(0);
        // Repair costs stay proportionate: at 30% loss the ideal is 0.43 retransmissions per datagram.
        expect(a.resent).toBeLessThan(a.sent);
        // At most one ACK per DATA datagram arriving, at most one NACK per datagram revealing a hole
        // or per NACK_REPEAT_MS of a persisting one.
        expect(b.acksSent).toBeLessThanOrEqual(b.received + b.duplicates);
        expect(b.nacksSent).toBeLessThanOrEqual(b.outOfOrder + pair.nowMs / NACK_REPEAT_MS);
        expect(a.rttMs).toBeGreaterThan(0.1);
        expect(a.rttMs).toBeLessThan(ACK_DELAY_MS + 10);
        expect(pair.a.events.filter((e) => e === ChannelEvent.PEER_DEAD)).toEqual([]);
      }),
      { seed: SEED, numRuns: 12 },
    );
  });

  it("repairs a single lost datagram with one NACK and one retransmission, before any RTO", () => {
    const pair = new Pair(1, PERFECT);
    let dropped = false;
    const send = pair.net.send.bind(pair.net);
    pair.net.send = (to, bytes, length, nowMs) => {
      // Drop the second DATA datagram from a, once.
      if (!dropped && to === 1 && typeOf(bytes) === 1 && seqOf(bytes) === 2) {
        dropped = true;
        return;
      }
      send(to, bytes, length, nowMs);
    };
    for (let n = 0; n < 200; n++) pair.enqueue(0, n);
    pair.run(30);
    expect(dropped).toBe(true);
    expect(pair.b.delivered).toEqual(range(200));
    expect(pair.b.channel.counters.nacksSent).toBe(1);
    expect(pair.a.channel.counters.nacksReceived).toBe(1);
    expect(pair.a.channel.counters.resent).toBe(1);
    expect(pair.a.channel.counters.timeouts).toBe(0);
  });

  it("recovers a lost tail by retransmission timeout", () => {
    const pair = new Pair(1, PERFECT);
    pair.net.up = false;
    pair.enqueue(0, 0);
    pair.run(1);
    expect(pair.a.channel.counters.sent).toBe(1);
    pair.net.up = true;
    pair.run(2 * RTO_MAX_MS);
    expect(pair.b.delivered).toEqual([0]);
    expect(pair.a.channel.counters.timeouts).toBeGreaterThan(0);
    expect(pair.a.channel.inFlight).toBe(0);
  });

  it("reports the age of the oldest unacknowledged datagram as sync lag, 0 once acknowledged", () => {
    const pair = new Pair(1, PERFECT);
    expect(pair.a.channel.oldestUnackedAgeMs(pair.nowMs)).toBe(0);
    pair.net.up = false;
    pair.enqueue(0, 0);
    pair.run(1);
    const sentAt = pair.nowMs;
    pair.run(50);
    expect(pair.a.channel.oldestUnackedAgeMs(pair.nowMs)).toBeGreaterThanOrEqual(pair.nowMs - sentAt);
    expect(pair.a.channel.oldestUnackedAgeMs(pair.nowMs)).toBeGreaterThan(0);
    pair.net.up = true;
    pair.run(2 * RTO_MAX_MS);
    expect(pair.a.channel.inFlight).toBe(0);
    expect(pair.a.channel.oldestUnackedAgeMs(pair.nowMs)).toBe(0);
  });
});

describe("SyncChannel bounded resend queue", () => {
  it("abandons the oldest datagrams into needsResync instead of losing them silently", () => {
    const queue = 4;
    const pair = new Pair(1, PERFECT, { resendQueueDatagrams: queue });
    pair.run(KEEPALIVE_INTERVAL_MS + 1); // the two have met
    expect(pair.b.channel.peerState).toBe(PeerState.UP);
    pair.net.up = false;
    // 40 datagrams of 10 records each (flushed per datagram), buckets numbered by record.
    for (let d = 0; d < 40; d++) {
      for (let i = 0; i < 10; i++) pair.enqueue(0, d * 10 + i * 4); // CREATE records only (n % 4 === 0)
      pair.a.channel.flush(pair.nowMs);
    }
    const a = pair.a.channel;
    expect(a.counters.queueFullEvents).toBe(40 - queue);
    expect(a.inFlight).toBe(queue);
    expect(a.counters.resyncs).toBe(a.needsResync.size);
    expect(pair.a.events).toContain(ChannelEvent.RESYNC_NEEDED);
    // Exactly the buckets of the abandoned datagrams await a resync.
    const abandoned = range(40 - queue).flatMap((d) => range(10).map((i) => d * 10 + i * 4));
    expect([...a.needsResync].sort((x, y) => x - y)).toEqual([...new Set(abandoned)].sort((x, y) => x - y));

    // The network heals: the receiver skips what the sender abandoned and gets the rest in order.
    pair.net.up = true;
    pair.run(pair.nowMs + 4 * RTO_MAX_MS);
    const kept = range(queue, 40 - queue).flatMap((d) => range(10).map((i) => d * 10 + i * 4));
    expect(pair.b.delivered).toEqual(kept);
    expect(pair.b.channel.counters.skipped).toBe(40 - queue);
    // Every record either arrived or has its bucket queued for resync.
    for (let d = 0; d < 40; d++) {
      for (let i = 0; i < 10; i++) {
        const n = d * 10 + i * 4;
        expect(pair.b.delivered.includes(n) || a.needsResync.has(n)).toBe(true);
      }
    }
  });

  it("counts control records of abandoned datagrams (they are the agent's to retry)", () => {
    const pair = new Pair(1, PERFECT, { resendQueueDatagrams: 2 });
    pair.net.up = false;
    for (let d = 0; d < 3; d++) {
      pair.enqueue(0, 3 + d * 4); // DIGEST_REPLY
      pair.a.channel.flush(0);
    }
    expect(pair.a.channel.counters.queueFullEvents).toBe(1);
    expect(pair.a.channel.counters.controlRecordsAbandoned).toBe(1);
    expect(pair.a.channel.needsResync.size).toBe(0);
  });
});

describe("SyncChannel liveness", () => {
  it("keeps an idle channel alive with keep-alives, and a busy one without", () => {
    const pair = new Pair(1, PERFECT);
    const spanMs = 10 * KEEPALIVE_INTERVAL_MS;
    pair.run(spanMs);
    const a = pair.a.channel;
    expect(a.peerState).toBe(PeerState.UP);
    expect(a.counters.keepalivesSent).toBeGreaterThanOrEqual(spanMs / KEEPALIVE_INTERVAL_MS - 2);
    expect(a.counters.keepalivesSent).toBeLessThanOrEqual(spanMs / KEEPALIVE_INTERVAL_MS + 1);
    expect(pair.a.events).toEqual([ChannelEvent.PEER_UP]);
    // Records in both directions more often than the interval: no keep-alive at all.
    const before = [pair.a.channel.counters.keepalivesSent, pair.b.channel.counters.keepalivesSent];
    for (let n = 0; n < 40; n++) {
      pair.enqueue(0, n);
      pair.enqueue(1, n);
      pair.run(pair.nowMs + KEEPALIVE_INTERVAL_MS / 4);
    }
    expect([pair.a.channel.counters.keepalivesSent, pair.b.channel.counters.keepalivesSent]).toEqual(before);
  });

  it("goes to short headers once both sides know each other's session; a pure ACK costs a short header and the tag", () => {
    const pair = new Pair(1, PERFECT);
    const sizes: number[] = [];
    const send = pair.net.send.bind(pair.net);
    pair.net.send = (to, bytes, length, nowMs) => {
      if (to === 0) sizes.push(length);
      send(to, bytes, length, nowMs);
    };
    for (let n = 0; n < 3; n++) {
      pair.enqueue(0, n * 4);
      pair.run(pair.nowMs + 2 * ACK_DELAY_MS);
    }
    const b = pair.b.channel.counters;
    expect(b.acksSent).toBe(3);
    // b's hello (its first tick) is long: a has not heard of b yet. a's first DATA names b's
    // session, so every ACK of b is short.
    expect(b.longHeaders).toBe(1);
    expect(sizes.slice(1)).toEqual([18, 18, 18]);
    expect(DATAGRAM_SHORT_HEADER_BYTES + MAC_BYTES).toBe(18);
    expect(pair.a.channel.peerConfirmed && pair.b.channel.peerConfirmed).toBe(true);
  });

  it("an ACK rides on the receiver's own records when it has some within ACK_DELAY_MS", () => {
    const pair = new Pair(1, PERFECT);
    pair.run(1);
    for (let n = 0; n < 20; n++) {
      pair.enqueue(0, n * 4);
      pair.run(pair.nowMs + ACK_DELAY_MS / 4);
      pair.enqueue(1, n * 4);
      pair.run(pair.nowMs + ACK_DELAY_MS / 4);
    }
    pair.run(pair.nowMs + 4 * ACK_DELAY_MS);
    // Only the last datagram each way may need an ACK of its own.
    expect(pair.a.channel.counters.acksSent + pair.b.channel.counters.acksSent).toBeLessThanOrEqual(2);
    expect(pair.a.channel.inFlight + pair.b.channel.inFlight).toBe(0);
  });

  it("declares a silent peer dead after PEER_DEAD_AFTER_MS, and up again when it speaks", () => {
    const pair = new Pair(1, PERFECT);
    pair.run(2 * KEEPALIVE_INTERVAL_MS); // the two have met
    pair.net.up = false;
    const cutMs = pair.nowMs;
    pair.run(cutMs + PEER_DEAD_AFTER_MS - KEEPALIVE_INTERVAL_MS - 1);
    expect(pair.a.channel.peerState).toBe(PeerState.UP);
    pair.run(cutMs + PEER_DEAD_AFTER_MS + 1);
    expect(pair.a.channel.peerState).toBe(PeerState.DEAD);
    expect(pair.a.events).toEqual([ChannelEvent.PEER_UP, ChannelEvent.PEER_DEAD]);
    expect(pair.a.channel.counters.peerDeaths).toBe(1);
    pair.net.up = true;
    pair.run(cutMs + PEER_DEAD_AFTER_MS + 2 * KEEPALIVE_INTERVAL_MS);
    expect(pair.a.channel.peerState).toBe(PeerState.UP);
    expect(pair.a.events).toEqual([ChannelEvent.PEER_UP, ChannelEvent.PEER_DEAD, ChannelEvent.PEER_UP]);
  });

  it("notices a restarted peer (new session) and refuses its old session", () => {
    const pair = new Pair(1, PERFECT);
    // Capture old datagrams of b for replays: its first (long header), and a later short one.
    let oldLong: Uint8Array | null = null;
    let oldShort: Uint8Array | null = null;
    const send = pair.net.send.bind(pair.net);
    pair.net.send = (to, bytes, length, nowMs) => {
      if (to === 0 && (bytes[0]! & 0x20) !== 0) oldLong ??= bytes.slice(0, length);
      if (to === 0 && (bytes[0]! & 0x20) === 0) oldShort ??= bytes.slice(0, length);
      send(to, bytes, length, nowMs);
    };
    for (let n = 0; n < 50; n++) pair.enqueue(1, n * 4);
    pair.run(20);
    expect(pair.a.delivered.length).toBe(50);
    pair.enqueue(1, 200);
    pair.run(100);
    pair.enqueue(1, 204);
    pair.run(200);
    expect(oldLong).not.toBeNull();
    expect(oldShort).not.toBeNull();
    // b restarts: a new instance, a newer session, sequence numbers from 1 again.
    pair.b.channel = new SyncChannel(config(2, 1, 201), pair.b, pair.nowMs);
    pair.a.delivered.length = 0;
    for (let n = 0; n < 10; n++) pair.enqueue(1, n * 4);
    pair.run(pair.nowMs + 200);
    expect(pair.a.events).toContain(ChannelEvent.PEER_RESTARTED);
    expect(pair.a.channel.counters.peerRestarts).toBe(1);
    expect(pair.a.delivered).toEqual(range(10).map((n) => n * 4));
    expect(pair.a.channel.receive(oldLong!, oldLong!.length, pair.nowMs)).toBe(ReceiveResult.STALE_SESSION);
    expect(pair.a.channel.counters.staleSession).toBe(1);
    // A short header names no session: it is checked against b's new one, and fails.
    expect(pair.a.channel.receive(oldShort!, oldShort!.length, pair.nowMs)).toBe(ReceiveResult.BAD_MAC);
    // And a's records still reach the new b.
    pair.enqueue(0, 8);
    pair.run(pair.nowMs + 250);
    expect(pair.b.delivered).toEqual([8]);
  });
});

describe("SyncChannel authentication and epochs", () => {
  it("drops and counts forged, stale-epoch and misaddressed datagrams", () => {
    const pair = new Pair(1, PERFECT);
    let captured: Uint8Array | null = null;
    const send = pair.net.send.bind(pair.net);
    pair.net.send = (to, bytes, length, nowMs) => {
      if (to === 1 && typeOf(bytes) === 1 && captured === null) captured = bytes.slice(0, length);
      send(to, bytes, length, nowMs);
    };
    pair.enqueue(0, 0);
    pair.run(5);
    expect(pair.b.delivered).toEqual([0]);
    const b = pair.b.channel;
    const forged = captured!.slice();
    forged[forged.length - 12] ^= 0xff; // a payload byte
    expect(b.receive(forged, forged.length, pair.nowMs)).toBe(ReceiveResult.BAD_MAC);
    expect(b.counters.badMac).toBe(1);
    // Replaying the authentic datagram is a duplicate, never a second delivery.
    expect(b.receive(captured!, captured!.length, pair.nowMs)).toBe(ReceiveResult.OK);
    expect(b.counters.duplicates).toBe(1);
    expect(pair.b.delivered).toEqual([0]);
    // After an epoch change, datagrams stamped with the old epoch are stale.
    b.setEpoch(2, 2);
    expect(b.receive(captured!, captured!.length, pair.nowMs)).toBe(ReceiveResult.STALE_EPOCH);
    expect(b.counters.staleEpoch).toBe(1);
    // a's first datagram (long header: a did not know b's session yet) cannot be replayed into a
    // third member's channel with a...
    const third = new Endpoint(pair.net, 0);
    third.channel = new SyncChannel(config(3, 1, 300), third, pair.nowMs);
    expect(third.channel.receive(captured!, captured!.length, pair.nowMs)).toBe(ReceiveResult.MISADDRESSED);
    expect(third.delivered).toEqual([]);
    // ...nor accepted by a channel that expects another sender.
    const fromB = new Endpoint(pair.net, 0);
    fromB.channel = new SyncChannel(config(1, 3, 400), fromB, pair.nowMs);
    expect(fromB.channel.receive(captured!, captured!.length, pair.nowMs)).toBe(ReceiveResult.WRONG_PEER);
  });

  it("retransmissions are resealed with the current epoch, so an epoch change does not strand them", () => {
    const pair = new Pair(1, PERFECT);
    pair.run(1);
    pair.net.up = false;
    for (let n = 0; n < 30; n++) pair.enqueue(0, n * 4);
    pair.run(5);
    pair.a.channel.setEpoch(2, 2);
    pair.b.channel.setEpoch(2, 2);
    pair.net.up = true;
    pair.run(300);
    expect(pair.b.delivered).toEqual(range(30).map((n) => n * 4));
    expect(pair.b.channel.counters.staleEpoch).toBe(0);
  });
});

// Version 2 is the only wire format today, so a channel reading {2, 3} stands for a newer
// build, and its "version 3" is version 2's layout: the machinery is what is under test (the
// send version, the range check, the header form, the short form's implied version).
describe("SyncChannel protocol versions", () => {
  const V2_V3 = { protocolVersions: { min: 2, max: 3 } };
  const V2_ONLY = { protocolVersions: { min: 2, max: 2 } };

  function traffic(pair: Pair, from: number, count: number): void {
    for (let n = from; n < from + count; n++) {
      pair.enqueue(0, n * 4);
      pair.enqueue(1, n * 4);
    }
    pair.run(pair.nowMs + 2 * ACK_DELAY_MS);
  }

  it("a channel reading {2,3} and one reading {2,2} sync both ways at 2, the shared min, in short headers", () => {
    const pair = new Pair(1, PERFECT, V2_V3, V2_ONLY);
    expect(pair.a.channel.protocolVersion).toBe(2);
    traffic(pair, 0, 20);
    expect(pair.b.delivered).toEqual(range(20).map((n) => n * 4));
    expect(pair.a.delivered).toEqual(range(20).map((n) => n * 4));
    for (const side of [pair.a, pair.b]) {
      expect(side.channel.peerVersion).toBe(2);
      expect(side.channel.counters.badVersion + side.channel.counters.badMac).toBe(0);
      expect(side.channel.counters.shortHeaders).toBeGreaterThan(0);
    }
  });

  it("told to send 3, the {2,3} channel is refused by the {2,2} one (bad-version, long headers); the other way still works", () => {
    const pair = new Pair(2, PERFECT, V2_V3, V2_ONLY);
    traffic(pair, 0, 5);
    pair.a.channel.setProtocolVersion(3);
    const longBefore = pair.a.channel.counters.longHeaders;
    const shortBefore = pair.a.channel.counters.shortHeaders;
    traffic(pair, 5, 5);
    const b = pair.b.channel.counters;
    // Nothing of a's after the change arrives; b names the reason for each datagram.
    expect(pair.b.delivered).toEqual(range(5).map((n) => n * 4));
    expect(b.badVersion).toBeGreaterThan(0);
    expect(b.badMac).toBe(0);
    // a sends the long form (b does not send a's version), so b sees the version it refuses.
    expect(pair.a.channel.counters.longHeaders).toBeGreaterThan(longBefore);
    expect(pair.a.channel.counters.shortHeaders).toBe(shortBefore);
    // b's version 2 is still in a's range.
    expect(pair.a.delivered).toEqual(range(10).map((n) => n * 4));
    // Back to 2: the retransmissions are resealed at 2 and everything arrives.
    pair.a.channel.setProtocolVersion(2);
    pair.run(pair.nowMs + 1000);
    expect(pair.b.delivered).toEqual(range(10).map((n) => n * 4));
  });

  it("two {2,3} channels move from 2 to 3 one after the other, under loss and reordering, without losing a record", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x7fffffff }), fc.integer({ min: 20, max: 150 }), fc.integer({ min: 0, max: 100 }), (seed, switchAMs, laterMs) => {
        const pair = new Pair(seed, { loss: 0.2, duplicate: 0.1, delayMinMs: 0.05, delayMaxMs: 2 }, V2_V3, V2_V3);
        const workload = new Prng(seed ^ 0x7e55);
        const total = [0, 0];
        for (let t = 0; t < 300; t += 0.5) {
          pair.run(t);
          if (t === switchAMs) pair.a.channel.setProtocolVersion(3);
          if (t === switchAMs + laterMs) pair.b.channel.setProtocolVersion(3);
          for (const side of [0, 1] as const) {
            const burst = workload.nextInt(3);
            for (let i = 0; i < burst; i++) pair.enqueue(side, total[side]++);
          }
        }
        pair.run(2000);
        expect(pair.b.delivered).toEqual(range(total[0]!));
        expect(pair.a.delivered).toEqual(range(total[1]!));
        for (const side of [pair.a, pair.b]) {
          const c = side.channel.counters;
          expect(c.badVersion + c.badMac + c.malformed).toBe(0);
          expect(side.channel.peerVersion).toBe(3);
        }
        // Both at 3 again: back to short headers.
        const shortBefore = pair.a.channel.counters.shortHeaders;
        pair.enqueue(0, total[0]!);
        pair.run(pair.nowMs + 10);
        expect(pair.a.channel.counters.shortHeaders).toBeGreaterThan(shortBefore);
      }),
      { seed: SEED, numRuns: 10 },
    );
  });

  it("refuses a send version outside its range with an operating error, and keeps the one it has", () => {
    const pair = new Pair(3, PERFECT, V2_V3, V2_ONLY);
    expect(() => pair.b.channel.setProtocolVersion(3)).toThrow(TandemError);
    expect(() => pair.a.channel.setProtocolVersion(4)).toThrow(TandemError);
    expect(() => pair.a.channel.setProtocolVersion(1)).toThrow(TandemError);
    expect(() => pair.a.channel.setProtocolVersion(2.5)).toThrow(TandemError);
    expect(pair.a.channel.protocolVersion).toBe(2);
    expect(pair.b.channel.protocolVersion).toBe(2);
    // A bad range or a send version outside it is a programmer error.
    expect(() => new SyncChannel(config(1, 2, 5, { protocolVersions: { min: 3, max: 2 } }), pair.a, 0)).toThrow(/protocol version range/);
    expect(() => new SyncChannel(config(1, 2, 5, { protocolVersions: { min: 0, max: 2 } }), pair.a, 0)).toThrow(/protocol version range/);
    expect(() => new SyncChannel(config(1, 2, 5, { protocolVersions: { min: 2, max: 256 } }), pair.a, 0)).toThrow(/protocol version range/);
    expect(() => new SyncChannel(config(1, 2, 5, { ...V2_ONLY, protocolVersion: 3 }), pair.a, 0)).toThrow(/send version/);
  });
});
