// The high-availability store: etcd v3 (through the etcd3 client) holds the documents, and an
// etcd election picks the one active orchestrator; the others stand by in campaign().
//
// Keys, all under the deployment prefix P (default "/tandem/"):
//
//   P head                     {"revision","auditSeq","eventSeq"}: the store revision and counters
//   P doc/<collection>/<id>    document JSON
//   P audit/<seq, 16 digits>   audit record JSON (zero-padded so key order is seq order)
//   P events/<seq, 16 digits>  event record JSON
//   P election/leader/<lease>  one key per candidate, attached to its lease; the candidate whose
//                              key has the smallest create revision is the leader
//
// Invariants:
// - a commit is one etcd transaction guarded by two compares (fencing):
//     create_revision(own election key) == the one we were elected with   -- still the leader
//     mod_revision(P head) == the one seen at our last load() or commit     -- model is current
//   so a deposed leader (lease expired, key deleted, paused process) can never write, even
//   before it notices: its commit rejects with TANDEM_NOT_LEADER and nothing is written;
// - etcd acknowledges a transaction after it is committed to a quorum's fsync'ed log, so a
//   resolved commit() is durable;
// - the revision in P head grows by one per transaction, so acknowledged revisions have no holes;
// - after a commit whose outcome is unknown (timeout, connection loss) or that found P head
//   moved, commit() refuses (TANDEM_STORE_UNAVAILABLE) until load() has resynchronised;
// - a leader that cannot renew its lease for 2/3 of the TTL (renewals go out every TTL/3)
//   declares itself lost (onLost) and revokes the lease, before etcd could expire it and elect
//   someone else; etcd3's own "lost" signal would come only after twice the TTL.
import { Etcd3, Range, type IKeyValue, type IOperation, type Lease, type Watcher } from "etcd3";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import {
  decodeAudit,
  decodeDocument,
  decodeEvent,
  encodeMutation,
  recordsLimit,
  seqBound,
  sortById,
} from "./mutation.js";
import {
  AUDIT_LIMIT_DEFAULT,
  AUDIT_RETAINED_MAX,
  COLLECTIONS,
  EVENTS_LIMIT_DEFAULT,
  EVENTS_RETAINED_MAX,
  emptyCollections,
  type AuditRecord,
  type Collection,
  type EtcdStoreOptions,
  type EventRecord,
  type Leadership,
  type Mutation,
  type OpenedStore,
  type Store,
  type StoreSnapshot,
} from "./store.js";

export const PREFIX_DEFAULT = "/tandem/";
export const LEASE_TTL_S_DEFAULT = 5;
export const CALL_TIMEOUT_MS_DEFAULT = 5000;
/** etcd's default --max-txn-ops: a mutation must fit one transaction. */
export const TXN_OPS_MAX = 128;
/** etcd's default --max-request-bytes is 1.5 MiB; keep a margin for keys and framing. */
export const TXN_BYTES_MAX = 1536 * 1024 - 64 * 1024;
/** Documents read per range request in load(). */
export const LOAD_PAGE_SIZE = 500;
const SEQ_DIGITS = 16;

interface Head {
  revision: number;
  auditSeq: number;
  eventSeq: number;
  modRevision: number; // etcd mod_revision of P head (0 when absent)
}

interface CampaignState {
  readonly instanceId: string;
  readonly lease: Lease;
  key: string | null;
  createRevision: number;
  elected: boolean;
  ended: boolean; // resigned or lost: no longer this store's campaign
  endReason: string;
  endNow: () => void; // wakes whatever the campaign is waiting for
  readonly ended$: Promise<void>;
  lastKeepaliveAtMs: number;
  watchdog: ReturnType<typeof setInterval> | null;
  readonly watchers: Set<Watcher>;
}

/** Test seams. Production code passes nothing. */
export interface EtcdStoreTesting {
  /** false: do not watch the own election key, so only a commit can discover a deposition. */
  watchLeaderKey?: boolean;
  auditRetainedMax?: number;
  eventsRetainedMax?: number;
}

function unavailable(doing: string, error: unknown): TandemError {
  const message = error instanceof Error ? error.message : String(error);
  return new TandemError(ErrorCode.STORE_UNAVAILABLE, `etcd: ${doing} failed: ${message}`);
}

/** Errors of our own making pass through; anything from the client is an unavailable store. */
function mapError(error: unknown, doing: string): unknown {
  if (error instanceof TandemError || (error instanceof Error && error.name === "AssertionError")) return error;
  return unavailable(doing, error);
}

function warn(message: string): void {
  process.emitWarning(message, { code: "TANDEM_STORE_ETCD" });
}

export class EtcdStore implements Store, Leadership {
  readonly kind = "etcd" as const;
  readonly prefix: string;
  readonly leaseTtlS: number;
  /** Commits rejected by etcd's fencing compare (the instance still believed it led). */
  fencedCommitCount = 0;

  private readonly client: Etcd3;
  private readonly headKey: string;
  private readonly docPrefix: string;
  private readonly auditPrefix: string;
  private readonly eventsPrefix: string;
  private readonly electionPrefix: string;
  private readonly watchLeaderKey: boolean;
  private readonly auditRetainedMax: number;
  private readonly eventsRetainedMax: number;
  private head: Head | null = null; // null: load() needed before the next commit
  private campaignState: CampaignState | null = null;
  private readonly lostHandlers: (() => void)[] = [];
  private commitTail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(client: Etcd3, options: Omit<EtcdStoreOptions, "kind">, testing: EtcdStoreTesting = {}) {
    this.client = client;
    this.prefix = options.prefix ?? PREFIX_DEFAULT;
    this.leaseTtlS = options.leaseTtlS ?? LEASE_TTL_S_DEFAULT;
    assert(this.prefix.length > 0 && this.prefix.endsWith("/"), "etcd prefix ends with /");
    assert(Number.isInteger(this.leaseTtlS) && this.leaseTtlS >= 1, "leaseTtlS is an integer >= 1");
    this.headKey = `${this.prefix}head`;
    this.docPrefix = `${this.prefix}doc/`;
    this.auditPrefix = `${this.prefix}audit/`;
    this.eventsPrefix = `${this.prefix}events/`;
    this.electionPrefix = `${this.prefix}election/leader/`; // the layout of etcd3's Election
    this.watchLeaderKey = testing.watchLeaderKey ?? true;
    this.auditRetainedMax = testing.auditRetainedMax ?? AUDIT_RETAINED_MAX;
    this.eventsRetainedMax = testing.eventsRetainedMax ?? EVENTS_RETAINED_MAX;
    assert(this.auditRetainedMax >= 1 && this.eventsRetainedMax >= 1, "retention keeps at least one record");
  }

  private seqKey(prefix: string, seq: number): string {
    return prefix + String(seq).padStart(SEQ_DIGITS, "0");
  }

  private checkOpen(): void {
    assert(!this.closed, "etcd store used after close()");
  }

  // ---- Store ----

  async load(): Promise<StoreSnapshot> {
    this.checkOpen();
    try {
      const headResponse = await this.client.get(this.headKey).exec();
      const atRevision = headResponse.header.revision;
      const head = this.decodeHead(headResponse.kvs[0]);
      const collections = emptyCollections();
      const docRange = Range.prefix(this.docPrefix);
      let start: Buffer = docRange.start;
      // Every page is read at the head's etcd revision: one consistent snapshot.
      for (let page = 0; ; page++) {
        assert(page < 1_000_000, "load() page bound");
        const response = await this.client
          .getAll()
          .inRange(new Range(start, docRange.end))
          .revision(atRevision)
          .sort("Key", "Ascend")
          .limit(LOAD_PAGE_SIZE)
          .exec();
        for (const kv of response.kvs) {
          const rest = kv.key.toString("utf8").slice(this.docPrefix.length);
          const slash = rest.indexOf("/");
          const collection = rest.slice(0, slash) as Collection;
          if (slash <= 0 || !COLLECTIONS.includes(collection)) {
            throw new TandemError(ErrorCode.STORE_CORRUPT, `etcd holds an unexpected key ${kv.key.toString("utf8")}`);
          }
          collections[collection].push(decodeDocument(collection, rest.slice(slash + 1), kv.value.toString("utf8")));
        }
        if (!response.more || response.kvs.length === 0) break;
        start = Buffer.concat([response.kvs[response.kvs.length - 1].key, Buffer.from([0])]);
      }
      for (const collection of COLLECTIONS) sortById(collections[collection]);
      this.head = head;
      return { revision: head.revision, collections };
    } catch (error) {
      throw mapError(error, "load");
    }
  }

  private decodeHead(kv: IKeyValue | undefined): Head {
    if (kv === undefined) return { revision: 0, auditSeq: 0, eventSeq: 0, modRevision: 0 };
    let value: unknown;
    try {
      value = JSON.parse(kv.value.toString("utf8"));
    } catch (error) {
      throw new TandemError(ErrorCode.STORE_CORRUPT, `etcd key ${this.headKey} is not JSON: ${(error as Error).message}`);
    }
    const head = value as Partial<Head> | null;
    const ok = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
    if (head === null || !ok(head.revision) || !ok(head.auditSeq) || !ok(head.eventSeq)) {
      throw new TandemError(ErrorCode.STORE_CORRUPT, `etcd key ${this.headKey} holds ${kv.value.toString("utf8")}`);
    }
    return { revision: head.revision, auditSeq: head.auditSeq, eventSeq: head.eventSeq, modRevision: Number(kv.mod_revision) };
  }

  async commit(mutation: Mutation): Promise<number> {
    this.checkOpen();
    const encoded = encodeMutation(mutation);
    // One mutation at a time, in call order: each transaction compares against the head the
    // previous one produced.
    const result = this.commitTail.then(() => this.commitNow(encoded));
    this.commitTail = result.then(
      () => undefined,
      () => undefined, // the caller sees the rejection through `result`
    );
    return result;
  }

  private async commitNow(encoded: ReturnType<typeof encodeMutation>): Promise<number> {
    const state = this.campaignState;
    if (state === null || !state.elected || state.key === null) {
      throw new TandemError(ErrorCode.NOT_LEADER, "this orchestrator is not the active one (not elected)", { fencedBy: "local" });
    }
    const head = this.head;
    if (head === null) {
      throw new TandemError(ErrorCode.STORE_UNAVAILABLE, "etcd: the store state is unknown; load() before committing", {
        reason: "load-required",
      });
    }
    const next = {
      revision: head.revision + 1,
      auditSeq: head.auditSeq + encoded.audit.length,
      eventSeq: head.eventSeq + encoded.events.length,
    };
    const ops: IOperation[] = [];
    let bytes = 0;
    for (const put of encoded.puts) {
      const key = `${this.docPrefix}${put.collection}/${put.id}`;
      ops.push(this.client.put(key).value(put.json));
      bytes += key.length + put.json.length;
    }
    for (const del of encoded.deletes) ops.push(this.client.delete().key(`${this.docPrefix}${del.collection}/${del.id}`));
    encoded.audit.forEach((json, i) => {
      ops.push(this.client.put(this.seqKey(this.auditPrefix, head.auditSeq + 1 + i)).value(json));
      bytes += json.length;
    });
    encoded.events.forEach((json, i) => {
      ops.push(this.client.put(this.seqKey(this.eventsPrefix, head.eventSeq + 1 + i)).value(json));
      bytes += json.length;
    });
    const auditCut = next.auditSeq - this.auditRetainedMax; // drop seq <= cut
    if (encoded.audit.length > 0 && auditCut >= 1) {
      ops.push(this.client.delete().inRange(new Range(this.auditPrefix, this.seqKey(this.auditPrefix, auditCut + 1))));
    }
    const eventCut = next.eventSeq - this.eventsRetainedMax;
    if (encoded.events.length > 0 && eventCut >= 1) {
      ops.push(this.client.delete().inRange(new Range(this.eventsPrefix, this.seqKey(this.eventsPrefix, eventCut + 1))));
    }
    ops.push(this.client.put(this.headKey).value(JSON.stringify(next)));
    if (ops.length > TXN_OPS_MAX || bytes > TXN_BYTES_MAX) {
      throw new TandemError(
        ErrorCode.INVALID_ARGUMENT,
        `mutation too large for one etcd transaction (${ops.length} operations, max ${TXN_OPS_MAX}; ` +
          `${bytes} bytes, max ${TXN_BYTES_MAX}); split the command`,
      );
    }
    let response;
    try {
      response = await this.client
        .if(state.key, "Create", "==", state.createRevision)
        .and(this.headKey, "Mod", "==", head.modRevision)
        .then(...ops)
        .else(this.client.get(state.key), this.client.get(this.headKey))
        .commit();
    } catch (error) {
      this.head = null; // it may or may not have been applied
      throw new TandemError(ErrorCode.STORE_UNAVAILABLE, `etcd: commit outcome unknown: ${(error as Error).message}`, {
        reason: "unknown-outcome",
      });
    }
    if (response.succeeded) {
      this.head = { ...next, modRevision: Number(response.header.revision) };
      return next.revision;
    }
    const leaderKv = response.responses[0]?.response_range.kvs[0];
    if (leaderKv === undefined || Number(leaderKv.create_revision) !== state.createRevision) {
      this.fencedCommitCount++;
      this.lose(state, "a commit found the election key gone: deposed");
      throw new TandemError(ErrorCode.NOT_LEADER, "this orchestrator was deposed; the commit was fenced off by etcd", {
        fencedBy: "etcd",
      });
    }
    this.head = null;
    throw new TandemError(ErrorCode.STORE_UNAVAILABLE, "etcd: the store changed since load(); load() again", {
      reason: "stale",
    });
  }

  async audit(options: { limit?: number; beforeSeq?: number } = {}): Promise<AuditRecord[]> {
    this.checkOpen();
    const limit = recordsLimit(options.limit, AUDIT_LIMIT_DEFAULT);
    const beforeSeq = seqBound(options.beforeSeq, "beforeSeq");
    const range =
      beforeSeq === undefined
        ? Range.prefix(this.auditPrefix)
        : new Range(this.auditPrefix, this.seqKey(this.auditPrefix, beforeSeq));
    try {
      const response = await this.client.getAll().inRange(range).sort("Key", "Descend").limit(limit).exec();
      return response.kvs.map((kv) => decodeAudit(this.seqOf(kv, this.auditPrefix), kv.value.toString("utf8")));
    } catch (error) {
      throw mapError(error, "reading the audit log");
    }
  }

  async events(options: { limit?: number; afterSeq?: number } = {}): Promise<EventRecord[]> {
    this.checkOpen();
    const limit = recordsLimit(options.limit, EVENTS_LIMIT_DEFAULT);
    const afterSeq = seqBound(options.afterSeq, "afterSeq");
    try {
      let kvs: IKeyValue[];
      if (afterSeq === undefined) {
        const response = await this.client
          .getAll()
          .prefix(this.eventsPrefix)
          .sort("Key", "Descend")
          .limit(limit)
          .exec();
        kvs = response.kvs.reverse();
      } else {
        const range = new Range(this.seqKey(this.eventsPrefix, afterSeq + 1), Range.prefix(this.eventsPrefix).end);
        kvs = (await this.client.getAll().inRange(range).sort("Key", "Ascend").limit(limit).exec()).kvs;
      }
      return kvs.map((kv) => decodeEvent(this.seqOf(kv, this.eventsPrefix), kv.value.toString("utf8")));
    } catch (error) {
      throw mapError(error, "reading events");
    }
  }

  private seqOf(kv: IKeyValue, prefix: string): number {
    const key = kv.key.toString("utf8");
    const seq = Number(key.slice(prefix.length));
    if (!Number.isSafeInteger(seq) || seq < 1) throw new TandemError(ErrorCode.STORE_CORRUPT, `etcd holds an unexpected key ${key}`);
    return seq;
  }

  /** Resigns (if leading or campaigning), waits for queued commits, closes the client. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.commitTail;
    try {
      await this.resign();
    } finally {
      this.closed = true;
      this.client.close();
    }
  }

  // ---- Leadership ----

  async campaign(instanceId: string): Promise<void> {
    this.checkOpen();
    assert(instanceId.length > 0, "instance id is non-empty");
    assert(this.campaignState === null, "campaign() while already campaigning or leading");
    let endNow = (): void => undefined;
    const ended$ = new Promise<void>((resolve) => {
      endNow = resolve;
    });
    const lease = this.client.lease(this.leaseTtlS);
    const state: CampaignState = {
      instanceId,
      lease,
      key: null,
      createRevision: 0,
      elected: false,
      ended: false,
      endReason: "",
      endNow,
      ended$,
      lastKeepaliveAtMs: Date.now(), // before the grant: etcd's TTL starts no earlier than this
      watchdog: null,
      watchers: new Set(),
    };
    this.campaignState = state;
    lease.on("lost", (error) => this.lose(state, `lease lost: ${error.message}`));
    lease.on("keepaliveSucceeded", () => {
      state.lastKeepaliveAtMs = Date.now();
    });
    try {
      const leaseId = await lease.grant();
      const key = this.electionPrefix + leaseId;
      const created = await this.client
        .if(key, "Create", "==", 0)
        .then(this.client.put(key).value(instanceId).lease(leaseId))
        .commit();
      assert(created.succeeded, "a fresh lease's election key cannot exist yet");
      state.key = key;
      state.createRevision = Number(created.header.revision);
      await this.waitForPredecessors(state);
      this.throwIfEnded(state);
      if (this.watchLeaderKey) await this.watchOwnKey(state);
      // Anything that ended the campaign meanwhile (resign, lease lost, key deleted) makes it
      // fail; from this check to `elected` nothing can interleave.
      this.throwIfEnded(state);
      const thresholdMs = (this.leaseTtlS * 1000 * 2) / 3; // renewals come every TTL/3
      state.watchdog = setInterval(() => {
        const silentMs = Date.now() - state.lastKeepaliveAtMs;
        if (silentMs > thresholdMs) this.lose(state, `no lease keepalive for ${silentMs} ms`);
      }, Math.max(50, Math.floor((this.leaseTtlS * 1000) / 12)));
      state.watchdog.unref();
      state.elected = true;
    } catch (error) {
      this.lose(state, `campaign failed: ${(error as Error).message}`); // no-op if already ended
      throw mapError(error, "campaign");
    }
  }

  private throwIfEnded(state: CampaignState): void {
    if (state.ended) throw new TandemError(ErrorCode.NOT_LEADER, `campaign ended before election: ${state.endReason}`);
  }

  /** Waits until no candidate key older than ours is left (etcd's Go election algorithm). */
  private async waitForPredecessors(state: CampaignState): Promise<void> {
    assert(state.key !== null, "campaign key exists");
    for (let round = 0; !state.ended; round++) {
      assert(round < 1_000_000, "election wait bound");
      const older = await this.client
        .getAll()
        .prefix(this.electionPrefix)
        .maxCreateRevision(String(state.createRevision - 1))
        .sort("Create", "Descend")
        .limit(1)
        .exec();
      if (older.kvs.length === 0) return;
      // Watch from just after the read, so a deletion in between is not missed.
      const fromRevision = String(Number(older.header.revision) + 1);
      const watcher = await this.client.watch().key(older.kvs[0].key).startRevision(fromRevision).create();
      state.watchers.add(watcher);
      try {
        await Promise.race([
          new Promise<void>((resolve, reject) => {
            watcher.on("delete", () => resolve());
            watcher.on("error", reject);
          }),
          state.ended$,
        ]);
      } finally {
        state.watchers.delete(watcher);
        await watcher.cancel();
      }
    }
  }

  private async watchOwnKey(state: CampaignState): Promise<void> {
    assert(state.key !== null, "campaign key exists");
    const watcher = await this.client
      .watch()
      .key(state.key)
      .startRevision(String(state.createRevision + 1))
      .create();
    if (state.ended) {
      await watcher.cancel(); // ended while the watch was being set up: end() did not see it
      return;
    }
    state.watchers.add(watcher);
    watcher.on("delete", () => this.lose(state, "election key deleted (lease expired or revoked)"));
    watcher.on("error", (error) => this.lose(state, `election key watch failed: ${error.message}`));
  }

  /** Stops a campaign: wakes waiters, stops timers and watchers. Returns whether it was current. */
  private end(state: CampaignState, reason: string): boolean {
    if (state.ended) return false;
    state.ended = true;
    state.endReason = reason;
    state.endNow();
    if (this.campaignState === state) this.campaignState = null;
    if (state.watchdog !== null) clearInterval(state.watchdog);
    for (const watcher of state.watchers) {
      watcher.cancel().catch((error: Error) => warn(`cancelling an election watch: ${error.message}`));
    }
    state.watchers.clear();
    return true;
  }

  /** Leadership is gone (or cannot be trusted): stop, free the election, tell the owner. */
  private lose(state: CampaignState, reason: string): void {
    const wasElected = state.elected;
    if (!this.end(state, reason)) return;
    // Revoke, so that if our lease is in fact still alive (watchdog) a standby need not wait for
    // it to expire. If etcd is unreachable, stop renewing and let the TTL run out.
    state.lease.revoke().catch((error: Error) => {
      warn(`revoking the election lease: ${error.message}`);
      state.lease.release();
    });
    if (wasElected) for (const fn of this.lostHandlers) fn();
  }

  onLost(fn: () => void): void {
    this.lostHandlers.push(fn);
  }

  async leader(): Promise<string | null> {
    this.checkOpen();
    try {
      const value = await this.client.namespace(this.prefix).election("leader").leader();
      return value ?? null;
    } catch (error) {
      throw mapError(error, "reading the leader");
    }
  }

  /** Gives up leadership (or a pending campaign, which then rejects with TANDEM_NOT_LEADER). */
  async resign(): Promise<void> {
    const state = this.campaignState;
    if (state === null) return;
    this.end(state, "resigned");
    try {
      await state.lease.revoke();
    } catch (error) {
      state.lease.release(); // the key expires with the lease's TTL
      throw mapError(error, "resign");
    }
  }
}

/** Connects to etcd (checking it answers within callTimeoutMs); the store is also the Leadership. */
export async function openEtcdStore(
  options: Omit<EtcdStoreOptions, "kind">,
  testing: EtcdStoreTesting = {},
): Promise<OpenedStore & { store: EtcdStore; leadership: EtcdStore }> {
  assert(options.endpoints.length > 0, "at least one etcd endpoint");
  const callTimeoutMs = options.callTimeoutMs ?? CALL_TIMEOUT_MS_DEFAULT;
  const client = new Etcd3({
    hosts: options.endpoints,
    dialTimeout: callTimeoutMs,
    // Streams (watches, lease keepalives) live long; every unary call is bounded.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  });
  const store = new EtcdStore(client, options, testing);
  try {
    await client.get(`${store.prefix}head`).exec();
  } catch (error) {
    client.close();
    throw unavailable(`reaching ${options.endpoints.join(", ")}`, error);
  }
  return { store, leadership: store };
}
