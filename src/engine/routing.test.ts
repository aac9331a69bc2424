import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatIp, parseIp, parseIpv4, parseIpv6 } from "../packet/addr.js";
import { packet } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { PacketView } from "../packet/view.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { RouteTable, type InterfaceSpec, type StaticRouteSpec } from "./routing.js";

const SEED = 42;

// ---- brute-force reference -----------------------------------------------------------------

interface PlainRoute {
  network: Uint8Array;
  length: number;
  interfaceIndex: number;
  via: Uint8Array | null;
}

function masked(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let bit = length; bit < out.length * 8; bit++) out[bit >> 3] = out[bit >> 3]! & ~(0x80 >> (bit & 7));
  return out;
}

function contains(route: PlainRoute, address: Uint8Array): boolean {
  if (route.network.length !== address.length) return false;
  const a = masked(address, route.length);
  return a.every((byte, i) => byte === route.network[i]);
}

function plainRoutes(interfaces: InterfaceSpec[], statics: StaticRouteSpec[]): PlainRoute[] {
  const routes: PlainRoute[] = [];
  for (const spec of interfaces) {
    for (const text of spec.addresses) {
      const [address, length] = text.split("/");
      routes.push({ network: masked(parseIp(address!)!, Number(length)), length: Number(length), interfaceIndex: spec.index, via: null });
    }
  }
  for (const route of statics) {
    const [address, length] = route.prefix.split("/");
    const index = interfaces.find((spec) => spec.name === route.interface)!.index;
    routes.push({ network: parseIp(address!)!, length: Number(length), interfaceIndex: index, via: route.via === undefined ? null : parseIp(route.via)! });
  }
  return routes;
}

function bruteForce(routes: PlainRoute[], address: Uint8Array): PlainRoute | null {
  let best: PlainRoute | null = null;
  for (const route of routes) if (contains(route, address) && (best === null || route.length > best.length)) best = route;
  return best;
}

// ---- generators ----------------------------------------------------------------------------

const INTERFACES: InterfaceSpec[] = [
  { name: "inside", index: 3, addresses: ["198.18.0.1/24", "2001:db8:0:1::1/64"] },
  { name: "outside", index: 7, addresses: ["198.19.255.254/16", "2001:db8:ffff::1/48"] },
  { name: "dmz", index: 0, addresses: ["10.0.0.1/30"] },
];

const randomPrefix = fc.constantFrom<4 | 6>(4, 6).chain((family) =>
  fc
    .tuple(
      fc.uint8Array({ minLength: family === 4 ? 4 : 16, maxLength: family === 4 ? 4 : 16 }),
      // Bias towards lengths that nest with the connected networks and each other.
      fc.oneof(fc.integer({ min: 0, max: family === 4 ? 32 : 128 }), fc.constantFrom(...(family === 4 ? [0, 8, 16, 24, 32] : [0, 32, 48, 64, 128]))),
      fc.boolean(),
    )
    .map(([bytes, length, near]) => {
      // Half the prefixes start from a connected network's bytes so that they overlap it.
      const seed = near ? (family === 4 ? parseIp("198.18.0.0")! : parseIp("2001:db8::")!) : bytes;
      const mixed = new Uint8Array(seed.length);
      for (let i = 0; i < seed.length; i++) mixed[i] = i < seed.length / 2 ? seed[i]! : bytes[i]!;
      return { network: masked(mixed, length), length };
    }),
);

const staticRoutesArbitrary: fc.Arbitrary<StaticRouteSpec[]> = fc
  .array(fc.tuple(randomPrefix, fc.constantFrom("inside", "outside", "dmz"), fc.boolean()), { maxLength: 40 })
  .map((items) => {
    const seen = new Set(plainRoutes(INTERFACES, []).map((route) => `${formatIp(route.network)}/${route.length}`));
    const routes: StaticRouteSpec[] = [];
    for (const [prefix, interfaceName, withVia] of items) {
      const key = `${formatIp(prefix.network)}/${prefix.length}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const route: StaticRouteSpec = { prefix: key, interface: interfaceName };
      if (withVia) {
        const family = prefix.network.length === 4 ? "." : ":";
        const gateway = INTERFACES.find((spec) => spec.name === interfaceName)!.addresses.find((text) => text.includes(family));
        if (gateway !== undefined) {
          // A neighbour next to the gateway's own address, inside the connected network.
          const [address, length] = gateway.split("/");
          const bytes = parseIp(address!)!;
          bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ (Number(length) >= 31 ? 0 : 3);
          if (Number(length) < 31) route.via = formatIp(bytes);
        }
      }
      routes.push(route);
    }
    return routes;
  });

function addressArbitrary(routes: StaticRouteSpec[]): fc.Arbitrary<Uint8Array> {
  const prefixes = [...INTERFACES.flatMap((spec) => spec.addresses), ...routes.map((route) => route.prefix)];
  return fc.oneof(
    fc.uint8Array({ minLength: 4, maxLength: 4 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }),
    fc.tuple(fc.constantFrom(...prefixes), fc.uint8Array({ minLength: 16, maxLength: 16 })).map(([prefix, noise]) => {
      const [address, lengthText] = prefix.split("/");
      const base = parseIp(address!)!;
      const length = Number(lengthText);
      const out = new Uint8Array(base.length);
      for (let bit = 0; bit < base.length * 8; bit++) {
        const source = bit < length ? base : noise;
        out[bit >> 3] = out[bit >> 3]! | (source[bit >> 3]! & (0x80 >> (bit & 7)));
      }
      return out;
    }),
  );
}

function lookupBytes(table: RouteTable, address: Uint8Array): number {
  if (address.length === 4) return table.lookup4(((address[0]! << 24) | (address[1]! << 16) | (address[2]! << 8) | address[3]!) >>> 0);
  const buf = new Uint8Array(24);
  buf.set(address, 8); // at an offset, as in a frame
  return table.lookup6(buf, 8);
}

function invalid(fn: () => unknown): TandemError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    return error as TandemError;
  }
  throw new Error("expected an INVALID_ARGUMENT error");
}

describe("RouteTable lookup", () => {
  it(`longest-prefix match agrees with a brute-force scan, IPv4 and IPv6 (seed ${SEED})`, () => {
    fc.assert(
      fc.property(
        staticRoutesArbitrary.chain((routes) => fc.tuple(fc.constant(routes), fc.array(addressArbitrary(routes), { minLength: 100, maxLength: 100 }))),
        ([routes, addresses]) => {
          const table = new RouteTable(INTERFACES, routes);
          const plain = plainRoutes(INTERFACES, routes);
          expect(table.routeCount).toBe(plain.length);
          for (const address of addresses) {
            const expected = bruteForce(plain, address);
            const egress = lookupBytes(table, address);
            expect(egress, formatIp(address)).toBe(expected === null ? -1 : expected.interfaceIndex);
            if (expected === null) {
              expect(table.lastRoute).toBe(-1);
              continue;
            }
            const info = table.routeInfo(table.lastRoute);
            expect(info.prefix).toBe(`${formatIp(expected.network)}/${expected.length}`);
            const nextHop = expected.via ?? address;
            if (address.length === 4) expect(formatIp(new Uint8Array([table.lastNextHop4 >>> 24, (table.lastNextHop4 >>> 16) & 255, (table.lastNextHop4 >>> 8) & 255, table.lastNextHop4 & 255]))).toBe(formatIp(nextHop));
            else expect(formatIp(table.lastNextHop6)).toBe(formatIp(nextHop));
          }
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("prefers the longer prefix, connected or static", () => {
    const table = new RouteTable(INTERFACES, [
      { prefix: "198.18.0.128/25", interface: "outside", via: "198.19.0.9" }, // longer than connected /24
      { prefix: "198.0.0.0/8", interface: "dmz", via: "10.0.0.2" }, // shorter than connected /24 and /16
    ]);
    expect(table.lookup4(parseIpv4("198.18.0.5")!)).toBe(3); // connected /24 on inside
    expect(table.lastNextHop4).toBe(parseIpv4("198.18.0.5"));
    expect(table.lookup4(parseIpv4("198.18.0.200")!)).toBe(7); // static /25
    expect(table.lastNextHop4).toBe(parseIpv4("198.19.0.9"));
    expect(table.lookup4(parseIpv4("198.19.1.1")!)).toBe(7); // connected /16
    expect(table.lookup4(parseIpv4("198.20.1.1")!)).toBe(0); // static /8
    expect(table.lastNextHop4).toBe(parseIpv4("10.0.0.2"));
    expect(table.lookup4(parseIpv4("8.8.8.8")!)).toBe(-1);
    expect(table.lastRoute).toBe(-1);
  });

  it("default routes 0.0.0.0/0 and ::/0", () => {
    const table = new RouteTable(INTERFACES, [
      { prefix: "0.0.0.0/0", interface: "outside", via: "198.19.0.1" },
      { prefix: "::/0", interface: "outside", via: "2001:db8:ffff::fe" },
    ]);
    expect(table.lookup4(parseIpv4("8.8.8.8")!)).toBe(7);
    expect(table.lastNextHop4).toBe(parseIpv4("198.19.0.1"));
    expect(table.lookup4(parseIpv4("198.18.0.77")!)).toBe(3);
    const buf = parseIpv6("2606:4700::1111")!;
    expect(table.lookup6(buf, 0)).toBe(7);
    expect(formatIp(table.lastNextHop6)).toBe("2001:db8:ffff::fe");
    expect(table.lookup6(parseIpv6("2001:db8:0:1::99")!, 0)).toBe(3);
    expect(formatIp(table.lastNextHop6)).toBe("2001:db8:0:1::99");
    expect(table.routes().map((route) => `${route.kind} ${route.prefix} ${route.interface} ${route.via ?? "-"}`)).toEqual([
      "connected 198.18.0.0/24 inside -",
      "connected 2001:db8:0:1::/64 inside -",
      "connected 198.19.0.0/16 outside -",
      "connected 2001:db8:ffff::/48 outside -",
      "connected 10.0.0.0/30 dmz -",
      "static 0.0.0.0/0 outside 198.19.0.1",
      "static ::/0 outside 2001:db8:ffff::fe",
    ]);
  });

  it("static host routes and routes without via", () => {
    const table = new RouteTable(INTERFACES, [
      { prefix: "203.0.113.7", interface: "dmz" },
      { prefix: "203.0.113.0/24", interface: "inside" },
    ]);
    expect(table.lookup4(parseIpv4("203.0.113.7")!)).toBe(0);
    expect(table.lastNextHop4).toBe(parseIpv4("203.0.113.7"));
    expect(table.lookup4(parseIpv4("203.0.113.8")!)).toBe(3);
    expect(table.routeInfo(table.lastRoute)).toEqual({ kind: "static", prefix: "203.0.113.0/24", interface: "inside", interfaceIndex: 3, via: null });
  });

  it("lookup(view) and isLocal(view) on parsed frames", () => {
    const table = new RouteTable(INTERFACES, [{ prefix: "0.0.0.0/0", interface: "outside", via: "198.19.0.1" }]);
    const view = new PacketView();
    const parse = (builder: ReturnType<typeof packet>): PacketView => {
      const frame = builder.build();
      expect(parseFrame(view, frame, 0, frame.length, builder.linkType())).toBe(true);
      return view;
    };
    expect(table.lookup(parse(packet().ipv4({ src: "198.18.0.10", dst: "93.184.216.34" }).udp({ sport: 1, dport: 53 })))).toBe(7);
    expect(table.isLocal(view)).toBe(false);
    parse(packet().ipv4({ src: "198.18.0.10", dst: "198.18.0.1" }).icmp({ type: 8, id: 1, seq: 1 }));
    expect(table.isLocal(view)).toBe(true);
    expect(table.lookup(view)).toBe(3);
    parse(packet().ipv6({ src: "2001:db8:0:1::10", dst: "2001:db8:ffff::1" }).icmpv6({ type: 128, id: 1, seq: 1 }));
    expect(table.isLocal(view)).toBe(true);
    expect(table.lookup(view)).toBe(7);
    parse(packet().ipv6({ src: "2001:db8:0:1::10", dst: "2001:db8:ffff::2" }).icmpv6({ type: 128, id: 1, seq: 1 }));
    expect(table.isLocal(view)).toBe(false);
    parse(packet().ipv6({ src: "2001:db8:0:1::10", dst: "2001:db9::2" }).udp({ sport: 1, dport: 2 }));
    expect(table.lookup(view)).toBe(-1); // no IPv6 default route
    expect(table.lookup(new PacketView())).toBe(-1);
    expect(table.isLocal(new PacketView())).toBe(false);
  });

  it("an empty table routes nothing", () => {
    const table = new RouteTable([], []);
    expect(table.lookup4(0)).toBe(-1);
    expect(table.lookup6(new Uint8Array(16), 0)).toBe(-1);
    expect(table.routeCount).toBe(0);
  });

  it("10,000 static routes: lookups stay correct", () => {
    const routes: StaticRouteSpec[] = [];
    for (let i = 0; i < 10_000; i++) {
      routes.push({ prefix: `100.${(i >> 8) & 63}.${i & 255}.0/24`, interface: i % 2 === 0 ? "inside" : "outside" });
      if (i % 10 === 0) routes.push({ prefix: `100.${(i >> 8) & 63}.${i & 255}.128/25`, interface: "dmz" });
    }
    routes.push({ prefix: "100.0.0.0/8", interface: "dmz", via: "10.0.0.2" });
    const table = new RouteTable(INTERFACES, routes);
    expect(table.lookup4(parseIpv4("100.0.0.5")!)).toBe(3);
    expect(table.lookup4(parseIpv4("100.0.0.200")!)).toBe(0); // the /25 of i = 0
    expect(table.lookup4(parseIpv4("100.39.15.1")!)).toBe(7); // i = 39 * 256 + 15 = 9999, odd
    expect(table.lookup4(parseIpv4("100.40.0.1")!)).toBe(0); // past the /24s: the /8
    expect(table.lastNextHop4).toBe(parseIpv4("10.0.0.2"));
  });
});

describe("RouteTable validation", () => {
  const cases: Array<[string, InterfaceSpec[], StaticRouteSpec[], RegExp, Record<string, unknown>]> = [
    ["interface without name", [{ name: "", index: 0, addresses: [] }], [], /^interface #1: field "name": missing/, { field: "name" }],
    ["duplicate interface name", [{ name: "a", index: 0, addresses: [] }, { name: "a", index: 1, addresses: [] }], [], /duplicate interface name/, { interface: "a", field: "name" }],
    ["duplicate index", [{ name: "a", index: 0, addresses: [] }, { name: "b", index: 0, addresses: [] }], [], /already the index of interface "a"/, { interface: "b", field: "index" }],
    ["negative index", [{ name: "a", index: -1, addresses: [] }], [], /not a non-negative integer/, { field: "index" }],
    ["bad address", [{ name: "a", index: 0, addresses: ["198.18.0.300/24"] }], [], /^interface "a": field "addresses": "198\.18\.0\.300\/24" is not/, { field: "addresses" }],
    ["address without prefix", [{ name: "a", index: 0, addresses: ["198.18.0.1"] }], [], /needs a prefix length/, { field: "addresses" }],
    ["network address", [{ name: "a", index: 0, addresses: ["198.18.0.0/24"] }], [], /is the network address of 198\.18\.0\.0\/24/, { field: "addresses" }],
    ["broadcast address", [{ name: "a", index: 0, addresses: ["198.18.0.255/24"] }], [], /is the broadcast address/, { field: "addresses" }],
    [
      "same connected network on two interfaces",
      [{ name: "a", index: 0, addresses: ["198.18.0.1/24"] }, { name: "b", index: 1, addresses: ["198.18.0.2/24"] }],
      [],
      /connected network 198\.18\.0\.0\/24 is already connected on interface "a"/,
      { interface: "b" },
    ],
    [
      "same address twice",
      [{ name: "a", index: 0, addresses: ["198.18.0.1/24"] }, { name: "b", index: 1, addresses: ["198.18.0.1/16"] }],
      [],
      /198\.18\.0\.1 is already an address of interface "a"/,
      { interface: "b" },
    ],
    ["route host bits", INTERFACES, [{ prefix: "10.1.2.3/8", interface: "dmz" }], /^static route #1 \(10\.1\.2\.3\/8\): field "prefix": .*did you mean "10\.0\.0\.0\/8"/, { route: 0, field: "prefix" }],
    ["route bad prefix", INTERFACES, [{ prefix: "nope", interface: "dmz" }], /"nope" is not/, { route: 0, field: "prefix" }],
    ["route unknown interface", INTERFACES, [{ prefix: "10.0.0.0/8", interface: "wan" }], /no interface named "wan"/, { route: 0, field: "interface" }],
    ["route via outside connected", INTERFACES, [{ prefix: "0.0.0.0/0", interface: "outside", via: "10.0.0.2" }], /10\.0\.0\.2 is not inside a connected network of interface "outside" \(198\.19\.0\.0\/16\)/, { route: 0, field: "via" }],
    ["route via wrong family", INTERFACES, [{ prefix: "::/0", interface: "outside", via: "198.19.0.1" }], /not of the same address family/, { field: "via" }],
    ["route via with prefix", INTERFACES, [{ prefix: "0.0.0.0/0", interface: "outside", via: "198.19.0.1/16" }], /is not an address/, { field: "via" }],
    ["route via is the gateway", INTERFACES, [{ prefix: "0.0.0.0/0", interface: "outside", via: "198.19.255.254" }], /the gateway's own address/, { field: "via" }],
    ["route via on unnumbered family", INTERFACES, [{ prefix: "::/0", interface: "dmz", via: "2001:db8::1" }], /it has none of this family/, { field: "via" }],
    ["route repeats a connected network", INTERFACES, [{ prefix: "198.18.0.0/24", interface: "outside" }], /already the connected network of interface "inside"/, { route: 0, field: "prefix" }],
    [
      "duplicate static route",
      INTERFACES,
      [
        { prefix: "0.0.0.0/0", interface: "outside" },
        { prefix: "0.0.0.0/0", interface: "inside" },
      ],
      /^static route #2 \(0\.0\.0\.0\/0\): field "prefix": 0\.0\.0\.0\/0 is already another static route/,
      { route: 1 },
    ],
  ];
  for (const [title, interfaces, routes, pattern, details] of cases) {
    it(title, () => {
      const error = invalid(() => new RouteTable(interfaces, routes));
      expect(error.message).toMatch(pattern);
      expect(error.details).toMatchObject(details);
    });
  }

  it("accepts a second address in the same network, /31 and /32 interface addresses", () => {
    const table = new RouteTable(
      [
        { name: "a", index: 0, addresses: ["198.18.0.1/24", "198.18.0.2/24"] },
        { name: "p2p", index: 1, addresses: ["192.0.2.0/31", "192.0.2.9/32"] },
      ],
      [],
    );
    expect(table.routeCount).toBe(3);
    expect(table.isLocal4(parseIpv4("198.18.0.2")!)).toBe(true);
    expect(table.isLocal4(parseIpv4("192.0.2.0")!)).toBe(true);
    expect(table.lookup4(parseIpv4("192.0.2.1")!)).toBe(1);
  });
});
