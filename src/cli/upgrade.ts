// `tandem sg upgrade GROUP --version V`: a rolling upgrade, driven by the orchestrator one
// member at a time (drain, restart on V, rejoin, verify; src/orchestrator/upgrade.ts). The
// command starts it and follows it, printing each step, until it finishes (exit 0) or pauses
// (exit 1 with the reason); --no-wait returns at once. The same command controls a running
// upgrade: --status, --pause, --resume, --rollback, --abort, --wait.

import type { Command } from "commander";
import type { TandemClient } from "../api/client.js";
import type { UpgradeStatusView } from "../api/types.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { clientOf, print, sleep, withApiOptions, type ApiFlags } from "./api-common.js";
import { formatFields, formatTable } from "./table.js";

interface UpgradeFlags extends ApiFlags {
  version?: string;
  wait: boolean;
  status?: boolean;
  pause?: boolean;
  resume?: boolean;
  rollback?: boolean;
  abort?: boolean;
  timeoutS?: string;
}

const POLL_MS = 500;

export function formatUpgrade(s: UpgradeStatusView): string {
  const u = s.upgrade;
  const head: [string, string | number | boolean | null][] = u === null
    ? [["group", s.group], ["upgrade", "none"]]
    : [
        ["group", s.group],
        ["upgrade", `${u.fromVersion} -> ${u.targetVersion}${u.direction === "back" ? " (rolling back)" : ""}`],
        ["goal", u.goal],
        ["paused", u.paused ? `yes: ${u.reason ?? ""}` : "no"],
        ["member", u.current === null ? null : `${u.current.appliance} (${u.current.step} since ${u.current.since})`],
        ["waiting for", s.waitingFor],
        ["started", u.startedAt],
      ];
  const rows = s.members.map((m) => [m.appliance, m.state, m.version, m.reportedVersion ?? "-", m.restartError ?? ""]);
  return `${formatFields(head)}\n\n${formatTable(["MEMBER", "STATE", "VERSION", "RUNNING", "RESTART ERROR"], rows)}`;
}

/** Follows an upgrade until it ends (resolves) or pauses (throws with the reason). */
export async function followUpgrade(client: TandemClient, group: string, timeoutMs: number, out: (line: string) => void): Promise<UpgradeStatusView> {
  const giveUpAt = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const s = await client.upgradeStatus(group);
    const u = s.upgrade;
    if (u === null) {
      out(`upgrade of ${group} done: ${s.members.map((m) => `${m.appliance} ${m.version}`).join(", ")}`);
      return s;
    }
    const line = u.current === null ? `${s.waitingFor ?? "starting"}` : `${u.current.appliance}: ${u.current.step}${s.waitingFor !== null ? ` (${s.waitingFor})` : ""}`;
    if (line !== last) {
      out(line);
      last = line;
    }
    if (u.paused) throw new TandemError(ErrorCode.INVALID_STATE, `upgrade of ${group} paused: ${u.reason ?? "no reason"}; resume (--resume), roll back (--rollback) or abort (--abort)`, { group });
    if (Date.now() > giveUpAt) throw new TandemError(ErrorCode.TIMEOUT, `gave up waiting after ${Math.round(timeoutMs / 1000)} s; the upgrade of ${group} goes on: follow it with tandem sg upgrade ${group} --wait`, { group });
    await sleep(POLL_MS);
  }
}

export function registerUpgradeCommand(sg: Command): void {
  withApiOptions(
    sg
      .command("upgrade")
      .description("rolling upgrade: one member at a time is drained, restarted on the new version, rejoined and verified")
      .argument("<group>")
      .option("--version <version>", "start an upgrade of the group's members to this version")
      .option("--no-wait", "return once started instead of following the upgrade")
      .option("--status", "show the upgrade (the default without another flag)")
      .option("--pause", "pause: the running step completes, no new one starts")
      .option("--resume", "resume a paused upgrade")
      .option("--rollback", "roll back: members that moved return to the old version, one at a time")
      .option("--abort", "end the upgrade where it stands (only when all members run one version)")
      .option("--timeout-s <seconds>", "how long to follow the upgrade", "3600"),
  ).action(async (group: string, flags: UpgradeFlags) => {
    const client = clientOf(flags);
    const verbs = (["pause", "resume", "rollback", "abort"] as const).filter((v) => flags[v] === true);
    if (verbs.length + (flags.version === undefined ? 0 : 1) > 1) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "give one of --version, --pause, --resume, --rollback, --abort");
    const timeoutS = Number(flags.timeoutS);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--timeout-s must be a positive number, got "${flags.timeoutS}"`);
    const say = (line: string): void => {
      if (!flags.json) process.stdout.write(`${line}\n`);
    };
    if (flags.version !== undefined) {
      const started = await client.startUpgrade(group, flags.version);
      say(`rolling upgrade of ${group}: ${started.fromVersion} -> ${started.targetVersion}`);
    } else if (verbs.length === 1) {
      const result = await client.upgradeControl(group, verbs[0]!);
      say(`${verbs[0]}: ${JSON.stringify(result)}`);
    }
    const follow = flags.wait && (flags.version !== undefined || flags.resume === true || flags.rollback === true);
    if (follow) {
      const s = await followUpgrade(client, group, timeoutS * 1000, say);
      if (flags.json) print(flags, s, () => "");
      return;
    }
    const s = await client.upgradeStatus(group);
    print(flags, s, () => formatUpgrade(s));
  });
}
