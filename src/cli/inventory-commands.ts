// `tandem appliance list|show|add|remove`, `tandem sg create|list|show|assign|unassign|drain|
// delete`, `tandem changes show|apply|discard`, `tandem policy show|apply -f FILE`: the
// cluster's configuration through the API client. Tables for people, --json for scripts;
// errors leave as TandemErrors, which main.ts turns into a message and the exit status.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { TandemClient } from "../api/client.js";
import type { ApplyResult, ChangesView, GroupInput, SgInterfaceInput, StageResult } from "../api/types.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { clientOf, intOption, numberOption, print, withApiOptions, type ApiFlags } from "./api-common.js";
import { formatAutoscale } from "./autoscale-format.js";
import { ProgressBar } from "./progress.js";
import { formatFields, formatTable } from "./table.js";
import { registerUpgradeCommand } from "./upgrade.js";
import { lastEventSeq, waitForTransition, type TransitionOutcome } from "./transition-wait.js";

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new TandemError(ErrorCode.FILE_NOT_FOUND, `${file}: ${(error as NodeJS.ErrnoException).code ?? "error"}: cannot read file`, { file });
  }
}

// ---------------------------------------------------------------------------------------------
// appliance

export function registerApplianceCommands(program: Command): void {
  const appliance = program.command("appliance").description("the inventory of appliances (machines that can run a member)");

  withApiOptions(appliance.command("list").description("list appliances with their group, state and liveness")).action(async (flags: ApiFlags) => {
    const list = await clientOf(flags).listAppliances();
    print(flags, list, () =>
      formatTable(
        ["ID", "MODEL", "CORES", "MEMORY-MB", "VERSION", "ADDRESS", "GROUP", "STATE", "ALIVE"],
        list.map((a) => [a.id, a.model, a.cores, a.memoryMb, a.version, a.address, a.group, a.state, a.alive]),
      ),
    );
  });

  withApiOptions(appliance.command("show").description("one appliance").argument("<id>")).action(async (id: string, flags: ApiFlags) => {
    const a = await clientOf(flags).getAppliance(id);
    print(flags, a, () =>
      formatFields([
        ["id", a.id],
        ["model", a.model],
        ["cores", a.cores],
        ["memory", `${a.memoryMb} MB`],
        ["version", a.version],
        ["address", a.address],
        ["group", a.group],
        ["state", a.state],
        ["alive", a.alive],
        ["registered", a.registeredAt],
      ]),
    );
  });

  withApiOptions(
    appliance
      .command("add")
      .description("register an appliance; it joins the pool")
      .argument("<id>", "id or serial number")
      .requiredOption("--model <model>", "hardware model (members of a group share one)")
      .requiredOption("--cores <n>", "CPU cores (the default weight)")
      .requiredOption("--memory-mb <n>", "memory in MB")
      // Not --version: commander gives that to `tandem --version` wherever it appears.
      .requiredOption("--sw-version <version>", "software version it runs")
      .requiredOption("--address <host:port>", "where its member process listens"),
  ).action(async (id: string, flags: ApiFlags & { model: string; cores: string; memoryMb: string; swVersion: string; address: string }) => {
    const a = await clientOf(flags).addAppliance({
      id,
      model: flags.model,
      cores: intOption(flags.cores, "--cores", 1, 4096)!,
      memoryMb: intOption(flags.memoryMb, "--memory-mb", 1, 1 << 30)!,
      version: flags.swVersion,
      address: flags.address,
    });
    print(flags, a, () => `added appliance ${a.id} (${a.model}, ${a.cores} cores, ${a.version}) to the pool`);
  });

  withApiOptions(appliance.command("remove").description("remove an appliance from the inventory (admin; it must be in the pool)").argument("<id>")).action(
    async (id: string, flags: ApiFlags) => {
      const r = await clientOf(flags).removeAppliance(id);
      print(flags, r, () => `removed appliance ${r.id}`);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// sg

/** "name=lan,vni=100,site=10.0.0.2,gateway=198.18.0.1/24[,mac=02:..]" */
export function parseInterfaceSpec(spec: string): SgInterfaceInput {
  const fields = new Map<string, string>();
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--interface "${spec}": expected key=value pairs separated by commas`);
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  for (const key of fields.keys()) {
    if (!["name", "vni", "site", "port", "gateway", "mac"].includes(key)) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--interface "${spec}": unknown key "${key}" (name, vni, site, port, gateway, mac)`);
  }
  const need = (key: string): string => {
    const v = fields.get(key);
    if (v === undefined || v.length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--interface "${spec}": ${key}= is required`);
    return v;
  };
  const out: SgInterfaceInput = { name: need("name"), vni: intOption(need("vni"), "--interface vni", 1, 0xffffff)!, siteEndpoint: need("site"), gateway: need("gateway") };
  if (fields.has("mac")) out.mac = fields.get("mac")!;
  if (fields.has("port")) out.sitePort = intOption(fields.get("port")!, "--interface port", 1, 65535)!;
  return out;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerSgCommands(program: Command): void {
  const sg = program.command("sg").description("security groups: members that act as one gateway");
  registerUpgradeCommand(sg);

  withApiOptions(
    sg
      .command("create")
      .description("create a security group")
      .argument("<name>")
      .option("--interface <spec>", "name=N,vni=V,site=IP,gateway=IP/PREFIX[,mac=M] (repeatable)", collect, [])
      .option("--policy <file>", "policy file (YAML or JSON)")
      .option("--allow-mixed-models", "let members of different models share the group")
      .option("--bucket-count <n>", "buckets (a power of two; default automatic)")
      .option("--seed <n>", "flow hash seed (default random)"),
  ).action(async (name: string, flags: ApiFlags & { interface: string[]; policy?: string; allowMixedModels?: boolean; bucketCount?: string; seed?: string }) => {
    const input: GroupInput = { name };
    if (flags.interface.length > 0) input.interfaces = flags.interface.map(parseInterfaceSpec);
    if (flags.policy !== undefined) input.policyText = readText(flags.policy);
    if (flags.allowMixedModels) input.allowMixedModels = true;
    const bucketCount = intOption(flags.bucketCount, "--bucket-count", 1, 1 << 30);
    if (bucketCount !== undefined) input.bucketCount = bucketCount;
    const seed = intOption(flags.seed, "--seed", 0, 0xffffffff);
    if (seed !== undefined) input.seed = seed;
    const g = await clientOf(flags).createGroup(input);
    print(flags, g, () => `created security group ${g.name} (${g.interfaces} interfaces, ${g.rules} rules, ${g.bucketCount} buckets)`);
  });

  withApiOptions(sg.command("list").description("list security groups")).action(async (flags: ApiFlags) => {
    const groups = await clientOf(flags).listGroups();
    print(flags, groups, () =>
      formatTable(
        ["NAME", "MEMBERS", "UP", "EPOCH", "BUCKETS", "RULES", "PENDING", "TRANSITION"],
        groups.map((g) => [g.name, g.members, g.up, g.epoch, g.bucketCount, g.rules, g.pendingChanges, g.transition === null ? null : `${g.transition.kind} #${g.transition.seq} ${Math.round(g.transition.progress * 100)}%`]),
      ),
    );
  });

  withApiOptions(sg.command("show").description("a security group: settings, members, pending changes").argument("<name>")).action(async (name: string, flags: ApiFlags) => {
    const client = clientOf(flags);
    const [g, members, changes] = await Promise.all([client.getGroup(name), client.listMembers(name), client.changes(name)]);
    print(flags, { group: g, members, changes: changes.changes }, () => {
      let out = formatFields([
        ["name", g.name],
        ["epoch", g.epoch],
        ["buckets", g.bucketCount],
        ["policy", `revision ${g.policyRevision}, ${g.policy.rules.length} rules`],
        ["interfaces", g.interfaces.map((i) => `${i.name} (vni ${i.vni}, ${i.gateway})`).join(", ") || null],
        ["mixed models", g.allowMixedModels],
        ["weights set by", g.weightsSource],
        ["upgrade", g.upgrade === null ? null : `${g.upgrade.fromVersion} -> ${g.upgrade.targetVersion}`],
        ["transition", g.transition === null ? null : `${g.transition.kind} #${g.transition.seq} ${Math.round(g.transition.progress * 100)}%`],
      ]);
      out += `\nMembers\n${formatTable(
        ["APPLIANCE", "STATE", "WEIGHT", "OWNED", "BACKUPS", "ALIVE", "RTT MS", "DOWN AFTER MS", "SINCE"],
        members.map((m) => [
          m.appliance,
          m.state,
          m.weight,
          m.owned,
          m.backups,
          m.alive,
          m.detection.srttMs === null ? null : `${m.detection.srttMs} ±${m.detection.rttvarMs}`,
          m.detection.downAfterMs,
          m.since,
        ]),
      )}`;
      if (changes.changes.length > 0) out += `\nPending changes (tandem changes show ${name})\n${changesTable(changes)}`;
      return out;
    });
  });

  withApiOptions(
    sg
      .command("assign")
      .description("stage the assignment of pool appliances to the group (apply with tandem changes apply)")
      .argument("<name>")
      .argument("<appliances...>")
      .option("--weight <w>", "weight override (default: its cores)"),
  ).action(async (name: string, appliances: string[], flags: ApiFlags & { weight?: string }) => {
    const client = clientOf(flags);
    const weight = numberOption(flags.weight, "--weight", Number.MIN_VALUE, 1_000_000);
    const staged: StageResult[] = [];
    for (const a of appliances) staged.push(await client.assign(name, a, weight));
    print(flags, staged, () => `staged: assign ${appliances.join(", ")} to ${name} (${staged[staged.length - 1]!.pending} pending; tandem changes apply ${name})`);
  });

  withApiOptions(sg.command("unassign").description("stage members' return to the pool").argument("<name>").argument("<appliances...>")).action(
    async (name: string, appliances: string[], flags: ApiFlags) => {
      const client = clientOf(flags);
      const staged: StageResult[] = [];
      for (const a of appliances) staged.push(await client.unassign(name, a));
      print(flags, staged, () => `staged: unassign ${appliances.join(", ")} from ${name} (${staged[staged.length - 1]!.pending} pending; tandem changes apply ${name})`);
    },
  );

  withApiOptions(
    sg
      .command("drain")
      .description("drain a member (make-before-break: its buckets move to the others first), then wait for it")
      .argument("<name>")
      .argument("<appliance>")
      .option("--stage", "only stage the drain (apply later with tandem changes apply)")
      .option("--no-wait", "apply but do not wait for the transition")
      .option("--timeout <seconds>", "give up waiting after this long", "300"),
  ).action(async (name: string, appliance: string, flags: ApiFlags & { stage?: boolean; wait: boolean; timeout: string }) => {
    const client = clientOf(flags);
    if (!flags.stage) {
      const pending = (await client.changes(name)).changes;
      if (pending.length > 0) {
        throw new TandemError(
          ErrorCode.CHANGE_PENDING,
          `security group ${name} has ${pending.length} other pending changes (${pending.map((c) => `${c.kind} ${c.appliance}`).join(", ")}); apply or discard them first, or add --stage`,
          { group: name },
        );
      }
    }
    const staged = await client.drain(name, appliance);
    if (flags.stage) {
      print(flags, staged, () => `staged: drain ${appliance} in ${name} (tandem changes apply ${name})`);
      return;
    }
    await applyAndWait(client, name, flags);
  });

  withApiOptions(
    sg
      .command("weight")
      .description("stage a member's weight override (default: its cores; apply with tandem changes apply); --auto: back to automatic weights")
      .argument("<name>")
      .argument("[appliance]")
      .argument("[weight]")
      .option("--auto", "stage every override back to cores; once applied, weights are automatic again (measured capacity when models differ)"),
  ).action(async (name: string, appliance: string | undefined, weightText: string | undefined, flags: ApiFlags & { auto?: boolean }) => {
    if (flags.auto === true) {
      if (appliance !== undefined) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--auto applies to the whole group: give no appliance or weight");
      const r = await clientOf(flags).autoWeights(name);
      print(flags, r, () =>
        r.staged > 0 ? `staged: ${r.staged} weights back to cores in ${name} (${r.pending} pending; tandem changes apply ${name})` : `weights of ${name} are automatic (${r.weightsSource})`,
      );
      return;
    }
    if (appliance === undefined || weightText === undefined) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "give <appliance> and <weight>, or --auto");
    const weight = numberOption(weightText, "<weight>", Number.MIN_VALUE, 1_000_000)!;
    const staged = await clientOf(flags).setWeight(name, appliance, weight);
    print(flags, staged, () => `staged: weight ${weight} for ${appliance} in ${name} (${staged.pending} pending; tandem changes apply ${name})`);
  });

  withApiOptions(sg.command("delete").description("delete an empty security group (admin)").argument("<name>")).action(async (name: string, flags: ApiFlags) => {
    const r = await clientOf(flags).deleteGroup(name);
    print(flags, r, () => `deleted security group ${r.name}`);
  });

  const autoscale = sg.command("autoscale").description("the group's auto-scaling rules (pool appliances join and leave with the load)");
  withApiOptions(autoscale.command("show").description("print the group's auto-scaling rules, the last decision with its reason, and the load window").argument("<name>")).action(async (name: string, flags: ApiFlags) => {
    const view = await clientOf(flags).groupAutoscale(name);
    print(flags, view, () => formatAutoscale(view));
  });
  withApiOptions(
    autoscale
      .command("set")
      .description("change the group's auto-scaling rules (only the options given)")
      .argument("<name>")
      .option("--enable", "turn auto-scaling on")
      .option("--disable", "turn auto-scaling off")
      .option("--min <n>", "fewest members")
      .option("--max <n>", "most members")
      .option("--cpu-high <pct>", "add a member above this mean CPU")
      .option("--cpu-low <pct>", "remove one below this mean CPU (hysteresis: below --cpu-high)")
      .option("--connections-high <n>", "add a member above this many connections per member")
      .option("--cooldown-ms <ms>", "at least this long between two actions (the load window is a tenth of it, 1-30 s)")
      .option("--priority <n>", "groups wanting the same spare: the higher first (-1000..1000, default 0)"),
  ).action(async (name: string, flags: ApiFlags & { enable?: boolean; disable?: boolean; min?: string; max?: string; cpuHigh?: string; cpuLow?: string; connectionsHigh?: string; cooldownMs?: string; priority?: string }) => {
    if (flags.enable === true && flags.disable === true) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "--enable and --disable exclude each other");
    const rules: Record<string, number | boolean> = {};
    if (flags.enable === true) rules.enabled = true;
    if (flags.disable === true) rules.enabled = false;
    if (flags.min !== undefined) rules.minMembers = intOption(flags.min, "--min", 1, 4096)!;
    if (flags.max !== undefined) rules.maxMembers = intOption(flags.max, "--max", 1, 4096)!;
    if (flags.cpuHigh !== undefined) rules.cpuHighPct = numberOption(flags.cpuHigh, "--cpu-high", 1, 100)!;
    if (flags.cpuLow !== undefined) rules.cpuLowPct = numberOption(flags.cpuLow, "--cpu-low", 0, 99)!;
    if (flags.connectionsHigh !== undefined) rules.connectionsPerMemberHigh = intOption(flags.connectionsHigh, "--connections-high", 1, Number.MAX_SAFE_INTEGER)!;
    if (flags.cooldownMs !== undefined) rules.cooldownMs = intOption(flags.cooldownMs, "--cooldown-ms", 0, 86_400_000)!;
    if (flags.priority !== undefined) rules.priority = priorityOption(flags.priority);
    if (Object.keys(rules).length === 0) throw new TandemError(ErrorCode.INVALID_ARGUMENT, "nothing to change: give at least one option (see --help)");
    const client = clientOf(flags);
    await client.updateGroup(name, { autoscale: rules });
    const g = (await client.getGroup(name)) as unknown as { autoscale: Record<string, unknown> };
    print(flags, g.autoscale, () => formatFields(Object.entries(g.autoscale).map(([k, v]) => [k, v as string | number | boolean])));
  });
}

/** --priority: an integer, negative allowed (intOption takes digits only). */
function priorityOption(value: string): number {
  const n = Number(value);
  if (!/^-?[0-9]+$/.test(value.trim()) || n < -1000 || n > 1000) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `--priority must be an integer from -1000 to 1000, got "${value}"`);
  return n;
}

// ---------------------------------------------------------------------------------------------
// changes

function changesTable(view: ChangesView): string {
  return formatTable(
    ["APPLIANCE", "CHANGE", "WEIGHT", "STAGED-BY", "STAGED-AT"],
    view.changes.map((c) => [c.appliance, c.kind, c.weight, c.stagedBy, c.stagedAt]),
  );
}

function formatChanges(view: ChangesView): string {
  let out = `Pending changes of ${view.group}\n${changesTable(view)}`;
  const after = new Map((view.pending?.members ?? []).map((m) => [m.appliance, m]));
  const ids = [...new Set([...view.applied.members.map((m) => m.appliance), ...after.keys()])].sort();
  const before = new Map(view.applied.members.map((m) => [m.appliance, m]));
  out += `\nApplied (epoch ${view.applied.epoch}) -> after apply${view.pending ? ` (epoch ${view.pending.epoch})` : ""}\n`;
  out += formatTable(
    ["APPLIANCE", "STATE", "CHANGE", "WEIGHT", "OWNED", "AFTER-WEIGHT", "AFTER-OWNED"],
    ids.map((id) => {
      const b = before.get(id);
      const a = after.get(id);
      return [id, b?.state ?? a?.state ?? "UNASSIGNED", b?.change ?? a?.change, b?.weight, b?.owned, a?.weight, a?.owned ?? (view.pending ? 0 : null)];
    }),
  );
  if (view.pending !== null) {
    out += `moves ${view.pending.movedBuckets} buckets${view.pending.transition ? `, make-before-break: ${view.pending.fills} fills first` : ""}\n`;
  }
  if (view.problem !== null) out += `cannot apply: ${view.problem.message} (${view.problem.code})\n`;
  if (view.transition !== null) out += `running: ${view.transition.kind} #${view.transition.seq}, ${Math.round(view.transition.progress * 100)}%\n`;
  return out;
}

interface WaitFlags extends ApiFlags {
  wait: boolean;
  timeout: string;
}

/** Applies the group's pending changes; prints the acknowledgement at once, then follows the transition. */
async function applyAndWait(client: TandemClient, group: string, flags: WaitFlags): Promise<void> {
  const timeoutMs = intOption(flags.timeout, "--timeout", 1, 86_400)! * 1000;
  const afterSeq = flags.wait ? await lastEventSeq(client) : 0;
  const applied: ApplyResult = await client.applyChanges(group);
  const t = applied.transition;
  const ack = `applied ${applied.applied} change${applied.applied === 1 ? "" : "s"} to ${group}: ${t === null ? `epoch ${applied.epoch} routes` : `${t.kind} #${t.seq} started from epoch ${applied.epoch}`}`;
  if (!flags.json) process.stdout.write(`${ack}\n`);
  let outcome: TransitionOutcome | null = null;
  if (flags.wait && t !== null && t.running) {
    // The bar goes to stderr with --json, so stdout stays one JSON document.
    outcome = await waitForTransition(client, applied, afterSeq, new ProgressBar(flags.json ? process.stderr : process.stdout), timeoutMs);
  }
  print(flags, { applied, outcome }, () => (outcome === null ? "" : `done: ${outcome.kind} #${outcome.seq} completed, epoch ${outcome.epoch} routes`));
}

export function registerChangesCommands(program: Command): void {
  const changes = program.command("changes").description("staged topology changes: show, apply as one unit, or discard");

  withApiOptions(changes.command("show").description("pending changes beside the applied table").argument("<group>")).action(async (group: string, flags: ApiFlags) => {
    const view = await clientOf(flags).changes(group);
    print(flags, view, () => formatChanges(view));
  });

  withApiOptions(
    changes
      .command("apply")
      .description("apply the group's pending changes as one epoch change and follow the transition")
      .argument("<group>")
      .option("--no-wait", "do not wait for the transition")
      .option("--timeout <seconds>", "give up waiting after this long", "300"),
  ).action(async (group: string, flags: WaitFlags) => {
    await applyAndWait(clientOf(flags), group, flags);
  });

  withApiOptions(changes.command("discard").description("discard pending changes").argument("<group>").option("--appliance <id>", "only this appliance's change")).action(
    async (group: string, flags: ApiFlags & { appliance?: string }) => {
      const r = await clientOf(flags).discardChanges(group, flags.appliance);
      print(flags, r, () => `discarded ${r.discarded} pending change${r.discarded === 1 ? "" : "s"} of ${group}`);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// policy

export function registerPolicyCommands(program: Command): void {
  const policy = program.command("policy").description("a security group's policy (rules for new connections)");

  withApiOptions(policy.command("show").description("print the group's policy as YAML").argument("<group>")).action(async (group: string, flags: ApiFlags) => {
    const p = await clientOf(flags).getPolicy(group);
    // Loaded here only: the YAML writer is the heaviest import of the management commands.
    const { policyToText } = await import("../engine/policy.js");
    print(flags, p, () => {
      const hits = p.policy.rules.map((r, i) => `#   ${r.name ?? `rule ${i + 1}`}: ${p.hits?.[r.name ?? ""] ?? 0}`);
      return `# ${group}: policy revision ${p.policyRevision}\n${policyToText(p.policy)}# hits (summed over members)\n${hits.join("\n")}\n`;
    });
  });

  withApiOptions(
    policy
      .command("apply")
      .description("apply a policy file (YAML or JSON) to the group")
      .argument("<group>")
      .requiredOption("-f, --file <file>", "policy file"),
  ).action(async (group: string, flags: ApiFlags & { file: string }) => {
    const r = await clientOf(flags).applyPolicy(group, { policyText: readText(flags.file) });
    print(flags, r, () => `applied policy revision ${r.policyRevision} (${r.rules} rules) to ${r.group}`);
  });
}
