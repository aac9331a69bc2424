// Tests of the network lab. Option validation runs everywhere; building the lab needs root
// (network namespaces, veth, bridge, vxlan) and is skipped otherwise, saying so.
// The root tests prove the tunnels work from user space: a plain UDP socket stands in for
// the distributor and must receive the client's ARP request for its gateway, VXLAN-wrapped.

import { execFile } from "node:child_process";
import dgram from "node:dgram";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { acquireLabLock } from "../../test/fixtures/lab-lock.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { LAB_DEFAULT_HOSTS, execIn, labDown, labStatus, labUp, planLab, requireRoot, spawnIn, type LabHostSpec } from "./lab.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  console.info("src/lab/lab.test.ts: lab tests on the system skipped: they need root (network namespaces, veth, bridge, vxlan)");
}

function errorCodeOf(run: () => unknown): string | null {
  try {
    run();
  } catch (error) {
    if (error instanceof TandemError) return error.code;
    throw error;
  }
  return null;
}

const client = LAB_DEFAULT_HOSTS[0]!;
const withHost = (change: Partial<LabHostSpec>): LabHostSpec[] => [{ ...client, ...change }, LAB_DEFAULT_HOSTS[1]!];

describe("lab options (planLab)", () => {
  it("defaults to client and server on the bridge's distributor at 4789", () => {
    const plan = planLab();
    expect(plan.distributor).toEqual({ address: "198.18.0.1", port: 4789 });
    expect(plan.sitePort).toBe(4789);
    expect(plan.distributorOnBridge).toBe(false);
    expect(plan.distributorRouted).toBe(false);
    expect(plan.hosts.map((h) => [h.name, h.underlay, h.vni, h.address, h.gateway])).toEqual([
      ["client", "198.18.0.11", 101, "198.19.1.10/24", "198.19.1.1"],
      ["server", "198.18.0.12", 102, "198.19.2.10/24", "198.19.2.1"],
    ]);
    expect(plan.members).toEqual([]);
  });

  it("numbers member namespaces from 198.18.0.21", () => {
    expect(planLab({ memberNamespaces: 2 }).members).toEqual([
      { name: "m1", namespace: "tdm-m1", underlay: "198.18.0.21" },
      { name: "m2", namespace: "tdm-m2", underlay: "198.18.0.22" },
    ]);
  });

  it("puts another distributor address on the bridge, routed when outside the underlay", () => {
    const inside = planLab({ distributor: { address: "198.18.0.5", port: 4790 } });
    expect([inside.distributorOnBridge, inside.distributorRouted]).toEqual([true, false]);
    const outside = planLab({ distributor: { address: "10.99.0.1", port: 4789 } });
    expect([outside.distributorOnBridge, outside.distributorRouted]).toEqual([true, true]);
    // A member namespace's own address: the distributor runs in that namespace.
    const inMember = planLab({ distributor: { address: "198.18.0.21", port: 4789 }, memberNamespaces: 1 });
    expect(inMember.distributorOnBridge).toBe(false);
  });

  it.each([
    ["underlay outside 198.18.0.0/24", { hosts: withHost({ underlay: "198.18.1.11" }) }],
    ["underlay is the bridge", { hosts: withHost({ underlay: "198.18.0.1" }) }],
    ["underlay taken by a member", { hosts: withHost({ underlay: "198.18.0.21" }), memberNamespaces: 1 }],
    ["name too long for an interface", { hosts: withHost({ name: "clientclient" }) }],
    ["name reserved for members", { hosts: withHost({ name: "m1" }) }],
    ["name with a dash", { hosts: withHost({ name: "a-b" }) }],
    ["same name twice", { hosts: [client, { ...LAB_DEFAULT_HOSTS[1]!, name: "client" }] }],
    ["vni 0", { hosts: withHost({ vni: 0 }) }],
    ["vni above 24 bits", { hosts: withHost({ vni: 0x1000000 }) }],
    ["address without a prefix", { hosts: withHost({ address: "198.19.1.10" }) }],
    ["gateway outside the prefix", { hosts: withHost({ gateway: "198.19.9.1" }) }],
    ["gateway is the address", { hosts: withHost({ gateway: "198.19.1.10" }) }],
    ["overlay inside the underlay", { hosts: withHost({ address: "198.18.0.50/24", gateway: "198.18.0.60" }) }],
    ["distributor on a host's underlay", { distributor: { address: "198.18.0.12", port: 4789 } }],
    ["distributor port 0", { distributor: { address: "198.18.0.1", port: 0 } }],
    ["distributor not IPv4", { distributor: { address: "gateway", port: 4789 } }],
    ["too many members", { memberNamespaces: 65 }],
    ["fractional members", { memberNamespaces: 1.5 }],
  ])("refuses %s", (_what, options) => {
    expect(errorCodeOf(() => planLab(options))).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("refuses a namespace name that ip would read as an option", () => {
    expect(errorCodeOf(() => execIn("-all", "true", []))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(errorCodeOf(() => spawnIn("a b", "true", []))).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("requireRoot says what is missing unless root", () => {
    const code = errorCodeOf(() => requireRoot());
    // As root on a machine with the tools: nothing; otherwise LAB_NEEDS_ROOT.
    if (isRoot) expect(code).toBeNull();
    else expect(code).toBe(ErrorCode.LAB_NEEDS_ROOT);
  });
});

const run = promisify(execFile);

async function tdmNames(): Promise<string[]> {
  const namespaces = (await run("ip", ["netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0]!);
  const links = (await run("ip", ["-o", "link", "show"])).stdout.split("\n").map((l) => (l.split(": ")[1] ?? "").split("@")[0]!);
  return [...namespaces, ...links].filter((n) => n.startsWith("tdm-"));
}

interface VxlanArp {
  from: string;
  flags: number;
  vni: number;
  etherType: number;
  operation: number;
  senderIp: string;
  targetIp: string;
}

const ipText = (b: Buffer, offset: number): string => [...b.subarray(offset, offset + 4)].join(".");

/** The first datagram that is VXLAN carrying ARP; the kernel may send IPv6 chatter before it. */
function nextVxlanArp(socket: dgram.Socket, timeoutMs: number): Promise<VxlanArp> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off("message", onMessage);
      reject(new Error(`no VXLAN-wrapped ARP within ${timeoutMs} ms`));
    }, timeoutMs);
    function onMessage(m: Buffer, from: dgram.RemoteInfo): void {
      // 8 bytes VXLAN, 14 Ethernet, 28 ARP (IPv4 over Ethernet).
      if (m.length < 8 + 14 + 28 || m.readUInt16BE(8 + 12) !== 0x0806) return;
      clearTimeout(timer);
      socket.off("message", onMessage);
      const arp = 8 + 14;
      resolve({
        from: from.address,
        flags: m[0]!,
        vni: m.readUIntBE(4, 3),
        etherType: m.readUInt16BE(8 + 12),
        operation: m.readUInt16BE(arp + 6),
        senderIp: ipText(m, arp + 14),
        targetIp: ipText(m, arp + 24),
      });
    }
    socket.on("message", onMessage);
  });
}

describe.skipIf(!isRoot)("lab on this machine (root)", () => {
  const socket = dgram.createSocket("udp4");
  let release: (() => void) | null = null;

  // The lab is global to the machine: one test file at a time (the cluster e2e uses it too).
  beforeAll(async () => {
    release = await acquireLabLock();
  }, 600_000);

  afterAll(async () => {
    socket.close();
    await labDown();
    release?.();
  });

  it("client's vx0 sends its ARP request for the gateway, VNI 101, to the distributor's port", async () => {
    // 198.18.0.1 exists only once the lab is up: bind every address, on a port the OS picks.
    await new Promise<void>((resolve) => socket.bind(0, "0.0.0.0", resolve));
    const port = socket.address().port;
    const status = await labUp({ distributor: { address: "198.18.0.1", port } });
    expect(status.up).toBe(true);

    const arrived = nextVxlanArp(socket, 5000);
    // Nobody answers the ARP: ping gives up after a second with status 1.
    const ping = execIn("tdm-client", "ping", ["-c1", "-W1", "198.19.1.1"]);
    const arp = await arrived;
    expect(arp).toEqual({
      from: "198.18.0.11",
      flags: 0x08,
      vni: 101,
      etherType: 0x0806,
      operation: 1,
      senderIp: "198.19.1.10",
      targetIp: "198.19.1.1",
    });
    expect((await ping).code).toBe(1);
  });

  it("status, read from the system, lists both hosts", async () => {
    const status = await labStatus();
    const port = socket.address().port;
    expect(status).toEqual({
      up: true,
      bridge: "tdm-br0",
      bridgeAddresses: ["198.18.0.1/24"],
      hosts: [
        { name: "client", namespace: "tdm-client", underlay: "198.18.0.11", address: "198.19.1.10/24", gateway: "198.19.1.1", vni: 101, sitePort: 4789, distributor: { address: "198.18.0.1", port } },
        { name: "server", namespace: "tdm-server", underlay: "198.18.0.12", address: "198.19.2.10/24", gateway: "198.19.2.1", vni: 102, sitePort: 4789, distributor: { address: "198.18.0.1", port } },
      ],
      members: [],
      problems: [],
    });
  });

  it("hosts reach each other and the bridge on the underlay", async () => {
    const [toServer, toBridge] = await Promise.all([
      execIn("tdm-client", "ping", ["-c1", "-W1", "198.18.0.12"]),
      execIn("tdm-server", "ping", ["-c1", "-W1", "198.18.0.1"]),
    ]);
    expect([toServer.code, toBridge.code], `${toServer.stdout}${toServer.stderr}${toBridge.stdout}${toBridge.stderr}`).toEqual([0, 0]);
  });

  it("lab up again replaces the lab; member namespaces join the underlay", async () => {
    const status = await labUp({ memberNamespaces: 2 });
    expect(status.up).toBe(true);
    expect(status.members.map((m) => [m.namespace, m.underlay])).toEqual([
      ["tdm-m1", "198.18.0.21"],
      ["tdm-m2", "198.18.0.22"],
    ]);
    expect(status.hosts.map((h) => h.distributor)).toEqual([
      { address: "198.18.0.1", port: 4789 },
      { address: "198.18.0.1", port: 4789 },
    ]);
    const ping = await execIn("tdm-m2", "ping", ["-c1", "-W1", "198.18.0.11"]);
    expect(ping.code, ping.stdout + ping.stderr).toBe(0);
  });

  it("calls fired together run one at a time, in order", async () => {
    const [before, removed, after] = await Promise.all([labStatus(), labDown(), labStatus()]);
    expect(before.up).toBe(true);
    expect(removed.removed).toEqual(expect.arrayContaining(["tdm-br0", "tdm-client", "tdm-server", "tdm-m1", "tdm-m2", "tdm-client-u"]));
    expect(after).toEqual({ up: false, bridge: null, bridgeAddresses: [], hosts: [], members: [], problems: [] });
  });

  it("lab down removes leftovers that no lab up finished", async () => {
    // What a crash half-way through lab up could leave: a bare namespace and stray links.
    await run("ip", ["netns", "add", "tdm-stray"]);
    await run("ip", ["link", "add", "tdm-junk0", "type", "veth", "peer", "name", "tdm-junk1"]);
    const status = await labStatus();
    expect(status.up).toBe(false);
    expect(status.problems.length).toBeGreaterThanOrEqual(3);
    const { removed } = await labDown();
    expect(removed).toEqual(expect.arrayContaining(["tdm-stray", "tdm-junk0", "tdm-junk1"]));
    expect(await tdmNames()).toEqual([]);
  });
});
