// No acknowledged change is lost when the orchestrator is killed at any moment: a child process
// (test/fixtures/store-writer.ts) commits to the SQLite store in a loop and prints each revision
// only after commit() resolved; we SIGKILL it at seeded random moments, reopen the store and
// check that every acknowledged revision is there, that revisions have no holes, that every
// mutation is all-or-nothing, and that the file passes integrity_check.
import { readdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore, SQLITE_FILE_NAME } from "../src/store/sqlite-store.js";
import { RECORDS_LIMIT_MAX } from "../src/store/store.js";
import { Prng } from "../src/stdx/prng.js";
import { ChildLines, compiledFixture } from "./fixtures/child-lines.js";
import { changeId } from "./fixtures/store-writer.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SEED = 20250417;
const KILLS = 22;
/**
 * Kill moments: one in five while the child starts and opens the file (0..150 ms after spawn);
 * the others inside the commit loop, 0..20 ms after its 1st..30th acknowledgement.
 */
const KILL_AFTER_SPAWN_MS_MAX = 150;
const KILL_AFTER_ACKS_MAX = 30;
const KILL_AFTER_ACK_MS_MAX = 20;
const CHILD_DEADLINE_MS = 10_000;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function storeSources(): string[] {
  const store = readdirSync(`${ROOT}src/store`).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
  return ["test/fixtures/store-writer.ts", ...store.map((f) => `src/store/${f}`)];
}

/** Checks the store in `dir` against everything acknowledged so far; returns its revision. */
async function verify(dir: string, ackedMax: number, acked: Map<number, string>): Promise<number> {
  const { store } = await openSqliteStore({ dataDir: dir }); // runs integrity_check
  try {
    const snapshot = await store.load();
    const revision = snapshot.revision;
    expect(revision, "no acknowledged revision is lost").toBeGreaterThanOrEqual(ackedMax);
    // One changes document per revision, never deleted: 1..revision all present = no holes,
    // nothing beyond = no partial mutation from a later revision.
    const changes = snapshot.collections.changes;
    expect(changes.length).toBe(revision);
    changes.forEach((doc, i) => {
      expect(doc.id).toBe(changeId(i + 1));
      expect(doc.revision).toBe(i + 1);
    });
    for (const [r, id] of acked) expect(changes[r - 1]?.id).toBe(id);
    // The put + delete of each mutation happened together.
    expect(snapshot.collections.members.map((d) => d.id)).toEqual(revision > 0 ? [`tmp-${revision}`] : []);
    expect(snapshot.collections.meta).toEqual(revision > 0 ? [{ id: "counter", revision }] : []);
    // One audit and one event record per revision, seqs 1..revision.
    const newestAudit = await store.audit({ limit: 1 });
    expect(newestAudit.map((a) => [a.seq, (a.args as { revision: number }).revision])).toEqual(
      revision > 0 ? [[revision, revision]] : [],
    );
    let seen = 0;
    for (let page = 0; seen < revision; page++) {
      expect(page).toBeLessThan(revision); // bound
      const events = await store.events({ afterSeq: seen, limit: RECORDS_LIMIT_MAX });
      expect(events.length).toBeGreaterThan(0);
      for (const e of events) {
        seen++;
        expect([e.seq, (e.data as { revision: number }).revision]).toEqual([seen, seen]);
      }
    }
    expect(seen).toBe(revision);
    return revision;
  } finally {
    await store.close();
  }
}

/** integrity_check once more from outside the store, on the closed file. */function integrityOf(dir: string): string {
  const db = new Database(join(dir, SQLITE_FILE_NAME), { readonly: true });
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}

describe("sqlite store under SIGKILL", () => {
  it(`keeps every acknowledged commit across ${KILLS} kills (seed ${SEED})`, async () => {
    const fixture = compiledFixture(ROOT, "dist/test/fixtures/store-writer.js", storeSources());
    const dir = mkdtempSync(join(tmpdir(), "tandem-crash-"));
    dirs.push(dir);
    const prng = new Prng(SEED);
    const acked = new Map<number, string>();
    let ackedMax = 0;
    let killsInCommitLoop = 0;
    let revision = 0;
    const startedAtMs = Date.now();
    for (let kill = 0; kill < KILLS; kill++) {
      const writer = new ChildLines(process.execPath, [fixture, dir, String(kill)]);
      const early = prng.nextU32() % 5 === 0;
      if (early) {
        await new Promise((resolve) => setTimeout(resolve, prng.nextU32() % KILL_AFTER_SPAWN_MS_MAX));
      } else {
        const acks = 1 + (prng.nextU32() % KILL_AFTER_ACKS_MAX);
        await writer.waitForLine(new RegExp(`^ack ${revision + acks} `), CHILD_DEADLINE_MS, `writer ${kill}'s ack ${acks}`);
        await new Promise((resolve) => setTimeout(resolve, prng.nextU32() % KILL_AFTER_ACK_MS_MAX));
        killsInCommitLoop++;
      }
      writer.kill("SIGKILL");
      const exit = await writer.exited;
      expect(exit.code, `writer ${kill} must not fail on its own: ${writer.stderr}`).toBeNull();
      expect(exit.signal).toBe("SIGKILL");
      for (const line of writer.lines) {
        const match = /^ack (\d+) (\S+)$/.exec(line);
        if (match === null) continue;
        const r = Number(match[1]);
        expect(r, "acknowledged revisions only grow").toBeGreaterThan(ackedMax);
        acked.set(r, match[2]);
        ackedMax = r;
      }
      revision = await verify(dir, ackedMax, acked);
      expect(integrityOf(dir)).toBe("ok");
    }
    const elapsedMs = Date.now() - startedAtMs;
    console.log(
      `store crash test: seed ${SEED}, ${KILLS} SIGKILLs (${killsInCommitLoop} inside the commit loop), ` +
        `${acked.size} acknowledged revisions checked, final revision ${revision}, ${elapsedMs} ms`,
    );
    expect(killsInCommitLoop).toBeGreaterThanOrEqual(KILLS / 2);
    expect(acked.size).toBeGreaterThan(KILLS);
  });
});
