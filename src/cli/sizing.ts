// `tandem sizing [--seconds S] [--members N] [--member-fps F] [--json]`: measures what this
// machine's distributor forwards (src/runtime/sizing.ts) and prints the capacity, the traffic
// and the members it can serve, with every formula and its figures. Runs locally (loopback
// sockets and the distributor's worker thread); needs no orchestrator and no root.
//
// Exit status: 0 measured, 2 bad arguments, 1 the measurement failed.

import type { Command } from "commander";
import { runSizing, checkSizingOptions, SIZING_MEMBERS_DEFAULT, SIZING_SECONDS_DEFAULT, type SizingOptions, type SizingReport } from "../runtime/sizing.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { formatTable } from "./table.js";

export interface SizingFlags {
  seconds?: string;
  members?: string;
  memberFps?: string;
  json?: boolean;
}

function numberOf(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${flag} must be a number, got "${text}"`, { field: flag });
  return n;
}

/** The command line's flags as runSizing options (checked: TANDEM_INVALID_ARGUMENT). */
export function sizingOptionsOf(flags: SizingFlags): SizingOptions {
  const options: SizingOptions = {};
  if (flags.seconds !== undefined) options.seconds = numberOf(flags.seconds, "--seconds");
  if (flags.members !== undefined) options.members = numberOf(flags.members, "--members");
  if (flags.memberFps !== undefined) options.memberFramesPerSec = numberOf(flags.memberFps, "--member-fps");
  checkSizingOptions(options);
  return options;
}

const int = (x: number): string => Math.round(x).toLocaleString("en-US");
const two = (x: number): string => x.toFixed(2);

/** The report for people: per-size table, the headline figures, the formulas, notes. */
export function formatSizing(r: SizingReport): string {
  const lines: string[] = [];
  lines.push(
    `distributor sizing: ${r.cpu.count} x ${r.cpu.model}, Node ${r.node}, load ${r.loadAverage1m}, ${r.seconds} s, ` +
      `group of ${r.group.members} members / ${r.group.buckets} buckets / ${r.group.flows} TCP flows (seed ${r.group.seed}), distributor on a ${r.distributorThread} thread`,
    "",
  );
  lines.push(
    formatTable(
      ["frame B", "core frames/s", "core Gb/s", "capacity frames/s", "capacity Gb/s", "no-op frames/s", "busy", "CPU", "forwarded/s", "engine frames/s", "member frames/s"],
      r.sizes.map((s) => [
        s.frameBytes,
        int(s.coreFramesPerSec),
        two(s.coreGbps),
        int(s.socketFramesPerSec),
        two(s.capacityGbps),
        int(s.baselineFramesPerSec),
        two(s.socketUtilization),
        s.socketCpuShare === null ? "-" : two(s.socketCpuShare),
        int(s.forwardedPerSec),
        int(s.engineFramesPerSec),
        int(s.memberFramesPerSec),
      ]),
      { right: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] },
    ).trimEnd(),
    "",
  );
  const mix = r.capacity.mix;
  lines.push(
    formatTable(
      ["figure", "value"],
      [
        [`capacity at ${r.capacity.large.frameBytes} B frames`, `${int(r.capacity.large.framesPerSec)} frames/s = ${two(r.capacity.large.gbps)} Gb/s`],
        [`capacity at the small-packet mix (mean ${two(mix.meanFrameBytes)} B)`, `${int(mix.framesPerSec)} frames/s = ${two(mix.gbps)} Gb/s`],
        [`a member's rate (${r.members.memberSource}, one core)`, `${int(r.members.memberFramesPerSec)} frames/s`],
        ["members fed at full rate", `${r.members.fedAtFullRate} (ratio ${(Math.floor(r.members.ratio * 100) / 100).toFixed(2)})`],
        [`members fed at ${r.members.fedAtHeadroom.cpuPct}% CPU each`, `${r.members.fedAtHeadroom.members}`],
      ],
    ).trimEnd(),
    "",
    "formulas:",
  );
  for (const f of r.formulas) lines.push(`  ${f}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return `${lines.join("\n")}\n`;
}

export function registerSizing(program: Command): void {
  program
    .command("sizing")
    .description("measure what this machine's distributor forwards, and how much traffic and how many members one orchestrator serves")
    .option("--seconds <s>", "total measurement time", String(SIZING_SECONDS_DEFAULT))
    .option("--members <n>", "table members of the synthetic group", String(SIZING_MEMBERS_DEFAULT))
    .option("--member-fps <frames>", "a member's forwarding rate (frames/s, one core) instead of the derived one")
    .option("--json", "print one JSON object")
    .action(async (flags: SizingFlags) => {
      const options = sizingOptionsOf(flags);
      const report = await runSizing({ ...options, onProgress: flags.json === true ? undefined : (text) => process.stderr.write(`${text}\n`) });
      process.stdout.write(flags.json === true ? `${JSON.stringify(report)}\n` : formatSizing(report));
    });
}
