// `tandem up [--members N] [--lab] [--data-dir DIR]`: the main job. Runs a whole cluster on
// this machine (src/runtime/local-cluster.ts) until SIGINT/SIGTERM, then stops everything.
//
// Output contract: one block of lines saying where the API is and where the admin token is
// (the admin token itself is printed once, at the first start, like `tandem orchestrator`);
// logs are JSON lines on stderr (members: DIR/logs/<appliance>.log).

import type { Command } from "commander";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { intOption } from "./api-common.js";
import { parseListen } from "./orchestrator.js";

interface UpFlags {
  members: string;
  lab?: boolean;
  dataDir: string;
  listen: string;
  logLevel: string;
  traffic: boolean;
  memberNetns?: boolean;
  release: string[];
}

/** --release V=DIR (repeatable): more installed builds members may be upgraded to. */
export function parseReleases(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0 || eq === v.length - 1) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--release must be VERSION=DIR, got "${v}"`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

export function registerUp(program: Command): void {
  program
    .command("up")
    .description("run a whole cluster here: orchestrator, distributor, N members, a default group, and traffic through it")
    .option("--members <n>", "member processes", "3")
    .option("--lab", "bring up the network-namespace lab (root) and drive real programs through the cluster")
    .option("--data-dir <dir>", "state directory (store, admin token, logs)", "tandem-data")
    .option("--listen <host:port>", "where the API listens", "127.0.0.1:7470")
    .option("--log-level <level>", "fatal, error, warn, info, debug", "warn")
    .option("--no-traffic", "start no traffic")
    .option("--release <version=dir>", "another installed build members can be upgraded to (tandem sg upgrade default --version VERSION); repeatable", (v: string, all: string[]) => [...all, v], [] as string[])
    .option("--member-netns", "with --lab: run each member in its own network namespace (tdm-m<i>), so member links and sync cross a network")
    .action(async (flags: UpFlags) => {
      const members = intOption(flags.members, "--members", 1, 64)!;
      if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(flags.logLevel)) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--log-level must be fatal, error, warn, info or debug, got "${flags.logLevel}"`);
      }
      const { pino } = await import("pino");
      const { LocalCluster } = await import("../runtime/local-cluster.js");
      const logger = pino({ level: flags.logLevel }, pino.destination(2));
      const cluster = new LocalCluster({ dataDir: flags.dataDir, members, lab: flags.lab === true, listen: parseListen(flags.listen), logger, traffic: flags.traffic, releases: parseReleases(flags.release), ...(flags.memberNetns === true ? { memberNamespaces: members + 1 } : {}) });
      if (flags.memberNetns === true && flags.lab !== true) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--member-netns needs --lab");
      let stopping: Promise<void> | null = null;
      const done = new Promise<void>((resolve) => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          process.on(signal, () => {
            if (stopping !== null) process.exit(130);
            process.stdout.write(`\n${signal}: stopping the cluster\n`);
            stopping = cluster.stop().then(resolve, (error: unknown) => {
              logger.error({ err: error }, "stop failed");
              resolve();
            });
          });
        }
      });
      // Parts of the cluster hold only unref'd handles (worker threads): keep the process alive
      // until the cluster has stopped, or Node would exit half-way through stop().
      const keepAlive = setInterval(() => {}, 1 << 30);
      void done.then(() => clearInterval(keepAlive));
      try {
        await cluster.start();
      } catch (error) {
        if (stopping === null) throw error;
        // Ctrl-C during the start: stop() is tearing down what start() was waiting on.
        await done;
        process.stdout.write("stopped\n");
        return;
      }
      if (cluster.adminToken !== null) process.stdout.write(`admin token: ${cluster.adminToken}\n`);
      process.stdout.write(`${cluster.describe()}\n`);
      await done;
      process.stdout.write("stopped\n");
    });
}
