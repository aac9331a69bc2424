// What member processes report beyond the control plane's heartbeat figures: their data-plane
// counters (packets, drops by reason, corrections, sync lag), kept for /metrics and `tandem
// monitor`, and the rounds of `tandem verify` (owner/backup digest comparison, done by the
// members; the orchestrator only asks and collects).
//
// Everything here is soft state of the daemon: never persisted, rebuilt from the next reports
// after a restart. Bounds: one counter record per appliance (forgotten with the appliance),
// at most DROP_REASONS_MAX drop reasons per member, at most VERIFY_ROUNDS_KEPT rounds per
// group, at most MISMATCHES_KEPT bucket numbers kept per member report.

import { ErrorCode, TandemError } from "../stdx/errors.js";

export const DROP_REASONS_MAX = 64;
export const VERIFY_ROUNDS_KEPT = 8;
export const MISMATCHES_KEPT = 1000;
export const VERIFY_TIMEOUT_MS_DEFAULT = 10_000;

/** Counters a member may send with a heartbeat (all optional; totals since the member started). */
export interface MemberCountersInput {
  packets?: number;
  drops?: Record<string, number>;
  corrections?: number;
  /** Age of the oldest sync record not yet acknowledged by its backup. */
  syncLagMs?: number;
  syncRecordsSent?: number;
  /** HyperSync datagrams sent (records / datagrams: how full the batching makes them). */
  syncDatagramsSent?: number;
  syncRecordsApplied?: number;
  badDatagrams?: number;
  /** Time the last re-protection after a failure took. */
  reprotectMs?: number;
}

export interface MemberCounters {
  packets: number | null;
  drops: Record<string, number>;
  corrections: number | null;
  syncLagMs: number | null;
  syncRecordsSent: number | null;
  syncDatagramsSent: number | null;
  syncRecordsApplied: number | null;
  badDatagrams: number | null;
  reprotectMs: number | null;
  atMs: number;
}

export interface VerifyView {
  id: number;
  group: string;
  epoch: number;
  startedAt: string;
  /** Members asked to compare their buckets with their backups. */
  expected: string[];
  reported: string[];
  missing: string[];
  /** 0..1, for progress bars. */
  progress: number;
  /** Every expected member reported, or the round timed out. */
  done: boolean;
  timedOut: boolean;
  bucketsChecked: number;
  /** Buckets whose owner and backup digests differ, per reporting member (at most MISMATCHES_KEPT each). */
  mismatches: { member: string; count: number; buckets: number[] }[];
}

interface Round {
  id: number;
  group: string;
  epoch: number;
  startedAt: string;
  startedAtMs: number;
  deadlineMs: number;
  expected: string[];
  reports: Map<string, { bucketsChecked: number; count: number; buckets: number[] }>;
}

export class MemberReports {
  private readonly counters = new Map<string, MemberCounters>();
  private readonly rounds = new Map<string, Round[]>();
  private roundIdNext = 1;

  constructor(readonly verifyTimeoutMs: number = VERIFY_TIMEOUT_MS_DEFAULT) {}

  record(appliance: string, input: MemberCountersInput | undefined, nowMs: number): void {
    if (input === undefined) return;
    const drops: Record<string, number> = {};
    let reasons = 0;
    for (const [reason, count] of Object.entries(input.drops ?? {})) {
      if (reasons++ >= DROP_REASONS_MAX) break;
      drops[reason] = count;
    }
    this.counters.set(appliance, {
      packets: input.packets ?? null,
      drops,
      corrections: input.corrections ?? null,
      syncLagMs: input.syncLagMs ?? null,
      syncRecordsSent: input.syncRecordsSent ?? null,
      syncDatagramsSent: input.syncDatagramsSent ?? null,
      syncRecordsApplied: input.syncRecordsApplied ?? null,
      badDatagrams: input.badDatagrams ?? null,
      reprotectMs: input.reprotectMs ?? null,
      atMs: nowMs,
    });
  }

  countersOf(appliance: string): MemberCounters | null {
    return this.counters.get(appliance) ?? null;
  }

  /** Drops what is kept for appliances that no longer exist. */
  retain(exists: (appliance: string) => boolean): void {
    for (const a of [...this.counters.keys()]) if (!exists(a)) this.counters.delete(a);
  }

  /** Starts a round for `group` (or returns the one still running). */
  startVerify(group: string, epoch: number, members: readonly string[], nowMs: number, nowIso: string): VerifyView {
    const list = this.rounds.get(group) ?? [];
    const last = list[list.length - 1];
    if (last !== undefined && !this.isDone(last, nowMs)) return this.viewOf(last, nowMs);
    if (members.length === 0) {
      throw new TandemError(ErrorCode.INVALID_STATE, `security group ${group} has no serving members to verify`, { group });
    }
    const round: Round = {
      id: this.roundIdNext++,
      group,
      epoch,
      startedAt: nowIso,
      startedAtMs: nowMs,
      deadlineMs: nowMs + this.verifyTimeoutMs,
      expected: [...members].sort(),
      reports: new Map(),
    };
    list.push(round);
    if (list.length > VERIFY_ROUNDS_KEPT) list.splice(0, list.length - VERIFY_ROUNDS_KEPT);
    this.rounds.set(group, list);
    return this.viewOf(round, nowMs);
  }

  /** The running round `member` of `group` still has to answer, or null. */
  pendingFor(group: string, member: string, nowMs: number): { id: number; epoch: number } | null {
    const list = this.rounds.get(group);
    const last = list?.[list.length - 1];
    if (last === undefined || this.isDone(last, nowMs)) return null;
    if (!last.expected.includes(member) || last.reports.has(member)) return null;
    return { id: last.id, epoch: last.epoch };
  }

  report(group: string, member: string, id: number, bucketsChecked: number, mismatched: readonly number[], nowMs: number): VerifyView {
    const round = this.find(group, id);
    if (!round.expected.includes(member)) {
      throw new TandemError(ErrorCode.INVALID_STATE, `verification #${id} of ${group} did not ask ${member}`, { group, member, id });
    }
    if (!round.reports.has(member) && !this.isDone(round, nowMs)) {
      round.reports.set(member, { bucketsChecked, count: mismatched.length, buckets: mismatched.slice(0, MISMATCHES_KEPT) });
    }
    return this.viewOf(round, nowMs);
  }

  verifyView(group: string, id: number, nowMs: number): VerifyView {
    return this.viewOf(this.find(group, id), nowMs);
  }

  forgetGroup(group: string): void {
    this.rounds.delete(group);
  }

  private find(group: string, id: number): Round {
    const round = this.rounds.get(group)?.find((r) => r.id === id);
    if (round === undefined) throw new TandemError(ErrorCode.NOT_FOUND, `no verification #${id} of security group ${group} (only the last ${VERIFY_ROUNDS_KEPT} are kept)`, { group, id });
    return round;
  }

  private isDone(round: Round, nowMs: number): boolean {
    return round.reports.size === round.expected.length || nowMs >= round.deadlineMs;
  }

  private viewOf(round: Round, nowMs: number): VerifyView {
    const reported = round.expected.filter((m) => round.reports.has(m));
    const complete = reported.length === round.expected.length;
    let bucketsChecked = 0;
    const mismatches: VerifyView["mismatches"] = [];
    for (const m of reported) {
      const r = round.reports.get(m)!;
      bucketsChecked += r.bucketsChecked;
      if (r.count > 0) mismatches.push({ member: m, count: r.count, buckets: r.buckets });
    }
    return {
      id: round.id,
      group: round.group,
      epoch: round.epoch,
      startedAt: round.startedAt,
      expected: round.expected,
      reported,
      missing: round.expected.filter((m) => !round.reports.has(m)),
      progress: round.expected.length === 0 ? 1 : reported.length / round.expected.length,
      done: complete || nowMs >= round.deadlineMs,
      timedOut: !complete && nowMs >= round.deadlineMs,
      bucketsChecked,
      mismatches,
    };
  }
}
