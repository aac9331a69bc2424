// End to end, with real processes: the compiled `tandem orchestrator` on SQLite, driven by the
// compiled CLI as child processes, with fake members (in this process, through the API
// client) that heartbeat and confirm their fills so transitions complete.
//
// Scenario (issue 4, "done when"): register four appliances (three of model A, one of B),
// create a security group, assign the three, show and apply; the model-B appliance is refused
// (TANDEM_MODEL_MISMATCH, exit 2); a call without a token is refused (401,
// TANDEM_UNAUTHENTICATED) and a monitor token cannot mutate (403, TANDEM_FORBIDDEN). Then, KILLS
// times: stage a join, start `tandem changes apply` with another command in flight, SIGKILL the
// orchestrator at a seeded random moment (before the answer, or during the transition it
// started), restart it on the same data directory. Finally: every command the CLI saw
// acknowledged is there, and nothing is half-applied: replaying the audit log's accepted
// commands from an empty model gives exactly the model the orchestrator holds.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { TandemClient } from "../src/api/client.js";
import { documentsOf, emptyModel, runCommand, type ControlModel } from "../src/orchestrator/index.js";
import { TandemError } from "../src/stdx/errors.js";
import { Prng } from "../src/stdx/prng.js";
import type { AuditRecord } from "../src/store/store.js";
import { ChildLines, compiledFixture, waitUntil } from "./fixtures/child-lines.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SEED = 20251129;
const KILLS = 4;
const GROUP = "web";
const BUCKETS = 1024;
const DEADLINE_MS = 15_000;
/** Members heartbeat every this long; the orchestrator calls them DOWN after DOWN_AFTER_MS (generous: a busy test machine must not flap them). */
const BEAT_MS = 100;
const DOWN_AFTER_MS = 3000;

const dirs: string[] = [];
const children: ChildLines[] = [];
afterAll(() => {
  for (const c of children) c.kill("SIGKILL");
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function cliPath(): string {
  return compiledFixture(ROOT, "dist/src/cli/main.js", ["src/cli/main.ts", "src/cli/orchestrator.ts", "src/runtime/orchestrator-daemon.ts", "src/api/server.ts", "src/api/client.ts"]);
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking this process (the fake members keep beating meanwhile). */
function tandem(args: string[], env: Record<string, string | undefined> = {}): { done: Promise<Run>; stdout: () => string } {
  const child = spawn(process.execPath, [cliPath(), ...args], { env: { ...process.env, TANDEM_SERVER: undefined, TANDEM_TOKEN: undefined, TANDEM_DATA_DIR: undefined, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<Run>((resolve) => child.on("close", (status) => resolve({ status, stdout, stderr })));
  return { done, stdout: () => stdout };
}

class Orchestrator {
  url = "";
  constructor(readonly child: ChildLines) {}

  static async start(dir: string): Promise<Orchestrator> {
    const child = new ChildLines(process.execPath, [cliPath(), "orchestrator", "--data-dir", dir, "--listen", "127.0.0.1:0", "--down-after-ms", String(DOWN_AFTER_MS), "--log-level", "warn"]);
    children.push(child);
    const o = new Orchestrator(child);
    const first = await child.waitForLine(/./, DEADLINE_MS, "the orchestrator's first line");
    const match = /^tandem orchestrator listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
    expect(match, `first stdout line: ${first}`).not.toBeNull();
    o.url = match![1]!;
    await child.waitForLine(/^tandem orchestrator active/, DEADLINE_MS, "the orchestrator to become active");
    return o;
  }
}

/** Appliances that heartbeat and confirm every fill they are expected to receive. */
class FakeMembers {
  client: TandemClient | null = null;
  errors = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly fillsReported = new Map<string, string>();

  constructor(
    readonly ids: string[],
    private readonly token: string,
  ) {}

  point(url: string): void {
    this.client = new TandemClient({ server: url, token: this.token, timeoutMs: 2000 });
  }

  start(): void {
    let busy = false;
    this.timer = setInterval(() => {
      if (busy || this.client === null) return;
      busy = true;
      void this.beat(this.client).finally(() => (busy = false));
    }, BEAT_MS);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
  }

  private async beat(client: TandemClient): Promise<void> {
    for (const id of [...this.ids]) {
      try {
        const answer = await client.heartbeat(id, { cpuPct: 10, packetsPerSec: 100, connections: 5, counters: { packets: 1000, syncLagMs: 1 } });
        if (answer.group !== null && answer.transition !== null) {
          const dist = await client.distribution(answer.group);
          const buckets = (dist?.fills ?? []).filter((f) => f.to.includes(id)).map((f) => f.bucket);
          const key = `${client.server} ${dist?.epoch} ${answer.transition.seq}`;
          if (dist !== null && buckets.length > 0 && this.fillsReported.get(id) !== key) {
            await client.reportFills(id, { epoch: dist.epoch, buckets });
            this.fillsReported.set(id, key);
          }
        }
        if (answer.verify !== null) await client.reportVerify(id, { id: answer.verify.id, bucketsChecked: BUCKETS / 4, mismatched: [] });
      } catch (error) {
        // The orchestrator is being killed and restarted: members retry at the next beat.
        if (!(error instanceof TandemError)) throw error;
        this.errors++;
      }
    }
  }
}

/** Every audit record, oldest first. */
async function allAudit(client: TandemClient): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let before: number | undefined;
  for (;;) {
    const page = await client.audit({ limit: 1000, beforeSeq: before });
    out.push(...page);
    if (page.length < 1000) break;
    before = page[page.length - 1]!.seq;
  }
  return out.reverse();
}

/** The model the accepted commands of the audit log build, from nothing. */
function replayAudit(records: readonly AuditRecord[]): ControlModel {
  let model = emptyModel();
  const env = {
    nextSeed(): number {
      throw new Error("every group of this test is created with an explicit seed");
    },
  };
  for (const r of records) {
    // token.* and cluster.* are the daemon's own records (secrets, the HyperSync key), not model commands.
    if (r.result !== "ok" || r.command.startsWith("token.") || r.command.startsWith("cluster.")) continue;
    const outcome = runCommand(model, r.command, r.args, { actor: r.actor, nowMs: 0, nowIso: r.at }, env);
    expect(outcome.ok, `replaying audit #${r.seq} ${r.command}: ${outcome.error?.message}`).toBe(true);
    model = outcome.model;
  }
  return model;
}

describe("tandem orchestrator, end to end (CLI against a real orchestrator on SQLite)", () => {
  it(`registers, groups, applies, refuses, survives SIGKILL mid-apply with nothing acknowledged lost (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-e2e-"));
    dirs.push(dir);
    let orchestrator = await Orchestrator.start(dir);

    // The admin token: printed once, and in DIR/admin-token with mode 0600.
    const tokenFile = join(dir, "admin-token");
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const adminToken = readFileSync(tokenFile, "utf8").trim();
    expect(orchestrator.child.lines.some((l) => l.includes(adminToken))).toBe(true);
    const env = () => ({ TANDEM_SERVER: orchestrator.url, TANDEM_DATA_DIR: dir });
    const ok = async (args: string[]): Promise<Run> => {
      const r = await tandem(args, env()).done;
      expect(r.status, `tandem ${args.join(" ")}: ${r.stderr}`).toBe(0);
      return r;
    };
    const add = (id: string, model: string) => ["appliance", "add", id, "--model", model, "--cores", "8", "--memory-mb", "16384", "--sw-version", "1.0.0", "--address", `${id}.lab:7471`];

    // Four appliances: three of model A, one of model B.
    await Promise.all([ok(add("a1", "A")), ok(add("a2", "A")), ok(add("a3", "A")), ok(add("b1", "B"))]);
    const admin = () => new TandemClient({ server: orchestrator.url, token: adminToken });
    expect((await admin().listAppliances()).map((a) => `${a.id}:${a.model}:${a.state}`)).toEqual(["a1:A:UNASSIGNED", "a2:A:UNASSIGNED", "a3:A:UNASSIGNED", "b1:B:UNASSIGNED"]);
    await ok(["sg", "create", GROUP, "--bucket-count", String(BUCKETS), "--seed", "7", "--interface", "name=lan,vni=100,site=10.0.0.2,gateway=198.18.0.1/24"]);

    const members = new FakeMembers(["a1", "a2", "a3"], adminToken);
    members.point(orchestrator.url);
    members.start();
    try {
      // Assign three, show, apply.
      await ok(["sg", "assign", GROUP, "a1", "a2", "a3"]);
      const shown = JSON.parse((await ok(["changes", "show", GROUP, "--json"])).stdout) as { changes: unknown[]; pending: { members: unknown[] } };
      expect(shown.changes).toHaveLength(3);
      expect(shown.pending.members).toHaveLength(3);
      expect((await ok(["changes", "apply", GROUP])).stdout).toMatch(/^applied 3 changes to web: epoch 1 routes/m);

      // Auto-scaling rules: set some, keep the rest; a low mark above the high one is refused.
      const rules = JSON.parse((await ok(["sg", "autoscale", "set", GROUP, "--enable", "--max", "6", "--cpu-high", "80", "--json"])).stdout) as Record<string, unknown>;
      expect(rules).toMatchObject({ enabled: true, maxMembers: 6, cpuHighPct: 80, cpuLowPct: 30 });
      expect((JSON.parse((await ok(["sg", "autoscale", "show", GROUP, "--json"])).stdout) as { rules: unknown }).rules).toEqual(rules);
      const badRules = await tandem(["sg", "autoscale", "set", GROUP, "--cpu-low", "90"], env()).done;
      expect(badRules.status).toBe(2);
      expect(badRules.stderr).toMatch(/hysteresis.*TANDEM_INVALID_ARGUMENT/);
      await ok(["sg", "autoscale", "set", GROUP, "--disable"]);

      // Independent refusals, side by side: a mismatched model (exit status of its code), no token
      // (401 for the CLI and on the wire), and a monitor token that reads but cannot mutate (403).
      const [mismatch, anonymous, createdRun] = await Promise.all([
        tandem(["sg", "assign", GROUP, "b1"], env()).done,
        tandem(["appliance", "list", "--server", orchestrator.url]).done,
        ok(["token", "create", "watcher", "--role", "monitor", "--json"]),
      ]);
      expect(mismatch.status).toBe(2);
      expect(mismatch.stderr).toMatch(/TANDEM_MODEL_MISMATCH/);
      expect(anonymous.status).toBe(2);
      expect(anonymous.stderr).toMatch(/TANDEM_UNAUTHENTICATED/);
      const raw = await fetch(`${orchestrator.url}/api/appliances`);
      expect(raw.status).toBe(401);
      expect(await raw.json()).toMatchObject({ code: "TANDEM_UNAUTHENTICATED" });
      const monitorToken = (JSON.parse(createdRun.stdout) as { token: string }).token;
      expect((await fetch(`${orchestrator.url}/api/groups`, { headers: { authorization: `Bearer ${monitorToken}` } })).status).toBe(200);
      const forbidden = await tandem([...add("m1", "A"), "--token", monitorToken], { TANDEM_SERVER: orchestrator.url }).done;
      expect(forbidden.status).toBe(2);
      expect(forbidden.stderr).toMatch(/TANDEM_FORBIDDEN/);

      // A join with fills: the apply follows the transition (progress lines) to its end; verify agrees.
      await admin().addAppliance({ id: "a4", model: "A", cores: 8, memoryMb: 16384, version: "1.0.0", address: "a4.lab:7471" });
      members.ids.push("a4");
      await admin().assign(GROUP, "a4");
      // Kills "around the answer" are timed from how long an apply takes to be acknowledged here,
      // so they straddle the acknowledgement on a fast machine and on a loaded one alike.
      const apply4 = tandem(["changes", "apply", GROUP], env());
      const apply4StartMs = Date.now();
      await waitUntil(() => (/^applied /m.test(apply4.stdout()) ? true : undefined), DEADLINE_MS, "the apply's acknowledgement");
      let ackMs = Date.now() - apply4StartMs;
      const join4 = await apply4.done;
      expect(join4.status, join4.stderr).toBe(0);
      expect(join4.stdout).toMatch(/^applied 1 change to web: join #1 started from epoch 1$/m);
      expect(join4.stdout).toMatch(/^progress \d+% join #1/m);
      expect(join4.stdout).toMatch(/^done: join #1 completed, epoch 2 routes$/m);
      const [verified, monitor] = await Promise.all([ok(["verify", GROUP]), ok(["monitor", "--once"])]);
      expect(verified.stdout).toMatch(/web\s+\d+\s+2\s+4\/4\s+1024\s+0/);
      for (const id of ["a1", "a2", "a3", "a4"]) expect(monitor.stdout).toMatch(new RegExp(`web\\s+${id}\\s+UP\\s`));

      // SIGKILL in the middle of applies; restart on the same directory each time.
      const prng = new Prng(SEED);
      const acked = { appliances: ["a1", "a2", "a3", "a4", "b1"], assigned: ["a1", "a2", "a3", "a4"], applySeqs: [1] };
      for (let i = 0; i < KILLS; i++) {
        const id = `k${i}`;
        await admin().addAppliance({ id, model: "A", cores: 8, memoryMb: 16384, version: "1.0.0", address: `${id}.lab:7471` });
        acked.appliances.push(id);
        members.ids.push(id);
        await admin().assign(GROUP, id);
        acked.assigned.push(id);
        const apply = tandem(["changes", "apply", GROUP], env());
        const applyStartMs = Date.now();
        const sideline = tandem(add(`p${i}`, "A"), env());
        const afterAck = prng.nextU32() % 2 === 0;
        if (afterAck) {
          // During the transition the apply started.
          await waitUntil(() => (/^applied /m.test(apply.stdout()) ? true : undefined), DEADLINE_MS, "the apply's acknowledgement");
          ackMs = Date.now() - applyStartMs;
          await new Promise((resolve) => setTimeout(resolve, prng.nextU32() % 60));
        } else {
          // Anywhere from before the request to just after the answer: 0.5 to 1.5 times the last acknowledgement's delay.
          await new Promise((resolve) => setTimeout(resolve, ackMs * (0.5 + (prng.nextU32() % 1000) / 1000)));
        }
        orchestrator.child.kill("SIGKILL");
        await orchestrator.child.exited;
        const [applied, side] = await Promise.all([apply.done, sideline.done]);
        const ack = /^applied \d+ changes? to web: \w+ #(\d+) started/m.exec(applied.stdout);
        if (ack !== null) acked.applySeqs.push(Number(ack[1]));
        if (side.status === 0) acked.appliances.push(`p${i}`);
        console.log(`kill ${i} (acknowledgements take ${ackMs} ms): ${afterAck ? "after" : "around"} the apply's answer; apply ${ack === null ? "not acknowledged" : `acknowledged (transition #${ack[1]})`}; side add ${side.status === 0 ? "acknowledged" : "not acknowledged"}`);

        orchestrator = await Orchestrator.start(dir);
        members.point(orchestrator.url);
        const client = admin();
        // The restarted orchestrator finishes a transition the kill interrupted (members report their fills again).
        await waitUntil(async () => ((await client.getGroup(GROUP)).transition === null ? true : undefined), DEADLINE_MS, "the interrupted transition to finish");
      }
      const client = admin();
      if ((await client.changes(GROUP)).changes.length > 0) await ok(["changes", "apply", GROUP]);

      // Nothing acknowledged was lost.
      const appliances = (await client.listAppliances()).map((a) => a.id);
      for (const id of acked.appliances) expect(appliances, `acknowledged appliance ${id}`).toContain(id);
      const inGroup = await client.listMembers(GROUP);
      for (const id of acked.assigned) expect(inGroup.map((m) => m.appliance), `acknowledged assign of ${id}`).toContain(id);
      const events = await client.events({ limit: 1000 });
      for (const seq of acked.applySeqs) {
        expect(events.some((e) => e.kind === "transition.started" && e.group === GROUP && (e.data as { seq?: number }).seq === seq), `acknowledged apply (transition #${seq})`).toBe(true);
      }
      await waitUntil(async () => ((await client.listMembers(GROUP)).every((m) => m.state === "UP") ? true : undefined), DEADLINE_MS, "every member UP");

      // Nothing half-applied: the audit log's accepted commands rebuild exactly the model held.
      const exported = await client.exportModel();
      const replayed = documentsOf(replayAudit(await allAudit(client)));
      expect(replayed).toEqual(exported.documents);
      expect(members.errors).toBeGreaterThan(0); // the members did see the orchestrator die
    } finally {
      members.stop();
      orchestrator.child.kill("SIGTERM");
      await orchestrator.child.exited;
    }
  });
});
