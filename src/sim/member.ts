// A member process in the simulator: the real ClusterNode (engine, distribution, HyperSync)
// wired to the virtual network and clock. It hands frames, sync datagrams and epochs to the
// node, sends whatever the node produces (verdict-FORWARD frames back to the distributor,
// corrections, the node's outbox of sync datagrams, fill reports), heartbeats the controller,
// and runs the node's timers at exactly node.nextDeadlineMs().
//
// A crash stops the process at once: the node object is kept (its counters still count for
// the packet accounting) but receives nothing more, and everything sent to the member is lost
// on the network as "down". A restart makes a new node with the next session number.
//
// Invariants kept: after every call into the node its outbox is drained and its `filled` set
// reported and cleared; the node's timer event is never later than its nextDeadlineMs(); a
// dead process never calls its node.

import type { EpochTable } from "../distribution/epoch.js";
import type { ClusterNodeOptions, ConnectionRole } from "../hypersync/cluster-node.js";
import type { EngineCounters } from "../engine/counters.js";
import { DropReason, DROP_REASON_COUNT, Verdict, type ConnectionSnapshot } from "../engine/types.js";
import { LinkType } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import type { EventQueue, SimEvent } from "./clock.js";
import { DISTRIBUTOR } from "./distributor.js";
import { frameMessage, type ControlBody, type SimMessage } from "./messages.js";
import type { Network } from "./network.js";

export const CONTROLLER = "controller";
/** A member heartbeats the controller this often (over the reliable control link). */
export const HEARTBEAT_INTERVAL_MS = 20;

export type { ConnectionRole };

/** The options of a ClusterNode, as the simulator fills them. */
export type SimNodeOptions = ClusterNodeOptions;

/** The part of ClusterNode the simulator drives. ClusterNode satisfies it structurally. */
export interface SimNode {
  readonly name: string;
  readonly memberId: number;
  readonly epoch: number;
  readonly engine: { readonly counters: EngineCounters };
  setEpoch(epoch: EpochTable, fill: ReadonlyMap<number, readonly string[]>, peers: ReadonlyMap<string, number>, nowMs: number): void;
  receiveFrame(frame: Uint8Array, offset: number, length: number, linkType: number, nowMs: number): number;
  readonly correctTo: string | null;
  readonly dropReason: number;
  readonly bucket: number;
  receiveSync(from: string, bytes: Uint8Array, length: number, nowMs: number): void;
  tick(nowMs: number): void;
  nextDeadlineMs(): number;
  readonly outbox: { to: string; bytes: Uint8Array }[];
  readonly filled: Set<number>;
  readonly counters: Record<string, number>;
  bucketDigest(bucket: number): number;
  forEachConnection(fn: (bucket: number, s: ConnectionSnapshot, role: ConnectionRole) => void): void;
}

export type NodeFactory = (options: SimNodeOptions, nowMs: number) => SimNode;

/** What the simulator observes about member processing (for the invariants and accounting). */
export interface MemberObserver {
  /** The node processed a frame of `flow` itself (not a correction): verdict, bucket, its epoch. */
  processed(member: string, flow: number, frame: Uint8Array, verdict: number, dropReason: number, bucket: number, epoch: number): void;
}

export class MemberStats {
  framesIn = 0;
  forwarded = 0;
  corrected = 0;
  /** Frames the node dropped or rejected, per DropReason (the member's share of the accounting). */
  readonly drops = new Float64Array(DROP_REASON_COUNT);
  syncSent = 0;
  syncReceived = 0;
  fillReports = 0;
  ticks = 0;
}

export class SimMember {
  node: SimNode | null = null;
  /** Every node this member ran (one per session), dead ones included. */
  readonly nodes: SimNode[] = [];
  readonly stats = new MemberStats();
  session = 0;
  alive = false;
  /** Virtual time of the last crash, -1 if never. */
  crashedAtMs = -1;
  private tickEvent: SimEvent | null = null;
  private heartbeatEvent: SimEvent | null = null;
  /** Guards against a node whose deadline does not move after tick() (would spin the clock). */
  private lastTickMs = -1;

  constructor(
    readonly name: string,
    readonly memberId: number,
    private readonly queue: EventQueue,
    private readonly network: Network<SimMessage>,
    private readonly factory: NodeFactory,
    private readonly baseOptions: Omit<SimNodeOptions, "name" | "memberId" | "session">,
    private readonly observer: MemberObserver,
  ) {
    network.attach(name, (m) => this.receive(m));
    network.setDown(name, true);
  }

  /** Starts (or restarts) the process with a fresh node and the next session number. */
  start(): void {
    assert(!this.alive, "member already running");
    this.session++;
    const node = this.factory({ ...this.baseOptions, name: this.name, memberId: this.memberId, session: this.session }, this.queue.nowMs);
    assert(node.name === this.name && node.memberId === this.memberId, "node identity");
    this.node = node;
    this.nodes.push(node);
    this.alive = true;
    this.lastTickMs = -1;
    this.network.setDown(this.name, false);
    this.heartbeat();
    this.afterCall();
  }

  /** Stops the process at once (crash, or the end of a drain). */
  stop(): void {
    assert(this.alive, "member not running");
    this.alive = false;
    this.crashedAtMs = this.queue.nowMs;
    this.network.setDown(this.name, true);
    if (this.tickEvent !== null) this.queue.cancel(this.tickEvent);
    if (this.heartbeatEvent !== null) this.queue.cancel(this.heartbeatEvent);
    this.tickEvent = null;
    this.heartbeatEvent = null;
    this.node = null;
  }

  private receive(m: SimMessage): void {
    assert(this.alive && this.node !== null, "the network delivered to a dead member");
    const node = this.node;
    const now = this.queue.nowMs;
    switch (m.kind) {
      case "frame":
        this.receiveFrame(node, m, now);
        break;
      case "sync":
        this.stats.syncReceived++;
        node.receiveSync(m.from, m.bytes!, m.bytes!.length, now);
        break;
      case "control":
        this.receiveControl(node, m.control!, now);
        break;
      default:
        assert(false, `member got a ${m.kind} message`);
    }
    this.afterCall();
  }

  private receiveFrame(node: SimNode, m: SimMessage, now: number): void {
    const bytes = m.bytes!;
    this.stats.framesIn++;
    const verdict = node.receiveFrame(bytes, 0, bytes.length, LinkType.ETHERNET, now);
    if (node.correctTo !== null) {
      assert(node.correctTo !== this.name, "a node corrected a frame to itself");
      this.stats.corrected++;
      const c = frameMessage(this.name, DISTRIBUTOR, "member", "correct", bytes, m.flow, m.fromClient, m.hops);
      c.correctTo = node.correctTo;
      this.network.send(c);
      return;
    }
    this.observer.processed(this.name, m.flow, bytes, verdict, node.dropReason, node.bucket, node.epoch);
    if (verdict === Verdict.FORWARD) {
      this.stats.forwarded++;
      const egress = frameMessage(this.name, DISTRIBUTOR, "member", "egress", bytes, m.flow, m.fromClient, m.hops);
      egress.processedAtMs = now;
      this.network.send(egress);
      return;
    }
    // DROP or REJECT: the frame ends here with its reason. A reject's reply packet (RST or
    // ICMP unreachable) is not sent: the simulator runs without a policy that rejects.
    const reason = node.dropReason;
    assert(reason !== DropReason.NONE && reason < DROP_REASON_COUNT, "a dropped frame without a reason");
    this.stats.drops[reason]++;
  }

  private receiveControl(node: SimNode, body: ControlBody, now: number): void {
    assert(body.type === "set-epoch", `member got control ${body.type}`);
    node.setEpoch(body.table, body.fill, body.peers, now);
  }

  /** Drains the outbox, reports fills, and re-arms the timer. */
  private afterCall(): void {
    const node = this.node;
    if (node === null) return;
    const out = node.outbox.splice(0);
    for (const d of out) {
      this.stats.syncSent++;
      this.network.send({ from: this.name, to: d.to, linkClass: "sync", kind: "sync", bytes: d.bytes, flow: -1, fromClient: false, hops: 0, correctTo: null, control: null, processedAtMs: -1 });
    }
    if (node.filled.size > 0) {
      const buckets = [...node.filled].sort((a, b) => a - b);
      node.filled.clear();
      this.stats.fillReports++;
      this.sendControl({ type: "filled", session: this.session, epoch: node.epoch, buckets });
    }
    this.armTick(node);
  }

  private armTick(node: SimNode): void {
    let at = node.nextDeadlineMs();
    if (!Number.isFinite(at)) {
      if (this.tickEvent !== null) this.queue.cancel(this.tickEvent);
      this.tickEvent = null;
      return;
    }
    const now = this.queue.nowMs;
    if (at < now) at = now;
    // A deadline that tick() just served but did not move would spin the clock: step past it.
    if (at <= this.lastTickMs) at = this.lastTickMs + 0.25;
    if (this.tickEvent !== null) {
      if (this.tickEvent.run !== null && this.tickEvent.timeMs <= at) return;
      this.queue.cancel(this.tickEvent);
    }
    this.tickEvent = this.queue.at(at, "tick", () => {
      this.tickEvent = null;
      if (!this.alive || this.node === null) return;
      this.stats.ticks++;
      this.lastTickMs = this.queue.nowMs;
      this.node.tick(this.queue.nowMs);
      this.afterCall();
    });
  }

  private heartbeat(): void {
    if (!this.alive || this.node === null) return;
    this.sendControl({ type: "heartbeat", session: this.session, epoch: this.node.epoch });
    this.heartbeatEvent = this.queue.after(HEARTBEAT_INTERVAL_MS, "heartbeat", () => this.heartbeat());
  }

  private sendControl(body: ControlBody): void {
    this.network.send({ from: this.name, to: CONTROLLER, linkClass: "control", kind: "control", bytes: null, flow: -1, fromClient: false, hops: 0, correctTo: null, control: body, processedAtMs: -1 });
  }
}
