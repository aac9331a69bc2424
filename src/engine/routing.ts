// The security group's route table: connected prefixes of its interfaces plus static routes,
// longest-prefix match for IPv4 and IPv6, no allocation per lookup.
//
// IPv4: prefixes up to /16 are expanded into a 65,536-entry table indexed by the top 16 bits
// (each entry holds the longest such route covering that /16). Longer prefixes live in one
// open-addressing hash table per length, and a second 65,536-entry table says, per /16,
// which of the lengths 17-32 have a route inside it; a lookup probes only those, longest
// first, then falls back to the expanded entry. Typical cost: two reads; worst case one
// probe per distinct length above /16 in the packet's /16 (512 KiB per table, fixed).
//
//   short4[top16]        -> route id (<= /16) or -1
//   longLengths4[top16]  -> bitmask of lengths 17..32 present below this /16
//   per length L > 16:   key = addr & mask(L); slot = fmix32(L ^ key) & (size - 1), linear probe
//
// IPv6: the same per-length hash tables for every length present, probed longest first (SG
// tables are small: a handful of lengths).
//
// Invariants: no two routes have the same prefix (connected prefixes on two interfaces, or a
// static route repeating any prefix, are configuration errors); a static route's `via` lies
// inside a connected prefix of its own interface; every hash table is at most half full, so
// a probe always reaches an empty slot.

import type { PacketView } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import { cidrContains, formatNetwork, networkOf, parseCidr, v4Mask, v4Value, type Cidr } from "./cidr.js";
import { formatIp } from "../packet/addr.js";

/** One network segment of the SG: its egress index and the gateway's address(es) on it, as "address/prefix". */
export interface InterfaceSpec {
  name: string;
  index: number;
  addresses: string[];
}

/** A static route: destinations in `prefix` leave through `interface`, to `via` when given (else directly). */
export interface StaticRouteSpec {
  prefix: string;
  interface: string;
  via?: string;
}

/** A route as ordinary values, for display and the API. */
export interface RouteInfo {
  kind: "connected" | "static";
  prefix: string;
  interface: string;
  interfaceIndex: number;
  via: string | null;
}

/** Bounds: the table is sized once from the configuration. */
export const ROUTING_LIMITS = {
  interfacesMax: 4096,
  addressesPerInterfaceMax: 64,
  staticRoutesMax: 100_000,
} as const;

interface RouteEntry {
  kind: "connected" | "static";
  network: Cidr; // host bits cleared
  interfaceName: string;
  interfaceIndex: number;
  via: Uint8Array | null;
}

/** Per-family LPM structure over flat typed arrays. */
class PrefixTables {
  /** Distinct prefix lengths, descending. */
  readonly lengths: Int32Array;
  /** Per length: first slot and slot count (a power of two). */
  readonly bases: Int32Array;
  readonly sizes: Int32Array;
  /** Per length: the netmask words (1 for IPv4, 4 for IPv6). */
  readonly masks: Uint32Array;
  /** Per slot: the masked key words, and the route id (-1 empty). */
  readonly keys: Uint32Array;
  readonly routeOf: Int32Array;

  constructor(
    readonly words: 1 | 4,
    entries: Array<{ words: Uint32Array; length: number; route: number }>,
  ) {
    const byLength = new Map<number, Array<{ words: Uint32Array; route: number }>>();
    for (const entry of entries) {
      const list = byLength.get(entry.length) ?? [];
      list.push(entry);
      byLength.set(entry.length, list);
    }
    const lengths = [...byLength.keys()].sort((a, b) => b - a);
    this.lengths = Int32Array.from(lengths);
    this.bases = new Int32Array(lengths.length);
    this.sizes = new Int32Array(lengths.length);
    this.masks = new Uint32Array(lengths.length * words);
    let slots = 0;
    lengths.forEach((length, i) => {
      let size = 2;
      while (size < byLength.get(length)!.length * 2) size *= 2;
      this.bases[i] = slots;
      this.sizes[i] = size;
      slots += size;
      for (let w = 0; w < words; w++) this.masks[i * words + w] = v4Mask(Math.max(0, Math.min(32, length - w * 32)));
    });
    this.keys = new Uint32Array(slots * words);
    this.routeOf = new Int32Array(slots).fill(-1);
    lengths.forEach((length, i) => {
      for (const entry of byLength.get(length)!) {
        let slot = this.home(i, entry.words, 0);
        while (this.routeOf[slot] !== -1) slot = this.bases[i]! + ((slot - this.bases[i]! + 1) & (this.sizes[i]! - 1));
        for (let w = 0; w < words; w++) this.keys[slot * words + w] = entry.words[w]! & this.masks[i * words + w]!;
        this.routeOf[slot] = entry.route;
      }
    });
  }

  /** Home slot of a key; lookup4 / lookup6 inline the same hash (one word: fmix32(L ^ k); four: murmur body + fmix32). */
  private home(lengthIndex: number, words: Uint32Array, offset: number): number {
    const length = this.lengths[lengthIndex]!;
    const key = (w: number): number => (words[offset + w]! & this.masks[lengthIndex * this.words + w]!) >>> 0;
    const hash = this.words === 1 ? fmix32(length ^ key(0)) : fmix32(mixWord(mixWord(mixWord(mixWord(length, key(0)), key(1)), key(2)), key(3)));
    return this.bases[lengthIndex]! + (hash & (this.sizes[lengthIndex]! - 1));
  }
}

function invalid(message: string, details: Record<string, unknown>): TandemError {
  return new TandemError(ErrorCode.INVALID_ARGUMENT, message, details);
}

function wordsOf(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(bytes.length / 4);
  for (let w = 0; w < out.length; w++) out[w] = v4Value(bytes.subarray(w * 4, w * 4 + 4));
  return out;
}

export class RouteTable {
  readonly interfaces: readonly InterfaceSpec[];
  /** Route id of the last successful lookup, or -1. */
  lastRoute = -1;
  /** Next hop of the last IPv4 lookup: the route's via, or the destination itself (connected / direct). */
  lastNextHop4 = 0;
  /** Next hop of the last IPv6 lookup (16 bytes, overwritten by each IPv6 lookup). */
  readonly lastNextHop6 = new Uint8Array(16);

  private readonly entries: RouteEntry[];
  private readonly routeInterface: Int32Array;
  private readonly routeHasVia: Uint8Array;
  private readonly routeVia4: Uint32Array;
  private readonly routeVia6: Uint8Array;
  /** IPv4 routes of length 17-32, hashed per length. */
  private readonly tables4: PrefixTables;
  /** Per /16 (top 16 bits): bit (length - 17) set when a route of that length lies inside it. */
  private readonly longLengths4: Uint32Array;
  /** Prefix length -> index into tables4's per-length arrays (-1: no route of that length). */
  private readonly lengthIndex4: Int32Array;
  /** Per /16: the longest route of length <= 16 covering it, or -1 (prefix expansion). */
  private readonly short4: Int32Array;
  private readonly tables6: PrefixTables;
  private readonly local4: Uint32Array;
  private readonly local6: Uint8Array;

  constructor(interfaces: InterfaceSpec[], staticRoutes: StaticRouteSpec[] = []) {
    if (!Array.isArray(interfaces)) throw invalid("interfaces must be a list", { field: "interfaces" });
    if (!Array.isArray(staticRoutes)) throw invalid("static routes must be a list", { field: "routes" });
    if (interfaces.length > ROUTING_LIMITS.interfacesMax) {
      throw invalid(`${interfaces.length} interfaces; at most ${ROUTING_LIMITS.interfacesMax} are allowed`, { field: "interfaces" });
    }
    if (staticRoutes.length > ROUTING_LIMITS.staticRoutesMax) {
      throw invalid(`${staticRoutes.length} static routes; at most ${ROUTING_LIMITS.staticRoutesMax} are allowed`, { field: "routes" });
    }
    const entries: RouteEntry[] = [];
    const byPrefix = new Map<string, RouteEntry>();
    const byName = new Map<string, { spec: InterfaceSpec; connected: Cidr[] }>();
    const usedIndexes = new Map<number, string>();
    const ownAddresses = new Map<string, string>(); // address text -> interface name
    const local4: number[] = [];
    const local6: Uint8Array[] = [];

    interfaces.forEach((spec, position) => {
      const label = typeof spec?.name === "string" && spec.name.length > 0 ? `interface "${spec.name}"` : `interface #${position + 1}`;
      const fail: (field: string, reason: string) => never = (field, reason) => {
        throw invalid(`${label}: field "${field}": ${reason}`, { interface: spec?.name ?? position, field });
      };
      if (typeof spec !== "object" || spec === null) fail("name", "an interface must be an object");
      if (typeof spec.name !== "string" || spec.name.length === 0) fail("name", "missing or empty");
      if (byName.has(spec.name)) fail("name", "duplicate interface name");
      if (!Number.isInteger(spec.index) || spec.index < 0 || spec.index > 0x7fffffff) {
        fail("index", `${String(spec.index)} is not a non-negative integer`);
      }
      const other = usedIndexes.get(spec.index);
      if (other !== undefined) fail("index", `${spec.index} is already the index of interface "${other}"`);
      usedIndexes.set(spec.index, spec.name);
      if (!Array.isArray(spec.addresses)) fail("addresses", "must be a list of \"address/prefix\" strings");
      if (spec.addresses.length > ROUTING_LIMITS.addressesPerInterfaceMax) {
        fail("addresses", `at most ${ROUTING_LIMITS.addressesPerInterfaceMax} addresses per interface`);
      }
      const connected: Cidr[] = [];
      for (const text of spec.addresses) {
        if (typeof text !== "string") fail("addresses", `${String(text)} is not an "address/prefix" string`);
        const cidr = parseCidr(text.trim());
        if (typeof cidr === "string") fail("addresses", cidr);
        if (!cidr.explicitLength) fail("addresses", `"${text}" needs a prefix length (e.g. "${text}/24") to define the connected network`);
        if (cidr.family === 4 && cidr.length <= 30) {
          const value = v4Value(cidr.bytes);
          const host = value & ~v4Mask(cidr.length);
          if (host === 0) fail("addresses", `"${text}" is the network address of ${formatNetwork(cidr)}; use a host address`);
          if ((host >>> 0) === (~v4Mask(cidr.length) >>> 0)) fail("addresses", `"${text}" is the broadcast address of ${formatNetwork(cidr)}; use a host address`);
        }
        const addressText = formatIp(cidr.bytes);
        const owner = ownAddresses.get(addressText);
        if (owner !== undefined) fail("addresses", `${addressText} is already an address of interface "${owner}"`);
        ownAddresses.set(addressText, spec.name);
        if (cidr.family === 4) local4.push(v4Value(cidr.bytes));
        else local6.push(cidr.bytes);
        const network: Cidr = { ...cidr, bytes: networkOf(cidr), hostBitsSet: false };
        const key = formatNetwork(network);
        const existing = byPrefix.get(key);
        if (existing !== undefined) {
          if (existing.interfaceName === spec.name) continue; // a second address in the same network
          fail("addresses", `connected network ${key} is already connected on interface "${existing.interfaceName}"`);
        }
        const entry: RouteEntry = { kind: "connected", network, interfaceName: spec.name, interfaceIndex: spec.index, via: null };
        byPrefix.set(key, entry);
        entries.push(entry);
        connected.push(network);
      }
      byName.set(spec.name, { spec, connected });
    });

    staticRoutes.forEach((route, position) => {
      const label =
        typeof route?.prefix === "string" ? `static route #${position + 1} (${route.prefix})` : `static route #${position + 1}`;
      const fail: (field: string, reason: string) => never = (field, reason) => {
        throw invalid(`${label}: field "${field}": ${reason}`, { route: position, field });
      };
      if (typeof route !== "object" || route === null) fail("prefix", "a route must be an object");
      if (typeof route.prefix !== "string") fail("prefix", "missing (e.g. \"10.0.0.0/8\" or \"::/0\")");
      const cidr = parseCidr(route.prefix.trim());
      if (typeof cidr === "string") fail("prefix", cidr);
      if (cidr.hostBitsSet) fail("prefix", `"${route.prefix}" has host bits set; did you mean "${formatNetwork(cidr)}"?`);
      if (typeof route.interface !== "string") fail("interface", "missing (the name of an interface)");
      const egress = byName.get(route.interface);
      if (egress === undefined) fail("interface", `no interface named "${route.interface}"`);
      let via: Uint8Array | null = null;
      if (route.via !== undefined) {
        if (typeof route.via !== "string") fail("via", `${String(route.via)} is not an address`);
        const viaCidr = parseCidr(route.via.trim());
        if (typeof viaCidr === "string" || viaCidr.explicitLength) fail("via", `"${route.via}" is not an address (no prefix length)`);
        if (viaCidr.family !== cidr.family) fail("via", `"${route.via}" is not of the same address family as ${route.prefix}`);
        if (!egress.connected.some((network) => cidrContains(network, viaCidr.bytes))) {
          const networks = egress.connected.filter((network) => network.family === cidr.family).map(formatNetwork);
          fail(
            "via",
            `${route.via} is not inside a connected network of interface "${route.interface}"` +
              (networks.length > 0 ? ` (${networks.join(", ")})` : " (it has none of this family)"),
          );
        }
        const owner = ownAddresses.get(formatIp(viaCidr.bytes));
        if (owner !== undefined) fail("via", `${route.via} is the gateway's own address on interface "${owner}"`);
        via = viaCidr.bytes;
      }
      const key = formatNetwork(cidr);
      const existing = byPrefix.get(key);
      if (existing !== undefined) {
        const what = existing.kind === "connected" ? `the connected network of interface "${existing.interfaceName}"` : "another static route";
        fail("prefix", `${key} is already ${what}`);
      }
      const entry: RouteEntry = { kind: "static", network: cidr, interfaceName: egress.spec.name, interfaceIndex: egress.spec.index, via };
      byPrefix.set(key, entry);
      entries.push(entry);
    });

    this.interfaces = interfaces.map((spec) => ({ name: spec.name, index: spec.index, addresses: [...spec.addresses] }));
    this.entries = entries;
    const count = entries.length;
    this.routeInterface = Int32Array.from(entries, (entry) => entry.interfaceIndex);
    this.routeHasVia = Uint8Array.from(entries, (entry) => (entry.via === null ? 0 : 1));
    this.routeVia4 = new Uint32Array(count);
    this.routeVia6 = new Uint8Array(count * 16);
    const v4: Array<{ words: Uint32Array; length: number; route: number }> = [];
    const v6: Array<{ words: Uint32Array; length: number; route: number }> = [];
    entries.forEach((entry, route) => {
      if (entry.via !== null) {
        if (entry.via.length === 4) this.routeVia4[route] = v4Value(entry.via);
        else this.routeVia6.set(entry.via, route * 16);
      }
      const item = { words: wordsOf(entry.network.bytes), length: entry.network.length, route };
      (entry.network.family === 4 ? v4 : v6).push(item);
    });
    const long4 = v4.filter((item) => item.length > 16);
    this.tables4 = new PrefixTables(1, long4);
    this.lengthIndex4 = new Int32Array(33).fill(-1);
    this.tables4.lengths.forEach((length, i) => (this.lengthIndex4[length] = i));
    this.longLengths4 = new Uint32Array(1 << 16);
    for (const item of long4) {
      const top = item.words[0]! >>> 16;
      this.longLengths4[top] = this.longLengths4[top]! | (1 << (item.length - 17));
    }
    // Shorter prefixes first, so a longer one overwrites the /16s it covers.
    this.short4 = new Int32Array(1 << 16).fill(-1);
    for (const item of v4.filter((entry) => entry.length <= 16).sort((a, b) => a.length - b.length)) {
      const first = item.words[0]! >>> 16;
      this.short4.fill(item.route, first, first + 2 ** (16 - item.length));
    }
    this.tables6 = new PrefixTables(4, v6);
    this.local4 = Uint32Array.from(local4);
    this.local6 = new Uint8Array(local6.length * 16);
    local6.forEach((bytes, i) => this.local6.set(bytes, i * 16));
  }

  /** Number of routes (connected + static). */
  get routeCount(): number {
    return this.entries.length;
  }

  /**
   * Egress interface index for the packet's destination, or -1 (no route / not IP).
   * Sets lastRoute and the next hop of the packet's family. Allocates nothing.
   */
  lookup(view: PacketView): number {
    if (view.ipVersion === 4) return this.lookup4(view.dst4 >>> 0);
    if (view.ipVersion === 6) return this.lookup6(view.buf, view.dstAddrOffset);
    this.lastRoute = -1;
    return -1;
  }

  /** Longest-prefix match for an IPv4 address (unsigned 32-bit). */
  lookup4(address: number): number {
    const key0 = address >>> 0;
    const top = key0 >>> 16;
    // Longer than /16: probe only the lengths that have a route inside this /16, longest first.
    let lengths = this.longLengths4[top]!;
    if (lengths !== 0) {
      const t = this.tables4;
      while (lengths !== 0) {
        const bit = 31 - Math.clz32(lengths);
        lengths ^= 1 << bit;
        const i = this.lengthIndex4[17 + bit]!;
        const key = (key0 & t.masks[i]!) >>> 0;
        const base = t.bases[i]!;
        const sizeMask = t.sizes[i]! - 1;
        let slot = fmix32(t.lengths[i]! ^ key) & sizeMask;
        while (true) {
          const route = t.routeOf[base + slot]!;
          if (route === -1) break;
          if (t.keys[base + slot] === key) return this.found4(route, key0);
          slot = (slot + 1) & sizeMask;
        }
      }
    }
    // /16 or shorter: expanded into one table entry per /16.
    const route = this.short4[top]!;
    if (route >= 0) return this.found4(route, key0);
    this.lastRoute = -1;
    return -1;
  }

  private found4(route: number, destination: number): number {
    this.lastRoute = route;
    this.lastNextHop4 = this.routeHasVia[route] === 1 ? this.routeVia4[route]! : destination;
    return this.routeInterface[route]!;
  }

  /** Longest-prefix match for the 16-byte IPv6 address at buf[offset]. */
  lookup6(buf: Uint8Array, offset: number): number {
    const a0 = ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
    const a1 = ((buf[offset + 4]! << 24) | (buf[offset + 5]! << 16) | (buf[offset + 6]! << 8) | buf[offset + 7]!) >>> 0;
    const a2 = ((buf[offset + 8]! << 24) | (buf[offset + 9]! << 16) | (buf[offset + 10]! << 8) | buf[offset + 11]!) >>> 0;
    const a3 = ((buf[offset + 12]! << 24) | (buf[offset + 13]! << 16) | (buf[offset + 14]! << 8) | buf[offset + 15]!) >>> 0;
    const t = this.tables6;
    const lengths = t.lengths;
    const masks = t.masks;
    const keys = t.keys;
    for (let i = 0; i < lengths.length; i++) {
      const k0 = (a0 & masks[i * 4]!) >>> 0;
      const k1 = (a1 & masks[i * 4 + 1]!) >>> 0;
      const k2 = (a2 & masks[i * 4 + 2]!) >>> 0;
      const k3 = (a3 & masks[i * 4 + 3]!) >>> 0;
      const base = t.bases[i]!;
      const sizeMask = t.sizes[i]! - 1;
      // Same hash as PrefixTables.home.
      let slot = fmix32(mixWord(mixWord(mixWord(mixWord(lengths[i]!, k0), k1), k2), k3)) & sizeMask;
      while (true) {
        const route = t.routeOf[base + slot]!;
        if (route === -1) break;
        const at = (base + slot) * 4;
        if (keys[at] === k0 && keys[at + 1] === k1 && keys[at + 2] === k2 && keys[at + 3] === k3) {
          this.lastRoute = route;
          // Byte loops, not set(subarray()): a subarray is an allocation.
          const nextHop = this.lastNextHop6;
          if (this.routeHasVia[route] === 1) {
            const via = this.routeVia6;
            for (let b = 0; b < 16; b++) nextHop[b] = via[route * 16 + b]!;
          } else {
            for (let b = 0; b < 16; b++) nextHop[b] = buf[offset + b]!;
          }
          return this.routeInterface[route]!;
        }
        slot = (slot + 1) & sizeMask;
      }
    }
    this.lastRoute = -1;
    return -1;
  }

  /** True when the packet is addressed to one of the gateway's own addresses (not forwarded). */
  isLocal(view: PacketView): boolean {
    if (view.ipVersion === 4) return this.isLocal4(view.dst4 >>> 0);
    if (view.ipVersion === 6) return this.isLocal6(view.buf, view.dstAddrOffset);
    return false;
  }

  isLocal4(address: number): boolean {
    const local = this.local4;
    for (let i = 0; i < local.length; i++) if (local[i] === address >>> 0) return true;
    return false;
  }

  isLocal6(buf: Uint8Array, offset: number): boolean {
    const local = this.local6;
    for (let at = 0; at < local.length; at += 16) {
      let same = true;
      for (let b = 0; b < 16 && same; b++) same = local[at + b] === buf[offset + b];
      if (same) return true;
    }
    return false;
  }

  /** The route with id `route` as ordinary values (control plane). */
  routeInfo(route: number): RouteInfo {
    assert(route >= 0 && route < this.entries.length, "route id out of range");
    const entry = this.entries[route]!;
    return {
      kind: entry.kind,
      prefix: formatNetwork(entry.network),
      interface: entry.interfaceName,
      interfaceIndex: entry.interfaceIndex,
      via: entry.via === null ? null : formatIp(entry.via),
    };
  }

  /** Every route, connected first, in configuration order (for display). */
  routes(): RouteInfo[] {
    return this.entries.map((_, route) => this.routeInfo(route));
  }
}
