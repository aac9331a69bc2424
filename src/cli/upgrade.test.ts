// `tandem sg upgrade`: the status table and following an upgrade to its end or its pause,
// against a scripted client.

import { describe, expect, it } from "vitest";
import type { TandemClient } from "../api/client.js";
import type { UpgradeStatusView } from "../api/types.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { followUpgrade, formatUpgrade } from "./upgrade.js";

const member = (appliance: string, version: string, reportedVersion: string | null = version) => ({ appliance, state: "UP", version, reportedVersion, restartError: null });

function view(upgrade: Partial<NonNullable<UpgradeStatusView["upgrade"]>> | null, waitingFor: string | null = null): UpgradeStatusView {
  return {
    group: "g",
    upgrade:
      upgrade === null
        ? null
        : { fromVersion: "1.0", targetVersion: "2.0", startedAt: "2026-11-29T10:00:00.000Z", direction: "forward", paused: false, reason: null, current: null, goal: "2.0", ...upgrade },
    waitingFor,
    members: [member("a1", "2.0"), member("a2", "1.0")],
  };
}

/** A client whose upgradeStatus answers the views in turn (the last one repeats). */
function scripted(views: UpgradeStatusView[]): TandemClient {
  let i = 0;
  return { upgradeStatus: async () => views[Math.min(i++, views.length - 1)]! } as unknown as TandemClient;
}

describe("tandem sg upgrade", () => {
  it("prints the upgrade, the member in its cycle, and every member's versions", () => {
    const text = formatUpgrade(view({ current: { appliance: "a2", step: "restart", since: "2026-11-29T10:00:05.000Z" } }, "waiting for a2 to come back on 2.0"));
    expect(text).toContain("1.0 -> 2.0");
    expect(text).toContain("a2 (restart since 2026-11-29T10:00:05.000Z)");
    expect(text).toContain("waiting for a2 to come back on 2.0");
    expect(text).toMatch(/a2\s+UP\s+1\.0\s+1\.0/);
    expect(formatUpgrade(view(null))).toMatch(/upgrade:\s+none/);
  });

  it("follows an upgrade step by step to its end", async () => {
    const lines: string[] = [];
    const steps = [
      view({ current: { appliance: "a1", step: "drain", since: "t" } }, "draining a1"),
      view({ current: { appliance: "a1", step: "drain", since: "t" } }, "draining a1"),
      view({ current: { appliance: "a1", step: "restart", since: "t" } }, "waiting for a1 to come back on 2.0"),
      view(null),
    ];
    const end = await followUpgrade(scripted(steps), "g", 60_000, (l) => lines.push(l));
    expect(end.upgrade).toBeNull();
    expect(lines).toEqual(["a1: drain (draining a1)", "a1: restart (waiting for a1 to come back on 2.0)", "upgrade of g done: a1 2.0, a2 1.0"]);
  });

  it("stops with the reason when the upgrade pauses", async () => {
    const paused = view({ paused: true, reason: "a1 cannot restart on 2.0: no release 2.0 installed", current: { appliance: "a1", step: "restart", since: "t" } });
    const error = await followUpgrade(scripted([paused]), "g", 60_000, () => {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe(ErrorCode.INVALID_STATE);
    expect((error as TandemError).message).toContain("no release 2.0 installed; resume (--resume), roll back (--rollback) or abort (--abort)");
  });
});
