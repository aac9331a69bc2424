// The runtime side of rolling upgrades: versions as members report them, and the driver loop.
//
// - Versions: every heartbeat says which software version the member process runs. The
//   appliance record follows it when that is allowed (a pool appliance runs whatever it runs;
//   a member of an upgrading group may run the upgrade's from or target version); a member
//   that runs any other version is REFUSED: its heartbeats are not counted (so it is failed
//   over like a silent member, never mixed into HyperSync with an unknown version) and the
//   answer says why. That is "mixed versions are refused outside an upgrade" at run time; the
//   model's invariants refuse them in the records.
// - Driver: for each group with an upgrade, nextUpgradeAction (src/orchestrator/upgrade.ts,
//   pure) says what to do next; this loop carries it out through the command queue (every step
//   is an audited command, actor "upgrade") and asks again at the next tick. One action in
//   flight at a time per daemon; a refused action is logged and retried at the next tick.
// - The restart directive rides on the heartbeat answer of the member in its restart step.
//
// Soft state only (rebuilt from heartbeats after a restart of the orchestrator).

import { upgradeGoalOf, type SecurityGroup, type UpgradeState } from "../orchestrator/model.js";
import { nextUpgradeAction, type UpgradeAction, type UpgradeMemberView, type UpgradeVerifyState } from "../orchestrator/upgrade.js";
import type { VerifyView } from "./member-reports.js";
import type { OrchestratorDaemon } from "./orchestrator-daemon.js";

export const UPGRADE_ACTOR = "upgrade";

/** What the driver is doing, in words (the status view's `waitingFor`). */
export function describeAction(action: UpgradeAction): string {
  switch (action.kind) {
    case "wait":
      return action.reason;
    case "pause":
      return `pausing: ${action.reason}`;
    case "step":
      return `${action.appliance} enters its ${action.step} step`;
    case "drain":
      return `draining ${action.appliance} (staged and applied)`;
    case "rejoin":
      return `${action.appliance} rejoins (staged and applied)`;
    case "verify":
      return "verification started";
    case "member-done":
      return `${action.appliance} done`;
    case "finish":
      return "finishing";
  }
}

export interface UpgradeStatusView {
  group: string;
  upgrade: (UpgradeState & { goal: string }) | null;
  /** What the driver is waiting for, or its last action. */
  waitingFor: string | null;
  members: { appliance: string; state: string; version: string; reportedVersion: string | null; restartError: string | null }[];
}

/** The narrow view of the daemon this loop needs (the daemon is its only implementation). */
type Host = Pick<OrchestratorDaemon, "controlPlane" | "clock" | "logger" | "submit" | "submitSystem" | "startVerify" | "verifyStatus" | "state">;

export class UpgradeRunner {
  private readonly reported = new Map<string, string>();
  private readonly restartErrors = new Map<string, string>();
  /** appliance.update commands in flight (appliance -> version), so each is sent once. */
  private readonly updating = new Map<string, string>();
  private readonly refusedLogged = new Set<string>();
  /** The driver's verification round per group: for which member, which round. */
  private readonly verifyRounds = new Map<string, { appliance: string; id: number }>();
  private readonly lastAction = new Map<string, string>();
  private readonly stepSeenMs = new Map<string, number>();
  private running = false;

  constructor(private readonly host: Host) {}

  /** Records what a heartbeat says about versions; returns why it is refused, or null. */
  onHeartbeat(appliance: string, version: string | undefined, restartError: string | undefined): string | null {
    if (version === undefined) return null;
    this.reported.set(appliance, version);
    if (restartError === undefined) this.restartErrors.delete(appliance);
    else this.restartErrors.set(appliance, restartError);
    const model = this.host.controlPlane.current;
    const record = model.appliances.get(appliance);
    if (record === undefined || record.version === version) return null;
    const member = model.members.get(appliance);
    const group = member === undefined ? undefined : model.groups.get(member.group);
    const upgrade = group?.upgrade ?? null;
    if (member === undefined || (upgrade !== null && (version === upgrade.fromVersion || version === upgrade.targetVersion))) {
      this.updateRecord(appliance, version);
      return null;
    }
    const g = group!;
    const reason =
      upgrade === null
        ? `appliance ${appliance} runs ${version} but security group ${g.name} runs ${record.version}; start a rolling upgrade (tandem sg upgrade ${g.name} --version ${version}) or run ${record.version} on it`
        : `appliance ${appliance} runs ${version} but security group ${g.name} is upgrading ${upgrade.fromVersion} -> ${upgrade.targetVersion}`;
    const key = `${appliance}|${version}`;
    if (!this.refusedLogged.has(key)) {
      this.refusedLogged.add(key);
      this.host.logger.warn({ appliance, version, group: g.name, expected: record.version }, `heartbeat refused: ${reason}`);
    }
    return reason;
  }

  private updateRecord(appliance: string, version: string): void {
    if (this.updating.get(appliance) === version) return;
    this.updating.set(appliance, version);
    this.host
      .submit("appliance.update", { id: appliance, version }, `appliance ${appliance} (reports ${version})`)
      .catch((error: unknown) => this.host.logger.warn({ err: error, appliance, version }, "appliance version update refused"))
      .finally(() => {
        if (this.updating.get(appliance) === version) this.updating.delete(appliance);
      });
  }

  /** The restart directive for this appliance's heartbeat answer. */
  restartFor(appliance: string): { version: string } | null {
    const model = this.host.controlPlane.current;
    const member = model.members.get(appliance);
    const u = member === undefined ? null : (model.groups.get(member.group)?.upgrade ?? null);
    if (u === null || u.paused || u.current === null || u.current.appliance !== appliance || u.current.step !== "restart") return null;
    const goal = upgradeGoalOf(u);
    return this.reported.get(appliance) === goal ? null : { version: goal };
  }

  /** One pass of the driver over every upgrading group; at most one action in flight. */
  async tick(nowMs: number): Promise<void> {
    if (this.running || this.host.state !== "active") return;
    this.running = true;
    try {
      const groups = [...this.host.controlPlane.current.groups.values()].filter((g) => g.upgrade !== null);
      for (const g of groups) await this.drive(g, nowMs);
      for (const name of [...this.verifyRounds.keys()]) if (!groups.some((g) => g.name === name)) this.verifyRounds.delete(name);
    } catch (error) {
      this.host.logger.warn({ err: error }, "upgrade driver: action refused (retried at the next tick)");
    } finally {
      this.running = false;
    }
  }

  private inputOf(g: SecurityGroup, nowMs: number): Parameters<typeof nextUpgradeAction>[0] {
    const cp = this.host.controlPlane;
    const u = g.upgrade!;
    const view = cp.view();
    const members: UpgradeMemberView[] = view.members(g.name, nowMs).map((m) => ({
      appliance: m.appliance,
      state: m.state as UpgradeMemberView["state"],
      inTable: m.inTable,
      version: cp.current.appliances.get(m.appliance)?.version ?? "",
      alive: m.alive,
      restartError: this.restartErrors.get(m.appliance) ?? null,
    }));
    const pending = [...cp.current.changes.values()].some((c) => c.group === g.name);
    // Deadlines run on the monotonic clock from when this daemon first saw the step (after a
    // restart of the orchestrator a step gets a fresh deadline: soft state).
    let sinceMs = nowMs;
    if (u.current !== null) {
      const key = `${g.name}|${u.current.appliance}|${u.current.step}|${u.current.since}`;
      sinceMs = this.stepSeenMs.get(key) ?? nowMs;
      if (!this.stepSeenMs.has(key)) {
        for (const k of this.stepSeenMs.keys()) if (k.startsWith(`${g.name}|`)) this.stepSeenMs.delete(k);
        this.stepSeenMs.set(key, nowMs);
      }
    }
    return { group: g.name, upgrade: u, nowMs, stepSinceMs: sinceMs, members, busy: g.transition !== null || pending, verify: this.verifyOf(g) };
  }

  private verifyOf(g: SecurityGroup): UpgradeVerifyState {
    const u = g.upgrade!;
    const round = this.verifyRounds.get(g.name);
    if (round === undefined || u.current === null || u.current.step !== "verify" || round.appliance !== u.current.appliance) return { kind: "none" };
    let v: VerifyView;
    try {
      v = this.host.verifyStatus(g.name, round.id);
    } catch {
      // The round is gone (kept rounds are bounded): start another.
      this.verifyRounds.delete(g.name);
      return { kind: "none" };
    }
    if (!v.done) return { kind: "running" };
    if (v.timedOut) {
      // A member did not answer in time: ask again (the step's deadline bounds the retries).
      this.verifyRounds.delete(g.name);
      return { kind: "none" };
    }
    const buckets = v.mismatches.reduce((n, m) => n + m.count, 0);
    return buckets === 0 ? { kind: "clean" } : { kind: "differs", buckets };
  }

  private async drive(g: SecurityGroup, nowMs: number): Promise<void> {
    const action = nextUpgradeAction(this.inputOf(g, nowMs));
    this.note(g.name, action);
    const d = this.host;
    switch (action.kind) {
      case "wait":
        return;
      case "step":
        await d.submitSystem("upgrade.step", { group: g.name, current: { appliance: action.appliance, step: action.step } }, UPGRADE_ACTOR);
        return;
      case "member-done":
        this.verifyRounds.delete(g.name);
        await d.submitSystem("upgrade.step", { group: g.name, current: null }, UPGRADE_ACTOR);
        return;
      case "pause":
        this.host.logger.warn({ group: g.name, reason: action.reason }, "upgrade paused");
        await d.submitSystem("upgrade.step", { group: g.name, pause: action.reason }, UPGRADE_ACTOR);
        return;
      case "drain":
        await d.submit("sg.drain", { group: g.name, appliance: action.appliance }, UPGRADE_ACTOR);
        await d.submit("changes.apply", { group: g.name }, UPGRADE_ACTOR);
        return;
      case "rejoin":
        await d.submit("sg.assign", { group: g.name, appliance: action.appliance }, UPGRADE_ACTOR);
        await d.submit("changes.apply", { group: g.name }, UPGRADE_ACTOR);
        return;
      case "verify": {
        const round = d.startVerify(g.name);
        this.verifyRounds.set(g.name, { appliance: action.appliance, id: round.id });
        return;
      }
      case "finish":
        await d.submit("sg.upgrade.finish", { group: g.name }, UPGRADE_ACTOR);
        return;
    }
  }

  private note(group: string, action: UpgradeAction): void {
    const text = describeAction(action);
    if (this.lastAction.get(group) !== text) {
      this.lastAction.set(group, text);
      if (action.kind !== "wait") this.host.logger.info({ group, action: action.kind, ...("appliance" in action ? { appliance: action.appliance } : {}) }, "upgrade step");
    }
  }

  status(group: string): UpgradeStatusView {
    const cp = this.host.controlPlane;
    const g = cp.current.groups.get(group);
    const members = cp.view().members(group, this.host.clock.nowMs()); // SG_NOT_FOUND
    const u = g?.upgrade ?? null;
    return {
      group,
      upgrade: u === null ? null : { ...u, goal: upgradeGoalOf(u) },
      waitingFor: u === null ? null : (this.lastAction.get(group) ?? null),
      members: members.map((m) => ({
        appliance: m.appliance,
        state: m.state,
        version: cp.current.appliances.get(m.appliance)?.version ?? "",
        reportedVersion: this.reported.get(m.appliance) ?? null,
        restartError: this.restartErrors.get(m.appliance) ?? null,
      })),
    };
  }
}
