import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIp, parseIpv4 } from "../packet/addr.js";
import { packet } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { PacketView } from "../packet/view.js";
import { validatePolicy, type PolicySpec, type RuleSpec } from "./policy.js";
import { compilePolicy, RuleAction, type CompileOptions } from "./rule-base.js";

const SEED = 42;

// ---- reference matcher: a plain linear scan over the spec, independent of the compiler ----

interface TestPacket {
  version: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  protocol: number;
  srcPort: number;
  dstPort: number;
  icmpType: number;
}

function asList<T>(value: T | T[] | undefined): T[] | undefined {
  return value === undefined ? undefined : Array.isArray(value) ? value : [value];
}

const parsedPrefixes = new Map<string, { network: Uint8Array; length: number }>();

function prefixContains(prefixText: string, address: Uint8Array): boolean {
  let parsed = parsedPrefixes.get(prefixText);
  if (parsed === undefined) {
    const [addressText, lengthText] = prefixText.split("/");
    const bytes = parseIp(addressText!)!;
    parsed = { network: bytes, length: lengthText === undefined ? bytes.length * 8 : Number(lengthText) };
    parsedPrefixes.set(prefixText, parsed);
  }
  const { network, length } = parsed;
  if (network.length !== address.length) return false;
  for (let bit = 0; bit < length; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if ((network[byte]! & mask) !== (address[byte]! & mask)) return false;
  }
  return true;
}

function addressMatches(field: string | string[] | undefined, address: Uint8Array): boolean {
  const list = asList(field);
  if (list === undefined || list.includes("any")) return true;
  return list.some((prefix) => prefixContains(prefix, address));
}

function portMatches(field: RuleSpec["ports"], port: number): boolean {
  const list = asList(field as number | string | Array<number | string> | undefined);
  if (list === undefined) return true;
  return list.some((item) => {
    const [lo, hi] = String(item).split("-").map(Number);
    return port >= lo! && port <= (hi ?? lo)!;
  });
}

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

function referenceMatch(rules: RuleSpec[], p: TestPacket): number {
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!addressMatches(rule.source, p.src) || !addressMatches(rule.destination, p.dst)) continue;
    if (rule.protocol !== undefined && rule.protocol !== "any") {
      const number = typeof rule.protocol === "number" ? rule.protocol : PROTOCOLS[rule.protocol]!;
      if (number !== p.protocol) continue;
    }
    if (!portMatches(rule.ports, p.dstPort) || !portMatches(rule.sourcePorts, p.srcPort)) continue;
    const types = asList(rule.icmpTypes);
    if (types !== undefined && !types.includes(p.icmpType)) continue;
    return i;
  }
  return -1;
}

/** Fills a PacketView the way the parser would (IPv6 addresses at their header offsets). */
function viewOf(p: TestPacket, view = new PacketView()): PacketView {
  const buf = new Uint8Array(40);
  view.buf = buf;
  view.ipVersion = p.version;
  view.protocol = p.protocol;
  view.srcPort = p.srcPort;
  view.dstPort = p.dstPort;
  view.icmpType = p.icmpType;
  if (p.version === 4) {
    buf.set(p.src, 12);
    buf.set(p.dst, 16);
    view.srcAddrOffset = 12;
    view.dstAddrOffset = 16;
    view.src4 = ((p.src[0]! << 24) | (p.src[1]! << 16) | (p.src[2]! << 8) | p.src[3]!) >>> 0;
    view.dst4 = ((p.dst[0]! << 24) | (p.dst[1]! << 16) | (p.dst[2]! << 8) | p.dst[3]!) >>> 0;
  } else {
    buf.set(p.src, 8);
    buf.set(p.dst, 24);
    view.srcAddrOffset = 8;
    view.dstAddrOffset = 24;
    view.src4 = 0;
    view.dst4 = 0;
  }
  return view;
}

// ---- generators ----------------------------------------------------------------------------

const V4_PREFIXES = [
  "0.0.0.0/0",
  "10.0.0.0/8",
  "10.1.0.0/16",
  "10.1.2.0/24",
  "10.1.2.0/31",
  "10.1.2.3",
  "10.255.255.255/32",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "192.168.1.128/25",
  "255.255.255.0/24",
];
const V6_PREFIXES = [
  "::/0",
  "2001:db8::/32",
  "2001:db8:1::/48",
  "2001:db8:1:2::/64",
  "2001:db8:1::5",
  "2001:db8:0:0:8000::/65",
  "fd00::/8",
  "fe80::/10",
  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
];
const PORT_ITEMS: Array<number | string> = [22, 53, 80, 443, "0-1023", "1000-2000", "1024-65535", "443-8443", "65535", "80-80", 0];
const PORT_VALUES = [0, 22, 53, 79, 80, 81, 443, 999, 1000, 1023, 1024, 2000, 2001, 8080, 8443, 8444, 65534, 65535];
const ICMP_TYPES = [0, 3, 8, 11, 128, 129, 255];

function isValidRule(rule: RuleSpec): boolean {
  try {
    validatePolicy({ rules: [rule] });
    return true;
  } catch {
    return false; // the generator proposes some impossible combinations; they are skipped
  }
}

const addressField = (pool: string[]): fc.Arbitrary<string | string[] | undefined> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constant("any") },
    { weight: 1, arbitrary: fc.constantFrom(...pool) },
    { weight: 5, arbitrary: fc.subarray(pool, { minLength: 1, maxLength: 3 }) },
  );

const ruleArbitrary: fc.Arbitrary<Omit<RuleSpec, "name">> = fc
  .constantFrom<"4" | "6" | "both">("4", "6", "both")
  .chain((family) => {
    const pool = family === "4" ? V4_PREFIXES : family === "6" ? V6_PREFIXES : [...V4_PREFIXES, ...V6_PREFIXES];
    return fc.record(
      {
        source: addressField(pool),
        destination: addressField(pool),
        protocol: fc.constantFrom<RuleSpec["protocol"]>(undefined, "any", "tcp", "tcp", "udp", "icmp", "icmpv6", 47, 6),
        ports: fc.option(fc.oneof(fc.constantFrom(...PORT_ITEMS), fc.subarray(PORT_ITEMS, { minLength: 1, maxLength: 3 })), {
          nil: undefined,
        }),
        sourcePorts: fc.option(fc.constantFrom<RuleSpec["sourcePorts"]>("1024-65535", 53, [0, "10-20"]), { nil: undefined, freq: 6 }),
        icmpTypes: fc.option(fc.subarray(ICMP_TYPES, { minLength: 1, maxLength: 3 }), { nil: undefined }),
        action: fc.constantFrom<RuleSpec["action"]>("accept", "drop", "reject"),
        log: fc.boolean(),
      },
      { requiredKeys: ["action"] },
    );
  })
  .map((rule) => {
    // Drop the fields the protocol does not allow, then keep only valid rules.
    const protocol = rule.protocol;
    const out = { ...rule } as Omit<RuleSpec, "name">;
    if (protocol !== "tcp" && protocol !== "udp" && protocol !== 6) {
      delete out.ports;
      delete out.sourcePorts;
    }
    if (protocol !== "icmp" && protocol !== "icmpv6") delete out.icmpTypes;
    for (const key of Object.keys(out) as Array<keyof typeof out>) if (out[key] === undefined) delete out[key];
    return out;
  })
  .filter((rule) => isValidRule({ name: "x", ...rule }));

function policyArbitrary(rulesMax: number): fc.Arbitrary<RuleSpec[]> {
  return fc
    .array(ruleArbitrary, { maxLength: rulesMax })
    .map((rules) => rules.map((rule, i): RuleSpec => ({ name: `r${i}`, ...rule })));
}

function addressInside(pool: string[], version: 4 | 6): fc.Arbitrary<Uint8Array> {
  const size = version === 4 ? 4 : 16;
  const random = fc.uint8Array({ minLength: size, maxLength: size });
  return fc.oneof(
    random,
    fc.tuple(fc.constantFrom(...pool), random).map(([prefix, bytes]) => {
      const [addressText, lengthText] = prefix.split("/");
      const network = parseIp(addressText!)!;
      const length = lengthText === undefined ? size * 8 : Number(lengthText);
      const out = new Uint8Array(bytes);
      for (let bit = 0; bit < length; bit++) {
        const mask = 0x80 >> (bit & 7);
        out[bit >> 3] = (out[bit >> 3]! & ~mask) | (network[bit >> 3]! & mask);
      }
      return out;
    }),
  );
}

const packetArbitrary: fc.Arbitrary<TestPacket> = fc.constantFrom<4 | 6>(4, 6).chain((version) => {
  const pool = version === 4 ? V4_PREFIXES : V6_PREFIXES;
  const port = fc.oneof(fc.constantFrom(...PORT_VALUES), fc.integer({ min: 0, max: 65535 }));
  return fc.record({
    version: fc.constant(version),
    src: addressInside(pool, version),
    dst: addressInside(pool, version),
    protocol: fc.constantFrom(6, 6, 17, 1, 58, 47, 0),
    srcPort: port,
    dstPort: port,
    icmpType: fc.constantFrom(...ICMP_TYPES),
  });
});

function agreesWithReference(rules: RuleSpec[], packets: TestPacket[], options: CompileOptions = {}): void {
  const ruleBase = compilePolicy({ rules }, options);
  const view = new PacketView();
  for (const p of packets) {
    const expected = referenceMatch(rules, p);
    const actual = ruleBase.match(viewOf(p, view));
    if (actual !== expected) {
      throw new Error(`packet ${JSON.stringify({ ...p, src: [...p.src], dst: [...p.dst] })}: match ${actual}, reference ${expected}`);
    }
  }
}

describe("compilePolicy / RuleBase.match", () => {
  it(`agrees with a linear reference scan on random policies and packets (seed ${SEED})`, () => {
    fc.assert(
      fc.property(policyArbitrary(40), fc.array(packetArbitrary, { minLength: 50, maxLength: 100 }), (rules, packets) => {
        agreesWithReference(rules, packets);
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it(`agrees with the reference across 256-rule positions and several groups (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        fc.array(ruleArbitrary, { minLength: 300, maxLength: 700 }).map((rules) => rules.map((rule, i): RuleSpec => ({ name: `r${i}`, ...rule }))),
        fc.array(packetArbitrary, { minLength: 200, maxLength: 200 }),
        (rules, packets) => {
          agreesWithReference(rules, packets); // one group, up to 3 positions
          agreesWithReference(rules, packets, { groupRulesMax: 300, groupRangesMax: 1024 }); // several groups
        },
      ),
      { seed: SEED, numRuns: 8 },
    );
  });

  it("first match wins: an earlier rule shadows a later, more specific one", () => {
    const ruleBase = compilePolicy({
      rules: [
        { name: "all-web", destination: "10.0.0.0/8", protocol: "tcp", ports: 80, action: "drop" },
        { name: "one-host", destination: "10.1.2.3", protocol: "tcp", ports: 80, action: "accept" },
        { name: "one-host-443", destination: "10.1.2.3", protocol: "tcp", ports: 443, action: "accept" },
      ],
    });
    const view = viewOf({ version: 4, src: new Uint8Array([1, 2, 3, 4]), dst: new Uint8Array([10, 1, 2, 3]), protocol: 6, srcPort: 5000, dstPort: 80, icmpType: 0 });
    expect(ruleBase.match(view)).toBe(0);
    expect(ruleBase.actionOf(0)).toBe(RuleAction.DROP);
    view.dstPort = 443;
    expect(ruleBase.match(view)).toBe(2);
    expect(ruleBase.nameOf(2)).toBe("one-host-443");
    view.dstPort = 22;
    expect(ruleBase.match(view)).toBe(-1);
  });

  it("an empty policy matches nothing (default drop)", () => {
    const ruleBase = compilePolicy({ rules: [] });
    expect(ruleBase.ruleCount).toBe(0);
    for (const version of [4, 6] as const) {
      const size = version === 4 ? 4 : 16;
      const view = viewOf({ version, src: new Uint8Array(size), dst: new Uint8Array(size).fill(7), protocol: 6, srcPort: 1, dstPort: 80, icmpType: 0 });
      expect(ruleBase.match(view)).toBe(-1);
    }
  });

  it("IPv4 rules never match IPv6 packets and vice versa; 'any' matches both", () => {
    const ruleBase = compilePolicy({
      rules: [
        { name: "v4-all", source: "0.0.0.0/0", action: "drop" },
        { name: "v6-all", destination: "::/0", action: "reject" },
        { name: "any", action: "accept" },
      ],
    });
    const v4 = viewOf({ version: 4, src: new Uint8Array([10, 0, 0, 1]), dst: new Uint8Array([10, 0, 0, 2]), protocol: 17, srcPort: 1, dstPort: 53, icmpType: 0 });
    const v6 = viewOf({ version: 6, src: parseIp("2001:db8::1")!, dst: parseIp("2001:db8::2")!, protocol: 17, srcPort: 1, dstPort: 53, icmpType: 0 });
    expect(ruleBase.match(v4)).toBe(0);
    expect(ruleBase.match(v6)).toBe(1);

    // An IPv4-mapped-looking IPv6 address does not match an IPv4 rule either.
    const v4Only = compilePolicy({ rules: [{ name: "v4", destination: "10.0.0.0/8", action: "accept" }] });
    const mapped = viewOf({ version: 6, src: parseIp("::ffff:10.0.0.1")!, dst: parseIp("::ffff:10.0.0.2")!, protocol: 6, srcPort: 1, dstPort: 2, icmpType: 0 });
    expect(v4Only.match(mapped)).toBe(-1);
    const anyOnly = compilePolicy({ rules: [{ name: "any", source: "any", destination: "any", action: "accept" }] });
    expect(anyOnly.match(v4)).toBe(0);
    expect(anyOnly.match(v6)).toBe(0);
    expect(anyOnly.match(mapped)).toBe(0);
  });

  it("a mixed address list applies per family", () => {
    const ruleBase = compilePolicy({ rules: [{ name: "mixed", source: ["10.0.0.0/8", "2001:db8::/32"], action: "accept" }] });
    const p = (src: string): TestPacket => {
      const bytes = parseIp(src)!;
      return { version: bytes.length === 4 ? 4 : 6, src: bytes, dst: bytes, protocol: 6, srcPort: 1, dstPort: 2, icmpType: 0 };
    };
    expect(ruleBase.match(viewOf(p("10.9.9.9")))).toBe(0);
    expect(ruleBase.match(viewOf(p("11.9.9.9")))).toBe(-1);
    expect(ruleBase.match(viewOf(p("2001:db8:5::1")))).toBe(0);
    expect(ruleBase.match(viewOf(p("2001:db9::1")))).toBe(-1);
  });

  it("non-IP views match nothing", () => {
    const ruleBase = compilePolicy({ rules: [{ name: "any", action: "accept" }] });
    const view = new PacketView();
    expect(view.ipVersion).toBe(0);
    expect(ruleBase.match(view)).toBe(-1);
  });

  it("matches frames parsed from the packet builder (TCP, UDP, ICMP echo, ICMPv6)", () => {
    const ruleBase = compilePolicy({
      rules: [
        { name: "ping", protocol: "icmp", icmpTypes: [8], action: "accept" },
        { name: "ping6", protocol: "icmpv6", icmpTypes: [128], action: "accept", log: true },
        { name: "dns", destination: "198.18.0.53", protocol: "udp", ports: 53, action: "accept" },
        { name: "web", destination: ["198.18.1.0/28", "2001:db8:80::/48"], protocol: "tcp", ports: [80, "443"], action: "accept" },
        { name: "telnet", protocol: "tcp", ports: 23, action: "reject" },
      ],
    });
    const view = new PacketView();
    const check = (frame: Uint8Array, linkType: number): number => {
      expect(parseFrame(view, frame, 0, frame.length, linkType)).toBe(true);
      return ruleBase.match(view);
    };
    const tcp = (dst: string, dport: number): number => {
      const builder = dst.includes(":")
        ? packet().ipv6({ src: "2001:db8:1::1", dst }).tcp({ sport: 40000, dport, flags: "S" })
        : packet().ipv4({ src: "198.18.0.10", dst }).tcp({ sport: 40000, dport, flags: "S" });
      return check(builder.build(), builder.linkType());
    };
    expect(tcp("198.18.1.5", 443)).toBe(3);
    expect(tcp("198.18.1.16", 443)).toBe(-1);
    expect(tcp("2001:db8:80:1::9", 80)).toBe(3);
    expect(tcp("198.18.7.7", 23)).toBe(4);
    expect(ruleBase.actionOf(4)).toBe(RuleAction.REJECT);
    const dns = packet().ipv4({ src: "198.18.0.10", dst: "198.18.0.53" }).udp({ sport: 5353, dport: 53 });
    expect(check(dns.build(), dns.linkType())).toBe(2);
    // An echo request's identifier sits in the port fields; the rule looks at the ICMP type.
    const ping = packet().ipv4({ src: "198.18.0.10", dst: "198.18.0.1" }).icmp({ type: 8, id: 23, seq: 1 });
    expect(check(ping.build(), ping.linkType())).toBe(0);
    const reply = packet().ipv4({ src: "198.18.0.10", dst: "198.18.0.1" }).icmp({ type: 0, id: 8, seq: 1 });
    expect(check(reply.build(), reply.linkType())).toBe(-1);
    const ping6 = packet().ipv6({ src: "2001:db8::1", dst: "2001:db8::2" }).icmpv6({ type: 128, id: 1, seq: 1 });
    expect(check(ping6.build(), ping6.linkType())).toBe(1);
    expect(ruleBase.logOf(1)).toBe(true);
    expect(ruleBase.logOf(0)).toBe(false);
  });

  it("match() does not count; hits are the caller's", () => {
    const ruleBase = compilePolicy({ rules: [{ name: "any", action: "accept" }] });
    const view = viewOf({ version: 4, src: new Uint8Array(4), dst: new Uint8Array(4), protocol: 6, srcPort: 1, dstPort: 1, icmpType: 0 });
    expect(ruleBase.match(view)).toBe(0);
    expect(ruleBase.hits[0]).toBe(0);
    ruleBase.hits[ruleBase.match(view)]!++;
    expect(ruleBase.hits[0]).toBe(1);
  });

  it("keeps the validated spec and exposes per-rule metadata", () => {
    const spec: PolicySpec = {
      rules: [
        { name: "a", action: "accept", log: true, description: "first" },
        { name: "b", action: "reject" },
      ],
    };
    const ruleBase = compilePolicy(spec);
    expect(ruleBase.spec).toEqual(spec);
    expect(ruleBase.ruleCount).toBe(2);
    expect([ruleBase.nameOf(0), ruleBase.nameOf(1)]).toEqual(["a", "b"]);
    expect([ruleBase.actionOf(0), ruleBase.actionOf(1)]).toEqual([RuleAction.ACCEPT, RuleAction.REJECT]);
    expect(ruleBase.actionNameOf(1)).toBe("reject");
    expect(ruleBase.hits).toHaveLength(2);
    expect(() => ruleBase.nameOf(2)).toThrow();
  });

  it("rejects an invalid policy with POLICY_INVALID", () => {
    expect(() => compilePolicy({ rules: [{ name: "x", action: "allow" as "accept" }] })).toThrow(/field "action"/);
  });

  it("10,000 rules compile into one group per family with bounded memory", () => {
    const rules: RuleSpec[] = [];
    for (let i = 0; i < 10_000; i++) {
      const host = `10.${(i >> 8) & 255}.${i & 255}.0/24`;
      rules.push({ name: `r${i}`, source: i % 3 === 0 ? "any" : host, destination: `198.18.${i & 255}.${(i >> 8) & 255}`, protocol: "tcp", ports: (i % 1000) + 1, action: "accept" });
    }
    rules.push({ name: "v6", destination: "2001:db8::/32", action: "drop" });
    const ruleBase = compilePolicy({ rules });
    const stats = ruleBase.stats();
    expect(stats).toMatchObject({ rules: 10_001, rules4: 10_000, rules6: 1, groups4: 1, groups6: 1 });
    expect(stats.memoryBytes).toBeLessThan(50_000_000);
    const view = viewOf({ version: 4, src: new Uint8Array([10, 0, 9, 1]), dst: new Uint8Array([198, 18, 9, 0]), protocol: 6, srcPort: 1, dstPort: 10, icmpType: 0 });
    expect(ruleBase.match(view)).toBe(9);
    view.src4 = parseIpv4("10.0.77.1")!;
    expect(ruleBase.match(view)).toBe(9); // rule 9 has source "any" (9 % 3 === 0)
    view.dst4 = parseIpv4("198.18.10.39")!; // rule 9994 = 10 + 39 * 256: source 10.39.10.0/24
    view.dstPort = (9994 % 1000) + 1;
    expect(ruleBase.match(view)).toBe(-1);
    view.src4 = parseIpv4("10.39.10.200")!;
    expect(ruleBase.match(view)).toBe(9994);
  });
});
