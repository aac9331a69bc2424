// Every command of the control plane as a validated input and a pure handler:
//
//   runCommand(model, command, input, ctx, env) -> { ok, result | error, next model, mutation, effects, soft }
//
// The handler never changes `model`: it builds the next model copy-on-write (a Draft), and the
// mutation is the difference (entries whose object changed are put, vanished ones deleted), so
// what the store commits is exactly what the model becomes. Every call, accepted or refused,
// yields one audit record (who, what, when, result, error code); refused calls change nothing
// else. Effects tell the runtime what to do once the step is confirmed (send an epoch, push a
// policy); soft updates tell the control plane which soft state (health clocks, fill progress)
// follows the confirmed step.
//
// Topology edits are STAGED: sg.assign / sg.unassign / sg.drain / sg.weight only record a
// pending change (checked for model/version consistency when staged, and again when applied).
// changes.apply turns a group's pending changes into ONE epoch change: a make-before-break
// transition (transitions.ts) whose joiners are JOINING and leavers DRAINING until the flip.
// changes.discard drops them. The "health.tick" system command applies what the health
// tracker and the fill tracker observed: silent members DOWN and failed over, completed fills
// flipped, timed-out fills rolled back, recovered members rejoined.
//
// Invariants kept: see model.ts (checkModelInvariants); in addition a refused command's outcome
// has the input model unchanged and a mutation holding only its audit record.

import type { EpochTable } from "../distribution/epoch.js";
import { autoBucketCount, isPowerOfTwo, MEMBER_COUNT_MAX, type MemberWeight } from "../distribution/rendezvous.js";
import { parsePolicyText, validatePolicy, type PolicySpec } from "../engine/policy.js";
import { RouteTable } from "../engine/routing.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { AuditRecord, Collection, Document, EventRecord, Mutation } from "../store/store.js";
import { applianceDocument, changeDocument, groupDocument, memberDocument } from "./documents.js";
import {
  changesOfGroup,
  checkBoolean,
  checkInteger,
  checkName,
  checkText,
  checkWeight,
  consistencyProblem,
  invalid,
  membersOfGroup,
  ORCHESTRATOR_LIMITS,
  resolveAutoscale,
  resolveInterfaces,
  resolveRoutes,
  UPGRADE_STEPS,
  upgradeGoalOf,
  weightOf,
  weightsSourceAfter,
  WATCHED_STATES,
  type Appliance,
  type AssignedState,
  type ControlModel,
  type Member,
  type PendingChange,
  type SecurityGroup,
  type SgInterface,
  type TransitionKind,
  type TransitionRecord,
  type UpgradeState,
  type UpgradeStep,
  type WeightsSource,
} from "./model.js";
import {
  awaitedPhaseOf,
  fillPairCount,
  makeBeforeBreakKind,
  planOf,
  rescueOf,
  routingTableOf,
  settledTableOf,
  tableRecordOf,
} from "./transitions.js";

export interface CommandContext {
  /** Token name of the caller, or "system". */
  actor: string;
  /** Monotonic clock (health, timeouts). */
  nowMs: number;
  /** Wall clock, for records people read (audit, events, "since"). */
  nowIso: string;
}

/** What the runtime does after a step is confirmed. Read the details from the view then. */
export type Effect =
  /** Send the group's routing table and fill map (view().distribution(group)) to its members and the distributor. */
  | { kind: "install-epoch"; group: string; epoch: number }
  /** The group has no table any more: stop forwarding to it. */
  | { kind: "clear-epoch"; group: string }
  /** Interfaces, routes or policy changed: push the group's configuration to its members. */
  | { kind: "push-config"; group: string }
  /** The appliance left the group: its member process stops serving it and drops its state. */
  | { kind: "release-member"; group: string; appliance: string };

/** Soft-state changes that follow a confirmed step (applied by the ControlPlane). */
export type SoftUpdate =
  | { kind: "watch"; appliance: string }
  | { kind: "down"; appliance: string }
  | { kind: "up"; appliance: string }
  | { kind: "release"; appliance: string }
  | { kind: "forget"; appliance: string }
  | { kind: "fill-start"; group: string; seq: number }
  | { kind: "fill-restart"; group: string; seq: number }
  | { kind: "fill-end"; group: string };

/** What the health and fill trackers saw at one instant: the input of "health.tick". */
export interface Observations {
  nowMs: number;
  /** Watched members silent for downAfterMs or more; penalty/suppressed: damping after this DOWN. */
  silent: { appliance: string; silentMs: number; penalty: number; newlySuppressed: boolean }[];
  /** DOWN members heard from again and not suppressed. */
  recovered: string[];
  /** Suppressed members whose penalty decayed below the reuse threshold. */
  released: { appliance: string; penalty: number }[];
  fillsComplete: { group: string; seq: number }[];
  fillsTimedOut: { group: string; seq: number; elapsedMs: number }[];
}

export const OPERATOR_COMMANDS = [
  "appliance.add",
  "appliance.update",
  "appliance.remove",
  "sg.create",
  "sg.update",
  "sg.delete",
  "policy.apply",
  "sg.assign",
  "sg.unassign",
  "sg.drain",
  "sg.weight",
  "sg.weights.auto",
  "sg.upgrade.start",
  "sg.upgrade.finish",
  "sg.upgrade.pause",
  "sg.upgrade.resume",
  "sg.upgrade.rollback",
  "sg.upgrade.abort",
  "changes.apply",
  "changes.discard",
] as const;
export const SYSTEM_COMMANDS = ["health.tick", "upgrade.step", "weights.measured"] as const;
export type OperatorCommand = (typeof OPERATOR_COMMANDS)[number];
export type CommandName = OperatorCommand | (typeof SYSTEM_COMMANDS)[number];

export function isCommandName(name: string): name is CommandName {
  return (OPERATOR_COMMANDS as readonly string[]).includes(name) || (SYSTEM_COMMANDS as readonly string[]).includes(name);
}

/** Things the handlers need from their environment. */
export interface CommandEnv {
  /** A fresh 32-bit group seed (the runtime draws it from a secure source; tests from a Prng). */
  nextSeed(): number;
}

export interface CommandOutcome {
  ok: boolean;
  /** JSON-serialisable answer for the caller (ok only). */
  result: unknown;
  error: TandemError | null;
  /** The next model (the input model when refused). */
  model: ControlModel;
  mutation: Mutation;
  effects: Effect[];
  soft: SoftUpdate[];
}

// ---------------------------------------------------------------------------------------------
// Draft: copy-on-write model under construction, plus the records a command produces.

class Draft {
  private appliancesMap: Map<string, Appliance> | null = null;
  private groupsMap: Map<string, SecurityGroup> | null = null;
  private membersMap: Map<string, Member> | null = null;
  private changesMap: Map<string, PendingChange> | null = null;
  readonly events: EventRecord[] = [];
  readonly effects: Effect[] = [];
  readonly soft: SoftUpdate[] = [];

  constructor(
    readonly base: ControlModel,
    readonly ctx: CommandContext,
  ) {}

  get model(): ControlModel {
    return {
      appliances: this.appliancesMap ?? this.base.appliances,
      groups: this.groupsMap ?? this.base.groups,
      members: this.membersMap ?? this.base.members,
      changes: this.changesMap ?? this.base.changes,
    };
  }

  private appliancesW(): Map<string, Appliance> {
    return (this.appliancesMap ??= new Map(this.base.appliances));
  }
  private groupsW(): Map<string, SecurityGroup> {
    return (this.groupsMap ??= new Map(this.base.groups));
  }
  private membersW(): Map<string, Member> {
    return (this.membersMap ??= new Map(this.base.members));
  }
  private changesW(): Map<string, PendingChange> {
    return (this.changesMap ??= new Map(this.base.changes));
  }

  appliance(id: string): Appliance | undefined {
    return this.model.appliances.get(id);
  }
  group(name: string): SecurityGroup | undefined {
    return this.model.groups.get(name);
  }
  member(id: string): Member | undefined {
    return this.model.members.get(id);
  }
  change(id: string): PendingChange | undefined {
    return this.model.changes.get(id);
  }

  putAppliance(a: Appliance): void {
    this.appliancesW().set(a.id, a);
  }
  deleteAppliance(id: string): void {
    this.appliancesW().delete(id);
  }
  putGroup(g: SecurityGroup): void {
    this.groupsW().set(g.name, g);
  }
  deleteGroup(name: string): void {
    this.groupsW().delete(name);
  }
  putChange(c: PendingChange): void {
    this.changesW().set(c.appliance, c);
  }
  deleteChange(id: string): void {
    this.changesW().delete(id);
  }

  event(kind: string, message: string, extra: { group?: string; member?: string; data?: unknown } = {}): void {
    this.events.push({ at: this.ctx.nowIso, kind, message, ...extra });
  }

  effect(e: Effect): void {
    this.effects.push(e);
  }

  /** Sets a member's state (creating the member), with its event and soft updates. */
  setMember(appliance: string, group: string, state: AssignedState, why: string): void {
    const previous = this.member(appliance);
    if (previous !== undefined && previous.group === group && previous.state === state) return;
    assert(previous === undefined || previous.group === group, "a member changes group only through the pool");
    this.membersW().set(appliance, { appliance, group, state, since: this.ctx.nowIso });
    this.event(`member.${state.toLowerCase()}`, `${appliance} in ${group}: ${previous?.state ?? "UNASSIGNED"} -> ${state} (${why})`, {
      group,
      member: appliance,
      data: { from: previous?.state ?? "UNASSIGNED", to: state },
    });
    if (previous?.state === "DOWN" && state !== "DOWN") this.soft.push({ kind: "up", appliance });
    if (WATCHED_STATES.includes(state)) this.soft.push({ kind: "watch", appliance });
  }

  /** Deletes a member: the appliance is back in the pool. */
  removeMember(appliance: string, why: string): void {
    const previous = this.member(appliance);
    assert(previous !== undefined, "removeMember of a non-member");
    this.membersW().delete(appliance);
    this.event("member.unassigned", `${appliance} left ${previous.group}: ${previous.state} -> UNASSIGNED (${why})`, {
      group: previous.group,
      member: appliance,
      data: { from: previous.state, to: "UNASSIGNED" },
    });
    this.effect({ kind: "release-member", group: previous.group, appliance });
    this.soft.push({ kind: "up", appliance });
  }
}

function diffCollection<T>(
  collection: Collection,
  before: ReadonlyMap<string, T>,
  after: ReadonlyMap<string, T>,
  toDoc: (value: T) => Document,
  mutation: Mutation,
): void {
  if (before === after) return;
  const ids = [...after.keys()].sort();
  for (const id of ids) if (before.get(id) !== after.get(id)) mutation.puts.push({ collection, doc: toDoc(after.get(id)!) });
  const gone = [...before.keys()].filter((id) => !after.has(id)).sort();
  for (const id of gone) mutation.deletes.push({ collection, id });
}

/** The store mutation that turns `before` into `after` (entries compared by identity). */
export function mutationBetween(before: ControlModel, after: ControlModel): Mutation {
  const mutation: Mutation = { puts: [], deletes: [], audit: [], events: [] };
  diffCollection("appliances", before.appliances, after.appliances, applianceDocument, mutation);
  diffCollection("groups", before.groups, after.groups, groupDocument, mutation);
  diffCollection("members", before.members, after.members, memberDocument, mutation);
  diffCollection("changes", before.changes, after.changes, changeDocument, mutation);
  return mutation;
}

/** Effects with repeats folded: one install/clear per group (the last one wins). */
function foldEffects(effects: readonly Effect[]): Effect[] {
  const out: Effect[] = [];
  for (let i = 0; i < effects.length; i++) {
    const e = effects[i]!;
    if (e.kind === "install-epoch" || e.kind === "clear-epoch") {
      const later = effects.slice(i + 1).some((x) => (x.kind === "install-epoch" || x.kind === "clear-epoch") && x.group === e.group);
      if (later) continue;
    }
    if (e.kind === "push-config" && out.some((x) => x.kind === "push-config" && x.group === e.group)) continue;
    out.push(e);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Input reading.

function fields(input: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw invalid("input", "must be an object");
  const o = input as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) throw invalid(key, `unknown field (expected ${allowed.join(", ")})`);
  }
  return o;
}

function notFoundGroup(name: string): TandemError {
  return new TandemError(ErrorCode.SG_NOT_FOUND, `no security group named ${name}`, { group: name });
}

function notFoundAppliance(id: string): TandemError {
  return new TandemError(ErrorCode.APPLIANCE_NOT_FOUND, `no appliance with id ${id}`, { appliance: id });
}

function requireGroup(d: Draft, name: string): SecurityGroup {
  const g = d.group(name);
  if (g === undefined) throw notFoundGroup(name);
  return g;
}

function requireAppliance(d: Draft, id: string): Appliance {
  const a = d.appliance(id);
  if (a === undefined) throw notFoundAppliance(id);
  return a;
}

function requireIdle(g: SecurityGroup, what: string): void {
  if (g.transition !== null) {
    throw new TandemError(
      ErrorCode.TRANSITION_IN_PROGRESS,
      `security group ${g.name}: cannot ${what} while its ${g.transition.kind} transition (#${g.transition.seq}) runs; wait for it to finish`,
      { group: g.name, transition: g.transition.kind, seq: g.transition.seq },
    );
  }
}

function readPolicy(o: Record<string, unknown>): PolicySpec {
  if (o.policy !== undefined && o.policyText !== undefined) throw invalid("policy", "give policy or policyText, not both");
  if (o.policyText !== undefined) {
    if (typeof o.policyText !== "string") throw invalid("policyText", "must be a string (YAML or JSON)");
    return parsePolicyText(o.policyText, "auto");
  }
  return validatePolicy(o.policy ?? { rules: [] });
}

/** Interfaces and routes must make a valid route table, and VNIs must not be used by another group. */
function checkNetwork(model: ControlModel, groupName: string, interfaces: SgInterface[], routes: SecurityGroup["routes"]): void {
  new RouteTable(
    interfaces.map((i, index) => ({ name: i.name, index, addresses: [i.gateway] })),
    routes,
  );
  for (const other of model.groups.values()) {
    if (other.name === groupName) continue;
    for (const i of interfaces) {
      const clash = other.interfaces.find((o) => o.vni === i.vni); // the distributor tells groups apart by VNI
      if (clash !== undefined) {
        throw new TandemError(
          ErrorCode.CONFLICT,
          `interface ${i.name}: VNI ${i.vni} from site ${i.siteEndpoint} is already interface ${clash.name} of security group ${other.name}`,
          { field: "interfaces", vni: i.vni, group: other.name },
        );
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Appliances.

function applianceAdd(d: Draft, input: unknown): unknown {
  const o = fields(input, ["id", "model", "cores", "memoryMb", "version", "address"]);
  const id = checkName(o.id, "id");
  const appliance: Appliance = {
    id,
    model: checkText(o.model, "model"),
    cores: checkInteger(o.cores, "cores", 1, ORCHESTRATOR_LIMITS.coresMax),
    memoryMb: checkInteger(o.memoryMb, "memoryMb", 1, ORCHESTRATOR_LIMITS.memoryMbMax),
    version: checkText(o.version, "version"),
    address: checkText(o.address, "address"),
    registeredAt: d.ctx.nowIso,
  };
  if (d.appliance(id) !== undefined) throw new TandemError(ErrorCode.APPLIANCE_EXISTS, `appliance ${id} is already in the inventory`, { appliance: id });
  if (d.model.appliances.size >= ORCHESTRATOR_LIMITS.appliancesMax) {
    throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `the inventory holds at most ${ORCHESTRATOR_LIMITS.appliancesMax} appliances`);
  }
  d.putAppliance(appliance);
  d.event("appliance.added", `appliance ${id} (${appliance.model}, ${appliance.cores} cores, ${appliance.version}) added to the pool`, { member: id });
  return appliance;
}

function applianceUpdate(d: Draft, input: unknown): unknown {
  const o = fields(input, ["id", "model", "cores", "memoryMb", "version", "address"]);
  const id = checkName(o.id, "id");
  const old = requireAppliance(d, id);
  const next: Appliance = {
    ...old,
    model: o.model === undefined ? old.model : checkText(o.model, "model"),
    cores: o.cores === undefined ? old.cores : checkInteger(o.cores, "cores", 1, ORCHESTRATOR_LIMITS.coresMax),
    memoryMb: o.memoryMb === undefined ? old.memoryMb : checkInteger(o.memoryMb, "memoryMb", 1, ORCHESTRATOR_LIMITS.memoryMbMax),
    version: o.version === undefined ? old.version : checkText(o.version, "version"),
    address: o.address === undefined ? old.address : checkText(o.address, "address"),
  };
  const member = d.member(id);
  if (member !== undefined) {
    const g = requireGroup(d, member.group);
    const others = membersOfGroup(d.model, g.name)
      .filter((m) => m.appliance !== id)
      .map((m) => d.appliance(m.appliance)!);
    const problem = consistencyProblem(g, [...others, next]);
    if (problem !== null) throw problem;
  }
  d.putAppliance(next);
  if (old.version !== next.version) d.event("appliance.version", `appliance ${id} now runs ${next.version} (was ${old.version})`, { member: id, ...(member ? { group: member.group } : {}) });
  return next;
}

function applianceRemove(d: Draft, input: unknown): unknown {
  const o = fields(input, ["id"]);
  const id = checkName(o.id, "id");
  requireAppliance(d, id);
  const member = d.member(id);
  if (member !== undefined) {
    throw new TandemError(ErrorCode.APPLIANCE_IN_USE, `appliance ${id} is a member of security group ${member.group} (${member.state}); unassign it first`, {
      appliance: id,
      group: member.group,
      state: member.state,
    });
  }
  const change = d.change(id);
  if (change !== undefined) {
    throw new TandemError(ErrorCode.APPLIANCE_IN_USE, `appliance ${id} has a pending ${change.kind} in security group ${change.group}; discard it first`, {
      appliance: id,
      group: change.group,
    });
  }
  d.deleteAppliance(id);
  d.soft.push({ kind: "forget", appliance: id });
  d.event("appliance.removed", `appliance ${id} removed from the inventory`, { member: id });
  return { id };
}

// ---------------------------------------------------------------------------------------------
// Security groups.

function sgCreate(d: Draft, input: unknown, env: CommandEnv): unknown {
  const o = fields(input, ["name", "interfaces", "routes", "policy", "policyText", "autoscale", "allowMixedModels", "bucketCount", "seed"]);
  const name = checkName(o.name, "name");
  const interfaces = resolveInterfaces(o.interfaces ?? []);
  const routes = resolveRoutes(o.routes ?? []);
  const policy = readPolicy(o);
  const autoscale = resolveAutoscale(o.autoscale);
  const allowMixedModels = o.allowMixedModels === undefined ? false : checkBoolean(o.allowMixedModels, "allowMixedModels");
  // Created empty, a group can grow to its autoscale maxMembers: size for that, so each member
  // keeps >= 1,024 buckets (the count is fixed for the group's life; 65,536 at least).
  let bucketCount = autoBucketCount(autoscale.maxMembers);
  if (o.bucketCount !== undefined) {
    bucketCount = checkInteger(o.bucketCount, "bucketCount", ORCHESTRATOR_LIMITS.bucketCountMin, ORCHESTRATOR_LIMITS.bucketCountMax);
    if (!isPowerOfTwo(bucketCount)) throw invalid("bucketCount", `must be a power of two, got ${bucketCount}`);
  }
  const seed = o.seed === undefined ? env.nextSeed() >>> 0 : checkInteger(o.seed, "seed", 0, 0xffffffff);
  if (d.group(name) !== undefined) throw new TandemError(ErrorCode.SG_EXISTS, `security group ${name} already exists`, { group: name });
  if (d.model.groups.size >= ORCHESTRATOR_LIMITS.groupsMax) {
    throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `at most ${ORCHESTRATOR_LIMITS.groupsMax} security groups`);
  }
  checkNetwork(d.model, name, interfaces, routes);
  const group: SecurityGroup = {
    name,
    interfaces,
    routes,
    policy,
    policyRevision: 1,
    weights: {},
    weightsSource: "cores",
    autoscale,
    allowMixedModels,
    upgrade: null,
    seed,
    bucketCount,
    epoch: 0,
    tableMembers: [],
    transition: null,
    transitionSeq: 0,
    createdAt: d.ctx.nowIso,
  };
  d.putGroup(group);
  d.event("group.created", `security group ${name} created (${interfaces.length} interfaces, ${policy.rules.length} rules, ${bucketCount} buckets)`, { group: name });
  return groupSummary(d.model, group);
}

function sgUpdate(d: Draft, input: unknown): unknown {
  const o = fields(input, ["name", "interfaces", "routes", "autoscale", "allowMixedModels"]);
  const name = checkName(o.name, "name");
  const g = requireGroup(d, name);
  const interfaces = o.interfaces === undefined ? g.interfaces : resolveInterfaces(o.interfaces);
  const routes = o.routes === undefined ? g.routes : resolveRoutes(o.routes);
  const autoscale = o.autoscale === undefined ? g.autoscale : resolveAutoscale(o.autoscale, g.autoscale);
  const allowMixedModels = o.allowMixedModels === undefined ? g.allowMixedModels : checkBoolean(o.allowMixedModels, "allowMixedModels");
  const network = o.interfaces !== undefined || o.routes !== undefined;
  if (network) checkNetwork(d.model, name, interfaces, routes);
  const next: SecurityGroup = { ...g, interfaces, routes, autoscale, allowMixedModels };
  if (!allowMixedModels && g.allowMixedModels) {
    const problem = consistencyProblem(next, prospectiveAppliances(d.model, next, null));
    if (problem !== null) throw problem;
  }
  d.putGroup(next);
  if (network) {
    d.effect({ kind: "push-config", group: name });
    d.event("group.network", `security group ${name}: ${interfaces.length} interfaces, ${routes.length} static routes`, { group: name });
  }
  return groupSummary(d.model, next);
}

function sgDelete(d: Draft, input: unknown): unknown {
  const o = fields(input, ["name"]);
  const name = checkName(o.name, "name");
  const g = requireGroup(d, name);
  requireIdle(g, "delete it");
  const members = membersOfGroup(d.model, name);
  if (members.length > 0) {
    throw new TandemError(ErrorCode.SG_NOT_EMPTY, `security group ${name} still has ${members.length} members (${members.map((m) => m.appliance).join(", ")}); unassign them first`, {
      group: name,
      members: members.map((m) => m.appliance),
    });
  }
  const dropped = changesOfGroup(d.model, name);
  for (const c of dropped) d.deleteChange(c.appliance);
  d.deleteGroup(name);
  if (g.epoch > 0) d.effect({ kind: "clear-epoch", group: name });
  d.event("group.deleted", `security group ${name} deleted${dropped.length > 0 ? ` (${dropped.length} pending changes dropped)` : ""}`, { group: name });
  return { name, droppedChanges: dropped.length };
}

function policyApply(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group", "policy", "policyText"]);
  const name = checkName(o.group, "group");
  const g = requireGroup(d, name);
  if (o.policy === undefined && o.policyText === undefined) throw invalid("policy", "missing (give policy or policyText)");
  const policy = readPolicy(o);
  const next: SecurityGroup = { ...g, policy, policyRevision: g.policyRevision + 1 };
  d.putGroup(next);
  d.effect({ kind: "push-config", group: name });
  d.event("policy.applied", `security group ${name}: policy revision ${next.policyRevision} (${policy.rules.length} rules)`, { group: name });
  return { group: name, policyRevision: next.policyRevision, rules: policy.rules.length };
}

function upgradeStart(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group", "targetVersion"]);
  const g = requireGroup(d, checkName(o.group, "group"));
  const targetVersion = checkText(o.targetVersion, "targetVersion");
  if (g.upgrade !== null) {
    throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name} is already upgrading to ${g.upgrade.targetVersion}`, { group: g.name });
  }
  const versions = new Set(membersOfGroup(d.model, g.name).map((m) => d.appliance(m.appliance)!.version));
  const fromVersion = versions.size === 0 ? targetVersion : [...versions][0]!;
  if (fromVersion === targetVersion && versions.size > 0) throw invalid("targetVersion", `security group ${g.name} already runs ${targetVersion}`);
  d.putGroup({ ...g, upgrade: { fromVersion, targetVersion, startedAt: d.ctx.nowIso, direction: "forward", paused: false, reason: null, current: null } });
  d.event("upgrade.started", `security group ${g.name}: rolling upgrade ${fromVersion} -> ${targetVersion}`, { group: g.name });
  return { group: g.name, fromVersion, targetVersion };
}

function requireUpgrade(d: Draft, input: unknown, extra: readonly string[] = []): { g: SecurityGroup; u: UpgradeState; o: Record<string, unknown> } {
  const o = fields(input, ["group", ...extra]);
  const g = requireGroup(d, checkName(o.group, "group"));
  if (g.upgrade === null) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name} is not upgrading`, { group: g.name });
  return { g, u: g.upgrade, o };
}

function upgradePause(d: Draft, input: unknown): unknown {
  const { g, u } = requireUpgrade(d, input);
  if (u.paused) return { group: g.name, paused: true, reason: u.reason };
  const reason = `paused by ${d.ctx.actor}`;
  d.putGroup({ ...g, upgrade: { ...u, paused: true, reason } });
  d.event("upgrade.paused", `security group ${g.name}: upgrade to ${upgradeGoalOf(u)} ${reason}${u.current === null ? "" : ` (${u.current.appliance} at ${u.current.step})`}`, { group: g.name });
  return { group: g.name, paused: true, reason };
}

function upgradeResume(d: Draft, input: unknown): unknown {
  const { g, u } = requireUpgrade(d, input);
  if (!u.paused) return { group: g.name, paused: false };
  // The step that failed starts again with a fresh deadline.
  const current = u.current === null ? null : { ...u.current, since: d.ctx.nowIso };
  d.putGroup({ ...g, upgrade: { ...u, paused: false, reason: null, current } });
  d.event("upgrade.resumed", `security group ${g.name}: upgrade to ${upgradeGoalOf(u)} resumed by ${d.ctx.actor}`, { group: g.name });
  return { group: g.name, paused: false };
}

function upgradeRollback(d: Draft, input: unknown): unknown {
  const { g, u } = requireUpgrade(d, input);
  if (u.direction === "back") throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name} is already rolling back to ${u.fromVersion}`, { group: g.name });
  // The member in its cycle carries on toward the new goal: a restart step now restarts it on
  // fromVersion (or finds it already there); the others that moved return one at a time.
  const current = u.current === null ? null : { ...u.current, since: d.ctx.nowIso };
  d.putGroup({ ...g, upgrade: { ...u, direction: "back", paused: false, reason: null, current } });
  d.event("upgrade.rollback", `security group ${g.name}: rolling back to ${u.fromVersion} (requested by ${d.ctx.actor})`, { group: g.name });
  return { group: g.name, direction: "back", goal: u.fromVersion };
}

/** Ends an upgrade where it stands; only when every member runs one version (else: roll back or resume). */
function upgradeAbort(d: Draft, input: unknown): unknown {
  const { g, u } = requireUpgrade(d, input);
  const versions = [...new Set(membersOfGroup(d.model, g.name).map((m) => d.appliance(m.appliance)!.version))];
  if (versions.length > 1) {
    throw new TandemError(
      ErrorCode.VERSION_MISMATCH,
      `security group ${g.name}: members run ${versions.join(" and ")}; an upgrade can be aborted only when all run one version (roll back with --rollback, or resume)`,
      { group: g.name, versions },
    );
  }
  d.putGroup({ ...g, upgrade: null });
  const left = u.current === null ? "" : `; ${u.current.appliance} stopped at ${u.current.step}`;
  d.event("upgrade.aborted", `security group ${g.name}: upgrade to ${u.targetVersion} aborted by ${d.ctx.actor}${left}`, { group: g.name });
  return { group: g.name, version: versions[0] ?? u.fromVersion };
}

/** System command of the upgrade driver (src/orchestrator/upgrade.ts): move to a step, or pause with a reason. */
function upgradeStep(d: Draft, input: unknown): unknown {
  const { g, u, o } = requireUpgrade(d, input, ["current", "pause"]);
  if (o.pause !== undefined) {
    if (typeof o.pause !== "string" || o.pause.length === 0 || o.pause.length > 1024) throw invalid("pause", "must be a reason of 1 to 1024 characters");
    const reason = o.pause;
    d.putGroup({ ...g, upgrade: { ...u, paused: true, reason } });
    d.event("upgrade.paused", `security group ${g.name}: upgrade to ${upgradeGoalOf(u)} paused: ${reason}`, { group: g.name });
    return { group: g.name, paused: true, reason };
  }
  let current: UpgradeState["current"] = null;
  if (o.current !== null) {
    const c = fields(o.current, ["appliance", "step"]);
    const appliance = checkName(c.appliance, "current.appliance");
    if (!(UPGRADE_STEPS as readonly unknown[]).includes(c.step)) throw invalid("current.step", `must be one of ${UPGRADE_STEPS.join(", ")}`);
    const m = requireMemberOf(d, g, requireAppliance(d, appliance));
    current = { appliance: m.appliance, step: c.step as UpgradeStep, since: d.ctx.nowIso };
  }
  if (u.paused) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name}: the upgrade is paused`, { group: g.name });
  d.putGroup({ ...g, upgrade: { ...u, current } });
  if (current !== null && current.step === "drain") d.event("upgrade.member", `security group ${g.name}: upgrading ${current.appliance} to ${upgradeGoalOf(u)}`, { group: g.name, member: current.appliance });
  if (current === null && u.current !== null) d.event("upgrade.member-done", `security group ${g.name}: ${u.current.appliance} runs ${upgradeGoalOf(u)}, rejoined and verified`, { group: g.name, member: u.current.appliance });
  return { group: g.name, current };
}

function upgradeFinish(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group"]);
  const g = requireGroup(d, checkName(o.group, "group"));
  if (g.upgrade === null) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name} is not upgrading`, { group: g.name });
  const involved = [
    ...membersOfGroup(d.model, g.name).map((m) => m.appliance),
    ...changesOfGroup(d.model, g.name)
      .filter((c) => c.kind === "assign")
      .map((c) => c.appliance),
  ].map((id) => d.appliance(id)!);
  const settled: SecurityGroup = { ...g, upgrade: null };
  const problem = consistencyProblem(settled, involved);
  if (problem !== null) {
    const lagging = involved.filter((a) => a.version !== g.upgrade!.targetVersion).map((a) => a.id);
    throw new TandemError(
      ErrorCode.VERSION_MISMATCH,
      `security group ${g.name}: cannot finish the upgrade to ${g.upgrade.targetVersion} while ${lagging.join(", ")} run another version`,
      { group: g.name, lagging },
    );
  }
  d.putGroup(settled);
  const version = involved.length > 0 ? involved[0]!.version : g.upgrade.targetVersion;
  if (version === g.upgrade.targetVersion) d.event("upgrade.finished", `security group ${g.name}: every member runs ${version}`, { group: g.name });
  else d.event("upgrade.rolled-back", `security group ${g.name}: upgrade to ${g.upgrade.targetVersion} rolled back; every member runs ${version}`, { group: g.name });
  return { group: g.name, version };
}

// ---------------------------------------------------------------------------------------------
// Staged topology changes.

function stageCommon(d: Draft, input: unknown, extra: readonly string[]): { g: SecurityGroup; a: Appliance; o: Record<string, unknown> } {
  const o = fields(input, ["group", "appliance", ...extra]);
  const g = requireGroup(d, checkName(o.group, "group"));
  const a = requireAppliance(d, checkName(o.appliance, "appliance"));
  const pending = d.change(a.id);
  if (pending !== undefined) {
    throw new TandemError(
      ErrorCode.CHANGE_PENDING,
      `appliance ${a.id} already has a pending ${pending.kind} in security group ${pending.group}; apply or discard it first`,
      { appliance: a.id, group: pending.group, kind: pending.kind },
    );
  }
  if (d.model.changes.size >= ORCHESTRATOR_LIMITS.pendingChangesMax) {
    throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `at most ${ORCHESTRATOR_LIMITS.pendingChangesMax} pending changes`);
  }
  return { g, a, o };
}

function requireMemberOf(d: Draft, g: SecurityGroup, a: Appliance): Member {
  const m = d.member(a.id);
  if (m === undefined || m.group !== g.name) {
    throw new TandemError(ErrorCode.MEMBER_NOT_FOUND, `appliance ${a.id} is not a member of security group ${g.name}`, { group: g.name, appliance: a.id });
  }
  if (m.state === "JOINING" || m.state === "DRAINING") {
    throw new TandemError(ErrorCode.TRANSITION_IN_PROGRESS, `appliance ${a.id} is ${m.state} in security group ${g.name}; wait for the transition to finish`, {
      group: g.name,
      appliance: a.id,
      state: m.state,
    });
  }
  return m;
}

/**
 * Appliances that will be members at some time while the group's pending changes apply (with
 * `extra`): the current members (a leaving member still serves until the flip, beside the
 * joiners) and the pending assigns. Replacing one model or version by another is therefore a
 * job for allowMixedModels or a rolling upgrade, never a silent side effect of a swap.
 */
function prospectiveAppliances(model: ControlModel, g: SecurityGroup, extra: Appliance | null): Appliance[] {
  const ids = new Set<string>();
  for (const m of membersOfGroup(model, g.name)) ids.add(m.appliance);
  for (const c of changesOfGroup(model, g.name)) if (c.kind === "assign") ids.add(c.appliance);
  if (extra !== null) ids.add(extra.id);
  return [...ids].sort().map((id) => model.appliances.get(id)!);
}

function stage(d: Draft, change: PendingChange): unknown {
  d.putChange(change);
  const pending = changesOfGroup(d.model, change.group).length;
  return { change, pending };
}

function sgAssign(d: Draft, input: unknown): unknown {
  const { g, a, o } = stageCommon(d, input, ["weight"]);
  const weight = o.weight === undefined ? null : checkWeight(o.weight, "weight");
  const m = d.member(a.id);
  if (m !== undefined) {
    if (m.group !== g.name) {
      throw new TandemError(ErrorCode.APPLIANCE_IN_USE, `appliance ${a.id} is a member of security group ${m.group}; unassign it there first`, {
        appliance: a.id,
        group: m.group,
      });
    }
    if (m.state !== "DETACHED") {
      throw new TandemError(ErrorCode.INVALID_STATE, `appliance ${a.id} is already a member of ${g.name} (${m.state}); only a DETACHED member can be assigned again`, {
        appliance: a.id,
        group: g.name,
        state: m.state,
      });
    }
  }
  const problem = consistencyProblem(g, prospectiveAppliances(d.model, g, a));
  if (problem !== null) throw problem;
  return stage(d, { appliance: a.id, group: g.name, kind: "assign", weight, weightsSource: weight === null ? null : "operator", stagedBy: d.ctx.actor, stagedAt: d.ctx.nowIso });
}

function sgUnassign(d: Draft, input: unknown): unknown {
  const { g, a } = stageCommon(d, input, []);
  requireMemberOf(d, g, a);
  return stage(d, { appliance: a.id, group: g.name, kind: "unassign", weight: null, weightsSource: null, stagedBy: d.ctx.actor, stagedAt: d.ctx.nowIso });
}

function sgDrain(d: Draft, input: unknown): unknown {
  const { g, a } = stageCommon(d, input, []);
  const m = requireMemberOf(d, g, a);
  if (m.state !== "UP") {
    throw new TandemError(ErrorCode.INVALID_STATE, `appliance ${a.id} is ${m.state}; only an UP member can be drained`, { appliance: a.id, group: g.name, state: m.state });
  }
  return stage(d, { appliance: a.id, group: g.name, kind: "drain", weight: null, weightsSource: null, stagedBy: d.ctx.actor, stagedAt: d.ctx.nowIso });
}

function sgWeight(d: Draft, input: unknown): unknown {
  const { g, a, o } = stageCommon(d, input, ["weight"]);
  const weight = checkWeight(o.weight, "weight");
  requireMemberOf(d, g, a);
  return stage(d, { appliance: a.id, group: g.name, kind: "weight", weight, weightsSource: "operator", stagedBy: d.ctx.actor, stagedAt: d.ctx.nowIso });
}

/** Stages one member's weight for the group-wide commands below (the checks of stageCommon and sg.weight). */
function stageWeight(d: Draft, g: SecurityGroup, a: Appliance, weight: number, source: WeightsSource): void {
  const pending = d.change(a.id);
  if (pending !== undefined) {
    throw new TandemError(ErrorCode.CHANGE_PENDING, `appliance ${a.id} already has a pending ${pending.kind} in security group ${pending.group}; apply or discard it first`, {
      appliance: a.id,
      group: pending.group,
      kind: pending.kind,
    });
  }
  if (d.model.changes.size >= ORCHESTRATOR_LIMITS.pendingChangesMax) {
    throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `at most ${ORCHESTRATOR_LIMITS.pendingChangesMax} pending changes`);
  }
  requireMemberOf(d, g, a);
  d.putChange({ appliance: a.id, group: g.name, kind: "weight", weight, weightsSource: source, stagedBy: d.ctx.actor, stagedAt: d.ctx.nowIso });
}

/**
 * The operator's way back to automatic weights: every override is staged back to the member's
 * cores (applied like any weight change) and, once applied, the group's weights are "cores"
 * again, so capacity-weights.ts may weigh them. With no override to clear, at once.
 */
function sgWeightsAuto(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group"]);
  const g = requireGroup(d, checkName(o.group, "group"));
  const overridden = Object.keys(g.weights)
    .filter((id) => d.member(id)?.group === g.name)
    .sort();
  for (const id of overridden) stageWeight(d, g, requireAppliance(d, id), d.appliance(id)!.cores, "cores");
  if (overridden.length === 0 && g.weightsSource !== "cores") {
    d.putGroup({ ...g, weightsSource: "cores" });
    d.event("weights.auto", `security group ${g.name}: weights are automatic again (cores; measured capacity when models differ), set by ${d.ctx.actor}`, { group: g.name });
  }
  return { group: g.name, staged: overridden.length, pending: changesOfGroup(d.model, g.name).length, weightsSource: d.group(g.name)!.weightsSource };
}

/**
 * System command of the capacity weigher (capacity-weights.ts): stages the members' weights
 * from measured capacity, with the reason. Refused on a group whose weights the operator set,
 * and on a busy group (a transition, pending changes, a rolling upgrade): the weigher checked
 * both, and this re-checks them in the queue's order, after any operator command before it.
 */
function weightsMeasured(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group", "weights", "reason"]);
  const g = requireGroup(d, checkName(o.group, "group"));
  if (typeof o.reason !== "string" || o.reason.length === 0 || o.reason.length > 1024) throw invalid("reason", "must be a reason of 1 to 1024 characters");
  if (typeof o.weights !== "object" || o.weights === null || Array.isArray(o.weights)) throw invalid("weights", "must be an object of appliance -> weight");
  const entries = Object.entries(o.weights as Record<string, unknown>).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  if (entries.length === 0 || entries.length > MEMBER_COUNT_MAX) throw invalid("weights", `must name 1 to ${MEMBER_COUNT_MAX} members`);
  if (g.weightsSource === "operator") {
    throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name}: the operator set its weights; automatic weights resume after tandem sg weight ${g.name} --auto`, { group: g.name });
  }
  requireIdle(g, "stage measured weights");
  if (g.upgrade !== null) throw new TandemError(ErrorCode.INVALID_STATE, `security group ${g.name} is upgrading: weights wait for the upgrade to finish`, { group: g.name });
  const pending = changesOfGroup(d.model, g.name).length;
  if (pending > 0) throw new TandemError(ErrorCode.CHANGE_PENDING, `security group ${g.name} has ${pending} pending changes; measured weights wait for them`, { group: g.name });
  for (const [id, w] of entries) {
    const a = requireAppliance(d, checkName(id, "weights"));
    stageWeight(d, g, a, checkInteger(w, `weights.${id}`, 1, ORCHESTRATOR_LIMITS.weightMax), "measured");
  }
  d.event("weights.measured", `security group ${g.name}: weights from measured capacity staged (${o.reason})`, {
    group: g.name,
    data: { weights: Object.fromEntries(entries), reason: o.reason },
  });
  return { group: g.name, staged: entries.length, pending: changesOfGroup(d.model, g.name).length };
}

// ---------------------------------------------------------------------------------------------
// Applying staged changes.

/** What applying a group's pending changes would do; shared by changes.apply and changes.show. */
export interface ApplyPlan {
  group: SecurityGroup;
  changes: PendingChange[];
  /** The settled table now (null: none). */
  from: EpochTable | null;
  /** Members (with weights) of the table after the change; empty: the group will have no table. */
  target: MemberWeight[];
  joining: { appliance: string; revert: "pool" | "detached" }[];
  leaving: { appliance: string; then: "unassign" | "detach" }[];
  /** Unassigned members that are not in the table (DETACHED, DOWN): removed at once. */
  removeNow: string[];
  weightsAfter: Record<string, number>;
  /** The group's weightsSource once applied (weightsSourceAfter of the changes). */
  weightsSourceAfter: WeightsSource;
}

/** Computes (and checks) the effect of applying `groupName`'s pending changes. Throws TandemError. */
export function planApply(model: ControlModel, groupName: string): ApplyPlan {
  const g = model.groups.get(groupName);
  if (g === undefined) throw notFoundGroup(groupName);
  const changes = changesOfGroup(model, groupName);
  if (changes.length === 0) throw new TandemError(ErrorCode.NO_PENDING_CHANGES, `security group ${groupName} has no pending changes`, { group: groupName });
  requireIdle(g, "apply changes");
  const from = settledTableOf(g);
  const inTable = new Set(g.tableMembers.map((m) => m.id));
  const weightsAfter: Record<string, number> = { ...g.weights };
  const joining: ApplyPlan["joining"] = [];
  const leaving: ApplyPlan["leaving"] = [];
  const removeNow: string[] = [];
  const stateError = (c: PendingChange, why: string): TandemError =>
    new TandemError(ErrorCode.INVALID_STATE, `pending ${c.kind} of ${c.appliance} in ${groupName} cannot be applied: ${why}; discard it`, {
      group: groupName,
      appliance: c.appliance,
      kind: c.kind,
    });
  for (const c of changes) {
    const a = model.appliances.get(c.appliance);
    if (a === undefined) throw notFoundAppliance(c.appliance);
    const m = model.members.get(c.appliance);
    switch (c.kind) {
      case "assign":
        if (m === undefined) joining.push({ appliance: a.id, revert: "pool" });
        else if (m.group === groupName && m.state === "DETACHED") joining.push({ appliance: a.id, revert: "detached" });
        else throw stateError(c, m.group === groupName ? `it is ${m.state}` : `it is a member of ${m.group}`);
        if (c.weight !== null) weightsAfter[a.id] = c.weight;
        break;
      case "unassign":
        if (m === undefined || m.group !== groupName) throw stateError(c, "it is not a member");
        if (inTable.has(a.id)) leaving.push({ appliance: a.id, then: "unassign" });
        else removeNow.push(a.id);
        delete weightsAfter[a.id];
        break;
      case "drain":
        if (m === undefined || m.group !== groupName || m.state !== "UP" || !inTable.has(a.id)) throw stateError(c, `it is ${m?.state ?? "not a member"}`);
        leaving.push({ appliance: a.id, then: "detach" });
        break;
      case "weight":
        if (m === undefined || m.group !== groupName) throw stateError(c, "it is not a member");
        // Back to cores clears the override (c.weight is the cores it was staged with).
        if (c.weightsSource === "cores") delete weightsAfter[a.id];
        else weightsAfter[a.id] = c.weight!;
        break;
    }
  }
  const leavingIds = new Set(leaving.map((l) => l.appliance));
  const target: MemberWeight[] = [];
  for (const tm of g.tableMembers) {
    if (leavingIds.has(tm.id)) continue;
    const change = changes.find((c) => c.appliance === tm.id && c.kind === "weight");
    target.push({ id: tm.id, weight: change === undefined ? tm.weight : change.weight! });
  }
  for (const j of joining) {
    const a = model.appliances.get(j.appliance)!;
    target.push({ id: a.id, weight: weightsAfter[a.id] ?? a.cores });
  }
  target.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  if (target.length > Math.min(MEMBER_COUNT_MAX, g.bucketCount)) {
    throw new TandemError(ErrorCode.LIMIT_EXCEEDED, `security group ${groupName}: ${target.length} members exceed its ${g.bucketCount} buckets`, { group: groupName });
  }
  // Everyone who is a member while the transition runs: leavers serve beside joiners until the
  // flip (only members removed at once are out of it).
  const during = [
    ...membersOfGroup(model, groupName)
      .filter((m) => !removeNow.includes(m.appliance))
      .map((m) => m.appliance),
    ...joining.filter((j) => j.revert === "pool").map((j) => j.appliance),
  ].map((id) => model.appliances.get(id)!);
  const problem = consistencyProblem(g, during);
  if (problem !== null) throw problem;
  return { group: g, changes, from, target, joining, leaving, removeNow, weightsAfter, weightsSourceAfter: weightsSourceAfter(g.weightsSource, changes) };
}

function sameWeights(a: readonly MemberWeight[], b: readonly MemberWeight[]): boolean {
  if (a.length !== b.length) return false;
  const byId = new Map(a.map((m) => [m.id, m.weight]));
  return b.every((m) => byId.get(m.id) === m.weight);
}

interface TransitionStart {
  kind: TransitionKind;
  from: EpochTable;
  fromRendezvous: boolean;
  target: MemberWeight[];
  dead: string | null;
  joining: TransitionRecord["joining"];
  leaving: TransitionRecord["leaving"];
  consumed: PendingChange[];
  weightsAfter: Record<string, number>;
  lostBuckets: number;
}

/** Starts a transition on `g` (which must be idle); completes it at once when nothing needs filling. */
function startTransition(d: Draft, g: SecurityGroup, s: TransitionStart, why: string): SecurityGroup {
  assert(g.transition === null, "one transition per group at a time");
  const seq = g.transitionSeq + 1;
  const record: TransitionRecord = {
    seq,
    kind: s.kind,
    from: tableRecordOf(s.from, s.fromRendezvous),
    target: s.target,
    dead: s.dead,
    joining: s.joining,
    leaving: s.leaving,
    consumed: s.consumed,
    weightsAfter: s.weightsAfter,
    lostBuckets: s.lostBuckets,
    startedAt: d.ctx.nowIso,
  };
  let next: SecurityGroup = { ...g, transition: record, transitionSeq: seq };
  const plan = planOf(next);
  const routing = routingTableOf(plan);
  assert(routing.epoch >= g.epoch, "epochs never go back");
  next = { ...next, epoch: routing.epoch };
  d.putGroup(next);
  for (const j of s.joining) d.setMember(j.appliance, g.name, "JOINING", `${s.kind} #${seq}`);
  for (const l of s.leaving) d.setMember(l.appliance, g.name, "DRAINING", `${s.kind} #${seq}`);
  const fills = fillPairCount(awaitedPhaseOf(plan));
  d.event("transition.started", `security group ${g.name}: ${s.kind} #${seq} from epoch ${s.from.epoch} to ${plan.final.epoch}, ${fills} fills (${why})`, {
    group: g.name,
    data: { kind: s.kind, seq, fromEpoch: s.from.epoch, finalEpoch: plan.final.epoch, fills },
  });
  if (fills === 0) return completeTransition(d, next, "nothing to fill");
  // Always sent: a new routing epoch (promote, rescue), or the old one with its fill map.
  d.effect({ kind: "install-epoch", group: g.name, epoch: routing.epoch });
  d.soft.push({ kind: "fill-start", group: g.name, seq });
  return next;
}

/** Every fill is confirmed: the final table routes; joiners are UP, leavers leave. */
function completeTransition(d: Draft, g: SecurityGroup, why: string): SecurityGroup {
  const record = g.transition;
  assert(record !== null, "complete needs a transition");
  const plan = planOf(g);
  const next: SecurityGroup = {
    ...g,
    transition: null,
    epoch: plan.final.epoch,
    tableMembers: record.target,
    weights: record.weightsAfter,
    weightsSource: weightsSourceAfter(g.weightsSource, record.consumed),
  };
  assert(next.epoch > g.epoch, "the final table has a newer epoch than the one routing during the fills");
  d.putGroup(next);
  for (const j of record.joining) if (d.member(j.appliance)?.state === "JOINING") d.setMember(j.appliance, g.name, "UP", `${record.kind} #${record.seq} done`);
  for (const l of record.leaving) {
    if (d.member(l.appliance)?.state !== "DRAINING") continue;
    if (l.then === "unassign") d.removeMember(l.appliance, `${record.kind} #${record.seq} done`);
    else {
      d.setMember(l.appliance, g.name, "DETACHED", `${record.kind} #${record.seq} done`);
      d.effect({ kind: "release-member", group: g.name, appliance: l.appliance });
    }
  }
  d.effect({ kind: "install-epoch", group: g.name, epoch: next.epoch });
  d.soft.push({ kind: "fill-end", group: g.name });
  d.event("transition.completed", `security group ${g.name}: ${record.kind} #${record.seq} done, epoch ${next.epoch} routes (${why})`, {
    group: g.name,
    data: { kind: record.kind, seq: record.seq, epoch: next.epoch },
  });
  return next;
}

/** Aborts a make-before-break transition in its fill phase: the old epoch keeps routing. */
function rollbackTransition(d: Draft, g: SecurityGroup, why: string): SecurityGroup {
  const record = g.transition;
  assert(record !== null && record.kind !== "failure" && record.kind !== "rescue", "only make-before-break transitions roll back");
  assert(record.from.owner === null, "a make-before-break starts from a settled table");
  assert(record.from.epoch === g.epoch, "a fill phase routes the old epoch");
  const next: SecurityGroup = { ...g, transition: null, tableMembers: record.from.members };
  d.putGroup(next);
  for (const j of record.joining) {
    if (d.member(j.appliance)?.state !== "JOINING") continue;
    if (j.revert === "pool") d.removeMember(j.appliance, `${record.kind} #${record.seq} rolled back`);
    else d.setMember(j.appliance, g.name, j.revert === "down" ? "DOWN" : "DETACHED", `${record.kind} #${record.seq} rolled back`);
  }
  for (const l of record.leaving) if (d.member(l.appliance)?.state === "DRAINING") d.setMember(l.appliance, g.name, "UP", `${record.kind} #${record.seq} rolled back`);
  let restored = 0;
  for (const c of record.consumed) {
    if (d.change(c.appliance) !== undefined || d.appliance(c.appliance) === undefined) continue;
    d.putChange(c);
    restored++;
  }
  d.effect({ kind: "install-epoch", group: g.name, epoch: next.epoch });
  d.soft.push({ kind: "fill-end", group: g.name });
  d.event("transition.rolled-back", `security group ${g.name}: ${record.kind} #${record.seq} rolled back (${why}); epoch ${next.epoch} still routes; ${restored} changes pending again`, {
    group: g.name,
    data: { kind: record.kind, seq: record.seq, epoch: next.epoch, restored },
  });
  return next;
}

function changesApply(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group"]);
  const name = checkName(o.group, "group");
  const p = planApply(d.model, name);
  let g = p.group;
  for (const c of p.changes) d.deleteChange(c.appliance);
  for (const id of p.removeNow) d.removeMember(id, "unassigned");
  const settle = (extra: Partial<SecurityGroup>): void => {
    g = { ...g, weights: p.weightsAfter, weightsSource: p.weightsSourceAfter, ...extra };
    d.putGroup(g);
  };
  let transition: { kind: TransitionKind; seq: number } | null = null;
  if (p.from === null) {
    if (p.target.length > 0) {
      settle({ epoch: g.epoch + 1, tableMembers: p.target });
      for (const j of p.joining) d.setMember(j.appliance, name, "UP", "first table of the group");
      d.effect({ kind: "install-epoch", group: name, epoch: g.epoch });
      d.event("epoch.installed", `security group ${name}: epoch ${g.epoch} with ${p.target.length} members`, { group: name });
    } else settle({});
  } else if (p.target.length === 0) {
    settle({ tableMembers: [] });
    for (const l of p.leaving) {
      if (l.then === "unassign") d.removeMember(l.appliance, "unassigned");
      else {
        d.setMember(l.appliance, name, "DETACHED", "drained");
        d.effect({ kind: "release-member", group: name, appliance: l.appliance });
      }
    }
    d.effect({ kind: "clear-epoch", group: name });
    d.event("epoch.cleared", `security group ${name} has no members in its table any more`, { group: name });
  } else if (sameWeights(p.from.table.members.map((id, i) => ({ id, weight: p.from!.table.weights[i]! })), p.target)) {
    settle({});
  } else {
    const kind = makeBeforeBreakKind(
      p.joining.map((j) => j.appliance),
      p.leaving.map((l) => l.appliance),
      p.from,
      p.target,
    );
    g = startTransition(
      d,
      g,
      {
        kind,
        from: p.from,
        fromRendezvous: true,
        target: p.target,
        dead: null,
        joining: p.joining,
        leaving: p.leaving,
        consumed: p.changes,
        weightsAfter: p.weightsAfter,
        lostBuckets: 0,
      },
      `${p.changes.length} changes applied by ${d.ctx.actor}`,
    );
    transition = { kind, seq: g.transitionSeq };
  }
  return {
    group: name,
    applied: p.changes.length,
    epoch: g.epoch,
    transition: transition === null ? null : { ...transition, running: g.transition !== null },
  };
}

function changesDiscard(d: Draft, input: unknown): unknown {
  const o = fields(input, ["group", "appliance"]);
  const name = checkName(o.group, "group");
  requireGroup(d, name);
  let changes = changesOfGroup(d.model, name);
  if (o.appliance !== undefined) {
    const id = checkName(o.appliance, "appliance");
    changes = changes.filter((c) => c.appliance === id);
    if (changes.length === 0) {
      throw new TandemError(ErrorCode.NO_PENDING_CHANGES, `security group ${name} has no pending change for ${id}`, { group: name, appliance: id });
    }
  }
  if (changes.length === 0) throw new TandemError(ErrorCode.NO_PENDING_CHANGES, `security group ${name} has no pending changes`, { group: name });
  for (const c of changes) d.deleteChange(c.appliance);
  return { group: name, discarded: changes.length };
}

// ---------------------------------------------------------------------------------------------
// Health and transitions over time.

function isMakeBeforeBreak(kind: TransitionKind): boolean {
  return kind === "join" || kind === "drain" || kind === "weights";
}

/** A watched member went DOWN: fail it over (roll back a fill it disturbs, plan a failure or a rescue). */
function failMember(d: Draft, appliance: string, why: string): void {
  const m = d.member(appliance);
  assert(m !== undefined && WATCHED_STATES.includes(m.state), "only watched members fail");
  let g = requireGroup(d, m.group);
  d.soft.push({ kind: "down", appliance });
  if (g.transition !== null && isMakeBeforeBreak(g.transition.kind)) {
    // Its fill phase never changed the routing table: roll it back, then fail over from the
    // old table. A joiner held nothing: it just returns where it came from (pool, DOWN,
    // DETACHED) and its assign is pending again.
    const joiner = g.transition.joining.some((j) => j.appliance === appliance);
    g = rollbackTransition(d, g, `${appliance} went DOWN`);
    if (joiner) return;
  }
  d.setMember(appliance, g.name, "DOWN", why);
  if (g.transition !== null) {
    // A failure or rescue is running: its routing table has unprotected buckets.
    const current = routingTableOf(planOf(g));
    if (!current.table.members.includes(appliance) || current.table.members.length < 2) return;
    const rescue = rescueOf(current, appliance);
    const idle: SecurityGroup = { ...g, transition: null };
    if (rescue.lostBuckets > 0) {
      d.event("buckets.lost", `security group ${g.name}: ${rescue.lostBuckets} buckets lost every copy (a second failure before re-protection)`, {
        group: g.name,
        member: appliance,
        data: { buckets: rescue.lostBuckets },
      });
    }
    startTransition(
      d,
      idle,
      {
        kind: "rescue",
        from: rescue.table,
        fromRendezvous: false,
        target: rescue.survivors,
        dead: appliance,
        joining: [],
        leaving: [],
        consumed: [],
        weightsAfter: g.transition.weightsAfter,
        lostBuckets: rescue.lostBuckets,
      },
      `${appliance} went DOWN during ${g.transition.kind} #${g.transition.seq}`,
    );
    return;
  }
  const current = settledTableOf(g);
  if (current === null || !current.table.members.includes(appliance)) return;
  if (current.table.members.length === 1) {
    d.event("group.unavailable", `security group ${g.name}: its only member ${appliance} is DOWN; traffic waits for it`, { group: g.name, member: appliance });
    return;
  }
  startTransition(
    d,
    g,
    {
      kind: "failure",
      from: current,
      fromRendezvous: true,
      target: g.tableMembers.filter((tm) => tm.id !== appliance),
      dead: appliance,
      joining: [],
      leaving: [],
      consumed: [],
      weightsAfter: g.weights,
      lostBuckets: 0,
    },
    `${appliance} went DOWN`,
  );
}

/** DOWN members of an idle group heard from again: back in the table (make-before-break). */
function recoverMembers(d: Draft, groupName: string, appliances: string[]): string[] {
  const g = d.group(groupName);
  if (g === undefined || g.transition !== null) return [];
  const current = settledTableOf(g);
  const recovered: string[] = [];
  const joiners: string[] = [];
  for (const id of appliances) {
    const m = d.member(id);
    if (m === undefined || m.group !== groupName || m.state !== "DOWN" || d.change(id) !== undefined) continue;
    if (current !== null && current.table.members.includes(id)) {
      // Still in the table (it was the only member): it serves again at once.
      d.setMember(id, groupName, "UP", "heartbeats again");
      d.effect({ kind: "install-epoch", group: groupName, epoch: g.epoch });
      recovered.push(id);
    } else joiners.push(id);
  }
  if (joiners.length === 0) return recovered;
  const joining = joiners.map((id) => ({ id, weight: weightOf(g, d.appliance(id)!) }));
  if (current === null) {
    const next: SecurityGroup = { ...g, epoch: g.epoch + 1, tableMembers: joining };
    d.putGroup(next);
    for (const id of joiners) d.setMember(id, groupName, "UP", "heartbeats again");
    d.effect({ kind: "install-epoch", group: groupName, epoch: next.epoch });
    return [...recovered, ...joiners];
  }
  const target = [...g.tableMembers, ...joining].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  startTransition(
    d,
    g,
    {
      kind: makeBeforeBreakKind(joiners, [], current, target),
      from: current,
      fromRendezvous: true,
      target,
      dead: null,
      joining: joiners.map((appliance) => ({ appliance, revert: "down" as const })),
      leaving: [],
      consumed: [],
      weightsAfter: g.weights,
      lostBuckets: 0,
    },
    `${joiners.join(", ")} heartbeating again`,
  );
  return [...recovered, ...joiners];
}

function healthTick(d: Draft, input: unknown): unknown {
  const obs = input as Observations;
  assert(typeof obs === "object" && obs !== null && Array.isArray(obs.silent), "health.tick takes Observations");
  const summary = { down: [] as string[], completed: [] as string[], rolledBack: [] as string[], stalled: [] as string[], recovered: [] as string[], released: [] as string[] };
  for (const r of obs.released) {
    d.soft.push({ kind: "release", appliance: r.appliance });
    d.event("member.released", `${r.appliance}: flap penalty decayed to ${Math.round(r.penalty)}; no longer held DOWN`, { member: r.appliance, data: { penalty: r.penalty } });
    summary.released.push(r.appliance);
  }
  for (const s of [...obs.silent].sort((x, y) => (x.appliance < y.appliance ? -1 : 1))) {
    const m = d.member(s.appliance);
    if (m === undefined || !WATCHED_STATES.includes(m.state)) continue;
    failMember(d, s.appliance, `silent for ${Math.round(s.silentMs)} ms`);
    summary.down.push(s.appliance);
    if (s.newlySuppressed) {
      d.event("member.suppressed", `${s.appliance} flaps (penalty ${Math.round(s.penalty)}): held DOWN until the penalty decays`, {
        group: m.group,
        member: s.appliance,
        data: { penalty: s.penalty },
      });
    }
  }
  for (const c of obs.fillsComplete) {
    const g = d.group(c.group);
    if (g === undefined || g.transition === null || g.transition.seq !== c.seq) continue;
    completeTransition(d, g, "every fill confirmed");
    summary.completed.push(c.group);
  }
  for (const t of obs.fillsTimedOut) {
    const g = d.group(t.group);
    if (g === undefined || g.transition === null || g.transition.seq !== t.seq) continue;
    if (isMakeBeforeBreak(g.transition.kind)) {
      rollbackTransition(d, g, `fills not confirmed within ${t.elapsedMs} ms`);
      summary.rolledBack.push(t.group);
    } else {
      d.effect({ kind: "install-epoch", group: g.name, epoch: g.epoch });
      d.soft.push({ kind: "fill-restart", group: g.name, seq: t.seq });
      d.event("transition.stalled", `security group ${g.name}: ${g.transition.kind} #${t.seq} fills not confirmed within ${t.elapsedMs} ms; fills sent again`, {
        group: g.name,
        data: { kind: g.transition.kind, seq: t.seq },
      });
      summary.stalled.push(t.group);
    }
  }
  const byGroup = new Map<string, string[]>();
  for (const id of [...obs.recovered].sort()) {
    const m = d.member(id);
    if (m === undefined) continue;
    byGroup.set(m.group, [...(byGroup.get(m.group) ?? []), id]);
  }
  for (const [group, ids] of byGroup) summary.recovered.push(...recoverMembers(d, group, ids));
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Summaries returned to callers.

export function groupSummary(model: ControlModel, g: SecurityGroup): Record<string, unknown> {
  const members = membersOfGroup(model, g.name);
  return {
    name: g.name,
    epoch: g.epoch,
    bucketCount: g.bucketCount,
    members: members.length,
    up: members.filter((m) => m.state === "UP").length,
    interfaces: g.interfaces.length,
    policyRevision: g.policyRevision,
    rules: g.policy.rules.length,
    allowMixedModels: g.allowMixedModels,
    upgrade: g.upgrade,
    transition: g.transition === null ? null : { kind: g.transition.kind, seq: g.transition.seq },
    pendingChanges: changesOfGroup(model, g.name).length,
    createdAt: g.createdAt,
  };
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

type Handler = (d: Draft, input: unknown, env: CommandEnv) => unknown;

const HANDLERS: Record<CommandName, Handler> = {
  "appliance.add": applianceAdd,
  "appliance.update": applianceUpdate,
  "appliance.remove": applianceRemove,
  "sg.create": sgCreate,
  "sg.update": sgUpdate,
  "sg.delete": sgDelete,
  "policy.apply": policyApply,
  "sg.assign": sgAssign,
  "sg.unassign": sgUnassign,
  "sg.drain": sgDrain,
  "sg.weight": sgWeight,
  "sg.weights.auto": sgWeightsAuto,
  "weights.measured": weightsMeasured,
  "sg.upgrade.start": upgradeStart,
  "sg.upgrade.finish": upgradeFinish,
  "sg.upgrade.pause": upgradePause,
  "sg.upgrade.resume": upgradeResume,
  "sg.upgrade.rollback": upgradeRollback,
  "sg.upgrade.abort": upgradeAbort,
  "upgrade.step": upgradeStep,
  "changes.apply": changesApply,
  "changes.discard": changesDiscard,
  "health.tick": healthTick,
};

/** What the audit record keeps of the input: a policy is summarised, the rest kept as given. */
function auditArgsOf(input: unknown): unknown {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return input;
  const o = { ...(input as Record<string, unknown>) };
  if (o.policy !== undefined) {
    const rules = (o.policy as { rules?: unknown } | null)?.rules;
    o.policy = { rules: Array.isArray(rules) ? rules.length : null };
  }
  if (typeof o.policyText === "string") o.policyText = `${o.policyText.length} characters`;
  return o;
}

/**
 * Runs one command against `model`. Never throws a TandemError: a refused command is an
 * outcome with ok false, the model unchanged and an audit-only mutation. Assertion failures
 * (bugs) do throw.
 */
export function runCommand(model: ControlModel, command: string, input: unknown, ctx: CommandContext, env: CommandEnv): CommandOutcome {
  const audit: AuditRecord = { at: ctx.nowIso, actor: ctx.actor, command, args: auditArgsOf(input), result: "ok" };
  const refused = (error: TandemError): CommandOutcome => {
    audit.result = "error";
    audit.code = error.code;
    audit.message = error.message;
    return { ok: false, result: undefined, error, model, mutation: { puts: [], deletes: [], audit: [audit], events: [] }, effects: [], soft: [] };
  };
  if (!isCommandName(command)) return refused(new TandemError(ErrorCode.INVALID_ARGUMENT, `unknown command "${command}"`, { command }));
  const d = new Draft(model, ctx);
  let result: unknown;
  try {
    result = HANDLERS[command](d, input, env);
  } catch (error) {
    if (error instanceof TandemError) return refused(error);
    throw error;
  }
  const next = d.model;
  const mutation = mutationBetween(model, next);
  mutation.audit.push(audit);
  mutation.events.push(...d.events);
  return { ok: true, result, error: null, model: next, mutation, effects: foldEffects(d.effects), soft: d.soft };
}
