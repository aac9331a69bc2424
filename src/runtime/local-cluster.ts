// `tandem up`: a whole cluster on this machine. The orchestrator (store, control plane, REST
// API and the distributor in its worker thread) runs in this process; N member processes run
// as children (`tandem member`, each with its own member token); a default security group with
// a permissive policy spreads traffic over them. It is never idle:
//   - without the lab, the built-in generator emulates two sites over loopback and sends TCP,
//     UDP and ICMP through the group as VXLAN;
//   - with the lab (root), test hosts in network namespaces run real programs (an HTTP server
//     and a curl loop, ping) through the group.
// Restarting on the same data directory reuses the store: appliances and the group are kept,
// member tokens are made anew (their secrets are never stored).
//
// Invariants kept: everything started is stopped by stop(), in reverse order, also when start()
// fails half-way; a member process that exits unexpectedly is logged (the orchestrator fails it
// over) and not restarted behind the operator's back.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, type WriteStream } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { TandemClient } from "../api/client.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { formatEndpoint, type Endpoint } from "./member-link.js";
import { cliEntryOf, pointLink, releaseName, RESTART_EXIT_CODE } from "./releases.js";
import { softwareVersion } from "../version.js";
import { ADMIN_TOKEN_FILE, OrchestratorDaemon, type DistributorPort } from "./orchestrator-daemon.js";

export const GROUP_DEFAULT = "default";
export const APPLIANCE_PREFIX = "local-";
/** The lab's underlay address of the root namespace (the bridge): the distributor listens here. */
export const LAB_DISTRIBUTOR_ADDRESS = "198.18.0.1";

export interface LocalClusterOptions {
  dataDir: string;
  members: number;
  lab: boolean;
  /** Where the API listens (port 0: OS-chosen). */
  listen: { host: string; port: number };
  logger: Logger;
  /** Path of the tandem CLI entry (default: this package's dist/src/cli/main.js). */
  cliPath?: string;
  /** Heartbeat period and failure detection (defaults 40 ms / 200 ms). */
  heartbeatIntervalMs?: number;
  downAfterMs?: number;
  /** Start traffic (generator or lab programs); default true. */
  traffic?: boolean;
  /**
   * With the lab: run member i in its own network namespace tdm-m<i> (its own host, as far as
   * it can tell), so member links and HyperSync cross a network. The value is how many member
   * namespaces to make (>= members, to leave room for scale-out); 0: members on this host.
   */
  memberNamespaces?: number;
  /**
   * More installed releases members may be upgraded to (version -> root of the build, the
   * directory holding its package.json and dist/). This build is always one of them.
   */
  releases?: Record<string, string>;
}

export interface LocalMember {
  appliance: string;
  process: ChildProcess;
  log: string;
  /** Times its process was restarted on another release (rolling upgrades). */
  restarts: number;
}

/** The version of this build: what local appliances are registered with and first run. */
export const SOFTWARE_VERSION = softwareVersion();
export const LOCAL_BUCKET_COUNT = 8192;

/** The permissive default policy: everything is accepted and tracked. */
export const PERMISSIVE_POLICY = { rules: [{ name: "allow-all", description: "tandem up: accept and track everything", action: "accept" }] };

export class LocalCluster {
  url = "";
  adminToken: string | null = null;
  daemon: OrchestratorDaemon | null = null;
  distributor: DistributorPort | null = null;
  readonly members = new Map<string, LocalMember>();
  private app: FastifyInstance | null = null;
  generator: { stop(): Promise<void>; stats(): Promise<unknown> } | null = null;
  private labPrograms: ChildProcess[] = [];
  private labUp = false;
  private stopping = false;
  private readonly logs: WriteStream[] = [];
  /** Member tokens made this run (secrets live only here), to restart or add members. */
  readonly memberTokens = new Map<string, string>();

  constructor(readonly options: LocalClusterOptions) {}

  get adminTokenFile(): string {
    return join(this.options.dataDir, ADMIN_TOKEN_FILE);
  }

  get cliPath(): string {
    if (this.options.cliPath !== undefined) return this.options.cliPath;
    // Compiled: beside this file's directory; from sources (vitest): the compiled CLI under dist/.
    const here = dirname(fileURLToPath(import.meta.url));
    return import.meta.url.endsWith(".ts") ? join(here, "..", "..", "dist", "src", "cli", "main.js") : join(here, "..", "cli", "main.js");
  }

  async start(): Promise<void> {
    const o = this.options;
    if (!Number.isInteger(o.members) || o.members < 1 || o.members > 64) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--members must be 1..64, got ${o.members}`);
    }
    mkdirSync(join(o.dataDir, "logs"), { recursive: true, mode: 0o700 });
    try {
      await this.startOrchestrator();
      const sites = await this.startSites();
      const client = this.adminClient();
      await this.ensureGroup(client, sites);
      this.prepareReleases();
      await this.startMembers(client);
      await this.applyAndWait(client);
      if (o.traffic !== false) await this.startTraffic();
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  adminClient(): TandemClient {
    if (this.adminToken === null) throw new TandemError(ErrorCode.INTERNAL, "no admin token");
    return new TandemClient({ server: this.url, token: this.adminToken });
  }

  private async startOrchestrator(): Promise<void> {
    const o = this.options;
    if (o.lab) {
      const lab = await import("../lab/lab.js");
      lab.requireRoot();
      // The bridge must exist before the distributor can bind its address.
      await lab.labUp({ distributor: { address: LAB_DISTRIBUTOR_ADDRESS, port: 4789 }, memberNamespaces: o.memberNamespaces ?? 0 });
      this.labUp = true;
    }
    const { startDistributor } = await import("./distributor.js");
    const host = o.lab ? LAB_DISTRIBUTOR_ADDRESS : "127.0.0.1";
    this.distributor = await startDistributor({ vxlanListen: { address: host, port: o.lab ? 4789 : 0 }, memberLinkListen: { address: host, port: 0 } });
    this.daemon = await OrchestratorDaemon.open({
      dataDir: o.dataDir,
      store: { kind: "sqlite", dataDir: o.dataDir },
      controlPlane: { health: { heartbeatIntervalMs: o.heartbeatIntervalMs ?? 40, downAfterMs: o.downAfterMs ?? 200 } },
      logger: o.logger,
      distributor: this.distributor ?? undefined,
    });
    const { buildApi } = await import("../api/server.js");
    this.app = await buildApi(this.daemon, { logger: o.logger });
    this.url = await this.app.listen({ host: o.listen.host, port: o.listen.port });
    const { adminToken } = await this.daemon.start();
    if (adminToken !== null) this.adminToken = adminToken;
    else {
      const { readFileSync } = await import("node:fs");
      try {
        this.adminToken = readFileSync(this.adminTokenFile, "utf8").trim();
      } catch {
        throw new TandemError(ErrorCode.INVALID_STATE, `the store in ${o.dataDir} has an admin token but ${this.adminTokenFile} is gone; start with a new --data-dir or run tandem orchestrator --new-admin-token`);
      }
    }
  }

  /** The two sites' tunnel endpoints: the lab's hosts, or the generator's loopback sockets. */
  private async startSites(): Promise<{ inside: Endpoint; outside: Endpoint; gateways: [string, string] }> {
    if (this.options.lab) {
      return { inside: { address: "198.18.0.11", port: 4789 }, outside: { address: "198.18.0.12", port: 4789 }, gateways: ["198.19.1.1/24", "198.19.2.1/24"] };
    }
    const { startTrafficGeneratorThread } = await import("./traffic-worker.js");
    const d = this.distributor!;
    const generator = await startTrafficGeneratorThread({
      ...(this.options.traffic === false ? { flowsPerSecond: 0 } : {}),
      distributor: d.vxlan,
      sites: { client: { vni: 101, gateway: "198.19.1.1/24" }, server: { vni: 102, gateway: "198.19.2.1/24" } },
    });
    this.generator = generator;
    return { inside: generator.sites.client, outside: generator.sites.server, gateways: ["198.19.1.1/24", "198.19.2.1/24"] };
  }

  private async ensureGroup(client: TandemClient, sites: { inside: Endpoint; outside: Endpoint; gateways: [string, string] }): Promise<void> {
    const o = this.options;
    const existing = new Set((await client.listAppliances()).map((a) => a.id));
    const memoryMb = Math.floor(totalmem() / (1024 * 1024) / o.members);
    const cores = Math.max(1, Math.floor(cpus().length / o.members)) || 1;
    for (let i = 1; i <= o.members; i++) {
      const id = `${APPLIANCE_PREFIX}${i}`;
      if (!existing.has(id)) await client.addAppliance({ id, model: "local", cores, memoryMb, version: SOFTWARE_VERSION, address: o.lab ? LAB_DISTRIBUTOR_ADDRESS : "127.0.0.1" });
    }
    const interfaces = [
      { name: "inside", vni: 101, siteEndpoint: sites.inside.address, sitePort: sites.inside.port, gateway: sites.gateways[0] },
      { name: "outside", vni: 102, siteEndpoint: sites.outside.address, sitePort: sites.outside.port, gateway: sites.gateways[1] },
    ];
    const groups = new Set((await client.listGroups()).map((g) => g.name));
    if (!groups.has(GROUP_DEFAULT)) {
      // 8,192 buckets: >= 1,024 per member up to 8 members (DESIGN: "at least 1024 per member"),
      // and 8x cheaper transitions than the 65,536 default on a machine that also runs the sites.
      await client.createGroup({ name: GROUP_DEFAULT, interfaces, policy: PERMISSIVE_POLICY, bucketCount: LOCAL_BUCKET_COUNT } as never);
    } else {
      await client.setInterfaces(GROUP_DEFAULT, interfaces); // the generator's ports change at every start
    }
    const members = new Set((await client.listMembers(GROUP_DEFAULT)).map((m) => m.appliance));
    for (let i = 1; i <= o.members; i++) {
      const id = `${APPLIANCE_PREFIX}${i}`;
      if (!members.has(id)) await client.assign(GROUP_DEFAULT, id);
    }
  }

  /** One member token per appliance (made anew: secrets are not stored), then the processes. */
  private async startMembers(client: TandemClient): Promise<void> {
    const tokens = new Set((await client.listTokens()).map((t) => t.name));
    for (let i = 1; i <= this.options.members; i++) {
      const id = `${APPLIANCE_PREFIX}${i}`;
      if (tokens.has(id)) await client.revokeToken(id);
      const { token } = await client.createToken(id, "member");
      this.memberTokens.set(id, token);
      this.spawnMember(id, token);
    }
  }

  /** Registers appliance local-<i> (token, inventory) and starts its process; assign and apply are the caller's. */
  async addLocalAppliance(i: number): Promise<LocalMember> {
    const client = this.adminClient();
    const id = `${APPLIANCE_PREFIX}${i}`;
    const memoryMb = Math.floor(totalmem() / (1024 * 1024) / this.options.members);
    const cores = Math.max(1, Math.floor(cpus().length / this.options.members));
    if (!(await client.listAppliances()).some((a) => a.id === id)) {
      await client.addAppliance({ id, model: "local", cores, memoryMb, version: SOFTWARE_VERSION, address: this.options.lab ? LAB_DISTRIBUTOR_ADDRESS : "127.0.0.1" });
    }
    if ((await client.listTokens()).some((t) => t.name === id)) await client.revokeToken(id);
    const { token } = await client.createToken(id, "member");
    this.memberTokens.set(id, token);
    return this.spawnMember(id, token);
  }

  /** Starts a member process again (after a kill), with the token made at start. */
  restartMember(appliance: string): LocalMember {
    const token = this.memberTokens.get(appliance);
    if (token === undefined) throw new TandemError(ErrorCode.NOT_FOUND, `no member token for ${appliance} in this run`);
    return this.spawnMember(appliance, token);
  }

  get releasesDir(): string {
    return join(this.options.dataDir, "releases");
  }

  /** The symlink a local appliance's member is started through (its installed software). */
  currentLinkOf(appliance: string): string {
    return join(this.options.dataDir, "appliances", appliance, "current");
  }

  /**
   * Installs the releases as an appliance agent would (src/runtime/releases.ts): RELEASES/<v>
   * links to each build, this build's always (re-pointed at every start: the checkout may have
   * moved). Each appliance's CURRENT link is made on first use and then kept, so an appliance
   * upgraded in an earlier run starts on the release it was upgraded to.
   */
  private prepareReleases(): void {
    mkdirSync(this.releasesDir, { recursive: true, mode: 0o700 });
    // cliPath is ROOT/dist/src/cli/main.js.
    const ownRoot = dirname(dirname(dirname(dirname(this.cliPath))));
    pointLink(join(this.releasesDir, SOFTWARE_VERSION), ownRoot);
    for (const [version, root] of Object.entries(this.options.releases ?? {})) {
      releaseName(version);
      if (!existsSync(cliEntryOf(root))) throw new TandemError(ErrorCode.FILE_NOT_FOUND, `release ${version}: ${cliEntryOf(root)} does not exist`, { version, root });
      pointLink(join(this.releasesDir, version), root);
    }
  }

  /** Starts `tandem member` for an appliance (also used to add a member later). */
  spawnMember(appliance: string, token: string, extraArgs: string[] = []): LocalMember {
    const current = this.currentLinkOf(appliance);
    if (!existsSync(current)) {
      mkdirSync(dirname(current), { recursive: true, mode: 0o700 });
      pointLink(current, join(this.releasesDir, SOFTWARE_VERSION));
    }
    const index = Number(appliance.slice(APPLIANCE_PREFIX.length));
    const ownNamespace = this.options.lab && (this.options.memberNamespaces ?? 0) > 0;
    const wrap = ownNamespace ? { command: "ip", args: ["netns", "exec", `tdm-m${index}`] } : undefined;
    // With the lab, members on this host bind the lab's underlay address (the distributor's),
    // whatever address the API listens on: their sockets must reach the distributor and peers.
    if (this.options.lab && !ownNamespace && !extraArgs.includes("--listen")) extraArgs = [...extraArgs, "--listen", LAB_DISTRIBUTOR_ADDRESS];
    const log = join(this.options.dataDir, "logs", `${appliance}.log`);
    const out = createWriteStream(log, { flags: "a" });
    this.logs.push(out);
    // TANDEM_MEMBER_NODE_ARGS: extra node flags for member processes (e.g. --cpu-prof when profiling).
    const nodeArgs = (process.env.TANDEM_MEMBER_NODE_ARGS ?? "").split(" ").filter((a) => a.length > 0);
    const upgradeArgs = ["--releases", this.releasesDir, "--current", current];
    const args = [...nodeArgs, cliEntryOf(current), "member", "--orchestrator", this.url, "--appliance", appliance, ...upgradeArgs, ...extraArgs];
    const command = wrap === undefined ? process.execPath : wrap.command;
    const child = spawn(command, wrap === undefined ? args : [...wrap.args, process.execPath, ...args], {
      env: { ...process.env, TANDEM_TOKEN: token },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    const restarts = this.members.get(appliance)?.restarts ?? 0;
    const member: LocalMember = { appliance, process: child, log, restarts };
    this.members.set(appliance, member);
    child.on("exit", (code, signal) => {
      if (this.stopping) return;
      // This supervisor restarts a member only when it asked for it (a rolling upgrade switched
      // its CURRENT link); any other exit is the orchestrator's to handle (failover).
      if (code === RESTART_EXIT_CODE && this.members.get(appliance) === member) {
        this.options.logger.info({ appliance }, "member restarting on its new release");
        this.spawnMember(appliance, token, extraArgs).restarts = restarts + 1;
        return;
      }
      this.options.logger.warn({ appliance, code, signal }, "member process exited");
    });
    return member;
  }

  private async applyAndWait(client: TandemClient): Promise<void> {
    // Join only members that already heartbeat: a joiner silent at the start of its fill is DOWN.
    const ids = new Set([...this.members.keys()]);
    await waitUntil(async () => (await client.listAppliances()).filter((a) => ids.has(a.id) && a.alive).length === ids.size, 30_000, "member processes heartbeating");
    const changes = await client.changes(GROUP_DEFAULT);
    if ((changes as { changes: unknown[] }).changes.length > 0) await client.applyChanges(GROUP_DEFAULT);
    await waitUntil(async () => {
      const members = await client.listMembers(GROUP_DEFAULT);
      return members.length >= this.options.members && members.every((m) => m.state === "UP");
    }, 30_000, "members UP");
  }

  private async startTraffic(): Promise<void> {
    // The generator started with the sites: it ARPs until the group answers, then opens flows.
    if (!this.options.lab) return;
    const lab = await import("../lab/lab.js");
    const node = process.execPath;
    const server = `require("http").createServer((q,s)=>{const n=Math.min(1<<26,Number((q.url||"").slice(1))||65536);s.writeHead(200,{"content-length":n});s.end(Buffer.alloc(n,120))}).listen(8080,"0.0.0.0")`;
    this.labPrograms.push(lab.spawnIn("tdm-server", node, ["-e", server]));
    this.labPrograms.push(
      lab.spawnIn("tdm-client", "sh", ["-c", "while true; do curl -s -o /dev/null --max-time 5 http://198.19.2.10:8080/1048576; ping -c1 -W1 198.19.2.10 >/dev/null; sleep 0.5; done"]),
    );
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const p of this.labPrograms) p.kill("SIGTERM");
    if (this.generator !== null) await this.generator.stop().catch((e: unknown) => this.options.logger.warn({ err: e }, "generator stop"));
    await Promise.all(
      [...this.members.values()].map(
        (m) =>
          new Promise<void>((resolve) => {
            if (m.process.exitCode !== null || m.process.signalCode !== null) return resolve();
            m.process.once("exit", () => resolve());
            m.process.kill("SIGTERM");
            setTimeout(() => m.process.kill("SIGKILL"), 3000).unref();
          }),
      ),
    );
    if (this.app !== null) await this.app.close();
    if (this.daemon !== null) await this.daemon.close();
    if (this.distributor !== null) await this.distributor.close();
    for (const l of this.logs) l.end();
    if (this.labUp) {
      const lab = await import("../lab/lab.js");
      await lab.labDown();
    }
  }

  describe(): string {
    const d = this.distributor;
    return [
      `tandem up: ${this.options.members} members in security group "${GROUP_DEFAULT}"${this.options.lab ? " with the lab (198.19.1.10 -> 198.19.2.10)" : " with the built-in traffic generator"}`,
      `API        ${this.url}   (docs ${this.url}/api/docs)`,
      `web UI     ${this.url}/   (sign in with the admin token)`,
      `admin token ${this.adminTokenFile}`,
      d === null ? "" : `distributor VXLAN ${formatEndpoint(d.vxlan)}, member link ${formatEndpoint(d.memberLink)}`,
      `logs       ${join(this.options.dataDir, "logs")}`,
      `watch it:  tandem monitor --server ${this.url} --data-dir ${this.options.dataDir}`,
    ]
      .filter((l) => l.length > 0)
      .join("\n");
  }
}

/** Polls `check` until it holds (the control plane has no push channel to wait on). */
export async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new TandemError(ErrorCode.TIMEOUT, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
