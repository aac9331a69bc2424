// The traffic generator against a tiny in-test "reflector" distributor on 127.0.0.1: it answers
// ARP for both gateways, ARPs for the far site's host (which the site must answer) and
// forwards each IP frame to the other site with the MACs rewritten, the VNI swapped and the
// TTL decremented. Flows must then complete; without ARP answers no IP frame may leave.
// Real sockets, no sleeps: every wait is a predicate with a deadline.

import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { waitUntil } from "../../test/fixtures/child-lines.js";
import { packet, parseMac } from "../packet/builder.js";
import { decrementTtl } from "../packet/checksum.js";
import { parseFrame } from "../packet/parse.js";
import { EtherType, IpProto, LinkType, PacketView } from "../packet/view.js";
import { ErrorCode } from "../stdx/errors.js";
import { VXLAN_HEADER_BYTES, vxlanVniOf, writeVxlanHeader, type Endpoint } from "./member-link.js";
import { siteAddressPlan, startTrafficGenerator, type TrafficGenerator } from "./traffic-generator.js";

const DEADLINE_MS = 8_000;
const SEED = 7;
const CLIENT_VNI = 101;
const SERVER_VNI = 102;
const GATEWAYS = new Map<number, { ip: string; mac: Uint8Array }>([
  [CLIENT_VNI, { ip: "198.19.1.1", mac: parseMac("02:aa:00:00:01:01") }],
  [SERVER_VNI, { ip: "198.19.2.1", mac: parseMac("02:aa:00:00:02:01") }],
]);

/** A one-socket stand-in for the distributor and the cluster behind it. */
class Reflector {
  readonly socket = dgram.createSocket("udp4");
  readonly siteEndpoints = new Map<number, Endpoint>();
  readonly hostMacs = new Map<number, Uint8Array>();
  readonly forwarded = { tcp: 0, udp: 0, icmp: 0 };
  arpRequestsSeen = 0;
  arpRepliesFromSites = 0;
  ipFramesSeen = 0;
  /** What the sites did wrong (checked after the run: an expect() here would throw in a socket callback). */
  readonly violations: string[] = [];
  private readonly view = new PacketView();

  constructor(private readonly answerArp: boolean) {}

  async start(): Promise<Endpoint> {
    this.socket.on("message", (msg, rinfo) => this.onMessage(msg, { address: rinfo.address, port: rinfo.port }));
    await new Promise<void>((resolve) => this.socket.bind(0, "127.0.0.1", resolve));
    // Bursts (many host timers firing after an event-loop stall) must not overflow it.
    this.socket.setRecvBufferSize(4 * 1024 * 1024);
    this.socket.setSendBufferSize(4 * 1024 * 1024);
    return { address: "127.0.0.1", port: this.socket.address().port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private onMessage(msg: Buffer, from: Endpoint): void {
    const vni = vxlanVniOf(msg, msg.length);
    const gateway = GATEWAYS.get(vni);
    if (gateway === undefined) {
      this.violations.push(`unknown VNI ${vni}`);
      return;
    }
    this.siteEndpoints.set(vni, from);
    const frame = msg.subarray(VXLAN_HEADER_BYTES);
    const view = this.view;
    if (!parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET)) {
      this.violations.push("unparsable frame");
      return;
    }
    if (view.etherType === EtherType.ARP) {
      const senderMac = frame.slice(view.arpSenderMacOffset, view.arpSenderMacOffset + 6);
      if (view.arpOp === 2) {
        this.arpRepliesFromSites++;
        this.hostMacs.set(vni, senderMac);
        return;
      }
      this.arpRequestsSeen++;
      if (!this.answerArp || view.arpTargetIp !== ipU32(gateway.ip)) return;
      const reply = packet()
        .ethernet({ src: gateway.mac, dst: senderMac })
        .arp({ op: 2, senderMac: gateway.mac, senderIp: gateway.ip, targetMac: senderMac, targetIp: view.arpSenderIp })
        .build();
      this.send(vni, reply, from);
      return;
    }
    this.ipFramesSeen++;
    // Every IP frame leaves a site towards its gateway's MAC.
    if (!sameMac(frame, gateway.mac)) this.violations.push("IP frame not sent to the gateway MAC");
    const egressVni = vni === CLIENT_VNI ? SERVER_VNI : CLIENT_VNI;
    const egressGateway = GATEWAYS.get(egressVni)!;
    const egressSite = this.siteEndpoints.get(egressVni);
    const hostMac = this.hostMacs.get(egressVni);
    if (egressSite === undefined || hostMac === undefined) {
      // Ask the far site for its host (the frame is lost; the host retransmits).
      if (egressSite !== undefined) {
        const request = packet()
          .ethernet({ src: egressGateway.mac, dst: "ff:ff:ff:ff:ff:ff" })
          .arp({ op: 1, senderMac: egressGateway.mac, senderIp: egressGateway.ip, targetIp: view.dst4 })
          .build();
        this.send(egressVni, request, egressSite);
      }
      return;
    }
    const out = frame.slice();
    out.set(hostMac, 0);
    out.set(egressGateway.mac, 6);
    parseFrame(view, out, 0, out.length, LinkType.ETHERNET);
    decrementTtl(view);
    if (view.protocol === IpProto.TCP) this.forwarded.tcp++;
    else if (view.protocol === IpProto.UDP) this.forwarded.udp++;
    else if (view.protocol === IpProto.ICMP) this.forwarded.icmp++;
    this.send(egressVni, out, egressSite);
  }

  private send(vni: number, frame: Uint8Array, to: Endpoint): void {
    this.socket.send(vxlan(vni, frame), to.port, to.address);
  }
}

function vxlan(vni: number, frame: Uint8Array): Buffer {
  const datagram = Buffer.alloc(VXLAN_HEADER_BYTES + frame.length);
  writeVxlanHeader(datagram, 0, vni);
  datagram.set(frame, VXLAN_HEADER_BYTES);
  return datagram;
}

function sameMac(frame: Uint8Array, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (frame[i] !== mac[i]) return false;
  return true;
}

function ipU32(text: string): number {
  const p = text.split(".").map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function setUp(answerArp: boolean, flowsPerSecond: number): Promise<{ reflector: Reflector; generator: TrafficGenerator }> {
  const reflector = new Reflector(answerArp);
  const distributor = await reflector.start();
  cleanups.push(() => reflector.close());
  console.log(`traffic generator seed ${SEED}`);
  const generator = await startTrafficGenerator({
    distributor,
    sites: {
      client: { vni: CLIENT_VNI, gateway: "198.19.1.1/24" },
      server: { vni: SERVER_VNI, gateway: "198.19.2.1/24" },
    },
    flowsPerSecond,
    seed: SEED,
    arpRetryMs: 50,
    flowsPerGeneration: 8,
  });
  cleanups.push(() => generator.stop());
  return { reflector, generator };
}

/** Waits for `done()`; on timeout the error carries the generator's stats at that moment. */
async function waitWithStats(generator: TrafficGenerator, done: () => boolean, what: string): Promise<void> {
  try {
    await waitUntil(() => (done() ? true : undefined), DEADLINE_MS, what);
  } catch (error) {
    throw new Error(`${(error as Error).message}; stats ${JSON.stringify(generator.stats())}`);
  }
}

describe("traffic generator", () => {
  it("flows of every kind complete through a reflecting distributor", async () => {
    const { reflector, generator } = await setUp(true, 100);
    await waitWithStats(generator, () => generator.stats().flowsCompleted >= 30, "30 completed flows");
    const stats = generator.stats();
    expect(reflector.violations).toEqual([]);
    expect(stats.flowsFailed).toBe(0);
    expect(stats.arpResolved).toBe(2);
    expect(stats.arpRepliesSent).toBeGreaterThanOrEqual(1);
    expect(stats.flowsStarted).toBeGreaterThanOrEqual(stats.flowsCompleted);
    expect(stats.framesSent).toBeGreaterThan(stats.flowsCompleted * 2);
    expect(stats.framesReceived).toBeGreaterThan(stats.flowsCompleted * 2);
    // The far site answered the reflector's ARP for its host with the site's MAC.
    expect(reflector.arpRepliesFromSites).toBeGreaterThanOrEqual(1);
    expect(reflector.hostMacs.get(SERVER_VNI)).toBeDefined();
    // The sites sent from the endpoints the generator reports.
    expect(reflector.siteEndpoints.get(CLIENT_VNI)).toEqual(generator.sites.client);
    expect(reflector.siteEndpoints.get(SERVER_VNI)).toEqual(generator.sites.server);
    expect(reflector.forwarded.tcp).toBeGreaterThan(0);
    expect(reflector.forwarded.udp).toBeGreaterThan(0);
    expect(reflector.forwarded.icmp).toBeGreaterThan(0);
    // Generations of 8 flows are dropped once their flows ended; the totals keep counting them.
    await waitWithStats(generator, () => generator.stats().generationsRetired >= 2, "two retired generations");
    expect(generator.stats().flowsCompleted).toBeGreaterThanOrEqual(stats.flowsCompleted);
  });

  it("sends no IP frame while the gateways are unresolved, and keeps ARPing", async () => {
    const { reflector, generator } = await setUp(false, 1000);
    await waitWithStats(generator, () => reflector.arpRequestsSeen >= 6, "three ARP rounds");
    const stats = generator.stats();
    expect(reflector.violations).toEqual([]);
    expect(stats.arpResolved).toBe(0);
    expect(stats.flowsStarted).toBe(0);
    expect(reflector.ipFramesSeen).toBe(0);
    expect(stats.arpRequestsSent).toBeGreaterThanOrEqual(6);
  });

  it("counts datagrams that are not for a live flow and delivers none of them", async () => {
    const { generator } = await setUp(false, 0);
    const prober = dgram.createSocket("udp4");
    cleanups.push(() => new Promise((resolve) => prober.close(() => resolve())));
    await new Promise<void>((resolve) => prober.bind(0, "127.0.0.1", resolve));
    const to = generator.sites.client;
    const siteMac = "02:54:47:00:01:01";
    const strayTcp = packet()
      .ethernet({ src: "02:aa:00:00:01:01", dst: siteMac })
      .ipv4({ src: "198.19.2.10", dst: "198.19.1.10" })
      .tcp({ sport: 80, dport: 20_000, flags: "SA" })
      .build();
    const datagrams = [
      Uint8Array.of(1, 2, 3), // not VXLAN
      vxlan(SERVER_VNI, strayTcp), // the other site's VNI
      vxlan(CLIENT_VNI, Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 0x08, 0x00, 0x45)), // truncated IPv4
      vxlan(CLIENT_VNI, strayTcp), // no such flow
    ];
    for (const d of datagrams) prober.send(d, to.port, to.address);
    await waitWithStats(generator, () => generator.stats().framesIgnored >= datagrams.length, "every stray datagram counted");
    const stats = generator.stats();
    expect(stats.framesReceived).toBe(datagrams.length);
    expect(stats.flowsStarted).toBe(0);
  });

  it("rejects bad options as operating errors", async () => {
    const distributor = { address: "127.0.0.1", port: 4789 };
    await expect(
      startTrafficGenerator({
        distributor,
        sites: { client: { vni: 5, gateway: "198.19.1.1/24" }, server: { vni: 5, gateway: "198.19.2.1/24" } },
      }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(
      startTrafficGenerator({
        distributor,
        sites: { client: { vni: 1, gateway: "198.19.1.1" }, server: { vni: 2, gateway: "198.19.2.1/24" } },
      }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(
      startTrafficGenerator({
        distributor,
        sites: { client: { vni: 1, gateway: "198.19.1.1/24" }, server: { vni: 2, gateway: "198.19.2.1/24" } },
        mix: { tcp: 0, tcpReset: 0, udp: 0, icmp: 0 },
      }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
  });

  it("plans host addresses from .10 of the gateway's prefix, skipping the gateway", () => {
    expect(siteAddressPlan("198.19.1.1/24", 2)).toEqual({ gateway4: ipU32("198.19.1.1"), hosts4: [ipU32("198.19.1.10"), ipU32("198.19.1.11")] });
    expect(siteAddressPlan("10.0.0.11/24", 2).hosts4).toEqual([ipU32("10.0.0.10"), ipU32("10.0.0.12")]);
    expect(siteAddressPlan("10.0.0.1/29", 3).hosts4).toEqual([ipU32("10.0.0.2"), ipU32("10.0.0.3"), ipU32("10.0.0.4")]);
    expect(() => siteAddressPlan("10.0.0.1/30", 3)).toThrow(/no room/);
  });
});
