// The simulator's control plane (orchestrator logic, until the real orchestrator exists):
// membership, failure detection by heartbeat, and execution of transition plans
// (src/distribution/transition.ts), one at a time.
//
//   join / drain    install(fill phase: the current table + a fill map) -> wait until every
//                   (bucket, extra backup) pair is reported filled -> install(flip: new epoch)
//   failure         install(promote epoch + a fill map for the reprotect moves, at once) ->
//                   wait for the fills -> install(reprotect epoch)
//
// Failure detection: members heartbeat every HEARTBEAT_INTERVAL_MS over the control link
// (reliable, like the real TCP control connection); a member silent for DEAD_AFTER_MS (three
// missed heartbeats and a little slack) is declared dead. Detection takes 60-80 ms virtual.
//
// Order of an epoch change: the distributor first, the members SETTLE later. The distributor
// switching first sends no frame to a dead owner after detection, and a frame that reaches the
// new owner before its member learns the epoch is still processed there, because it holds the
// bucket's connections (as backup, or as filled extra backup) — that is the ClusterNode
// contract. The old owner keeps its old epoch until every frame the distributor sent it
// under the old table has arrived (SETTLE > the largest member-link delay), so those
// stragglers are processed while it still owns the bucket and still syncs it to the new owner
// (the fill map stays in force). Members first would make the old owner a mere backup while
// frames are still routed to it.
//
// A failure during a transition (one failure at a time; a member may fail while a join or a
// drain is filling):
//   - the joining member fails: the join is abandoned; the current table is re-installed
//     without a fill map;
//   - any other member fails during a join or drain: that transition is abandoned (its
//     fill phase never changed the routing table), the failure is handled from the current
//     table, and the join or drain is queued again if its member is still running;
//   - a member fails during a failure transition (a double failure, which the scenarios avoid):
//     the new failure is planned from the interrupted plan's final table; connections of
//     buckets that were not yet re-protected may be lost, and the run records the double
//     fault so the invariants can tell it apart.
//
// Invariants kept: epochs installed only grow, and one epoch number always names one table
// (checked by the invariant checker through `installed`); at most one transition runs.

import { backupOf, ownerOf, type EpochTable } from "../distribution/epoch.js";
import type { MemberWeight } from "../distribution/rendezvous.js";
import { extraBackupsOf, planDrain, planFailure, planJoin, type TransitionPlan } from "../distribution/transition.js";
import { assert } from "../stdx/assert.js";
import type { EventQueue, SimEvent } from "./clock.js";
import type { SimDistributor } from "./distributor.js";
import { CONTROLLER, HEARTBEAT_INTERVAL_MS, type SimMember } from "./member.js";
import type { ControlBody, SimMessage } from "./messages.js";
import type { Network } from "./network.js";

/** Silence after which a member is declared dead: three heartbeats and some slack. */
export const DEAD_AFTER_MS = 3 * HEARTBEAT_INTERVAL_MS + 10;
/** A drained member keeps running this long after the flip before it stops (see fillsDone). */
export const DRAIN_LINGER_MS = 1000;
/** How often the controller looks for silent members. */
export const HEALTH_CHECK_INTERVAL_MS = 5;

export type MemberStatus = "joining" | "up" | "draining" | "down" | "left";
export type TransitionKind = "join" | "drain" | "failure";

interface MemberRecord {
  readonly member: SimMember;
  weight: number;
  status: MemberStatus;
  lastHeartbeatMs: number;
}

interface Transition {
  kind: TransitionKind;
  member: string;
  plan: TransitionPlan;
  /** Index of the phase being filled (0 for join/drain fill, 0 for failure promote). */
  phase: number;
  /** "bucket/member" pairs still to be reported filled. */
  pending: Set<string>;
  /** Epoch under which the fills run (fill reports of other epochs are ignored). */
  fillEpoch: number;
  startedMs: number;
  flipTimer: SimEvent | null;
}

export interface ControllerEvent {
  timeMs: number;
  text: string;
}

export class ControllerStats {
  joins = 0;
  drains = 0;
  failures = 0;
  aborted = 0;
  doubleFaults = 0;
  epochsInstalled = 0;
  /** Fill reports for another epoch or session than the running fill phase (ignored). */
  fillReportsIgnored = 0;
  /** Declared-dead time minus crash time, per failure. */
  readonly detectMs: number[] = [];
  /** Failure declared -> reprotect epoch installed, per failure. */
  readonly reprotectMs: number[] = [];
  /** Fill phase start -> flip installed, per join/drain. */
  readonly fillMs: number[] = [];
}

export class SimController {
  readonly stats = new ControllerStats();
  readonly log: ControllerEvent[] = [];
  /** Every epoch installed, in order (the invariant checker reads it). */
  readonly installed: EpochTable[] = [];
  /** The newest installed table. */
  current: EpochTable;
  transition: Transition | null = null;
  /** Time the last transition ended (or the last epoch was installed). */
  lastChangeMs = 0;
  /** Time of the last double fault, -1 if none. */
  doubleFaultAtMs = -1;
  private readonly records = new Map<string, MemberRecord>();
  private readonly waiting: { kind: "join" | "drain"; member: string }[] = [];

  constructor(
    private readonly queue: EventQueue,
    private readonly network: Network<SimMessage>,
    private readonly distributor: SimDistributor,
    members: readonly SimMember[],
    initial: EpochTable,
    weights: ReadonlyMap<string, number>,
    /** Delay between the distributor's table swap and the members' set-epoch (see the header). */
    readonly settleMs: number,
  ) {
    for (const m of members) this.records.set(m.name, { member: m, weight: weights.get(m.name) ?? 1, status: "left", lastHeartbeatMs: 0 });
    for (const id of initial.table.members) this.records.get(id)!.status = "up";
    this.current = initial;
    network.attach(CONTROLLER, (m) => this.receive(m));
  }

  /** Installs the first epoch (its members must be running) and starts health checks. */
  start(): void {
    assert(this.installed.length === 0, "controller started twice");
    this.install(this.current, new Map(), true);
    this.queue.after(HEALTH_CHECK_INTERVAL_MS, "health", () => this.healthCheck());
  }

  statusOf(name: string): MemberStatus {
    return this.records.get(name)!.status;
  }

  /** Members in the current table that are not down. */
  get liveMembers(): string[] {
    return [...this.records.values()].filter((r) => r.status === "up" || r.status === "draining" || r.status === "joining").map((r) => r.member.name);
  }

  get busy(): boolean {
    return this.transition !== null || this.waiting.length > 0;
  }

  get failureInProgress(): boolean {
    return this.transition !== null && this.transition.kind === "failure";
  }

  /** Asks a running member (started, not in the table) to join. Queued behind any transition. */
  requestJoin(name: string, weight: number): void {
    const r = this.records.get(name)!;
    assert(r.member.alive, "only a running member can join");
    r.weight = weight;
    r.status = "joining";
    r.lastHeartbeatMs = this.queue.nowMs;
    this.waiting.push({ kind: "join", member: name });
    this.startNext();
  }

  requestDrain(name: string): void {
    const r = this.records.get(name)!;
    assert(r.status === "up", "only an up member can drain");
    r.status = "draining";
    this.waiting.push({ kind: "drain", member: name });
    this.startNext();
  }

  private note(text: string): void {
    this.log.push({ timeMs: this.queue.nowMs, text });
  }

  // ---- epochs -----------------------------------------------------------------------------

  private peers(): Map<string, number> {
    const peers = new Map<string, number>();
    for (const r of this.records.values()) {
      if (r.status === "up" || r.status === "joining" || r.status === "draining") peers.set(r.member.name, r.member.memberId);
    }
    return peers;
  }

  /** Distributor now, members SETTLE later (see the header for why). */
  private install(table: EpochTable, fill: ReadonlyMap<number, readonly string[]>, immediate = false): void {
    assert(table.epoch >= this.current.epoch, "epochs only grow");
    for (const r of this.records.values()) if (r.status === "up" && r.lastHeartbeatMs === 0) r.lastHeartbeatMs = this.queue.nowMs;
    this.current = table;
    this.installed.push(table);
    this.stats.epochsInstalled++;
    this.lastChangeMs = this.queue.nowMs;
    this.distributor.setEpoch(table);
    const peers = this.peers();
    const send = (): void => {
      // Everyone in `peers` that is still running: a member that died during SETTLE is left
      // out, and a member that is leaving (drain) still learns the flip.
      for (const [name] of peers) {
        if (!this.records.get(name)!.member.alive) continue;
        this.network.send({
          from: CONTROLLER,
          to: name,
          linkClass: "control",
          kind: "control",
          bytes: null,
          flow: -1,
          fromClient: false,
          hops: 0,
          correctTo: null,
          control: { type: "set-epoch", table, fill, peers },
          processedAtMs: -1,
        });
      }
    };
    this.note(`epoch ${table.epoch} (${table.table.members.join(",")}) fill ${fill.size}`);
    if (immediate || this.settleMs <= 0) send();
    else this.queue.after(this.settleMs, "settle", send);
  }

  // ---- heartbeats and failures -----------------------------------------------------------

  private receive(m: SimMessage): void {
    const body = m.control as ControlBody;
    const r = this.records.get(m.from);
    assert(r !== undefined, "control message from an unknown member");
    if (r.status === "down" || r.status === "left") return; // a stale message from before the end
    if (body.type === "heartbeat") {
      if (body.session === r.member.session) r.lastHeartbeatMs = this.queue.nowMs;
      return;
    }
    if (body.type === "filled") {
      const t = this.transition;
      // A member one epoch behind may complete a fill already: the owner learned the fill
      // phase first and its bulk transfer overtook the member's own set-epoch (the node
      // accepts it, by design). Older reports belong to finished phases.
      if (t === null || body.session !== r.member.session || body.epoch < t.fillEpoch - 1 || body.epoch > t.fillEpoch) {
        this.stats.fillReportsIgnored++;
        this.note(`ignored fill report of ${m.from} (epoch ${body.epoch}, buckets ${body.buckets.slice(0, 6).join(",")}${body.buckets.length > 6 ? "..." : ""})`);
        return;
      }
      for (const b of body.buckets) t.pending.delete(`${b}/${m.from}`);
      if (t.pending.size === 0 && t.flipTimer === null) this.fillsDone(t);
      return;
    }
    assert(false, `controller got ${body.type}`);
  }

  private healthCheck(): void {
    const now = this.queue.nowMs;
    for (const r of this.records.values()) {
      if (r.status !== "up" && r.status !== "draining" && r.status !== "joining") continue;
      if (now - r.lastHeartbeatMs > DEAD_AFTER_MS) this.declareDead(r);
    }
    this.queue.after(HEALTH_CHECK_INTERVAL_MS, "health", () => this.healthCheck());
  }

  private declareDead(r: MemberRecord): void {
    const name = r.member.name;
    const previous = r.status;
    r.status = "down";
    if (r.member.crashedAtMs >= 0) this.stats.detectMs.push(this.queue.nowMs - r.member.crashedAtMs);
    this.note(`${name} declared dead (was ${previous})`);
    // Queued requests of the dead member are void.
    for (let i = this.waiting.length - 1; i >= 0; i--) if (this.waiting[i]!.member === name) this.waiting.splice(i, 1);
    const inTable = this.current.table.members.includes(name);
    const t = this.transition;
    if (t !== null) {
      if (t.kind === "join" && t.member === name) {
        this.abort(t, "joining member died");
        this.install(this.nextEpochOf(this.current), new Map());
        this.startNext();
        return;
      }
      if (t.kind === "failure") {
        if (!inTable) return; // a member waiting to join: nothing held, nothing to do
        this.stats.doubleFaults++;
        this.doubleFaultAtMs = this.queue.nowMs;
        this.abort(t, "second failure during a failure transition");
        this.startFailure(name, t.plan.final);
        return;
      }
      // A join or drain of another member, or the drain of this one: abandon it, and ask
      // again (join or drain of another member) once the failure is handled.
      this.abort(t, `${name} died`);
      if (t.member !== name && this.records.get(t.member)!.member.alive) this.waiting.unshift({ kind: t.kind, member: t.member });
    }
    if (!inTable) {
      // A member that was only joining (not yet in the table): nothing to fail over.
      this.startNext();
      return;
    }
    this.startFailure(name, this.current);
  }

  /** The same table under the next epoch number (re-installing without a fill map). */
  private nextEpochOf(t: EpochTable): EpochTable {
    return { epoch: t.epoch + 1, seed: t.seed, table: t.table };
  }

  private abort(t: Transition, why: string): void {
    if (t.flipTimer !== null) this.queue.cancel(t.flipTimer);
    this.stats.aborted++;
    this.note(`${t.kind} of ${t.member} aborted: ${why}`);
    this.transition = null;
  }

  private startFailure(name: string, from: EpochTable): void {
    this.stats.failures++;
    if (from.table.members.length <= 1) {
      this.note(`${name} was the last member: nothing to fail over to`);
      return;
    }
    const plan = planFailure(from, name);
    const promote = plan.phases[0]!;
    const reprotect = plan.phases[1]!;
    const fill = new Map<number, readonly string[]>();
    for (const move of reprotect.moves) fill.set(move.bucket, move.fillTo);
    const t = this.begin("failure", name, plan, 0, fill, promote.table.epoch);
    this.install(promote.table, fill);
    if (t.pending.size === 0) this.fillsDone(t);
  }

  private begin(kind: TransitionKind, member: string, plan: TransitionPlan, phase: number, fill: ReadonlyMap<number, readonly string[]>, fillEpoch: number): Transition {
    assert(this.transition === null, "one transition at a time");
    const pending = new Set<string>();
    for (const [bucket, targets] of fill) for (const m of targets) pending.add(`${bucket}/${m}`);
    const t: Transition = { kind, member, plan, phase, pending, fillEpoch, startedMs: this.queue.nowMs, flipTimer: null };
    this.transition = t;
    this.note(`${kind} of ${member} started: ${pending.size} fills`);
    return t;
  }

  /** Every fill of the running phase is confirmed: install the next (final) epoch. */
  private fillsDone(t: Transition): void {
    assert(this.transition === t, "fills of a finished transition");
    // The flip is installed once the fill phase's own set-epoch has reached the members
    // (SETTLE), so a member never sees the flip before the fill phase it completes.
    const wait = Math.max(0, this.lastChangeMs + this.settleMs - this.queue.nowMs);
    t.flipTimer = this.queue.after(wait, "flip", () => {
      t.flipTimer = null;
      if (this.transition !== t) return;
      this.transition = null;
      const final = t.plan.final;
      this.install(final, new Map());
      const duration = this.queue.nowMs - t.startedMs;
      if (t.kind === "failure") {
        this.stats.reprotectMs.push(duration);
      } else {
        this.stats.fillMs.push(duration);
        if (t.kind === "join") {
          this.stats.joins++;
          this.records.get(t.member)!.status = "up";
        } else {
          this.stats.drains++;
          const r = this.records.get(t.member)!;
          r.status = "left";
          // The drained member lingers after the flip: its sync channels still hold records the
          // new owners need (retransmissions, deferred changes); stopping it at once would lose
          // them as a crash does.
          this.queue.after(this.settleMs + DRAIN_LINGER_MS, "drain-stop", () => {
            if (r.member.alive && r.status === "left") r.member.stop();
          });
        }
      }
      this.note(`${t.kind} of ${t.member} done in ${duration.toFixed(1)} ms`);
      this.startNext();
    });
  }

  private startNext(): void {
    if (this.transition !== null) return;
    while (this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      const r = this.records.get(next.member)!;
      if (!r.member.alive) continue;
      const weight: MemberWeight = { id: next.member, weight: r.weight };
      if (next.kind === "join") {
        if (this.current.table.members.includes(next.member)) continue;
        const plan = planJoin(this.current, weight);
        this.startMakeBeforeBreak("join", next.member, plan);
        return;
      }
      if (!this.current.table.members.includes(next.member) || this.current.table.members.length <= 1) continue;
      const plan = planDrain(this.current, next.member);
      this.startMakeBeforeBreak("drain", next.member, plan);
      return;
    }
  }

  private startMakeBeforeBreak(kind: "join" | "drain", member: string, plan: TransitionPlan): void {
    const fillPhase = plan.phases[0]!;
    const fill = extraBackupsOf(fillPhase);
    const t = this.begin(kind, member, plan, 0, fill, fillPhase.table.epoch);
    this.install(fillPhase.table, fill);
    if (t.pending.size === 0) this.fillsDone(t);
  }

  /** Owner and backup of a bucket in the current table (for the invariants). */
  roles(bucket: number): { owner: string; backup: string | null } {
    return { owner: ownerOf(this.current, bucket), backup: backupOf(this.current, bucket) };
  }
}
