// Rule-base benchmark (issue 2): compile time, memory and per-lookup time of the compiled
// policy for 1,000 / 10,000 (/ 100,000 without --quick) rules, against a baseline linear
// first-match scan over the same parsed rules in the same run.
//
// Workloads (seeded Prng, so every run measures the same rules and packets):
//   random         realistic mix: 30% IPv6, 40% "any" source, 20% "any" destination, tcp/udp
//                  with ports, icmp with types; random packets usually hit an early rule
//   mostlyMiss     as random but every rule names a destination: most packets scan deep
//   adversarial    alternating "source 10/8" / "destination 10/8" rules and packets from and
//                  to outside 10/8: every dimension has candidates everywhere, the AND is empty
//   hosts          one /32 destination + tcp/443 per rule; packets miss, or hit one host
//
// One PacketView and one buffer are refilled before each lookup (the packet is in cache, as
// right after parsing); the cost of refilling is measured separately and subtracted.

import { analysePolicy, type ParsedRule, type RuleSpec } from "../src/engine/policy.js";
import { compilePolicy, type RuleBase } from "../src/engine/rule-base.js";
import { PacketView } from "../src/packet/view.js";
import { Prng } from "../src/stdx/prng.js";

const PACKETS = 4096;
const FIELDS = 15; // version, src4, dst4, protocol, sport, dport, icmpType, 8 words of IPv6 addresses

function randomV4(prng: Prng, length: number): string {
  const mask = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
  const n = (prng.nextU32() & mask) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/${length}`;
}

function randomV6(prng: Prng, length: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, length - i * 16));
    groups.push(prng.nextInt(65536) & ((0xffff0000 >>> keep) & 0xffff));
  }
  return `${groups.map((g) => g.toString(16)).join(":")}/${length}`;
}

function randomRules(prng: Prng, count: number, destinationAny: number): RuleSpec[] {
  const rules: RuleSpec[] = [];
  for (let i = 0; i < count; i++) {
    const v6 = prng.chance(0.3);
    const addresses = (anyShare: number): string[] | undefined => {
      if (prng.chance(anyShare)) return undefined;
      return Array.from({ length: prng.range(1, 3) }, () => (v6 ? randomV6(prng, prng.range(16, 128)) : randomV4(prng, prng.range(8, 32))));
    };
    const rule: RuleSpec = { name: `r${i}`, action: prng.pick(["accept", "drop", "reject"] as const) };
    const source = addresses(0.4);
    if (source !== undefined) rule.source = source;
    const destination = addresses(destinationAny);
    if (destination !== undefined) rule.destination = destination;
    const x = prng.nextFloat();
    if (x < 0.5) rule.protocol = "tcp";
    else if (x < 0.75) rule.protocol = "udp";
    else if (x < 0.85) rule.protocol = v6 ? "icmpv6" : "icmp";
    if ((rule.protocol === "tcp" || rule.protocol === "udp") && prng.chance(0.7)) {
      rule.ports = Array.from({ length: prng.range(1, 3) }, () => {
        const port = prng.nextInt(65536);
        return prng.chance(0.5) ? port : `${port}-${Math.min(65535, port + prng.nextInt(2000))}`;
      });
      if (prng.chance(0.05)) rule.sourcePorts = "1024-65535";
    }
    if ((rule.protocol === "icmp" || rule.protocol === "icmpv6") && prng.chance(0.5)) rule.icmpTypes = [prng.nextInt(256)];
    rules.push(rule);
  }
  return rules;
}

interface PacketOptions {
  src?: number;
  dst?: number;
  protocol?: number;
  dstPort?: number;
}

function packets(prng: Prng, version: 4 | 6, options: PacketOptions = {}): Int32Array {
  const out = new Int32Array(PACKETS * FIELDS);
  for (let i = 0; i < PACKETS; i++) {
    const o = i * FIELDS;
    out[o] = version;
    out[o + 1] = options.src !== undefined ? options.src + prng.nextInt(256) : prng.nextU32();
    out[o + 2] = options.dst !== undefined ? options.dst + prng.nextInt(256) : prng.nextU32();
    out[o + 3] = options.protocol ?? prng.pick(version === 6 ? [6, 17, 58] : [6, 17, 1]);
    out[o + 4] = prng.nextInt(65536);
    out[o + 5] = options.dstPort ?? prng.nextInt(65536);
    out[o + 6] = version === 6 ? 128 : 8;
    for (let j = 0; j < 8; j++) out[o + 7 + j] = prng.nextU32();
  }
  return out;
}

const view = new PacketView();
const addressBuf = new Uint8Array(32);
const addressData = new DataView(addressBuf.buffer);
view.buf = addressBuf;
view.srcAddrOffset = 0;
view.dstAddrOffset = 16;

function load(data: Int32Array, i: number): void {
  const o = i * FIELDS;
  view.ipVersion = data[o]!;
  view.src4 = data[o + 1]! >>> 0;
  view.dst4 = data[o + 2]! >>> 0;
  view.protocol = data[o + 3]!;
  view.srcPort = data[o + 4]!;
  view.dstPort = data[o + 5]!;
  view.icmpType = data[o + 6]!;
  for (let j = 0; j < 8; j++) addressData.setUint32(j * 4, data[o + 7 + j]! >>> 0);
}

interface Timing {
  ns: number;
  hitRate: number;
}

/** Best of `rounds` rounds of `iterations` passes over `count` packets, refill cost subtracted. */
function time(match: (view: PacketView) => number, data: Int32Array, iterations: number, rounds: number, count = PACKETS): Timing {
  let best: Timing = { ns: Infinity, hitRate: 0 };
  for (let i = 0; i < count; i++) {
    load(data, i);
    match(view);
  }
  for (let round = 0; round < rounds; round++) {
    let start = performance.now();
    for (let k = 0; k < iterations; k++) for (let i = 0; i < count; i++) load(data, i);
    const loadMs = performance.now() - start;
    let hits = 0;
    start = performance.now();
    for (let k = 0; k < iterations; k++) {
      for (let i = 0; i < count; i++) {
        load(data, i);
        if (match(view) >= 0) hits++;
      }
    }
    const ns = ((performance.now() - start - loadMs) * 1e6) / (iterations * count);
    if (ns < best.ns) best = { ns: Math.round(ns), hitRate: Number((hits / (iterations * count)).toFixed(3)) };
  }
  return best;
}

/** Baseline: a plain linear first-match scan over the parsed rules (IPv4 packets only). */
function linearMatcher(rules: ParsedRule[]): (view: PacketView) => number {
  const v4 = rules
    .filter((rule) => rule.families & 1)
    .map((rule) => {
      const prefixes = (set: ParsedRule["source"]): Array<[number, number]> | null =>
        set.any
          ? null
          : set.v4.map((cidr) => {
              const mask = cidr.length === 0 ? 0 : (0xffffffff << (32 - cidr.length)) >>> 0;
              const value = ((cidr.bytes[0]! << 24) | (cidr.bytes[1]! << 16) | (cidr.bytes[2]! << 8) | cidr.bytes[3]!) >>> 0;
              return [value, mask];
            });
      return { rule, source: prefixes(rule.source), destination: prefixes(rule.destination) };
    });
  const inSet = (set: Array<[number, number]> | null, address: number): boolean =>
    set === null || set.some(([value, mask]) => ((address & mask) >>> 0) === value);
  const inPorts = (ranges: number[] | null, port: number): boolean => {
    if (ranges === null) return true;
    for (let i = 0; i < ranges.length; i += 2) if (port >= ranges[i]! && port <= ranges[i + 1]!) return true;
    return false;
  };
  return (packet) => {
    for (const { rule, source, destination } of v4) {
      if (!inSet(source, packet.src4) || !inSet(destination, packet.dst4)) continue;
      if (rule.protocol !== -1 && rule.protocol !== packet.protocol) continue;
      if (rule.icmpTypes !== null && !rule.icmpTypes.includes(packet.icmpType)) continue;
      if (!inPorts(rule.ports, packet.dstPort) || !inPorts(rule.sourcePorts, packet.srcPort)) continue;
      return rule.index;
    }
    return -1;
  };
}

function compileTimed(rules: RuleSpec[]): { ruleBase: RuleBase; buildMs: number } {
  const start = performance.now();
  const ruleBase = compilePolicy({ rules });
  return { ruleBase, buildMs: Math.round(performance.now() - start) };
}

export async function run(opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  const sizes = opts.quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];
  const iterations = opts.quick ? 10 : 40;
  const rounds = opts.quick ? 2 : 5;
  const results: Array<Record<string, unknown>> = [];
  for (const size of sizes) {
    const prng = new Prng(size);
    const workloads: Record<string, RuleSpec[]> = {
      random: randomRules(prng, size, 0.2),
      mostlyMiss: randomRules(prng, size, 0),
      adversarial: Array.from({ length: size }, (_, i): RuleSpec =>
        i % 2 === 0 ? { name: `a${i}`, source: "10.0.0.0/8", action: "accept" } : { name: `a${i}`, destination: "10.0.0.0/8", action: "drop" },
      ),
      hosts: Array.from({ length: size }, (_, i): RuleSpec => ({
        name: `h${i}`,
        destination: `198.${18 + (i >>> 16)}.${(i >>> 8) & 255}.${i & 255}/32`,
        protocol: "tcp",
        ports: 443,
        action: "accept",
      })),
    };
    for (const [name, rules] of Object.entries(workloads)) {
      const { ruleBase, buildMs } = compileTimed(rules);
      const stats = ruleBase.stats();
      const linear = linearMatcher(analysePolicy({ rules }).rules);
      const match = (packet: PacketView): number => ruleBase.match(packet);
      const row: Record<string, unknown> = { rules: size, workload: name, buildMs, memoryMB: Number((stats.memoryBytes / 1e6).toFixed(2)), groups: stats.groups4 + stats.groups6 };
      // The baseline is slow at large sizes: fewer packets (its time is per lookup all the same).
      const baselinePackets = size >= 100_000 ? 64 : size >= 10_000 ? 256 : PACKETS;
      let v4: Int32Array;
      if (name === "adversarial") v4 = packets(prng, 4, { src: 0x0b000000, dst: 0x0c000000 });
      else if (name === "hosts") v4 = packets(prng, 4, { dst: 0xc6120000, protocol: 6, dstPort: 443 });
      else v4 = packets(prng, 4);
      row["v4"] = time(match, v4, iterations, rounds);
      if (name === "random" || name === "mostlyMiss") row["v6"] = time(match, packets(prng, 6), iterations, rounds);
      if (name === "hosts") row["v4Miss"] = time(match, packets(prng, 4), iterations, rounds);
      row["v4LinearBaseline"] = time(linear, v4, 1, 1, baselinePackets);
      results.push(row);
      if (!opts.json) process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }
  return { unit: "ns per lookup (v4, v6) / ms (build)", results };
}
