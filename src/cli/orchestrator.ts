// `tandem orchestrator --data-dir DIR --listen HOST:PORT`: runs the orchestrator daemon with
// its REST API until SIGINT/SIGTERM.
//
// Output contract (tests and scripts rely on it): the FIRST stdout line is
//   tandem orchestrator listening on http://HOST:PORT
// (with the port the OS chose for port 0); at the first start the admin token follows, once;
// then "tandem orchestrator active ...". Logs are JSON lines on stderr.
// The daemon and fastify are imported when the command runs, so other commands start fast.

import type { Command } from "commander";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { intOption } from "./api-common.js";

export const LISTEN_DEFAULT = "127.0.0.1:7470";

interface OrchestratorFlags {
  dataDir: string;
  listen: string;
  store: string;
  etcd: string[];
  etcdPrefix?: string;
  logLevel: string;
  newAdminToken?: boolean;
  heartbeatIntervalMs?: string;
  downAfterMs?: string;
  fillTimeoutMs?: string;
  vxlanListen?: string;
  memberLinkListen?: string;
}

/** "127.0.0.1:7470", "[::1]:0", ":7470" (all interfaces). */
export function parseListen(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--listen must be HOST:PORT, got "${text}"`);
  let host = text.slice(0, colon);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host.length === 0) host = "0.0.0.0";
  const port = intOption(text.slice(colon + 1), "--listen port", 0, 65535)!;
  return { host, port };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerOrchestrator(program: Command): void {
  program
    .command("orchestrator")
    .description("run the orchestrator: control plane, store and REST API (first start: prints the admin token once)")
    .requiredOption("--data-dir <dir>", "state directory (tandem.db, admin-token)")
    .option("--listen <host:port>", "where the API listens (port 0: any free port)", LISTEN_DEFAULT)
    .option("--store <kind>", "sqlite (in the data directory) or etcd", "sqlite")
    .option("--etcd <url>", "etcd endpoint (repeatable) with --store etcd", collect, [])
    .option("--etcd-prefix <prefix>", "key prefix in etcd")
    .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
    .option("--new-admin-token", "replace the admin token (when DATA_DIR/admin-token was lost)")
    .option("--heartbeat-interval-ms <ms>", "expected member heartbeat period")
    .option("--down-after-ms <ms>", "a member silent this long is DOWN (the floor: a member whose heartbeats measure a slow link gets longer)")
    .option("--fill-timeout-ms <ms>", "a fill phase times out after this long without a confirmed fill (10 times this after its start at the latest)")
    .option("--vxlan-listen <a.b.c.d:port>", "run the distributor: where the sites' VXLAN arrives (port 0: any free port)")
    .option("--member-link-listen <a.b.c.d:port>", "with --vxlan-listen: where members send and receive frames (default: the VXLAN address, any port)")
    .action(async (flags: OrchestratorFlags) => {
      const { host, port } = parseListen(flags.listen);
      if (flags.store !== "sqlite" && flags.store !== "etcd") throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--store must be sqlite or etcd, got "${flags.store}"`);
      if (flags.store === "etcd" && flags.etcd.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--store etcd needs at least one --etcd URL");
      if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(flags.logLevel)) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--log-level must be fatal, error, warn, info or debug, got "${flags.logLevel}"`);
      }
      const health: Record<string, number> = {};
      const heartbeatIntervalMs = intOption(flags.heartbeatIntervalMs, "--heartbeat-interval-ms", 1, 600_000);
      const downAfterMs = intOption(flags.downAfterMs, "--down-after-ms", 2, 3_600_000);
      if (heartbeatIntervalMs !== undefined) health.heartbeatIntervalMs = heartbeatIntervalMs;
      if (downAfterMs !== undefined) health.downAfterMs = downAfterMs;
      const fillTimeoutMs = intOption(flags.fillTimeoutMs, "--fill-timeout-ms", 1, 86_400_000);

      const { pino } = await import("pino");
      const { OrchestratorDaemon, ADMIN_TOKEN_FILE } = await import("../runtime/orchestrator-daemon.js");
      const { buildApi } = await import("../api/server.js");
      const logger = pino({ level: flags.logLevel }, pino.destination(2));
      let distributor: Awaited<ReturnType<typeof import("../runtime/distributor.js").startDistributor>> | undefined;
      if (flags.vxlanListen !== undefined) {
        const { parseEndpoint } = await import("../runtime/member-link.js");
        const vxlan = parseEndpoint(flags.vxlanListen);
        if (vxlan === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--vxlan-listen must be a.b.c.d:port, got "${flags.vxlanListen}"`);
        const memberLink = flags.memberLinkListen === undefined ? { address: vxlan.address, port: 0 } : parseEndpoint(flags.memberLinkListen);
        if (memberLink === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--member-link-listen must be a.b.c.d:port, got "${flags.memberLinkListen}"`);
        const { startDistributor } = await import("../runtime/distributor.js");
        distributor = await startDistributor({ vxlanListen: vxlan, memberLinkListen: memberLink });
      }
      const daemon = await OrchestratorDaemon.open({
        dataDir: flags.dataDir,
        store: flags.store === "etcd" ? { kind: "etcd", endpoints: flags.etcd, ...(flags.etcdPrefix ? { prefix: flags.etcdPrefix } : {}) } : { kind: "sqlite", dataDir: flags.dataDir },
        controlPlane: { health, ...(fillTimeoutMs !== undefined ? { fillTimeoutMs } : {}) },
        resetAdminToken: flags.newAdminToken === true,
        logger,
        ...(distributor !== undefined ? { distributor } : {}),
      });
      const app = await buildApi(daemon, { logger });

      let closing: Promise<void> | null = null;
      const shutdown = (signal: string): Promise<void> => {
        if (closing !== null) {
          logger.warn(`${signal} again: exiting now`);
          process.exit(130);
        }
        logger.info(`${signal}: shutting down`);
        closing = (async () => {
          await app.close();
          await daemon.close();
          await distributor?.close();
        })();
        return closing;
      };
      const stopped = new Promise<void>((resolve, reject) => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          process.on(signal, () => {
            shutdown(signal).then(resolve, reject);
          });
        }
      });

      let url: string;
      let adminToken: string | null;
      try {
        url = await app.listen({ host, port });
      } catch (error) {
        await daemon.close();
        const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${flags.listen}: ${code}`);
      }
      process.stdout.write(`tandem orchestrator listening on ${url}\n`);
      try {
        ({ adminToken } = await daemon.start());
      } catch (error) {
        // The store could not be loaded (corrupt, newer schema, unreachable): stop serving, then report.
        await app.close();
        await daemon.close();
        throw error;
      }
      if (adminToken !== null) {
        process.stdout.write(`admin token (shown once; also in ${flags.dataDir}/${ADMIN_TOKEN_FILE}, mode 0600): ${adminToken}\n`);
      }
      process.stdout.write(`tandem orchestrator active (store ${daemon.storeKind}, revision ${daemon.storeRevision}, API docs ${url}/api/docs)\n`);
      if (distributor !== undefined) {
        process.stdout.write(`distributor: VXLAN ${distributor.vxlan.address}:${distributor.vxlan.port}, member link ${distributor.memberLink.address}:${distributor.memberLink.port}\n`);
      }
      await stopped;
    });
}
