import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { analysePolicy, parsePolicyText, policyToText, POLICY_LIMITS, validatePolicy, type RuleSpec } from "./policy.js";

const SEED = 42;

/** Runs fn, expects a POLICY_INVALID TandemError, returns it. */
function policyError(fn: () => unknown): TandemError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe(ErrorCode.POLICY_INVALID);
    return error as TandemError;
  }
  throw new Error("expected a POLICY_INVALID error");
}

/** Validates one rule (after a harmless first rule, so the failing rule is #2). */
function ruleError(rule: Record<string, unknown>): TandemError {
  return policyError(() => validatePolicy({ rules: [{ name: "first", action: "accept" }, rule] }));
}

describe("parsePolicyText", () => {
  const yaml = [
    "rules:",
    "  - name: web-in",
    "    destination: [198.18.1.0/28, '2001:db8:80::/64']",
    "    protocol: tcp",
    "    ports: [80, '8000-8080']",
    "    action: accept",
    "  - name: ping",
    "    protocol: icmp",
    "    icmpTypes: [8]",
    "    action: accept",
    "    log: true",
    "",
  ].join("\n");

  it("reads YAML, JSON and auto-detects either", () => {
    const fromYaml = parsePolicyText(yaml, "yaml");
    expect(fromYaml.rules).toHaveLength(2);
    expect(fromYaml.rules[0]).toEqual({
      name: "web-in",
      destination: ["198.18.1.0/28", "2001:db8:80::/64"],
      protocol: "tcp",
      ports: [80, "8000-8080"],
      action: "accept",
    });
    const json = JSON.stringify(fromYaml);
    expect(parsePolicyText(json, "json")).toEqual(fromYaml);
    expect(parsePolicyText(json, "auto")).toEqual(fromYaml);
    expect(parsePolicyText(yaml, "auto")).toEqual(fromYaml);
  });

  it("accepts a bare list of rules and an empty document", () => {
    expect(parsePolicyText("- name: a\n  action: drop\n", "yaml")).toEqual({ rules: [{ name: "a", action: "drop" }] });
    expect(parsePolicyText('[{"name": "a", "action": "drop"}]', "auto")).toEqual({ rules: [{ name: "a", action: "drop" }] });
    expect(parsePolicyText("", "yaml")).toEqual({ rules: [] });
    expect(parsePolicyText("rules: []\n", "yaml")).toEqual({ rules: [] });
  });

  it("reports YAML syntax errors with the line", () => {
    const error = policyError(() => parsePolicyText("rules:\n  - name: a\n    action: drop\n  - [oops\n", "yaml"));
    expect(error.message).toMatch(/^policy: not valid YAML \(line \d+\)/);
    expect(error.details?.["line"]).toBeGreaterThanOrEqual(4);
    const duplicateKey = policyError(() => parsePolicyText("rules:\n  - name: a\n    action: drop\n    action: accept\n", "yaml"));
    expect(duplicateKey.message).toContain("line 4");
  });

  it("reports JSON syntax errors", () => {
    const error = policyError(() => parsePolicyText('{"rules": [\n{"name": "a",}\n]}', "json"));
    expect(error.message).toMatch(/^policy: not valid JSON/);
  });

  it("names the YAML line of a validation error", () => {
    const text = ["rules:", "  - name: a", "    action: accept", "  - name: web-in", "    protocol: tcp", '    ports: "80-70"', "    action: accept", ""].join("\n");
    const error = policyError(() => parsePolicyText(text, "yaml"));
    expect(error.message).toBe('rule "web-in" (#2), line 6: field "ports": "80-70" is not a port range (start > end)');
    expect(error.details).toEqual({ rule: "web-in", ruleIndex: 1, field: "ports", line: 6 });
  });

  it("reads the example policy", () => {
    const text = readFileSync(new URL("../../examples/policy.yaml", import.meta.url), "utf8");
    const spec = parsePolicyText(text, "auto");
    expect(spec.rules.map((rule) => rule.name)).toEqual([
      "web-in",
      "dns-udp",
      "dns-tcp",
      "ping",
      "ping6",
      "telnet-reject",
      "smb-drop",
      "clients-out",
    ]);
    expect(spec.rules.some((rule) => rule.action === "reject")).toBe(true);
    expect(spec.rules.some((rule) => rule.action === "drop" && rule.log === true)).toBe(true);
  });
});

describe("validatePolicy errors name the rule and the field", () => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ["unknown field", { name: "x", action: "drop", colour: "red" }, "colour", /unknown field "colour"/],
    ["missing name", { action: "drop" }, "name", /^rule #2: field "name": missing/],
    ["empty name", { name: "", action: "drop" }, "name", /1-128 characters/],
    ["missing action", { name: "x" }, "action", /^rule "x" \(#2\): field "action": missing/],
    ["bad action", { name: "x", action: "permit" }, "action", /"permit" is not an action/],
    ["bad address", { name: "x", source: "10.0.0.300", action: "drop" }, "source", /"10\.0\.0\.300" is not an IPv4 or IPv6 address/],
    ["host bits", { name: "x", source: "10.0.0.1/8", action: "drop" }, "source", /has host bits set; did you mean "10\.0\.0\.0\/8"/],
    ["v6 host bits", { name: "x", destination: "2001:db8::1/32", action: "drop" }, "destination", /did you mean "2001:db8::\/32"/],
    ["prefix too long", { name: "x", source: "10.0.0.0/33", action: "drop" }, "source", /prefix length "33" is not in 0-32/],
    ["address not a string", { name: "x", source: [167772160], action: "drop" }, "source", /not an address/],
    ["empty address list", { name: "x", source: [], action: "drop" }, "source", /empty list/],
    ["any mixed", { name: "x", source: ["any", "10.0.0.0/8"], action: "drop" }, "source", /"any" cannot be combined/],
    ["families disjoint", { name: "x", source: "10.0.0.0/8", destination: "2001:db8::/32", action: "drop" }, "destination", /can never match/],
    ["icmp on v6", { name: "x", destination: "2001:db8::/32", protocol: "icmp", action: "drop" }, "protocol", /use "icmpv6"/],
    ["icmpv6 on v4", { name: "x", destination: "10.0.0.0/8", protocol: "icmpv6", action: "drop" }, "protocol", /use "icmp"/],
    ["bad protocol", { name: "x", protocol: "gre", action: "drop" }, "protocol", /not a protocol/],
    ["protocol number", { name: "x", protocol: 256, action: "drop" }, "protocol", /0-255/],
    ["ports without protocol", { name: "x", ports: 80, action: "drop" }, "ports", /ports need protocol tcp or udp/],
    ["ports with icmp", { name: "x", protocol: "icmp", sourcePorts: 80, action: "drop" }, "sourcePorts", /ports need protocol tcp or udp/],
    ["port range reversed", { name: "x", protocol: "tcp", ports: "80-70", action: "drop" }, "ports", /"80-70" is not a port range \(start > end\)/],
    ["port too big", { name: "x", protocol: "udp", ports: [53, 70000], action: "drop" }, "ports", /70000 is not a port/],
    ["port text", { name: "x", protocol: "udp", ports: "http", action: "drop" }, "ports", /"http" is not a port/],
    ["port range text", { name: "x", protocol: "udp", ports: "1-2-3", action: "drop" }, "ports", /not a port range/],
    ["negative port", { name: "x", protocol: "udp", ports: -1, action: "drop" }, "ports", /-1 is not a port/],
    ["empty ports", { name: "x", protocol: "udp", ports: [], action: "drop" }, "ports", /empty list/],
    ["icmp types without icmp", { name: "x", protocol: "tcp", icmpTypes: [8], action: "drop" }, "icmpTypes", /need protocol icmp or icmpv6/],
    ["icmp type range", { name: "x", protocol: "icmp", icmpTypes: [8, 300], action: "drop" }, "icmpTypes", /300 is not an ICMP type/],
    ["log not boolean", { name: "x", log: "yes", action: "drop" }, "log", /"yes" is not true or false/],
    ["description not string", { name: "x", description: 5, action: "drop" }, "description", /not a string/],
  ];
  for (const [title, rule, field, pattern] of cases) {
    it(title, () => {
      const error = ruleError(rule);
      expect(error.message).toMatch(pattern);
      expect(error.details?.["field"]).toBe(field);
      expect(error.details?.["ruleIndex"]).toBe(1);
      expect(error.details?.["rule"]).toBe(typeof rule["name"] === "string" && rule["name"] !== "" ? rule["name"] : 1);
    });
  }

  it("duplicate rule names", () => {
    const error = policyError(() =>
      validatePolicy({ rules: [{ name: "a", action: "accept" }, { name: "b", action: "accept" }, { name: "a", action: "drop" }] }),
    );
    expect(error.message).toBe('rule "a" (#3): field "name": duplicate of rule #1; rule names must be unique');
  });

  it("a rule that is not a mapping", () => {
    expect(policyError(() => validatePolicy([5])).message).toBe("rule #1: a rule must be a mapping of fields, got 5");
  });

  it("top-level shape", () => {
    expect(policyError(() => validatePolicy({ rules: 5 })).message).toMatch(/"rules" must be a list/);
    expect(policyError(() => validatePolicy({ policy: [] })).message).toMatch(/unknown top-level field "policy"/);
    expect(policyError(() => validatePolicy("rules")).message).toMatch(/expected a mapping/);
  });

  it("rule count limit", () => {
    const rules = new Array(POLICY_LIMITS.rulesMax + 1).fill(null);
    expect(policyError(() => validatePolicy({ rules })).message).toMatch(/100001 rules; at most 100000/);
  });
});

describe("validatePolicy results", () => {
  it("keeps values as written, in canonical field order", () => {
    const spec = validatePolicy({ rules: [{ action: "accept", log: false, ports: "22", protocol: "TCP", name: "ssh", description: "d" }] });
    expect(Object.keys(spec.rules[0]!)).toEqual(["name", "description", "protocol", "ports", "action", "log"]);
    expect(spec.rules[0]!.ports).toBe("22");
  });

  it("parses to numeric form", () => {
    const { rules } = analysePolicy({
      rules: [
        { name: "a", source: ["10.0.0.0/8", "2001:db8::/32"], protocol: "tcp", ports: [22, "1000-2000"], sourcePorts: "1024-65535", action: "reject", log: true },
        { name: "b", protocol: 47, action: "drop" },
        { name: "c", destination: "2001:db8::1", protocol: "icmpv6", icmpTypes: 128, action: "accept" },
      ],
    });
    expect(rules[0]).toMatchObject({ protocol: 6, ports: [22, 22, 1000, 2000], sourcePorts: [1024, 65535], action: 2, log: true, families: 3 });
    expect(rules[0]!.source.v4).toHaveLength(1);
    expect(rules[0]!.source.v6).toHaveLength(1);
    expect(rules[1]).toMatchObject({ protocol: 47, ports: null, action: 1, families: 3 });
    expect(rules[1]!.source.any).toBe(true);
    expect(rules[2]).toMatchObject({ protocol: 58, icmpTypes: [128], families: 2 });
    expect(rules[2]!.destination.v6[0]!.length).toBe(128);
  });
});

describe("policyToText", () => {
  it("writes YAML that reads back to the same spec", () => {
    const spec = validatePolicy({
      rules: [
        { name: "web", destination: ["198.18.1.0/28", "2001:db8::/64"], protocol: "tcp", ports: [80, "1000-2000"], action: "accept", description: "a: b # c" },
        { name: "odd name: with 'quotes'", protocol: 47, action: "drop", log: true },
      ],
    });
    const text = policyToText(spec);
    expect(text).toMatch(/^rules:\n {2}- name: web\n/);
    expect(parsePolicyText(text, "yaml")).toEqual(spec);
    expect(policyToText({ rules: [] })).toBe("rules: []\n");
    expect(parsePolicyText(policyToText({ rules: [] }), "yaml")).toEqual({ rules: [] });
  });

  it(`round-trips generated policies (seed ${SEED})`, () => {
    const rule = fc.record(
      {
        name: fc
          .string({ minLength: 1, maxLength: 20 })
          .filter((name) => name.trim() === name && [...name].every((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f)),
        description: fc.string({ maxLength: 30 }),
        source: fc.constantFrom<RuleSpec["source"]>("any", "10.0.0.0/8", ["10.1.0.0/16", "2001:db8::/32"], "::/0"),
        protocol: fc.constantFrom<RuleSpec["protocol"]>("tcp", "udp", 6),
        ports: fc.constantFrom<RuleSpec["ports"]>(80, "80", "1-2", [1, "3-4"]),
        action: fc.constantFrom<RuleSpec["action"]>("accept", "drop", "reject"),
        log: fc.boolean(),
      },
      { requiredKeys: ["name", "protocol", "action"] },
    );
    fc.assert(
      fc.property(fc.uniqueArray(rule, { maxLength: 8, selector: (r) => r.name }), (rules) => {
        const spec = validatePolicy({ rules });
        expect(parsePolicyText(policyToText(spec), "yaml")).toEqual(spec);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});
