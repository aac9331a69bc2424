// `tandem sg autoscale show GROUP`: the group's auto-scaling rules, the autoscaler's last
// decision with its reason and age, its last action, and the load window it judged (means
// over the members that reported). One "key: value" line each, for people; --json prints the
// API's answer (GET /api/groups/{name}/autoscale) unchanged, for scripts.
//
// Invariant: nothing here computes a figure; it only words what the API answered (missing
// figures print "-"), so the CLI and the web UI never disagree.

import type { AutoscaleView } from "../api/types.js";
import { compact, formatFields, type Cell } from "./table.js";

/** "0.4 s ago" / "42 s ago" / "3 min ago". */
export function ageText(ageMs: number): string {
  if (ageMs < 10_000) return `${Math.round(ageMs / 100) / 10} s ago`;
  if (ageMs < 120_000) return `${Math.round(ageMs / 1000)} s ago`;
  return `${Math.round(ageMs / 60_000)} min ago`;
}

function figure(value: number | null, unit = ""): string | null {
  if (value === null) return null;
  return `${Number.isInteger(value) || Math.abs(value) >= 1e4 ? compact(value) : value.toFixed(1)}${unit}`;
}

export function formatAutoscale(v: AutoscaleView): string {
  const r = v.rules;
  const fields: [string, Cell][] = [
    ["group", v.group],
    ["enabled", r.enabled],
    ["members", `${r.minMembers}..${r.maxMembers}`],
    ["cpu high / low", `${r.cpuHighPct}% / ${r.cpuLowPct}%`],
    ["connections high", r.connectionsPerMemberHigh],
    ["cooldown", `${r.cooldownMs} ms`],
    ["priority", r.priority],
  ];
  const d = v.lastDecision;
  if (d === null) fields.push(["last decision", "none yet (not evaluated since the orchestrator started)"]);
  else {
    fields.push(["last decision", d.action === null ? `no action: ${d.reason}` : `${d.action.kind} ${d.action.appliance}: ${d.reason}`]);
    fields.push(["decided", `${ageText(d.ageMs)} (${d.at})`]);
  }
  const a = v.lastAction;
  fields.push(["last action", a === null ? "none since the orchestrator started" : `${a.kind} ${a.appliance}: ${a.reason} (${ageText(a.ageMs)}, ${a.at})`]);
  const w = v.window;
  if (w !== null) {
    const span = `${Math.round(w.coveredMs / 100) / 10} of ${Math.round(w.lengthMs / 100) / 10} s from ${w.startedAt}`;
    fields.push(["window", `${span}, ${w.samples} samples, ${w.membersReporting} of ${w.members} members reporting`]);
    fields.push(["mean cpu", figure(w.cpuPct, "%")]);
    fields.push(["mean packets/s", figure(w.packetsPerSec)]);
    fields.push(["connections/member", figure(w.connectionsPerMember)]);
    fields.push(["sync lag (max)", figure(w.syncLagMsMax, " ms")]);
  }
  return formatFields(fields);
}
