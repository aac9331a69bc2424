// `tandem sim`: the deterministic cluster simulator (src/sim) from the command line.
//
//   tandem sim --seed N [--json] [--verbose]     one run; replays exactly
//   tandem sim --seeds K [--from S] [--json]     K runs (seeds S .. S+K-1) and a summary
//   tandem sim                                   one run with a seed taken from the clock
//
// Every failing seed prints the command that replays it. Exit status 1 when any run found a
// violation, 2 for bad arguments. Real time is measured here (the simulator has none).

import type { Command } from "commander";
import { runSimulation, type SimResult, type SimStats } from "../sim/simulator.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

interface SimFlags {
  seed?: string;
  seeds?: string;
  from?: string;
  json?: boolean;
  verbose?: boolean;
}

const SEED_MAX = 0xffffffff;
const SEEDS_MAX = 1_000_000;

export interface SimSummary {
  runs: number;
  /** Violations over all runs. */
  violations: number;
  failingSeeds: number[];
  meanRunMs: number;
  maxRunMs: number;
  /** Sums over all runs (maxima for the *Max fields). */
  stats: Record<string, number>;
}

function parseInteger(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${flag} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

export function replayCommand(seed: number): string {
  return `tandem sim --seed ${seed}`;
}

function timedRun(seed: number): { result: SimResult; runMs: number } {
  const t0 = performance.now();
  const result = runSimulation(seed);
  return { result, runMs: performance.now() - t0 };
}

/** Sums (and maxima, for fields named ...Max) of the runs' statistics. */
export function summarize(runs: { result: SimResult; runMs: number }[]): SimSummary {
  const stats: Record<string, number> = {};
  let totalMs = 0;
  let maxMs = 0;
  let violations = 0;
  const failingSeeds: number[] = [];
  for (const { result, runMs } of runs) {
    totalMs += runMs;
    maxMs = Math.max(maxMs, runMs);
    violations += result.violationCount;
    if (result.violationCount > 0) failingSeeds.push(result.seed);
    for (const [key, value] of Object.entries(result.stats as unknown as Record<string, number>)) {
      if (key.endsWith("Max")) stats[key] = Math.max(stats[key] ?? 0, value);
      else if (key !== "lossRate" && key !== "bucketCount" && key !== "members") stats[key] = (stats[key] ?? 0) + value;
    }
  }
  return {
    runs: runs.length,
    violations,
    failingSeeds,
    meanRunMs: runs.length === 0 ? 0 : Math.round(totalMs / runs.length),
    maxRunMs: Math.round(maxMs),
    stats,
  };
}

function formatStats(s: SimStats): string {
  return [
    `  cluster   ${s.members} members, ${s.bucketCount} buckets, loss ${(s.lossRate * 100).toFixed(1)}%`,
    `  traffic   ${s.flows} flows (${s.flowsCompleted} completed, ${s.flowsFailed} failed, ${s.handshakesCompleted} handshakes), ${s.framesSent} frames, ${s.retransmits} retransmits`,
    `  faults    ${s.crashes} crashes (${s.crashesDuringFill} during a fill), ${s.joins} joins, ${s.drains} drains, ${s.partitions} partitions, ${s.networkLosses} frames/datagrams lost`,
    `  cluster   ${s.epochs} epochs, failover detect <= ${s.detectMsMax} ms, reprotect <= ${s.reprotectMsMax} ms, fill <= ${s.fillMsMax} ms, ${s.corrections} corrections`,
    `  run       ${s.virtualMs} ms virtual, ${s.events} events`,
  ].join("\n");
}

export function registerSim(program: Command): void {
  program
    .command("sim")
    .description("run the deterministic cluster simulator: real engine and HyperSync code on a virtual clock and network, with faults")
    .option("--seed <n>", "run one seed (replays exactly)")
    .option("--seeds <k>", "run k seeds and print a summary")
    .option("--from <s>", "first seed of --seeds", "1")
    .option("--json", "print JSON")
    .option("--verbose", "with --seed: print the run's log (scenario actions and controller decisions)")
    .action((flags: SimFlags) => {
      if (flags.seed !== undefined && flags.seeds !== undefined) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, "use either --seed or --seeds, not both");
      }
      if (flags.seeds !== undefined) {
        const count = parseInteger(flags.seeds, "--seeds", 1, SEEDS_MAX);
        const from = parseInteger(flags.from ?? "1", "--from", 0, SEED_MAX);
        if (from + count - 1 > SEED_MAX) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--from + --seeds exceeds ${SEED_MAX}`);
        runMany(from, count, flags.json === true);
        return;
      }
      // Without --seed, a seed from the clock (printed, so the run can be replayed).
      const seed = flags.seed !== undefined ? parseInteger(flags.seed, "--seed", 0, SEED_MAX) : Date.now() % (SEED_MAX + 1);
      runOne(seed, flags.json === true, flags.verbose === true);
    });
}

function runOne(seed: number, json: boolean, verbose: boolean): void {
  const { result, runMs } = timedRun(seed);
  if (json) {
    const out: Record<string, unknown> = { ...result, runMs: Math.round(runMs) };
    if (!verbose) delete out.log;
    if (result.violationCount > 0) out.replay = replayCommand(seed);
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    const lines = [
      `seed ${seed}: ${result.violationCount} violation${result.violationCount === 1 ? "" : "s"} (trace ${result.traceHash}, ${Math.round(runMs)} ms)`,
      formatStats(result.stats),
    ];
    if (verbose) lines.push("log:", ...result.log.map((l) => `  ${l}`));
    for (const v of result.violations) lines.push(`  violation: ${v}`);
    if (result.violationCount > result.violations.length) lines.push(`  ... and ${result.violationCount - result.violations.length} more`);
    // Printed for passing runs too: the seed is the run's whole identity.
    lines.push(`replay: ${replayCommand(seed)}`);
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  if (result.violationCount > 0) process.exitCode = 1;
}

function runMany(from: number, count: number, json: boolean): void {
  const runs: { result: SimResult; runMs: number }[] = [];
  for (let seed = from; seed < from + count; seed++) {
    const run = timedRun(seed);
    runs.push(run);
    if (!json && run.result.violationCount > 0) {
      process.stdout.write(`seed ${seed}: ${run.result.violationCount} violations; first: ${run.result.violations[0]}\n`);
      process.stdout.write(`replay: ${replayCommand(seed)}\n`);
    }
  }
  const summary = summarize(runs);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...summary, replay: summary.failingSeeds.map(replayCommand) }, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${summary.runs} runs (seeds ${from}..${from + count - 1}), ${summary.violations} violations, ${summary.failingSeeds.length} failing seeds, mean ${summary.meanRunMs} ms per run (max ${summary.maxRunMs})\n`,
    );
    for (const seed of summary.failingSeeds) process.stdout.write(`replay: ${replayCommand(seed)}\n`);
  }
  if (summary.violations > 0) process.exitCode = 1;
}
