// The model as store documents, and back: one document per appliance, group, member and
// pending change (collections "appliances", "groups", "members", "changes"; the control plane
// never writes "tokens" or "meta", which belong to the API and the store).
//
// Invariant: modelFromDocuments(documentsOf(model)) equals model, and documentsOf is what the
// mutations put, so restoring from a snapshot gives back exactly the model that was committed.
// A document that does not have the shape written here means the store is corrupt: restoring
// refuses with TANDEM_STORE_CORRUPT naming the collection, id and field, rather than running
// on a half-understood model.

import type { MemberWeight } from "../distribution/rendezvous.js";
import { validatePolicy } from "../engine/policy.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { Collection, Document, StoreSnapshot } from "../store/store.js";
import {
  MEMBER_STATES,
  resolveAutoscale,
  resolveInterfaces,
  resolveRoutes,
  UPGRADE_STEPS,
  WEIGHTS_SOURCES,
  type Appliance,
  type AssignedState,
  type ChangeKind,
  type ControlModel,
  type Member,
  type PendingChange,
  type SecurityGroup,
  type TableRecord,
  type TransitionKind,
  type TransitionRecord,
  type UpgradeState,
  type UpgradeStep,
  type WeightsSource,
} from "./model.js";

/** The collections the control plane owns, in the order restore reads them. */
export const MODEL_COLLECTIONS = ["appliances", "groups", "members", "changes"] as const satisfies readonly Collection[];
export type ModelCollection = (typeof MODEL_COLLECTIONS)[number];

/** A deep, JSON-only copy: what a store keeps is exactly what JSON can say. */
function jsonCopy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function applianceDocument(a: Appliance): Document {
  return jsonCopy({ ...a });
}

export function groupDocument(g: SecurityGroup): Document {
  return jsonCopy({ id: g.name, ...g });
}

export function memberDocument(m: Member): Document {
  return jsonCopy({ id: m.appliance, ...m });
}

export function changeDocument(c: PendingChange): Document {
  return jsonCopy({ id: c.appliance, ...c });
}

/** Every document of a model, by collection, sorted by id (the order a snapshot lists them). */
export function documentsOf(model: ControlModel): Record<ModelCollection, Document[]> {
  const sorted = (docs: Document[]): Document[] => docs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    appliances: sorted([...model.appliances.values()].map(applianceDocument)),
    groups: sorted([...model.groups.values()].map(groupDocument)),
    members: sorted([...model.members.values()].map(memberDocument)),
    changes: sorted([...model.changes.values()].map(changeDocument)),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading documents back, checking every field.

class Reader {
  constructor(
    private readonly collection: string,
    private readonly doc: Record<string, unknown>,
  ) {}

  fail(field: string, why: string): never {
    const id = typeof this.doc.id === "string" ? this.doc.id : "?";
    throw new TandemError(ErrorCode.STORE_CORRUPT, `store document ${this.collection}/${id}: field "${field}" ${why}`, {
      collection: this.collection,
      id,
      field,
    });
  }

  string(field: string): string {
    const v = this.doc[field];
    if (typeof v !== "string") this.fail(field, "is not a string");
    return v;
  }

  nullableString(field: string): string | null {
    const v = this.doc[field];
    if (v === null) return null;
    if (typeof v !== "string") this.fail(field, "is not a string or null");
    return v;
  }

  number(field: string): number {
    const v = this.doc[field];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(field, "is not a finite number");
    return v;
  }

  nullableNumber(field: string): number | null {
    const v = this.doc[field];
    if (v === null) return null;
    return this.number(field);
  }

  boolean(field: string): boolean {
    const v = this.doc[field];
    if (typeof v !== "boolean") this.fail(field, "is not a boolean");
    return v;
  }

  raw(field: string): unknown {
    return this.doc[field];
  }

  object(field: string): Record<string, unknown> {
    const v = this.doc[field];
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(field, "is not an object");
    return v as Record<string, unknown>;
  }

  array(field: string): unknown[] {
    const v = this.doc[field];
    if (!Array.isArray(v)) this.fail(field, "is not a list");
    return v;
  }

  nested(field: string, value: unknown): Reader {
    if (typeof value !== "object" || value === null || Array.isArray(value)) this.fail(field, "is not an object");
    return new Reader(`${this.collection}/${String(this.doc.id)}.${field}`, value as Record<string, unknown>);
  }

  /** Runs a validator that throws TandemError, reporting its failure as corruption of `field`. */
  checked<T>(field: string, validate: () => T): T {
    try {
      return validate();
    } catch (error) {
      if (error instanceof TandemError) this.fail(field, `is invalid: ${error.message}`);
      throw error;
    }
  }
}

function weightsList(r: Reader, field: string): MemberWeight[] {
  return r.array(field).map((raw, i) => {
    const m = r.nested(`${field}[${i}]`, raw);
    const weight = m.number("weight");
    if (!(weight > 0)) m.fail("weight", "is not positive");
    return { id: m.string("id"), weight };
  });
}

function weightsRecord(r: Reader, field: string): Record<string, number> {
  const o = r.object(field);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== "number" || !(v > 0)) r.fail(`${field}.${k}`, "is not a positive number");
    out[k] = v;
  }
  return out;
}

function applianceFrom(doc: Record<string, unknown>): Appliance {
  const r = new Reader("appliances", doc);
  return {
    id: r.string("id"),
    model: r.string("model"),
    cores: r.number("cores"),
    memoryMb: r.number("memoryMb"),
    version: r.string("version"),
    address: r.string("address"),
    registeredAt: r.string("registeredAt"),
  };
}

const CHANGE_KINDS: readonly ChangeKind[] = ["assign", "unassign", "drain", "weight"];
const TRANSITION_KINDS: readonly TransitionKind[] = ["join", "drain", "weights", "failure", "rescue"];

/** A weightsSource field; absent (documents written before it existed): `absent`. */
function weightsSourceFrom(r: Reader, field: string, absent: WeightsSource | null): WeightsSource | null {
  const v = r.raw(field);
  if (v === undefined) return absent;
  if (v === null && absent === null) return null;
  if (!(WEIGHTS_SOURCES as readonly unknown[]).includes(v)) r.fail(field, `is not one of ${WEIGHTS_SOURCES.join(", ")}`);
  return v as WeightsSource;
}

function changeFrom(r: Reader): PendingChange {
  const kind = r.string("kind") as ChangeKind;
  if (!CHANGE_KINDS.includes(kind)) r.fail("kind", `is not one of ${CHANGE_KINDS.join(", ")}`);
  const weight = r.nullableNumber("weight");
  // Before the field existed, every weight was an operator's.
  const setsWeight = kind === "weight" || (kind === "assign" && weight !== null);
  return {
    appliance: r.string("appliance"),
    group: r.string("group"),
    kind,
    weight,
    weightsSource: weightsSourceFrom(r, "weightsSource", setsWeight ? "operator" : null),
    stagedBy: r.string("stagedBy"),
    stagedAt: r.string("stagedAt"),
  };
}

function tableRecordFrom(r: Reader): TableRecord {
  return { epoch: r.number("epoch"), members: weightsList(r, "members"), owner: r.nullableString("owner"), backup: r.nullableString("backup") };
}

function transitionFrom(r: Reader): TransitionRecord {
  const kind = r.string("kind") as TransitionKind;
  if (!TRANSITION_KINDS.includes(kind)) r.fail("kind", `is not one of ${TRANSITION_KINDS.join(", ")}`);
  return {
    seq: r.number("seq"),
    kind,
    from: tableRecordFrom(r.nested("from", r.raw("from"))),
    target: weightsList(r, "target"),
    dead: r.nullableString("dead"),
    joining: r.array("joining").map((raw, i) => {
      const j = r.nested(`joining[${i}]`, raw);
      const revert = j.string("revert");
      if (revert !== "pool" && revert !== "down" && revert !== "detached") return j.fail("revert", "is not pool, down or detached");
      return { appliance: j.string("appliance"), revert };
    }),
    leaving: r.array("leaving").map((raw, i) => {
      const l = r.nested(`leaving[${i}]`, raw);
      const then = l.string("then");
      if (then !== "unassign" && then !== "detach") return l.fail("then", "is not unassign or detach");
      return { appliance: l.string("appliance"), then };
    }),
    consumed: r.array("consumed").map((raw, i) => changeFrom(r.nested(`consumed[${i}]`, raw))),
    weightsAfter: weightsRecord(r, "weightsAfter"),
    lostBuckets: r.number("lostBuckets"),
    startedAt: r.string("startedAt"),
  };
}

function groupFrom(doc: Record<string, unknown>): SecurityGroup {
  const r = new Reader("groups", doc);
  const upgradeRaw = r.raw("upgrade");
  let upgrade: SecurityGroup["upgrade"] = null;
  if (upgradeRaw !== null) {
    const u = r.nested("upgrade", upgradeRaw);
    // Documents written before upgrades were driven lack direction/paused/reason/current.
    const directionRaw = u.raw("direction") ?? "forward";
    if (directionRaw !== "forward" && directionRaw !== "back") u.fail("direction", `must be "forward" or "back", got ${JSON.stringify(directionRaw)}`);
    const direction: UpgradeState["direction"] = directionRaw === "back" ? "back" : "forward";
    const currentRaw = u.raw("current");
    let current: UpgradeState["current"] = null;
    if (currentRaw !== null && currentRaw !== undefined) {
      const c = u.nested("current", currentRaw);
      const step = c.string("step");
      if (!(UPGRADE_STEPS as readonly string[]).includes(step)) c.fail("step", `must be one of ${UPGRADE_STEPS.join(", ")}`);
      current = { appliance: c.string("appliance"), step: step as UpgradeStep, since: c.string("since") };
    }
    upgrade = {
      fromVersion: u.string("fromVersion"),
      targetVersion: u.string("targetVersion"),
      startedAt: u.string("startedAt"),
      direction,
      paused: u.raw("paused") === undefined ? false : u.boolean("paused"),
      reason: u.raw("reason") === undefined ? null : u.nullableString("reason"),
      current,
    };
  }
  const transitionRaw = r.raw("transition");
  const name = r.string("name");
  const weights = weightsRecord(r, "weights");
  // Before the field existed, every override was an operator's: the automatic path must not take them over.
  const weightsSource = weightsSourceFrom(r, "weightsSource", Object.keys(weights).length > 0 ? "operator" : "cores") ?? r.fail("weightsSource", "is null");
  if (name !== doc.id) r.fail("name", "differs from the document id");
  return {
    name,
    interfaces: r.checked("interfaces", () => resolveInterfaces(r.raw("interfaces"))),
    routes: r.checked("routes", () => resolveRoutes(r.raw("routes"))),
    policy: r.checked("policy", () => validatePolicy(r.raw("policy"))),
    policyRevision: r.number("policyRevision"),
    weights,
    weightsSource,
    autoscale: r.checked("autoscale", () => resolveAutoscale(r.raw("autoscale"))),
    allowMixedModels: r.boolean("allowMixedModels"),
    upgrade,
    seed: r.number("seed"),
    bucketCount: r.number("bucketCount"),
    epoch: r.number("epoch"),
    tableMembers: weightsList(r, "tableMembers"),
    transition: transitionRaw === null ? null : transitionFrom(r.nested("transition", transitionRaw)),
    transitionSeq: r.number("transitionSeq"),
    createdAt: r.string("createdAt"),
  };
}

function memberFrom(doc: Record<string, unknown>): Member {
  const r = new Reader("members", doc);
  const state = r.string("state") as AssignedState;
  if (!MEMBER_STATES.includes(state) || (state as string) === "UNASSIGNED") r.fail("state", "is not a member state");
  const member: Member = { appliance: r.string("appliance"), group: r.string("group"), state, since: r.string("since") };
  if (member.appliance !== doc.id) r.fail("appliance", "differs from the document id");
  return member;
}

/** The model held by a snapshot (other collections are ignored). Throws TANDEM_STORE_CORRUPT. */
export function modelFromDocuments(collections: Partial<Record<Collection, Document[]>>): ControlModel {
  const appliances = new Map<string, Appliance>();
  const groups = new Map<string, SecurityGroup>();
  const members = new Map<string, Member>();
  const changes = new Map<string, PendingChange>();
  for (const doc of collections.appliances ?? []) appliances.set(doc.id, applianceFrom(doc));
  for (const doc of collections.groups ?? []) groups.set(doc.id, groupFrom(doc));
  for (const doc of collections.members ?? []) members.set(doc.id, memberFrom(doc));
  for (const doc of collections.changes ?? []) {
    const change = changeFrom(new Reader("changes", doc));
    if (change.appliance !== doc.id) new Reader("changes", doc).fail("appliance", "differs from the document id");
    changes.set(doc.id, change);
  }
  return { appliances, groups, members, changes };
}

export function modelFromSnapshot(snapshot: StoreSnapshot): ControlModel {
  return modelFromDocuments(snapshot.collections);
}
