// SQLite schema versions of the orchestrator store, applied in order on open.
// Invariants:
// - a migration is never edited once released: a new schema is a new, higher version;
// - the schema_migrations table lists every applied version, so the database's version is its
//   highest row (0 for an empty file);
// - each migration runs in its own transaction together with its schema_migrations row, so a
//   crash leaves the database at the old or the new version, never in between;
// - a database from a newer Tandem (version above SCHEMA_VERSION) is refused, never touched.
import type Database from "better-sqlite3";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "documents, audit, events and the revision counter",
    sql: `
      CREATE TABLE store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO store_meta (key, value) VALUES ('revision', 0);
      CREATE TABLE documents (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (collection, id)
      ) WITHOUT ROWID;
      CREATE TABLE audit (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
      CREATE TABLE events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
    `,
  },
  {
    version: 2,
    // Which mutation wrote a row: ties the audit trail and events to store revisions.
    // Rows written before version 2 carry revision 0 (unknown).
    description: "revision column on documents, audit and events",
    sql: `
      ALTER TABLE documents ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE audit ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE events ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    `,
  },
];

export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

for (let i = 0; i < MIGRATIONS.length; i++) assert(MIGRATIONS[i].version === i + 1, "migrations are numbered 1, 2, 3, ...");

const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

/** The database's schema version: 0 for an empty database. Refuses a foreign (non-Tandem) database. */
export function schemaVersionOf(db: Database.Database, file: string): number {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
  if (tables.length === 0) return 0;
  if (!tables.includes("schema_migrations")) {
    throw new TandemError(
      ErrorCode.STORE_CORRUPT,
      `${file} is an SQLite database but not a Tandem store (no schema_migrations table)`,
      { file },
    );
  }
  const version = db.prepare("SELECT MAX(version) FROM schema_migrations").pluck().get() as number | null;
  return version ?? 0;
}

/**
 * Brings the database to `targetVersion` (default: the newest). Returns the versions before and after.
 * `nowIso` stamps the schema_migrations rows. Throws TANDEM_STORE_SCHEMA_NEWER for a newer database.
 */
export function migrate(
  db: Database.Database,
  file: string,
  nowIso: string,
  targetVersion: number = SCHEMA_VERSION,
): { fromVersion: number; toVersion: number } {
  assert(Number.isInteger(targetVersion) && targetVersion >= 1 && targetVersion <= SCHEMA_VERSION, "target version in range");
  const fromVersion = schemaVersionOf(db, file);
  if (fromVersion > SCHEMA_VERSION) {
    throw new TandemError(
      ErrorCode.STORE_SCHEMA_NEWER,
      `${file} has schema version ${fromVersion}, newer than this Tandem supports (${SCHEMA_VERSION}); ` +
        "run a Tandem release that supports it, or restore a backup",
      { file, version: fromVersion, supported: SCHEMA_VERSION },
    );
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= fromVersion || migration.version > targetVersion) continue;
    // The bookkeeping table is created inside the first migration's transaction, so a crash
    // cannot leave an empty schema_migrations table behind.
    db.transaction(() => {
      db.exec(CREATE_MIGRATIONS_TABLE);
      db.exec(migration.sql);
      db.prepare("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)").run(
        migration.version,
        migration.description,
        nowIso,
      );
    }).immediate();
  }
  return { fromVersion, toVersion: Math.max(fromVersion, targetVersion) };
}
