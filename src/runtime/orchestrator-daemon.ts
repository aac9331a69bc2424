// The orchestrator daemon: the control plane (src/orchestrator, synchronous) driven against a
// real store, a real clock and real callers. It owns
//   - the store (SQLite at DIR/tandem.db by default, or etcd) and leadership (SQLite: the file
//     lock; etcd: an election; a standby serves /api/health and refuses everything else);
//   - THE mutation loop: one FIFO, bounded (the control plane's CommandQueue, TANDEM_BUSY when
//     full), one step at a time: prepare -> await store.commit -> confirm | abort. A caller is
//     answered only after confirm, so an acknowledged command is durable; a refused command is
//     audited (its audit-only mutation is committed too) before the refusal is returned;
//   - the health ticker (every tickIntervalMs): controlPlane.tick -> commit -> confirm, through
//     the same loop, so ticks and commands never interleave;
//   - heartbeats, fill and verification reports from members (soft state, no commit);
//   - API tokens (store collection "tokens", SHA-256 only; their mutations go through the same
//     loop) and, at the first start, the admin token: written to DIR/admin-token (mode 0600)
//     before it is committed, so a crash in between never leaves an admin token nobody has.
//
// Invariants kept: at most one commit is outstanding (the `pumping` flag; the control plane
// asserts it too); the in-memory model changes only after a commit resolved; after a commit
// failed (outcome unknown) the store is reloaded before the next commit and the control plane
// rebuilt when the store moved; nothing here throws a TandemError at a caller for a programmer
// error: those crash the process (crash-only: a restart restores everything from the store).

import { mkdirSync, renameSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { randomBytes, randomInt } from "node:crypto";
import { pino, type Logger } from "pino";
import { ControlPlane, type ControlPlaneOptions, type Effect, type FillAnswer, type FlowLocation, type PreparedStep, type QueuedCommand } from "../orchestrator/index.js";
import type { OperatorCommand } from "../orchestrator/index.js";
import { awaitedPhaseOf, encodeRoles, planOf } from "../orchestrator/transitions.js";
import { checkName } from "../orchestrator/model.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { openStore, type AuditRecord, type EventRecord, type Leadership, type Mutation, type OpenedStore, type Store, type StoreOptions } from "../store/store.js";
import { parseIp, formatIp } from "../packet/addr.js";
import { Autoscaler, type AutoscaleGroupInput, type SpareAppliance } from "../orchestrator/autoscaler.js";
import { UpgradeRunner, type UpgradeStatusView } from "./upgrade-runner.js";
import { capacityOfMemory } from "../orchestrator/model.js";
import { CapacityRunner } from "./capacity-runner.js";
import { measuredDownAfterMsOf } from "../orchestrator/failure-detection.js";
import { resolveHealthOptions } from "../orchestrator/health.js";
import { ConnectionQueries, type ConnectionFilter, type HeldConnection } from "./connection-queries.js";
import { MemberReports, type MemberCounters, type MemberCountersInput, type VerifyView } from "./member-reports.js";
import { HypersyncVersions } from "./hypersync-versions.js";
import type { DistributorGroupConfig, InterfaceConfig, MemberConfig, MemberEndpoints } from "./cluster-config.js";
import type { Endpoint } from "./member-link.js";
import type { DistributorLoad } from "./distributor.js";
import { DistributorWatch, meanServingCpuPct, type DistributorLoadView } from "./distributor-watch.js";
import { ADMIN_TOKEN_NAME, hashToken, isRole, newTokenSecret, tokenDocument, TOKENS_MAX, TokenRegistry, type Principal, type Role, type TokenInfo } from "./tokens.js";

export const ADMIN_TOKEN_FILE = "admin-token";
export const TICK_INTERVAL_MS_DEFAULT = 20;
/** Steps one pump runs before yielding to the event loop (requests, heartbeats). */
export const PUMP_STEPS_MAX = 64;
/**
 * A step or a timer turn that took longer than this means this process was not reading its
 * sockets: heartbeats may be waiting unread, so member silence is not judged until
 * HEALTH_GRACE_MS after such a stall (our own stall must not fail members over).
 */
export const STALL_MS = 60;
export const HEALTH_GRACE_MS = 100;
/** The autoscaler decides this often (its windows are tens of seconds; see autoscaler.ts). */
export const AUTOSCALE_EVALUATE_MS = 1000;
/** How long close() waits for the queue to drain. */
export const CLOSE_DRAIN_MS_MAX = 5_000;

export interface RuntimeClock {
  /** Monotonic milliseconds (health, timeouts). */
  nowMs(): number;
  /** Wall clock, for records people read. */
  nowIso(): string;
}

export const SYSTEM_CLOCK: RuntimeClock = {
  nowMs: () => performance.now(),
  nowIso: () => new Date().toISOString(),
};

export interface OrchestratorDaemonOptions {
  /** Holds admin-token (and tandem.db with the SQLite store). */
  dataDir: string;
  /** Default: SQLite in dataDir. */
  store?: StoreOptions;
  /** An already opened store (tests, embedding); overrides `store`. */
  opened?: OpenedStore;
  controlPlane?: Omit<ControlPlaneOptions, "seedSource">;
  tickIntervalMs?: number;
  verifyTimeoutMs?: number;
  /** Names this instance in leader elections (default: random). */
  instanceId?: string;
  /** Replace the "admin" token at start (when the admin-token file was lost). */
  resetAdminToken?: boolean;
  logger?: Logger;
  clock?: RuntimeClock;
  /** The data path (started by the caller): the daemon keeps its tables current. */
  distributor?: DistributorPort;
}

/** What the daemon needs of the distributor (src/runtime/distributor.ts). */
export interface DistributorPort {
  readonly vxlan: Endpoint;
  readonly memberLink: Endpoint;
  update(groups: DistributorGroupConfig[]): void;
  stats(): Promise<unknown>;
  /** Load samples of the distributor's thread (about once a second): judged by distributorWatch. */
  onLoad?(listener: (load: DistributorLoad) => void): void;
  close(): Promise<void>;
}

/** The cluster's identity and secret (store collection "meta", document "cluster"). */
interface ClusterIdentity {
  clusterId: number;
  key: string; // base64, 32 bytes
}

export { CAPACITY_MAX, CAPACITY_MIN, capacityOfMemory } from "../orchestrator/model.js";

/**
 * The control plane's options: a fresh secure seed source, and failure detection from the
 * members' measured round trips (failure-detection.ts: the configured downAfterMs is the floor)
 * unless the caller installed its own downAfterMsOf hook (null: the constant).
 */
function controlPlaneOptionsOf(options: OrchestratorDaemonOptions["controlPlane"]): ControlPlaneOptions {
  const health = options?.health ?? {};
  const downAfterMsOf = health.downAfterMsOf !== undefined ? health.downAfterMsOf : measuredDownAfterMsOf(resolveHealthOptions(health));
  return { ...options, health: { ...health, downAfterMsOf }, seedSource: () => randomInt(0, 2 ** 32) >>> 0 };
}

/**
 * HyperSync ids of a group's members: 1 + FNV-1a(id) mod 65535, probing upward past a taken
 * id in appliance-id order. Stable while no two members of the group collide (p ~ n^2/131070).
 */
export function memberIdsOf(appliances: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  const taken = new Set<number>();
  for (const a of [...appliances].sort()) {
    let h = 0x811c9dc5;
    for (let i = 0; i < a.length; i++) h = Math.imul(h ^ a.charCodeAt(i), 0x01000193) >>> 0;
    let id = 1 + (h % 65535);
    while (taken.has(id)) id = id === 65535 ? 1 : id + 1;
    taken.add(id);
    out.set(a, id);
  }
  return out;
}

export type DaemonState = "standby" | "active" | "closed";

/** A member's heartbeat as the API receives it. */
export interface HeartbeatInput {
  epoch?: number;
  policyRevision?: number;
  cpuPct?: number;
  packetsPerSec?: number;
  connections?: number;
  rttMs?: number;
  counters?: MemberCountersInput;
  /** The member's data-path sockets ("ip:port"). */
  endpoints?: MemberEndpoints;
  /** HyperSync session (grows across restarts of the member process). */
  session?: number;
  /** Hits per policy rule name since the member loaded the policy. */
  ruleHits?: Record<string, number>;
  /** The member's operating-system process id (for operators and `tandem status`). */
  pid?: number;
  /** HyperSync protocol versions the member's node reads (src/hypersync/protocol-version.ts). */
  hypersync?: { min: number; max: number };
  /** The software version the member process runs. */
  version?: string;
  /** Why the last restart the orchestrator asked for (rolling upgrade) could not happen. */
  restartError?: string;
}

/** What a member learns from each heartbeat: what it should run. */
export interface HeartbeatAnswer {
  appliance: string;
  group: string | null;
  state: string;
  /** The epoch its group routes by (fetch the distribution when yours differs); null: no table. */
  epoch: number | null;
  policyRevision: number | null;
  transition: { seq: number; kind: string; phase: string } | null;
  heartbeatIntervalMs: number;
  /** A verification round it should answer. */
  verify: { id: number; epoch: number } | null;
  /** A connection lookup it should answer (POST /api/members/:appliance/connections). */
  connectionQuery: ({ id: number } & ConnectionFilter) | null;
  /** Rolling upgrade: restart on this version (the member's appliance agent does it). */
  restart: { version: string } | null;
  /** Why the orchestrator does not count this heartbeat (e.g. a version its group does not run); null: counted. */
  refused: string | null;
}

/** A group's routing table and fill map, for members and the distributor (JSON-friendly). */
export interface DistributionDocument {
  group: string;
  epoch: number;
  seed: number;
  bucketCount: number;
  members: string[];
  weights: number[];
  /** Owner and backup member index per bucket: base64 of little-endian int16 (-1: none). */
  owner: string;
  backup: string;
  /** Buckets whose state the owner must also send to these members (a running transition). */
  fills: { bucket: number; to: string[] }[];
  /** HyperSync id of every member of the group (table or not). */
  memberIds: Record<string, number>;
  /** Data-path sockets of every member of the group, as last reported (null: not yet). */
  endpoints: Record<string, MemberEndpoints | null>;
  /** HyperSync protocol version members seal with: the highest one every member of the group reads. */
  hypersyncVersion: number;
}

/** A connection lookup: at least one address; absent fields match anything. */
export interface ConnectionFind {
  group?: string;
  protocol?: number | "tcp" | "udp" | "icmp" | "icmpv6";
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
}

/** A connection (or, for a full 5-tuple with no live connection, where it would live). */
export interface ConnectionLocation extends FlowLocation {
  ownerState: string | null;
  backupState: string | null;
  protocol: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** State of the owner's copy (or any holder's); null: no member holds the flow. */
  state: string | null;
  expiresInMs: number | null;
  /** Every member holding a copy, with its role for the bucket. */
  heldBy: { member: string; role: string; state: string }[];
  /** Every asked member answered. */
  complete: boolean;
}

const PROTOCOL_BY_NAME: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

/** One spelling per address, so member answers and queries compare as strings. */
function normalIp(text: string): string {
  const b = parseIp(text);
  assert(b !== null, "validated before");
  return formatIp(b);
}

export interface SyncMemberStatus {
  appliance: string;
  state: string;
  alive: boolean;
  reportedEpoch: number | null;
  /** Epochs behind the group (null: never reported). */
  epochLag: number | null;
  policyRevision: number | null;
  policyLag: number | null;
  syncLagMs: number | null;
  heartbeatAgeMs: number | null;
}

export interface SyncStatus {
  group: string;
  epoch: number;
  policyRevision: number;
  transition: { kind: string; seq: number; progress: number } | null;
  inSync: boolean;
  members: SyncMemberStatus[];
}

interface Waiter {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

const TOKEN_COMMANDS = ["token.create", "token.revoke"] as const;
/** Runtime-internal: commits an events-only mutation (recordEvent). Not an operator command. */
const RECORD_EVENT_COMMAND = "event.record";

export class OrchestratorDaemon {
  readonly instanceId: string;
  readonly logger: Logger;
  readonly clock: RuntimeClock;
  readonly reports: MemberReports;
  readonly startedAt: string;
  private stateValue: DaemonState = "standby";
  private cp: ControlPlane | null = null;
  private tokens = new TokenRegistry();
  private storeRevisionValue = 0;
  private readonly waiters = new Map<number, Waiter>();
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private needResync = false;
  private ticker: NodeJS.Timeout | null = null;
  private readonly effectListeners: ((effect: Effect) => void)[] = [];
  private readonly commandCounts = { ok: 0, refused: 0, failed: 0, ticks: 0 };
  private cluster: ClusterIdentity | null = null;
  /** Soft state from heartbeats: data-path sockets, session, rule hits per appliance. */
  private readonly endpoints = new Map<string, MemberEndpoints & { session: number | null }>();
  private readonly pids = new Map<string, number>();
  private readonly queries = new ConnectionQueries();
  readonly autoscaler = new Autoscaler();
  private lastAutoscaleMs = 0;
  private autoscaling = false;
  private readonly ruleHits = new Map<string, Record<string, number>>();
  /** The distributor's load, and whether it rather than the members limits throughput. */
  readonly distributorWatch = new DistributorWatch();
  /** Soft state from heartbeats: HyperSync protocol version ranges, and each group's version. */
  private readonly hypersyncVersions: HypersyncVersions;
  /** Soft state of rolling upgrades: versions members report, restart errors, verify rounds of the driver. */
  private readonly upgrades = new UpgradeRunner(this);
  /** Weights from measured capacity for groups that mix models (capacity-runner.ts). */
  readonly capacityWeights = new CapacityRunner(this);

  private constructor(
    readonly options: OrchestratorDaemonOptions,
    readonly store: Store,
    readonly leadership: Leadership,
  ) {
    this.instanceId = options.instanceId ?? `orchestrator-${randomBytes(6).toString("hex")}`;
    this.logger = options.logger ?? pino({ level: "info" }, pino.destination(2));
    this.clock = options.clock ?? SYSTEM_CLOCK;
    this.reports = new MemberReports(options.verifyTimeoutMs);
    this.hypersyncVersions = new HypersyncVersions(this.logger);
    this.startedAt = this.clock.nowIso();
    options.distributor?.onLoad?.((load) => this.onDistributorLoad(load));
  }

  /** Opens the store; the daemon is a standby until start() wins leadership. */
  static async open(options: OrchestratorDaemonOptions): Promise<OrchestratorDaemon> {
    const storeOptions: StoreOptions = options.store ?? { kind: "sqlite", dataDir: options.dataDir };
    const { store, leadership } = options.opened ?? (await openStore(storeOptions));
    return new OrchestratorDaemon(options, store, leadership);
  }

  get state(): DaemonState {
    return this.stateValue;
  }

  get role(): "active" | "standby" {
    return this.stateValue === "active" ? "active" : "standby";
  }

  get storeRevision(): number {
    return this.storeRevisionValue;
  }

  get storeKind(): "sqlite" | "etcd" {
    return this.store.kind;
  }

  /** The control plane (active only: a standby refuses with TANDEM_NOT_LEADER). */
  get controlPlane(): ControlPlane {
    if (this.stateValue !== "active" || this.cp === null) {
      throw new TandemError(ErrorCode.NOT_LEADER, `this orchestrator (${this.instanceId}) is ${this.stateValue === "closed" ? "shutting down" : "a standby"}; use the active one`);
    }
    return this.cp;
  }

  nowMs(): number {
    return this.clock.nowMs();
  }

  /** Throws TANDEM_NOT_LEADER unless active. */
  requireActive(): void {
    void this.controlPlane;
  }

  onEffect(listener: (effect: Effect) => void): void {
    this.effectListeners.push(listener);
  }

  /**
   * Campaigns for leadership and activates: loads the store, builds the control plane, makes
   * the first admin token when there is none (returned: print it once), starts the ticker.
   * Resolves once active (at once with SQLite). Leadership lost later: back to standby, campaign again.
   */
  async start(): Promise<{ adminToken: string | null }> {
    assert(this.stateValue === "standby", "start() once");
    this.leadership.onLost(() => this.deactivate("leadership lost"));
    await this.leadership.campaign(this.instanceId);
    return this.activate();
  }

  private async activate(): Promise<{ adminToken: string | null }> {
    const snapshot = await this.store.load();
    const cp = new ControlPlane(snapshot, controlPlaneOptionsOf(this.options.controlPlane));
    this.tokens = TokenRegistry.fromDocuments(snapshot.collections.tokens);
    this.storeRevisionValue = snapshot.revision;
    this.cp = cp;
    this.cluster = await this.ensureCluster(snapshot.collections.meta);
    let adminToken: string | null = null;
    if (this.tokens.size === 0 || this.options.resetAdminToken === true) adminToken = await this.createAdminToken();
    this.stateValue = "active";
    for (const effect of cp.startupEffects()) this.emit(effect);
    this.pushDistributor();
    const tickIntervalMs = this.options.tickIntervalMs ?? TICK_INTERVAL_MS_DEFAULT;
    assert(tickIntervalMs > 0, "tickIntervalMs must be positive");
    this.lastTimerMs = this.clock.nowMs();
    this.ticker = setInterval(() => {
      const now = this.clock.nowMs();
      if (now - this.lastTimerMs > tickIntervalMs + STALL_MS) this.stalled(now, now - this.lastTimerMs - tickIntervalMs);
      this.lastTimerMs = now;
      this.kick();
      if (now - this.lastAutoscaleMs >= AUTOSCALE_EVALUATE_MS) {
        this.lastAutoscaleMs = now;
        void this.autoscale(now);
      }
      void this.upgrades.tick(now);
      void this.capacityWeights.tick(now);
    }, tickIntervalMs);
    this.ticker.unref();
    this.logger.info({ instance: this.instanceId, revision: snapshot.revision, store: this.store.kind }, "orchestrator active");
    return { adminToken };
  }

  /** The cluster id and key, made once (the first start) and kept in the store. */
  private async ensureCluster(meta: readonly { id: string; [field: string]: unknown }[]): Promise<ClusterIdentity> {
    const doc = meta.find((d) => d.id === "cluster");
    if (doc !== undefined && typeof doc.clusterId === "number" && typeof doc.key === "string") return { clusterId: doc.clusterId, key: doc.key };
    const identity: ClusterIdentity = { clusterId: randomInt(1, 2 ** 31), key: randomBytes(32).toString("base64") };
    const at = this.clock.nowIso();
    this.storeRevisionValue = await this.store.commit({
      puts: [{ collection: "meta", doc: { id: "cluster", ...identity } }],
      deletes: [],
      audit: [{ at, actor: "system", command: "cluster.create", args: { clusterId: identity.clusterId }, result: "ok" }],
      events: [{ at, kind: "cluster.created", message: `cluster ${identity.clusterId} created with a new HyperSync key` }],
    });
    return identity;
  }

  /** Written to the file first, then committed: a crash in between only leaves an unused file. */
  private async createAdminToken(): Promise<string> {
    const secret = newTokenSecret();
    mkdirSync(this.options.dataDir, { recursive: true, mode: 0o700 });
    const file = join(this.options.dataDir, ADMIN_TOKEN_FILE);
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, `${secret}\n`, { mode: 0o600 });
    chmodSync(temporary, 0o600);
    renameSync(temporary, file);
    const info: TokenInfo = { name: ADMIN_TOKEN_NAME, role: "admin", createdAt: this.clock.nowIso(), createdBy: "system" };
    const sha256 = hashToken(secret);
    const revision = await this.store.commit({
      puts: [{ collection: "tokens", doc: tokenDocument(info, sha256) }],
      deletes: [],
      audit: [{ at: info.createdAt, actor: "system", command: "token.create", args: { name: info.name, role: info.role }, result: "ok" }],
      events: [{ at: info.createdAt, kind: "token.created", message: `admin token created (written to ${file})` }],
    });
    this.storeRevisionValue = revision;
    this.tokens.put(info, sha256);
    return secret;
  }

  private deactivate(why: string): void {
    if (this.stateValue !== "active") return;
    this.logger.warn({ instance: this.instanceId }, `orchestrator standing by: ${why}`);
    this.stateValue = "standby";
    this.stopTicker();
    this.options.distributor?.update([]); // a standby forwards nothing
    this.distributorWatch.reset();
    this.rejectWaiting(new TandemError(ErrorCode.NOT_LEADER, `this orchestrator lost leadership (${why}); retry against the active one`));
    this.cp = null;
    void this.pumpDone.then(async () => {
      try {
        await this.leadership.campaign(this.instanceId);
        if (this.stateValue === "standby") await this.activate();
      } catch (error) {
        this.logger.error({ err: error }, "campaign after losing leadership failed");
      }
    });
  }

  /** Stops the ticker, lets the queue drain (bounded), resigns and closes the store. */
  async close(): Promise<void> {
    if (this.stateValue === "closed") return;
    this.stopTicker();
    this.queries.close();
    const wasActive = this.stateValue === "active";
    const deadline = this.clock.nowMs() + CLOSE_DRAIN_MS_MAX;
    while (wasActive && this.cp !== null && this.cp.queue.waitingCount > 0 && this.clock.nowMs() < deadline) {
      this.kick();
      await this.pumpDone;
      if (this.cp !== null && this.cp.queue.waitingCount > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.stateValue = "closed";
    await this.pumpDone;
    this.rejectWaiting(new TandemError(ErrorCode.NOT_LEADER, "the orchestrator is shutting down"));
    if (wasActive) await this.leadership.resign();
    await this.store.close();
    this.logger.info({ instance: this.instanceId }, "orchestrator closed");
  }

  private stopTicker(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  // ---- commands ---------------------------------------------------------------------------

  /** Runs an operator command through the queue; resolves with its result once durable. */
  submit(command: OperatorCommand, input: unknown, actor: string): Promise<unknown> {
    return this.enqueue(command, input, actor);
  }

  /** Runs a system command (the upgrade driver's steps) through the same queue. */
  submitSystem(command: "upgrade.step" | "weights.measured", input: unknown, actor: string): Promise<unknown> {
    return this.enqueue(command, input, actor);
  }

  private enqueue(command: string, input: unknown, actor: string): Promise<unknown> {
    const cp = this.controlPlane;
    return new Promise((resolve, reject) => {
      const ticket = cp.queue.enqueue({ command, input, actor }); // TANDEM_BUSY when full
      this.waiters.set(ticket, { resolve, reject });
      this.kick();
    });
  }

  /** Starts the loop unless it runs; it stops when nothing is waiting and no tick is due. */
  kick(): void {
    if (this.pumping || this.stateValue !== "active") return;
    this.pumping = true;
    this.pumpDone = this.pump().finally(() => {
      this.pumping = false;
    });
  }

  private lastTimerMs = 0;
  private healthGraceUntilMs = 0;
  readonly stalls = { count: 0, longestMs: 0 };

  /** This process did not read its sockets for `ms`: give heartbeats time to be read. */
  private stalled(nowMs: number, ms: number): void {
    this.stalls.count++;
    this.stalls.longestMs = Math.max(this.stalls.longestMs, ms);
    this.healthGraceUntilMs = Math.max(this.healthGraceUntilMs, nowMs + HEALTH_GRACE_MS);
    this.logger.warn({ stallMs: Math.round(ms) }, "orchestrator stalled; member silence not judged for a moment");
  }

  private async pump(): Promise<void> {
    for (let steps = 0; steps < PUMP_STEPS_MAX && this.stateValue === "active" && this.cp !== null; steps++) {
      if (this.needResync && !(await this.resync())) return;
      const cp = this.cp;
      const startedMs = this.clock.nowMs();
      // Health first (a DOWN member is failed over before the next operator command), then one
      // command. No health tick while heartbeats may sit unread after a stall of ours.
      const tick = startedMs < this.healthGraceUntilMs ? null : cp.tick(this.ctx("system"));
      if (tick !== null) {
        this.commandCounts.ticks++;
        await this.commitStep(tick, null);
      } else {
        const item = cp.queue.next();
        if (item === null) return;
        await this.runItem(cp, item);
      }
      const tookMs = this.clock.nowMs() - startedMs;
      if (tookMs > STALL_MS) {
        // Let the event loop read sockets (heartbeats) before the next step.
        this.stalled(this.clock.nowMs(), tookMs);
        setImmediate(() => this.kick());
        return;
      }
    }
    if (this.stateValue === "active" && this.cp !== null && this.cp.queue.waitingCount > 0) setImmediate(() => this.kick());
  }

  private ctx(actor: string): { actor: string; nowMs: number; nowIso: string } {
    return { actor, nowMs: this.clock.nowMs(), nowIso: this.clock.nowIso() };
  }

  private takeWaiter(ticket: number): Waiter {
    const waiter = this.waiters.get(ticket);
    assert(waiter !== undefined, `no caller waits for ticket ${ticket}`);
    this.waiters.delete(ticket);
    return waiter;
  }

  private async runItem(cp: ControlPlane, item: QueuedCommand): Promise<void> {
    const waiter = this.takeWaiter(item.ticket);
    if ((TOKEN_COMMANDS as readonly string[]).includes(item.command)) {
      await this.runTokenCommand(item, waiter);
      return;
    }
    if (item.command === RECORD_EVENT_COMMAND) {
      await this.runRecordEvent(item, waiter);
      return;
    }
    let step: PreparedStep;
    try {
      step = cp.prepare(item.command, item.input, this.ctx(item.actor));
    } catch (error) {
      // An assertion in a handler: a bug. Answer the caller, then crash (the store is intact).
      waiter.reject(new TandemError(ErrorCode.INTERNAL, `internal error running ${item.command}`));
      this.crash(error);
      return;
    }
    await this.commitStep(step, waiter);
  }

  /** commit -> confirm | abort, then answer and perform effects. */
  private async commitStep(step: PreparedStep, waiter: Waiter | null): Promise<void> {
    const cp = this.cp!;
    let revision: number;
    try {
      revision = await this.store.commit(step.mutation);
    } catch (error) {
      cp.abort(step);
      this.commandCounts.failed++;
      const failure = this.commitFailure(error, step.command);
      waiter?.reject(failure);
      return;
    }
    cp.confirm(step, revision);
    this.storeRevisionValue = revision;
    if (step.ok) this.commandCounts.ok++;
    else this.commandCounts.refused++;
    this.reports.retain((a) => cp.current.appliances.has(a));
    const log = { command: step.command, actor: step.actor, revision, ok: step.ok, ...(step.error ? { code: step.error.code } : {}) };
    if (step.command !== "health.tick") this.logger.info(log, step.ok ? "command applied" : "command refused");
    else this.logger.info({ ...log, result: step.result }, "health tick applied");
    if (waiter !== null) {
      if (step.ok) waiter.resolve(step.result);
      else waiter.reject(step.error);
    }
    for (const effect of step.effects) this.emit(effect);
  }

  private commitFailure(error: unknown, command: string): TandemError {
    if (error instanceof TandemError && error.code === ErrorCode.NOT_LEADER) {
      this.deactivate("the store refused a commit: not the leader");
      return error;
    }
    this.needResync = true;
    this.logger.error({ err: error, command }, "store commit failed; reloading before the next commit");
    if (error instanceof TandemError) return error;
    return new TandemError(ErrorCode.STORE_UNAVAILABLE, `the store failed while committing ${command} (the outcome is unknown): ${(error as Error).message}`);
  }

  /** After a failed commit: reload; rebuild the control plane when the store moved. False: still failing. */
  private async resync(): Promise<boolean> {
    try {
      const snapshot = await this.store.load();
      if (snapshot.revision !== this.storeRevisionValue) {
        const old = this.cp!;
        const cp = new ControlPlane(snapshot, controlPlaneOptionsOf(this.options.controlPlane));
        // Keep the callers waiting, in order.
        for (let item = old.queue.next(); item !== null; item = old.queue.next()) {
          const waiter = this.takeWaiter(item.ticket);
          const ticket = cp.queue.enqueue({ command: item.command, input: item.input, actor: item.actor });
          this.waiters.set(ticket, waiter);
        }
        this.cp = cp;
        this.tokens = TokenRegistry.fromDocuments(snapshot.collections.tokens);
        this.logger.warn({ from: this.storeRevisionValue, to: snapshot.revision }, "store moved under a failed commit: control plane rebuilt");
        this.storeRevisionValue = snapshot.revision;
      }
      this.needResync = false;
      return true;
    } catch (error) {
      this.logger.error({ err: error }, "store reload failed; refusing waiting commands");
      this.rejectWaiting(error instanceof TandemError ? error : new TandemError(ErrorCode.STORE_UNAVAILABLE, `the store is unavailable: ${(error as Error).message}`));
      return false;
    }
  }

  private rejectWaiting(error: TandemError): void {
    const cp = this.cp;
    if (cp !== null) for (let item = cp.queue.next(); item !== null; item = cp.queue.next()) this.takeWaiter(item.ticket).reject(error);
    for (const [ticket, waiter] of this.waiters) {
      this.waiters.delete(ticket);
      waiter.reject(error);
    }
  }

  private emit(effect: Effect): void {
    this.logger.debug({ effect }, "effect");
    for (const listener of this.effectListeners) listener(effect);
    this.pushDistributorSoon();
  }

  private pushQueued = false;
  /** One distributor update per burst of effects (a step may emit several). */
  private pushDistributorSoon(): void {
    if (this.pushQueued || this.options.distributor === undefined) return;
    this.pushQueued = true;
    queueMicrotask(() => {
      this.pushQueued = false;
      this.pushDistributor();
    });
  }

  private crash(error: unknown): void {
    this.logger.fatal({ err: error }, "programmer error in the control plane; crashing (the store is intact: restart)");
    queueMicrotask(() => {
      throw error;
    });
  }

  // ---- tokens -----------------------------------------------------------------------------

  /**
   * Throws TANDEM_NOT_LEADER unless active: a standby has not loaded the tokens (they live in
   * the store), so it would call every valid token unknown (401) instead of sending the caller on.
   */
  authenticate(secret: string): Principal | null {
    this.requireActive();
    return this.tokens.authenticate(secret);
  }

  listTokens(): TokenInfo[] {
    this.requireActive();
    return this.tokens.list();
  }

  /** Creates a token; resolves with its secret (shown once) after the commit. */
  async createToken(name: string, role: Role, actor: string): Promise<{ name: string; role: Role; token: string }> {
    const secret = newTokenSecret();
    await this.enqueue("token.create", { name, role, sha256: hashToken(secret) }, actor);
    return { name, role, token: secret };
  }

  async revokeToken(name: string, actor: string): Promise<{ name: string }> {
    await this.enqueue("token.revoke", { name }, actor);
    return { name };
  }

  private async runTokenCommand(item: QueuedCommand, waiter: Waiter): Promise<void> {
    const at = this.clock.nowIso();
    const input = item.input as { name: string; role?: Role; sha256?: string };
    const audit: AuditRecord = { at, actor: item.actor, command: item.command, args: { name: input.name, ...(input.role ? { role: input.role } : {}) }, result: "ok" };
    const mutation: Mutation = { puts: [], deletes: [], audit: [audit], events: [] };
    let refusal: TandemError | null = null;
    let apply: () => void = () => {};
    try {
      apply = this.prepareToken(item, input, at, mutation);
    } catch (error) {
      if (!(error instanceof TandemError)) throw error;
      refusal = error;
      audit.result = "error";
      audit.code = error.code;
      audit.message = error.message;
    }
    let revision: number;
    try {
      revision = await this.store.commit(mutation);
    } catch (error) {
      waiter.reject(this.commitFailure(error, item.command));
      return;
    }
    this.storeRevisionValue = revision;
    this.logger.info({ command: item.command, actor: item.actor, name: input.name, revision, ok: refusal === null }, "token command");
    if (refusal !== null) {
      waiter.reject(refusal);
      return;
    }
    apply();
    waiter.resolve(null);
  }

  /** Checks a token command and fills its mutation; returns what to apply after the commit. Throws TandemError. */
  private prepareToken(item: QueuedCommand, input: { name: string; role?: Role; sha256?: string }, at: string, mutation: Mutation): () => void {
    checkName(input.name, "name");
    if (item.command === "token.create") {
      const role = input.role;
      const sha256 = input.sha256;
      if (!isRole(role) || typeof sha256 !== "string") throw new TandemError(ErrorCode.INVALID_ARGUMENT, "role: must be admin, operator, monitor or member", { field: "role" });
      if (this.tokens.has(input.name)) throw new TandemError(ErrorCode.CONFLICT, `a token named ${input.name} exists; revoke it first`, { name: input.name });
      if (this.tokens.size >= TOKENS_MAX) throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `at most ${TOKENS_MAX} tokens`);
      const info: TokenInfo = { name: input.name, role, createdAt: at, createdBy: item.actor };
      mutation.puts.push({ collection: "tokens", doc: tokenDocument(info, sha256) });
      mutation.events.push({ at, kind: "token.created", message: `token ${info.name} (${info.role}) created by ${item.actor}` });
      return () => this.tokens.put(info, sha256);
    }
    const info = this.tokens.infoOf(input.name);
    if (info === null) throw new TandemError(ErrorCode.NOT_FOUND, `no token named ${input.name}`, { name: input.name });
    if (info.role === "admin" && this.tokens.adminCount() === 1) {
      throw new TandemError(ErrorCode.CONFLICT, `${input.name} is the last admin token; create another admin token first`, { name: input.name });
    }
    mutation.deletes.push({ collection: "tokens", id: input.name });
    mutation.events.push({ at, kind: "token.revoked", message: `token ${input.name} revoked by ${item.actor}` });
    return () => this.tokens.remove(input.name);
  }

  // ---- auto-scaling ---------------------------------------------------------------------------

  /**
   * One evaluation of the autoscaler (src/orchestrator/autoscaler.ts) over every group (one
   * that has not enabled it is only measured: its window shows in GET .../autoscale, and
   * switching it on never judges a window that saw a transition): an action becomes ordinary
   * commands through the queue, staged then applied (make-before-break), audited with the
   * actor "autoscaler: <reason>" so events, CLI and UI say why. Spares are pool appliances
   * that heartbeat (a member process is running).
   */
  private async autoscale(nowMs: number): Promise<void> {
    if (this.autoscaling || this.stateValue !== "active" || this.cp === null) return;
    const cp = this.cp;
    const view = cp.view();
    const appliances = view.appliances(nowMs);
    const byId = new Map(appliances.map((a) => [a.id, a]));
    const groups: AutoscaleGroupInput[] = [];
    for (const g of [...cp.current.groups.values()].sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const members = view.members(g.name, nowMs);
      const serving = members.filter((m) => m.inTable && m.state === "UP").map((m) => m.appliance);
      const first = byId.get(members[0]?.appliance ?? "");
      const pending = (view.group(g.name, nowMs) as { pendingChanges: number }).pendingChanges;
      groups.push({
        name: g.name,
        rules: g.autoscale,
        allowMixedModels: g.allowMixedModels,
        model: first?.model ?? "",
        version: first?.version ?? "",
        members: serving,
        busy: g.transition !== null || pending > 0 || g.upgrade !== null || members.some((m) => m.state === "JOINING" || m.state === "DRAINING"),
      });
    }
    if (groups.length === 0) return;
    const pool: SpareAppliance[] = appliances.filter((a) => a.group === null && a.alive).map((a) => ({ id: a.id, model: a.model, version: a.version, cores: a.cores }));
    this.autoscaling = true;
    try {
      for (const decision of this.autoscaler.evaluate(nowMs, groups, pool)) {
        const action = decision.action;
        if (action === null) continue;
        const actor = `autoscaler: ${action.reason}`;
        this.logger.info({ group: action.group, appliance: action.appliance, kind: action.kind, reason: action.reason }, "autoscaler acts");
        try {
          if (action.kind === "add") await this.submit("sg.assign", { group: action.group, appliance: action.appliance }, actor);
          else await this.submit("sg.unassign", { group: action.group, appliance: action.appliance }, actor);
          await this.submit("changes.apply", { group: action.group }, actor);
        } catch (error) {
          this.logger.warn({ err: error, group: action.group, appliance: action.appliance }, "autoscaler action refused");
        }
      }
    } finally {
      this.autoscaling = false;
    }
  }

  // ---- the distributor's load ------------------------------------------------------------------

  /** The distributor's load view (null: this orchestrator runs no distributor). */
  distributorLoad(): DistributorLoadView | null {
    return this.options.distributor === undefined ? null : this.distributorWatch.view();
  }

  /** A load sample of the distributor: judged against the served members' CPU while active. */
  private onDistributorLoad(load: DistributorLoad): void {
    if (this.stateValue !== "active" || this.cp === null) return this.distributorWatch.note(load);
    const view = this.cp.view();
    const nowMs = this.clock.nowMs();
    // The groups the distributor serves: those with a routing table.
    const served = [...this.cp.current.groups.keys()].filter((g) => view.epochTable(g) !== null);
    const members = served.flatMap((g) => view.members(g, nowMs));
    const cpuPct = meanServingCpuPct(members.map((m) => ({ alive: m.alive, inTable: m.inTable, state: m.state, cpuPct: m.load?.cpuPct ?? null })));
    const change = this.distributorWatch.observe(load, cpuPct, this.clock.nowIso());
    if (change === null) return;
    this.logger[change.limited ? "warn" : "info"]({ utilization: change.utilization, framesPerSec: change.framesPerSec, memberCpuPct: change.memberCpuPct }, change.message);
    const data = { utilization: change.utilization, framesPerSec: change.framesPerSec, memberCpuPct: change.memberCpuPct, heldMs: change.heldMs };
    this.recordEvent({ at: this.clock.nowIso(), kind: change.kind, message: change.message, data });
  }

  /**
   * Records an event the runtime observed (no operator command caused it): an events-only
   * mutation committed through the mutation loop like every other, so it is ordered with them
   * and never races a commit. Best effort: a full queue or a failed commit is logged.
   */
  recordEvent(event: EventRecord): void {
    let ticket: number;
    try {
      ticket = this.controlPlane.queue.enqueue({ command: RECORD_EVENT_COMMAND, input: event, actor: "system" });
    } catch (error) {
      this.logger.warn({ err: error, kind: event.kind }, "event not recorded");
      return;
    }
    const failed = (error: unknown): void => this.logger.warn({ err: error, kind: event.kind }, "event not recorded");
    this.waiters.set(ticket, { resolve: () => {}, reject: failed });
    this.kick();
  }

  private async runRecordEvent(item: QueuedCommand, waiter: Waiter): Promise<void> {
    const mutation: Mutation = { puts: [], deletes: [], audit: [], events: [item.input as EventRecord] };
    try {
      this.storeRevisionValue = await this.store.commit(mutation);
    } catch (error) {
      waiter.reject(this.commitFailure(error, item.command));
      return;
    }
    waiter.resolve(null);
  }

  // ---- member traffic (soft state) ----------------------------------------------------------

  heartbeat(appliance: string, input: HeartbeatInput): HeartbeatAnswer {
    const cp = this.controlPlane;
    const nowMs = this.clock.nowMs();
    const refused = this.upgrades.onHeartbeat(appliance, input.version, input.restartError);
    if (refused !== null) return this.refusedAnswer(appliance, refused);
    cp.heartbeat(
      {
        appliance,
        epoch: input.epoch,
        policyRevision: input.policyRevision,
        cpuPct: input.cpuPct,
        packetsPerSec: input.packetsPerSec,
        connections: input.connections,
        rttMs: input.rttMs,
      },
      nowMs,
    );
    this.reports.record(appliance, input.counters, nowMs);
    if (input.ruleHits !== undefined) this.ruleHits.set(appliance, input.ruleHits);
    if (input.cpuPct !== undefined) {
      this.autoscaler.record(appliance, {
        atMs: nowMs,
        cpuPct: input.cpuPct,
        packetsPerSec: input.packetsPerSec ?? 0,
        connections: input.connections ?? 0,
        syncLagMs: input.counters?.syncLagMs ?? 0,
      });
    }
    if (input.pid !== undefined) this.pids.set(appliance, input.pid);
    if (input.hypersync !== undefined) this.hypersyncVersions.report(appliance, input.hypersync);
    if (input.endpoints !== undefined) {
      const before = this.endpoints.get(appliance);
      const session = input.session ?? null;
      if (before === undefined || before.data !== input.endpoints.data || before.sync !== input.endpoints.sync || before.session !== session) {
        this.endpoints.set(appliance, { data: input.endpoints.data, sync: input.endpoints.sync, session });
        this.endpointsVersion++;
        this.logger.info({ appliance, ...input.endpoints, session }, "member endpoints");
        this.pushDistributorSoon();
      }
    }
    const member = cp.current.members.get(appliance);
    const group = member === undefined ? undefined : cp.current.groups.get(member.group);
    // Cheap on purpose (every member, every heartbeat): the record and the cached plan, not the full transition view.
    const t = group?.transition ?? null;
    return {
      appliance,
      group: member?.group ?? null,
      state: member?.state ?? "UNASSIGNED",
      epoch: group === undefined || (group.tableMembers.length === 0 && t === null) ? null : group.epoch,
      policyRevision: group?.policyRevision ?? null,
      transition: t === null ? null : { seq: t.seq, kind: t.kind, phase: awaitedPhaseOf(planOf(group!)).kind === "fill" ? "fill" : "reprotect" },
      heartbeatIntervalMs: cp.health.options.heartbeatIntervalMs,
      verify: member === undefined ? null : this.reports.pendingFor(member.group, appliance, nowMs),
      connectionQuery: member === undefined ? null : this.queries.pendingFor(member.group, appliance),
      restart: this.upgrades.restartFor(appliance),
      refused: null,
    };
  }

  /** The answer to a heartbeat that is not counted: the member stays silent to the health tracker. */
  private refusedAnswer(appliance: string, reason: string): HeartbeatAnswer {
    const member = this.controlPlane.current.members.get(appliance);
    return {
      appliance,
      group: member?.group ?? null,
      state: member?.state ?? "UNASSIGNED",
      epoch: null,
      policyRevision: null,
      transition: null,
      heartbeatIntervalMs: this.controlPlane.health.options.heartbeatIntervalMs,
      verify: null,
      connectionQuery: null,
      restart: null,
      refused: reason,
    };
  }

  /** Rolling-upgrade view of a group (GET /api/groups/:name/upgrade). */
  upgradeStatus(group: string): UpgradeStatusView {
    return this.upgrades.status(group);
  }

  fillReport(appliance: string, report: { epoch: number; buckets: number[] }): FillAnswer {
    const cp = this.controlPlane;
    this.requireAppliance(appliance);
    const result = cp.fillReport({ appliance, epoch: report.epoch, buckets: report.buckets }, this.clock.nowMs());
    if (result.complete) this.kick();
    return result;
  }

  private distributionCache = new Map<string, { key: string; json: string }>();
  private endpointsVersion = 0;

  /**
   * The distribution document as JSON, made once per store revision, endpoint change and
   * HyperSync version range change: every member fetches it at each epoch and phase, and
   * during a join it lists ~65,536 fills.
   */
  distributionJson(group: string): string | null {
    const key = `${this.storeRevisionValue}|${this.endpointsVersion}|${this.hypersyncVersions.revision}`;
    const cached = this.distributionCache.get(group);
    if (cached !== undefined && cached.key === key) return cached.json;
    const doc = this.distribution(group);
    if (doc === null) return null;
    const json = JSON.stringify(doc);
    this.distributionCache.set(group, { key, json });
    if (this.distributionCache.size > 4096) this.distributionCache.delete(this.distributionCache.keys().next().value!);
    return json;
  }

  distribution(group: string): DistributionDocument | null {
    const d = this.controlPlane.view().distribution(group);
    if (d === null) return null;
    const fills: DistributionDocument["fills"] = [];
    for (const [bucket, to] of d.fills) fills.push({ bucket, to: [...to] });
    fills.sort((a, b) => a.bucket - b.bucket);
    const t = d.table;
    return {
      group,
      epoch: t.epoch,
      seed: t.seed,
      bucketCount: t.table.bucketCount,
      members: [...t.table.members],
      weights: [...t.table.weights],
      owner: encodeRoles(t.table.owner),
      backup: encodeRoles(t.table.backup),
      fills,
      ...this.peersOf(group),
      hypersyncVersion: this.hypersyncVersions.versionFor(group, this.groupMembers(group)),
    };
  }

  private groupMembers(group: string): string[] {
    const out: string[] = [];
    for (const m of this.controlPlane.current.members.values()) if (m.group === group) out.push(m.appliance);
    return out.sort();
  }

  private peersOf(group: string): { memberIds: Record<string, number>; endpoints: Record<string, MemberEndpoints | null> } {
    const memberIds: Record<string, number> = {};
    const endpoints: Record<string, MemberEndpoints | null> = {};
    for (const [a, id] of memberIdsOf(this.groupMembers(group))) {
      memberIds[a] = id;
      const e = this.endpoints.get(a);
      endpoints[a] = e === undefined ? null : { data: e.data, sync: e.sync };
    }
    return { memberIds, endpoints };
  }

  private interfacesOf(group: string): InterfaceConfig[] {
    const g = this.controlPlane.current.groups.get(group);
    if (g === undefined) return [];
    return g.interfaces.map((i, index) => ({ index, name: i.name, vni: i.vni, gateway: i.gateway, mac: i.mac, siteEndpoint: i.siteEndpoint, sitePort: i.sitePort }));
  }

  /** What a member process runs (GET /api/members/:appliance/config). */
  memberConfig(appliance: string): MemberConfig {
    const cp = this.controlPlane;
    const a = cp.current.appliances.get(appliance);
    if (a === undefined) throw new TandemError(ErrorCode.APPLIANCE_NOT_FOUND, `no appliance with id ${appliance}`, { appliance });
    assert(this.cluster !== null, "an active daemon knows its cluster");
    const member = cp.current.members.get(appliance);
    const g = member === undefined ? undefined : cp.current.groups.get(member.group);
    const ids = g === undefined ? null : memberIdsOf(this.groupMembers(g.name));
    const d = this.options.distributor;
    return {
      appliance,
      group: g?.name ?? null,
      memberId: ids?.get(appliance) ?? memberIdsOf([appliance]).get(appliance)!,
      clusterId: this.cluster.clusterId,
      clusterKey: this.cluster.key,
      hashSeed: g?.seed ?? 0,
      bucketCount: g?.bucketCount ?? 0,
      interfaces: g === undefined ? [] : this.interfacesOf(g.name),
      routes: g === undefined ? [] : g.routes.map((r) => ({ ...r })),
      policy: g?.policy ?? { rules: [] },
      policyRevision: g?.policyRevision ?? 0,
      distributor: d === undefined ? null : `${d.memberLink.address}:${d.memberLink.port}`,
      capacity: capacityOfMemory(a.memoryMb),
    };
  }

  /** Every group with a routing table, as the distributor forwards it. */
  distributorGroups(): DistributorGroupConfig[] {
    if (this.stateValue !== "active" || this.cp === null || this.cluster === null) return [];
    const cp = this.cp;
    const view = cp.view();
    const out: DistributorGroupConfig[] = [];
    const vnis = new Map<number, string>();
    for (const name of [...cp.current.groups.keys()].sort()) {
      const t = view.epochTable(name); // the routing table only: the fill map is the members' business
      if (t === null) continue;
      const interfaces = this.interfacesOf(name).filter((i) => {
        const other = vnis.get(i.vni);
        if (other !== undefined) {
          this.logger.warn({ group: name, vni: i.vni, other }, "VNI served by another group: not distributed");
          return false;
        }
        vnis.set(i.vni, name);
        return true;
      });
      out.push({
        group: name,
        interfaces,
        epoch: t.epoch,
        seed: t.seed,
        bucketCount: t.table.bucketCount,
        members: [...t.table.members],
        owner: t.table.owner,
        backup: t.table.backup,
        dataEndpoints: t.table.members.map((m) => this.endpoints.get(m)?.data ?? null),
        clusterKey: this.cluster.key,
      });
    }
    return out;
  }

  /** Sends the current tables to the distributor (after every epoch, config or endpoint change). */
  private pushDistributor(): void {
    const d = this.options.distributor;
    if (d === undefined) return;
    d.update(this.distributorGroups());
  }

  /** Hits per rule name summed over the group's members (as last reported). */
  ruleHitsOf(group: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const a of this.groupMembers(group)) {
      for (const [rule, n] of Object.entries(this.ruleHits.get(a) ?? {})) out[rule] = (out[rule] ?? 0) + n;
    }
    return out;
  }

  countersOf(appliance: string): MemberCounters | null {
    return this.reports.countersOf(appliance);
  }

  private requireAppliance(appliance: string): void {
    if (!this.controlPlane.current.appliances.has(appliance)) {
      throw new TandemError(ErrorCode.APPLIANCE_NOT_FOUND, `no appliance with id ${appliance}`, { appliance });
    }
  }

  // ---- verification -------------------------------------------------------------------------

  startVerify(group: string): VerifyView {
    const cp = this.controlPlane;
    const view = cp.view();
    const table = view.epochTable(group); // SG_NOT_FOUND
    const serving = view.members(group).filter((m) => m.inTable && (m.state === "UP" || m.state === "JOINING" || m.state === "DRAINING"));
    const nowMs = this.clock.nowMs();
    return this.reports.startVerify(group, table?.epoch ?? 0, serving.map((m) => m.appliance), nowMs, this.clock.nowIso());
  }

  verifyStatus(group: string, id: number): VerifyView {
    this.controlPlane.view().epochTable(group);
    return this.reports.verifyView(group, id, this.clock.nowMs());
  }

  verifyReport(appliance: string, report: { id: number; bucketsChecked: number; mismatched: number[] }): VerifyView {
    const cp = this.controlPlane;
    this.requireAppliance(appliance);
    const member = cp.current.members.get(appliance);
    if (member === undefined) throw new TandemError(ErrorCode.MEMBER_NOT_FOUND, `appliance ${appliance} is not a member of any security group`, { appliance });
    return this.reports.report(member.group, appliance, report.id, report.bucketsChecked, report.mismatched, this.clock.nowMs());
  }

  // ---- queries ------------------------------------------------------------------------------

  /**
   * Connections matching a query, asked of the members that hold them (any role). With a full
   * 5-tuple the flow's location in the table is always listed, live or not (state null).
   */
  async findConnections(query: ConnectionFind): Promise<ConnectionLocation[]> {
    const cp = this.controlPlane;
    const view = cp.view();
    const protocol = query.protocol === undefined ? undefined : typeof query.protocol === "number" ? query.protocol : PROTOCOL_BY_NAME[query.protocol];
    if (query.protocol !== undefined && (protocol === undefined || !Number.isInteger(protocol) || protocol < 0 || protocol > 255)) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `protocol must be tcp, udp, icmp, icmpv6 or 0-255, got ${String(query.protocol)}`, { field: "protocol" });
    }
    if (query.src === undefined && query.dst === undefined) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "give at least a source or a destination address", { field: "dst" });
    for (const field of ["src", "dst"] as const) {
      const v = query[field];
      if (v !== undefined && parseIp(v) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${field} ${v} is not an IP address`, { field });
    }
    const groups = query.group !== undefined ? [query.group] : [...cp.current.groups.keys()].filter((g) => view.epochTable(g) !== null).sort();
    const stateOf = (id: string | null): string | null => (id === null ? null : (cp.current.members.get(id)?.state ?? "UNASSIGNED"));
    const filter: ConnectionFilter = {};
    if (protocol !== undefined) filter.protocol = protocol;
    if (query.src !== undefined) filter.src = normalIp(query.src);
    if (query.dst !== undefined) filter.dst = normalIp(query.dst);
    if (query.srcPort !== undefined) filter.srcPort = query.srcPort;
    if (query.dstPort !== undefined) filter.dstPort = query.dstPort;
    const full = query.src !== undefined && query.dst !== undefined && query.srcPort !== undefined && query.dstPort !== undefined;
    const out: ConnectionLocation[] = [];
    for (const g of groups) {
      if (view.epochTable(g) === null) view.connectionsLocation(g, { protocol: "tcp", src: "0.0.0.0", dst: "0.0.0.0" }); // TANDEM_INVALID_STATE / SG_NOT_FOUND
      // Only members that run a data path (they reported their sockets) hold connections.
      const asked = view
        .members(g, this.clock.nowMs())
        .filter((m) => m.alive && this.endpoints.has(m.appliance) && (m.state === "UP" || m.state === "JOINING" || m.state === "DRAINING"))
        .map((m) => m.appliance);
      const { answers, missing } = await this.queries.ask(g, asked, filter);
      const flows = new Map<string, { c: HeldConnection; heldBy: { member: string; role: string; state: string }[] }>();
      for (const [member, list] of answers) {
        for (const c of list) {
          const key = `${c.protocol}|${c.src}|${c.srcPort}|${c.dst}|${c.dstPort}`;
          const f = flows.get(key) ?? { c, heldBy: [] };
          if (c.role === "owner") f.c = c;
          f.heldBy.push({ member, role: c.role, state: c.state });
          flows.set(key, f);
        }
      }
      if (this.cp === null) break; // lost leadership while waiting
      const v = this.cp.view();
      if (full && flows.size === 0) {
        const l = v.connectionsLocation(g, { protocol: protocol ?? "tcp", src: query.src!, dst: query.dst!, srcPort: query.srcPort, dstPort: query.dstPort });
        out.push({ ...l, ownerState: stateOf(l.owner), backupState: stateOf(l.backup), protocol: protocol ?? 6, src: filter.src!, srcPort: query.srcPort!, dst: filter.dst!, dstPort: query.dstPort!, state: null, expiresInMs: null, heldBy: [], complete: missing.length === 0 });
      }
      for (const { c, heldBy } of [...flows.values()].sort((a, b) => a.c.bucket - b.c.bucket || a.c.srcPort - b.c.srcPort)) {
        const l = v.bucketLocation(g, c.bucket);
        out.push({ ...l, ownerState: stateOf(l.owner), backupState: stateOf(l.backup), protocol: c.protocol, src: c.src, srcPort: c.srcPort, dst: c.dst, dstPort: c.dstPort, state: c.state, expiresInMs: c.expiresInMs, heldBy: heldBy.sort((a, b) => (a.member < b.member ? -1 : 1)), complete: missing.length === 0 });
      }
    }
    return out;
  }

  /** A member's answer to a connection lookup. */
  connectionsReport(appliance: string, report: { id: number; connections: HeldConnection[] }): { accepted: boolean } {
    this.requireAppliance(appliance);
    return this.queries.answer(appliance, report.id, report.connections);
  }

  syncStatus(group?: string): SyncStatus[] {
    const cp = this.controlPlane;
    const view = cp.view();
    const nowMs = this.clock.nowMs();
    const names = group !== undefined ? [group] : [...cp.current.groups.keys()].sort();
    return names.map((name) => {
      const g = view.group(name, nowMs) as { epoch: number; policyRevision: number };
      const t = view.transition(name, nowMs);
      const members = view.members(name, nowMs).map((m): SyncMemberStatus => {
        const reportedEpoch = m.load?.epoch ?? null;
        const policyRevision = m.load?.policyRevision ?? null;
        return {
          appliance: m.appliance,
          state: m.state,
          alive: m.alive,
          reportedEpoch,
          epochLag: reportedEpoch === null ? null : Math.max(0, g.epoch - reportedEpoch),
          policyRevision,
          policyLag: policyRevision === null ? null : Math.max(0, g.policyRevision - policyRevision),
          syncLagMs: this.reports.countersOf(m.appliance)?.syncLagMs ?? null,
          heartbeatAgeMs: m.lastHeartbeatMs === null ? null : Math.max(0, nowMs - m.lastHeartbeatMs),
        };
      });
      const serving = members.filter((m) => m.state === "UP" || m.state === "JOINING" || m.state === "DRAINING");
      return {
        group: name,
        epoch: g.epoch,
        policyRevision: g.policyRevision,
        transition: t === null ? null : { kind: t.kind, seq: t.seq, progress: t.progress },
        inSync: t === null && serving.every((m) => m.epochLag === 0 && m.policyLag === 0),
        members,
      };
    });
  }

  status(): Record<string, unknown> {
    const base = {
      instance: this.instanceId,
      role: this.role,
      store: this.store.kind,
      storeRevision: this.storeRevisionValue,
      startedAt: this.startedAt,
    };
    if (this.stateValue !== "active" || this.cp === null) return base;
    const cp = this.cp;
    const nowMs = this.clock.nowMs();
    const appliances = cp.view().appliances(nowMs);
    return {
      ...base,
      queue: { waiting: cp.queue.waitingCount, waitingMax: cp.queue.waitingMax, prepared: cp.queue.prepared, confirmed: cp.queue.confirmed, aborted: cp.queue.aborted },
      commands: { ...this.commandCounts },
      appliances: { total: appliances.length, pool: appliances.filter((a) => a.group === null).length, alive: appliances.filter((a) => a.alive).length },
      groups: cp.view().groups(nowMs),
      members: [...cp.current.members.values()]
        .map((m) => {
          const a = appliances.find((x) => x.id === m.appliance);
          return { id: m.appliance, group: m.group, state: m.state, alive: a?.alive ?? false, pid: this.pids.get(m.appliance) ?? null, endpoints: this.endpoints.get(m.appliance) ?? null };
        })
        .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)),
      distributor: this.options.distributor === undefined ? null : { vxlan: this.options.distributor.vxlan, memberLink: this.options.distributor.memberLink, ...this.distributorWatch.view() },
    };
  }

  async audit(options: { limit?: number; beforeSeq?: number }): Promise<AuditRecord[]> {
    this.requireActive();
    return this.store.audit(options);
  }

  async events(options: { limit?: number; afterSeq?: number }): Promise<EventRecord[]> {
    this.requireActive();
    return this.store.events(options);
  }
}
