// The orchestrator's store contract (agreed with the control plane) and the factory that opens
// one. State is a set of JSON documents in named collections, changed only by the command queue,
// one mutation at a time. Invariants every implementation keeps:
// - a mutation is applied atomically (all puts, deletes, audit and event records, or none);
// - commit() resolves only after the mutation is durable; the revision grows by exactly one per
//   committed mutation, so acknowledged revisions never have holes;
// - audit and event records get monotonic seq numbers assigned by the store;
// - with etcd (several orchestrators), only the elected leader can commit (fencing): a deposed
//   instance's commit rejects with TANDEM_NOT_LEADER even if it has not noticed the loss yet.
// Implementations: sqlite-store.ts (embedded default), etcd-store.ts (high availability).

export type Collection = "appliances" | "groups" | "members" | "changes" | "tokens" | "meta";

/** Every collection, in a fixed order (snapshots list all of them, possibly empty). */
export const COLLECTIONS: readonly Collection[] = ["appliances", "groups", "members", "changes", "tokens", "meta"];

export interface Document {
  id: string;
  [field: string]: unknown;
} // JSON-serialisable

export interface AuditRecord {
  seq?: number; // assigned by the store (monotonic)
  at: string; // ISO time (from the caller's clock)
  actor: string; // token name / "system"
  command: string; // e.g. "sg.create"
  args: unknown; // validated input
  result: "ok" | "error";
  code?: string; // TandemError code when result is error
  message?: string;
}

export interface EventRecord {
  seq?: number;
  at: string;
  kind: string;
  group?: string;
  member?: string;
  message: string;
  data?: unknown;
}

export interface Mutation {
  puts: { collection: Collection; doc: Document }[];
  deletes: { collection: Collection; id: string }[];
  audit: AuditRecord[];
  events: EventRecord[];
}

export interface StoreSnapshot {
  revision: number; // increases by one per committed mutation; 0 for an empty store
  collections: Record<Collection, Document[]>; // every collection present; documents sorted by id
}

export interface Store {
  readonly kind: "sqlite" | "etcd";
  /** Loads everything (the control plane keeps its model in memory). */
  load(): Promise<StoreSnapshot>;
  /**
   * Commits atomically and durably; resolves with the new revision only after it is durable.
   * Commits are serialised in call order. Rejections:
   * - TANDEM_NOT_LEADER (etcd): this instance is not (or no longer) the elected leader; nothing
   *   was written. A deposed leader gets this even before it has noticed (fencing).
   * - TANDEM_STORE_UNAVAILABLE: the store failed, or (etcd) the store changed since load()
   *   (details.reason "stale") or the outcome is unknown ("unknown-outcome"); etcd then refuses
   *   further commits ("load-required") until load() has resynchronised the caller's model.
   *   etcd also needs one load() before the first commit of a newly elected leader.
   * - TANDEM_INVALID_ARGUMENT (etcd): the mutation does not fit one etcd transaction
   *   (more than 128 operations in all, or about 1.4 MiB).
   * A malformed mutation (unknown collection, empty id, one document touched twice, a value
   * that is not JSON) is a programmer error: assert.
   */
  commit(mutation: Mutation): Promise<number>;
  /**
   * Newest first, bounded (default AUDIT_LIMIT_DEFAULT, larger limits are clamped to
   * RECORDS_LIMIT_MAX). beforeSeq pages backwards. The store keeps the newest AUDIT_RETAINED_MAX.
   */
  audit(options?: { limit?: number; beforeSeq?: number }): Promise<AuditRecord[]>;
  /**
   * Oldest first (ascending seq), so a follower can pass the last seq it saw as afterSeq.
   * With afterSeq: the first `limit` events with seq > afterSeq. Without: the newest `limit`.
   * The store keeps the newest EVENTS_RETAINED_MAX.
   */
  events(options?: { limit?: number; afterSeq?: number }): Promise<EventRecord[]>;
  /** Releases the store (etcd: resigns leadership first). Idempotent; any other call after it asserts. */
  close(): Promise<void>;
}

/**
 * High availability (etcd): one active orchestrator, the others stand by.
 * Typical use: campaign(id) -> load() -> serve and commit; onLost -> stop mutating, then
 * campaign() again to stand by. campaign() rejects (TANDEM_NOT_LEADER) if resign() or a lost
 * lease ends it first, or TANDEM_STORE_UNAVAILABLE if etcd fails.
 */
export interface Leadership {
  /** Resolves when this instance becomes the active one. */
  campaign(instanceId: string): Promise<void>;
  /** Called when leadership is lost (lease expired, network). The instance must stop mutating. */
  onLost(fn: () => void): void;
  /** Current leader's instance id, or null. */
  leader(): Promise<string | null>;
  resign(): Promise<void>;
}

export const AUDIT_LIMIT_DEFAULT = 100;
export const EVENTS_LIMIT_DEFAULT = 100;
export const RECORDS_LIMIT_MAX = 1000;
/** Retention: each commit drops audit and event records older than the newest this many. */
export const AUDIT_RETAINED_MAX = 100_000;
export const EVENTS_RETAINED_MAX = 100_000;

export interface SqliteStoreOptions {
  kind: "sqlite";
  /** Directory holding DIR/tandem.db (created if missing). */
  dataDir: string;
  /** How long to wait for a lock held by another connection before failing. Default 5000. */
  busyTimeoutMs?: number;
}

export interface EtcdStoreOptions {
  kind: "etcd";
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: string[];
  /** Key prefix of this deployment; every key the store writes lies under it. Default "/tandem/". */
  prefix?: string;
  /** Leadership lease TTL: a dead leader is replaced within about this long. Default 5. */
  leaseTtlS?: number;
  /** Bound on each etcd call; a call that takes longer fails with TANDEM_STORE_UNAVAILABLE. Default 5000. */
  callTimeoutMs?: number;
}

export type StoreOptions = SqliteStoreOptions | EtcdStoreOptions;

export interface OpenedStore {
  store: Store;
  /**
   * etcd: the real election; commit() only succeeds while this instance is the leader.
   * SQLite: local leadership; the database file is locked exclusively by this process, so
   * campaign() resolves at once, onLost never fires, and commit() does not need a campaign.
   */
  leadership: Leadership;
}

/** Opens the configured store. Rejects with a TandemError (STORE_UNAVAILABLE, STORE_CORRUPT, STORE_SCHEMA_NEWER). */
export async function openStore(options: StoreOptions): Promise<OpenedStore> {
  switch (options.kind) {
    case "sqlite": {
      const { openSqliteStore } = await import("./sqlite-store.js");
      return openSqliteStore(options);
    }
    case "etcd": {
      const { openEtcdStore } = await import("./etcd-store.js");
      return openEtcdStore(options);
    }
  }
}

/** An empty snapshot's collections: every collection present. */
export function emptyCollections(): Record<Collection, Document[]> {
  return { appliances: [], groups: [], members: [], changes: [], tokens: [], meta: [] };
}
