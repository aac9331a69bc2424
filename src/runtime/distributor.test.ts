// The distributor host over real UDP on 127.0.0.1 (OS-chosen ports), inline and in its worker
// thread: a fake site gets ARP replies and egress frames, a fake member gets INGRESS and NEIGH.
// Worker mode runs the compiled worker (dist/): build with `npx tsc -p .` first.

import { describe, it, expect, afterEach } from "vitest";
import { createSocket, type Socket } from "node:dgram";
import { startDistributor, type DistributorHandle, type DistributorLogger } from "./distributor.js";
import type { DistributorGroupConfig } from "./cluster-config.js";
import { decodeNeighbours, LinkMsg, linkIfIndex, linkTypeOf, linkWord, neighbourKeyOf, vxlanVniOf, writeLinkHeader, type NeighbourEntry } from "./member-link.js";
import { packet } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { formatIp } from "../packet/addr.js";
import { LinkType, PacketView } from "../packet/view.js";
import { TandemError } from "../stdx/errors.js";

const KEY = new Uint8Array(32).fill(7);
const GW_MAC = "02:00:00:00:01:01";
const CLIENT_MAC = "02:aa:00:00:00:10";
const BUCKETS = 64;
/** A guard against a hang, never a synchronisation: every wait is for an event. */
const WAIT_MS = 5000;

const logLines: string[] = [];
const quietLogger: DistributorLogger = {
  info: (_f, m) => void logLines.push(m),
  warn: (_f, m) => void logLines.push(m),
  error: (_f, m) => void logLines.push(m),
};

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

async function udpSocket(): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  open.push({ close: () => new Promise<void>((r) => s.close(() => r())) });
  return s;
}

/** The next datagram on socket that satisfies accept. */
function nextDatagram(socket: Socket, accept: (msg: Buffer) => boolean): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const onMessage = (msg: Buffer): void => {
      if (!accept(msg)) return;
      clearTimeout(timer);
      socket.off("message", onMessage);
      resolve(msg);
    };
    const timer = setTimeout(() => {
      socket.off("message", onMessage);
      reject(new Error(`no matching datagram within ${WAIT_MS} ms`));
    }, WAIT_MS);
    socket.on("message", onMessage);
  });
}

function vxlan(vni: number, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + frame.length);
  out[0] = 0x08;
  out[4] = vni >>> 16;
  out[5] = (vni >>> 8) & 0xff;
  out[6] = vni & 0xff;
  out.set(frame, 8);
  return out;
}

function send(socket: Socket, bytes: Uint8Array, to: { address: string; port: number }): void {
  socket.send(bytes, to.port, to.address);
}

function macAt(bytes: Uint8Array, offset: number): string {
  return Array.from(bytes.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

function group(sitePort: number, memberPort: number): DistributorGroupConfig {
  return {
    group: "sg",
    interfaces: [
      { index: 0, name: "inside", vni: 101, gateway: "198.19.1.1/24", mac: GW_MAC, siteEndpoint: "127.0.0.1", sitePort },
      { index: 1, name: "outside", vni: 102, gateway: "198.19.2.1/24", mac: "02:00:00:00:02:01", siteEndpoint: "127.0.0.1", sitePort },
    ],
    epoch: 3,
    seed: 1234,
    bucketCount: BUCKETS,
    members: ["m0"],
    owner: new Int16Array(BUCKETS).fill(0),
    backup: new Int16Array(BUCKETS).fill(-1),
    dataEndpoints: [`127.0.0.1:${memberPort}`],
    clusterKey: Buffer.from(KEY).toString("base64"),
  };
}

describe.each([
  ["inline", true],
  ["worker thread", false],
])("distributor over UDP (%s)", (_name, inline) => {
  async function start(): Promise<DistributorHandle> {
    const d = await startDistributor({
      vxlanListen: { address: "127.0.0.1", port: 0 },
      memberLinkListen: { address: "127.0.0.1", port: 0 },
      inline,
      logger: quietLogger,
    });
    open.push(d);
    return d;
  }

  it("answers ARP, forwards to the member, announces neighbours and sends egress to the site", async () => {
    const d = await start();
    expect(d.vxlan.port).toBeGreaterThan(0);
    expect(d.memberLink.port).toBeGreaterThan(0);
    expect(d.vxlan.port).not.toBe(d.memberLink.port);
    const site = await udpSocket();
    const member = await udpSocket();
    d.update([group(site.address().port, member.address().port)]);
    await d.stats(); // the update is applied before the stats answer (one ordered channel)

    // ARP for the gateway: answered to the site's VXLAN port; the client becomes a neighbour.
    const replyArrives = nextDatagram(site, (m) => vxlanVniOf(m, m.length) === 101);
    const neighArrives = nextDatagram(member, (m) => linkTypeOf(m, m.length) === LinkMsg.NEIGH);
    const arp = packet()
      .ethernet({ src: CLIENT_MAC, dst: "ff:ff:ff:ff:ff:ff" })
      .arp({ op: 1, senderMac: CLIENT_MAC, senderIp: "198.19.1.10", targetIp: "198.19.1.1" })
      .build();
    send(site, vxlan(101, arp), d.vxlan);
    const reply = await replyArrives;
    const view = new PacketView();
    expect(parseFrame(view, reply, 8, reply.length - 8, LinkType.ETHERNET)).toBe(true);
    expect(view.arpOp).toBe(2);
    expect(macAt(reply, view.arpSenderMacOffset)).toBe(GW_MAC);
    expect(formatIp(reply, view.arpSenderMacOffset + 6, 4)).toBe("198.19.1.1");

    const neigh = await neighArrives;
    const entries = decodeNeighbours(neigh, neigh.length, neighbourKeyOf(KEY)) as NeighbourEntry[];
    expect(Array.isArray(entries)).toBe(true);
    expect(entries.map((e) => [e.ifIndex, formatIp(e.ip), macAt(e.mac, 0), e.vtepIp, e.vtepPort])).toEqual([
      [0, "198.19.1.10", CLIENT_MAC, 0x7f000001, site.address().port],
    ]);

    // A frame from the site reaches the owner as INGRESS, epoch and interface in the header.
    const frame = packet()
      .ethernet({ src: CLIENT_MAC, dst: GW_MAC })
      .ipv4({ src: "198.19.1.10", dst: "198.19.2.10" })
      .tcp({ sport: 40000, dport: 80, flags: "S" })
      .build();
    const ingressArrives = nextDatagram(member, (m) => linkTypeOf(m, m.length) === LinkMsg.INGRESS);
    send(site, vxlan(101, frame), d.vxlan);
    const ingress = await ingressArrives;
    expect(linkIfIndex(ingress)).toBe(0);
    expect(linkWord(ingress)).toBe(3);
    expect(new Uint8Array(ingress.subarray(8))).toEqual(frame);

    // The member's answer goes back through the distributor: VXLAN to the client's VTEP.
    const answer = packet()
      .ethernet({ src: "02:00:00:00:00:00", dst: "00:00:00:00:00:00" })
      .ipv4({ src: "198.19.2.10", dst: "198.19.1.10" })
      .tcp({ sport: 80, dport: 40000, flags: "SA" })
      .build();
    const egress = new Uint8Array(8 + answer.length);
    writeLinkHeader(egress, 0, LinkMsg.EGRESS, 0, 0, 0);
    egress.set(answer, 8);
    const egressArrives = nextDatagram(site, (m) => vxlanVniOf(m, m.length) === 101 && m.length === egress.length);
    send(member, egress, d.memberLink);
    const out = await egressArrives;
    expect(macAt(out, 8)).toBe(CLIENT_MAC);
    expect(macAt(out, 14)).toBe(GW_MAC);
    expect(new Uint8Array(out.subarray(8 + 12))).toEqual(answer.subarray(12));

    const stats = await d.stats();
    const g = stats.groups.sg!;
    expect(g.epoch).toBe(3);
    expect(g.packetsIn).toBe(2);
    expect(g.toMembers).toBe(1);
    expect(g.arpReplies).toBe(1);
    expect(g.egress).toBe(1);
    expect(g.neighbours).toBe(1);
    // The installation time is in this thread's performance.now() timebase.
    expect(g.epochInstalledAtMs).toBeGreaterThan(0);
    expect(g.epochInstalledAtMs).toBeLessThanOrEqual(performance.now());
    expect(stats.drops["send-error"]).toBe(0);
  });

  it("counts a datagram from an endpoint that is no member, and resolves unknown neighbours with ARP", async () => {
    const d = await start();
    const site = await udpSocket();
    const member = await udpSocket();
    const stranger = await udpSocket();
    d.update([group(site.address().port, member.address().port)]);
    const frame = packet()
      .ethernet({ src: "02:00:00:00:00:00", dst: "00:00:00:00:00:00" })
      .ipv4({ src: "198.19.2.10", dst: "198.19.1.99" })
      .udp({ sport: 53, dport: 5353 })
      .build();
    const egress = new Uint8Array(8 + frame.length);
    writeLinkHeader(egress, 0, LinkMsg.EGRESS, 0, 0, 0);
    egress.set(frame, 8);
    // Loopback queues a datagram at the receiver before send() calls back, so the stranger's
    // datagram is read before the member's, whose effect (an ARP request to the site) we await.
    await new Promise<void>((resolve, reject) => stranger.send(egress, d.memberLink.port, d.memberLink.address, (e) => (e ? reject(e) : resolve())));
    const requestArrives = nextDatagram(site, (m) => vxlanVniOf(m, m.length) === 101);
    send(member, egress, d.memberLink);
    const request = await requestArrives;
    const view = new PacketView();
    expect(parseFrame(view, request, 8, request.length - 8, LinkType.ETHERNET)).toBe(true);
    expect(view.arpOp).toBe(1);
    expect(formatIp(request, view.arpTargetMacOffset + 6, 4)).toBe("198.19.1.99");
    const stats = await d.stats();
    expect(stats.drops["unknown-member"]).toBe(1);
    expect(stats.pendingFrames).toBe(1);
  });

  it("treats a broken invariant in the data path as fatal (a VNI in two groups)", async () => {
    const errors: Error[] = [];
    const fatal = new Promise<void>((resolve) => {
      void startDistributor({
        vxlanListen: { address: "127.0.0.1", port: 0 },
        memberLinkListen: { address: "127.0.0.1", port: 0 },
        inline,
        logger: quietLogger,
        onFatal: (e) => {
          errors.push(e);
          resolve();
        },
      }).then((d) => {
        open.push(d);
        const g = group(4789, 7000);
        try {
          d.update([g, { ...g, group: "other" }]);
        } catch (e) {
          // Inline: the assertion reaches the caller at once.
          errors.push(e as Error);
          resolve();
        }
      });
    });
    await fatal;
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/VNI 101 is in groups sg and other/);
  });

  it("rejects with a TandemError when a port is taken", async () => {
    const taken = await udpSocket();
    await expect(
      startDistributor({
        vxlanListen: { address: "127.0.0.1", port: taken.address().port },
        memberLinkListen: { address: "127.0.0.1", port: 0 },
        inline,
        logger: quietLogger,
      }),
    ).rejects.toSatisfy((e: unknown) => e instanceof TandemError && e.code === "TANDEM_INVALID_ARGUMENT" && /EADDRINUSE/.test(e.message));
  });
});
