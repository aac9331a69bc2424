// The `tandem` command as a user runs it: the compiled CLI in a child process.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = `${ROOT}dist/src/cli/main.js`;
const CORPUS = fileURLToPath(new URL("../../shared/corpus/tcpdump/", import.meta.url));

function tandem(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("tandem replay", () => {
  it("replays the demo with the demo policy and prints one JSON object", () => {
    const r = tandem("replay", "--demo", "--policy", "examples/demo-policy.yaml", "--json");
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.packets).toBeGreaterThan(1000);
    for (const key of ["packets", "verdicts", "dropReasons", "connections"]) expect(report).toHaveProperty(key);
    for (const key of ["created", "established", "reset", "closed"]) expect(report.connections[key]).toBeGreaterThan(0);
    expect(report.verdicts.reject).toBeGreaterThan(0);
    expect(report.dropReasons["policy-drop"]).toBeGreaterThan(0);
    expect(report.ruleHits["telnet-reject"]).toBeGreaterThan(0);
  });

  it("prints readable tables by default", () => {
    const r = tandem("replay", "--demo");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Verdicts/);
    expect(r.stdout).toMatch(/established/);
  });

  it("exits 2 naming each unreadable file, after processing the readable ones", () => {
    const r = tandem("replay", "README.md", `${CORPUS}LINKTYPE_PKTAP.pcap`, "--demo", "no-such-file.pcap", "--json");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/README\.md: not a pcap or pcapng file/);
    expect(r.stderr).toMatch(/LINKTYPE_PKTAP \(258\)/);
    expect(r.stderr).toMatch(/no-such-file\.pcap: ENOENT/);
    const report = JSON.parse(r.stdout);
    expect(report.packets).toBeGreaterThan(1000);
  });

  it("reports a policy error naming the rule and the field", () => {
    const dir = mkdtempSync(join(tmpdir(), "tandem-cli-"));
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "rules:\n  - name: bad\n    protocol: tcp\n    ports: 70-60\n    action: accept\n");
    const r = tandem("replay", "--demo", "--policy", file);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/bad/);
    expect(r.stderr).toMatch(/ports/);
    expect(r.stderr).toMatch(/TANDEM_POLICY_INVALID/);
  });

  it("refuses a replay without files", () => {
    const r = tandem("replay");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/at least one capture/);
  });
});

describe("tandem --version and subcommand options", () => {
  it("prints the program's version, while `sg upgrade ... --version V` is the command's own option", () => {
    const v = tandem("--version");
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    // Nothing listens on port 1: the command got as far as calling the API (it did not print
    // the program's version and exit 0).
    const r = tandem("sg", "upgrade", "default", "--version", "9.9.9", "--server", "http://127.0.0.1:1", "--token", "x");
    expect(r.stdout).not.toContain(v.stdout.trim());
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/127\.0\.0\.1:1|ECONNREFUSED|unreachable|cannot reach/i);
  });
});
