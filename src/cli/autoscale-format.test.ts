import { describe, expect, it } from "vitest";
import { AUTOSCALE_DEFAULTS } from "../orchestrator/model.js";
import { ageText, formatAutoscale } from "./autoscale-format.js";

describe("tandem sg autoscale show", () => {
  const rules = { ...AUTOSCALE_DEFAULTS, enabled: true, maxMembers: 3, cpuHighPct: 60, cpuLowPct: 20, cooldownMs: 10_000, priority: -2 };

  it("prints the rules, the last decision with its reason and age, the last action and the window", () => {
    const out = formatAutoscale({
      group: "default",
      rules,
      lastDecision: { at: "2030-01-01T12:00:00.000Z", ageMs: 400, action: null, reason: "cooling down: 8.2 s left" },
      lastAction: { kind: "add", appliance: "local-3", reason: "mean CPU 83% > 60% for 1 s", at: "2030-01-01T11:59:58.000Z", ageMs: 1800 },
      window: { startedAt: "2030-01-01T11:59:59.000Z", coveredMs: 1000, lengthMs: 1000, samples: 48, members: 3, membersReporting: 3, cpuPct: 41.25, packetsPerSec: 52_340, connectionsPerMember: 12, syncLagMsMax: 0 },
    });
    expect(out).toBe(
      [
        "group:              default",
        "enabled:            yes",
        "members:            2..3",
        "cpu high / low:     60% / 20%",
        "connections high:   1000000",
        "cooldown:           10000 ms",
        "priority:           -2",
        "last decision:      no action: cooling down: 8.2 s left",
        "decided:            0.4 s ago (2030-01-01T12:00:00.000Z)",
        "last action:        add local-3: mean CPU 83% > 60% for 1 s (1.8 s ago, 2030-01-01T11:59:58.000Z)",
        "window:             1 of 1 s from 2030-01-01T11:59:59.000Z, 48 samples, 3 of 3 members reporting",
        "mean cpu:           41.3%",
        "mean packets/s:     52.3k",
        "connections/member: 12",
        "sync lag (max):     0 ms",
        "",
      ].join("\n"),
    );
  });

  it("says when nothing was evaluated yet", () => {
    const out = formatAutoscale({ group: "g", rules, lastDecision: null, lastAction: null, window: null });
    expect(out).toContain("last decision:    none yet (not evaluated since the orchestrator started)\n");
    expect(out).toContain("last action:      none since the orchestrator started\n");
    expect(out).not.toContain("window");
  });

  it("words ages for people", () => {
    expect([ageText(0), ageText(9_949), ageText(42_400), ageText(600_000)]).toEqual(["0 s ago", "9.9 s ago", "42 s ago", "10 min ago"]);
  });
});
