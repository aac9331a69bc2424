// The control plane's model: appliances, security groups, members, staged changes. This is the
// persisted state (one store document per entry) and nothing else: heartbeat times, load
// figures, flap penalties and fill confirmations are soft state kept beside it
// (orchestrator.ts, health.ts, transitions.ts) and rebuilt after a restart.
//
// User input and resolved values are distinct types (SgInterfaceInput -> SgInterface,
// AutoscaleInput -> AutoscaleRules): the resolve* functions below apply every default in one
// place, so the model only ever holds complete values.
//
// Invariants kept (checkModelInvariants checks them; the property test drives them):
// - An appliance is a member of at most one group (members are keyed by appliance id); an
//   appliance without a member entry is in the pool (state UNASSIGNED).
// - Every member, pending change and transition names an existing group and appliance.
// - At most one pending change per appliance (changes are keyed by appliance id).
// - Members of a group share one model (unless allowMixedModels) and one software version
//   (during a rolling upgrade: the upgrade's from or target version).
// - A group's epoch never decreases; with no transition, its routing table is the rendezvous
//   table of tableMembers (empty: no table); members of the routing table are group members.
// - The model is immutable: a command builds a new model (copy-on-write maps, replaced entries),
//   so the store mutation is exactly the entries whose object changed.

import type { MemberWeight } from "../distribution/rendezvous.js";
import { BUCKET_COUNT_MAX, MEMBER_COUNT_MAX } from "../distribution/rendezvous.js";
import type { PolicySpec } from "../engine/policy.js";
import type { StaticRouteSpec } from "../engine/routing.js";
import { parseIp } from "../packet/addr.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export type MemberState = "UNASSIGNED" | "JOINING" | "UP" | "DRAINING" | "DOWN" | "DETACHED";
export const MEMBER_STATES: readonly MemberState[] = ["UNASSIGNED", "JOINING", "UP", "DRAINING", "DOWN", "DETACHED"];
/** States a member entry can have (UNASSIGNED is the absence of an entry). */
export type AssignedState = Exclude<MemberState, "UNASSIGNED">;
/** States in which the health tracker watches a member's heartbeats and fails it when silent. */
export const WATCHED_STATES: readonly AssignedState[] = ["JOINING", "UP", "DRAINING"];

/** Bounds on the model: every collection and list an operator can grow is bounded here. */
export const ORCHESTRATOR_LIMITS = {
  appliancesMax: MEMBER_COUNT_MAX,
  groupsMax: 256,
  interfacesPerGroupMax: 256,
  routesPerGroupMax: 10_000,
  pendingChangesMax: MEMBER_COUNT_MAX,
  nameLengthMax: 128,
  textLengthMax: 256,
  coresMax: 4096,
  memoryMbMax: 1 << 30,
  weightMax: 1_000_000,
  /** Smallest bucket count an operator may ask for (tests and small labs); the default is automatic. */
  bucketCountMin: 64,
  bucketCountMax: BUCKET_COUNT_MAX,
} as const;

export interface Appliance {
  /** Id or serial number: stable for the machine's life. */
  id: string;
  model: string;
  cores: number;
  memoryMb: number;
  /** Software version it runs. */
  version: string;
  /** Where its member process listens (control and sync), "host" or "host:port". */
  address: string;
  registeredAt: string;
}

/** An interface as the operator writes it. */
/** The IANA VXLAN port: where a site's tunnel endpoint listens unless told otherwise. */
export const SITE_PORT_DEFAULT = 4789;

export interface SgInterfaceInput {
  name: string;
  /** VXLAN network identifier, 1..16777215. */
  vni: number;
  /** The site's VXLAN tunnel endpoint (an IP address). */
  siteEndpoint: string;
  /** UDP port of the site's VXLAN endpoint (default 4789, the IANA VXLAN port). */
  sitePort?: number;
  /** The group's gateway address on this segment, "address/prefix". */
  gateway: string;
  /** The gateway's MAC; defaults to a locally administered address derived from vni and position. */
  mac?: string;
}

/** An interface with its defaults applied. */
export interface SgInterface {
  name: string;
  vni: number;
  siteEndpoint: string;
  sitePort: number;
  gateway: string;
  mac: string;
}

/** Rules for the autoscaler (it lives elsewhere; the group only stores them). */
export interface AutoscaleRules {
  enabled: boolean;
  minMembers: number;
  maxMembers: number;
  /** Scale out above this average CPU, in above cpuLowPct (hysteresis). */
  cpuHighPct: number;
  cpuLowPct: number;
  /** Scale out when the average member holds more connections than this. */
  connectionsPerMemberHigh: number;
  /** Time between two scaling decisions. */
  cooldownMs: number;
  /**
   * Order among groups that want the same spare (the last one, typically): the higher first
   * (AUTOSCALE_PRIORITY_MIN..MAX). Before the overload ratio; see autoscaler.ts.
   */
  priority: number;
}
export type AutoscaleInput = Partial<AutoscaleRules>;
/** Range of AutoscaleRules.priority (wide enough for tiers, small enough to read). */
export const AUTOSCALE_PRIORITY_MIN = -1000;
export const AUTOSCALE_PRIORITY_MAX = 1000;

export const AUTOSCALE_DEFAULTS: Readonly<AutoscaleRules> = {
  enabled: false,
  minMembers: 2,
  maxMembers: 16,
  cpuHighPct: 75,
  cpuLowPct: 30,
  connectionsPerMemberHigh: 1_000_000,
  cooldownMs: 300_000,
  priority: 0,
};

/** Where the member being upgraded is in its one-at-a-time cycle (src/orchestrator/upgrade.ts). */
export type UpgradeStep = "drain" | "restart" | "rejoin" | "verify";
export const UPGRADE_STEPS: readonly UpgradeStep[] = ["drain", "restart", "rejoin", "verify"];

/**
 * A rolling upgrade in progress. The orchestrator drives it one member at a time (drain,
 * restart on the goal version, rejoin, verify); the goal is targetVersion going forward and
 * fromVersion when rolling back. Members may run either version meanwhile, and only then.
 */
export interface UpgradeState {
  fromVersion: string;
  targetVersion: string;
  startedAt: string;
  /** "back": a rollback, members return to fromVersion. */
  direction: "forward" | "back";
  /** Paused by an operator or by a failed step: no new step starts until resumed. */
  paused: boolean;
  /** Why it is paused (or null). */
  reason: string | null;
  /** The member in its cycle now (null: between members). */
  current: { appliance: string; step: UpgradeStep; since: string } | null;
}

/** Connection-table capacity from memory: 2% of it at 64 bytes per connection, within bounds. */
export const CAPACITY_MIN = 1 << 16;
export const CAPACITY_MAX = 1 << 20;
export function capacityOfMemory(memoryMb: number): number {
  return Math.min(CAPACITY_MAX, Math.max(CAPACITY_MIN, Math.floor((memoryMb * 1024 * 1024 * 0.02) / 64)));
}

/** The version members are being moved to. */
export function upgradeGoalOf(u: UpgradeState): string {
  return u.direction === "back" ? u.fromVersion : u.targetVersion;
}

/**
 * A routing table as persisted: the members (with weights) of a rendezvous table, or, when the
 * table is not the rendezvous table of its members (a rescue table after a second failure),
 * its owner and backup arrays encoded (transitions.ts encodeRoles).
 */
export interface TableRecord {
  epoch: number;
  members: MemberWeight[];
  owner: string | null;
  backup: string | null;
}

export type TransitionKind = "join" | "drain" | "weights" | "failure" | "rescue";

/**
 * A transition in progress. The plan itself is not stored: it is a pure function of this
 * record, the group's seed and bucket count (transitions.ts planOf), so every orchestrator
 * recomputes the same plan after a restart.
 */
export interface TransitionRecord {
  /** Per group, increasing: names this transition in soft state and observations. */
  seq: number;
  kind: TransitionKind;
  /** The table the plan starts from. */
  from: TableRecord;
  /** Members (with weights) of the final table. */
  target: MemberWeight[];
  /** failure / rescue: the member that died. */
  dead: string | null;
  /** Members filling in; on rollback each returns to `revert`. */
  joining: { appliance: string; revert: "pool" | "down" | "detached" }[];
  /** Members leaving; at completion each is unassigned (back to the pool) or detached. */
  leaving: { appliance: string; then: "unassign" | "detach" }[];
  /** Pending changes this transition applies; restored as pending on rollback. */
  consumed: PendingChange[];
  /** The group's weight overrides once the transition completes. */
  weightsAfter: Record<string, number>;
  /** rescue: buckets that had no surviving copy (their connections are lost). */
  lostBuckets: number;
  startedAt: string;
}

export interface SecurityGroup {
  name: string;
  interfaces: SgInterface[];
  routes: StaticRouteSpec[];
  policy: PolicySpec;
  /** Increases with every policy apply: members report the revision they run. */
  policyRevision: number;
  /** Weight overrides by appliance id; a member without one weighs its core count. */
  weights: Record<string, number>;
  /** Who set the current weights (capacity-weights.ts: the automatic path leaves "operator" alone). */
  weightsSource: WeightsSource;
  autoscale: AutoscaleRules;
  allowMixedModels: boolean;
  upgrade: UpgradeState | null;
  /** Keys the flow hash and the rendezvous ranking of this group. */
  seed: number;
  /** Fixed at creation: changing it would re-bucket every flow. */
  bucketCount: number;
  /** Epoch of the routing table (0: the group never had one). Never decreases. */
  epoch: number;
  /** Members of the settled routing table (valid when transition is null); empty: no table. */
  tableMembers: MemberWeight[];
  transition: TransitionRecord | null;
  /** Last TransitionRecord.seq handed out. */
  transitionSeq: number;
  createdAt: string;
}

export interface Member {
  appliance: string;
  group: string;
  state: AssignedState;
  /** When it entered `state` (ISO). */
  since: string;
}

export type ChangeKind = "assign" | "unassign" | "drain" | "weight";

/**
 * Who set a group's weights: "cores" (no override, or overrides cleared by `sg.weights.auto`),
 * "operator" (sg.weight, sg.assign with a weight), "measured" (the system command
 * weights.measured, from measured capacity: capacity-weights.ts).
 */
export type WeightsSource = "cores" | "operator" | "measured";
export const WEIGHTS_SOURCES: readonly WeightsSource[] = ["cores", "operator", "measured"];

export interface PendingChange {
  appliance: string;
  group: string;
  kind: ChangeKind;
  /** assign (optional override) and weight. */
  weight: number | null;
  /** The group's weightsSource once this change applies; null: it sets no weight. "cores" clears the override. */
  weightsSource: WeightsSource | null;
  stagedBy: string;
  stagedAt: string;
}

export interface ControlModel {
  readonly appliances: ReadonlyMap<string, Appliance>;
  readonly groups: ReadonlyMap<string, SecurityGroup>;
  /** By appliance id. */
  readonly members: ReadonlyMap<string, Member>;
  /** By appliance id. */
  readonly changes: ReadonlyMap<string, PendingChange>;
}

export function emptyModel(): ControlModel {
  return { appliances: new Map(), groups: new Map(), members: new Map(), changes: new Map() };
}

// ---------------------------------------------------------------------------------------------
// Validation of operator values. Every failure is INVALID_ARGUMENT naming the field.

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const VNI_MAX = 0xffffff;

export function invalid(field: string, message: string, details: Record<string, unknown> = {}): TandemError {
  return new TandemError(ErrorCode.INVALID_ARGUMENT, `${field}: ${message}`, { field, ...details });
}

/** A name usable as an id in URLs and store keys: letters, digits, ".", "_", ":", "-". */
export function checkName(value: unknown, field: string): string {
  if (typeof value !== "string" || value.length === 0) throw invalid(field, "must be a non-empty string");
  if (value.length > ORCHESTRATOR_LIMITS.nameLengthMax) throw invalid(field, `at most ${ORCHESTRATOR_LIMITS.nameLengthMax} characters`);
  if (!NAME_PATTERN.test(value)) throw invalid(field, `"${value}" may only contain letters, digits, ".", "_", ":" and "-", and must start with a letter or digit`);
  return value;
}

export function checkText(value: unknown, field: string): string {
  if (typeof value !== "string" || value.trim().length === 0) throw invalid(field, "must be a non-empty string");
  if (value.length > ORCHESTRATOR_LIMITS.textLengthMax) throw invalid(field, `at most ${ORCHESTRATOR_LIMITS.textLengthMax} characters`);
  if (/\s/.test(value)) throw invalid(field, `"${value}" must not contain white space`);
  return value;
}

export function checkInteger(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw invalid(field, `must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A member weight: positive and finite (rendezvous needs it), bounded. */
export function checkWeight(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > ORCHESTRATOR_LIMITS.weightMax) {
    throw invalid(field, `must be a number greater than 0 and at most ${ORCHESTRATOR_LIMITS.weightMax}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function defaultMac(vni: number, position: number): string {
  const octets = [0x02, 0x74, (vni >>> 16) & 0xff, (vni >>> 8) & 0xff, vni & 0xff, position & 0xff];
  return octets.map((o) => o.toString(16).padStart(2, "0")).join(":");
}

/**
 * Interfaces with defaults applied. Checks each field and that names and VNIs are unique
 * within the list; gateway addresses are checked by the route table (commands.ts), which also
 * refuses two interfaces on one connected network.
 */
export function resolveInterfaces(input: unknown): SgInterface[] {
  if (!Array.isArray(input)) throw invalid("interfaces", "must be a list");
  if (input.length > ORCHESTRATOR_LIMITS.interfacesPerGroupMax) {
    throw invalid("interfaces", `at most ${ORCHESTRATOR_LIMITS.interfacesPerGroupMax} interfaces per group`);
  }
  const names = new Set<string>();
  const vnis = new Set<number>();
  return input.map((raw: unknown, position) => {
    const at = `interfaces[${position}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid(at, "must be an object");
    const spec = raw as Record<string, unknown>;
    const name = checkName(spec.name, `${at}.name`);
    if (names.has(name)) throw invalid(`${at}.name`, `duplicate interface name "${name}"`);
    names.add(name);
    const vni = checkInteger(spec.vni, `${at}.vni`, 1, VNI_MAX);
    if (vnis.has(vni)) throw invalid(`${at}.vni`, `VNI ${vni} is used by another interface of this group`);
    vnis.add(vni);
    if (typeof spec.siteEndpoint !== "string" || parseIp(spec.siteEndpoint) === null) {
      throw invalid(`${at}.siteEndpoint`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(spec.siteEndpoint)}`);
    }
    const sitePort = spec.sitePort === undefined ? SITE_PORT_DEFAULT : checkInteger(spec.sitePort, `${at}.sitePort`, 1, 65535);
    if (typeof spec.gateway !== "string" || !spec.gateway.includes("/")) {
      throw invalid(`${at}.gateway`, `must be "address/prefix" (e.g. "10.0.1.1/24"), got ${JSON.stringify(spec.gateway)}`);
    }
    let mac: string;
    if (spec.mac === undefined) mac = defaultMac(vni, position);
    else {
      if (typeof spec.mac !== "string" || !MAC_PATTERN.test(spec.mac.toLowerCase())) {
        throw invalid(`${at}.mac`, `must look like "02:00:00:00:00:01", got ${JSON.stringify(spec.mac)}`);
      }
      mac = spec.mac.toLowerCase();
      if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0) throw invalid(`${at}.mac`, `${mac} is a multicast address`);
    }
    return { name, vni, siteEndpoint: spec.siteEndpoint, sitePort, gateway: spec.gateway.trim(), mac };
  });
}

/** Static routes: shape only here; the route table checks them against the interfaces. */
export function resolveRoutes(input: unknown): StaticRouteSpec[] {
  if (!Array.isArray(input)) throw invalid("routes", "must be a list");
  if (input.length > ORCHESTRATOR_LIMITS.routesPerGroupMax) throw invalid("routes", `at most ${ORCHESTRATOR_LIMITS.routesPerGroupMax} static routes`);
  return input.map((raw: unknown, position) => {
    const at = `routes[${position}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid(at, "must be an object");
    const r = raw as Record<string, unknown>;
    if (typeof r.prefix !== "string") throw invalid(`${at}.prefix`, "must be a string");
    if (typeof r.interface !== "string") throw invalid(`${at}.interface`, "must be a string");
    if (r.via !== undefined && typeof r.via !== "string") throw invalid(`${at}.via`, "must be a string");
    return r.via === undefined ? { prefix: r.prefix, interface: r.interface } : { prefix: r.prefix, interface: r.interface, via: r.via };
  });
}

/** Autoscale rules: `input` over `base` (the defaults, or the group's current rules). */
export function resolveAutoscale(input: unknown, base: Readonly<AutoscaleRules> = AUTOSCALE_DEFAULTS): AutoscaleRules {
  if (input === undefined) return { ...base };
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw invalid("autoscale", "must be an object");
  const r = input as Record<string, unknown>;
  for (const key of Object.keys(r)) if (!(key in AUTOSCALE_DEFAULTS)) throw invalid(`autoscale.${key}`, "unknown field");
  const rules: AutoscaleRules = {
    enabled: r.enabled === undefined ? base.enabled : checkBoolean(r.enabled, "autoscale.enabled"),
    minMembers: r.minMembers === undefined ? base.minMembers : checkInteger(r.minMembers, "autoscale.minMembers", 1, MEMBER_COUNT_MAX),
    maxMembers: r.maxMembers === undefined ? base.maxMembers : checkInteger(r.maxMembers, "autoscale.maxMembers", 1, MEMBER_COUNT_MAX),
    cpuHighPct: r.cpuHighPct === undefined ? base.cpuHighPct : checkNumber(r.cpuHighPct, "autoscale.cpuHighPct", 1, 100),
    cpuLowPct: r.cpuLowPct === undefined ? base.cpuLowPct : checkNumber(r.cpuLowPct, "autoscale.cpuLowPct", 0, 99),
    connectionsPerMemberHigh:
      r.connectionsPerMemberHigh === undefined
        ? base.connectionsPerMemberHigh
        : checkInteger(r.connectionsPerMemberHigh, "autoscale.connectionsPerMemberHigh", 1, Number.MAX_SAFE_INTEGER),
    cooldownMs: r.cooldownMs === undefined ? base.cooldownMs : checkInteger(r.cooldownMs, "autoscale.cooldownMs", 0, 86_400_000),
    // Absent in documents written before the field existed: the base (default 0) applies.
    priority: r.priority === undefined ? base.priority : checkInteger(r.priority, "autoscale.priority", AUTOSCALE_PRIORITY_MIN, AUTOSCALE_PRIORITY_MAX),
  };
  if (rules.minMembers > rules.maxMembers) throw invalid("autoscale.minMembers", `${rules.minMembers} is above maxMembers ${rules.maxMembers}`);
  if (rules.cpuLowPct >= rules.cpuHighPct) throw invalid("autoscale.cpuLowPct", `${rules.cpuLowPct} must be below cpuHighPct ${rules.cpuHighPct} (hysteresis)`);
  return rules;
}

export function checkBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalid(field, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Queries over the model that commands and views share.

/** The weight a member gets in its group's table: the override, else its core count. */
export function weightOf(group: SecurityGroup, appliance: Appliance): number {
  return group.weights[appliance.id] ?? appliance.cores;
}

/**
 * The group's weightsSource once `changes` apply: an operator's weight wins over the others (so
 * the automatic path stays off), then a return to cores, then measured; no weight: unchanged.
 */
export function weightsSourceAfter(current: WeightsSource, changes: readonly PendingChange[]): WeightsSource {
  const sources = new Set(changes.map((c) => c.weightsSource));
  for (const s of ["operator", "cores", "measured"] as const) if (sources.has(s)) return s;
  return current;
}

/** Member entries of a group, sorted by appliance id. */
export function membersOfGroup(model: ControlModel, group: string): Member[] {
  const out: Member[] = [];
  for (const m of model.members.values()) if (m.group === group) out.push(m);
  out.sort((a, b) => compareIds(a.appliance, b.appliance));
  return out;
}

/** Pending changes of a group, sorted by appliance id. */
export function changesOfGroup(model: ControlModel, group: string): PendingChange[] {
  const out: PendingChange[] = [];
  for (const c of model.changes.values()) if (c.group === group) out.push(c);
  out.sort((a, b) => compareIds(a.appliance, b.appliance));
  return out;
}

export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Why `appliances` could not all be members of `group`, or null when they can: one model
 * (unless allowMixedModels) and one version (during an upgrade: its from or target version).
 */
export function consistencyProblem(group: SecurityGroup, appliances: readonly Appliance[]): TandemError | null {
  if (appliances.length === 0) return null;
  if (!group.allowMixedModels) {
    const first = appliances[0]!;
    const other = appliances.find((a) => a.model !== first.model);
    if (other !== undefined) {
      return new TandemError(
        ErrorCode.MODEL_MISMATCH,
        `security group ${group.name}: appliance ${other.id} is model "${other.model}" but ${first.id} is "${first.model}"; members of a group share one model (create the group with allowMixedModels to mix)`,
        { group: group.name, appliance: other.id, model: other.model, expected: first.model },
      );
    }
  }
  if (group.upgrade !== null) {
    const allowed = [group.upgrade.fromVersion, group.upgrade.targetVersion];
    const other = appliances.find((a) => !allowed.includes(a.version));
    if (other !== undefined) {
      return new TandemError(
        ErrorCode.VERSION_MISMATCH,
        `security group ${group.name} is upgrading from ${group.upgrade.fromVersion} to ${group.upgrade.targetVersion}; appliance ${other.id} runs ${other.version}`,
        { group: group.name, appliance: other.id, version: other.version, expected: allowed },
      );
    }
  } else {
    const first = appliances[0]!;
    const other = appliances.find((a) => a.version !== first.version);
    if (other !== undefined) {
      return new TandemError(
        ErrorCode.VERSION_MISMATCH,
        `security group ${group.name}: appliance ${other.id} runs version ${other.version} but ${first.id} runs ${first.version}; members of a group run one version (start a rolling upgrade to change it)`,
        { group: group.name, appliance: other.id, version: other.version, expected: first.version },
      );
    }
  }
  return null;
}

/**
 * Broken invariants of a model, as sentences (empty when it is sound). Cheap enough to run
 * after every confirmed step; it does not build bucket tables.
 */
export function checkModelInvariants(model: ControlModel): string[] {
  const problems: string[] = [];
  for (const [id, m] of model.members) {
    if (id !== m.appliance) problems.push(`member key ${id} != appliance ${m.appliance}`);
    if (!model.appliances.has(m.appliance)) problems.push(`member ${m.appliance}: no such appliance`);
    if (!model.groups.has(m.group)) problems.push(`member ${m.appliance}: no such group ${m.group}`);
  }
  for (const [id, c] of model.changes) {
    if (id !== c.appliance) problems.push(`change key ${id} != appliance ${c.appliance}`);
    if (!model.appliances.has(c.appliance)) problems.push(`change for ${c.appliance}: no such appliance`);
    if (!model.groups.has(c.group)) problems.push(`change for ${c.appliance}: no such group ${c.group}`);
  }
  for (const [name, g] of model.groups) {
    if (name !== g.name) problems.push(`group key ${name} != name ${g.name}`);
    const members = membersOfGroup(model, name);
    const appliances = members.map((m) => model.appliances.get(m.appliance)).filter((a): a is Appliance => a !== undefined);
    const problem = consistencyProblem(g, appliances);
    if (problem !== null) problems.push(problem.message);
    const memberIds = new Set(members.map((m) => m.appliance));
    if (g.transition === null) {
      for (const tm of g.tableMembers) if (!memberIds.has(tm.id)) problems.push(`group ${name}: table member ${tm.id} is not a member`);
      for (const m of members) {
        if (m.state === "JOINING" || m.state === "DRAINING") problems.push(`group ${name}: ${m.appliance} is ${m.state} with no transition`);
        const inTable = g.tableMembers.some((tm) => tm.id === m.appliance);
        if (m.state === "UP" && !inTable) problems.push(`group ${name}: ${m.appliance} is UP but not in the table`);
        if (m.state === "DETACHED" && inTable) problems.push(`group ${name}: ${m.appliance} is DETACHED but in the table`);
      }
      if (g.tableMembers.length > 0 && g.epoch < 1) problems.push(`group ${name}: a table with epoch ${g.epoch}`);
    } else {
      const t = g.transition;
      if (t.seq > g.transitionSeq) problems.push(`group ${name}: transition seq ${t.seq} above ${g.transitionSeq}`);
      for (const j of t.joining) if (model.members.get(j.appliance)?.state !== "JOINING") problems.push(`group ${name}: joiner ${j.appliance} not JOINING`);
      for (const l of t.leaving) if (model.members.get(l.appliance)?.state !== "DRAINING") problems.push(`group ${name}: leaver ${l.appliance} not DRAINING`);
      for (const tm of t.target) if (!memberIds.has(tm.id)) problems.push(`group ${name}: target ${tm.id} is not a member`);
      if (t.from.epoch > g.epoch) problems.push(`group ${name}: transition starts at epoch ${t.from.epoch} above the group's ${g.epoch}`);
    }
    if (g.tableMembers.length > g.bucketCount) problems.push(`group ${name}: more members than buckets`);
  }
  return problems;
}
