// Small shared helpers of the UI: number formats, member colours, group health, the hash
// route. Colours come from the Okabe-Ito palette (distinguishable with colour-blindness),
// assigned by a member's place in its group's sorted member list, so the bucket map, the
// charts and the tables agree on who is which colour.

import type { GroupSummary, StreamMember } from "../../src/api/types.js";

export const MEMBER_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7f7f7f", "#8c564b", "#17becf", "#000000", "#bcbd22"];
export const NO_OWNER_COLOUR = "#d0d4da";

/** Colour of each member of a group, by its place in the sorted list. */
export function coloursOf(members: readonly string[]): Map<string, string> {
  const sorted = [...new Set(members)].sort();
  return new Map(sorted.map((m, i) => [m, MEMBER_COLOURS[i % MEMBER_COLOURS.length]!]));
}

export function num(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return "–";
  if (value >= 10_000) return `${num(value / 1000, 0)} s`;
  if (value >= 1_000) return `${num(value / 1000, 1)} s`;
  return `${num(value, 0)} ms`;
}

export function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString("en-GB", { hour12: false });
}

export function sum(values: readonly (number | null)[]): number | null {
  let total = 0;
  let any = false;
  for (const v of values) {
    if (v === null) continue;
    total += v;
    any = true;
  }
  return any ? total : null;
}

export type HealthLevel = "ok" | "busy" | "bad";

/** One word and a level for a group: what an operator looks at first. */
export function healthOf(group: GroupSummary, members: readonly StreamMember[]): { level: HealthLevel; text: string } {
  const down = members.filter((m) => m.state === "DOWN").length;
  const serving = members.filter((m) => m.state === "UP" || m.state === "JOINING" || m.state === "DRAINING").length;
  if (serving === 0 && members.length > 0) return { level: "bad", text: "no member serving" };
  if (down > 0) return { level: "bad", text: `${down} member${down === 1 ? "" : "s"} down` };
  if (group.transition !== null) return { level: "busy", text: `${group.transition.kind} ${Math.round(group.transition.progress * 100)}%` };
  if (members.length === 0) return { level: "busy", text: "no members" };
  if (serving === 1) return { level: "busy", text: "no backup (1 member)" };
  return { level: "ok", text: "healthy" };
}

export type Route = { page: "overview" } | { page: "group"; group: string } | { page: "policy"; group: string } | { page: "connections" };

export function routeOf(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter((p) => p.length > 0).map(decodeURIComponent);
  if (parts[0] === "groups" && parts[1] !== undefined) return parts[2] === "policy" ? { page: "policy", group: parts[1] } : { page: "group", group: parts[1] };
  if (parts[0] === "connections") return { page: "connections" };
  return { page: "overview" };
}

export function hrefOf(route: Route): string {
  switch (route.page) {
    case "overview":
      return "#/";
    case "group":
      return `#/groups/${encodeURIComponent(route.group)}`;
    case "policy":
      return `#/groups/${encodeURIComponent(route.group)}/policy`;
    case "connections":
      return "#/connections";
  }
}

/** A TandemError's (or any error's) message, for people. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
