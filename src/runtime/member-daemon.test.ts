// MemberDaemon over real UDP sockets on 127.0.0.1 (OS-chosen ports) with an in-memory
// orchestrator (FakeOrchestrator: one group, two members m1/m2, plus a fake peer m3 whose
// endpoints are test sockets) and fake distributor and site sockets. No sleeps: every wait
// polls a condition with a deadline (waitFor).

import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { createEpochTable, ownerOf, type EpochTable } from "../distribution/epoch.js";
import { bucketOfView } from "../distribution/bucket-hash.js";
import { encodeRoles } from "../orchestrator/transitions.js";
import { packet } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView, TcpFlag } from "../packet/view.js";
import type { PolicySpec } from "../engine/policy.js";
import type { InterfaceConfig, MemberConfig, MemberEndpoints } from "./cluster-config.js";
import type { ConnectionFilter, HeldConnection } from "./connection-queries.js";
import {
  CORRECTION_HOPS_MAX,
  encodeNeighbours,
  ipv4ToU32,
  LinkMsg,
  linkIfIndex,
  linkTypeOf,
  linkWord,
  neighbourKeyOf,
  vxlanVniOf,
  writeLinkHeader,
  type NeighbourEntry,
} from "./member-link.js";
import { MemberDaemon, ipVersionOfFrame, tableCapacityOf, type MemberControl, type MemberDistribution, type MemberHeartbeat, type MemberHeartbeatAnswer } from "./member-daemon.js";

const SEED = 0x5eed0005;
const BUCKETS = 1024;
const CLUSTER_KEY = new Uint8Array(32).fill(0x37);
const GROUP = "sg1";
const WAIT_MS = 4000;

const CLIENT = "198.19.1.10";
const SERVER = "198.19.2.10";
const CLIENT_MAC = "02:00:00:00:01:0a";
const SERVER_MAC = "02:00:00:00:02:0a";
const INSIDE_MAC = "02:00:00:00:01:01";
const OUTSIDE_MAC = "02:00:00:00:02:01";

const POLICY_1: PolicySpec = {
  rules: [
    { name: "web", protocol: "tcp", ports: 80, action: "accept" },
    { name: "no-ssh", protocol: "tcp", ports: 22, action: "reject" },
  ],
};
const POLICY_2: PolicySpec = { rules: [{ name: "web-only", protocol: "tcp", ports: 80, action: "accept" }] };

async function waitFor(what: string, predicate: () => boolean, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** A UDP socket that records what it receives. */
class Probe {
  readonly received: { bytes: Buffer; from: RemoteInfo }[] = [];
  readonly socket: Socket = createSocket("udp4");
  port = 0;

  async bind(): Promise<this> {
    await new Promise<void>((resolve) => this.socket.bind(0, "127.0.0.1", () => resolve()));
    this.port = this.socket.address().port;
    this.socket.on("message", (bytes, from) => this.received.push({ bytes, from }));
    return this;
  }

  send(bytes: Uint8Array, port: number): void {
    this.socket.send(bytes, 0, bytes.length, port, "127.0.0.1");
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** The orchestrator as the members see it: config, heartbeat answers, distribution, reports. */
class FakeOrchestrator {
  readonly heartbeats = new Map<string, MemberHeartbeat>();
  readonly verifyReports: { member: string; id: number; bucketsChecked: number; mismatched: number[] }[] = [];
  readonly fillReports: { member: string; epoch: number; buckets: number[] }[] = [];
  table: EpochTable | null = null;
  verify: { id: number; epoch: number } | null = null;
  connectionQuery: ({ id: number } & ConnectionFilter) | null = null;
  readonly connectionReports: { member: string; id: number; connections: HeldConnection[] }[] = [];
  policy: PolicySpec = POLICY_1;
  policyRevision = 1;
  hypersyncVersion = 2;
  readonly extraEndpoints = new Map<string, MemberEndpoints>();
  readonly ids = new Map<string, number>([
    ["m1", 1],
    ["m2", 2],
    ["m3", 3],
  ]);

  constructor(
    readonly interfaces: InterfaceConfig[],
    readonly distributor: string,
  ) {}

  configOf(member: string): MemberConfig {
    return {
      appliance: member,
      group: GROUP,
      memberId: this.ids.get(member)!,
      clusterId: 77,
      clusterKey: Buffer.from(CLUSTER_KEY).toString("base64"),
      hashSeed: SEED,
      bucketCount: BUCKETS,
      interfaces: this.interfaces,
      routes: [],
      policy: this.policy,
      policyRevision: this.policyRevision,
      distributor: this.distributor,
      capacity: 4096,
    };
  }

  distribution(): MemberDistribution | null {
    const t = this.table;
    if (t === null) return null;
    const endpoints: Record<string, MemberEndpoints | null> = {};
    for (const name of this.ids.keys()) endpoints[name] = this.heartbeats.get(name)?.endpoints ?? this.extraEndpoints.get(name) ?? null;
    return {
      group: GROUP,
      epoch: t.epoch,
      seed: t.seed,
      bucketCount: t.table.bucketCount,
      members: [...t.table.members],
      weights: [...t.table.weights],
      owner: encodeRoles(t.table.owner),
      backup: encodeRoles(t.table.backup),
      fills: [],
      memberIds: Object.fromEntries(this.ids),
      endpoints,
      hypersyncVersion: this.hypersyncVersion,
    };
  }

  controlFor(member: string): MemberControl {
    return {
      heartbeat: async (input): Promise<MemberHeartbeatAnswer> => {
        this.heartbeats.set(member, input);
        return { group: GROUP, epoch: this.table?.epoch ?? null, policyRevision: this.policyRevision, transition: null, heartbeatIntervalMs: 10, verify: this.verify, connectionQuery: this.connectionQuery };
      },
      config: async () => this.configOf(member),
      distribution: async () => this.distribution(),
      reportFills: async (report) => {
        this.fillReports.push({ member, ...report });
        return {};
      },
      reportVerify: async (report) => {
        this.verifyReports.push({ member, ...report });
        return {};
      },
      reportConnections: async (report) => {
        this.connectionReports.push({ member, ...report });
        return { accepted: true };
      },
    };
  }
}

function tcpFrame(from: "client" | "server", sport: number, dport: number, flags: string, seq: number, ack: number): Uint8Array {
  const client = from === "client";
  return packet()
    .ethernet({ src: client ? CLIENT_MAC : SERVER_MAC, dst: client ? INSIDE_MAC : OUTSIDE_MAC })
    .ipv4({ src: client ? CLIENT : SERVER, dst: client ? SERVER : CLIENT, ttl: 64 })
    .tcp({ sport, dport, flags, seq, ack, window: 65535 })
    .build();
}

/** An 8-byte member-link header in front of the frame (what the distributor sends). */
function linkFrame(type: number, hops: number, ifIndex: number, word: number, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + frame.length);
  writeLinkHeader(out, 0, type as 1, hops, ifIndex, word);
  out.set(frame, 8);
  return out;
}

function bucketOfFrame(frame: Uint8Array): number {
  const view = new PacketView();
  expect(parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET)).toBe(true);
  return bucketOfView(SEED, view, BUCKETS);
}

/** A client port whose flow to SERVER:dport the table gives to `owner`. */
function portOwnedBy(table: EpochTable, owner: string, dport: number, after: number): number {
  for (let port = after + 1; port < 65535; port++) {
    if (ownerOf(table, bucketOfFrame(tcpFrame("client", port, dport, "S", 1, 0))) === owner) return port;
  }
  throw new Error("no port found");
}

function innerView(datagram: Buffer): PacketView {
  const view = new PacketView();
  expect(parseFrame(view, datagram, 8, datagram.length - 8, LinkType.ETHERNET)).toBe(true);
  return view;
}

function macAt(buf: Uint8Array, offset: number): string {
  return [...buf.subarray(offset, offset + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

describe("MemberDaemon: two members over UDP on 127.0.0.1", () => {
  let distributor: Probe;
  let site: Probe;
  let stranger: Probe;
  let fakePeerData: Probe;
  let fakePeerSync: Probe;
  let fake: FakeOrchestrator;
  const members = new Map<string, MemberDaemon>();
  const table = createEpochTable(
    [
      { id: "m1", weight: 1 },
      { id: "m2", weight: 1 },
    ],
    SEED,
    { bucketCount: BUCKETS, epoch: 1 },
  );
  const m = (name: string): MemberDaemon => members.get(name)!;

  beforeAll(async () => {
    distributor = await new Probe().bind();
    site = await new Probe().bind();
    stranger = await new Probe().bind();
    fakePeerData = await new Probe().bind();
    fakePeerSync = await new Probe().bind();
    const interfaces: InterfaceConfig[] = [
      { index: 0, name: "inside", vni: 101, gateway: "198.19.1.1/24", mac: INSIDE_MAC, siteEndpoint: "127.0.0.1", sitePort: site.port },
      { index: 1, name: "outside", vni: 102, gateway: "198.19.2.1/24", mac: OUTSIDE_MAC, siteEndpoint: "127.0.0.1", sitePort: site.port },
    ];
    fake = new FakeOrchestrator(interfaces, `127.0.0.1:${distributor.port}`);
    fake.extraEndpoints.set("m3", { data: `127.0.0.1:${fakePeerData.port}`, sync: `127.0.0.1:${fakePeerSync.port}` });
    for (const name of ["m1", "m2"]) {
      // m2 stands for a newer build that also reads HyperSync "version 3" (version 2's layout here).
      const hypersyncVersions = name === "m2" ? { min: 2, max: 3 } : undefined;
      const daemon = new MemberDaemon({ appliance: name, orchestrator: "http://127.0.0.1:1", control: fake.controlFor(name), listen: "127.0.0.1", logger: pino({ level: "silent" }), hypersyncVersions });
      await daemon.start();
      members.set(name, daemon);
    }
    // Publish the table once both members have told their endpoints (as a real group starts).
    await waitFor("both heartbeats", () => fake.heartbeats.has("m1") && fake.heartbeats.has("m2"));
    fake.table = table;
    await waitFor("epoch 1 on both", () => m("m1").node?.epoch === 1 && m("m2").node?.epoch === 1);
  });

  afterAll(async () => {
    for (const daemon of members.values()) await daemon.stop();
    for (const probe of [distributor, site, stranger, fakePeerData, fakePeerSync]) await probe?.close();
  });

  it("starts with its endpoints, session and policy in the heartbeat", () => {
    const hb = fake.heartbeats.get("m1")!;
    expect(hb.endpoints.data).toBe(`127.0.0.1:${m("m1").dataEndpoint.port}`);
    expect(hb.endpoints.sync).toBe(`127.0.0.1:${m("m1").syncEndpoint.port}`);
    expect(m("m1").dataEndpoint.port).not.toBe(m("m1").syncEndpoint.port);
    expect(hb.session).toBeGreaterThan(0);
    expect(hb.policyRevision).toBe(1);
    expect(m("m1").node!.engine.routes!.routeCount).toBe(2);
  });

  it("forwards a handshake: EGRESS to the distributor before NEIGH, VXLAN to the site after; the backup gets HyperSync records", async () => {
    const port = portOwnedBy(table, "m1", 80, 40000);
    const owner = m("m1");
    const backup = m("m2");

    // SYN: no neighbour known yet -> EGRESS to the distributor, word = next hop (the server), TTL decremented.
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 0, 1, tcpFrame("client", port, 80, "S", 1000, 0)), owner.dataEndpoint.port);
    await waitFor("EGRESS at the distributor", () => distributor.received.length >= 1);
    const egress = distributor.received[0]!.bytes;
    expect(linkTypeOf(egress, egress.length)).toBe(LinkMsg.EGRESS);
    expect(linkIfIndex(egress)).toBe(1);
    expect(linkWord(egress)).toBe(ipv4ToU32(SERVER));
    expect(innerView(egress).ttl).toBe(63);
    expect(owner.counters.viaDistributor).toBe(1);

    // NEIGH teaches both neighbours to both members.
    const entries: NeighbourEntry[] = [
      { ifIndex: 0, ip: Uint8Array.of(198, 19, 1, 10), mac: Uint8Array.from(CLIENT_MAC.split(":").map((x) => parseInt(x, 16))), vtepIp: ipv4ToU32("127.0.0.1"), vtepPort: site.port },
      { ifIndex: 1, ip: Uint8Array.of(198, 19, 2, 10), mac: Uint8Array.from(SERVER_MAC.split(":").map((x) => parseInt(x, 16))), vtepIp: ipv4ToU32("127.0.0.1"), vtepPort: site.port },
    ];
    const neigh = encodeNeighbours(entries, neighbourKeyOf(CLUSTER_KEY));
    distributor.send(neigh, owner.dataEndpoint.port);
    distributor.send(neigh, backup.dataEndpoint.port);
    await waitFor("neighbours learned", () => owner.neighbourCount === 2 && backup.neighbourCount === 2);

    // SYN/ACK from the server: straight to the site as VXLAN on the inside VNI, MACs rewritten.
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 1, 1, tcpFrame("server", 80, port, "SA", 5000, 1001)), owner.dataEndpoint.port);
    await waitFor("SYN/ACK at the site", () => site.received.length >= 1);
    const synAck = site.received[0]!.bytes;
    expect(site.received[0]!.from.port).toBe(owner.dataEndpoint.port);
    expect(vxlanVniOf(synAck, synAck.length)).toBe(101);
    expect(macAt(synAck, 8)).toBe(CLIENT_MAC);
    expect(macAt(synAck, 14)).toBe(INSIDE_MAC);
    expect(innerView(synAck).tcpFlags).toBe(TcpFlag.SYN | TcpFlag.ACK);

    // ACK from the client: to the site on the outside VNI; the handshake is complete.
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 0, 1, tcpFrame("client", port, 80, "A", 1001, 5001)), owner.dataEndpoint.port);
    await waitFor("ACK at the site", () => site.received.length >= 2);
    const ack = site.received[1]!.bytes;
    expect(vxlanVniOf(ack, ack.length)).toBe(102);
    expect(macAt(ack, 8)).toBe(SERVER_MAC);
    expect(macAt(ack, 14)).toBe(OUTSIDE_MAC);
    expect(owner.counters.direct).toBe(2);
    expect(owner.counters.forwarded).toBe(3);

    await waitFor("records applied on the backup", () => backup.node!.counters.syncRecordsApplied > 0);
    expect(backup.counters.syncIn).toBeGreaterThan(0);
    expect(owner.counters.syncOut).toBeGreaterThan(0);
    let held = 0;
    backup.node!.forEachConnection((_b, s, role) => {
      if (role === "backup" && s.srcPort === port) held++;
    });
    expect(held).toBe(1);
    // The heartbeat reports the rule that accepted the connection.
    await waitFor("rule hits in a heartbeat", () => (fake.heartbeats.get("m1")?.ruleHits.web ?? 0) >= 1);
  });

  it("corrects a frame sent to the non-owner: CORRECTION to the owner, which forwards it", async () => {
    const port = portOwnedBy(table, "m1", 80, 45000);
    const owner = m("m1");
    const other = m("m2");
    const sitesBefore = site.received.length;
    const ownerFrames = owner.node!.counters.frames;
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 0, 1, tcpFrame("client", port, 80, "S", 7000, 0)), other.dataEndpoint.port);
    await waitFor("the corrected SYN at the site", () => site.received.length > sitesBefore);
    expect(other.counters.corrected).toBe(1);
    expect(other.node!.counters.corrections).toBe(1);
    expect(owner.node!.counters.frames).toBe(ownerFrames + 1);
    const out = site.received[sitesBefore]!.bytes;
    expect(site.received[sitesBefore]!.from.port).toBe(owner.dataEndpoint.port);
    expect(vxlanVniOf(out, out.length)).toBe(102);
    expect(innerView(out).srcPort).toBe(port);
  });

  it("accepts a CORRECTION from a peer's data endpoint and drops one that reached the hop limit", async () => {
    const owner = m("m1");
    const port = portOwnedBy(table, "m1", 80, 47000);
    const sitesBefore = site.received.length;
    fakePeerData.send(linkFrame(LinkMsg.CORRECTION, 1, 0, 1, tcpFrame("client", port, 80, "S", 9000, 0)), owner.dataEndpoint.port);
    await waitFor("the corrected frame forwarded", () => site.received.length > sitesBefore);
    const frames = owner.counters.framesIn;
    fakePeerData.send(linkFrame(LinkMsg.CORRECTION, CORRECTION_HOPS_MAX, 0, 1, tcpFrame("client", port + 1, 80, "S", 9000, 0)), owner.dataEndpoint.port);
    await waitFor("the looping correction dropped", () => owner.counters.drops.hops === 1);
    expect(owner.counters.framesIn).toBe(frames);
  });

  it("counts frames from unknown sources and does not process them", async () => {
    const owner = m("m1");
    const frames = owner.node!.counters.frames;
    const port = portOwnedBy(table, "m1", 80, 50000);
    stranger.send(linkFrame(LinkMsg.INGRESS, 0, 0, 1, tcpFrame("client", port, 80, "S", 1, 0)), owner.dataEndpoint.port);
    stranger.send(linkFrame(LinkMsg.CORRECTION, 0, 0, 1, tcpFrame("client", port, 80, "S", 1, 0)), owner.dataEndpoint.port);
    stranger.send(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9), owner.syncEndpoint.port);
    stranger.send(Uint8Array.of(0x15), owner.dataEndpoint.port);
    await waitFor("bad sources counted", () => owner.counters.badSource === 3 && owner.counters.drops.malformed === 1);
    expect(owner.counters.drops.badSource).toBe(2);
    expect(owner.counters.drops.syncUnknownSource).toBe(1);
    expect(owner.node!.counters.frames).toBe(frames);
  });

  it("rejects a NEIGH with a bad tag (and one not from the distributor)", async () => {
    const owner = m("m1");
    const forged: NeighbourEntry[] = [{ ifIndex: 1, ip: Uint8Array.of(198, 19, 2, 99), mac: new Uint8Array(6).fill(0xee), vtepIp: ipv4ToU32("127.0.0.1"), vtepPort: stranger.port }];
    distributor.send(encodeNeighbours(forged, neighbourKeyOf(new Uint8Array(32).fill(0x99))), owner.dataEndpoint.port);
    const good = encodeNeighbours(forged, neighbourKeyOf(CLUSTER_KEY));
    stranger.send(good, owner.dataEndpoint.port);
    await waitFor("forged NEIGH counted", () => owner.counters.drops.neighTag === 1 && owner.counters.drops.badSource === 3);
    expect(owner.neighbourCount).toBe(2);
  });

  it("sends the engine's RST for a rejected connection back to the ingress site", async () => {
    const owner = m("m1");
    const port = portOwnedBy(table, "m1", 22, 52000);
    const sitesBefore = site.received.length;
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 0, 1, tcpFrame("client", port, 22, "S", 3000, 0)), owner.dataEndpoint.port);
    await waitFor("RST at the site", () => site.received.length > sitesBefore);
    const rst = site.received[sitesBefore]!.bytes;
    expect(vxlanVniOf(rst, rst.length)).toBe(101);
    const view = innerView(rst);
    expect(view.tcpFlags & TcpFlag.RST).toBe(TcpFlag.RST);
    expect(view.dstPort).toBe(port);
    expect(macAt(rst, 8)).toBe(CLIENT_MAC);
    expect(owner.counters.replies).toBe(1);
  });

  it("fetches the distribution when a frame announces a newer epoch", async () => {
    const owner = m("m1");
    const fetches = owner.counters.distributionFetches;
    const port = portOwnedBy(table, "m1", 80, 54000);
    distributor.send(linkFrame(LinkMsg.INGRESS, 0, 0, 7, tcpFrame("client", port, 80, "S", 1, 0)), owner.dataEndpoint.port);
    await waitFor("a distribution fetch", () => owner.counters.distributionFetches > fetches);
  });

  it("answers a verification round once, with no mismatch", async () => {
    fake.verify = { id: 41, epoch: 1 };
    await waitFor("both verify reports", () => fake.verifyReports.filter((r) => r.id === 41).length === 2);
    for (const r of fake.verifyReports) {
      expect(r.mismatched).toEqual([]);
      expect(r.bucketsChecked).toBeGreaterThan(0);
    }
    expect(fake.verifyReports.reduce((n, r) => n + r.bucketsChecked, 0)).toBe(BUCKETS);
    // The round stays in the answers for a while: it is still reported once per member.
    const beats = m("m1").counters.heartbeats;
    await waitFor("more heartbeats", () => m("m1").counters.heartbeats >= beats + 3);
    expect(fake.verifyReports.filter((r) => r.id === 41).length).toBe(2);
    fake.verify = null;
  });

  it("answers a connection lookup once with what it holds: the owner's copy and the backup's", async () => {
    fake.connectionQuery = { id: 7, protocol: 6, dst: SERVER, dstPort: 80 };
    await waitFor("both lookup answers", () => fake.connectionReports.filter((r) => r.id === 7).length === 2);
    const byMember = new Map(fake.connectionReports.filter((r) => r.id === 7).map((r) => [r.member, r.connections]));
    const owned = byMember.get("m1")!.filter((c) => c.role === "owner");
    expect(owned.length).toBeGreaterThanOrEqual(1);
    expect(owned[0]).toMatchObject({ protocol: 6, src: CLIENT, dst: SERVER, dstPort: 80, state: "ESTABLISHED" });
    expect(owned[0]!.expiresInMs).toBeGreaterThan(0);
    const copies = byMember.get("m2")!.filter((c) => c.role === "backup" && c.srcPort === owned[0]!.srcPort);
    expect(copies).toHaveLength(1);
    // A lookup for something nobody holds is answered empty.
    fake.connectionQuery = { id: 8, dst: SERVER, dstPort: 9 };
    await waitFor("empty answers", () => fake.connectionReports.filter((r) => r.id === 8).length === 2);
    for (const r of fake.connectionReports.filter((x) => x.id === 8)) expect(r.connections).toEqual([]);
    const answered = fake.connectionReports.length;
    const beats = m("m1").counters.heartbeats;
    await waitFor("more heartbeats", () => m("m1").counters.heartbeats >= beats + 3);
    expect(fake.connectionReports.length).toBe(answered); // once per id
    fake.connectionQuery = null;
  });

  it("swaps the policy when the revision changes", async () => {
    fake.policy = POLICY_2;
    fake.policyRevision = 2;
    await waitFor("policy 2 on both", () => m("m1").policyRevision === 2 && m("m2").policyRevision === 2);
    expect(m("m1").node!.engine.ruleBase!.nameOf(0)).toBe("web-only");
    await waitFor("revision 2 in a heartbeat", () => fake.heartbeats.get("m2")?.policyRevision === 2);
  });

  // Last: it installs epoch 2.
  it("reports its HyperSync versions and sends the version the distribution names, if it reads it", async () => {
    expect(fake.heartbeats.get("m1")!.hypersync).toEqual({ min: 2, max: 2 });
    expect(fake.heartbeats.get("m2")!.hypersync).toEqual({ min: 2, max: 3 });
    // Both sent 2 so far (the handshake test's records reached m2 at version 2).
    expect(m("m1").node!.protocolVersion).toBe(2);
    expect(m("m2").node!.protocolVersion).toBe(2);
    expect(m("m1").node!.counters.badVersion + m("m2").node!.counters.badVersion).toBe(0);
    // A document naming 3 (an orchestrator that would not negotiate): m2 moves to 3; m1 does not
    // read 3, so it keeps 2 and still installs the epoch.
    fake.hypersyncVersion = 3;
    fake.table = createEpochTable(
      [
        { id: "m1", weight: 1 },
        { id: "m2", weight: 1 },
      ],
      SEED,
      { bucketCount: BUCKETS, epoch: 2 },
    );
    await waitFor("epoch 2 on both", () => m("m1").node?.epoch === 2 && m("m2").node?.epoch === 2);
    expect(m("m2").node!.protocolVersion).toBe(3);
    expect(m("m1").node!.protocolVersion).toBe(2);
    expect(m("m1").counters.distributionsRefused).toBe(0);
  });
});

describe("tableCapacityOf", () => {
  it("keeps the orchestrator's figure unless the machine has less memory than the appliance is registered with", () => {
    const GiB = 2 ** 30;
    expect(tableCapacityOf(1_048_576, 64 * GiB)).toBe(1_048_576);
    expect(tableCapacityOf(4096, 64 * GiB)).toBe(4096);
    // 1 GiB really: 2% of it at 64 B is 335,544 connections, whatever the inventory says.
    expect(tableCapacityOf(1_048_576, GiB)).toBe(335_544);
    expect(tableCapacityOf(1_048_576, 64 * 2 ** 20)).toBe(65_536); // never below the minimum
  });
});

describe("ipVersionOfFrame", () => {
  it("reads the EtherType past VLAN tags", () => {
    const v4 = packet().ethernet().vlan(5).ipv4({ src: "10.0.0.1", dst: "10.0.0.2" }).udp({ sport: 1, dport: 2 }).build();
    const v6 = packet().ethernet().ipv6({ src: "2001:db8::1", dst: "2001:db8::2" }).udp({ sport: 1, dport: 2 }).build();
    const arp = packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:09", senderIp: "10.0.0.1", targetIp: "10.0.0.2" }).build();
    expect(ipVersionOfFrame(v4, 0, v4.length)).toBe(4);
    expect(ipVersionOfFrame(v6, 0, v6.length)).toBe(6);
    expect(ipVersionOfFrame(arp, 0, arp.length)).toBe(0);
    expect(ipVersionOfFrame(v4, 0, 10)).toBe(0);
  });
});
