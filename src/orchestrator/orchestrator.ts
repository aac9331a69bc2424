// The control plane: the persisted model (model.ts), the soft state beside it (heartbeats,
// flap damping, fill confirmations, load reports), the command queue, and read-only views
// for the API. Synchronous and I/O-free: the runtime owns the store, the sockets and the
// clocks, and drives it:
//
//   cp = new ControlPlane(await store.load(), options)
//   for (const e of cp.startupEffects()) perform(e)        send every group's table and config
//   step = cp.prepare(command, input, ctx)                 pure: mutation computed, model unchanged
//   rev  = await store.commit(step.mutation)               durable (audit record included)
//   cp.confirm(step, rev)  |  cp.abort(step) on failure    only now does the model change
//   answer the caller (step.ok ? step.result : step.error); then perform(step.effects)
//   every few ms: step = cp.tick(clock) -> commit/confirm it the same way (null: nothing to do)
//   member traffic: cp.heartbeat(report, nowMs), cp.fillReport(report, nowMs) (soft state only)
//
// Invariants kept: at most one step outstanding (the queue asserts); confirm applies exactly
// the model the step's mutation describes, so a restart from the store gives the same model
// (documents.ts); model invariants are checked after every confirm (assertions, on in
// production); soft state is never persisted and is rebuilt with a grace period after a
// restart (members get downAfterMs to be heard, fills are reported again, timers restart).

import { bucketOf } from "../distribution/bucket-hash.js";
import { backupOf, createEpochTable, loadPerMember, ownerOf, type EpochTable, type MemberLoad } from "../distribution/epoch.js";
import type { MemberWeight } from "../distribution/rendezvous.js";
import { planWeights } from "../distribution/transition.js";
import { parseIp } from "../packet/addr.js";
import { flowHashOfKey } from "../packet/flow-hash.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { Prng } from "../stdx/prng.js";
import type { Document, Mutation, StoreSnapshot } from "../store/store.js";
import { planApply, runCommand, groupSummary, type CommandContext, type CommandEnv, type Effect, type Observations, type SoftUpdate } from "./commands.js";
import { documentsOf, modelFromSnapshot, type ModelCollection } from "./documents.js";
import type { Detection } from "./failure-detection.js";
import { CapacityEstimator, type CapacityEstimate } from "./capacity-weights.js";
import { HealthTracker, type HealthInput } from "./health.js";
import {
  capacityOfMemory,
  changesOfGroup,
  checkModelInvariants,
  compareIds,
  membersOfGroup,
  weightOf,
  WATCHED_STATES,
  type Appliance,
  type ChangeKind,
  type ControlModel,
  type MemberState,
  type PendingChange,
  type SecurityGroup,
  type TransitionKind,
} from "./model.js";
import { CommandQueue } from "./queue.js";
import { awaitedPhaseOf, currentTableOf, fillMapOf, fillPairCount, FillProgress, planOf, TRANSITION_DEFAULTS } from "./transitions.js";

export interface ControlPlaneOptions {
  health?: HealthInput;
  /** A fill phase must complete within this long (default TRANSITION_DEFAULTS.fillTimeoutMs). */
  fillTimeoutMs?: number;
  /** Bound of the queue of waiting requests. */
  queueWaitingMax?: number;
  /**
   * Where new groups' seeds come from when sg.create gives none. The runtime passes a source
   * seeded from a secure random number (the seed keys the flow hash); the default is a Prng
   * seeded from the snapshot revision (deterministic: for tests and the simulator).
   */
  seedSource?: Prng | (() => number);
}

/** A command prepared against the current model, waiting for its store commit. */
export interface PreparedStep {
  readonly seq: number;
  readonly command: string;
  readonly actor: string;
  readonly ok: boolean;
  /** The answer for the caller, once confirmed (ok only). */
  readonly result: unknown;
  /** Why it was refused (not ok); the mutation then holds only the audit record. */
  readonly error: TandemError | null;
  /** Commit this, then confirm (or abort on failure). */
  readonly mutation: Mutation;
  /** Perform these after confirm. */
  readonly effects: readonly Effect[];
  /** Internal: the model the step was computed from and the one it leads to. */
  readonly base: ControlModel;
  readonly next: ControlModel;
  readonly soft: readonly SoftUpdate[];
  readonly ctx: CommandContext;
}

/** What a member process reports with each heartbeat (all but appliance optional). */
export interface HeartbeatReport {
  appliance: string;
  /** Epoch it routes by: behind the group's epoch means it missed an install (send it again). */
  epoch?: number;
  policyRevision?: number;
  cpuPct?: number;
  packetsPerSec?: number;
  connections?: number;
  /** Round trip of the previous heartbeat, measured by the member (feeds downAfterMsOf). */
  rttMs?: number;
}

/** The answer to a fill report. */
export interface FillAnswer {
  accepted: number;
  complete: boolean;
  progress: number;
  awaitingEpoch: number | null;
}

export interface FillReport {
  appliance: string;
  /** Epoch the fills ran under (reports of another epoch are stale and ignored). */
  epoch: number;
  /** Buckets it now holds completely as an extra (or new) backup. */
  buckets: readonly number[];
}

export interface LoadFigures {
  epoch: number | null;
  policyRevision: number | null;
  cpuPct: number | null;
  packetsPerSec: number | null;
  connections: number | null;
  atMs: number;
}

export interface ApplianceView extends Appliance {
  group: string | null;
  state: MemberState;
  alive: boolean;
  lastHeartbeatMs: number | null;
}

export interface MemberView {
  appliance: string;
  group: string;
  state: MemberState;
  since: string;
  /** Weight in the routing table (or the weight it would get). */
  weight: number;
  inTable: boolean;
  /** Buckets owned / backed up in the routing table. */
  owned: number;
  backups: number;
  alive: boolean;
  lastHeartbeatMs: number | null;
  silentMs: number | null;
  flapPenalty: number;
  suppressed: boolean;
  flaps: number;
  load: LoadFigures | null;
  /** Measured round trip and the silence after which this member is DOWN (failure-detection.ts). */
  detection: Detection;
  /** Measured packets per CPU-second (per core) and the samples behind it (capacity-weights.ts). */
  capacity: CapacityEstimate;
  /** Connections its table holds: capacityOfMemory(memoryMb) (2% of memory at 64 B each, 65,536..1,048,576). */
  tableCapacity: number;
}

export interface TransitionView {
  kind: TransitionKind;
  seq: number;
  phase: "fill" | "reprotect";
  fromEpoch: number;
  routingEpoch: number;
  finalEpoch: number;
  fills: number;
  confirmed: number;
  /** 0..1, for progress bars. */
  progress: number;
  elapsedMs: number | null;
  /** Time allowed without a confirmed fill (the phase times out that long after its last progress). */
  timeoutMs: number;
  /** When the phase times out if nothing more is confirmed (null: not known yet). */
  timesOutInMs: number | null;
  joining: string[];
  leaving: string[];
  dead: string | null;
  lostBuckets: number;
  startedAt: string;
  /** Receiving members and how many of their fills are outstanding. */
  outstanding: { member: string; outstanding: number; expected: number }[];
}

export interface TableSide {
  epoch: number;
  members: { appliance: string; weight: number; owned: number; backups: number; state: MemberState | null; change: ChangeKind | null }[];
}

/** Pending beside applied: `changes.show`. */
export interface ChangesView {
  group: string;
  changes: PendingChange[];
  applied: TableSide;
  /** The table after apply (null: no pending changes, or they cannot be applied: see problem). */
  pending: (TableSide & { movedBuckets: number; fills: number; transition: boolean }) | null;
  problem: { code: string; message: string } | null;
  transition: TransitionView | null;
}

export interface FlowQuery {
  protocol: number | "tcp" | "udp" | "icmp" | "icmpv6";
  src: string;
  dst: string;
  srcPort?: number;
  dstPort?: number;
}

export interface FlowLocation {
  group: string;
  epoch: number;
  bucket: number;
  owner: string;
  backup: string | null;
  /** Members receiving the bucket during a running fill. */
  filling: readonly string[];
}

export interface Distribution {
  group: string;
  table: EpochTable;
  /** Bucket -> members the owner must also sync to (extra backups during a fill; new backups during reprotect). */
  fills: ReadonlyMap<number, readonly string[]>;
}

const PROTOCOL_NUMBERS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

export class ControlPlane {
  readonly queue: CommandQueue;
  readonly health: HealthTracker;
  readonly fillTimeoutMs: number;
  private model: ControlModel;
  private revisionValue: number;
  private outstandingStep: PreparedStep | null = null;
  private readonly fills = new Map<string, FillProgress>();
  private readonly loads = new Map<string, LoadFigures>();
  /** Soft state: per-core forwarding rates from heartbeats (capacity-weights.ts). */
  readonly capacity = new CapacityEstimator();
  /** Soft state is rebuilt at the first clock reading after construction (grace period). */
  private graceGiven = false;
  private readonly env: CommandEnv;
  private readonly viewValue: ControlPlaneView;

  constructor(snapshot: StoreSnapshot, options: ControlPlaneOptions = {}) {
    this.model = modelFromSnapshot(snapshot);
    const problems = checkModelInvariants(this.model);
    if (problems.length > 0) {
      throw new TandemError(ErrorCode.STORE_CORRUPT, `the stored model is inconsistent: ${problems.slice(0, 5).join("; ")}`, { problems });
    }
    this.revisionValue = snapshot.revision;
    this.queue = new CommandQueue(options.queueWaitingMax);
    this.health = new HealthTracker(options.health);
    this.fillTimeoutMs = options.fillTimeoutMs ?? TRANSITION_DEFAULTS.fillTimeoutMs;
    assert(this.fillTimeoutMs > 0, "fillTimeoutMs must be positive");
    const source = options.seedSource ?? new Prng(0x5eed0000 ^ snapshot.revision);
    this.env = { nextSeed: typeof source === "function" ? source : () => source.nextU32() };
    this.viewValue = new ControlPlaneView(this);
  }

  /** Store revision of the model (the last confirmed commit). */
  get revision(): number {
    return this.revisionValue;
  }

  /** The current persisted model (immutable; replaced on every confirm). */
  get current(): ControlModel {
    return this.model;
  }

  view(): ControlPlaneView {
    return this.viewValue;
  }

  /** Effects that bring members and distributor up to date after a (re)start. */
  startupEffects(): Effect[] {
    const effects: Effect[] = [];
    for (const g of [...this.model.groups.values()].sort((a, b) => compareIds(a.name, b.name))) {
      effects.push({ kind: "push-config", group: g.name });
      if (currentTableOf(g) !== null) effects.push({ kind: "install-epoch", group: g.name, epoch: g.epoch });
    }
    return effects;
  }

  // ---- the queue ------------------------------------------------------------------------

  /**
   * Computes `command` against the current model. Never throws a TandemError: a refused
   * command is a step with ok false whose mutation is its audit record (commit it too).
   * "health.tick" ignores `input` and reads the trackers at ctx.nowMs.
   */
  prepare(command: string, input: unknown, ctx: CommandContext): PreparedStep {
    const seq = this.queue.begin();
    try {
      const actualInput = command === "health.tick" ? this.observe(ctx.nowMs) : input;
      const outcome = runCommand(this.model, command, actualInput, ctx, this.env);
      const step: PreparedStep = {
        seq,
        command,
        actor: ctx.actor,
        ok: outcome.ok,
        result: outcome.result,
        error: outcome.error,
        mutation: outcome.mutation,
        effects: outcome.effects,
        base: this.model,
        next: outcome.model,
        soft: outcome.soft,
        ctx,
      };
      this.outstandingStep = step;
      return step;
    } catch (error) {
      // A bug (assertion) in a handler: nothing is outstanding; let it crash loudly.
      this.queue.end(seq, false);
      throw error;
    }
  }

  /** The step's mutation is durable: the model becomes the step's. `revision` from the store. */
  confirm(step: PreparedStep, revision?: number): void {
    assert(this.outstandingStep === step, "confirm of a step that is not outstanding");
    assert(step.base === this.model, "the model changed under an outstanding step");
    if (revision !== undefined) {
      assert(revision > this.revisionValue, "store revisions only grow");
      this.revisionValue = revision;
    }
    this.model = step.next;
    this.outstandingStep = null;
    this.queue.end(step.seq, true);
    this.applySoft(step.soft, step.ctx.nowMs);
    const problems = checkModelInvariants(this.model);
    assert(problems.length === 0, `model invariants broken after ${step.command}: ${problems.join("; ")}`);
  }

  /** The commit failed: nothing changes. (After TANDEM_STORE_UNAVAILABLE reload the store before the next commit.) */
  abort(step: PreparedStep): void {
    assert(this.outstandingStep === step, "abort of a step that is not outstanding");
    this.outstandingStep = null;
    this.queue.end(step.seq, false);
  }

  /** True when a tick at nowMs would change something (a DOWN, a flip, a rollback, a rejoin...). */
  needsTick(nowMs: number): boolean {
    const o = this.observe(nowMs);
    return o.silent.length + o.recovered.length + o.released.length + o.fillsComplete.length + o.fillsTimedOut.length > 0;
  }

  /**
   * The health-driven step at ctx.nowMs, or null when nothing changes or a step is
   * outstanding. Commit and confirm it like any step (actor should be "system").
   */
  tick(ctx: CommandContext): PreparedStep | null {
    if (!this.queue.idle) return null;
    if (!this.needsTick(ctx.nowMs)) return null;
    return this.prepare("health.tick", null, ctx);
  }

  /** The earliest time a tick could change something (for the runtime's timer); null: nothing pending. */
  nextDeadlineMs(nowMs: number): number | null {
    this.giveGrace(nowMs);
    const watched: string[] = [];
    for (const m of this.model.members.values()) if (WATCHED_STATES.includes(m.state)) watched.push(m.appliance);
    let next = this.health.nextSilenceMs(watched);
    const consider = (t: number | null): void => {
      if (t !== null && (next === null || t < next)) next = t;
    };
    for (const g of this.model.groups.values()) {
      const fp = this.fillProgressOf(g, nowMs);
      if (fp !== null) consider(fp.deadlineMs(this.fillTimeoutMs));
    }
    for (const a of this.model.appliances.keys()) consider(this.health.damper.releaseAtMs(a));
    return next;
  }

  // ---- member traffic (soft state) -----------------------------------------------------------

  /** A member's heartbeat. Unknown appliance: TANDEM_APPLIANCE_NOT_FOUND. Never a mutation. */
  heartbeat(report: HeartbeatReport, nowMs: number): void {
    if (typeof report !== "object" || report === null || typeof report.appliance !== "string") {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, "a heartbeat names its appliance", { field: "appliance" });
    }
    if (!this.model.appliances.has(report.appliance)) {
      throw new TandemError(ErrorCode.APPLIANCE_NOT_FOUND, `heartbeat from unknown appliance ${report.appliance}`, { appliance: report.appliance });
    }
    const num = (v: unknown, field: string): number | null => {
      if (v === undefined) return null;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `heartbeat field ${field} must be a non-negative number`, { field });
      return v;
    };
    const figures: LoadFigures = {
      epoch: num(report.epoch, "epoch"),
      policyRevision: num(report.policyRevision, "policyRevision"),
      cpuPct: num(report.cpuPct, "cpuPct"),
      packetsPerSec: num(report.packetsPerSec, "packetsPerSec"),
      connections: num(report.connections, "connections"),
      atMs: nowMs,
    };
    const rtt = num(report.rttMs, "rttMs");
    this.giveGrace(nowMs);
    this.health.heartbeat(report.appliance, nowMs, rtt);
    this.loads.set(report.appliance, figures);
    this.capacity.observe(this.model, report.appliance, nowMs, figures.cpuPct, figures.packetsPerSec);
  }

  /** A member reports buckets it now holds for the running fill. Soft state; flips happen at the next tick. */
  /**
   * Confirms a member's fills. awaitingEpoch is the epoch fills are confirmed under now (null: no
   * fill phase): a member that reported under an older epoch (a bulk that reached it before its
   * own epoch moved on) reports those buckets again once it runs that epoch (fill-reporter.ts).
   */
  fillReport(report: FillReport, nowMs: number): FillAnswer {
    const member = this.model.members.get(report.appliance);
    if (member === undefined) return { accepted: 0, complete: false, progress: 0, awaitingEpoch: null };
    const g = this.model.groups.get(member.group)!;
    const fp = this.fillProgressOf(g, nowMs);
    if (fp === null) return { accepted: 0, complete: false, progress: 0, awaitingEpoch: null };
    const accepted = fp.confirm(report.appliance, report.epoch, report.buckets, nowMs);
    return { accepted, complete: fp.complete, progress: fp.progress, awaitingEpoch: fp.epoch };
  }

  // ---- internals shared with the view ----------------------------------------------------------

  /** @internal */
  fillProgressOf(g: SecurityGroup, nowMs: number | null): FillProgress | null {
    if (g.transition === null) return null;
    const existing = this.fills.get(g.name);
    if (existing !== undefined && existing.seq === g.transition.seq) return existing;
    if (nowMs === null) return null;
    // After a restart (or before the first report): start tracking now, with a full timeout.
    const fp = new FillProgress(g.name, g.transition.seq, planOf(g), nowMs);
    this.fills.set(g.name, fp);
    return fp;
  }

  /** @internal */
  loadOf(appliance: string): LoadFigures | null {
    return this.loads.get(appliance) ?? null;
  }

  private giveGrace(nowMs: number): void {
    if (this.graceGiven) return;
    this.graceGiven = true;
    for (const m of this.model.members.values()) {
      if (WATCHED_STATES.includes(m.state)) this.health.watch(m.appliance, nowMs);
      else if (m.state === "DOWN") this.health.markDown(m.appliance, nowMs, false);
    }
  }

  private observe(nowMs: number): Observations {
    this.giveGrace(nowMs);
    const obs: Observations = { nowMs, silent: [], recovered: [], released: [], fillsComplete: [], fillsTimedOut: [] };
    const damper = this.health.damper;
    const releasing = new Set<string>();
    for (const a of this.model.appliances.keys()) {
      if (damper.releaseDue(a, nowMs)) {
        obs.released.push({ appliance: a, penalty: damper.penaltyOf(a, nowMs) });
        releasing.add(a);
      }
    }
    for (const m of this.model.members.values()) {
      if (WATCHED_STATES.includes(m.state)) {
        if (!this.health.isTracked(m.appliance)) this.health.watch(m.appliance, nowMs);
        if (this.health.isSilent(m.appliance, nowMs)) {
          const preview = damper.preview(m.appliance, nowMs);
          obs.silent.push({
            appliance: m.appliance,
            silentMs: this.health.silentMs(m.appliance, nowMs)!,
            penalty: preview.penalty,
            newlySuppressed: preview.suppressed && !damper.isSuppressed(m.appliance),
          });
        }
      } else if (m.state === "DOWN") {
        const held = damper.isSuppressed(m.appliance) && !releasing.has(m.appliance);
        const g = this.model.groups.get(m.group)!;
        if (!held && g.transition === null && !this.model.changes.has(m.appliance) && this.health.isRecovered(m.appliance, nowMs)) {
          obs.recovered.push(m.appliance);
        }
      }
    }
    for (const g of this.model.groups.values()) {
      const fp = this.fillProgressOf(g, nowMs);
      if (fp === null) continue;
      if (fp.complete) obs.fillsComplete.push({ group: g.name, seq: fp.seq });
      else if (nowMs >= fp.deadlineMs(this.fillTimeoutMs)) obs.fillsTimedOut.push({ group: g.name, seq: fp.seq, elapsedMs: nowMs - fp.startedAtMs });
    }
    obs.silent.sort((a, b) => compareIds(a.appliance, b.appliance));
    obs.recovered.sort(compareIds);
    return obs;
  }

  private applySoft(updates: readonly SoftUpdate[], nowMs: number): void {
    for (const u of updates) {
      switch (u.kind) {
        case "watch":
          this.health.watch(u.appliance, nowMs);
          break;
        case "down":
          this.health.markDown(u.appliance, nowMs);
          break;
        case "up":
          this.health.clearDown(u.appliance);
          break;
        case "release":
          this.health.damper.release(u.appliance, nowMs);
          break;
        case "forget":
          this.health.forget(u.appliance);
          this.loads.delete(u.appliance);
          this.capacity.forget(u.appliance);
          break;
        case "fill-start": {
          // A transition started and superseded within one step (a failure, then a rescue in
          // the same tick) is not tracked: only the one the model holds now.
          const g = this.model.groups.get(u.group);
          if (g !== undefined && g.transition !== null && g.transition.seq === u.seq) this.fills.set(u.group, new FillProgress(u.group, u.seq, planOf(g), nowMs));
          break;
        }
        case "fill-restart": {
          const fp = this.fills.get(u.group);
          if (fp !== undefined && fp.seq === u.seq) fp.restart(nowMs);
          break;
        }
        case "fill-end":
          this.fills.delete(u.group);
          break;
      }
    }
  }
}

function requireGroupOf(model: ControlModel, name: string): SecurityGroup {
  const g = model.groups.get(name);
  if (g === undefined) throw new TandemError(ErrorCode.SG_NOT_FOUND, `no security group named ${name}`, { group: name });
  return g;
}

function loadsOf(table: EpochTable | null): Map<string, MemberLoad> {
  return new Map((table === null ? [] : loadPerMember(table)).map((l) => [l.id, l]));
}

/** Read-only queries for the API, the CLI and the web UI. Values are copies; nothing here mutates. */
export class ControlPlaneView {
  constructor(private readonly cp: ControlPlane) {}

  private get model(): ControlModel {
    return this.cp.current;
  }

  /** The persisted model as store documents (the API's export, the tests' restore check). */
  documents(): Record<ModelCollection, Document[]> {
    return documentsOf(this.model);
  }

  appliances(nowMs: number | null = null): ApplianceView[] {
    return [...this.model.appliances.values()].sort((a, b) => compareIds(a.id, b.id)).map((a) => this.applianceView(a, nowMs));
  }

  appliance(id: string, nowMs: number | null = null): ApplianceView {
    const a = this.model.appliances.get(id);
    if (a === undefined) throw new TandemError(ErrorCode.APPLIANCE_NOT_FOUND, `no appliance with id ${id}`, { appliance: id });
    return this.applianceView(a, nowMs);
  }

  private applianceView(a: Appliance, nowMs: number | null): ApplianceView {
    const m = this.model.members.get(a.id);
    return {
      ...a,
      group: m?.group ?? null,
      state: m?.state ?? "UNASSIGNED",
      alive: nowMs !== null && this.cp.health.isAlive(a.id, nowMs),
      lastHeartbeatMs: this.cp.health.lastHeartbeatMs(a.id),
    };
  }

  groups(nowMs: number | null = null): Record<string, unknown>[] {
    return [...this.model.groups.values()].sort((a, b) => compareIds(a.name, b.name)).map((g) => this.summary(g, nowMs));
  }

  private summary(g: SecurityGroup, nowMs: number | null): Record<string, unknown> {
    const t = this.transition(g.name, nowMs);
    return { ...groupSummary(this.model, g), transition: t === null ? null : { kind: t.kind, seq: t.seq, progress: t.progress } };
  }

  /** One group in full (its seed is not shown: it keys the flow hash). */
  group(name: string, nowMs: number | null = null): Record<string, unknown> {
    const g = requireGroupOf(this.model, name);
    return {
      ...this.summary(g, nowMs),
      interfaces: g.interfaces,
      routes: g.routes,
      policy: g.policy,
      autoscale: g.autoscale,
      weights: g.weights,
      weightsSource: g.weightsSource,
    };
  }

  members(group: string, nowMs: number | null = null): MemberView[] {
    const g = requireGroupOf(this.model, group);
    const table = currentTableOf(g);
    const loads = loadsOf(table);
    const damper = this.cp.health.damper;
    return membersOfGroup(this.model, group).map((m) => {
      const load = loads.get(m.appliance);
      const a = this.model.appliances.get(m.appliance)!;
      return {
        appliance: m.appliance,
        group,
        state: m.state,
        since: m.since,
        weight: load?.weight ?? weightOf(g, a),
        inTable: load !== undefined,
        owned: load?.owned ?? 0,
        backups: load?.backups ?? 0,
        alive: nowMs !== null && this.cp.health.isAlive(m.appliance, nowMs),
        lastHeartbeatMs: this.cp.health.lastHeartbeatMs(m.appliance),
        silentMs: nowMs === null ? null : this.cp.health.silentMs(m.appliance, nowMs),
        flapPenalty: nowMs === null ? 0 : damper.penaltyOf(m.appliance, nowMs),
        suppressed: damper.isSuppressed(m.appliance),
        flaps: damper.flapsOf(m.appliance),
        load: this.cp.loadOf(m.appliance),
        detection: this.cp.health.detectionOf(m.appliance),
        capacity: this.cp.capacity.estimateOf(m.appliance),
        tableCapacity: capacityOfMemory(a.memoryMb),
      };
    });
  }

  pending(group: string): PendingChange[] {
    requireGroupOf(this.model, group);
    return changesOfGroup(this.model, group);
  }

  /** The table routing now (null: the group has none). */
  epochTable(group: string): EpochTable | null {
    return currentTableOf(requireGroupOf(this.model, group));
  }

  /** What members and the distributor must hold now: the routing table and the running fill map. */
  distribution(group: string): Distribution | null {
    const g = requireGroupOf(this.model, group);
    const table = currentTableOf(g);
    if (table === null) return null;
    const fills = g.transition === null ? new Map<number, readonly string[]>() : fillMapOf(awaitedPhaseOf(planOf(g)));
    return { group, table, fills };
  }

  transition(group: string, nowMs: number | null = null): TransitionView | null {
    const g = requireGroupOf(this.model, group);
    const t = g.transition;
    if (t === null) return null;
    const plan = planOf(g);
    const phase = awaitedPhaseOf(plan);
    const fp = this.cp.fillProgressOf(g, null);
    const total = fillPairCount(phase);
    const confirmed = fp?.confirmed ?? 0;
    return {
      kind: t.kind,
      seq: t.seq,
      phase: phase.kind === "fill" ? "fill" : "reprotect",
      fromEpoch: t.from.epoch,
      routingEpoch: g.epoch,
      finalEpoch: plan.final.epoch,
      fills: total,
      confirmed,
      progress: total === 0 ? 1 : confirmed / total,
      elapsedMs: fp === null || nowMs === null ? null : nowMs - fp.startedAtMs,
      timeoutMs: this.cp.fillTimeoutMs,
      timesOutInMs: fp === null || nowMs === null ? null : Math.max(0, fp.deadlineMs(this.cp.fillTimeoutMs) - nowMs),
      joining: t.joining.map((j) => j.appliance),
      leaving: t.leaving.map((l) => l.appliance),
      dead: t.dead,
      lostBuckets: t.lostBuckets,
      startedAt: t.startedAt,
      outstanding: fp?.outstandingPerMember() ?? [],
    };
  }

  /** Pending beside applied: members and bucket ownership before and after changes.apply. */
  changes(group: string, nowMs: number | null = null): ChangesView {
    const g = requireGroupOf(this.model, group);
    const changes = changesOfGroup(this.model, group);
    const current = currentTableOf(g);
    const currentLoads = loadsOf(current);
    const changeOf = new Map(changes.map((c) => [c.appliance, c.kind]));
    const applied: TableSide = {
      epoch: g.epoch,
      members: membersOfGroup(this.model, group).map((m) => {
        const l = currentLoads.get(m.appliance);
        return {
          appliance: m.appliance,
          weight: l?.weight ?? weightOf(g, this.model.appliances.get(m.appliance)!),
          owned: l?.owned ?? 0,
          backups: l?.backups ?? 0,
          state: m.state,
          change: changeOf.get(m.appliance) ?? null,
        };
      }),
    };
    for (const c of changes) {
      if (c.kind !== "assign" || applied.members.some((m) => m.appliance === c.appliance)) continue;
      const a = this.model.appliances.get(c.appliance)!;
      applied.members.push({ appliance: c.appliance, weight: c.weight ?? weightOf(g, a), owned: 0, backups: 0, state: "UNASSIGNED", change: "assign" });
    }
    applied.members.sort((x, y) => compareIds(x.appliance, y.appliance));
    let pending: ChangesView["pending"] = null;
    let problem: ChangesView["problem"] = null;
    if (changes.length > 0) {
      try {
        const p = planApply(this.model, group);
        pending = this.pendingSide(g, p.from, p.target, changeOf);
      } catch (error) {
        if (!(error instanceof TandemError)) throw error;
        problem = { code: error.code, message: error.message };
      }
    }
    return { group, changes, applied, pending, problem, transition: this.transition(group, nowMs) };
  }

  private pendingSide(g: SecurityGroup, from: EpochTable | null, target: MemberWeight[], changeOf: Map<string, ChangeKind>): NonNullable<ChangesView["pending"]> {
    const sameAsNow = from !== null && from.table.members.length === target.length && target.every((m) => {
      const i = from.table.members.indexOf(m.id);
      return i >= 0 && from.table.weights[i] === m.weight;
    });
    let after: EpochTable | null = null;
    let movedBuckets = 0;
    let fills = 0;
    if (sameAsNow) after = from;
    else if (target.length > 0 && from !== null) {
      const plan = planWeights(from, target);
      after = plan.final;
      movedBuckets = plan.phases[1]!.moves.length;
      fills = fillPairCount(plan.phases[0]!);
    } else if (target.length > 0) {
      after = createEpochTable(target, g.seed, { bucketCount: g.bucketCount, epoch: g.epoch + 1 });
      movedBuckets = g.bucketCount;
    }
    const loads = loadsOf(after);
    return {
      epoch: after?.epoch ?? g.epoch,
      members: target.map((m) => ({
        appliance: m.id,
        weight: m.weight,
        owned: loads.get(m.id)?.owned ?? 0,
        backups: loads.get(m.id)?.backups ?? 0,
        state: this.model.members.get(m.id)?.state ?? null,
        change: changeOf.get(m.id) ?? null,
      })),
      movedBuckets,
      fills,
      transition: !sameAsNow && from !== null && target.length > 0,
    };
  }

  /** Where a flow's connection lives: its bucket's owner and backup in the routing table. */
  connectionsLocation(group: string, flow: FlowQuery): FlowLocation {
    const g = requireGroupOf(this.model, group);
    const table = currentTableOf(g);
    if (table === null) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${group} has no members in its table`, { group });
    const protocol = typeof flow.protocol === "number" ? flow.protocol : PROTOCOL_NUMBERS[flow.protocol];
    if (protocol === undefined || !Number.isInteger(protocol) || protocol < 0 || protocol > 255) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `protocol must be tcp, udp, icmp, icmpv6 or 0-255, got ${String(flow.protocol)}`, { field: "protocol" });
    }
    const src = typeof flow.src === "string" ? parseIp(flow.src) : null;
    const dst = typeof flow.dst === "string" ? parseIp(flow.dst) : null;
    if (src === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `src ${String(flow.src)} is not an IP address`, { field: "src" });
    if (dst === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `dst ${String(flow.dst)} is not an IP address`, { field: "dst" });
    if (src.length !== dst.length) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "src and dst must be of one address family", { field: "dst" });
    const port = (v: number | undefined, field: string): number => {
      if (v === undefined) return 0;
      if (!Number.isInteger(v) || v < 0 || v > 65535) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${field} must be 0-65535`, { field });
      return v;
    };
    const hash = flowHashOfKey(g.seed, { zone: 0, protocol, src, dst, srcPort: port(flow.srcPort, "srcPort"), dstPort: port(flow.dstPort, "dstPort") });
    return this.bucketLocation(group, bucketOf(hash, g.bucketCount));
  }

  /** Owner, backup and fill targets of one bucket in the group's current table. */
  bucketLocation(group: string, bucket: number): FlowLocation {
    const g = requireGroupOf(this.model, group);
    const table = currentTableOf(g);
    if (table === null) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${group} has no members in its table`, { group });
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= g.bucketCount) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `bucket must be 0-${g.bucketCount - 1}`, { field: "bucket" });
    const fills = g.transition === null ? null : fillMapOf(awaitedPhaseOf(planOf(g)));
    return { group, epoch: table.epoch, bucket, owner: ownerOf(table, bucket), backup: backupOf(table, bucket), filling: fills?.get(bucket) ?? [] };
  }
}
