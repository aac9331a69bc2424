// The simulator's virtual network: named endpoints (distributor, controller, members, the
// client and server sites) exchange messages with a seeded delay, and faults from a
// FaultProfile — loss, duplication, reordering (extra delay on some messages), partitions —
// applied per link class:
//
//   host     sites <-> distributor (the tunnelled customer traffic)
//   member   distributor <-> members (frames to the owner, verdict-FORWARD frames back, corrections)
//   sync     member <-> member (HyperSync datagrams)
//   control  controller <-> members (heartbeats, epochs, fill reports). Reliable and in
//            order per pair, as the real control plane runs over TCP: delay only, and a
//            partition of the class cuts it.
//
// Every message that does not reach its handler ends in exactly one counted fault, so the
// simulator's packet accounting can add network losses up exactly:
//   sent + duplicated == delivered + lostRandom + lostPartition + lostDown + inFlight  (per class)
//
// Invariants kept: all randomness comes from the Prng given at construction, in the order of
// send() calls, so a seed replays exactly; a message is delivered at most once per copy.

import { assert } from "../stdx/assert.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import type { Prng } from "../stdx/prng.js";
import type { EventQueue } from "./clock.js";

export type LinkClass = "host" | "member" | "sync" | "control";
export const LINK_CLASSES: readonly LinkClass[] = ["host", "member", "sync", "control"];

export interface FaultProfile {
  /** Base one-way delay. */
  delayMs: number;
  /** Uniform extra delay in [0, jitterMs). */
  jitterMs: number;
  /** Probability that a message of a lossy class (host, member, sync) is lost. */
  lossRate: number;
  /** Probability that such a message is delivered twice (the copy gets its own delay). */
  duplicateRate: number;
  /** Probability that a message is held back by up to reorderDelayMs extra (reordering). */
  reorderRate: number;
  reorderDelayMs: number;
}

export const NO_FAULTS: FaultProfile = { delayMs: 0.2, jitterMs: 0.3, lossRate: 0, duplicateRate: 0, reorderRate: 0, reorderDelayMs: 0 };

export interface Envelope {
  from: string;
  to: string;
  linkClass: LinkClass;
  /** Bytes carried (frame or datagram), null for control messages; only its length is traced. */
  bytes: Uint8Array | null;
}

export class LinkCounters {
  sent = 0;
  delivered = 0;
  duplicated = 0;
  reordered = 0;
  lostRandom = 0;
  lostPartition = 0;
  /** Arrived at an endpoint that is down (a crashed member). */
  lostDown = 0;
  inFlight = 0;
}

type LossReason = "loss" | "partition" | "down";

interface Partition {
  id: number;
  sideA: ReadonlySet<string>;
  sideB: ReadonlySet<string>;
  classes: ReadonlySet<LinkClass>;
}

const CLASS_INDEX: Record<LinkClass, number> = { host: 0, member: 1, sync: 2, control: 3 };

export class Network<M extends Envelope> {
  readonly counters: Record<LinkClass, LinkCounters> = {
    host: new LinkCounters(),
    member: new LinkCounters(),
    sync: new LinkCounters(),
    control: new LinkCounters(),
  };
  /** Running hash of every delivery (time, endpoints, class, length): the run's trace. */
  traceHash = 0x1234567;
  profile: FaultProfile;

  private readonly handlers = new Map<string, (m: M) => void>();
  private readonly endpointIndex = new Map<string, number>();
  private readonly down = new Set<string>();
  private readonly partitions: Partition[] = [];
  private partitionSerial = 0;
  /** Classes whose every message is lost (sabotage in negative tests), counted as partition losses. */
  readonly blackholes = new Set<LinkClass>();
  /** Control links deliver in order: last scheduled arrival per "from>to" pair. */
  private readonly lastControlArrivalMs = new Map<string, number>();

  constructor(
    private readonly queue: EventQueue,
    private readonly prng: Prng,
    profile: FaultProfile,
    private readonly clone: (m: M) => M,
  ) {
    this.profile = profile;
  }

  attach(name: string, handler: (m: M) => void): void {
    this.handlers.set(name, handler);
    if (!this.endpointIndex.has(name)) this.endpointIndex.set(name, this.endpointIndex.size);
    this.down.delete(name);
  }

  /** A down endpoint (crashed process) loses what arrives for it, counted as lostDown. */
  setDown(name: string, isDown: boolean): void {
    if (isDown) this.down.add(name);
    else this.down.delete(name);
  }

  isDown(name: string): boolean {
    return this.down.has(name);
  }

  /** Cuts the given classes between every endpoint of sideA and every endpoint of sideB. */
  partition(sideA: readonly string[], sideB: readonly string[], classes: readonly LinkClass[]): number {
    assert(sideA.length > 0 && sideB.length > 0 && classes.length > 0, "empty partition");
    const id = ++this.partitionSerial;
    this.partitions.push({ id, sideA: new Set(sideA), sideB: new Set(sideB), classes: new Set(classes) });
    return id;
  }

  heal(id: number): void {
    const i = this.partitions.findIndex((p) => p.id === id);
    assert(i >= 0, "unknown partition");
    this.partitions.splice(i, 1);
  }

  healAll(): void {
    this.partitions.length = 0;
  }

  get partitionsActive(): number {
    return this.partitions.length;
  }

  isCut(from: string, to: string, linkClass: LinkClass): boolean {
    for (const p of this.partitions) {
      if (!p.classes.has(linkClass)) continue;
      if ((p.sideA.has(from) && p.sideB.has(to)) || (p.sideB.has(from) && p.sideA.has(to))) return true;
    }
    return false;
  }

  send(m: M): void {
    assert(this.handlers.has(m.to), `message to unknown endpoint ${m.to}`);
    const c = this.counters[m.linkClass];
    c.sent++;
    if (m.linkClass === "control") {
      this.schedule(m, this.controlArrivalMs(m));
      return;
    }
    const p = this.profile;
    if (p.lossRate > 0 && this.prng.chance(p.lossRate)) {
      this.lose(m, "loss");
      return;
    }
    this.schedule(m, this.queue.nowMs + this.delayMs(c));
    if (p.duplicateRate > 0 && this.prng.chance(p.duplicateRate)) {
      c.duplicated++;
      this.schedule(this.clone(m), this.queue.nowMs + this.delayMs(c));
    }
  }

  /** Per class: sent + duplicated must equal delivered + losses + inFlight. */
  balanced(linkClass: LinkClass): boolean {
    const c = this.counters[linkClass];
    return c.sent + c.duplicated === c.delivered + c.lostRandom + c.lostPartition + c.lostDown + c.inFlight;
  }

  private delayMs(c: LinkCounters): number {
    const p = this.profile;
    let d = p.delayMs + this.prng.nextFloat() * p.jitterMs;
    if (p.reorderRate > 0 && this.prng.chance(p.reorderRate)) {
      d += this.prng.nextFloat() * p.reorderDelayMs;
      c.reordered++;
    }
    return d;
  }

  private controlArrivalMs(m: M): number {
    const p = this.profile;
    const key = `${m.from}>${m.to}`;
    const arrival = Math.max(this.queue.nowMs + p.delayMs + this.prng.nextFloat() * p.jitterMs, this.lastControlArrivalMs.get(key) ?? 0);
    this.lastControlArrivalMs.set(key, arrival);
    return arrival;
  }

  private schedule(m: M, arrivalMs: number): void {
    const c = this.counters[m.linkClass];
    c.inFlight++;
    this.queue.at(arrivalMs, "net", () => {
      c.inFlight--;
      // Partitions and crashes are judged at arrival: a cut made while a message is on the
      // wire loses it, as a real link failure would.
      if (this.blackholes.has(m.linkClass) || this.isCut(m.from, m.to, m.linkClass)) {
        this.lose(m, "partition");
        return;
      }
      if (this.down.has(m.to)) {
        this.lose(m, "down");
        return;
      }
      c.delivered++;
      this.trace(m);
      this.handlers.get(m.to)!(m);
    });
  }

  private lose(m: M, reason: LossReason): void {
    const c = this.counters[m.linkClass];
    if (reason === "loss") c.lostRandom++;
    else if (reason === "partition") c.lostPartition++;
    else c.lostDown++;
  }

  private trace(m: M): void {
    let h = mixWord(this.traceHash, Math.round(this.queue.nowMs * 1000));
    h = mixWord(h, (this.endpointIndex.get(m.from)! << 16) | (this.endpointIndex.get(m.to)! << 2) | CLASS_INDEX[m.linkClass]);
    h = mixWord(h, m.bytes === null ? -1 : m.bytes.length);
    this.traceHash = fmix32(h);
  }
}
