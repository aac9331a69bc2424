// `tandem lab`: the network lab (src/lab) from the command line. Needs root.
//
//   tandem lab up [--distributor A[:P]] [--members N] [--json]   (re)build it, print its status
//   tandem lab down [--json]                                     remove every tdm- namespace/link
//   tandem lab status [--json]                                   what the system has now
//
// Exit status: 0 done, 2 bad arguments or not root / tools missing, 1 a command failed.
// `status` exits 0 whether or not a lab is up: read `up` (or the first line) for that.

import type { Command } from "commander";
import { LAB_BRIDGE_ADDRESS, LAB_MEMBERS_MAX, LAB_VXLAN_PORT_DEFAULT, labDown, labStatus, labUp, type LabStatus } from "../lab/lab.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { formatTable } from "./table.js";

interface UpFlags {
  distributor?: string;
  members?: string;
  json?: boolean;
}

/** "198.18.0.1:4789" or "198.18.0.1" (port 4789). The address itself is checked by labUp. */
export function parseDistributor(text: string): { address: string; port: number } {
  const match = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(text.trim());
  const port = match?.[2] === undefined ? LAB_VXLAN_PORT_DEFAULT : Number(match[2]);
  if (match === null || port < 1 || port > 65535) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--distributor must be IPv4[:port], e.g. ${LAB_BRIDGE_ADDRESS}:${LAB_VXLAN_PORT_DEFAULT}, got "${text}"`);
  }
  return { address: match[1]!, port };
}

function parseMembers(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n > LAB_MEMBERS_MAX) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--members must be an integer from 0 to ${LAB_MEMBERS_MAX}, got "${text}"`);
  }
  return n;
}

/** The status for people: a summary line, hosts, members, problems. */
export function formatLabStatus(status: LabStatus): string {
  if (status.bridge === null && status.hosts.length === 0 && status.members.length === 0 && status.problems.length === 0) {
    return "lab: down (nothing named tdm- exists)\n";
  }
  const lines = [`lab: ${status.up ? "up" : "NOT up"}, bridge ${status.bridge ?? "-"} ${status.bridgeAddresses.join(" ")}`.trimEnd(), ""];
  lines.push(
    formatTable(
      ["host", "namespace", "underlay", "vni", "address", "gateway", "vxlan to"],
      status.hosts.map((h) => [
        h.name,
        h.namespace,
        h.underlay,
        h.vni,
        h.address,
        h.gateway,
        h.distributor === null ? null : `${h.distributor.address}:${h.distributor.port} (listens ${h.sitePort})`,
      ]),
    ).trimEnd(),
  );
  if (status.members.length > 0) {
    lines.push("", formatTable(["member", "namespace", "underlay"], status.members.map((m) => [m.name, m.namespace, m.underlay])).trimEnd());
  }
  for (const problem of status.problems) lines.push(`problem: ${problem}`);
  return `${lines.join("\n")}\n`;
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json === true ? `${JSON.stringify(value, null, 2)}\n` : text);
}

export function registerLab(program: Command): void {
  const lab = program
    .command("lab")
    .description("the network lab: test hosts as network namespaces with kernel VXLAN tunnels to the distributor (needs root)");

  lab
    .command("up")
    .description("build the lab (removing any existing one first) and print its status")
    .option("--distributor <address:port>", "where the hosts' VXLAN tunnels point", `${LAB_BRIDGE_ADDRESS}:${LAB_VXLAN_PORT_DEFAULT}`)
    .option("--members <n>", "member namespaces tdm-m1..tdm-mN", "0")
    .option("--json", "print the status as JSON")
    .action(async (flags: UpFlags) => {
      const distributor = parseDistributor(flags.distributor ?? `${LAB_BRIDGE_ADDRESS}:${LAB_VXLAN_PORT_DEFAULT}`);
      const memberNamespaces = parseMembers(flags.members ?? "0");
      const status = await labUp({ distributor, memberNamespaces });
      print(flags.json, status, formatLabStatus(status));
    });

  lab
    .command("down")
    .description("remove every tdm- namespace and tdm- link, also after a crash")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const result = await labDown();
      print(flags.json, result, result.removed.length === 0 ? "lab: nothing to remove\n" : `lab: removed ${result.removed.join(", ")}\n`);
    });

  lab
    .command("status")
    .description("show the lab as the system has it now")
    .option("--json", "print JSON")
    .action(async (flags: { json?: boolean }) => {
      const status = await labStatus();
      print(flags.json, status, formatLabStatus(status));
    });
}
