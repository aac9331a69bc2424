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
export type { AuditRecord, EventRecord } from "../store/store.js";

import type { AutoscaleInput, AutoscaleRules, MemberView, PendingChange, SgInterface, SgInterfaceInput } from "../orchestrator/index.js";
import type { MemberCounters } from "../runtime/member-reports.js";
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
  upgrade: { fromVersion: string; targetVersion: string; startedAt: string } | null;
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
}

/** A member with its group's view and the counters it reported (GET /api/members). */
export type MemberStatus = MemberView & { counters: MemberCounters | null };
