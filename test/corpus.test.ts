// Every capture of the tcpdump corpus replays through one engine without an exception or a
// hang, each frame ends in a verdict with one counted reason, and unreadable files are
// reported per file with a stable code.
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { compilePolicy } from "../src/engine/rule-base.js";
import { replayCaptures, type ReplayInput } from "../src/engine/replay.js";
import { ErrorCode } from "../src/stdx/errors.js";

const CORPUS = fileURLToPath(new URL("../../shared/corpus/tcpdump/", import.meta.url));

function corpus(): ReplayInput[] {
  return readdirSync(CORPUS)
    .sort()
    .map((name) => ({ name, bytes: readFileSync(CORPUS + name) }));
}

function sum(record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

describe("corpus: tcpdump captures", () => {
  const inputs = corpus();

  it("has the corpus (more than 500 files)", () => {
    expect(inputs.length).toBeGreaterThan(500);
  });

  for (const mode of ["track-only", "policy"] as const) {
    it(`replays every file (${mode}) with one verdict per frame and per-file errors`, () => {
      const ruleBase =
        mode === "policy"
          ? compilePolicy({
              rules: [
                { name: "web", protocol: "tcp", ports: [80, 443], action: "accept" },
                { name: "telnet", protocol: "tcp", ports: 23, action: "reject" },
                { name: "dns", protocol: "udp", ports: 53, action: "accept" },
                { name: "ping", protocol: "icmp", action: "accept" },
              ],
            })
          : null;
      const report = replayCaptures(inputs, { capacity: 65536, ruleBase, wallClockMs: () => 0 });
      expect(report.files).toHaveLength(inputs.length);
      const framesRead = report.files.reduce((a, f) => a + f.packets, 0);
      expect(report.packets).toBe(framesRead);
      expect(report.packets).toBeGreaterThan(3000);
      expect(sum(report.verdicts)).toBe(report.packets);
      expect(sum(report.dropReasons)).toBe((report.verdicts.drop ?? 0) + (report.verdicts.reject ?? 0));
      expect(sum(report.parseFailures)).toBe(report.dropReasons["parse-error"] ?? 0);
      for (const f of report.files.filter((x) => !x.ok)) {
        expect([ErrorCode.CAPTURE_UNREADABLE, ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED]).toContain(f.error?.code);
        expect(f.error?.message).toContain(f.name);
      }
      const license = report.files.find((f) => f.name === "LICENSE");
      expect(license?.ok).toBe(false);
      expect(license?.error?.code).toBe(ErrorCode.CAPTURE_UNREADABLE);
      const pktap = report.files.find((f) => f.name === "LINKTYPE_PKTAP.pcap");
      expect(pktap?.error?.message).toMatch(/PKTAP \(258\)/);
      // Real traffic in the corpus: handshakes complete and some connections close.
      expect(report.connections.established).toBeGreaterThan(5);
      if (mode === "policy") expect(report.dropReasons["policy-default"]).toBeGreaterThan(0);
    });
  }
});
