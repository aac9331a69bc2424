// HyperSync protocol versions: the range a member speaks and the one version a group uses.
//
// Every member seals its datagrams with one version (its send version) and accepts any version
// in its own range (datagram.ts). The orchestrator gathers each member's range from its
// heartbeats and names the group's version in the distribution document: the highest version
// every member speaks (the minimum over members of their max), which is never below any
// member's min. Why the minimum of the maxima: a member drops every datagram sealed with a
// version above its max, so one member that cannot read the group's version loses all of its
// replication. During a rolling upgrade the old build's max holds the group at the old version;
// once the last old member is gone the next document moves the group up.
//
// Invariants: a range is integers with PROTOCOL_VERSION_WIRE_MIN <= min <= max <=
// PROTOCOL_VERSION_WIRE_MAX; a negotiated version lies in every member's range (else the result
// is an error naming the members whose ranges do not meet).

import { assert } from "../stdx/assert.js";
import { PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_WIRE_MAX, PROTOCOL_VERSION_WIRE_MIN } from "./constants.js";

/** The versions a member reads (both ends included); it sends one of them. */
export interface ProtocolVersionRange {
  readonly min: number;
  readonly max: number;
}

/** This build's range. */
export const PROTOCOL_VERSIONS_DEFAULT: ProtocolVersionRange = Object.freeze({ min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MAX });

/** One member's range, as the orchestrator knows it. */
export interface MemberProtocolVersions extends ProtocolVersionRange {
  readonly member: string;
}

/** The group's version, or why there is none. */
export type NegotiatedProtocolVersion = { version: number } | { error: string };

/** Names listed per side of a failed negotiation (the message stays readable in a log). */
const NAMES_LISTED_MAX = 8;

function isVersion(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= PROTOCOL_VERSION_WIRE_MIN && v <= PROTOCOL_VERSION_WIRE_MAX;
}

/** True when `r` is a well-formed range (for input from the network: heartbeats). */
export function isProtocolVersionRange(r: unknown): r is ProtocolVersionRange {
  if (typeof r !== "object" || r === null) return false;
  const { min, max } = r as { min?: unknown; max?: unknown };
  return isVersion(min) && isVersion(max) && min <= max;
}

/** Asserts a range given by code (options): a bad one is a programmer error. */
export function assertProtocolVersionRange(r: ProtocolVersionRange): void {
  assert(isProtocolVersionRange(r), `protocol version range ${r.min}..${r.max}: integers with ${PROTOCOL_VERSION_WIRE_MIN} <= min <= max <= ${PROTOCOL_VERSION_WIRE_MAX}`);
}

/** Is version v in range r? */
export function inProtocolVersionRange(r: ProtocolVersionRange, v: number): boolean {
  return Number.isInteger(v) && v >= r.min && v <= r.max;
}

function listed(names: string[]): string {
  const sorted = [...names].sort();
  const shown = sorted.slice(0, NAMES_LISTED_MAX).join(", ");
  return sorted.length > NAMES_LISTED_MAX ? `${shown} and ${sorted.length - NAMES_LISTED_MAX} more` : shown;
}

/**
 * The highest version every member speaks: min over members of max, provided it is not below
 * any member's min. No members: PROTOCOL_VERSION_MIN. Ranges that do not overlap: an error
 * naming the members with the lowest max and those with the highest min.
 */
export function negotiateProtocolVersion(ranges: readonly MemberProtocolVersions[]): NegotiatedProtocolVersion {
  if (ranges.length === 0) return { version: PROTOCOL_VERSION_MIN };
  let lowestMax = PROTOCOL_VERSION_WIRE_MAX;
  let highestMin = PROTOCOL_VERSION_WIRE_MIN;
  for (const r of ranges) {
    assertProtocolVersionRange(r);
    lowestMax = Math.min(lowestMax, r.max);
    highestMin = Math.max(highestMin, r.min);
  }
  if (lowestMax >= highestMin) return { version: lowestMax };
  const old = ranges.filter((r) => r.max === lowestMax).map((r) => `${r.member} (${r.min}..${r.max})`);
  const young = ranges.filter((r) => r.min === highestMin).map((r) => `${r.member} (${r.min}..${r.max})`);
  return {
    error:
      `no HyperSync protocol version is spoken by every member: ${listed(old)} ${old.length === 1 ? "reads" : "read"} at most version ${lowestMax}, ` +
      `${listed(young)} ${young.length === 1 ? "reads" : "read"} only version ${highestMin} and above`,
  };
}
