// The embedded SQLite store against its contract: atomic commits with gapless revisions, ordered
// and bounded audit/event queries, exclusive ownership of the file, and refusal of damaged files.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { AssertionError } from "../stdx/assert.js";
import { TandemError } from "../stdx/errors.js";
import { openSqliteStore, SQLITE_FILE_NAME, type SqliteStore } from "./sqlite-store.js";
import { COLLECTIONS, RECORDS_LIMIT_MAX, openStore, type Collection, type Document, type Mutation } from "./store.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tandem-sqlite-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function mutation(part: Partial<Mutation>): Mutation {
  return { puts: [], deletes: [], audit: [], events: [], ...part };
}

function audit(command: string): Mutation["audit"][number] {
  return { at: "2025-01-01T00:00:00.000Z", actor: "system", command, args: { n: 1 }, result: "ok" };
}

function event(message: string): Mutation["events"][number] {
  return { at: "2025-01-01T00:00:00.000Z", kind: "test", message };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TandemError) return error.code;
    throw error;
  }
  throw new Error("expected a TandemError");
}

describe("sqlite store", () => {
  it("opens an empty store: revision 0, every collection present, WAL + synchronous=FULL", async () => {
    const dir = tempDir();
    const { store, leadership } = await openStore({ kind: "sqlite", dataDir: join(dir, "data") });
    expect(store.kind).toBe("sqlite");
    const snapshot = await store.load();
    expect(snapshot.revision).toBe(0);
    expect(Object.keys(snapshot.collections).sort()).toEqual([...COLLECTIONS].sort());
    const db = (store as unknown as { db: Database.Database }).db;
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2); // FULL
    expect(db.pragma("locking_mode", { simple: true })).toBe("exclusive");
    await leadership.campaign("orch-1");
    expect(await leadership.leader()).toBe("orch-1");
    await store.close();
    await store.close(); // idempotent
  });

  it("commits atomically with gapless revisions and survives a reopen", async () => {
    const dir = tempDir();
    const { store } = await openSqliteStore({ dataDir: dir });
    const r1 = await store.commit(
      mutation({
        puts: [
          { collection: "appliances", doc: { id: "b", model: "x" } },
          { collection: "appliances", doc: { id: "a", cores: 8 } },
          { collection: "groups", doc: { id: "sg1", members: ["a"] } },
        ],
        audit: [audit("appliance.add")],
        events: [event("added a"), event("added b")],
      }),
    );
    const r2 = await store.commit(
      mutation({ puts: [{ collection: "appliances", doc: { id: "b", model: "y" } }], deletes: [{ collection: "groups", id: "sg1" }] }),
    );
    const r3 = await store.commit(mutation({ audit: [audit("sg.create")] })); // audit-only still counts
    expect([r1, r2, r3]).toEqual([1, 2, 3]);
    await store.close();

    const reopened = (await openSqliteStore({ dataDir: dir })).store;
    const snapshot = await reopened.load();
    expect(snapshot.revision).toBe(3);
    expect(snapshot.collections.appliances).toEqual([
      { id: "a", cores: 8 },
      { id: "b", model: "y" },
    ]);
    expect(snapshot.collections.groups).toEqual([]);
    expect((await reopened.audit()).map((a) => [a.seq, a.command])).toEqual([
      [2, "sg.create"],
      [1, "appliance.add"],
    ]);
    expect((await reopened.events()).map((e) => [e.seq, e.message])).toEqual([
      [1, "added a"],
      [2, "added b"],
    ]);
    expect(await reopened.commit(mutation({}))).toBe(4);
    await reopened.close();
  });

  it("pages audit newest first (beforeSeq) and events oldest first (afterSeq)", async () => {
    const { store } = await openSqliteStore({ dataDir: tempDir() });
    for (let i = 1; i <= 7; i++) await store.commit(mutation({ audit: [audit(`c${i}`)], events: [event(`e${i}`)] }));
    expect((await store.audit({ limit: 3 })).map((a) => a.seq)).toEqual([7, 6, 5]);
    expect((await store.audit({ limit: 3, beforeSeq: 5 })).map((a) => a.seq)).toEqual([4, 3, 2]);
    expect((await store.audit({ beforeSeq: 2 })).map((a) => a.seq)).toEqual([1]);
    expect((await store.events({ limit: 3 })).map((e) => e.seq)).toEqual([5, 6, 7]);
    expect((await store.events({ limit: 3, afterSeq: 2 })).map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(await store.events({ afterSeq: 7 })).toEqual([]);
    expect(await codeOf(store.audit({ limit: 0 }))).toBe("TANDEM_INVALID_ARGUMENT");
    expect(await codeOf(store.events({ afterSeq: -1 }))).toBe("TANDEM_INVALID_ARGUMENT");
    expect((await store.audit({ limit: RECORDS_LIMIT_MAX * 10 })).length).toBe(7); // clamped, not refused
    await store.close();
  });

  it("keeps only the newest records under retention", async () => {
    const { store } = await openSqliteStore({ dataDir: tempDir() }, { auditRetainedMax: 3, eventsRetainedMax: 2 });
    for (let i = 1; i <= 6; i++) await store.commit(mutation({ audit: [audit(`c${i}`)], events: [event(`e${i}`)] }));
    expect((await store.audit()).map((a) => a.seq)).toEqual([6, 5, 4]);
    expect((await store.events()).map((e) => e.seq)).toEqual([5, 6]);
    await store.close();
  });

  it("treats a malformed mutation as a programmer error", async () => {
    const { store } = await openSqliteStore({ dataDir: tempDir() });
    const twice = mutation({
      puts: [{ collection: "tokens", doc: { id: "t" } }],
      deletes: [{ collection: "tokens", id: "t" }],
    });
    await expect(store.commit(twice)).rejects.toBeInstanceOf(AssertionError);
    const unknown = mutation({ puts: [{ collection: "nope" as Collection, doc: { id: "t" } }] });
    await expect(store.commit(unknown)).rejects.toBeInstanceOf(AssertionError);
    await expect(store.commit(mutation({ puts: [{ collection: "tokens", doc: { id: "" } }] }))).rejects.toBeInstanceOf(
      AssertionError,
    );
    expect((await store.load()).revision).toBe(0); // nothing was written
    await store.close();
  });

  it("refuses a second opener while the first holds the file", async () => {
    const dir = tempDir();
    const first = (await openSqliteStore({ dataDir: dir })).store;
    const error = await openSqliteStore({ dataDir: dir, busyTimeoutMs: 50 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe("TANDEM_STORE_UNAVAILABLE");
    expect((error as TandemError).message).toMatch(/another orchestrator/);
    await first.close();
    const second = (await openSqliteStore({ dataDir: dir, busyTimeoutMs: 50 })).store;
    await second.close();
  });

  it("refuses a file that is not a database, and an SQLite file that is not a Tandem store", async () => {
    const garbage = tempDir();
    writeFileSync(join(garbage, SQLITE_FILE_NAME), Buffer.alloc(8192, 0x5a));
    expect(await codeOf(openSqliteStore({ dataDir: garbage }))).toBe("TANDEM_STORE_CORRUPT");

    const foreign = tempDir();
    const db = new Database(join(foreign, SQLITE_FILE_NAME));
    db.exec("CREATE TABLE users (name TEXT)");
    db.close();
    expect(await codeOf(openSqliteStore({ dataDir: foreign }))).toBe("TANDEM_STORE_CORRUPT");
  });

  it("refuses a database whose pages are damaged (integrity_check on open)", async () => {
    const dir = tempDir();
    const { store } = await openSqliteStore({ dataDir: dir });
    const filler = "x".repeat(200);
    for (let i = 0; i < 40; i++) {
      await store.commit(mutation({ puts: [{ collection: "appliances", doc: { id: `a${String(i).padStart(3, "0")}`, filler } }] }));
    }
    await store.close(); // checkpoints the WAL into tandem.db
    const file = join(dir, SQLITE_FILE_NAME);
    const bytes = readFileSync(file);
    const pageSize = bytes.readUInt16BE(16);
    expect(bytes.length / pageSize).toBeGreaterThan(4);
    // Scribble over the second half of every page after the schema page: cell contents and
    // b-tree pointers no longer agree, which integrity_check reports.
    for (let page = 1; page < bytes.length / pageSize; page++) {
      bytes.fill(0x7f, page * pageSize + pageSize / 2, (page + 1) * pageSize);
    }
    writeFileSync(file, bytes);
    const error = await openSqliteStore({ dataDir: dir }).catch((e: unknown) => e);
    expect((error as TandemError).code).toBe("TANDEM_STORE_CORRUPT");
    expect((error as TandemError).message).toMatch(/integrity check/);
  });

  it("matches an in-memory model over random mutation sequences (seed 42)", async () => {
    const ids = ["a", "b", "c", "d"];
    const collection = fc.constantFrom<Collection>(...COLLECTIONS);
    const step = fc.record({
      puts: fc.array(fc.record({ collection, id: fc.constantFrom(...ids), value: fc.integer() }), { maxLength: 4 }),
      deletes: fc.array(fc.record({ collection, id: fc.constantFrom(...ids) }), { maxLength: 3 }),
      auditCount: fc.integer({ min: 0, max: 2 }),
      eventCount: fc.integer({ min: 0, max: 2 }),
    });
    const seed = 42;
    console.log(`sqlite store model property: seed ${seed}`);
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        const dir = tempDir();
        let store: SqliteStore = (await openSqliteStore({ dataDir: dir })).store;
        const model = new Map<string, Document>(); // "collection/id" -> doc
        let auditTotal = 0;
        let eventTotal = 0;
        for (const [n, s] of steps.entries()) {
          const seen = new Set<string>();
          const m = mutation({});
          for (const p of s.puts) {
            const key = `${p.collection}/${p.id}`;
            if (seen.has(key)) continue;
            seen.add(key);
            m.puts.push({ collection: p.collection, doc: { id: p.id, value: p.value, step: n } });
          }
          for (const d of s.deletes) {
            const key = `${d.collection}/${d.id}`;
            if (seen.has(key)) continue;
            seen.add(key);
            m.deletes.push(d);
          }
          for (let i = 0; i < s.auditCount; i++) m.audit.push(audit(`s${n}.${i}`));
          for (let i = 0; i < s.eventCount; i++) m.events.push(event(`s${n}.${i}`));
          expect(await store.commit(m)).toBe(n + 1);
          for (const p of m.puts) model.set(`${p.collection}/${p.doc.id}`, p.doc);
          for (const d of m.deletes) model.delete(`${d.collection}/${d.id}`);
          auditTotal += s.auditCount;
          eventTotal += s.eventCount;
          if (n === Math.floor(steps.length / 2)) {
            await store.close(); // reopening must change nothing
            store = (await openSqliteStore({ dataDir: dir })).store;
          }
        }
        const snapshot = await store.load();
        expect(snapshot.revision).toBe(steps.length);
        for (const c of COLLECTIONS) {
          const expected = [...model.entries()]
            .filter(([key]) => key.startsWith(`${c}/`))
            .map(([, doc]) => doc)
            .sort((x, y) => (x.id < y.id ? -1 : 1));
          expect(snapshot.collections[c]).toEqual(expected);
        }
        expect((await store.audit({ limit: RECORDS_LIMIT_MAX })).map((a) => a.seq)).toEqual(
          Array.from({ length: auditTotal }, (_, i) => auditTotal - i),
        );
        expect((await store.events({ limit: RECORDS_LIMIT_MAX })).map((e) => e.seq)).toEqual(
          Array.from({ length: eventTotal }, (_, i) => i + 1),
        );
        await store.close();
      }),
      { seed, numRuns: 25 },
    );
  });
});
