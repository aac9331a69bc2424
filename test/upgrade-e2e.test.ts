// Rolling upgrade end to end (issue 7): a 3-member group, each member in its own network
// namespace, is upgraded to another installed release while a download and iperf3 streams run
// through it. The orchestrator takes one member at a time through drain, restart on the new
// release (the member switches its CURRENT link and exits 75; `tandem up`'s supervisor starts
// it again through the link), rejoin and verification; no connection may be lost.
//
// The "new release" is this build copied with another version in its package.json: what is
// under test is the upgrade machinery (one member at a time, versions reported and recorded,
// mixed versions only during the upgrade, HyperSync across the restart), which does not depend
// on the code differing. A second test asks for a release that is not installed: the upgrade
// pauses with the member's reason, and a rollback returns the group to where it was.
//
// Needs root (network namespaces), iperf3 and curl; skipped otherwise. Takes the lab lock.

import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { ChildProcess } from "node:child_process";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GROUP_DEFAULT, LocalCluster, SOFTWARE_VERSION, waitUntil } from "../src/runtime/local-cluster.js";
import { softwareRoot } from "../src/version.js";
import { acquireLabLock } from "./fixtures/lab-lock.js";
import { collect, sha256File, writeRandomFile } from "./fixtures/processes.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("upgrade e2e SKIPPED: needs root for network namespaces (CI runs as root)");

const SERVER = "198.19.2.10";
const HTTP_PORT = 8080;
const FILE_BYTES = 28 * 1024 * 1024;
const NEXT = `${SOFTWARE_VERSION}-next`;




/** This build, installed again as release NEXT: dist/src copied, node_modules shared. */
function installNextRelease(dir: string): string {
  const root = softwareRoot();
  const rel = join(dir, `release-${NEXT}`);
  mkdirSync(rel, { recursive: true });
  cpSync(join(root, "dist", "src"), join(rel, "dist", "src"), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(rel, "node_modules"));
  writeFileSync(join(rel, "package.json"), JSON.stringify({ name: "tandem", version: NEXT, type: "module" }));
  return rel;
}

describe.skipIf(!isRoot)("rolling upgrade (lab, 3 members in their own namespaces)", () => {
  let release: (() => void) | null = null;
  let dir = "";
  let cluster: LocalCluster;
  let lab: typeof import("../src/lab/lab.js");
  const servers: ChildProcess[] = [];
  let fileSha = "";
  const figures: Record<string, unknown> = {};

  beforeAll(async () => {
    release = await acquireLabLock();
    lab = await import("../src/lab/lab.js");
    dir = mkdtempSync(join(tmpdir(), "tandem-upgrade-e2e-"));
    const file = join(dir, "big.bin");
    fileSha = writeRandomFile(file, FILE_BYTES);
    cluster = new LocalCluster({
      dataDir: join(dir, "data"),
      members: 3,
      lab: true,
      memberNamespaces: 3,
      listen: { host: "198.18.0.1", port: 0 },
      traffic: false,
      heartbeatIntervalMs: 50,
      downAfterMs: 400,
      releases: { [NEXT]: installNextRelease(dir) },
      logger: pino({ level: "warn" }, pino.destination(2)),
    });
    await cluster.start();
    const serve = `const fs=require("fs"),http=require("http");const f=${JSON.stringify(file)};const n=fs.statSync(f).size;
      http.createServer((q,s)=>{s.writeHead(200,{"content-length":n});fs.createReadStream(f).pipe(s)}).listen(${HTTP_PORT},"0.0.0.0");`;
    servers.push(lab.spawnIn("tdm-server", process.execPath, ["-e", serve], { stdio: "ignore" }));
    servers.push(lab.spawnIn("tdm-server", "iperf3", ["-s", "-B", SERVER], { stdio: "ignore" }));
    await waitUntil(async () => (await lab.execIn("tdm-client", "curl", ["-s", "-o", "/dev/null", "-r", "0-0", "--max-time", "2", `http://${SERVER}:${HTTP_PORT}/`])).code === 0, 30_000, "web server through the cluster");
  }, 120_000);

  afterAll(async () => {
    console.log(`upgrade e2e figures: ${JSON.stringify(figures)}`);
    for (const s of servers) s.kill("SIGKILL");
    await cluster?.stop();
    if (dir !== "" && process.env.TANDEM_E2E_KEEP === undefined) rmSync(dir, { recursive: true, force: true });
    else if (dir !== "") console.log(`upgrade e2e: kept ${dir}`);
    release?.();
  }, 60_000);

  async function eventsText(): Promise<string> {
    return (await cluster.adminClient().events({ limit: 40 })).map((e) => `${e.kind}: ${e.message}`).join("\n");
  }

  it("upgrades 3 members one at a time under traffic, losing no connection", async () => {
    const client = cluster.adminClient();
    const out = join(dir, "download.bin");
    // Rate-limited so both transfers span the whole upgrade (checked below).
    const curl = collect(lab.spawnIn("tdm-client", "curl", ["-sS", "--fail", "--limit-rate", "800K", "-o", out, `http://${SERVER}:${HTTP_PORT}/big`], { stdio: ["ignore", "pipe", "pipe"] }));
    const iperf = collect(lab.spawnIn("tdm-client", "iperf3", ["-c", SERVER, "-P", "4", "-b", "20M", "-t", "35", "-J"], { stdio: ["ignore", "pipe", "pipe"] }));
    // Both connections established before the upgrade starts.
    await waitUntil(async () => (await cluster.daemon!.findConnections({ group: GROUP_DEFAULT, dst: SERVER, protocol: "tcp" })).filter((c) => c.state === "ESTABLISHED").length >= 6, 15_000, "download and iperf3 connections");

    const startedAt = performance.now();
    expect(await client.startUpgrade(GROUP_DEFAULT, NEXT)).toEqual({ group: GROUP_DEFAULT, fromVersion: SOFTWARE_VERSION, targetVersion: NEXT });
    // One member at a time: never more than one out of the table while the upgrade runs.
    let maxOut = 0;
    let steps = "";
    try {
      await waitUntil(
        async () => {
          const s = await client.upgradeStatus(GROUP_DEFAULT);
          const members = await client.listMembers(GROUP_DEFAULT);
          maxOut = Math.max(maxOut, members.filter((m) => m.state !== "UP").length);
          if (s.upgrade?.paused === true) throw new Error(`upgrade paused: ${s.upgrade.reason}`);
          if (s.upgrade?.current) steps = `${s.upgrade.current.appliance}:${s.upgrade.current.step}`;
          return s.upgrade === null;
        },
        90_000,
        `the upgrade to ${NEXT} (last step ${steps})`,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}\nevents:\n${await eventsText()}`);
    }
    const upgradeMs = performance.now() - startedAt;
    figures.upgradeSeconds = Math.round(upgradeMs / 100) / 10;
    figures.maxMembersOutOfService = maxOut;

    const status = await client.upgradeStatus(GROUP_DEFAULT);
    expect(status.members.map((m) => [m.appliance, m.state, m.version, m.reportedVersion])).toEqual(
      ["local-1", "local-2", "local-3"].map((id) => [id, "UP", NEXT, NEXT]),
    );
    for (const id of ["local-1", "local-2", "local-3"]) expect(cluster.members.get(id)!.restarts, id).toBe(1);
    expect(maxOut).toBeLessThanOrEqual(1);
    const events = await client.events({ limit: 200 });
    expect(events.filter((e) => e.kind === "upgrade.member-done").map((e) => e.message.split(" ")[3])).toEqual(["local-1", "local-2", "local-3"]);
    expect(events.some((e) => e.kind === "upgrade.finished")).toBe(true);

    const [c, i] = await Promise.all([curl, iperf]);
    // The transfers outlived the upgrade: they really crossed every member's drain and rejoin.
    expect(c.endedAtMs).toBeGreaterThan(startedAt + upgradeMs);
    expect(i.endedAtMs).toBeGreaterThan(startedAt + upgradeMs);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    expect(await sha256File(out)).toBe(fileSha);
    expect(i.code, i.stderr + i.stdout.slice(0, 2000)).toBe(0);
    const report = JSON.parse(i.stdout) as { end: { streams: { receiver: { bytes: number } }[]; sum_received: { bits_per_second: number } }; error?: string };
    expect(report.error).toBeUndefined();
    expect(report.end.streams).toHaveLength(4);
    for (const s of report.end.streams) expect(s.receiver.bytes).toBeGreaterThan(0);
    figures.iperfMbps = Math.round(report.end.sum_received.bits_per_second / 1e6);
    rmSync(out);
  }, 150_000);

  it("pauses when the release is missing, and a rollback returns the group to where it was", async () => {
    const client = cluster.adminClient();
    await client.startUpgrade(GROUP_DEFAULT, "9.9.9");
    let reason = "";
    await waitUntil(
      async () => {
        const s = await client.upgradeStatus(GROUP_DEFAULT);
        reason = s.upgrade?.reason ?? "";
        return s.upgrade?.paused === true;
      },
      60_000,
      "the upgrade to pause",
    );
    expect(reason).toMatch(/local-1 cannot restart on 9\.9\.9: no release 9\.9\.9 installed/);
    // The member is out of the table (drained) and still on NEXT; a rollback brings it back.
    await client.upgradeControl(GROUP_DEFAULT, "rollback");
    await waitUntil(async () => (await client.upgradeStatus(GROUP_DEFAULT)).upgrade === null, 60_000, "the rollback");
    const members = await client.listMembers(GROUP_DEFAULT);
    expect(members.map((m) => m.state)).toEqual(["UP", "UP", "UP"]);
    const status = await client.upgradeStatus(GROUP_DEFAULT);
    expect(new Set(status.members.map((m) => m.version))).toEqual(new Set([NEXT]));
    const kinds = (await client.events({ limit: 50 })).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["upgrade.paused", "upgrade.rollback", "upgrade.rolled-back"]));
  }, 150_000);
});
