// The etcd store against a real etcd server: the store contract, leadership, takeover when the
// active orchestrator (a child process) is SIGKILLed, and fencing of a deposed leader.
// Needs the `etcd` binary (Debian: etcd-server). CI installs it (.ci/run); without it the suite
// is skipped with a message saying so.
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TandemError } from "../src/stdx/errors.js";
import { openEtcdStore, type EtcdStore, type EtcdStoreTesting } from "../src/store/etcd-store.js";
import type { Mutation } from "../src/store/store.js";
import { ChildLines, compiledFixture, waitUntil } from "./fixtures/child-lines.js";
import { ETCD_READY_MS, hasEtcd, startEtcd, type EtcdServer } from "./fixtures/etcd-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LEASE_TTL_S = 2; // etcd's minimum with its default election timeout
const TAKEOVER_MS_MAX = LEASE_TTL_S * 1000 + 3000;

if (!hasEtcd) {
  console.warn("store-etcd tests SKIPPED: no `etcd` binary on PATH (apt-get install etcd-server; CI installs it)");
}

function mutation(part: Partial<Mutation>): Mutation {
  return { puts: [], deletes: [], audit: [], events: [], ...part };
}

const AT = "2025-01-01T00:00:00.000Z";

async function errorOf(promise: Promise<unknown>): Promise<TandemError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TandemError) return error;
    throw error;
  }
  throw new Error("expected a TandemError");
}

describe.skipIf(!hasEtcd)("etcd store (real etcd)", () => {
  let server: EtcdServer;
  let prefixCount = 0;
  const stores: EtcdStore[] = [];
  const children: ChildLines[] = [];

  beforeAll(async () => {
    server = await startEtcd();
  }, ETCD_READY_MS + 5000);

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    for (const store of stores) await store.close();
    await server?.stop();
  });

  function nextPrefix(): string {
    return `/tandem-test-${++prefixCount}/`;
  }

  async function open(prefix: string, testing: EtcdStoreTesting = {}): Promise<EtcdStore> {
    const { store } = await openEtcdStore({ endpoints: [server.endpoint], prefix, leaseTtlS: LEASE_TTL_S }, testing);
    stores.push(store);
    return store;
  }

  async function electionKeys(prefix: string): Promise<string[]> {
    return server.client.getAll().prefix(`${prefix}election/leader/`).keys();
  }

  it("commits only as leader, with gapless revisions and ordered audit and events", async () => {
    const prefix = nextPrefix();
    const a = await open(prefix);
    expect(a.kind).toBe("etcd");
    expect((await a.load()).revision).toBe(0);
    const notLeader = await errorOf(a.commit(mutation({})));
    expect(notLeader.code).toBe("TANDEM_NOT_LEADER");
    expect(await a.leader()).toBeNull();

    await a.campaign("orch-a");
    expect(await a.leader()).toBe("orch-a");
    const r1 = await a.commit(
      mutation({
        puts: [
          { collection: "appliances", doc: { id: "gw2", cores: 8 } },
          { collection: "appliances", doc: { id: "gw1", cores: 4 } },
          { collection: "groups", doc: { id: "sg/edge", members: ["gw1"] } }, // "/" in an id
        ],
        audit: [{ at: AT, actor: "admin", command: "sg.create", args: { name: "edge" }, result: "ok" }],
        events: [{ at: AT, kind: "sg", group: "sg/edge", message: "created" }],
      }),
    );
    const r2 = await a.commit(
      mutation({
        puts: [{ collection: "appliances", doc: { id: "gw2", cores: 16 } }],
        deletes: [{ collection: "appliances", id: "gw1" }],
        audit: [
          { at: AT, actor: "admin", command: "appliance.remove", args: { id: "gw1" }, result: "ok" },
          { at: AT, actor: "bob", command: "sg.delete", args: {}, result: "error", code: "TANDEM_NOT_FOUND" },
        ],
        events: [
          { at: AT, kind: "appliance", message: "removed gw1" },
          { at: AT, kind: "appliance", message: "resized gw2" },
        ],
      }),
    );
    const r3 = await a.commit(mutation({}));
    expect([r1, r2, r3]).toEqual([1, 2, 3]);

    const b = await open(prefix); // another client sees the same state
    const snapshot = await b.load();
    expect(snapshot.revision).toBe(3);
    expect(snapshot.collections.appliances).toEqual([{ id: "gw2", cores: 16 }]);
    expect(snapshot.collections.groups).toEqual([{ id: "sg/edge", members: ["gw1"] }]);
    expect(snapshot.collections.tokens).toEqual([]);
    expect((await b.audit()).map((r) => [r.seq, r.command])).toEqual([
      [3, "sg.delete"],
      [2, "appliance.remove"],
      [1, "sg.create"],
    ]);
    expect((await b.audit({ limit: 1, beforeSeq: 3 })).map((r) => r.seq)).toEqual([2]);
    expect((await b.events()).map((e) => [e.seq, e.message])).toEqual([
      [1, "created"],
      [2, "removed gw1"],
      [3, "resized gw2"],
    ]);
    expect((await b.events({ limit: 2 })).map((e) => e.seq)).toEqual([2, 3]);
    expect((await b.events({ afterSeq: 1, limit: 1 })).map((e) => e.seq)).toEqual([2]);
    expect((await errorOf(b.commit(mutation({})))).code).toBe("TANDEM_NOT_LEADER"); // b never campaigned
  });

  it("keeps only the newest audit and event records under retention", async () => {
    const a = await open(nextPrefix(), { auditRetainedMax: 3, eventsRetainedMax: 2 });
    await a.campaign("orch-a");
    await a.load();
    for (let i = 1; i <= 6; i++) {
      await a.commit(
        mutation({
          audit: [{ at: AT, actor: "system", command: `c${i}`, args: {}, result: "ok" }],
          events: [{ at: AT, kind: "k", message: `e${i}` }],
        }),
      );
    }
    expect((await a.audit()).map((r) => r.seq)).toEqual([6, 5, 4]);
    expect((await a.events()).map((e) => e.seq)).toEqual([5, 6]);
  });

  it("refuses a mutation too large for one etcd transaction, writing nothing", async () => {
    const a = await open(nextPrefix());
    await a.campaign("orch-a");
    await a.load();
    const puts = Array.from({ length: 130 }, (_, i) => ({ collection: "appliances" as const, doc: { id: `gw${i}` } }));
    expect((await errorOf(a.commit(mutation({ puts })))).code).toBe("TANDEM_INVALID_ARGUMENT");
    expect((await a.load()).revision).toBe(0);
  });

  it("hands over on resign; a new leader loads before committing; a stale model is refused", async () => {
    const prefix = nextPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    await a.campaign("orch-a");
    await a.load();
    expect(await a.commit(mutation({ puts: [{ collection: "meta", doc: { id: "owner", by: "a" } }] }))).toBe(1);
    const bElected = b.campaign("orch-b");
    await waitUntil(async () => ((await electionKeys(prefix)).length === 2 ? true : undefined), 5000, "b's candidacy");
    await a.resign();
    await bElected;
    expect(await b.leader()).toBe("orch-b");
    const loadFirst = await errorOf(b.commit(mutation({})));
    expect([loadFirst.code, loadFirst.details?.reason]).toEqual(["TANDEM_STORE_UNAVAILABLE", "load-required"]);
    expect((await b.load()).revision).toBe(1);
    expect(await b.commit(mutation({ puts: [{ collection: "meta", doc: { id: "owner", by: "b" } }] }))).toBe(2);
    await b.resign();

    await a.campaign("orch-a"); // a's model is still at revision 1
    const stale = await errorOf(a.commit(mutation({})));
    expect([stale.code, stale.details?.reason]).toEqual(["TANDEM_STORE_UNAVAILABLE", "stale"]);
    const snapshot = await a.load();
    expect([snapshot.revision, snapshot.collections.meta]).toEqual([2, [{ id: "owner", by: "b" }]]);
    expect(await a.commit(mutation({}))).toBe(3);
  });

  it("fences off a deposed leader that has not noticed: its commit fails with TANDEM_NOT_LEADER", async () => {
    const prefix = nextPrefix();
    // `stale` does not watch its election key, like a leader that paused or lost its watch.
    const stale = await open(prefix, { watchLeaderKey: false });
    let lostCount = 0;
    stale.onLost(() => lostCount++);
    await stale.campaign("orch-stale");
    await stale.load();
    expect(await stale.commit(mutation({ puts: [{ collection: "meta", doc: { id: "w", by: "stale" } }] }))).toBe(1);

    // Depose it behind its back (what a lease expiry does), and let another instance take over.
    const [key] = await electionKeys(prefix);
    await server.client.delete().key(key);
    const fresh = await open(prefix);
    await fresh.campaign("orch-fresh");
    await fresh.load();
    expect(await fresh.commit(mutation({ puts: [{ collection: "meta", doc: { id: "w", by: "fresh" } }] }))).toBe(2);

    expect(lostCount).toBe(0); // it still believes it leads...
    const fenced = await errorOf(stale.commit(mutation({ puts: [{ collection: "meta", doc: { id: "w", by: "stale" } }] })));
    expect([fenced.code, fenced.details?.fencedBy]).toEqual(["TANDEM_NOT_LEADER", "etcd"]); // ...etcd refused
    expect(stale.fencedCommitCount).toBe(1);
    expect(lostCount).toBe(1);
    const snapshot = await fresh.load();
    expect([snapshot.revision, snapshot.collections.meta]).toEqual([2, [{ id: "w", by: "fresh" }]]);
    expect((await errorOf(stale.commit(mutation({})))).code).toBe("TANDEM_NOT_LEADER");
  });

  it("tells a leader whose lease was revoked that it lost, and refuses its commits", async () => {
    const prefix = nextPrefix();
    const a = await open(prefix);
    let lostCount = 0;
    a.onLost(() => lostCount++);
    await a.campaign("orch-a");
    await a.load();
    const [key] = await electionKeys(prefix);
    const leaseId = key.slice(`${prefix}election/leader/`.length);
    await server.client.leaseClient.leaseRevoke({ ID: leaseId });
    await waitUntil(() => (lostCount === 1 ? true : undefined), 5000, "onLost after the lease was revoked");
    expect((await errorOf(a.commit(mutation({})))).code).toBe("TANDEM_NOT_LEADER");
    expect(await a.leader()).toBeNull();
  });

  it("takes over within seconds when the active orchestrator is SIGKILLed", async () => {
    const fixture = compiledFixture(ROOT, "dist/test/fixtures/store-orchestrator.js", [
      "test/fixtures/store-orchestrator.ts",
      ...readdirSync(`${ROOT}src/store`)
        .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
        .map((f) => `src/store/${f}`),
    ]);
    const prefix = nextPrefix();
    const orchestrator = (id: string): ChildLines => {
      const child = new ChildLines(process.execPath, [fixture, server.endpoint, prefix, id, String(LEASE_TTL_S)]);
      children.push(child);
      return child;
    };
    const first = orchestrator("orch-1");
    await first.waitForLine(/^active$/, 10_000, "orch-1 to become active");
    const firstActiveAtMs = Date.now();
    const second = orchestrator("orch-2");
    await second.waitForLine(/^campaigning$/, 10_000, "orch-2 to campaign");
    await waitUntil(async () => ((await electionKeys(prefix)).length === 2 ? true : undefined), 10_000, "two candidates");
    await first.waitForLine(/^beat 3$/, 10_000, "orch-1's third heartbeat");
    // Lease renewals keep the leader in office: it outlives 1.5 lease TTLs without "lost"
    // (its watchdog would give up after 2/3 of a TTL without a successful keepalive).
    const heldMs = LEASE_TTL_S * 1500;
    await waitUntil(() => (Date.now() - firstActiveAtMs >= heldMs ? true : undefined), heldMs + 1000, "1.5 lease TTLs");
    expect(first.alive && !first.lines.includes("lost")).toBe(true);
    expect(second.lines).not.toContain("active"); // standing by

    const killedAtMs = Date.now();
    first.kill("SIGKILL");
    await first.exited;
    const lastBeat = Math.max(...first.lines.filter((l) => l.startsWith("beat ")).map((l) => Number(l.slice(5))));
    await second.waitForLine(/^active$/, TAKEOVER_MS_MAX + 2000, "orch-2 to take over");
    const takeoverMs = Date.now() - killedAtMs;
    const firstBeat = await second.waitForLine(/^beat \d+$/, 5000, "orch-2's first heartbeat");
    const firstBeatMs = Date.now() - killedAtMs;
    console.log(
      `etcd takeover: lease TTL ${LEASE_TTL_S} s, standby active ${takeoverMs} ms after SIGKILL, ` +
        `first heartbeat committed after ${firstBeatMs} ms (orch-1's last acknowledged revision ${lastBeat}, orch-2's first ${firstBeat.slice(5)})`,
    );
    expect(takeoverMs).toBeLessThan(TAKEOVER_MS_MAX);
    // No acknowledged revision lost, none reused: the new leader continues after the old one.
    const revision = Number(firstBeat.slice(5));
    expect(revision).toBeGreaterThan(lastBeat);
    expect(revision).toBeLessThanOrEqual(lastBeat + 2); // at most one unacknowledged commit in between

    const observer = await open(prefix);
    expect(await observer.leader()).toBe("orch-2");
    const heartbeat = (await observer.load()).collections.meta.find((d) => d.id === "heartbeat");
    expect(heartbeat?.leader).toBe("orch-2");
    second.kill("SIGKILL");
    await second.exited;
  });

  // Last: it freezes the shared server.
  it("a leader cut off from etcd declares itself lost before its lease could expire", async () => {
    const a = await open(nextPrefix());
    let lostAtMs: number | undefined;
    a.onLost(() => {
      lostAtMs = Date.now();
    });
    await a.campaign("orch-a");
    await a.load();
    const cutAtMs = Date.now();
    server.pause();
    try {
      await waitUntil(() => lostAtMs, LEASE_TTL_S * 1000 + 3000, "onLost while etcd does not answer");
    } finally {
      server.resume();
    }
    const lostAfterMs = lostAtMs! - cutAtMs;
    console.log(`etcd cut off: the leader declared itself lost after ${lostAfterMs} ms (lease TTL ${LEASE_TTL_S} s)`);
    expect(lostAfterMs).toBeLessThan(LEASE_TTL_S * 1000);
    const refused = await errorOf(a.commit(mutation({})));
    expect([refused.code, refused.details?.fencedBy]).toEqual(["TANDEM_NOT_LEADER", "local"]);
  });
});
