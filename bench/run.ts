// Benchmark runner: `npm run bench -- NAME [--json]`.
// Each benchmark measures Tandem and a baseline in the same run and reports the ratio,
// because absolute numbers on shared machines drift. Output carries Node version and commit.

import { execFileSync } from "node:child_process";

type BenchFn = (opts: { json: boolean; quick: boolean }) => Promise<Record<string, unknown>>;

const benches: Record<string, () => Promise<BenchFn>> = {
  engine: async () => (await import("./engine.js")).run,
  distribution: async () => (await import("./distribution.js")).run,
  "rule-base": async () => (await import("./rule-base.js")).run,
  sync: async () => (await import("./sync.js")).run,
  cluster: async () => (await import("./cluster.js")).run,
};

function commit(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const quick = args.includes("--quick");
  const names = args.filter((a) => !a.startsWith("--"));
  if (names.length === 0 || names.some((n) => !(n in benches))) {
    process.stderr.write(`usage: npm run bench -- NAME [--json] [--quick]\n  NAME: ${Object.keys(benches).join(", ")}\n`);
    process.exitCode = 2;
    return;
  }
  for (const name of names) {
    const run = await benches[name]!();
    const result = await run({ json, quick });
    const out = { name, ...result, node: process.version, commit: commit(), date: new Date().toISOString() };
    if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  }
}

await main();
