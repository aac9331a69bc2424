// The orchestrator's part of HyperSync protocol version negotiation (src/hypersync/
// protocol-version.ts): the range each appliance reports with its heartbeats (soft state,
// never committed) and, per group, the version its distribution document names.
//
// Invariants: a stored range is well formed (a malformed report is dropped, and the appliance
// counts as not reported); `revision` grows whenever a stored range changes, so a cached
// distribution document made before the change is never served after it; a group's version
// only changes to one every member of the group reads: when the ranges do not overlap, the
// group keeps its previous version and the error is logged once (per distinct error).

import type { Logger } from "pino";
import { PROTOCOL_VERSION_MIN } from "../hypersync/constants.js";
import { isProtocolVersionRange, negotiateProtocolVersion, type MemberProtocolVersions, type ProtocolVersionRange } from "../hypersync/protocol-version.js";

/** What a member that has not reported a range counts as: the oldest version this build reads. */
export const UNREPORTED_PROTOCOL_VERSIONS: ProtocolVersionRange = Object.freeze({ min: PROTOCOL_VERSION_MIN, max: PROTOCOL_VERSION_MIN });

interface GroupVersion {
  version: number;
  /** Why the version could not follow the members' ranges (null: it does). */
  error: string | null;
}

export class HypersyncVersions {
  /** Grows whenever an appliance's stored range changes (part of the document's cache key). */
  revision = 0;
  private readonly ranges = new Map<string, ProtocolVersionRange>();
  private readonly groups = new Map<string, GroupVersion>();
  /** Appliances whose last report was malformed (warned once, not at every heartbeat). */
  private readonly malformed = new Set<string>();

  constructor(private readonly logger: Logger) {}

  /** A heartbeat's `hypersync` field. A malformed range (min > max...) is dropped with a warning. */
  report(appliance: string, range: unknown): void {
    const before = this.ranges.get(appliance);
    if (!isProtocolVersionRange(range)) {
      if (before !== undefined) {
        this.ranges.delete(appliance);
        this.revision++;
      }
      if (!this.malformed.has(appliance)) this.logger.warn({ appliance, hypersync: range }, "malformed HyperSync protocol version range in a heartbeat: ignored");
      this.malformed.add(appliance);
      return;
    }
    this.malformed.delete(appliance);
    if (before !== undefined && before.min === range.min && before.max === range.max) return;
    this.ranges.set(appliance, Object.freeze({ min: range.min, max: range.max }));
    this.revision++;
    this.logger.info({ appliance, min: range.min, max: range.max }, "member HyperSync protocol versions");
  }

  /** The range an appliance reported last (null: none). */
  rangeOf(appliance: string): ProtocolVersionRange | null {
    return this.ranges.get(appliance) ?? null;
  }

  /** Why the group's version cannot follow its members' ranges (null: it does, or not computed yet). */
  errorOf(group: string): string | null {
    return this.groups.get(group)?.error ?? null;
  }

  /**
   * The version a group's distribution document names: the highest one every member reads
   * (members not reported yet count as UNREPORTED_PROTOCOL_VERSIONS); when the ranges do not
   * overlap, the group's previous version (PROTOCOL_VERSION_MIN before any), and an error log.
   */
  versionFor(group: string, members: readonly string[]): number {
    const ranges: MemberProtocolVersions[] = members.map((member) => {
      const r = this.ranges.get(member) ?? UNREPORTED_PROTOCOL_VERSIONS;
      return { member, min: r.min, max: r.max };
    });
    const result = negotiateProtocolVersion(ranges);
    const previous = this.groups.get(group);
    if ("error" in result) {
      const version = previous?.version ?? PROTOCOL_VERSION_MIN;
      if (previous?.error !== result.error) this.logger.error({ group, version }, `HyperSync protocol version of group ${group} stays at ${version}: ${result.error}`);
      this.groups.set(group, { version, error: result.error });
      return version;
    }
    if (previous !== undefined && previous.version !== result.version) {
      this.logger.info({ group, from: previous.version, to: result.version }, "group HyperSync protocol version changed");
    }
    this.groups.set(group, { version: result.version, error: null });
    return result.version;
  }
}
