// What every API command of the CLI shares: the connection options (server and token from
// flags, environment or the data directory), the client, and output as tables for people or
// JSON for scripts.
//
// Resolution order, first found wins:
//   server: --server URL, TANDEM_SERVER, http://127.0.0.1:7470
//   token:  --token TOKEN, TANDEM_TOKEN, --data-dir DIR (DIR/admin-token), TANDEM_DATA_DIR
// Invariant: commands reach the orchestrator only through TandemClient (src/api/client.ts).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { DEFAULT_SERVER, TandemClient } from "../api/client.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export const ADMIN_TOKEN_FILE = "admin-token";

export interface ApiFlags {
  server?: string;
  token?: string;
  dataDir?: string;
  json?: boolean;
}

/** Adds the connection and output options to an API command. */
export function withApiOptions(command: Command): Command {
  return command
    .option("--server <url>", `orchestrator URL (env TANDEM_SERVER; default ${DEFAULT_SERVER})`)
    .option("--token <token>", "API token (env TANDEM_TOKEN)")
    .option("--data-dir <dir>", "read the token from DIR/admin-token (env TANDEM_DATA_DIR)")
    .option("--json", "print JSON instead of tables");
}

export function tokenOf(flags: ApiFlags, env: NodeJS.ProcessEnv = process.env): string | null {
  if (flags.token !== undefined && flags.token.length > 0) return flags.token;
  if (env.TANDEM_TOKEN !== undefined && env.TANDEM_TOKEN.length > 0) return env.TANDEM_TOKEN;
  const dir = flags.dataDir ?? env.TANDEM_DATA_DIR;
  if (dir === undefined || dir.length === 0) return null;
  const file = join(dir, ADMIN_TOKEN_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new TandemError(ErrorCode.FILE_NOT_FOUND, `cannot read the token file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { file });
  }
  const token = text.trim();
  if (token.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the token file ${file} is empty`, { file });
  return token;
}

export function serverOf(flags: ApiFlags, env: NodeJS.ProcessEnv = process.env): string {
  const server = flags.server ?? (env.TANDEM_SERVER !== undefined && env.TANDEM_SERVER.length > 0 ? env.TANDEM_SERVER : DEFAULT_SERVER);
  if (!/^https?:\/\/[^\s/]+/.test(server)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--server must be an http(s) URL, got "${server}"`);
  return server;
}

export function clientOf(flags: ApiFlags): TandemClient {
  return new TandemClient({ server: serverOf(flags), token: tokenOf(flags) });
}

/** Prints `data` as JSON (--json) or the human text. */
export function print(flags: ApiFlags, data: unknown, human: () => string): void {
  if (flags.json) process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
  else {
    const text = human();
    process.stdout.write(text.endsWith("\n") || text.length === 0 ? text : `${text}\n`);
  }
}

/** A positive integer option (commander hands options over as strings). */
export function intOption(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${name} must be an integer from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

export function numberOption(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim().length === 0 || !Number.isFinite(n) || n < min || n > max) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${name} must be a number from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
