// `tandem replay FILE... [--policy FILE] [--json]`: captures through one engine.
// Reads the files (the only I/O), runs the pure replay, prints a table or one JSON object.
// Exit 0 when every file was read; 2 after processing the rest when any file was unreadable.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import type { ReplayInput, ReplayReport } from "../engine/replay.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export const DEMO_CAPTURE = fileURLToPath(new URL("../../../examples/demo.pcap", import.meta.url));

interface ReplayFlags {
  policy?: string;
  json?: boolean;
  demo?: boolean;
  capacity?: string;
}

export function registerReplay(program: Command): void {
  program
    .command("replay")
    .description("run packet captures (pcap, pcapng) through one gateway engine and report verdicts, drops and connections")
    .argument("[files...]", "capture files")
    .option("--policy <file>", "policy (YAML or JSON); without it every new connection is accepted and only tracked")
    .option("--json", "print one JSON object instead of tables")
    .option("--demo", "replay the bundled demonstration capture (examples/demo.pcap)")
    .option("--capacity <n>", "connection table capacity", "1048576")
    .action(async (files: string[], flags: ReplayFlags) => {
      // The engine is loaded only when a replay runs, so other commands start fast.
      const { compilePolicy } = await import("../engine/rule-base.js");
      const { parsePolicyText } = await import("../engine/policy.js");
      const { replayCaptures } = await import("../engine/replay.js");
      const paths = [...files];
      if (flags.demo) paths.push(DEMO_CAPTURE);
      if (paths.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "replay needs at least one capture file (or --demo)");
      const capacity = Number(flags.capacity);
      if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 26) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--capacity must be an integer from 1 to ${1 << 26}, got "${flags.capacity}"`);
      }
      let ruleBase = null;
      if (flags.policy !== undefined) {
        const text = readText(flags.policy);
        ruleBase = compilePolicy(parsePolicyText(text, "auto"));
      }
      const inputs: ReplayInput[] = [];
      const unreadable: { name: string; message: string }[] = [];
      for (const path of paths) {
        try {
          inputs.push({ name: path, bytes: readFileSync(path) });
        } catch (error) {
          unreadable.push({ name: path, message: `${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}: cannot read file` });
        }
      }
      const report = replayCaptures(inputs, { capacity, ruleBase, wallClockMs: () => performance.now() });
      for (const u of unreadable) report.files.push({ name: u.name, ok: false, packets: 0, error: { code: ErrorCode.FILE_NOT_FOUND, message: u.message }, linkTypes: [] });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        process.stdout.write(formatReport(report));
      }
      const failed = report.files.filter((f) => !f.ok);
      for (const f of failed) process.stderr.write(`tandem replay: ${f.error?.message ?? f.name} (${f.error?.code ?? "error"})\n`);
      if (failed.length > 0) process.exitCode = 2;
    });
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new TandemError(ErrorCode.FILE_NOT_FOUND, `${path}: ${(error as NodeJS.ErrnoException).code ?? "error"}: cannot read policy file`);
  }
}

export function formatReport(report: ReplayReport): string {
  const lines: string[] = [];
  const table = (title: string, rows: [string, string | number][]): void => {
    if (rows.length === 0) return;
    lines.push(title);
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) lines.push(`  ${k.padEnd(width)}  ${typeof v === "number" ? v.toLocaleString("en-US") : v}`);
    lines.push("");
  };
  const okFiles = report.files.filter((f) => f.ok).length;
  table("Replay", [
    ["files read", `${okFiles} of ${report.files.length}`],
    ["packets", report.packets],
    ["bytes", report.bytes],
    ["elapsed", `${report.elapsedMs.toFixed(1)} ms`],
    ["packets/s", report.packetsPerS],
  ]);
  table("Verdicts", Object.entries(report.verdicts));
  table("Drop reasons", Object.entries(report.dropReasons));
  table("Parse failures", Object.entries(report.parseFailures));
  table("Connections", Object.entries(report.connections));
  table("TCP/UDP/ICMP states at end", Object.entries(report.statesAtEnd));
  if (report.ruleHits !== null) table("Rule hits", Object.entries(report.ruleHits));
  return `${lines.join("\n")}\n`;
}
