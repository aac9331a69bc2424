// Schema migrations: a database written by an older Tandem opens, migrates and keeps its data;
// a database from a newer Tandem is refused untouched.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { TandemError } from "../stdx/errors.js";
import { MIGRATIONS, SCHEMA_VERSION, migrate } from "./migrations.js";
import { openSqliteStore, SQLITE_FILE_NAME } from "./sqlite-store.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tandem-migrate-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// Version 1 exactly as Tandem 0.1 wrote it, frozen here rather than taken from MIGRATIONS, so an
// accidental edit of a released migration makes this test fail.
const V1_SCHEMA = `
  CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL);
  INSERT INTO schema_migrations VALUES (1, 'documents, audit, events and the revision counter', '2025-01-01T00:00:00.000Z');
  CREATE TABLE store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
  INSERT INTO store_meta (key, value) VALUES ('revision', 0);
  CREATE TABLE documents (collection TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID;
  CREATE TABLE audit (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
  CREATE TABLE events (seq INTEGER PRIMARY KEY, json TEXT NOT NULL);
`;

function writeV1Database(dir: string): void {
  const db = new Database(join(dir, SQLITE_FILE_NAME));
  db.pragma("journal_mode = WAL");
  db.exec(V1_SCHEMA);
  db.prepare("INSERT INTO documents VALUES (?, ?, ?)").run("appliances", "gw1", JSON.stringify({ id: "gw1", cores: 4 }));
  db.prepare("INSERT INTO documents VALUES (?, ?, ?)").run("groups", "sg1", JSON.stringify({ id: "sg1", name: "edge" }));
  const a = { at: "2025-01-01T00:00:00.000Z", actor: "admin", command: "sg.create", args: {}, result: "ok" };
  db.prepare("INSERT INTO audit VALUES (1, ?)").run(JSON.stringify(a));
  db.prepare("INSERT INTO events VALUES (1, ?)").run(JSON.stringify({ at: a.at, kind: "sg", message: "created" }));
  db.prepare("UPDATE store_meta SET value = 2 WHERE key = 'revision'").run();
  db.close();
}

describe("store migrations", () => {
  it("numbers migrations 1..N and N is the schema version", () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(2);
  });

  it("opens a version 1 database, migrates it to the newest version and keeps its data", async () => {
    const dir = tempDir();
    writeV1Database(dir);
    const { store } = await openSqliteStore({ dataDir: dir });
    const snapshot = await store.load();
    expect(snapshot.revision).toBe(2);
    expect(snapshot.collections.appliances).toEqual([{ id: "gw1", cores: 4 }]);
    expect(snapshot.collections.groups).toEqual([{ id: "sg1", name: "edge" }]);
    expect((await store.audit()).map((r) => [r.seq, r.command])).toEqual([[1, "sg.create"]]);
    const revision = await store.commit({
      puts: [{ collection: "appliances", doc: { id: "gw2", cores: 8 } }],
      deletes: [],
      audit: [{ at: "2025-01-02T00:00:00.000Z", actor: "admin", command: "appliance.add", args: {}, result: "ok" }],
      events: [],
    });
    expect(revision).toBe(3);
    await store.close();

    const db = new Database(join(dir, SQLITE_FILE_NAME), { readonly: true });
    expect(db.prepare("SELECT version FROM schema_migrations ORDER BY version").pluck().all()).toEqual([1, 2]);
    // Version 2's revision column: 0 for rows older than it, the writing revision for new rows.
    expect(db.prepare("SELECT id, revision FROM documents ORDER BY id").all()).toEqual([
      { id: "gw1", revision: 0 },
      { id: "gw2", revision: 3 },
      { id: "sg1", revision: 0 },
    ]);
    expect(db.prepare("SELECT seq, revision FROM audit ORDER BY seq").all()).toEqual([
      { seq: 1, revision: 0 },
      { seq: 2, revision: 3 },
    ]);
    db.close();
  });

  it("migrates step by step: a database stopped at version 1 by migrate() continues to the newest", async () => {
    const dir = tempDir();
    const db = new Database(join(dir, SQLITE_FILE_NAME));
    expect(migrate(db, "test.db", "2025-01-01T00:00:00.000Z", 1)).toEqual({ fromVersion: 0, toVersion: 1 });
    expect(migrate(db, "test.db", "2025-01-01T00:00:00.000Z", 1)).toEqual({ fromVersion: 1, toVersion: 1 });
    db.close();
    const { store } = await openSqliteStore({ dataDir: dir });
    expect((await store.load()).revision).toBe(0);
    await store.close();
  });

  it("refuses a database from a newer Tandem and leaves it untouched", async () => {
    const dir = tempDir();
    writeV1Database(dir);
    const db = new Database(join(dir, SQLITE_FILE_NAME));
    db.prepare("INSERT INTO schema_migrations VALUES (?, 'from the future', '2030-01-01T00:00:00.000Z')").run(SCHEMA_VERSION + 1);
    db.close();
    const before = readFileSync(join(dir, SQLITE_FILE_NAME));
    const error = await openSqliteStore({ dataDir: dir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe("TANDEM_STORE_SCHEMA_NEWER");
    expect((error as TandemError).message).toMatch(new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than`));
    expect(readFileSync(join(dir, SQLITE_FILE_NAME)).equals(before)).toBe(true);
  });
});
