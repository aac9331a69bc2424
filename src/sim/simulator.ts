// The deterministic cluster simulator (after TigerBeetle's VOPR): the real engine,
// distribution and HyperSync code of N members, a distributor and a controller run on one
// virtual clock and one virtual network, with client and server hosts driving TCP, UDP and
// ICMP flows through them, while the scenario injects faults — loss, duplication, reordering,
// delay, partitions of the sync network, member crashes at any moment (mid-handshake,
// mid-bulk-transfer, during a join's fill), joins and drains. Everything derives from one
// seed: `runSimulation(seed)` twice gives the same trace hash and the same result.
//
//   hosts --host--> distributor --member--> member (ClusterNode) --member--> distributor --host--> hosts
//                        ^                    |  ^ sync (HyperSync) v
//                        |                    |  member <-> member
//                    controller <--control-->  members (heartbeats, epochs, fills)
//
// An optional driver (SimOptions.driver) runs a control loop beside the schedule, asking for
// joins and drains through the same path (autoscale-scenario.ts: the autoscaler).
//
// A run: traffic until scenario.trafficEndMs with the scheduled events; then wind-down (every
// flow ends or gives up), then faults off and partitions healed until the cluster converges,
// then the final checks. Bounded: WIND_DOWN_MAX_MS, SETTLE_MAX_MS and eventsMax.
//
// The core rules apply: no real time, no Math.random; run time is measured by the caller.

import { createEpochTable } from "../distribution/epoch.js";
import type { MemberWeight } from "../distribution/rendezvous.js";
import { Verdict } from "../engine/types.js";
import { Prng } from "../stdx/prng.js";
import { EventQueue } from "./clock.js";
import { clusterNodeFactory } from "./default-node.js";
import { SimController } from "./controller.js";
import { CLIENT_SITE, DISTRIBUTOR, SERVER_SITE, SimDistributor } from "./distributor.js";
import { Hosts } from "./hosts.js";
import { CHECK_INTERVAL_MS, CONFIRM_MS, InvariantChecker, keysHeld, keysOwned, QUIET_MS, type CrashRecord, type World } from "./invariants.js";
import { SimMember, type MemberObserver, type NodeFactory } from "./member.js";
import { cloneMessage, frameMessage, type SimMessage } from "./messages.js";
import { Network } from "./network.js";
import { memberName, scenarioOf, type Scenario, type ScenarioEvent, type ScenarioOptions } from "./scenario.js";

/** After traffic ends, flows get this long to finish or give up. */
export const WIND_DOWN_MAX_MS = 20_000;
/** After wind-down (faults off), the cluster gets this long to converge. */
export const SETTLE_MAX_MS = 10_000;
/** An event that cannot run yet (it would break the one-failure rule) is retried this often... */
const EVENT_RETRY_MS = 50;
/** ...this many times. */
const EVENT_RETRIES_MAX = 100;
const EVENTS_MAX_DEFAULT = 20_000_000;

/** Deliberate breakage, for tests that prove the invariant checker can fail. */
export type Sabotage =
  /** Every sync datagram is lost from the start: backups never receive anything. */
  "drop-sync";

/**
 * A control loop beside the scenario's schedule (the autoscaling mode, autoscale-scenario.ts):
 * tick() runs every intervalMs of virtual time while traffic flows, looks at the world, and
 * asks for membership events through the same path scheduled scenario events take.
 */
export interface SimDriver {
  readonly intervalMs: number;
  tick(ctx: SimDriverContext): void;
}

export interface SimDriverContext {
  readonly nowMs: number;
  readonly members: readonly SimMember[];
  readonly controller: SimController;
  /** Requests given to request() that have not yet run (or been skipped), as the tick began. */
  readonly requestsPending: number;
  /** Runs a scenario event (join, restart, drain; `member` names which) under the scenario rules, retried as they are. */
  request(e: ScenarioEvent): void;
  /** A line in the run's log. */
  note(text: string): void;
}

export interface SimOptions extends ScenarioOptions {
  /** Run this scenario instead of the seed's (its seed is still used for the other streams). */
  scenario?: Scenario;
  /** Adjust the seed's scenario before the run (named test scenarios). */
  modify?: (s: Scenario) => void;
  /** Makes each member's node; the default is the real ClusterNode. */
  nodeFactory?: NodeFactory;
  sabotage?: Sabotage;
  eventsMax?: number;
  /** Called with the simulated world after the final checks (tests and debugging look inside). */
  inspect?: (world: World) => void;
  /** A control loop run during traffic (none by default). */
  driver?: SimDriver;
}

export interface SimStats {
  virtualMs: number;
  events: number;
  members: number;
  bucketCount: number;
  lossRate: number;
  flows: number;
  flowsCompleted: number;
  flowsFailed: number;
  handshakesCompleted: number;
  failedBeforeHandshake: number;
  framesSent: number;
  retransmits: number;
  crashes: number;
  crashesDuringFill: number;
  joins: number;
  drains: number;
  partitions: number;
  failovers: number;
  aborted: number;
  eventsSkipped: number;
  /** Frames that reached a restarted member before its first epoch (dropped as not-owner). */
  framesBeforeEpoch: number;
  epochs: number;
  detectMsMax: number;
  reprotectMsMax: number;
  fillMsMax: number;
  syncDatagrams: number;
  corrections: number;
  networkLosses: number;
  stragglersProcessed: number;
  sameEpochOverlaps: number;
  windowMismatches: number;
  lostExcusedReplicationLag: number;
  lostExcusedDoubleFault: number;
  convergenceChecks: number;
}

export interface SimResult {
  seed: number;
  violations: string[];
  violationCount: number;
  /** Hash of every network delivery and the final state: equal for two runs of one seed. */
  traceHash: string;
  stats: SimStats;
  /** What happened, in order (scenario actions and controller decisions). */
  log: string[];
}

/** Hash seed of the cluster (flow hash, bucket table) derived from the run's seed. */
export function clusterSeedOf(seed: number): number {
  return Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) >>> 0;
}

export function runSimulation(seed: number, options: SimOptions = {}): SimResult {
  const scenario = options.scenario ?? scenarioOf(seed, options);
  if (options.modify) options.modify(scenario);
  return new Simulation(seed, scenario, options.nodeFactory ?? clusterNodeFactory, options).run();
}

class Simulation {
  private readonly queue = new EventQueue(0);
  private readonly network: Network<SimMessage>;
  private readonly distributor: SimDistributor;
  private readonly controller: SimController;
  private readonly members: SimMember[] = [];
  private readonly hosts: Hosts;
  private readonly checker: InvariantChecker;
  private readonly world: World;
  private readonly schedule: Prng;
  private readonly log: string[] = [];
  private readonly crashes: CrashRecord[] = [];
  private readonly counts = { crashes: 0, crashesDuringFill: 0, partitions: 0, eventsSkipped: 0, framesBeforeEpoch: 0 };
  private done = false;
  private requestsPending = 0;

  constructor(
    readonly seed: number,
    readonly scenario: Scenario,
    nodeFactory: NodeFactory,
    private readonly options: SimOptions,
  ) {
    const s = scenario;
    const hashSeed = clusterSeedOf(seed);
    this.schedule = new Prng(seed ^ 0x73636864);
    this.network = new Network<SimMessage>(this.queue, new Prng(seed ^ 0x6e657477), s.profile, cloneMessage);
    this.distributor = new SimDistributor(this.queue, this.network, hashSeed, s.bucketCount);

    this.hosts = new Hosts(this.queue, new Prng(seed ^ 0x686f7374), (flow, fromClient, frame) => {
      this.network.send(frameMessage(fromClient ? CLIENT_SITE : SERVER_SITE, DISTRIBUTOR, "host", "frame", frame, flow, fromClient, 0));
    });
    this.network.attach(CLIENT_SITE, (m) => this.hosts.deliver(m.flow, true, m.bytes!, m.processedAtMs));
    this.network.attach(SERVER_SITE, (m) => this.hosts.deliver(m.flow, false, m.bytes!, m.processedAtMs));
    for (const f of s.flows) this.hosts.addFlow(f);

    const clusterKey = new Uint8Array(32);
    const keyPrng = new Prng(seed ^ 0x6b657973);
    for (let i = 0; i < clusterKey.length; i++) clusterKey[i] = keyPrng.nextInt(256);
    const observer: MemberObserver = {
      processed: (member, flow, frame, verdict, dropReason, bucket, epoch) => {
        // A restarted member gets frames that were on their way to its previous life before
        // it has an epoch: it drops them (not-owner, counted), which is a loss in transit,
        // not a decision about the flow's state.
        if (epoch === 0) {
          this.counts.framesBeforeEpoch++;
          return;
        }
        if (verdict !== Verdict.FORWARD) this.hosts.memberDrop(flow, member, dropReason);
        this.checker.processed(member, flow, frame, bucket, dropReason, epoch);
      },
    };
    const total = s.initialMembers + s.spareMembers;
    const weights = new Map<string, number>();
    for (let i = 0; i < total; i++) {
      const name = memberName(i);
      weights.set(name, s.weights[i]!);
      const base = { clusterId: 7, clusterKey, hashSeed, capacity: s.capacity, ruleBase: null, session: 0 };
      this.members.push(new SimMember(name, i + 1, this.queue, this.network, nodeFactory, base, observer));
    }
    const initial: MemberWeight[] = [];
    for (let i = 0; i < s.initialMembers; i++) {
      initial.push({ id: memberName(i), weight: s.weights[i]! });
    }
    const p = s.profile;
    // SETTLE: longer than any member-link delay (base + jitter + reordering), see controller.ts.
    const settleMs = p.delayMs + p.jitterMs + p.reorderDelayMs + 1;
    this.controller = new SimController(
      this.queue,
      this.network,
      this.distributor,
      this.members,
      createEpochTable(initial, hashSeed, { bucketCount: s.bucketCount }),
      weights,
      settleMs,
    );
    for (let i = 0; i < s.initialMembers; i++) this.members[i]!.start();
    this.controller.start();
    this.world = {
      queue: this.queue,
      network: this.network,
      distributor: this.distributor,
      controller: this.controller,
      members: this.members,
      hosts: this.hosts,
      crashes: this.crashes,
      lastPartitionHealMs: 0,
      faultsClearedAtMs: -Infinity,
    };
    // Frames in flight across an epoch change reach the old owner up to one member-link delay
    // after the distributor's swap, and a correction adds two more hops; SETTLE covers the
    // members' switch.
    this.checker = new InvariantChecker(this.world, settleMs + 3 * (p.delayMs + p.jitterMs + p.reorderDelayMs) + 1);
    this.checker.indexFlows();
    if (options.sabotage === "drop-sync") this.network.blackholes.add("sync");
    for (const e of s.events) this.queue.at(e.atMs, `scenario-${e.kind}`, () => this.attempt(e, 0));
    this.queue.after(CHECK_INTERVAL_MS, "check", () => this.periodicCheck());
    this.queue.at(s.trafficEndMs, "wind-down", () => this.windDown(s.trafficEndMs));
    if (options.driver !== undefined) {
      const driver = options.driver;
      this.queue.after(driver.intervalMs, "driver", () => this.drive(driver));
    }
  }

  run(): SimResult {
    const eventsMax = this.options.eventsMax ?? EVENTS_MAX_DEFAULT;
    let events = 0;
    try {
      while (!this.done) {
        if (!this.queue.step()) break;
        if (++events >= eventsMax) {
          this.fatal(`run stopped after ${eventsMax} events: event budget exhausted`);
          break;
        }
      }
    } catch (error) {
      // An assertion (or any exception) inside the cluster code is a failure of this seed, as
      // in VOPR: it is reported with the seed that reproduces it, and a sweep goes on.
      const e = error instanceof Error ? error : new Error(String(error));
      const at = (e.stack ?? "").split("\n").find((line) => line.includes(" at ")) ?? "";
      this.fatal(`exception: ${e.name}: ${e.message} ${at.trim()}`);
    }
    return this.result();
  }

  private fatal(text: string): void {
    this.checker.violationCount++;
    this.checker.violations.push(`t=${this.queue.nowMs.toFixed(3)}ms ${text}`);
  }

  private note(text: string): void {
    this.log.push(`t=${this.queue.nowMs.toFixed(3)} ${text}`);
  }

  private periodicCheck(): void {
    if (this.done) return;
    this.checker.periodic();
    this.queue.after(CHECK_INTERVAL_MS, "check", () => this.periodicCheck());
  }

  // ---- the driver -----------------------------------------------------------------------------

  private drive(driver: SimDriver): void {
    if (this.done || this.queue.nowMs > this.scenario.trafficEndMs) return;
    driver.tick({
      nowMs: this.queue.nowMs,
      members: this.members,
      controller: this.controller,
      requestsPending: this.requestsPending,
      request: (e) => {
        this.requestsPending++;
        this.attempt(e, 0, true);
      },
      note: (text) => this.note(text),
    });
    this.queue.after(driver.intervalMs, "driver", () => this.drive(driver));
  }

  // ---- scenario events ----------------------------------------------------------------------

  /** `requested`: the driver asked for it (counted in requestsPending until it runs or is skipped). */
  private attempt(e: ScenarioEvent, tries: number, requested = false): void {
    if (this.done || this.queue.nowMs > this.scenario.trafficEndMs) {
      if (requested) this.requestsPending--;
      return;
    }
    if (this.execute(e)) {
      if (requested) this.requestsPending--;
      return;
    }
    if (tries >= EVENT_RETRIES_MAX) {
      this.counts.eventsSkipped++;
      this.note(`skipped ${e.kind}: never allowed`);
      if (requested) this.requestsPending--;
      return;
    }
    this.queue.after(EVENT_RETRY_MS, `retry-${e.kind}`, () => this.attempt(e, tries + 1, requested));
  }

  private tableMembers(): SimMember[] {
    const names = this.controller.current.table.members;
    return this.members.filter((m) => m.alive && names.includes(m.name));
  }

  /** A crash keeps the run at one failure at a time: converged, nothing else failing. */
  private crashAllowed(): boolean {
    return !this.controller.failureInProgress && this.checker.converged() && this.tableMembers().length >= 3;
  }

  private crashAllowedDuringFill(): boolean {
    // Converged except for the join itself: no failure, no partition, nothing undetected.
    if (this.controller.failureInProgress || this.network.partitionsActive > 0) return false;
    if (this.queue.nowMs - this.world.lastPartitionHealMs < QUIET_MS) return false;
    for (const m of this.members) {
      const status = this.controller.statusOf(m.name);
      const running = status === "up" || status === "joining" || status === "draining";
      if (running !== m.alive) return false;
    }
    return this.tableMembers().length >= 3;
  }

  /** Runs the event if the rules allow it now; false to retry later. */
  private execute(e: ScenarioEvent): boolean {
    switch (e.kind) {
      case "crash": {
        if (!this.crashAllowed()) return false;
        const victim = e.member !== undefined ? this.members.find((m) => m.name === e.member && m.alive) : this.schedule.pick(this.tableMembers());
        if (victim === undefined) return false;
        this.crash(victim, "crash");
        return true;
      }
      case "crash-during-fill":
        return this.crashDuringFill(e);
      case "restart": {
        const candidates = this.members.filter((m) => !m.alive && m.session > 0 && ["down", "left"].includes(this.controller.statusOf(m.name)));
        if (candidates.length === 0) return false;
        const m = e.member !== undefined ? candidates.find((x) => x.name === e.member) : this.schedule.pick(candidates);
        if (m === undefined) return false;
        m.start();
        this.note(`restart ${m.name} (session ${m.session}), join`);
        this.controller.requestJoin(m.name, this.scenario.weights[m.memberId - 1]!);
        return true;
      }
      case "join": {
        const spare = this.members.find((m) => m.session === 0 && (e.member === undefined || m.name === e.member));
        if (spare === undefined) return false;
        spare.start();
        this.note(`start spare ${spare.name}, join`);
        this.controller.requestJoin(spare.name, this.scenario.weights[spare.memberId - 1]!);
        return true;
      }
      case "drain": {
        if (this.controller.busy || !this.checker.converged()) return false;
        const candidates = this.tableMembers().filter((m) => this.controller.statusOf(m.name) === "up");
        if (candidates.length < 3) return false;
        const m = e.member !== undefined ? candidates.find((x) => x.name === e.member) : this.schedule.pick(candidates);
        if (m === undefined) return false;
        this.note(`drain ${m.name}`);
        this.controller.requestDrain(m.name);
        return true;
      }
      case "partition": {
        if (this.controller.failureInProgress || this.network.partitionsActive > 0 || !this.checker.converged()) return false;
        const live = this.tableMembers().map((m) => m.name);
        if (live.length < 2) return false;
        const shuffled = [...live];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.schedule.nextInt(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const cut = 1 + this.schedule.nextInt(shuffled.length - 1);
        const sideA = shuffled.slice(0, cut);
        const sideB = shuffled.slice(cut);
        const id = this.network.partition(sideA, sideB, ["sync"]);
        this.counts.partitions++;
        const durationMs = e.durationMs ?? 200;
        this.note(`partition sync network ${sideA.join(",")} | ${sideB.join(",")} for ${durationMs} ms`);
        this.queue.after(durationMs, "heal", () => {
          this.network.heal(id);
          this.world.lastPartitionHealMs = this.queue.nowMs;
          this.note(`partition healed`);
        });
        return true;
      }
    }
  }

  /** Starts a join (if none is filling) and crashes a member while its fill phase runs. */
  private crashDuringFill(e: ScenarioEvent): boolean {
    const t = this.controller.transition;
    if (t === null || t.kind !== "join") {
      if (this.controller.busy || !this.crashAllowed()) return false;
      const joiner = this.members.find((m) => !m.alive && (m.session === 0 || ["down", "left"].includes(this.controller.statusOf(m.name))));
      if (joiner === undefined) return false;
      joiner.start();
      this.note(`start ${joiner.name} to crash someone during its join`);
      this.controller.requestJoin(joiner.name, this.scenario.weights[joiner.memberId - 1]!);
    }
    const join = this.controller.transition;
    if (join === null || join.kind !== "join") return false;
    // Crash once the fill phase has reached the members (SETTLE), within a couple of
    // milliseconds: mid-bulk-transfer when there is anything to transfer.
    const offsetMs = e.offsetMs ?? this.schedule.nextFloat() * 2;
    const atMs = Math.max(this.queue.nowMs, join.startedMs + this.controller.settleMs + offsetMs);
    this.queue.at(atMs, "crash-during-fill", () => {
      if (this.controller.transition !== join || !this.crashAllowedDuringFill()) {
        this.note(`missed the fill phase of ${join.member}`);
        return;
      }
      // The joiner itself, or the owner of a bucket still being filled: then the fill cannot
      // finish, and the join must be abandoned and redone after the failover.
      let victim = this.members.find((m) => m.name === join.member)!;
      if (!e.joiner) {
        const pending = [...join.pending].sort();
        const bucket = Number(this.schedule.pick(pending).split("/")[0]);
        const owner = this.controller.roles(bucket).owner;
        victim = this.members.find((m) => m.name === owner)!;
      }
      this.counts.crashesDuringFill++;
      this.crash(victim, `crash during the fill phase of ${join.member}'s join (${join.pending.size} fills pending)`);
    });
    return true;
  }

  private crash(victim: SimMember, why: string): void {
    const node = victim.node!;
    this.crashes.push({
      member: victim.name,
      atMs: this.queue.nowMs,
      ownedKeys: keysOwned(node),
      heldElsewhere: keysHeld(this.members, victim.name),
    });
    this.counts.crashes++;
    this.note(`${why}: ${victim.name}`);
    victim.stop();
  }

  // ---- the end --------------------------------------------------------------------------------

  private windDown(sinceMs: number): void {
    if (this.hosts.activeFlows > 0 || this.hosts.stats.flowsStarted < this.hosts.flows.length) {
      if (this.queue.nowMs - sinceMs < WIND_DOWN_MAX_MS) {
        this.queue.after(100, "wind-down", () => this.windDown(sinceMs));
        return;
      }
      this.note(`wind-down limit: ${this.hosts.activeFlows} flows still running`);
    }
    this.note("traffic over: faults off, partitions healed");
    this.network.profile = { ...this.network.profile, lossRate: 0, duplicateRate: 0, reorderRate: 0 };
    this.world.faultsClearedAtMs = this.queue.nowMs;
    if (this.network.partitionsActive > 0) {
      this.network.healAll();
      this.world.lastPartitionHealMs = this.queue.nowMs;
    }
    this.settle(this.queue.nowMs);
  }

  private settle(sinceMs: number): void {
    const n = this.network.counters;
    // Quiet: nothing in flight, and no frame processed for the quiet period (the longer one
    // while records lost before the faults went off may still be retransmitted).
    const quiet = n.host.inFlight + n.member.inFlight === 0 && this.queue.nowMs - this.checker.lastProcessedMs >= this.checker.quietMs();
    if (!(quiet && this.checker.converged()) && this.queue.nowMs - sinceMs < SETTLE_MAX_MS) {
      this.queue.after(50, "settle", () => this.settle(sinceMs));
      return;
    }
    this.confirm(this.queue.nowMs);
  }

  /** Keeps looking for CONFIRM_MS, so that a protection finding at the end can be confirmed. */
  private confirm(sinceMs: number): void {
    this.checker.probeProtection();
    if (this.queue.nowMs - sinceMs < CONFIRM_MS + CHECK_INTERVAL_MS) {
      this.queue.after(CHECK_INTERVAL_MS * 5, "confirm", () => this.confirm(sinceMs));
      return;
    }
    this.checker.final();
    this.done = true;
    if (this.options.inspect) this.options.inspect(this.world);
  }

  private result(): SimResult {
    const c = this.controller.stats;
    const n = this.network.counters;
    const h = this.hosts.stats;
    const inv = this.checker.stats;
    let syncDatagrams = 0;
    for (const m of this.members) syncDatagrams += m.stats.syncSent;
    const max = (xs: number[]): number => (xs.length === 0 ? 0 : Math.max(...xs));
    const stats: SimStats = {
      virtualMs: Math.round(this.queue.nowMs),
      events: this.queue.executed,
      members: this.scenario.initialMembers,
      bucketCount: this.scenario.bucketCount,
      lossRate: this.scenario.profile.lossRate,
      flows: this.hosts.flows.length,
      flowsCompleted: h.flowsCompleted,
      flowsFailed: h.flowsFailed,
      handshakesCompleted: inv.handshakesCompleted,
      failedBeforeHandshake: inv.failedBeforeHandshake,
      framesSent: h.framesSent,
      retransmits: h.retransmits,
      crashes: this.counts.crashes,
      crashesDuringFill: this.counts.crashesDuringFill,
      joins: c.joins,
      drains: c.drains,
      partitions: this.counts.partitions,
      failovers: c.failures,
      aborted: c.aborted,
      eventsSkipped: this.counts.eventsSkipped,
      framesBeforeEpoch: this.counts.framesBeforeEpoch,
      epochs: c.epochsInstalled,
      detectMsMax: round3(max(c.detectMs)),
      reprotectMsMax: round3(max(c.reprotectMs)),
      fillMsMax: round3(max(c.fillMs)),
      syncDatagrams,
      corrections: this.distributor.stats.corrections,
      networkLosses: n.host.lostRandom + n.member.lostRandom + n.sync.lostRandom,
      stragglersProcessed: inv.stragglersProcessed,
      sameEpochOverlaps: inv.sameEpochOverlaps,
      windowMismatches: inv.windowMismatches,
      lostExcusedReplicationLag: inv.lostExcusedReplicationLag,
      lostExcusedDoubleFault: inv.lostExcusedDoubleFault,
      convergenceChecks: inv.convergenceChecks,
    };
    const traceHash = (this.network.traceHash ^ Math.imul(this.queue.executed, 0x9e3779b1) ^ h.framesSent) >>> 0;
    const log = [...this.log, ...this.controller.log.map((e) => `t=${e.timeMs.toFixed(3)} controller: ${e.text}`)];
    log.sort((a, b) => parseFloat(a.slice(2)) - parseFloat(b.slice(2)));
    return {
      seed: this.seed,
      violations: [...this.checker.violations],
      violationCount: this.checker.violationCount,
      traceHash: traceHash.toString(16).padStart(8, "0"),
      stats,
      log,
    };
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
