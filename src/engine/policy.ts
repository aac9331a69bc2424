// The policy as operators write it (YAML or JSON), its validation, and its parsed form.
//
// A policy is an ordered list of rules; the first rule that matches a new connection decides
// its fate, and a connection no rule matches is dropped. Validation is strict and specific:
// every error is a TandemError(POLICY_INVALID) whose message names the rule (by name when it
// has one, and by 1-based position "#n"), the field, and, for YAML input, the line; details
// carry { rule: name or 0-based index, ruleIndex: 0-based, field, line? }. A policy that
// validates always compiles (rule-base.ts); a rule that could never match (an IPv4 source
// with an IPv6 destination, "icmp" on IPv6-only addresses) is refused rather than kept.
//
// Invariants of a ParsedRule (the compiler's input): address lists are non-empty unless
// `any`, prefixes have no host bits set, port ranges satisfy 0 <= lo <= hi <= 65535 and are
// present only for TCP/UDP, ICMP types only for ICMP/ICMPv6, and the rule can match at
// least one address family (`families` != 0).

import { isMap, isSeq, LineCounter, parseDocument, stringify, type Node as YamlNode } from "yaml";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { formatNetwork, parseCidr, type Cidr } from "./cidr.js";

/** What a matching rule does: accept the connection, drop it silently, or reject it (RST / ICMP unreachable). */
export const RuleAction = { ACCEPT: 0, DROP: 1, REJECT: 2 } as const;
export type RuleAction = (typeof RuleAction)[keyof typeof RuleAction];
export const RULE_ACTION_NAMES = ["accept", "drop", "reject"] as const;
export type RuleActionName = (typeof RULE_ACTION_NAMES)[number];

export type ProtocolName = "any" | "tcp" | "udp" | "icmp" | "icmpv6";
/** A port, a "lo-hi" range, or a list of those. */
export type PortSpec = number | string | Array<number | string>;

export interface RuleSpec {
  name: string;
  /** "any" (the default), or CIDRs / single addresses of either family. */
  source?: string | string[];
  destination?: string | string[];
  /** "any" (the default), a name, or an IP protocol number 0-255. */
  protocol?: ProtocolName | number;
  /** Destination ports (TCP/UDP only). */
  ports?: PortSpec;
  /** Source ports (TCP/UDP only). */
  sourcePorts?: PortSpec;
  /** ICMP / ICMPv6 message types (with protocol icmp or icmpv6 only). */
  icmpTypes?: number | number[];
  action: RuleActionName;
  log?: boolean;
  description?: string;
}

export interface PolicySpec {
  rules: RuleSpec[];
}

/** Bounds on a policy's size: every input the compiler sizes memory from is bounded here. */
export const POLICY_LIMITS = {
  rulesMax: 100_000,
  /** Addresses in one rule's source (or destination) list. */
  addressesPerFieldMax: 10_000,
  /** Address entries over the whole policy (source + destination): bounds compiled memory. */
  addressesTotalMax: 1_000_000,
  portRangesPerFieldMax: 1_024,
  nameLengthMax: 128,
  descriptionLengthMax: 1_024,
} as const;

export const PROTOCOL_ANY = -1;
export const FAMILY_V4 = 1;
export const FAMILY_V6 = 2;

/** An address set: `any`, or IPv4 and IPv6 networks (host bits clear). */
export interface ParsedAddressSet {
  any: boolean;
  v4: Cidr[];
  v6: Cidr[];
}

/** A validated rule in numeric form: the compiler's and the reference matcher's input. */
export interface ParsedRule {
  name: string;
  index: number;
  source: ParsedAddressSet;
  destination: ParsedAddressSet;
  /** IP protocol number, or PROTOCOL_ANY. */
  protocol: number;
  /** Inclusive [lo, hi] pairs, flattened; null = any. */
  ports: number[] | null;
  sourcePorts: number[] | null;
  icmpTypes: number[] | null;
  action: RuleAction;
  log: boolean;
  /** FAMILY_V4 | FAMILY_V6 bits: the address families this rule can match. */
  families: number;
}

const RULE_FIELDS = [
  "name",
  "description",
  "source",
  "destination",
  "protocol",
  "sourcePorts",
  "ports",
  "icmpTypes",
  "action",
  "log",
] as const;
const PROTOCOL_NUMBERS: Record<string, number> = { any: PROTOCOL_ANY, tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const PROTO_ICMP = 1;
const PROTO_ICMPV6 = 58;

/** Finds the YAML line of a rule's field, for error messages; undefined when unknown. */
type LineLocator = (ruleIndex: number, field: string | null) => number | undefined;

class RuleContext {
  constructor(
    readonly index: number,
    public name: string | null,
    private readonly locate: LineLocator | null,
  ) {}

  /** Throws POLICY_INVALID naming this rule and `field` ("" when the rule as a whole is wrong). */
  fail(field: string, reason: string): never {
    const line = this.locate?.(this.index, field);
    const who = this.name === null ? `rule #${this.index + 1}` : `rule "${this.name}" (#${this.index + 1})`;
    const where = line === undefined ? who : `${who}, line ${line}`;
    const what = field === "" ? "" : ` field "${field}":`;
    throw new TandemError(ErrorCode.POLICY_INVALID, `${where}:${what} ${reason}`, {
      rule: this.name ?? this.index,
      ruleIndex: this.index,
      field,
      ...(line === undefined ? {} : { line }),
    });
  }
}

function policyError(message: string, details: Record<string, unknown> = {}): TandemError {
  return new TandemError(ErrorCode.POLICY_INVALID, `policy: ${message}`, details);
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseAddressSet(ctx: RuleContext, field: string, value: unknown): ParsedAddressSet {
  const set: ParsedAddressSet = { any: false, v4: [], v6: [] };
  if (value === undefined) {
    set.any = true;
    return set;
  }
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0) ctx.fail(field, `empty list matches nothing; write "any" or leave the field out`);
  if (items.length > POLICY_LIMITS.addressesPerFieldMax) {
    ctx.fail(field, `${items.length} addresses; at most ${POLICY_LIMITS.addressesPerFieldMax} are allowed`);
  }
  for (const item of items) {
    if (typeof item !== "string") ctx.fail(field, `${describe(item)} is not an address or prefix (write it as a string)`);
    const text = item.trim();
    if (text === "any") {
      if (items.length > 1) ctx.fail(field, `"any" cannot be combined with other addresses`);
      set.any = true;
      return set;
    }
    const cidr = parseCidr(text);
    if (typeof cidr === "string") ctx.fail(field, cidr);
    if (cidr.hostBitsSet) {
      ctx.fail(field, `"${text}" has host bits set; did you mean "${formatNetwork(cidr)}"?`);
    }
    (cidr.family === 4 ? set.v4 : set.v6).push(cidr);
  }
  return set;
}

function familiesOf(set: ParsedAddressSet): number {
  if (set.any) return FAMILY_V4 | FAMILY_V6;
  return (set.v4.length > 0 ? FAMILY_V4 : 0) | (set.v6.length > 0 ? FAMILY_V6 : 0);
}

function parsePort(ctx: RuleContext, field: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) ctx.fail(field, `"${text}" is not a port (0-65535)`);
  return Number(text);
}

function parsePorts(ctx: RuleContext, field: string, value: unknown): number[] {
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0) ctx.fail(field, `empty list matches nothing; leave the field out to match any port`);
  if (items.length > POLICY_LIMITS.portRangesPerFieldMax) {
    ctx.fail(field, `${items.length} port ranges; at most ${POLICY_LIMITS.portRangesPerFieldMax} are allowed`);
  }
  const ranges: number[] = [];
  for (const item of items) {
    if (typeof item === "number") {
      if (!Number.isInteger(item) || item < 0 || item > 65535) ctx.fail(field, `${item} is not a port (0-65535)`);
      ranges.push(item, item);
      continue;
    }
    if (typeof item !== "string") ctx.fail(field, `${describe(item)} is not a port or port range`);
    const parts = item.split("-").map((part) => part.trim());
    if (parts.length === 1) {
      const port = parsePort(ctx, field, parts[0]!);
      ranges.push(port, port);
    } else if (parts.length === 2) {
      if (!/^\d{1,5}$/.test(parts[0]!) || !/^\d{1,5}$/.test(parts[1]!)) {
        ctx.fail(field, `"${item}" is not a port range (write "lo-hi", e.g. "1024-65535")`);
      }
      const lo = parsePort(ctx, field, parts[0]!);
      const hi = parsePort(ctx, field, parts[1]!);
      if (lo > hi) ctx.fail(field, `"${item}" is not a port range (start > end)`);
      ranges.push(lo, hi);
    } else {
      ctx.fail(field, `"${item}" is not a port range (write "lo-hi", e.g. "1024-65535")`);
    }
  }
  return ranges;
}

function parseProtocol(ctx: RuleContext, value: unknown): number {
  if (value === undefined) return PROTOCOL_ANY;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0 || value > 255) ctx.fail("protocol", `${value} is not an IP protocol number (0-255)`);
    return value;
  }
  if (typeof value === "string") {
    const number = PROTOCOL_NUMBERS[value.toLowerCase()];
    if (number !== undefined) return number;
  }
  return ctx.fail("protocol", `${describe(value)} is not a protocol; use any, tcp, udp, icmp, icmpv6 or a number 0-255`);
}

function parseIcmpTypes(ctx: RuleContext, value: unknown): number[] {
  const items = Array.isArray(value) ? value : [value];
  if (items.length === 0) ctx.fail("icmpTypes", `empty list matches nothing; leave the field out to match any type`);
  const types: number[] = [];
  for (const item of items) {
    if (typeof item !== "number" || !Number.isInteger(item) || item < 0 || item > 255) {
      ctx.fail("icmpTypes", `${describe(item)} is not an ICMP type (0-255)`);
    }
    types.push(item);
  }
  return types;
}

interface Validated {
  spec: RuleSpec;
  parsed: ParsedRule;
  addressCount: number;
}

function validateRule(raw: unknown, index: number, names: Map<string, number>, locate: LineLocator | null): Validated {
  const ctx: RuleContext = new RuleContext(index, null, locate);
  if (!isPlainObject(raw)) ctx.fail("", `a rule must be a mapping of fields, got ${describe(raw)}`);
  // The name comes first so that every later message can name the rule.
  const name = raw["name"];
  if (typeof name === "string" && name.length > 0) ctx.name = name;
  if (name === undefined) ctx.fail("name", "missing (every rule needs a unique name)");
  if (typeof name !== "string") ctx.fail("name", `${describe(name)} is not a string`);
  if (name.length === 0 || name.length > POLICY_LIMITS.nameLengthMax) {
    ctx.fail("name", `must have 1-${POLICY_LIMITS.nameLengthMax} characters`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name) || name.trim() !== name) {
    ctx.fail("name", "must not contain control characters or leading/trailing spaces");
  }
  const previous = names.get(name);
  if (previous !== undefined) ctx.fail("name", `duplicate of rule #${previous + 1}; rule names must be unique`);
  names.set(name, index);

  const unknown = Object.keys(raw).filter((key) => !(RULE_FIELDS as readonly string[]).includes(key));
  if (unknown.length > 0) {
    ctx.fail(unknown[0]!, `unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((key) => `"${key}"`).join(", ")}; known fields: ${RULE_FIELDS.join(", ")}`);
  }

  const actionValue = raw["action"];
  if (actionValue === undefined) ctx.fail("action", "missing (accept, drop or reject)");
  const action = RULE_ACTION_NAMES.indexOf(actionValue as RuleActionName);
  if (action < 0) ctx.fail("action", `${describe(actionValue)} is not an action; use accept, drop or reject`);

  const description = raw["description"];
  if (description !== undefined) {
    if (typeof description !== "string") ctx.fail("description", `${describe(description)} is not a string`);
    if (description.length > POLICY_LIMITS.descriptionLengthMax) {
      ctx.fail("description", `longer than ${POLICY_LIMITS.descriptionLengthMax} characters`);
    }
  }
  const log = raw["log"];
  if (log !== undefined && typeof log !== "boolean") ctx.fail("log", `${describe(log)} is not true or false`);

  const source = parseAddressSet(ctx, "source", raw["source"]);
  const destination = parseAddressSet(ctx, "destination", raw["destination"]);
  const families = familiesOf(source) & familiesOf(destination);
  if (families === 0) {
    const familyName = (set: ParsedAddressSet): string => (set.v4.length > 0 ? "IPv4" : "IPv6");
    ctx.fail(
      "destination",
      `source is ${familyName(source)} only and destination is ${familyName(destination)} only; the rule can never match`,
    );
  }

  const protocol = parseProtocol(ctx, raw["protocol"]);
  if (protocol === PROTO_ICMP && families === FAMILY_V6) {
    ctx.fail("protocol", `"icmp" is IPv4 ICMP but the rule's addresses are IPv6 only; use "icmpv6"`);
  }
  if (protocol === PROTO_ICMPV6 && families === FAMILY_V4) {
    ctx.fail("protocol", `"icmpv6" is ICMP for IPv6 but the rule's addresses are IPv4 only; use "icmp"`);
  }
  const hasPorts = protocol === PROTO_TCP || protocol === PROTO_UDP;
  let ports: number[] | null = null;
  let sourcePorts: number[] | null = null;
  for (const field of ["ports", "sourcePorts"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (!hasPorts) ctx.fail(field, `ports need protocol tcp or udp (protocol is ${describe(raw["protocol"] ?? "any")})`);
    if (field === "ports") ports = parsePorts(ctx, field, value);
    else sourcePorts = parsePorts(ctx, field, value);
  }
  let icmpTypes: number[] | null = null;
  if (raw["icmpTypes"] !== undefined) {
    if (protocol !== PROTO_ICMP && protocol !== PROTO_ICMPV6) {
      ctx.fail("icmpTypes", `ICMP types need protocol icmp or icmpv6 (protocol is ${describe(raw["protocol"] ?? "any")})`);
    }
    icmpTypes = parseIcmpTypes(ctx, raw["icmpTypes"]);
  }

  // The normalised spec keeps the operator's own values, in the canonical field order, and
  // drops nothing but absent fields: `policy show` prints what was written.
  const spec = {} as RuleSpec;
  for (const field of RULE_FIELDS) {
    if (raw[field] !== undefined) (spec as unknown as Record<string, unknown>)[field] = raw[field];
  }
  const parsed: ParsedRule = {
    name,
    index,
    source,
    destination,
    protocol,
    ports,
    sourcePorts,
    icmpTypes,
    action: action as RuleAction,
    log: log === true,
    families,
  };
  const addressCount = source.v4.length + source.v6.length + destination.v4.length + destination.v6.length;
  return { spec, parsed, addressCount };
}

function validateWithLocator(input: unknown, locate: LineLocator | null): { spec: PolicySpec; rules: ParsedRule[] } {
  let rawRules: unknown;
  if (Array.isArray(input)) {
    rawRules = input;
  } else if (isPlainObject(input)) {
    const unknown = Object.keys(input).filter((key) => key !== "rules");
    if (unknown.length > 0) {
      throw policyError(`unknown top-level field ${unknown.map((key) => `"${key}"`).join(", ")}; the only field is "rules"`, {
        field: unknown[0],
      });
    }
    rawRules = input["rules"] ?? [];
  } else if (input === null || input === undefined) {
    rawRules = []; // An empty document is an empty policy: everything is dropped.
  } else {
    throw policyError(`expected a mapping with "rules" or a list of rules, got ${describe(input)}`);
  }
  if (!Array.isArray(rawRules)) throw policyError(`"rules" must be a list, got ${describe(rawRules)}`, { field: "rules" });
  if (rawRules.length > POLICY_LIMITS.rulesMax) {
    throw policyError(`${rawRules.length} rules; at most ${POLICY_LIMITS.rulesMax} are allowed`, { field: "rules" });
  }
  const names = new Map<string, number>();
  const specs: RuleSpec[] = [];
  const rules: ParsedRule[] = [];
  let addressesTotal = 0;
  for (let i = 0; i < rawRules.length; i++) {
    const validated = validateRule(rawRules[i], i, names, locate);
    addressesTotal += validated.addressCount;
    if (addressesTotal > POLICY_LIMITS.addressesTotalMax) {
      throw policyError(`more than ${POLICY_LIMITS.addressesTotalMax} addresses in source and destination lists over all rules`, {
        field: "rules",
        ruleIndex: i,
      });
    }
    specs.push(validated.spec);
    rules.push(validated.parsed);
  }
  return { spec: { rules: specs }, rules };
}

/**
 * Validates a policy given as plain data (the result of JSON.parse or a YAML load): a
 * mapping `{ rules: [...] }` or a bare list of rules. Returns a normalised copy (fields in
 * canonical order, absent fields omitted, values as written). Throws POLICY_INVALID.
 */
export function validatePolicy(input: unknown): PolicySpec {
  return validateWithLocator(input, null).spec;
}

/** Validates and returns both the normalised spec and the numeric form of every rule, in order (for the compiler). */
export function analysePolicy(input: unknown): { spec: PolicySpec; rules: ParsedRule[] } {
  return validateWithLocator(input, null);
}

function lineOfOffset(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /position (\d+)/.exec(message);
    const where = position === null ? "" : ` (line ${lineOfOffset(text, Number(position[1]))})`;
    throw policyError(`not valid JSON${where}: ${message}`, position === null ? {} : { line: lineOfOffset(text, Number(position[1])) });
  }
}

function parseYaml(text: string): { data: unknown; locate: LineLocator } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line ?? lineCounter.linePos(first.pos[0]).line;
    const reason = first.message.split("\n")[0];
    throw policyError(`not valid YAML (line ${line}): ${reason}`, { line });
  }
  const data = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  const rulesPath: unknown[] = Array.isArray(data) ? [] : ["rules"];
  const locate: LineLocator = (ruleIndex, field) => {
    const ruleNode = doc.getIn([...rulesPath, ruleIndex], true) as YamlNode | undefined;
    if (ruleNode === undefined || ruleNode === null) return undefined;
    let node: YamlNode = ruleNode;
    if (field !== null && isMap(ruleNode)) {
      const pair = ruleNode.items.find((item) => (item.key as { value?: unknown } | null)?.value === field);
      if (pair !== undefined) node = (pair.value as YamlNode | null) ?? (pair.key as YamlNode);
    }
    const range = node.range ?? (isSeq(ruleNode) || isMap(ruleNode) ? ruleNode.range : undefined);
    return range === undefined || range === null ? undefined : lineCounter.linePos(range[0]).line;
  };
  return { data, locate };
}

/**
 * Parses policy text. "auto" reads JSON when the first non-blank character is "{" or "[",
 * YAML otherwise. Syntax errors and validation errors are POLICY_INVALID with the line.
 */
export function parsePolicyText(text: string, format: "yaml" | "json" | "auto"): PolicySpec {
  const useJson = format === "json" || (format === "auto" && /^\s*[[{]/.test(text));
  if (useJson) return validateWithLocator(parseJson(text), null).spec;
  const { data, locate } = parseYaml(text);
  return validateWithLocator(data, locate).spec;
}

/** YAML text of a policy (for `tandem policy show`); parsePolicyText reads it back to an equal spec. */
export function policyToText(spec: PolicySpec): string {
  const normalised = validatePolicy(spec);
  if (normalised.rules.length === 0) return "rules: []\n";
  return stringify(normalised, { lineWidth: 0 });
}
