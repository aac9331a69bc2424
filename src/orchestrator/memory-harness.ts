// A ControlPlane over an in-memory store with a virtual clock: for tests and the simulator.
// It does synchronously what the runtime does asynchronously (prepare -> commit -> confirm),
// and keeps the documents, audit and event records a real store would, so a test can
// "restart" the control plane from them and compare.
//
// Invariants: the document map is changed only by committed mutations; revisions grow by one
// per commit; a mutation never puts and deletes one document (the store contract).

import { assert } from "../stdx/assert.js";
import type { AuditRecord, Collection, Document, EventRecord, Mutation, StoreSnapshot } from "../store/store.js";
import type { Effect } from "./commands.js";
import { ControlPlane, type ControlPlaneOptions, type PreparedStep } from "./orchestrator.js";

const ALL: readonly Collection[] = ["appliances", "groups", "members", "changes", "tokens", "meta"];

export class MemoryStore {
  revision = 0;
  readonly docs = new Map<Collection, Map<string, Document>>(ALL.map((c) => [c, new Map()]));
  readonly audit: AuditRecord[] = [];
  readonly events: EventRecord[] = [];
  /** When set, the next commit fails (as a store outage would) and clears the flag. */
  failNext = false;

  commit(mutation: Mutation): number {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("store unavailable (simulated)");
    }
    const touched = new Set<string>();
    for (const p of mutation.puts) touched.add(`${p.collection}/${p.doc.id}`);
    for (const d of mutation.deletes) assert(!touched.has(`${d.collection}/${d.id}`), "a mutation puts and deletes one document");
    for (const p of mutation.puts) this.docs.get(p.collection)!.set(p.doc.id, JSON.parse(JSON.stringify(p.doc)) as Document);
    for (const d of mutation.deletes) this.docs.get(d.collection)!.delete(d.id);
    for (const a of mutation.audit) this.audit.push({ ...a, seq: this.audit.length + 1 });
    for (const e of mutation.events) this.events.push({ ...e, seq: this.events.length + 1 });
    return ++this.revision;
  }

  snapshot(): StoreSnapshot {
    const collections = {} as Record<Collection, Document[]>;
    for (const c of ALL) {
      collections[c] = [...this.docs.get(c)!.values()]
        .map((d) => JSON.parse(JSON.stringify(d)) as Document)
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    return { revision: this.revision, collections };
  }
}

export class MemoryHarness {
  readonly store = new MemoryStore();
  cp: ControlPlane;
  nowMs = 0;
  /** Wall clock origin for ISO times. */
  readonly epochIsoMs = Date.UTC(2025, 0, 1);
  readonly effects: Effect[] = [];

  constructor(readonly options: ControlPlaneOptions = {}) {
    this.cp = new ControlPlane(this.store.snapshot(), options);
  }

  get nowIso(): string {
    return new Date(this.epochIsoMs + this.nowMs).toISOString();
  }

  ctx(actor = "admin"): { actor: string; nowMs: number; nowIso: string } {
    return { actor, nowMs: this.nowMs, nowIso: this.nowIso };
  }

  /** prepare -> commit -> confirm (abort when the commit throws, then rethrow). */
  commitStep(step: PreparedStep): PreparedStep {
    let revision: number;
    try {
      revision = this.store.commit(step.mutation);
    } catch (error) {
      this.cp.abort(step);
      throw error;
    }
    this.cp.confirm(step, revision);
    this.effects.push(...step.effects);
    return step;
  }

  run(command: string, input: unknown, actor = "admin"): PreparedStep {
    return this.commitStep(this.cp.prepare(command, input, this.ctx(actor)));
  }

  /** Runs and expects success; returns the result. */
  ok(command: string, input: unknown, actor = "admin"): unknown {
    const step = this.run(command, input, actor);
    if (!step.ok) throw step.error!;
    return step.result;
  }

  /** A health tick now, committed; null when nothing changed. */
  tick(): PreparedStep | null {
    const step = this.cp.tick(this.ctx("system"));
    return step === null ? null : this.commitStep(step);
  }

  advance(ms: number): void {
    assert(ms >= 0, "time only moves forward");
    this.nowMs += ms;
  }

  heartbeat(...appliances: string[]): void {
    for (const a of appliances) this.cp.heartbeat({ appliance: a }, this.nowMs);
  }

  /** Every member confirms every fill it is expected to make in the running transition of `group`. */
  confirmAllFills(group: string): void {
    const dist = this.cp.view().distribution(group);
    if (dist === null) return;
    const byMember = new Map<string, number[]>();
    for (const [bucket, members] of dist.fills) for (const m of members) byMember.set(m, [...(byMember.get(m) ?? []), bucket]);
    for (const [member, buckets] of byMember) this.cp.fillReport({ appliance: member, epoch: dist.table.epoch, buckets }, this.nowMs);
  }

  /** A fresh control plane from the store's documents (a restart). */
  restart(options: ControlPlaneOptions = this.options): ControlPlane {
    this.cp = new ControlPlane(this.store.snapshot(), options);
    return this.cp;
  }
}
