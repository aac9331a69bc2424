// End to end, with real processes: two compiled `tandem orchestrator --store etcd` daemons
// (each with its own data directory) against one real etcd. Exactly one is active; the other
// stands by, serving /api/health and refusing everything else with TANDEM_NOT_LEADER. The
// active one is SIGKILLed: the standby takes over once the dead one's lease expires (measured
// and printed), with every acknowledged command there, the admin token of the first instance
// still valid (tokens live in etcd; the second never makes its own) and the audit log intact.
// The killed one, restarted, stands by.
// Needs the `etcd` binary (Debian: etcd-server); without it the suite is skipped with a message.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TandemClient } from "../src/api/client.js";
import type { Health } from "../src/api/types.js";
import { ErrorCode, TandemError } from "../src/stdx/errors.js";
import { LEASE_TTL_S_DEFAULT } from "../src/store/etcd-store.js";
import { ChildLines, compiledFixture, waitUntil } from "./fixtures/child-lines.js";
import { ETCD_READY_MS, hasEtcd, startEtcd, type EtcdServer } from "./fixtures/etcd-server.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The CLI runs with the store's default lease (it has no flag for it). */
const TAKEOVER_MS_MAX = LEASE_TTL_S_DEFAULT * 1000 + 3000;
const HEALTH_POLL_MS = 50;
/** Generous: a busy 2-core test machine takes seconds to start a node process. */
const START_MS_MAX = 20_000;
const GROUP = "edge";

if (!hasEtcd) {
  console.warn("orchestrator-etcd-e2e tests SKIPPED: no `etcd` binary on PATH (apt-get install etcd-server; CI installs it)");
}

function cliPath(): string {
  return compiledFixture(ROOT, "dist/src/cli/main.js", ["src/cli/main.ts", "src/cli/orchestrator.ts", "src/runtime/orchestrator-daemon.ts", "src/api/server.ts", "src/store/etcd-store.ts"]);
}

async function errorOf(promise: Promise<unknown>): Promise<TandemError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TandemError) return error;
    throw error;
  }
  throw new Error("expected a TandemError");
}

interface Orchestrator {
  name: string;
  dir: string;
  child: ChildLines;
  url: string;
  health(): Promise<Health>;
}

describe.skipIf(!hasEtcd)("tandem orchestrator --store etcd, end to end (two daemons, one etcd)", () => {
  let server: EtcdServer | undefined;
  const children: ChildLines[] = [];
  const dirs: string[] = [];
  // Unique per run: the etcd is fresh, but keys from a reused server must never be seen.
  const prefix = `/tandem-e2e-${process.pid}-${Date.now()}/`;

  beforeAll(async () => {
    server = await startEtcd();
  }, ETCD_READY_MS + 5000);

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    await server?.stop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  async function startOrchestrator(name: string, dir: string): Promise<Orchestrator> {
    const child = new ChildLines(process.execPath, [
      cliPath(),
      "orchestrator",
      "--store",
      "etcd",
      "--etcd",
      server!.endpoint,
      "--etcd-prefix",
      prefix,
      "--data-dir",
      dir,
      "--listen",
      "127.0.0.1:0",
      "--log-level",
      "warn",
    ]);
    children.push(child);
    const first = await child.waitForLine(/./, START_MS_MAX, `${name}'s first line`);
    const match = /^tandem orchestrator listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
    expect(match, `${name}'s first stdout line: ${first}`).not.toBeNull();
    const url = match![1]!;
    const probe = new TandemClient({ server: url, token: null, timeoutMs: 1000 });
    return { name, dir, child, url, health: () => probe.health() };
  }

  function newDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "tandem-etcd-e2e-"));
    dirs.push(dir);
    return dir;
  }

  async function candidateCount(): Promise<number> {
    return (await server!.client.getAll().prefix(`${prefix}election/leader/`).keys()).length;
  }

  it("one active, one standby; SIGKILL the active: the standby takes over with nothing acknowledged lost", { timeout: 90_000 }, async () => {
    // Both at once: the election, not the start order, picks the active one.
    const [x, y] = await Promise.all([startOrchestrator("orch-x", newDir()), startOrchestrator("orch-y", newDir())]);
    const roles = await waitUntil(
      async () => {
        const [hx, hy] = await Promise.all([x.health(), y.health()]);
        return hx.role === "active" || hy.role === "active" ? [hx, hy] : undefined;
      },
      START_MS_MAX,
      "one orchestrator to become active",
      undefined,
      HEALTH_POLL_MS,
    );
    const [active, standby] = roles[0]!.role === "active" ? [x, y] : [y, x];
    await waitUntil(async () => ((await candidateCount()) === 2 ? true : undefined), START_MS_MAX, "both orchestrators campaigning");
    const [activeHealth, standbyHealth] = await Promise.all([active.health(), standby.health()]);
    expect([activeHealth.role, activeHealth.store, standbyHealth.role, standbyHealth.store]).toEqual(["active", "etcd", "standby", "etcd"]);
    expect(activeHealth.instance).not.toBe(standbyHealth.instance);
    await active.child.waitForLine(/^tandem orchestrator active \(store etcd/, START_MS_MAX, `${active.name}'s active line`);
    expect(standby.child.lines.filter((l) => l.startsWith("tandem orchestrator active"))).toEqual([]);

    // The admin token, made once by the first active instance, read the way an operator would.
    const adminToken = readFileSync(join(active.dir, "admin-token"), "utf8").trim();
    expect(active.child.lines.some((l) => l.startsWith("admin token") && l.includes(adminToken))).toBe(true);
    expect(existsSync(join(standby.dir, "admin-token"))).toBe(false);
    const admin = (o: Orchestrator) => new TandemClient({ server: o.url, token: adminToken, timeoutMs: 5000 });

    // Acknowledged commands on the active one.
    const appliance = (id: string) => ({ id, model: "A", cores: 8, memoryMb: 16384, version: "1.0.0", address: `${id}.lab:7471` });
    await admin(active).addAppliance(appliance("a1"));
    await admin(active).addAppliance(appliance("a2"));
    await admin(active).createGroup({ name: GROUP, bucketCount: 1024, seed: 7 });
    const acknowledgedRevision = (await active.health()).storeRevision;

    // The standby refuses a mutation (and a read) with TANDEM_NOT_LEADER; nothing reaches the store.
    const refused = await errorOf(admin(standby).addAppliance(appliance("s1")));
    expect(refused.code).toBe(ErrorCode.NOT_LEADER);
    expect((await errorOf(admin(standby).listAppliances())).code).toBe(ErrorCode.NOT_LEADER);
    expect((await active.health()).storeRevision).toBe(acknowledgedRevision);

    // SIGKILL the active one: no resignation, its lease has to expire.
    const killedAtMs = Date.now();
    active.child.kill("SIGKILL");
    await active.child.exited;
    const took = await waitUntil(
      async () => {
        const h = await standby.health();
        return h.role === "active" ? h : undefined;
      },
      TAKEOVER_MS_MAX,
      `${standby.name} to report active after ${active.name} was SIGKILLed`,
      undefined,
      HEALTH_POLL_MS,
    );
    const takeoverMs = Date.now() - killedAtMs;
    console.log(`orchestrator etcd takeover: lease TTL ${LEASE_TTL_S_DEFAULT} s, standby active ${takeoverMs} ms after SIGKILL (store revision ${took.storeRevision}, acknowledged ${acknowledgedRevision})`);
    expect(takeoverMs).toBeLessThan(TAKEOVER_MS_MAX);
    expect(took.storeRevision).toBeGreaterThanOrEqual(acknowledgedRevision);

    // The new active one: same token (from etcd), no token of its own, nothing acknowledged lost.
    const next = admin(standby);
    expect(standby.child.lines.some((l) => l.startsWith("admin token"))).toBe(false);
    expect(existsSync(join(standby.dir, "admin-token"))).toBe(false);
    expect((await next.listAppliances()).map((a) => a.id)).toEqual(["a1", "a2"]);
    expect((await next.listGroups()).map((g) => g.name)).toEqual([GROUP]);
    await next.addAppliance(appliance("a3"));
    expect((await next.listAppliances()).map((a) => a.id)).toEqual(["a1", "a2", "a3"]);
    const audit = (await next.audit({ limit: 1000 })).reverse();
    const byAdmin = audit.filter((r) => r.actor === "admin").map((r) => `${r.command} ${r.result} ${(r.args as { id?: string; name?: string }).id ?? (r.args as { name?: string }).name}`);
    expect(byAdmin).toEqual(["appliance.add ok a1", "appliance.add ok a2", `sg.create ok ${GROUP}`, "appliance.add ok a3"]);
    expect(audit.filter((r) => r.command === "token.create" && r.actor === "system")).toHaveLength(1); // the admin token, once

    // The killed one, restarted on its data directory, stands by.
    const back = await startOrchestrator(`${active.name} (restarted)`, active.dir);
    await waitUntil(async () => ((await candidateCount()) === 2 ? true : undefined), START_MS_MAX, "the restarted orchestrator campaigning");
    expect((await back.health()).role).toBe("standby");
    expect((await standby.health()).role).toBe("active");
    expect((await errorOf(admin(back).addAppliance(appliance("s2")))).code).toBe(ErrorCode.NOT_LEADER);
    expect(back.child.lines.filter((l) => l.startsWith("tandem orchestrator active") || l.startsWith("admin token"))).toEqual([]);
    expect(readFileSync(join(active.dir, "admin-token"), "utf8").trim()).toBe(adminToken);
  });
});
