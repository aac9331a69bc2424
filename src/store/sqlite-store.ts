// The embedded store: one SQLite file, DATA_DIR/tandem.db, through better-sqlite3.
// Invariants:
// - one mutation = one IMMEDIATE transaction that writes its documents, audit and event rows and
//   bumps store_meta.revision by one; commit() returns only after SQLite's COMMIT returned, and
//   with journal_mode=WAL + synchronous=FULL that COMMIT has fsync'ed the WAL: an acknowledged
//   mutation survives SIGKILL of the process and a power loss (NORMAL would only survive the
//   former: it may drop the last commits on power loss, which the contract does not allow);
// - the file is held with locking_mode=EXCLUSIVE from open to close, so a second orchestrator
//   (or anything else) cannot open it behind our back and our in-memory model stays the truth;
//   the OS drops the lock when the process dies, so a restart after a crash opens normally;
// - on open: PRAGMA integrity_check must say "ok", the schema is migrated (migrations.ts), and a
//   database from a newer Tandem is refused (TANDEM_STORE_SCHEMA_NEWER).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { migrate } from "./migrations.js";
import {
  decodeAudit,
  decodeDocument,
  decodeEvent,
  encodeMutation,
  recordsLimit,
  seqBound,
  sortById,
  type EncodedMutation,
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
  type EventRecord,
  type Leadership,
  type Mutation,
  type OpenedStore,
  type SqliteStoreOptions,
  type Store,
  type StoreSnapshot,
} from "./store.js";

export const SQLITE_FILE_NAME = "tandem.db";
export const BUSY_TIMEOUT_MS_DEFAULT = 5000;

/** How many audit and event records a commit keeps (tests shrink them). */
export interface Retention {
  auditRetainedMax: number;
  eventsRetainedMax: number;
}
export const RETENTION_DEFAULT: Retention = { auditRetainedMax: AUDIT_RETAINED_MAX, eventsRetainedMax: EVENTS_RETAINED_MAX };

interface Row {
  seq: number;
  json: string;
}

/** Maps an SQLite failure to the store's operating errors; anything else is rethrown as is. */
function storeError(error: unknown, file: string, doing: string): unknown {
  if (!(error instanceof Database.SqliteError)) return error;
  const code = error.code;
  if (code === "SQLITE_CORRUPT" || code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT_")) {
    return new TandemError(ErrorCode.STORE_CORRUPT, `${file} is damaged (${code} while ${doing}): ${error.message}`, {
      file,
      sqliteCode: code,
    });
  }
  const hint = code.startsWith("SQLITE_BUSY") ? "; is another orchestrator using this data directory?" : "";
  return new TandemError(
    ErrorCode.STORE_UNAVAILABLE,
    `${file}: ${code} while ${doing}: ${error.message}${hint}`,
    { file, sqliteCode: code },
  );
}

export class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  readonly file: string;
  private db: Database.Database | null;
  private readonly statements: ReturnType<typeof prepareStatements>;
  private readonly commitTransaction: Database.Transaction<(encoded: EncodedMutation) => number>;

  /** Use openSqliteStore(); the constructor expects an opened, migrated database. */
  constructor(db: Database.Database, file: string, retention: Retention = RETENTION_DEFAULT) {
    this.db = db;
    this.file = file;
    this.statements = prepareStatements(db);
    const s = this.statements;
    this.commitTransaction = db.transaction((encoded: EncodedMutation): number => {
      const revision = (s.revision.get() as number) + 1;
      for (const put of encoded.puts) s.putDocument.run(put.collection, put.id, put.json, revision);
      for (const del of encoded.deletes) s.deleteDocument.run(del.collection, del.id);
      let auditSeq = s.auditSeqMax.get() as number;
      for (const json of encoded.audit) s.insertAudit.run(++auditSeq, json, revision);
      let eventSeq = s.eventSeqMax.get() as number;
      for (const json of encoded.events) s.insertEvent.run(++eventSeq, json, revision);
      if (encoded.audit.length > 0) s.pruneAudit.run(auditSeq - retention.auditRetainedMax);
      if (encoded.events.length > 0) s.pruneEvents.run(eventSeq - retention.eventsRetainedMax);
      s.setRevision.run(revision);
      return revision;
    });
  }

  private open(): Database.Database {
    assert(this.db !== null, "sqlite store used after close()");
    return this.db;
  }

  async load(): Promise<StoreSnapshot> {
    const db = this.open();
    const s = this.statements;
    try {
      return db.transaction((): StoreSnapshot => {
        const revision = s.revision.get() as number;
        const collections = emptyCollections();
        const rows = s.allDocuments.all() as { collection: string; id: string; json: string }[];
        for (const row of rows) {
          if (!COLLECTIONS.includes(row.collection as Collection)) {
            throw new TandemError(ErrorCode.STORE_CORRUPT, `${this.file} holds unknown collection ${row.collection}`);
          }
          collections[row.collection as Collection].push(decodeDocument(row.collection, row.id, row.json));
        }
        for (const collection of COLLECTIONS) sortById(collections[collection]);
        return { revision, collections };
      })();
    } catch (error) {
      throw storeError(error, this.file, "loading");
    }
  }

  async commit(mutation: Mutation): Promise<number> {
    this.open();
    const encoded = encodeMutation(mutation);
    try {
      // IMMEDIATE takes the write lock up front (we hold it anyway in exclusive mode).
      return this.commitTransaction.immediate(encoded);
    } catch (error) {
      throw storeError(error, this.file, "committing");
    }
  }

  async audit(options: { limit?: number; beforeSeq?: number } = {}): Promise<AuditRecord[]> {
    this.open();
    const limit = recordsLimit(options.limit, AUDIT_LIMIT_DEFAULT);
    const beforeSeq = seqBound(options.beforeSeq, "beforeSeq");
    try {
      const rows = (
        beforeSeq === undefined ? this.statements.auditNewest.all(limit) : this.statements.auditBefore.all(beforeSeq, limit)
      ) as Row[];
      return rows.map((row) => decodeAudit(row.seq, row.json));
    } catch (error) {
      throw storeError(error, this.file, "reading the audit log");
    }
  }

  async events(options: { limit?: number; afterSeq?: number } = {}): Promise<EventRecord[]> {
    this.open();
    const limit = recordsLimit(options.limit, EVENTS_LIMIT_DEFAULT);
    const afterSeq = seqBound(options.afterSeq, "afterSeq");
    try {
      const rows = (
        afterSeq === undefined ? this.statements.eventsNewest.all(limit) : this.statements.eventsAfter.all(afterSeq, limit)
      ) as Row[];
      return rows.map((row) => decodeEvent(row.seq, row.json));
    } catch (error) {
      throw storeError(error, this.file, "reading events");
    }
  }

  /** Closes the database (SQLite checkpoints the WAL into the main file). Idempotent. */
  async close(): Promise<void> {
    if (this.db === null) return;
    const db = this.db;
    this.db = null;
    try {
      db.close();
    } catch (error) {
      throw storeError(error, this.file, "closing");
    }
  }
}

function prepareStatements(db: Database.Database) {
  return {
    revision: db.prepare("SELECT value FROM store_meta WHERE key = 'revision'").pluck(),
    setRevision: db.prepare("UPDATE store_meta SET value = ? WHERE key = 'revision'"),
    allDocuments: db.prepare("SELECT collection, id, json FROM documents"),
    putDocument: db.prepare(
      "INSERT INTO documents (collection, id, json, revision) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (collection, id) DO UPDATE SET json = excluded.json, revision = excluded.revision",
    ),
    deleteDocument: db.prepare("DELETE FROM documents WHERE collection = ? AND id = ?"),
    auditSeqMax: db.prepare("SELECT COALESCE(MAX(seq), 0) FROM audit").pluck(),
    eventSeqMax: db.prepare("SELECT COALESCE(MAX(seq), 0) FROM events").pluck(),
    insertAudit: db.prepare("INSERT INTO audit (seq, json, revision) VALUES (?, ?, ?)"),
    insertEvent: db.prepare("INSERT INTO events (seq, json, revision) VALUES (?, ?, ?)"),
    pruneAudit: db.prepare("DELETE FROM audit WHERE seq <= ?"),
    pruneEvents: db.prepare("DELETE FROM events WHERE seq <= ?"),
    auditNewest: db.prepare("SELECT seq, json FROM audit ORDER BY seq DESC LIMIT ?"),
    auditBefore: db.prepare("SELECT seq, json FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?"),
    eventsNewest: db.prepare("SELECT seq, json FROM (SELECT seq, json FROM events ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC"),
    eventsAfter: db.prepare("SELECT seq, json FROM events WHERE seq > ? ORDER BY seq ASC LIMIT ?"),
  };
}

/**
 * With one process holding the file exclusively there is nothing to elect: campaign() resolves
 * at once and leadership is never lost while the process lives.
 */
export class LocalLeadership implements Leadership {
  private leaderId: string | null = null;

  async campaign(instanceId: string): Promise<void> {
    assert(instanceId.length > 0, "instance id is non-empty");
    this.leaderId = instanceId;
  }

  onLost(_fn: () => void): void {
    // Never called: the exclusive file lock lasts as long as the process.
  }

  async leader(): Promise<string | null> {
    return this.leaderId;
  }

  async resign(): Promise<void> {
    this.leaderId = null;
  }
}

/** Opens (creating if needed) DATA_DIR/tandem.db, checks it, migrates it and locks it. */
export async function openSqliteStore(
  options: Omit<SqliteStoreOptions, "kind">,
  retention: Retention = RETENTION_DEFAULT,
): Promise<OpenedStore & { store: SqliteStore }> {
  assert(retention.auditRetainedMax >= 1 && retention.eventsRetainedMax >= 1, "retention keeps at least one record");
  const busyTimeoutMs = options.busyTimeoutMs ?? BUSY_TIMEOUT_MS_DEFAULT;
  assert(Number.isInteger(busyTimeoutMs) && busyTimeoutMs >= 0, "busyTimeoutMs is a non-negative integer");
  const file = join(options.dataDir, SQLITE_FILE_NAME);
  try {
    // 0700: the store holds API tokens.
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new TandemError(ErrorCode.STORE_UNAVAILABLE, `cannot create data directory ${options.dataDir}: ${(error as Error).message}`);
  }
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: busyTimeoutMs });
  } catch (error) {
    throw storeError(error, file, "opening");
  }
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    // Exclusive before WAL: SQLite then keeps the WAL index in process memory (no -shm file) and
    // the lock, once taken, stays until close.
    db.pragma("locking_mode = EXCLUSIVE");
    const journalMode = db.pragma("journal_mode = WAL", { simple: true });
    if (journalMode !== "wal") {
      throw new TandemError(ErrorCode.STORE_UNAVAILABLE, `${file}: cannot switch to WAL journal mode (got ${String(journalMode)})`);
    }
    db.pragma("synchronous = FULL");
    db.exec("BEGIN IMMEDIATE; COMMIT"); // take the exclusive lock now, not at the first commit
    const integrity = db.pragma("integrity_check", { simple: true });
    if (integrity !== "ok") {
      throw new TandemError(ErrorCode.STORE_CORRUPT, `${file} failed its integrity check: ${String(integrity)}`, { file });
    }
    migrate(db, file, new Date().toISOString());
    return { store: new SqliteStore(db, file, retention), leadership: new LocalLeadership() };
  } catch (error) {
    db.close();
    throw storeError(error, file, "opening");
  }
}
