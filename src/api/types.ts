// The API's wire types: what requests carry and answers hold. Type-only (erased at build), so
// the client stays free of server code and runs in a browser as well as in Node.

export type {
  ApplianceView,
  AutoscaleRules,
  ChangesView,
  FlowLocation,
  MemberView,
  PendingChange,
  SgInterface,
  SgInterfaceInput,
  TransitionView,
} from "../orchestrator/index.js";
export type { PolicySpec } from "../engine/policy.js";
export type { DistributionDocument, ConnectionLocation, HeartbeatAnswer, HeartbeatInput, SyncStatus, SyncMemberStatus } from "../runtime/orchestrator-daemon.js";
export type { MemberConfig, MemberEndpoints, InterfaceConfig } from "../runtime/cluster-config.js";
export type { HeldConnection, ConnectionFilter } from "../runtime/connection-queries.js";
export type { MemberCounters, MemberCountersInput, VerifyView } from "../runtime/member-reports.js";
export type { Role, TokenInfo } from "../runtime/tokens.js";
export type { DistributorLoadView } from "../runtime/distributor-watch.js";
export type { UpgradeStatusView } from "../runtime/upgrade-runner.js";
export type { AuditRecord, EventRecord } from "../store/store.js";
export type { AutoscaleActionView, AutoscaleView, AutoscaleWindowView } from "../runtime/autoscale-view.js";

import type { ApplianceView, AutoscaleInput, AutoscaleRules, MemberView, PendingChange, SgInterface, SgInterfaceInput, WeightsSource } from "../orchestrator/index.js";
import type { MemberCounters } from "../runtime/member-reports.js";
import type { Role } from "../runtime/tokens.js";
import type { DistributorLoadView } from "../runtime/distributor-watch.js";
import type { PolicySpec } from "../engine/policy.js";
import type { StaticRouteSpec } from "../engine/routing.js";

export interface Health {
  status: "ok";
  role: "active" | "standby";
  storeRevision: number;
  store: "sqlite" | "etcd";
  instance: string;
  version: string;
}

export interface ApplianceInput {
  id: string;
  model: string;
  cores: number;
  memoryMb: number;
  version: string;
  address: string;
}

export type AppliancePatch = Partial<Omit<ApplianceInput, "id">>;

export interface GroupInput {
  name: string;
  interfaces?: SgInterfaceInput[];
  routes?: StaticRouteSpec[];
  policy?: PolicySpec;
  policyText?: string;
  autoscale?: AutoscaleInput;
  allowMixedModels?: boolean;
  bucketCount?: number;
  seed?: number;
}

export interface GroupPatch {
  interfaces?: SgInterfaceInput[];
  routes?: StaticRouteSpec[];
  autoscale?: AutoscaleInput;
  allowMixedModels?: boolean;
}

/** A group as listed (groupSummary) with its running transition, if any. */
export interface GroupSummary {
  name: string;
  epoch: number;
  bucketCount: number;
  members: number;
  up: number;
  interfaces: number;
  policyRevision: number;
  rules: number;
  allowMixedModels: boolean;
  upgrade: { fromVersion: string; targetVersion: string; startedAt: string; direction: "forward" | "back"; paused: boolean; reason: string | null; current: { appliance: string; step: string; since: string } | null } | null;
  transition: { kind: string; seq: number; progress: number } | null;
  pendingChanges: number;
  createdAt: string;
}

export interface GroupDetail extends Omit<GroupSummary, "interfaces"> {
  interfaces: SgInterface[];
  routes: StaticRouteSpec[];
  policy: PolicySpec;
  autoscale: AutoscaleRules;
  weights: Record<string, number>;
  /** Who set the weights: "cores" (none), "operator" (overrides win), "measured" (capacity-weights.ts). */
  weightsSource: WeightsSource;
}

export interface StageResult {
  change: PendingChange;
  pending: number;
}

export interface ApplyResult {
  group: string;
  applied: number;
  epoch: number;
  transition: { kind: string; seq: number; running: boolean } | null;
}

export interface ConnectionQuery {
  src?: string;
  dst?: string;
  protocol?: "tcp" | "udp" | "icmp" | "icmpv6" | number;
  srcPort?: number;
  dstPort?: number;
  group?: string;
}

export interface StatusView {
  instance: string;
  role: "active" | "standby";
  store: "sqlite" | "etcd";
  storeRevision: number;
  startedAt: string;
  queue?: { waiting: number; waitingMax: number; prepared: number; confirmed: number; aborted: number };
  commands?: Record<string, number>;
  appliances?: { total: number; pool: number; alive: number };
  groups?: GroupSummary[];
  /** The orchestrator's distributor (null: it runs none): its sockets and its load. */
  distributor?: DistributorStatus | null;
}

/** GET /api/status's distributor: where it listens, its load, whether it limits throughput. */
export type DistributorStatus = { vxlan: { address: string; port: number }; memberLink: { address: string; port: number } } & DistributorLoadView;

/** A member with its group's view and the counters it reported (GET /api/members). */
export type MemberStatus = MemberView & { counters: MemberCounters | null };

/** The caller, as the API knows it (GET /api/whoami): the web UI shows actions by role. */
export interface Whoami {
  name: string;
  role: Role;
}

/**
 * A group's bucket table for people (GET /api/groups/:name/buckets, monitor role): owner and
 * backup per bucket as indexes into `members` (base64 of little-endian int16, -1: none, as in
 * the distribution document), and the buckets a running transition is filling (base64 bitmap,
 * bit b%8 of byte b/8; empty string: none).
 */
export interface BucketMap {
  group: string;
  epoch: number;
  bucketCount: number;
  members: string[];
  owner: string;
  backup: string;
  filling: string;
}

/** One member in a live snapshot (GET /api/stream): its state, load and counters. */
export interface StreamMember {
  appliance: string;
  group: string;
  state: string;
  alive: boolean;
  weight: number;
  inTable: boolean;
  owned: number;
  backups: number;
  cpuPct: number | null;
  packetsPerSec: number | null;
  connections: number | null;
  corrections: number | null;
  syncLagMs: number | null;
  /** Epoch the member last reported running (null: never). */
  epoch: number | null;
}

/** What GET /api/stream sends each second (event "snapshot"). */
export interface StreamSnapshot {
  /** The orchestrator's wall clock (ms since 1970), for chart axes. */
  atMs: number;
  groups: GroupSummary[];
  members: StreamMember[];
  /** Appliances in no group (the pool of spares). */
  pool: ApplianceView[];
  /** Hits per policy rule, per group, as the members last reported them. */
  ruleHits: Record<string, Record<string, number>>;
  /** The distributor's load and whether it limits throughput (null or absent: no distributor here). */
  distributor?: DistributorLoadView | null;
}

/** One sample of the load history (event "history" at connect: the last minutes, oldest first). */
export interface StreamSample {
  atMs: number;
  /** Per appliance: [packets/s, connections] (null: not reported). */
  load: Record<string, [number | null, number | null]>;
}
