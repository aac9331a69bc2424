// Prometheus metrics (/metrics, text format), computed at scrape time from the control plane's
// view and the members' reported counters: per security group and member connections, packets,
// drops by reason, corrections, sync lag, state; per group epoch, transition progress, pending
// changes; for the orchestrator its role, store revision and command queue; for its distributor
// its utilization, frames/s and whether it limits throughput (distributor-watch.ts).
//
// Invariants: one registry per daemon (never prom-client's global one, so two daemons in one
// process do not mix); every scrape resets every series first, so a member or group that is
// gone stops being reported instead of freezing at its last value. Member counters are the
// members' own totals relayed as they were last reported (a member restart resets them, which
// Prometheus' rate() handles as a counter reset).

import { Counter, Gauge, Registry } from "prom-client";
import { MEMBER_STATES } from "../orchestrator/index.js";
import type { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";

export interface Metrics {
  contentType: string;
  render(): Promise<string>;
}

export function createMetrics(d: OrchestratorDaemon): Metrics {
  const registry = new Registry();
  const GM = ["group", "member"] as const;
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Gauge<L>({ name, help, labelNames, registers: [registry] });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) => new Counter<L>({ name, help, labelNames, registers: [registry] });

  const m = {
    active: gauge("tandem_orchestrator_active", "1 when this orchestrator is the active one, 0 on a standby", []),
    revision: gauge("tandem_orchestrator_store_revision", "Revision of the last committed store mutation", []),
    queueWaiting: gauge("tandem_orchestrator_queue_waiting", "Commands waiting in the mutation queue", []),
    commands: counter("tandem_orchestrator_commands_total", "Commands and health ticks by result (ok, refused, failed, ticks)", ["result"]),
    groupEpoch: gauge("tandem_group_epoch", "Epoch of the routing table", ["group"]),
    groupMembers: gauge("tandem_group_members", "Members per state", ["group", "state"]),
    groupPending: gauge("tandem_group_pending_changes", "Staged changes not applied yet", ["group"]),
    groupTransition: gauge("tandem_group_transition_progress", "Progress of the running transition, 0..1 (absent: none)", ["group", "kind"]),
    groupConnections: gauge("tandem_group_connections", "Connections reported by the group's members", ["group"]),
    state: gauge("tandem_member_state", "1 for the member's current state", [...GM, "state"]),
    alive: gauge("tandem_member_alive", "1 when the member heartbeats on time", GM),
    heartbeatAge: gauge("tandem_member_heartbeat_age_seconds", "Time since the member's last heartbeat", GM),
    owned: gauge("tandem_member_owned_buckets", "Buckets the member owns in the routing table", GM),
    backups: gauge("tandem_member_backup_buckets", "Buckets the member backs up in the routing table", GM),
    cpu: gauge("tandem_member_cpu_percent", "CPU use the member reported", GM),
    connections: gauge("tandem_member_connections", "Connections the member holds", GM),
    pps: gauge("tandem_member_packets_per_second", "Packets per second the member reported", GM),
    packets: counter("tandem_member_packets_total", "Packets the member processed", GM),
    drops: counter("tandem_member_drops_total", "Packets the member dropped, by reason", [...GM, "reason"]),
    corrections: counter("tandem_member_corrections_total", "Packets forwarded to their bucket's owner (correction)", GM),
    syncLag: gauge("tandem_member_sync_lag_seconds", "Age of the oldest sync record its backup has not acknowledged", GM),
    syncSent: counter("tandem_member_sync_records_sent_total", "HyperSync records sent", GM),
    syncDatagrams: counter("tandem_member_sync_datagrams_sent_total", "HyperSync datagrams sent (records per datagram: the batching)", GM),
    syncApplied: counter("tandem_member_sync_records_applied_total", "HyperSync records applied", GM),
    badDatagrams: counter("tandem_member_sync_bad_datagrams_total", "Sync datagrams dropped (authentication, stale epoch)", GM),
    distributorUtilization: gauge("tandem_distributor_utilization", "Busy time / wall time of the distributor's thread over its last load sample, 0..1", []),
    distributorFps: gauge("tandem_distributor_frames_per_second", "Datagrams the distributor handled per second over its last load sample", []),
    distributorLimited: gauge("tandem_distributor_limited", "1 while the distributor, not the members, limits throughput (utilization > 0.85 for 10 s with members' mean CPU < 60%)", []),
    ruleHits: counter("tandem_rule_hits_total", "Packets that matched a policy rule (summed over the group's members, since each loaded the policy)", ["group", "rule"]),
  };

  function collect(): void {
    registry.resetMetrics();
    m.active.set(d.role === "active" ? 1 : 0);
    m.revision.set(d.storeRevision);
    const load = d.distributorLoad();
    if (load !== null) {
      if (load.utilization !== null) m.distributorUtilization.set(load.utilization);
      if (load.framesPerSec !== null) m.distributorFps.set(load.framesPerSec);
      m.distributorLimited.set(load.limited ? 1 : 0);
    }
    if (d.role !== "active") return;
    const cp = d.controlPlane;
    const view = cp.view();
    const nowMs = d.nowMs();
    const status = d.status() as { commands: Record<string, number> };
    for (const [result, count] of Object.entries(status.commands)) m.commands.inc({ result }, count);
    m.queueWaiting.set(cp.queue.waitingCount);
    for (const group of [...cp.current.groups.keys()].sort()) {
      const g = view.group(group, nowMs) as { epoch: number; pendingChanges: number };
      m.groupEpoch.set({ group }, g.epoch);
      m.groupPending.set({ group }, g.pendingChanges);
      const t = view.transition(group, nowMs);
      if (t !== null) m.groupTransition.set({ group, kind: t.kind }, t.progress);
      const members = view.members(group, nowMs);
      let connections = 0;
      for (const state of MEMBER_STATES) if (state !== "UNASSIGNED") m.groupMembers.set({ group, state }, members.filter((x) => x.state === state).length);
      for (const x of members) {
        const l = { group, member: x.appliance };
        m.state.set({ ...l, state: x.state }, 1);
        m.alive.set(l, x.alive ? 1 : 0);
        if (x.lastHeartbeatMs !== null) m.heartbeatAge.set(l, Math.max(0, nowMs - x.lastHeartbeatMs) / 1000);
        m.owned.set(l, x.owned);
        m.backups.set(l, x.backups);
        const load = x.load;
        if (load !== null && load.cpuPct !== null) m.cpu.set(l, load.cpuPct);
        if (load !== null && load.packetsPerSec !== null) m.pps.set(l, load.packetsPerSec);
        if (load !== null && load.connections !== null) {
          m.connections.set(l, load.connections);
          connections += load.connections;
        }
        const c = d.countersOf(x.appliance);
        if (c === null) continue;
        if (c.packets !== null) m.packets.inc(l, c.packets);
        for (const [reason, count] of Object.entries(c.drops)) m.drops.inc({ ...l, reason }, count);
        if (c.corrections !== null) m.corrections.inc(l, c.corrections);
        if (c.syncLagMs !== null) m.syncLag.set(l, c.syncLagMs / 1000);
        if (c.syncRecordsSent !== null) m.syncSent.inc(l, c.syncRecordsSent);
        if (c.syncDatagramsSent !== null) m.syncDatagrams.inc(l, c.syncDatagramsSent);
        if (c.syncRecordsApplied !== null) m.syncApplied.inc(l, c.syncRecordsApplied);
        if (c.badDatagrams !== null) m.badDatagrams.inc(l, c.badDatagrams);
      }
      m.groupConnections.set({ group }, connections);
      for (const [rule, hits] of Object.entries(d.ruleHitsOf(group))) m.ruleHits.inc({ group, rule }, hits);
    }
  }

  return {
    contentType: registry.contentType,
    async render(): Promise<string> {
      collect();
      return registry.metrics();
    },
  };
}
