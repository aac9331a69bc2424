// `tandem status`, `tandem monitor` (a live view refreshed in place, like top), `tandem conns
// find`, `tandem verify`, `tandem token list|create|revoke`, `tandem events`, `tandem audit`:
// the running cluster through the API client.

import type { Command } from "commander";
import type { TandemClient } from "../api/client.js";
import type { ConnectionQuery, MemberStatus, StatusView, SyncStatus, VerifyView } from "../api/types.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { clientOf, intOption, print, sleep, withApiOptions, type ApiFlags } from "./api-common.js";
import { ProgressBar } from "./progress.js";
import { compact, formatFields, formatTable } from "./table.js";

// ---------------------------------------------------------------------------------------------
// status and monitor

function formatStatus(s: StatusView, sync: readonly SyncStatus[]): string {
  let out = formatFields([
    ["orchestrator", `${s.instance} (${s.role})`],
    ["store", `${s.store}, revision ${s.storeRevision}`],
    ["started", s.startedAt],
    ["queue", s.queue === undefined ? null : `${s.queue.waiting} waiting, ${s.queue.confirmed} committed, ${s.queue.aborted} failed`],
    ["appliances", s.appliances === undefined ? null : `${s.appliances.total} (${s.appliances.pool} in the pool, ${s.appliances.alive} alive)`],
  ]);
  if (s.groups !== undefined) {
    const inSync = new Map(sync.map((x) => [x.group, x.inSync]));
    out += `\n${formatTable(
      ["GROUP", "MEMBERS", "UP", "EPOCH", "PENDING", "IN-SYNC", "TRANSITION"],
      s.groups.map((g) => [g.name, g.members, g.up, g.epoch, g.pendingChanges, inSync.get(g.name), g.transition === null ? null : `${g.transition.kind} #${g.transition.seq} ${Math.round(g.transition.progress * 100)}%`]),
    )}`;
  }
  return out;
}

function formatMonitor(s: StatusView, members: readonly MemberStatus[], nowIso: string): string {
  const groups = s.groups ?? [];
  let out = `tandem monitor — ${s.instance} (${s.role}), store revision ${s.storeRevision}, ${nowIso}\n`;
  out += `${groups.length} groups, ${members.length} members, ${members.filter((m) => m.state === "UP").length} UP\n`;
  for (const g of groups) {
    if (g.transition !== null) out += `${g.name}: ${g.transition.kind} #${g.transition.seq} ${Math.round(g.transition.progress * 100)}%\n`;
  }
  out += "\n";
  out += formatTable(
    ["GROUP", "MEMBER", "STATE", "CPU%", "PKT/S", "CONNS", "SYNC-LAG-MS", "HB-AGE-MS", "OWNED"],
    members.map((m) => [
      m.group,
      m.appliance,
      m.alive || m.state === "DETACHED" || m.state === "DOWN" ? m.state : `${m.state}?`,
      m.load?.cpuPct === null || m.load?.cpuPct === undefined ? null : m.load.cpuPct.toFixed(1),
      m.load?.packetsPerSec === null || m.load?.packetsPerSec === undefined ? null : compact(m.load.packetsPerSec),
      m.load?.connections === null || m.load?.connections === undefined ? null : compact(m.load.connections),
      m.counters?.syncLagMs === null || m.counters?.syncLagMs === undefined ? null : m.counters.syncLagMs.toFixed(1),
      m.silentMs === null ? null : Math.round(m.silentMs),
      m.owned,
    ]),
    { right: [3, 4, 5, 6, 7, 8] },
  );
  return out;
}

export function registerStatusCommands(program: Command): void {
  withApiOptions(program.command("status").description("the orchestrator, its store, its groups and whether their members run the current epoch and policy")).action(async (flags: ApiFlags) => {
    const client = clientOf(flags);
    const s = await client.status();
    // A standby has no control plane to ask about sync.
    const sync = s.role === "active" ? await client.syncStatus() : [];
    print(flags, { ...s, sync }, () => formatStatus(s, sync));
  });

  withApiOptions(
    program
      .command("monitor")
      .description("live view of every member: state, CPU, packets/s, connections, sync lag (q or Ctrl-C to quit)")
      .option("--group <name>", "only this group")
      .option("--interval-ms <ms>", "refresh period", "1000")
      .option("--once", "print one frame and exit"),
  ).action(async (flags: ApiFlags & { group?: string; intervalMs: string; once?: boolean }) => {
    const client = clientOf(flags);
    const intervalMs = intOption(flags.intervalMs, "--interval-ms", 100, 3_600_000)!;
    const tty = process.stdout.isTTY === true && !flags.once && !flags.json;
    let stopped = false;
    const stop = (): void => {
      stopped = true;
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    if (tty && process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.resume();
      process.stdin.on("data", (key: Buffer) => {
        if (key[0] === 0x71 || key[0] === 0x03) stop(); // q, Ctrl-C
      });
    }
    try {
      for (;;) {
        const [s, all] = await Promise.all([client.status(), client.allMembers()]);
        const members = flags.group === undefined ? all : all.filter((m) => m.group === flags.group);
        if (flags.json) process.stdout.write(`${JSON.stringify({ status: s, members })}\n`);
        else {
          const frame = formatMonitor(s, members, new Date().toISOString());
          // Home + clear below: the frame is redrawn in place, like top.
          process.stdout.write(tty ? `\x1b[H\x1b[2J${frame}` : `${frame}\n`);
        }
        if (flags.once || stopped) break;
        const until = Date.now() + intervalMs;
        while (!stopped && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
        if (stopped) break;
      }
    } finally {
      if (tty && process.stdin.isTTY) {
        process.stdin.setRawMode(false);
        process.stdin.pause();
      }
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// conns

export function registerConnsCommands(program: Command): void {
  const conns = program.command("conns").description("connections: which member owns and backs up a flow");
  withApiOptions(
    conns
      .command("find")
      .description("find live connections (asked of the members) and where they live: bucket, owner, backup, state")
      .option("--src <ip>", "source address (client side)")
      .option("--dst <ip>", "destination address (server side)")
      .option("--src-port <port>", "source port")
      .option("--dst-port <port>", "destination port")
      .option("--protocol <p>", "tcp, udp, icmp, icmpv6 or a number (default: any)")
      .option("--group <name>", "only this group (default: every group with a table)"),
  ).action(async (flags: ApiFlags & { src?: string; dst?: string; srcPort?: string; dstPort?: string; protocol?: string; group?: string }) => {
    if (flags.src === undefined && flags.dst === undefined) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "give --dst and/or --src");
    const protocol = flags.protocol === undefined ? undefined : /^[0-9]+$/.test(flags.protocol) ? intOption(flags.protocol, "--protocol", 0, 255)! : flags.protocol;
    if (typeof protocol === "string" && !["tcp", "udp", "icmp", "icmpv6"].includes(protocol)) {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--protocol must be tcp, udp, icmp, icmpv6 or 0-255, got "${protocol}"`);
    }
    const query: ConnectionQuery = {};
    if (flags.src !== undefined) query.src = flags.src;
    if (flags.dst !== undefined) query.dst = flags.dst;
    if (flags.srcPort !== undefined) query.srcPort = intOption(flags.srcPort, "--src-port", 0, 65535)!;
    if (flags.dstPort !== undefined) query.dstPort = intOption(flags.dstPort, "--dst-port", 0, 65535)!;
    if (protocol !== undefined) query.protocol = protocol as "tcp";
    if (flags.group !== undefined) query.group = flags.group;
    const found = await clientOf(flags).findConnections(query);
    const names: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };
    print(flags, found, () => {
      const table = formatTable(
        ["GROUP", "PROTO", "SOURCE", "DESTINATION", "STATE", "BUCKET", "OWNER", "BACKUP", "HELD-BY"],
        found.map((f) => [
          f.group,
          names[f.protocol] ?? String(f.protocol),
          `${f.src}:${f.srcPort}`,
          `${f.dst}:${f.dstPort}`,
          f.state ?? "(none)",
          f.bucket,
          `${f.owner} (${f.ownerState ?? "?"})`,
          f.backup === null ? null : `${f.backup} (${f.backupState ?? "?"})`,
          f.heldBy.map((h) => `${h.member}:${h.role}`).join(",") || null,
        ]),
      );
      return found.some((f) => !f.complete) ? `${table}\n(some members did not answer in time: the list may be incomplete)` : table;
    });
  });
}

// ---------------------------------------------------------------------------------------------
// verify

async function verifyGroup(client: TandemClient, group: string, progress: ProgressBar, timeoutMs: number): Promise<VerifyView> {
  let v = await client.startVerify(group);
  const giveUpAt = Date.now() + timeoutMs;
  while (!v.done) {
    progress.update(v.progress, `${group}: ${v.reported.length}/${v.expected.length} members compared`);
    if (Date.now() > giveUpAt) break;
    await sleep(100);
    v = await client.verifyStatus(group, v.id);
  }
  progress.update(v.progress, `${group}: ${v.reported.length}/${v.expected.length} members compared`);
  progress.finish();
  return v;
}

export function registerVerifyCommand(program: Command): void {
  withApiOptions(
    program
      .command("verify")
      .description("compare every owner's buckets with its backup's (per-bucket digests); exit 1 on any difference")
      .argument("[groups...]", "groups (default: every group with members)")
      .option("--timeout <seconds>", "give up waiting for members after this long", "30"),
  ).action(async (groups: string[], flags: ApiFlags & { timeout: string }) => {
    const client = clientOf(flags);
    const timeoutMs = intOption(flags.timeout, "--timeout", 1, 3600)! * 1000;
    const names = groups.length > 0 ? groups : (await client.listGroups()).filter((g) => g.up > 0).map((g) => g.name);
    const results: VerifyView[] = [];
    for (const name of names) results.push(await verifyGroup(client, name, new ProgressBar(flags.json ? process.stderr : process.stdout), timeoutMs));
    print(flags, results, () =>
      formatTable(
        ["GROUP", "ROUND", "EPOCH", "MEMBERS", "BUCKETS", "DIFFERING", "MISSING"],
        results.map((v) => [v.group, v.id, v.epoch, `${v.reported.length}/${v.expected.length}`, v.bucketsChecked, v.mismatches.reduce((n, m) => n + m.count, 0), v.missing.join(",") || null]),
      ),
    );
    const differing = results.filter((v) => v.mismatches.length > 0);
    const incomplete = results.filter((v) => v.missing.length > 0);
    if (differing.length > 0) {
      const detail = differing.map((v) => `${v.group}: ${v.mismatches.map((m) => `${m.member} ${m.count} (buckets ${m.buckets.slice(0, 10).join(",")}${m.count > 10 ? ",..." : ""})`).join("; ")}`).join(" | ");
      throw new TandemError(ErrorCode.VERIFY_FAILED, `owner and backup differ: ${detail}`);
    }
    if (incomplete.length > 0) throw new TandemError(ErrorCode.VERIFY_FAILED, `not every member answered: ${incomplete.map((v) => `${v.group}: ${v.missing.join(", ")}`).join(" | ")}`);
  });
}

// ---------------------------------------------------------------------------------------------
// tokens, events, audit

export function registerTokenCommands(program: Command): void {
  const token = program.command("token").description("API tokens (admin): roles admin, operator, monitor, member");
  withApiOptions(token.command("list").description("list tokens (names and roles)")).action(async (flags: ApiFlags) => {
    const list = await clientOf(flags).listTokens();
    print(flags, list, () => formatTable(["NAME", "ROLE", "CREATED", "BY"], list.map((t) => [t.name, t.role, t.createdAt, t.createdBy])));
  });
  withApiOptions(token.command("create").description("create a token; its secret is printed once").argument("<name>").requiredOption("--role <role>", "admin, operator, monitor or member")).action(
    async (name: string, flags: ApiFlags & { role: string }) => {
      if (!["admin", "operator", "monitor", "member"].includes(flags.role)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--role must be admin, operator, monitor or member, got "${flags.role}"`);
      const t = await clientOf(flags).createToken(name, flags.role as "monitor");
      print(flags, t, () => `token ${t.name} (${t.role}), shown once:\n${t.token}`);
    },
  );
  withApiOptions(token.command("revoke").description("revoke a token").argument("<name>")).action(async (name: string, flags: ApiFlags) => {
    const r = await clientOf(flags).revokeToken(name);
    print(flags, r, () => `revoked token ${r.name}`);
  });
}

export function registerRecordCommands(program: Command): void {
  withApiOptions(
    program
      .command("events")
      .description("cluster events, oldest first")
      .option("--after <seq>", "only events after this seq")
      .option("--limit <n>", "at most this many", "50")
      .option("--follow", "keep printing new events"),
  ).action(async (flags: ApiFlags & { after?: string; limit: string; follow?: boolean }) => {
    const client = clientOf(flags);
    let after = intOption(flags.after, "--after", 0, Number.MAX_SAFE_INTEGER);
    const limit = intOption(flags.limit, "--limit", 1, 1000)!;
    for (;;) {
      const events = await client.events({ afterSeq: after, limit });
      if (flags.json) process.stdout.write(flags.follow ? events.map((e) => `${JSON.stringify(e)}\n`).join("") : `${JSON.stringify(events, null, 2)}\n`);
      else for (const e of events) process.stdout.write(`${e.seq} ${e.at} ${e.kind}${e.group ? ` [${e.group}]` : ""} ${e.message}\n`);
      if (events.length > 0) after = events[events.length - 1]!.seq;
      if (!flags.follow) break;
      if (events.length < limit) await sleep(500);
    }
  });
  withApiOptions(program.command("audit").description("audit records (every command, accepted or refused), newest first").option("--limit <n>", "at most this many", "50")).action(
    async (flags: ApiFlags & { limit: string }) => {
      const records = await clientOf(flags).audit({ limit: intOption(flags.limit, "--limit", 1, 1000) });
      print(flags, records, () =>
        formatTable(
          ["SEQ", "AT", "ACTOR", "COMMAND", "RESULT", "DETAIL"],
          records.map((r) => [r.seq, r.at, r.actor, r.command, r.result, r.result === "ok" ? null : `${r.code}: ${r.message}`]),
          { right: [0] },
        ),
      );
    },
  );
}
