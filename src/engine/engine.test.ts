// Engine pipeline: verdicts, drop reasons, replies, routing and the counter invariant.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { packet, type PacketBuilder } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView, TcpFlag } from "../packet/view.js";
import { verifyChecksums } from "../packet/checksum.js";
import { Engine } from "./engine.js";
import { compilePolicy } from "./rule-base.js";
import { RouteTable } from "./routing.js";
import { ConnState, DropReason, Verdict } from "./types.js";

const C = "198.18.0.10";
const S = "198.19.0.10";

function tcp(from: string, to: string, sport: number, dport: number, flags: string, seq: number, ack = 0, data = ""): Uint8Array {
  const b = packet().ethernet().ipv4({ src: from, dst: to, ttl: 64 }).tcp({ sport, dport, flags, seq, ack, window: 65535 });
  if (data.length > 0) b.payload(data);
  return b.build();
}

function run(engine: Engine, frame: Uint8Array, now = 1000, linkType: number = LinkType.ETHERNET): Verdict {
  return engine.processFrame(frame, 0, frame.length, linkType, 0, now);
}

function handshake(engine: Engine, sport = 40000, dport = 443): void {
  expect(run(engine, tcp(C, S, sport, dport, "S", 1000))).toBe(Verdict.FORWARD);
  expect(run(engine, tcp(S, C, dport, sport, "SA", 5000, 1001))).toBe(Verdict.FORWARD);
  expect(run(engine, tcp(C, S, sport, dport, "A", 1001, 5001))).toBe(Verdict.FORWARD);
}

function checkInvariant(engine: Engine): void {
  const c = engine.counters;
  const verdictSum = c.verdicts.reduce((a, b) => a + b, 0);
  const reasonSum = c.dropReasons.reduce((a, b) => a + b, 0);
  expect(verdictSum).toBe(c.packets);
  expect(reasonSum).toBe(c.verdicts[Verdict.DROP]! + c.verdicts[Verdict.REJECT]!);
  expect(c.dropReasons[DropReason.NONE]).toBe(0);
  const parseSum = c.parseFailures.reduce((a, b) => a + b, 0);
  expect(parseSum).toBe(c.dropReasons[DropReason.PARSE_ERROR]);
}

const policy = compilePolicy({
  rules: [
    { name: "web", protocol: "tcp", ports: [443], action: "accept" },
    { name: "dns", protocol: "udp", ports: 53, action: "accept" },
    { name: "ping", protocol: "icmp", icmpTypes: [8], action: "accept" },
    { name: "telnet", protocol: "tcp", ports: 23, action: "reject", log: true },
    { name: "snmp", protocol: "udp", ports: 161, action: "reject" },
    { name: "smb", protocol: "tcp", ports: 445, action: "drop" },
  ],
});

describe("engine: tracking", () => {
  it("forwards a TCP connection through handshake, data and FIN close, counting it", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    handshake(engine);
    expect(run(engine, tcp(C, S, 40000, 443, "PA", 1001, 5001, "GET / HTTP/1.1\r\n\r\n"))).toBe(Verdict.FORWARD);
    expect(run(engine, tcp(C, S, 40000, 443, "FA", 1019, 5001))).toBe(Verdict.FORWARD);
    expect(run(engine, tcp(S, C, 443, 40000, "FA", 5001, 1020))).toBe(Verdict.FORWARD);
    expect(run(engine, tcp(C, S, 40000, 443, "A", 1020, 5002))).toBe(Verdict.FORWARD);
    const c = engine.counters;
    expect([c.connectionsCreated, c.connectionsEstablished, c.connectionsClosed, c.connectionsReset]).toEqual([1, 1, 1, 0]);
    expect(engine.table.state(engine.connection)).toBe(ConnState.TCP_TIME_WAIT);
    checkInvariant(engine);
  });

  it("counts a reset connection and drops a mid-stream ACK without a connection", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    handshake(engine);
    expect(run(engine, tcp(S, C, 443, 40000, "R", 5001))).toBe(Verdict.FORWARD);
    expect(engine.counters.connectionsReset).toBe(1);
    expect(run(engine, tcp(C, S, 40001, 443, "A", 1, 1))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.TCP_NEW_NOT_SYN);
    checkInvariant(engine);
  });

  it("drops a segment far outside the window and counts it", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    handshake(engine);
    expect(run(engine, tcp(C, S, 40000, 443, "PA", (1001 + 0x40000000) >>> 0, 5001, "x"))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.TCP_OUT_OF_WINDOW);
    expect(engine.counters.dropReasons[DropReason.TCP_OUT_OF_WINDOW]).toBe(1);
  });

  it("tracks UDP and ICMP echo replies as established", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    const q = packet().ipv4({ src: C, dst: S }).udp({ sport: 5353, dport: 53 }).payload("q").build();
    const a = packet().ipv4({ src: S, dst: C }).udp({ sport: 53, dport: 5353 }).payload("a").build();
    expect(run(engine, q, 1000, LinkType.RAW)).toBe(Verdict.FORWARD);
    expect(run(engine, a, 1001, LinkType.RAW)).toBe(Verdict.FORWARD);
    expect(engine.table.state(engine.connection)).toBe(ConnState.UDP_ASSURED);
    const ping = packet().ipv4({ src: C, dst: S }).icmp({ type: 8, id: 7, seq: 1 }).build();
    const pong = packet().ipv4({ src: S, dst: C }).icmp({ type: 0, id: 7, seq: 1 }).build();
    expect(run(engine, ping, 1002, LinkType.RAW)).toBe(Verdict.FORWARD);
    expect(run(engine, pong, 1003, LinkType.RAW)).toBe(Verdict.FORWARD);
    expect(engine.table.state(engine.connection)).toBe(ConnState.ICMP_REPLIED);
    expect(engine.counters.connectionsEstablished).toBe(2);
  });

  it("expires idle UDP after 30 s unreplied and forgets it", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    const q = packet().ipv4({ src: C, dst: S }).udp({ sport: 5353, dport: 53 }).build();
    expect(run(engine, q, 1000, LinkType.RAW)).toBe(Verdict.FORWARD);
    engine.tick(1000 + 29_000);
    expect(engine.table.size).toBe(1);
    for (let i = 0; i < 100; i++) engine.tick(1000 + 31_000);
    expect(engine.table.size).toBe(0);
    expect(engine.counters.connectionsExpired).toBe(1);
  });

  it("forwards ICMP errors that quote a tracked connection and drops the others", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    handshake(engine);
    const quoted = tcp(C, S, 40000, 443, "PA", 1001, 5001, "hello").subarray(14);
    const related = packet().ipv4({ src: "198.19.0.1", dst: C }).icmp({ type: 3, code: 4, quote: quoted }).build();
    expect(run(engine, related, 1000, LinkType.RAW)).toBe(Verdict.FORWARD);
    expect(engine.counters.icmpErrorsRelated).toBe(1);
    const stranger = tcp(C, S, 40099, 443, "PA", 1, 1, "x").subarray(14);
    const unrelated = packet().ipv4({ src: "198.19.0.1", dst: C }).icmp({ type: 3, code: 4, quote: stranger }).build();
    expect(run(engine, unrelated, 1000, LinkType.RAW)).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.ICMP_ERROR_NO_CONNECTION);
  });

  it("passes later fragments of an accepted first fragment and drops orphans", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1 });
    const big = packet().ipv4({ src: C, dst: S, id: 77 }).udp({ sport: 5353, dport: 53 }).payload("x".repeat(200)).build();
    const fragments = packet().ipv4({ src: C, dst: S, id: 77 }).udp({ sport: 5353, dport: 53 }).payload("x".repeat(200)).buildFragments(64, 77);
    expect(fragments.length).toBeGreaterThan(2);
    expect(big.length).toBeGreaterThan(200);
    const orphan = packet().ipv4({ src: C, dst: S, id: 78 }).udp({ sport: 5353, dport: 53 }).payload("y".repeat(200)).buildFragments(64, 78);
    expect(run(engine, orphan[1]!, 1000, LinkType.RAW)).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.FRAGMENT_NO_CONNECTION);
    for (const f of fragments) expect(run(engine, f, 1000, LinkType.RAW)).toBe(Verdict.FORWARD);
    checkInvariant(engine);
  });

  it("drops with table-full when every entry is established and the table is full", () => {
    const engine = new Engine({ capacity: 2, hashSeed: 1 });
    handshake(engine, 40000);
    handshake(engine, 40001);
    expect(run(engine, tcp(C, S, 40002, 443, "S", 1))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.TABLE_FULL);
  });

  it("evicts the oldest unestablished connection when the table is full", () => {
    const engine = new Engine({ capacity: 2, hashSeed: 1 });
    handshake(engine, 40000);
    expect(run(engine, tcp(C, S, 40001, 443, "S", 1), 1000)).toBe(Verdict.FORWARD);
    expect(run(engine, tcp(C, S, 40002, 443, "S", 1), 2000)).toBe(Verdict.FORWARD);
    expect(engine.table.stats.evicted).toBe(1);
    expect(engine.table.size).toBe(2);
  });
});

describe("engine: policy", () => {
  it("accepts by rule, rejects TCP with a well-formed RST, rejects UDP with ICMP, drops by rule and by default", () => {
    const engine = new Engine({ capacity: 64, hashSeed: 1, ruleBase: policy });
    handshake(engine);
    expect(engine.rule).toBe(-1); // tracked packets do not consult the policy
    expect(policy.hits[0]).toBe(1);

    expect(run(engine, tcp(C, S, 40010, 23, "S", 777))).toBe(Verdict.REJECT);
    expect(engine.dropReason).toBe(DropReason.POLICY_REJECT);
    expect(engine.counters.logged).toBe(1);
    const rst = new PacketView();
    expect(parseFrame(rst, engine.reply.buf, 0, engine.reply.length, LinkType.ETHERNET)).toBe(true);
    expect(rst.tcpFlags & (TcpFlag.RST | TcpFlag.ACK)).toBe(TcpFlag.RST | TcpFlag.ACK);
    expect([rst.srcPort, rst.dstPort, rst.tcpSeq, rst.tcpAck]).toEqual([23, 40010, 0, 778]);
    expect(rst.src4).toBe(0xc6130000 + 10);
    expect(verifyChecksums(rst)).toBe(true);

    const snmp = packet().ipv4({ src: C, dst: S }).udp({ sport: 999, dport: 161 }).build();
    expect(run(engine, snmp, 1000, LinkType.RAW)).toBe(Verdict.REJECT);
    const icmp = new PacketView();
    expect(parseFrame(icmp, engine.reply.buf, 0, engine.reply.length, LinkType.IPV4)).toBe(true);
    expect([icmp.icmpType, icmp.icmpCode, icmp.icmpIsError]).toEqual([3, 13, true]);
    expect(verifyChecksums(icmp)).toBe(true);

    expect(run(engine, tcp(C, S, 40011, 445, "S", 1))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.POLICY_DROP);
    expect(run(engine, tcp(C, S, 40012, 8080, "S", 1))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.POLICY_DEFAULT);
    expect(engine.table.size).toBe(1);
    checkInvariant(engine);
  });

  it("rejects IPv6 TCP with an RST too", () => {
    const engine = new Engine({ capacity: 8, hashSeed: 1, ruleBase: policy });
    const syn = packet().ipv6({ src: "2001:db8::1", dst: "2001:db8::2" }).tcp({ sport: 1234, dport: 23, flags: "S", seq: 9 }).build();
    expect(run(engine, syn, 1000, LinkType.RAW)).toBe(Verdict.REJECT);
    const rst = new PacketView();
    expect(parseFrame(rst, engine.reply.buf, 0, engine.reply.length, LinkType.IPV6)).toBe(true);
    expect(rst.tcpFlags & TcpFlag.RST).toBe(TcpFlag.RST);
    expect(verifyChecksums(rst)).toBe(true);
  });
});

describe("engine: routing", () => {
  const routes = new RouteTable(
    [
      { name: "inside", index: 0, addresses: ["198.18.0.1/24"] },
      { name: "outside", index: 1, addresses: ["198.19.0.1/24"] },
    ],
    [{ prefix: "198.20.0.0/16", interface: "outside", via: "198.19.0.254" }],
  );

  it("routes by longest prefix and decrements TTL with a valid checksum", () => {
    const engine = new Engine({ capacity: 8, hashSeed: 1, routes });
    const frame = tcp(C, "198.20.1.1", 40000, 443, "S", 1);
    expect(run(engine, frame)).toBe(Verdict.FORWARD);
    expect(engine.egress).toBe(1);
    const view = new PacketView();
    parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET);
    expect(view.ttl).toBe(63);
    expect(verifyChecksums(view)).toBe(true);
    expect(run(engine, tcp(S, C, 443, 40001, "S", 1))).toBe(Verdict.FORWARD);
    expect(engine.egress).toBe(0);
  });

  it("drops with no-route, and answers TTL 1 with ICMP time exceeded", () => {
    const engine = new Engine({ capacity: 8, hashSeed: 1, routes, localAddress4: 0xc6120001 });
    expect(run(engine, tcp(C, "203.0.113.1", 40000, 443, "S", 1))).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.NO_ROUTE);
    const frame = packet().ethernet().ipv4({ src: C, dst: S, ttl: 1 }).udp({ sport: 33434, dport: 33435 }).build();
    expect(run(engine, frame)).toBe(Verdict.DROP);
    expect(engine.dropReason).toBe(DropReason.TTL_EXCEEDED);
    const reply = new PacketView();
    expect(parseFrame(reply, engine.reply.buf, 0, engine.reply.length, LinkType.ETHERNET)).toBe(true);
    expect([reply.icmpType, reply.icmpCode, reply.src4, reply.dst4]).toEqual([11, 0, 0xc6120001, 0xc612000a]);
    expect(verifyChecksums(reply)).toBe(true);
    expect(engine.table.size).toBe(0);
  });
});

describe("engine: every frame ends in one verdict with one reason", () => {
  it("holds for random and mutated frames (seed 2026)", () => {
    const templates: PacketBuilder[] = [
      packet().ethernet().ipv4({ src: C, dst: S }).tcp({ sport: 1, dport: 443, flags: "S" }),
      packet().ethernet().vlan(5).ipv6({ src: "2001:db8::1", dst: "2001:db8::2" }).udp({ sport: 1, dport: 53 }).payload("abc"),
      packet().ethernet().ipv4({ src: C, dst: S }).icmp({ type: 8, id: 1, seq: 1 }),
      packet().ethernet().arp({ op: 1, senderMac: "02:00:00:00:00:01", senderIp: C, targetIp: S }),
    ];
    const frames = templates.map((t) => t.build());
    const engine = new Engine({ capacity: 128, hashSeed: 3, ruleBase: policy });
    fc.assert(
      fc.property(fc.nat(frames.length - 1), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), fc.nat(80), (which, flips, cut) => {
        const frame = Uint8Array.from(frames[which]!);
        for (const [at, value] of flips) frame[at % frame.length] = value;
        const length = Math.max(0, frame.length - cut);
        const verdict = engine.processFrame(frame, 0, length, LinkType.ETHERNET, 0, 1000);
        expect([Verdict.FORWARD, Verdict.DROP, Verdict.REJECT]).toContain(verdict);
        if (verdict !== Verdict.FORWARD) expect(engine.dropReason).not.toBe(DropReason.NONE);
      }),
      { seed: 2026, numRuns: 3000 },
    );
    checkInvariant(engine);
  });
});
