// The bench's no-op relay (bench/relay.ts): real sockets on 127.0.0.1 for the ARP and IPv4
// round trip, and property tests of its synchronous core for the in-place rewrite (VNI, MACs,
// TTL, RFC 1624 checksum) and for never throwing on arbitrary bytes.
// Lives in test/ because vitest collects src/ and test/ only.

import dgram from "node:dgram";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { RelayCore, startRelay, type RelaySegment } from "../bench/relay.js";
import { packet, parseMac } from "../src/packet/builder.js";
import { verifyChecksums, verifyIpv4HeaderChecksum } from "../src/packet/checksum.js";
import { parseFrame } from "../src/packet/parse.js";
import { EtherType, LinkType, PacketView } from "../src/packet/view.js";
import { VXLAN_HEADER_BYTES, vxlanVniOf, writeVxlanHeader, type Endpoint } from "../src/runtime/member-link.js";
import { waitUntil } from "./fixtures/child-lines.js";

const DEADLINE_MS = 5_000;
const SEED = 42;
const GW_A = { ip: "198.19.1.1", mac: "02:aa:00:00:01:01" };
const GW_B = { ip: "198.19.2.1", mac: "02:aa:00:00:02:01" };
const HOST_A = { ip: "198.19.1.10", mac: "02:00:00:00:0a:0a" };
const HOST_B = { ip: "198.19.2.10", mac: "02:00:00:00:0b:0b" };

function vxlan(vni: number, frame: Uint8Array): Buffer {
  const datagram = Buffer.alloc(VXLAN_HEADER_BYTES + frame.length);
  writeVxlanHeader(datagram, 0, vni);
  datagram.set(frame, VXLAN_HEADER_BYTES);
  return datagram;
}

function tcpFrame(from: { ip: string; mac: string }, to: string, dstMac: string, ttl: number, flags: string): Uint8Array {
  return packet()
    .ethernet({ src: from.mac, dst: dstMac })
    .ipv4({ src: from.ip, dst: to, ttl, id: 0x1234, df: true })
    .tcp({ sport: 40000, dport: 80, flags, seq: 1000, options: { mss: 1460 } })
    .payload("hello")
    .build();
}

/** A site's VTEP: a socket that keeps what it receives. */
class FakeSite {
  readonly socket = dgram.createSocket("udp4");
  readonly received: Buffer[] = [];

  async start(): Promise<Endpoint> {
    this.socket.on("message", (msg) => this.received.push(msg));
    await new Promise<void>((resolve) => this.socket.bind(0, "127.0.0.1", resolve));
    return { address: "127.0.0.1", port: this.socket.address().port };
  }

  send(datagram: Uint8Array, to: Endpoint): void {
    this.socket.send(datagram, to.port, to.address);
  }

  /** The next datagram received after `count` earlier ones. */
  async nth(count: number, what: string): Promise<Buffer> {
    return waitUntil(() => this.received[count], DEADLINE_MS, what);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function mac(buf: Uint8Array, offset: number): string {
  return [...buf.subarray(offset, offset + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

describe("no-op relay", () => {
  it("answers ARP for its gateway, ARPs for the far host, then forwards with VNI, MACs and TTL rewritten", async () => {
    const a = new FakeSite();
    const b = new FakeSite();
    const endpointA = await a.start();
    const endpointB = await b.start();
    cleanups.push(() => a.close(), () => b.close());
    const relay = await startRelay({
      listen: { address: "127.0.0.1", port: 0 },
      segments: [
        { vni: 101, siteEndpoint: endpointA, gatewayIp: GW_A.ip, gatewayMac: GW_A.mac },
        { vni: 102, siteEndpoint: endpointB, gatewayIp: GW_B.ip, gatewayMac: GW_B.mac },
      ],
    });
    cleanups.push(() => relay.close());
    const view = new PacketView();

    // 1. Site A asks for its gateway.
    const arpRequest = packet()
      .ethernet({ src: HOST_A.mac, dst: "ff:ff:ff:ff:ff:ff" })
      .arp({ op: 1, senderMac: HOST_A.mac, senderIp: HOST_A.ip, targetIp: GW_A.ip })
      .build();
    a.send(vxlan(101, arpRequest), relay.address);
    const reply = await a.nth(0, "the ARP reply");
    expect(vxlanVniOf(reply, reply.length)).toBe(101);
    const replyFrame = reply.subarray(VXLAN_HEADER_BYTES);
    expect(parseFrame(view, replyFrame, 0, replyFrame.length, LinkType.ETHERNET)).toBe(true);
    expect(view.etherType).toBe(EtherType.ARP);
    expect(view.arpOp).toBe(2);
    expect(mac(replyFrame, 0)).toBe(HOST_A.mac);
    expect(mac(replyFrame, 6)).toBe(GW_A.mac);
    expect(mac(replyFrame, view.arpSenderMacOffset)).toBe(GW_A.mac);
    expect(view.arpSenderIp).toBe(0xc6130101);
    expect(mac(replyFrame, view.arpTargetMacOffset)).toBe(HOST_A.mac);
    expect(view.arpTargetIp).toBe(0xc613010a);

    // 2. A TCP frame to site B before B's host is known: dropped, and the relay asks B.
    const syn = tcpFrame(HOST_A, HOST_B.ip, GW_A.mac, 64, "S");
    a.send(vxlan(101, syn), relay.address);
    const ask = await b.nth(0, "the relay's ARP request to site B");
    expect(vxlanVniOf(ask, ask.length)).toBe(102);
    const askFrame = ask.subarray(VXLAN_HEADER_BYTES);
    expect(parseFrame(view, askFrame, 0, askFrame.length, LinkType.ETHERNET)).toBe(true);
    expect(view.arpOp).toBe(1);
    expect(mac(askFrame, 0)).toBe("ff:ff:ff:ff:ff:ff");
    expect(mac(askFrame, 6)).toBe(GW_B.mac);
    expect(view.arpSenderIp).toBe(0xc6130201);
    expect(view.arpTargetIp).toBe(0xc613020a);
    expect(relay.stats().dropped.unresolved).toBe(1);

    // 3. B answers; the relay learns B's host MAC.
    const answer = packet()
      .ethernet({ src: HOST_B.mac, dst: GW_B.mac })
      .arp({ op: 2, senderMac: HOST_B.mac, senderIp: HOST_B.ip, targetMac: GW_B.mac, targetIp: GW_B.ip })
      .build();
    b.send(vxlan(102, answer), relay.address);
    await waitUntil(() => (relay.stats().hostMacsLearned >= 2 ? true : undefined), DEADLINE_MS, "B's host MAC learned");

    // 4. The retransmitted SYN goes through.
    a.send(vxlan(101, syn), relay.address);
    const forwarded = await b.nth(1, "the forwarded SYN");
    expect(vxlanVniOf(forwarded, forwarded.length)).toBe(102);
    const out = forwarded.subarray(VXLAN_HEADER_BYTES);
    expect(out.length).toBe(syn.length);
    expect(parseFrame(view, out, 0, out.length, LinkType.ETHERNET)).toBe(true);
    expect(mac(out, 0)).toBe(HOST_B.mac);
    expect(mac(out, 6)).toBe(GW_B.mac);
    expect(view.ttl).toBe(63);
    expect(verifyIpv4HeaderChecksum(out, view.l3Offset, view.ipHeaderLength)).toBe(true);
    expect(verifyChecksums(view)).toBe(true);
    // Only the MACs, the TTL and the header checksum changed.
    const changed = [...out].flatMap((byte, i) => (byte !== syn[i] ? [i] : [])).filter((i) => i >= 12);
    expect(changed.every((i) => i === 14 + 8 || i === 14 + 10 || i === 14 + 11)).toBe(true);

    // 5. The answer back: A's host MAC was learned from its ARP request.
    b.send(vxlan(102, tcpFrame(HOST_B, HOST_A.ip, GW_B.mac, 64, "SA")), relay.address);
    const back = await a.nth(1, "the forwarded SYN-ACK");
    expect(vxlanVniOf(back, back.length)).toBe(101);
    const backFrame = back.subarray(VXLAN_HEADER_BYTES);
    expect(mac(backFrame, 0)).toBe(HOST_A.mac);
    expect(mac(backFrame, 6)).toBe(GW_A.mac);

    // 6. TTL 1 dies here.
    a.send(vxlan(101, tcpFrame(HOST_A, HOST_B.ip, GW_A.mac, 1, "S")), relay.address);
    await waitUntil(() => (relay.stats().dropped.ttlExpired === 1 ? true : undefined), DEADLINE_MS, "the TTL-1 drop");
    const stats = relay.stats();
    expect(stats.framesForwarded).toBe(2);
    expect(stats.arpRepliesSent).toBe(1);
    expect(stats.arpRequestsSent).toBe(1);
    expect(stats.sendErrors).toBe(0);
  });
});

describe("relay core (property tests)", () => {
  const segments: [RelaySegment, RelaySegment] = [
    { vni: 101, siteEndpoint: { address: "10.0.0.1", port: 4789 }, gatewayIp: GW_A.ip, gatewayMac: GW_A.mac },
    { vni: 102, siteEndpoint: { address: "10.0.0.2", port: 4789 }, gatewayIp: GW_B.ip, gatewayMac: GW_B.mac },
  ];

  function learnedCore(): RelayCore {
    const core = new RelayCore(segments, 100);
    const arp = packet().ethernet({ src: HOST_B.mac, dst: GW_B.mac }).arp({ op: 2, senderMac: HOST_B.mac, senderIp: HOST_B.ip, targetIp: GW_B.ip }).build();
    const d = vxlan(102, arp);
    expect(core.handle(d, d.length, "10.0.0.2", 0)).toBe(-1);
    return core;
  }

  it(`rewrites any IPv4 header with a valid checksum and TTL - 1 (seed ${SEED})`, () => {
    console.log(`fast-check seed ${SEED}`);
    const core = learnedCore();
    const view = new PacketView();
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.nat({ max: 10 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 64 }),
        (ttl, tos, id, optionWords, src, df, payload) => {
          const frame = packet()
            .ethernet({ src: HOST_A.mac, dst: GW_A.mac })
            .ipv4({ src, dst: HOST_B.ip, ttl, tos, id, df, options: new Uint8Array(optionWords * 4).fill(1) })
            .udp({ sport: 1234, dport: 53 })
            .payload(payload)
            .build();
          const d = vxlan(101, frame);
          const before = Buffer.from(d);
          expect(core.handle(d, d.length, "10.0.0.1", 0)).toBe(1);
          expect(vxlanVniOf(d, d.length)).toBe(102);
          const inner = d.subarray(VXLAN_HEADER_BYTES);
          expect(parseFrame(view, inner, 0, inner.length, LinkType.ETHERNET)).toBe(true);
          expect(view.ttl).toBe(ttl - 1);
          expect(verifyIpv4HeaderChecksum(inner, view.l3Offset, view.ipHeaderLength)).toBe(true);
          expect(verifyChecksums(view)).toBe(true);
          expect([...inner.subarray(0, 6)]).toEqual([...parseMac(HOST_B.mac)]);
          expect([...inner.subarray(6, 12)]).toEqual([...parseMac(GW_B.mac)]);
          // Past the TTL/protocol/checksum words everything is the same.
          expect(d.subarray(VXLAN_HEADER_BYTES + 14 + 12).equals(before.subarray(VXLAN_HEADER_BYTES + 14 + 12))).toBe(true);
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it(`never throws on arbitrary bytes from either site (seed ${SEED})`, () => {
    const core = learnedCore();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), fc.constantFrom(101, 102, 7), (bytes, fromA, vni) => {
        const d = Buffer.from(bytes);
        if (d.length >= 8 && (d[0]! & 0x08) !== 0) {
          d[4] = vni >>> 16;
          d[5] = (vni >>> 8) & 0xff;
          d[6] = vni & 0xff;
        }
        const to = core.handle(d, d.length, fromA ? "10.0.0.1" : "10.0.0.2", 0);
        expect(to === -1 || to === 0 || to === 1).toBe(true);
      }),
      { seed: SEED, numRuns: 2000 },
    );
    const s = core.stats();
    const dropped = Object.values(s.dropped).reduce((x, y) => x + y, 0);
    expect(s.datagramsReceived).toBe(2000 + 1);
    expect(dropped + s.framesForwarded + s.arpRepliesSent).toBeLessThanOrEqual(s.datagramsReceived);
  });
});
