// DistributorCore: replies to ARP / NS, the bucket agrees with ClusterNode's, epochs switch
// owners, egress finds (or resolves) neighbours, every bad datagram is a counted drop.

import { describe, it, expect } from "vitest";
import fc from "fast-check";
import {
  DistributorCore,
  DistributorDrop,
  PENDING_FRAMES_PER_NEIGHBOUR_MAX,
  RESOLVE_RETRY_MS,
  RESOLVE_TIMEOUT_MS,
  NEIGH_REANNOUNCE_MS,
  type DistributorCoreOptions,
} from "./distributor-core.js";
import type { DistributorGroupConfig, InterfaceConfig } from "./cluster-config.js";
import {
  decodeNeighbours,
  LinkMsg,
  linkIfIndex,
  linkTypeOf,
  linkWord,
  neighbourKeyOf,
  vxlanVniOf,
  writeLinkHeader,
  type NeighbourEntry,
} from "./member-link.js";
import { packet, parseMac } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { verifyChecksums } from "../packet/checksum.js";
import { formatIp, parseIpv6 } from "../packet/addr.js";
import { IpProto, LinkType, PacketView } from "../packet/view.js";
import { createEpochTable, type EpochTable } from "../distribution/epoch.js";
import { ClusterNode } from "../hypersync/cluster-node.js";

const SEED = 0x5eed1234;
const FC_SEED = 20260611;
const BUCKETS = 256;
const KEY = new Uint8Array(32).fill(0x42);
const KEY_TEXT = Buffer.from(KEY).toString("base64");
const NOW = 1_000_000;

console.log(`distributor-core tests fast-check seed=${FC_SEED}`);

const GW_MAC_IN = "02:00:00:00:01:01";
const GW_MAC_OUT = "02:00:00:00:02:01";
const GW_MAC_V6 = "02:00:00:00:03:01";
const CLIENT_MAC = "02:aa:00:00:00:10";
const SERVER_MAC = "02:bb:00:00:00:10";
const ROUTER_MAC = "02:bb:00:00:00:fe";
const V6_HOST_MAC = "02:cc:00:00:00:10";

const INTERFACES: InterfaceConfig[] = [
  { index: 0, name: "inside", vni: 101, gateway: "198.19.1.1/24", mac: GW_MAC_IN, siteEndpoint: "198.18.0.11", sitePort: 4789 },
  { index: 1, name: "outside", vni: 102, gateway: "198.19.2.1/24", mac: GW_MAC_OUT, siteEndpoint: "198.18.0.12", sitePort: 4789 },
  { index: 2, name: "six", vni: 103, gateway: "2001:db8:3::1/64", mac: GW_MAC_V6, siteEndpoint: "198.18.0.13", sitePort: 4790 },
];
const MEMBERS = ["m0", "m1", "m2", "m3"];
const ENDPOINTS = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7001", "10.0.0.4:7002"];

interface Sent {
  to: "site" | "member";
  bytes: Uint8Array;
  port: number;
  address: string;
}

function harness(options: Partial<DistributorCoreOptions> = {}): { core: DistributorCore; sent: Sent[] } {
  const sent: Sent[] = [];
  const record =
    (to: Sent["to"]) =>
    (buf: Uint8Array, offset: number, length: number, port: number, address: string): void => {
      sent.push({ to, bytes: buf.slice(offset, offset + length), port, address });
    };
  const core = new DistributorCore({ sendToSite: record("site"), sendToMember: record("member"), ...options });
  return { core, sent };
}

function epochTable(epoch = 1): EpochTable {
  return createEpochTable(
    MEMBERS.map((id) => ({ id, weight: 1 })),
    SEED,
    { bucketCount: BUCKETS, epoch },
  );
}

function groupConfig(over: Partial<DistributorGroupConfig> = {}): DistributorGroupConfig {
  const t = epochTable(over.epoch ?? 1);
  return {
    group: "sg",
    interfaces: INTERFACES,
    epoch: t.epoch,
    seed: SEED,
    bucketCount: BUCKETS,
    members: [...t.table.members],
    owner: t.table.owner,
    backup: t.table.backup,
    dataEndpoints: t.table.members.map((m) => ENDPOINTS[MEMBERS.indexOf(m)]!),
    clusterKey: KEY_TEXT,
    ...over,
  };
}

/** A VXLAN datagram (UDP payload) carrying the frame. */
function vxlan(vni: number, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + frame.length);
  out[0] = 0x08;
  out[4] = vni >>> 16;
  out[5] = (vni >>> 8) & 0xff;
  out[6] = vni & 0xff;
  out.set(frame, 8);
  return out;
}

/** A member-link EGRESS datagram carrying the frame. */
function egress(ifIndex: number, nextHop: number, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + frame.length);
  writeLinkHeader(out, 0, LinkMsg.EGRESS, 0, ifIndex, nextHop);
  out.set(frame, 8);
  return out;
}

function tcpFrame(src: string, dst: string, sport: number, dport: number, flags = "S", srcMac = CLIENT_MAC, dstMac = GW_MAC_IN): Uint8Array {
  return packet().ethernet({ src: srcMac, dst: dstMac }).ipv4({ src, dst }).tcp({ sport, dport, flags }).build();
}

function arpFrame(op: number, senderMac: string, senderIp: string, targetIp: string, dstMac = "ff:ff:ff:ff:ff:ff"): Uint8Array {
  return packet().ethernet({ src: senderMac, dst: dstMac }).arp({ op, senderMac, senderIp, targetIp, targetMac: op === 2 ? dstMac : undefined }).build();
}

function parsed(bytes: Uint8Array, offset = 8): PacketView {
  const view = new PacketView();
  expect(parseFrame(view, bytes, offset, bytes.length - offset, LinkType.ETHERNET)).toBe(true);
  return view;
}

function macAt(bytes: Uint8Array, offset: number): string {
  return Array.from(bytes.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** NS for target from src (hop limit 255), with a source link-layer address option. */
function nsFrame(src: string, target: string, srcMac: string): Uint8Array {
  const t = parseIpv6(target)!;
  const dst = new Uint8Array([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13]!, t[14]!, t[15]!]);
  const body = new Uint8Array(24);
  body.set(t, 0);
  body[16] = 1;
  body[17] = 1;
  body.set(parseMac(srcMac), 18);
  return packet()
    .ethernet({ src: srcMac, dst: "33:33:ff:00:00:01" })
    .ipv6({ src, dst, hopLimit: 255 })
    .icmpv6({ type: 135, code: 0, rest: 0 })
    .payload(body)
    .build();
}

/** NA for target (solicited, override) with a target link-layer address option. */
function naFrame(src: string, dst: string, mac: string, dstMac: string): Uint8Array {
  const body = new Uint8Array(24);
  body.set(parseIpv6(src)!, 0);
  body[16] = 2;
  body[17] = 1;
  body.set(parseMac(mac), 18);
  return packet()
    .ethernet({ src: mac, dst: dstMac })
    .ipv6({ src, dst, hopLimit: 255 })
    .icmpv6({ type: 136, code: 0, rest: 0x60000000 })
    .payload(body)
    .build();
}

function neighbourNode(): ClusterNode {
  return new ClusterNode({ name: "probe", memberId: 99, clusterId: 1, clusterKey: KEY, hashSeed: SEED, capacity: 1024, session: 1 }, NOW);
}

/** The bucket ClusterNode computes for a frame (the member side of the contract). */
function memberBucket(node: ClusterNode, frame: Uint8Array, nowMs = NOW): number {
  node.receiveFrame(frame, 0, frame.length, LinkType.ETHERNET, nowMs);
  return node.bucket;
}

function entriesOf(sent: Sent[]): NeighbourEntry[] {
  const key = neighbourKeyOf(KEY);
  const out: NeighbourEntry[] = [];
  for (const s of sent) {
    if (s.to !== "member" || linkTypeOf(s.bytes, s.bytes.length) !== LinkMsg.NEIGH) continue;
    const d = decodeNeighbours(s.bytes, s.bytes.length, key);
    expect(Array.isArray(d)).toBe(true);
    out.push(...(d as NeighbourEntry[]));
  }
  return out;
}

describe("DistributorCore: gateway addresses", () => {
  it("answers an ARP request for the gateway with a correct reply to srcAddress:sitePort", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const request = vxlan(101, arpFrame(1, CLIENT_MAC, "198.19.1.10", "198.19.1.1"));
    core.fromSite(request, request.length, "198.18.0.11", 51234, NOW);
    expect(sent).toHaveLength(1);
    const r = sent[0]!;
    expect(r.to).toBe("site");
    expect(r.address).toBe("198.18.0.11");
    expect(r.port).toBe(4789); // the site's VXLAN port, not the datagram's source port
    expect(vxlanVniOf(r.bytes, r.bytes.length)).toBe(101);
    const v = parsed(r.bytes);
    expect(v.arpOp).toBe(2);
    expect(formatIp(r.bytes, v.arpSenderMacOffset + 6, 4)).toBe("198.19.1.1");
    expect(macAt(r.bytes, v.arpSenderMacOffset)).toBe(GW_MAC_IN);
    expect(formatIp(r.bytes, v.arpTargetMacOffset + 6, 4)).toBe("198.19.1.10");
    expect(macAt(r.bytes, v.arpTargetMacOffset)).toBe(CLIENT_MAC);
    expect(macAt(r.bytes, 8)).toBe(CLIENT_MAC);
    expect(macAt(r.bytes, 14)).toBe(GW_MAC_IN);
    const s = core.stats();
    expect(s.groups.sg!.arpReplies).toBe(1);
    expect(s.groups.sg!.neighbours).toBe(1); // the requester was learned
  });

  it("does not answer ARP for other addresses (counted)", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const request = vxlan(101, arpFrame(1, CLIENT_MAC, "198.19.1.10", "198.19.1.20"));
    core.fromSite(request, request.length, "198.18.0.11", 4789, NOW);
    expect(sent).toHaveLength(0);
    expect(core.stats().drops["arp-unanswered"]).toBe(1);
  });

  it("answers a neighbour solicitation for the gateway with an advertisement whose checksum is valid", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const ns = vxlan(103, nsFrame("2001:db8:3::10", "2001:db8:3::1", V6_HOST_MAC));
    core.fromSite(ns, ns.length, "198.18.0.13", 40000, NOW);
    expect(sent).toHaveLength(1);
    const r = sent[0]!;
    expect(r.address).toBe("198.18.0.13");
    expect(r.port).toBe(4790);
    expect(vxlanVniOf(r.bytes, r.bytes.length)).toBe(103);
    const v = parsed(r.bytes);
    expect(v.ipVersion).toBe(6);
    expect(v.protocol).toBe(IpProto.ICMPV6);
    expect(v.icmpType).toBe(136);
    expect(v.ttl).toBe(255);
    expect(verifyChecksums(v)).toBe(true);
    expect(formatIp(r.bytes, v.srcAddrOffset, 16)).toBe("2001:db8:3::1");
    expect(formatIp(r.bytes, v.dstAddrOffset, 16)).toBe("2001:db8:3::10");
    expect(r.bytes[v.l4Offset + 4]).toBe(0xe0); // router, solicited, override
    expect(formatIp(r.bytes, v.l4Offset + 8, 16)).toBe("2001:db8:3::1");
    expect(r.bytes[v.l4Offset + 24]).toBe(2);
    expect(macAt(r.bytes, v.l4Offset + 26)).toBe(GW_MAC_V6);
    expect(macAt(r.bytes, 8)).toBe(V6_HOST_MAC);
    expect(core.stats().groups.sg!.arpReplies).toBe(1);
    expect(core.stats().groups.sg!.neighbours).toBe(1);
  });

  it("does not answer an NS that was forwarded (hop limit below 255)", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const frame = nsFrame("2001:db8:3::10", "2001:db8:3::1", V6_HOST_MAC);
    const v = parsed(frame, 0);
    frame[v.ttlOffset] = 64;
    const ns = vxlan(103, frame);
    core.fromSite(ns, ns.length, "198.18.0.13", 40000, NOW);
    expect(sent).toHaveLength(0);
    expect(core.stats().drops["nd-unanswered"]).toBe(1);
  });
});

describe("DistributorCore: forwarding to owners", () => {
  it("overwrites the VXLAN header with INGRESS(epoch, ifIndex) and sends the frame to the owner of ClusterNode's bucket", () => {
    const { core, sent } = harness();
    const config = groupConfig({ epoch: 7 });
    core.configure([config], NOW);
    const node = neighbourNode();
    node.setEpoch(epochTable(7), new Map(), new Map(), NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80);
    const d = vxlan(101, frame);
    core.fromSite(d, d.length, "198.18.0.11", 4789, NOW);
    const bucket = memberBucket(node, frame);
    expect(core.lastBucket).toBe(bucket);
    expect(sent).toHaveLength(1);
    const s = sent[0]!;
    const owner = config.owner[bucket]!;
    expect(`${s.address}:${s.port}`).toBe(config.dataEndpoints[owner]);
    expect(linkTypeOf(s.bytes, s.bytes.length)).toBe(LinkMsg.INGRESS);
    expect(linkIfIndex(s.bytes)).toBe(0);
    expect(linkWord(s.bytes)).toBe(7);
    expect(s.bytes.subarray(8)).toEqual(frame);
    expect(core.stats().groups.sg!.toMembers).toBe(1);
  });

  it("agrees with ClusterNode on the bucket of random flows, and both directions of a flow meet (property)", () => {
    const { core, sent } = harness();
    const config = groupConfig();
    core.configure([config], NOW);
    const node = neighbourNode();
    node.setEpoch(epochTable(), new Map(), new Map(), NOW);
    const octet = fc.integer({ min: 2, max: 254 });
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(
      fc.property(octet, octet, port, port, fc.constantFrom("tcp", "udp", "icmp"), (a, b, sport, dport, kind) => {
        const client = `198.19.1.${a}`;
        const server = `198.19.2.${b}`;
        const build = (fromClient: boolean): Uint8Array => {
          const base = fromClient
            ? packet().ethernet({ src: CLIENT_MAC, dst: GW_MAC_IN }).ipv4({ src: client, dst: server })
            : packet().ethernet({ src: SERVER_MAC, dst: GW_MAC_OUT }).ipv4({ src: server, dst: client });
          if (kind === "tcp") return base.tcp({ sport: fromClient ? sport : dport, dport: fromClient ? dport : sport, flags: fromClient ? "S" : "SA" }).build();
          if (kind === "udp") return base.udp({ sport: fromClient ? sport : dport, dport: fromClient ? dport : sport }).build();
          return base.icmp({ type: fromClient ? 8 : 0, id: sport, seq: 1 }).build();
        };
        sent.length = 0;
        const there = build(true);
        const back = build(false);
        core.fromSite(vxlan(101, there), there.length + 8, "198.18.0.11", 4789, NOW);
        const b1 = core.lastBucket;
        core.fromSite(vxlan(102, back), back.length + 8, "198.18.0.12", 4789, NOW);
        const b2 = core.lastBucket;
        expect(b1).toBe(memberBucket(node, there));
        expect(b2).toBe(b1);
        // (Gleaned neighbours are announced in batches of NEIGH_ENTRIES_MAX in between.)
        const ingress = sent.filter((s) => linkTypeOf(s.bytes, s.bytes.length) === LinkMsg.INGRESS);
        expect(ingress).toHaveLength(2);
        expect(`${ingress[0]!.address}:${ingress[0]!.port}`).toBe(`${ingress[1]!.address}:${ingress[1]!.port}`);
        expect(linkIfIndex(ingress[0]!.bytes)).toBe(0);
        expect(linkIfIndex(ingress[1]!.bytes)).toBe(1);
      }),
      { seed: FC_SEED, numRuns: 200 },
    );
  });

  it("sends an ICMP error to the bucket of the flow it quotes, as ClusterNode does", () => {
    const { core } = harness();
    core.configure([groupConfig()], NOW);
    const node = neighbourNode();
    node.setEpoch(epochTable(), new Map(), new Map(), NOW);
    const original = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80);
    const d = vxlan(101, original);
    core.fromSite(d, d.length, "198.18.0.11", 4789, NOW);
    const flowBucket = core.lastBucket;
    // A router on the outside segment answers with "port unreachable", quoting the segment.
    const quote = original.slice(14, 14 + 28);
    const error = packet()
      .ethernet({ src: ROUTER_MAC, dst: GW_MAC_OUT })
      .ipv4({ src: "198.19.2.254", dst: "198.19.1.10" })
      .icmp({ type: 3, code: 3, quote })
      .build();
    const e = vxlan(102, error);
    core.fromSite(e, e.length, "198.18.0.12", 4789, NOW);
    expect(core.lastBucket).toBe(flowBucket);
    expect(core.lastBucket).toBe(memberBucket(node, error));
  });

  it("sends every fragment of a datagram to the bucket of its first fragment, as ClusterNode does", () => {
    const { core } = harness();
    core.configure([groupConfig()], NOW);
    const node = neighbourNode();
    node.setEpoch(epochTable(), new Map(), new Map(), NOW);
    const fragments = packet()
      .ethernet({ src: CLIENT_MAC, dst: GW_MAC_IN })
      .ipv4({ src: "198.19.1.10", dst: "198.19.2.10", id: 777 })
      .udp({ sport: 5353, dport: 9999 })
      .payload(new Uint8Array(3000).fill(7))
      .buildFragments(1000);
    expect(fragments.length).toBeGreaterThan(2);
    const buckets = fragments.map((f) => {
      const d = vxlan(101, f);
      core.fromSite(d, d.length, "198.18.0.11", 4789, NOW);
      expect(core.lastBucket).toBe(memberBucket(node, f));
      return core.lastBucket;
    });
    expect(new Set(buckets).size).toBe(1);
  });

  it("routes by the new epoch's owner as soon as it is configured, and records when it was installed", () => {
    const { core, sent } = harness();
    const all = (m: number): Int16Array => new Int16Array(BUCKETS).fill(m);
    core.configure([groupConfig({ epoch: 1, owner: all(0) })], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80);
    core.fromSite(vxlan(101, frame), frame.length + 8, "198.18.0.11", 4789, NOW);
    expect(`${sent[0]!.address}:${sent[0]!.port}`).toBe(ENDPOINTS[0]);
    expect(linkWord(sent[0]!.bytes)).toBe(1);
    expect(core.stats().groups.sg!.epochInstalledAtMs).toBe(NOW);

    core.configure([groupConfig({ epoch: 2, owner: all(1) })], NOW + 500);
    core.fromSite(vxlan(101, frame), frame.length + 8, "198.18.0.11", 4789, NOW + 501);
    expect(`${sent[1]!.address}:${sent[1]!.port}`).toBe(ENDPOINTS[1]);
    expect(linkWord(sent[1]!.bytes)).toBe(2);
    const s = core.stats().groups.sg!;
    expect(s.epoch).toBe(2);
    expect(s.epochInstalledAtMs).toBe(NOW + 500);

    // The same epoch again (an endpoint change) keeps the installation time.
    core.configure([groupConfig({ epoch: 2, owner: all(1) })], NOW + 900);
    expect(core.stats().groups.sg!.epochInstalledAtMs).toBe(NOW + 500);
  });

  it("counts frames whose owner is missing or has no endpoint yet", () => {
    const { core, sent } = harness();
    core.configure([groupConfig({ owner: new Int16Array(BUCKETS).fill(-1) })], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80);
    core.fromSite(vxlan(101, frame), frame.length + 8, "198.18.0.11", 4789, NOW);
    core.configure([groupConfig({ owner: new Int16Array(BUCKETS).fill(2), dataEndpoints: [ENDPOINTS[0]!, ENDPOINTS[1]!, null, ENDPOINTS[3]!] })], NOW);
    core.fromSite(vxlan(101, frame), frame.length + 8, "198.18.0.11", 4789, NOW);
    expect(sent).toHaveLength(0);
    const drops = core.stats().drops;
    expect(drops["no-owner"]).toBe(1);
    expect(drops["no-endpoint"]).toBe(1);
  });

  it("drops multicast and broadcast destinations (counted)", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    for (const dst of ["224.0.0.251", "255.255.255.255", "198.19.1.255"]) {
      const f = packet().ethernet({ src: CLIENT_MAC, dst: "ff:ff:ff:ff:ff:ff" }).ipv4({ src: "198.19.1.10", dst }).udp({ sport: 5353, dport: 5353 }).build();
      core.fromSite(vxlan(101, f), f.length + 8, "198.18.0.11", 4789, NOW);
    }
    expect(sent).toHaveLength(0);
    expect(core.stats().drops.multicast).toBe(3);
  });
});

describe("DistributorCore: egress to the sites", () => {
  const member0 = ENDPOINTS[0]!.split(":");
  const fromMember0 = (core: DistributorCore, d: Uint8Array, nowMs = NOW): void => core.fromMember(d, d.length, member0[0]!, Number(member0[1]), nowMs);

  it("sends EGRESS for a known neighbour as VXLAN with the interface's VNI and MAC, to the neighbour's VTEP", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    // The server is gleaned from its traffic: it sits behind VTEP 198.18.0.12.
    const fromServer = tcpFrame("198.19.2.10", "198.19.1.10", 80, 40000, "SA", SERVER_MAC, GW_MAC_OUT);
    core.fromSite(vxlan(102, fromServer), fromServer.length + 8, "198.18.0.12", 33333, NOW);
    sent.length = 0;
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80, "A", CLIENT_MAC, GW_MAC_IN);
    fromMember0(core, egress(1, 0, frame));
    expect(sent).toHaveLength(1);
    const s = sent[0]!;
    expect(s.to).toBe("site");
    expect(s.address).toBe("198.18.0.12");
    expect(s.port).toBe(4789);
    expect(vxlanVniOf(s.bytes, s.bytes.length)).toBe(102);
    expect(macAt(s.bytes, 8)).toBe(SERVER_MAC);
    expect(macAt(s.bytes, 14)).toBe(GW_MAC_OUT);
    expect(s.bytes.subarray(8 + 12)).toEqual(frame.subarray(12));
    expect(core.stats().groups.sg!.egress).toBe(1);
  });

  it("uses the header's next hop when it is set", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const arp = vxlan(102, arpFrame(1, ROUTER_MAC, "198.19.2.254", "198.19.2.1"));
    core.fromSite(arp, arp.length, "198.18.0.12", 4789, NOW);
    sent.length = 0;
    const frame = tcpFrame("198.19.1.10", "203.0.113.5", 40000, 443, "S");
    fromMember0(core, egress(1, 0xc613_02fe, frame)); // 198.19.2.254
    expect(sent).toHaveLength(1);
    expect(macAt(sent[0]!.bytes, 8)).toBe(ROUTER_MAC);
  });

  it("resolves an unknown neighbour with an ARP request, queues the frame and sends it when the reply arrives", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80, "S");
    fromMember0(core, egress(1, 0, frame));
    expect(sent).toHaveLength(1);
    const req = sent[0]!;
    expect(req.to).toBe("site");
    expect(`${req.address}:${req.port}`).toBe("198.18.0.12:4789");
    expect(vxlanVniOf(req.bytes, req.bytes.length)).toBe(102);
    const v = parsed(req.bytes);
    expect(v.arpOp).toBe(1);
    expect(formatIp(req.bytes, v.arpSenderMacOffset + 6, 4)).toBe("198.19.2.1");
    expect(macAt(req.bytes, v.arpSenderMacOffset)).toBe(GW_MAC_OUT);
    expect(formatIp(req.bytes, v.arpTargetMacOffset + 6, 4)).toBe("198.19.2.10");
    expect(macAt(req.bytes, 8)).toBe("ff:ff:ff:ff:ff:ff");
    expect(core.stats().pendingFrames).toBe(1);

    // The reply comes from the VTEP the server sits behind.
    sent.length = 0;
    const reply = vxlan(102, arpFrame(2, SERVER_MAC, "198.19.2.10", "198.19.2.1", GW_MAC_OUT));
    core.fromSite(reply, reply.length, "198.18.0.12", 40001, NOW + 3);
    expect(sent).toHaveLength(1);
    const out = sent[0]!;
    expect(`${out.address}:${out.port}`).toBe("198.18.0.12:4789");
    expect(vxlanVniOf(out.bytes, out.bytes.length)).toBe(102);
    expect(macAt(out.bytes, 8)).toBe(SERVER_MAC);
    expect(macAt(out.bytes, 14)).toBe(GW_MAC_OUT);
    expect(out.bytes.subarray(8 + 12)).toEqual(frame.subarray(12));
    const s = core.stats();
    expect(s.pendingFrames).toBe(0);
    expect(s.groups.sg!.egressQueued).toBe(1);
    expect(s.groups.sg!.egress).toBe(1);
    expect(s.groups.sg!.neighbourFrames).toBe(1);

    // The new neighbour is announced to every member at the next tick.
    sent.length = 0;
    core.tick(NOW + 10);
    const announced = sent.filter((x) => x.to === "member");
    expect(announced.map((x) => `${x.address}:${x.port}`).sort()).toEqual([...ENDPOINTS].sort());
    const entries = entriesOf(announced.slice(0, 1));
    expect(entries).toHaveLength(1);
    expect(entries[0]!.ifIndex).toBe(1);
    expect(formatIp(entries[0]!.ip)).toBe("198.19.2.10");
    expect(macAt(entries[0]!.mac, 0)).toBe(SERVER_MAC);
    expect(entries[0]!.vtepIp).toBe(0xc612_000c);
    expect(entries[0]!.vtepPort).toBe(4789);
  });

  it("repeats an unanswered ARP request and drops the queued frames after the timeout (counted)", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.77", 40000, 80, "S");
    fromMember0(core, egress(1, 0, frame));
    fromMember0(core, egress(1, 0, frame));
    expect(sent).toHaveLength(1); // one request for both frames
    core.tick(NOW + RESOLVE_RETRY_MS);
    expect(sent).toHaveLength(2);
    expect(parsed(sent[1]!.bytes).arpOp).toBe(1);
    core.tick(NOW + RESOLVE_TIMEOUT_MS);
    const s = core.stats();
    expect(s.drops["egress-unresolved"]).toBe(2);
    expect(s.pendingFrames).toBe(0);
    expect(s.pendingNeighbours).toBe(0);
  });

  it("bounds the frames waiting for one neighbour", () => {
    const { core } = harness();
    core.configure([groupConfig()], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.77", 40000, 80, "S");
    for (let i = 0; i <= PENDING_FRAMES_PER_NEIGHBOUR_MAX; i++) fromMember0(core, egress(1, 0, frame));
    const s = core.stats();
    expect(s.pendingFrames).toBe(PENDING_FRAMES_PER_NEIGHBOUR_MAX);
    expect(s.drops["egress-queue-full"]).toBe(1);
  });

  it("resolves an IPv6 neighbour with a valid NS and sends the frame when the NA arrives", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const frame = packet()
      .ethernet({ src: CLIENT_MAC, dst: GW_MAC_IN })
      .ipv6({ src: "2001:db8:1::10", dst: "2001:db8:3::10" })
      .tcp({ sport: 40000, dport: 80 })
      .build();
    fromMember0(core, egress(2, 0, frame));
    expect(sent).toHaveLength(1);
    const ns = sent[0]!;
    expect(`${ns.address}:${ns.port}`).toBe("198.18.0.13:4790");
    const v = parsed(ns.bytes);
    expect(v.icmpType).toBe(135);
    expect(verifyChecksums(v)).toBe(true);
    expect(formatIp(ns.bytes, v.dstAddrOffset, 16)).toBe("ff02::1:ff00:10");
    expect(formatIp(ns.bytes, v.l4Offset + 8, 16)).toBe("2001:db8:3::10");
    expect(macAt(ns.bytes, 8)).toBe("33:33:ff:00:00:10");

    sent.length = 0;
    const na = vxlan(103, naFrame("2001:db8:3::10", "2001:db8:3::1", V6_HOST_MAC, GW_MAC_V6));
    core.fromSite(na, na.length, "198.18.0.13", 50000, NOW + 2);
    expect(sent).toHaveLength(1);
    expect(vxlanVniOf(sent[0]!.bytes, sent[0]!.bytes.length)).toBe(103);
    expect(macAt(sent[0]!.bytes, 8)).toBe(V6_HOST_MAC);
    expect(macAt(sent[0]!.bytes, 14)).toBe(GW_MAC_V6);
    expect(`${sent[0]!.address}:${sent[0]!.port}`).toBe("198.18.0.13:4790");
  });
});

describe("DistributorCore: neighbour announcements", () => {
  it("sends the whole table to a member whose endpoint is new, and to all every few seconds", () => {
    const { core, sent } = harness();
    core.configure([groupConfig({ dataEndpoints: [ENDPOINTS[0]!, null, null, null] })], NOW);
    for (let h = 10; h < 60; h++) {
      const f = tcpFrame(`198.19.1.${h}`, "198.19.2.10", 40000, 80, "S", `02:aa:00:00:00:${h.toString(16)}`);
      core.fromSite(vxlan(101, f), f.length + 8, "198.18.0.11", 4789, NOW);
    }
    core.tick(NOW + 1);
    expect(entriesOf(sent)).toHaveLength(50);
    sent.length = 0;

    // Member 2 reports its endpoint: it alone gets the 50 entries (two datagrams: at most 40 each).
    core.configure([groupConfig({ dataEndpoints: [ENDPOINTS[0]!, null, ENDPOINTS[2]!, null] })], NOW + 2);
    const toM2 = sent.filter((s) => `${s.address}:${s.port}` === ENDPOINTS[2]);
    expect(toM2).toHaveLength(2);
    expect(sent).toHaveLength(2);
    expect(entriesOf(toM2)).toHaveLength(50);

    sent.length = 0;
    core.tick(NOW + 1 + NEIGH_REANNOUNCE_MS);
    expect(entriesOf(sent)).toHaveLength(100); // 50 to each of the two members
  });

  it("bounds the neighbour table: the least recently seen neighbour is evicted (counted)", () => {
    const { core } = harness({ neighboursMax: 4 });
    core.configure([groupConfig()], NOW);
    for (let h = 10; h < 16; h++) {
      const f = tcpFrame(`198.19.1.${h}`, "198.19.2.10", 40000, 80, "S", `02:aa:00:00:00:${h.toString(16)}`);
      core.fromSite(vxlan(101, f), f.length + 8, "198.18.0.11", 4789, NOW + h);
    }
    const s = core.stats();
    expect(s.groups.sg!.neighbours).toBe(4);
    expect(s.neighbourEvictions).toBe(2);
  });
});

describe("DistributorCore: drops", () => {
  it("counts unknown VNIs, non-VXLAN, malformed frames, unknown members and unexpected member-link types", () => {
    const { core, sent } = harness();
    core.configure([groupConfig()], NOW);
    const frame = tcpFrame("198.19.1.10", "198.19.2.10", 40000, 80);
    core.fromSite(vxlan(999, frame), frame.length + 8, "198.18.0.11", 4789, NOW);
    const noFlag = vxlan(101, frame);
    noFlag[0] = 0;
    core.fromSite(noFlag, noFlag.length, "198.18.0.11", 4789, NOW);
    const truncated = vxlan(101, frame.subarray(0, 30));
    core.fromSite(truncated, truncated.length, "198.18.0.11", 4789, NOW);
    const lldp = vxlan(101, packet().ethernet({ src: CLIENT_MAC, dst: "01:80:c2:00:00:0e", etherType: 0x88cc }).payload(new Uint8Array(40)).build());
    core.fromSite(lldp, lldp.length, "198.18.0.11", 4789, NOW);
    core.fromMember(egress(1, 0, frame), frame.length + 8, "10.9.9.9", 7000, NOW);
    core.fromMember(egress(1, 0, frame), frame.length + 8, "10.0.0.1", 7999, NOW);
    const ingress = egress(1, 0, frame);
    writeLinkHeader(ingress, 0, LinkMsg.INGRESS, 0, 0, 1);
    core.fromMember(ingress, ingress.length, "10.0.0.1", 7000, NOW);
    core.fromMember(egress(9, 0, frame), frame.length + 8, "10.0.0.1", 7000, NOW);
    const badVersion = egress(1, 0, frame);
    badVersion[0] = 0x22;
    core.fromMember(badVersion, badVersion.length, "10.0.0.1", 7000, NOW);
    expect(sent).toHaveLength(0);
    const d = core.stats().drops;
    expect(d["unknown-vni"]).toBe(1);
    expect(d["not-vxlan"]).toBe(1);
    expect(d.malformed).toBe(1);
    expect(d["not-ip"]).toBe(1);
    expect(d["unknown-member"]).toBe(2);
    expect(d["member-link-type"]).toBe(1);
    expect(d["egress-bad-interface"]).toBe(1);
    expect(d["bad-link-header"]).toBe(1);
    expect(core.dropCount(DistributorDrop.UNKNOWN_MEMBER)).toBe(2);
  });

  it("never throws on random bytes, from sites or members (property)", () => {
    const { core } = harness({ neighboursMax: 64 });
    core.configure([groupConfig()], NOW);
    const bytes = fc.uint8Array({ minLength: 0, maxLength: 200 });
    fc.assert(
      fc.property(bytes, fc.constantFrom(0, 101, 102, 103), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 }), (raw, vni, ifIndex, t) => {
        // Raw bytes, bytes behind a valid VXLAN header, bytes behind a valid EGRESS header.
        core.fromSite(raw, raw.length, "198.18.0.11", 4789, NOW + t);
        const v = vxlan(vni, raw);
        core.fromSite(v, v.length, "198.18.0.12", 4789, NOW + t);
        core.fromMember(raw, raw.length, "10.0.0.1", 7000, NOW + t);
        const e = egress(ifIndex, t === 0 ? 0 : 0xc6130200 + t, raw);
        core.fromMember(e, e.length, "10.0.0.2", 7000, NOW + t);
        core.tick(NOW + t * 600);
      }),
      { seed: FC_SEED, numRuns: 2000 },
    );
  });

  it("asserts on a VNI configured in two groups (a caller bug)", () => {
    const { core } = harness();
    expect(() => core.configure([groupConfig(), groupConfig({ group: "other" })], NOW)).toThrow(/VNI 101/);
  });
});
