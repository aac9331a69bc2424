// `tandem member --orchestrator URL --appliance ID`: runs one member process (MemberDaemon)
// until SIGINT/SIGTERM.
//
// Output contract (scripts and the lab rely on it): once the sockets are bound and the
// configuration fetched, ONE stdout line
//   tandem member <id> running: data A:P sync A:P
// (the advertised addresses, with the ports the OS chose). Logs are JSON lines on stderr.
// The member token comes from --token-file FILE or the TANDEM_TOKEN environment variable;
// without one the command fails at once (exit 2). The daemon is imported when the command
// runs, so other commands start fast.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { parseIpv4 } from "../packet/addr.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { intOption } from "./api-common.js";

interface MemberFlags {
  orchestrator: string;
  appliance: string;
  listen?: string;
  advertise?: string;
  dataPort?: string;
  syncPort?: string;
  tokenFile?: string;
  logLevel: string;
  releases?: string;
  current?: string;
}

/** The member token: --token-file FILE, else TANDEM_TOKEN. */
export function memberTokenOf(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(tokenFile, "utf8");
    } catch (error) {
      throw new TandemError(ErrorCode.FILE_NOT_FOUND, `cannot read the token file ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { file: tokenFile });
    }
    const token = text.trim();
    if (token.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the token file ${tokenFile} is empty`, { file: tokenFile });
    return token;
  }
  const token = env.TANDEM_TOKEN?.trim() ?? "";
  if (token.length === 0) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, "no member token: pass --token-file FILE or set TANDEM_TOKEN (a token with role member, named after the appliance)");
  }
  return token;
}

function ipv4Flag(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (parseIpv4(value) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${name} must be an IPv4 address, got "${value}"`);
  return value;
}

export function registerMember(program: Command): void {
  program
    .command("member")
    .description("run a member process: the gateway engine and HyperSync of one appliance of a security group")
    .requiredOption("--orchestrator <url>", "orchestrator URL, e.g. http://198.18.0.1:7470")
    .requiredOption("--appliance <id>", "this member's appliance id")
    .option("--listen <addr>", "IPv4 address of the data and sync sockets (default: the local address toward the orchestrator)")
    .option("--advertise <addr>", "IPv4 address peers and the distributor send to (default: the listen address)")
    .option("--data-port <port>", "UDP port of the data socket (default: any free port)")
    .option("--sync-port <port>", "UDP port of the HyperSync socket (default: any free port)")
    .option("--token-file <file>", "file holding the member token (default: env TANDEM_TOKEN)")
    .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
    .option("--releases <dir>", "rolling upgrades: directory of installed releases, one sub-directory per version")
    .option("--current <link>", "rolling upgrades: the symlink this member is started through; switched to the new release, then the member exits 75 for its supervisor to restart it")
    .action(async (flags: MemberFlags) => {
      if (!/^https?:\/\/[^\s/]+/.test(flags.orchestrator)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--orchestrator must be an http(s) URL, got "${flags.orchestrator}"`);
      if (flags.appliance.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--appliance must not be empty");
      if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(flags.logLevel)) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--log-level must be fatal, error, warn, info or debug, got "${flags.logLevel}"`);
      }
      const listen = ipv4Flag(flags.listen, "--listen");
      const advertise = ipv4Flag(flags.advertise, "--advertise");
      const dataPort = intOption(flags.dataPort, "--data-port", 0, 65535);
      const syncPort = intOption(flags.syncPort, "--sync-port", 0, 65535);
      const token = memberTokenOf(flags.tokenFile);
      if ((flags.releases === undefined) !== (flags.current === undefined)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--releases and --current go together");
      let closing: Promise<void> | null = null;

      const { pino } = await import("pino");
      const { MemberDaemon } = await import("../runtime/member-daemon.js");
      const { RESTART_EXIT_CODE } = await import("../runtime/releases.js");
      const logger = pino({ level: flags.logLevel }, pino.destination(2));
      const daemon = new MemberDaemon({
        appliance: flags.appliance,
        orchestrator: flags.orchestrator,
        token,
        ...(listen !== undefined ? { listen } : {}),
        ...(advertise !== undefined ? { advertise } : {}),
        ...(dataPort !== undefined ? { dataPort } : {}),
        ...(syncPort !== undefined ? { syncPort } : {}),
        ...(flags.releases !== undefined && flags.current !== undefined
          ? {
              releasesDir: flags.releases,
              currentLink: flags.current,
              onRestart: (version: string) => {
                // The supervisor restarts us through --current, which now names the new release.
                if (closing !== null) return;
                logger.info(`restarting on ${version}: exiting ${RESTART_EXIT_CODE} for the supervisor`);
                closing = daemon.stop();
                closing.then(
                  () => process.exit(RESTART_EXIT_CODE),
                  () => process.exit(RESTART_EXIT_CODE),
                );
              },
            }
          : {}),
        logger,
      });
      const stopped = new Promise<void>((resolve, reject) => {
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
          process.on(signal, () => {
            if (closing !== null) {
              logger.warn(`${signal} again: exiting now`);
              process.exit(130);
            }
            logger.info(`${signal}: stopping`);
            closing = daemon.stop();
            closing.then(resolve, reject);
          });
        }
      });

      try {
        await daemon.start();
      } catch (error) {
        // A signal during the start: the stop is the outcome, not the start's error.
        if (closing !== null) return stopped;
        throw error;
      }
      if (closing !== null) return stopped;
      const data = daemon.dataEndpoint;
      const sync = daemon.syncEndpoint;
      process.stdout.write(`tandem member ${flags.appliance} running: data ${data.address}:${data.port} sync ${sync.address}:${sync.port}\n`);
      await stopped;
    });
}
