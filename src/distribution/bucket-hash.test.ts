// Packet -> bucket: symmetry of both directions, and fragments reaching their first
// fragment's bucket through the FragmentTracker. PacketViews are built by setting fields
// directly (no parser needed). Seeds are fixed and appear in the test names.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { flowHashOfView } from "../packet/flow-hash.js";
import { IpProto, PacketView } from "../packet/view.js";
import { addressHashOfView, bucketOf, bucketOfView, FragmentTracker } from "./bucket-hash.js";

const SEED = 0x7a4d3e;
const B = 65536;

interface Flow4 {
  protocol: number;
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
}

function view4(flow: Flow4, reversed = false): PacketView {
  const v = new PacketView();
  v.ipVersion = 4;
  v.protocol = flow.protocol;
  v.src4 = reversed ? flow.dst : flow.src;
  v.dst4 = reversed ? flow.src : flow.dst;
  v.srcPort = reversed ? flow.dstPort : flow.srcPort;
  v.dstPort = reversed ? flow.srcPort : flow.dstPort;
  return v;
}

/** IPv6 view: addresses written into a 40-byte buffer at the IPv6 header offsets. */
function view6(src: Uint8Array, dst: Uint8Array, protocol: number, srcPort: number, dstPort: number): PacketView {
  const v = new PacketView();
  const buf = new Uint8Array(40);
  buf.set(src, 8);
  buf.set(dst, 24);
  v.buf = buf;
  v.ipVersion = 6;
  v.protocol = protocol;
  v.srcAddrOffset = 8;
  v.dstAddrOffset = 24;
  v.srcPort = srcPort;
  v.dstPort = dstPort;
  return v;
}

/** Turns a view into a fragment: first (offset 0, more) or later (offset > 0, no ports). */
function asFragment(v: PacketView, id: number, offset: number, more: boolean): PacketView {
  v.isFragment = true;
  v.fragmentId = id;
  v.fragmentOffset = offset;
  v.moreFragments = more;
  if (offset > 0) {
    v.srcPort = 0;
    v.dstPort = 0;
    v.l4Offset = -1;
  }
  return v;
}

const flow4Arb: fc.Arbitrary<Flow4> = fc.record({
  protocol: fc.constantFrom(IpProto.TCP, IpProto.UDP, IpProto.ICMP),
  src: fc.nat({ max: 0xffffffff }),
  dst: fc.nat({ max: 0xffffffff }),
  srcPort: fc.nat({ max: 0xffff }),
  dstPort: fc.nat({ max: 0xffff }),
});
const addr6Arb = fc.uint8Array({ minLength: 16, maxLength: 16 });

describe("bucketOf", () => {
  it("is hash & (B - 1)", () => {
    expect(bucketOf(0xdeadbeef, 65536)).toBe(0xbeef);
    expect(bucketOf(0xffffffff, 1024)).toBe(1023);
    expect(bucketOf(5, 1)).toBe(0);
  });
});

describe("symmetry", () => {
  it("both directions of an IPv4 flow land in one bucket (seed 101)", () => {
    fc.assert(
      fc.property(flow4Arb, fc.integer(), (flow, seed) => {
        expect(bucketOfView(seed, view4(flow, true), B)).toBe(bucketOfView(seed, view4(flow), B));
      }),
      { seed: 101, numRuns: 1000 },
    );
  });

  it("both directions of an IPv6 flow land in one bucket (seed 102)", () => {
    fc.assert(
      fc.property(addr6Arb, addr6Arb, fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff }), (src, dst, sp, dp) => {
        const forward = view6(src, dst, IpProto.TCP, sp, dp);
        const reverse = view6(dst, src, IpProto.TCP, dp, sp);
        expect(bucketOfView(SEED, reverse, B)).toBe(bucketOfView(SEED, forward, B));
      }),
      { seed: 102, numRuns: 500 },
    );
  });

  it("ports spread one host pair over many buckets (L4 distribution)", () => {
    const buckets = new Set<number>();
    for (let port = 1024; port < 2048; port++) {
      buckets.add(bucketOfView(SEED, view4({ protocol: IpProto.TCP, src: 0xc6120001, dst: 0xc6130001, srcPort: port, dstPort: 443 }), B));
    }
    expect(buckets.size).toBeGreaterThan(1000);
  });

  it("the cluster seed changes the bucket", () => {
    const v = view4({ protocol: IpProto.UDP, src: 1, dst: 2, srcPort: 3, dstPort: 4 });
    expect(bucketOfView(1, v, B)).not.toBe(bucketOfView(2, v, B));
  });
});

describe("FragmentTracker", () => {
  it("sends every fragment of an IPv4 datagram to its first fragment's bucket, either direction (seed 111)", () => {
    fc.assert(
      fc.property(flow4Arb, fc.nat({ max: 0xffff }), fc.boolean(), (flow, id, reversed) => {
        const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
        const whole = bucketOfView(SEED, view4(flow), B);
        const first = tracker.bucketOfPacket(asFragment(view4(flow, reversed), id, 0, true), 1000);
        const middle = tracker.bucketOfPacket(asFragment(view4(flow, reversed), id, 1480, true), 1001);
        const last = tracker.bucketOfPacket(asFragment(view4(flow, reversed), id, 2960, false), 1002);
        expect([first, middle, last]).toEqual([whole, whole, whole]);
        expect(tracker.stats.fragmentHits).toBe(2);
        expect(tracker.stats.fragmentMisses).toBe(0);
      }),
      { seed: 111, numRuns: 300 },
    );
  });

  it("sends every fragment of an IPv6 datagram to its first fragment's bucket (seed 112)", () => {
    fc.assert(
      fc.property(addr6Arb, addr6Arb, fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff }), fc.nat(), (src, dst, sp, dp, id) => {
        const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
        const whole = bucketOfView(SEED, view6(src, dst, IpProto.UDP, sp, dp), B);
        const first = tracker.bucketOfPacket(asFragment(view6(src, dst, IpProto.UDP, sp, dp), id, 0, true), 0);
        // A later fragment may report another next header (e.g. destination options first):
        // the IPv6 key leaves the protocol out, so it still finds its entry.
        const later = tracker.bucketOfPacket(asFragment(view6(src, dst, IpProto.IPV6_OPTS, 0, 0), id, 1232, false), 1);
        expect([first, later]).toEqual([whole, whole]);
        expect(tracker.stats.fragmentMisses).toBe(0);
      }),
      { seed: 112, numRuns: 200 },
    );
  });

  it("keeps datagrams apart by id, addresses and protocol", () => {
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
    const flowA = { protocol: IpProto.UDP, src: 10, dst: 20, srcPort: 1000, dstPort: 53 };
    const flowB = { protocol: IpProto.UDP, src: 10, dst: 20, srcPort: 2000, dstPort: 53 };
    const a = tracker.flowHashOfPacket(asFragment(view4(flowA), 7, 0, true), 0);
    const b = tracker.flowHashOfPacket(asFragment(view4(flowB), 8, 0, true), 0);
    expect(a).not.toBe(b);
    expect(tracker.flowHashOfPacket(asFragment(view4(flowA), 7, 8, false), 1)).toBe(a);
    expect(tracker.flowHashOfPacket(asFragment(view4(flowB), 8, 8, false), 1)).toBe(b);
    // Same id, other protocol (IPv4 keys include it): not the same datagram.
    const otherProtocol = tracker.flowHashOfPacket(asFragment(view4({ ...flowA, protocol: IpProto.TCP }), 7, 8, false), 1);
    expect(otherProtocol).toBe(addressHashOfView(SEED, view4({ ...flowA, protocol: IpProto.TCP, srcPort: 0, dstPort: 0 })));
    expect(tracker.stats.fragmentMisses).toBe(1);
  });

  it("falls back to the addresses-only bucket for a later fragment without an entry, and counts it", () => {
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
    const flow = { protocol: IpProto.TCP, src: 0x01020304, dst: 0x05060708, srcPort: 40000, dstPort: 80 };
    const later = asFragment(view4(flow), 99, 1480, false);
    const expected = bucketOf(addressHashOfView(SEED, later), B);
    expect(tracker.bucketOfPacket(later, 0)).toBe(expected);
    expect(tracker.stats.fragmentMisses).toBe(1);
    // The addresses-only hash is the flow hash with both ports 0, so protocols without ports
    // (ESP, GRE) lose nothing on a miss.
    const esp = view4({ protocol: IpProto.ESP, src: 1, dst: 2, srcPort: 0, dstPort: 0 });
    expect(addressHashOfView(SEED, esp)).toBe(flowHashOfView(SEED, esp));
  });

  it("expires entries after 30 s", () => {
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
    const flow = { protocol: IpProto.UDP, src: 11, dst: 22, srcPort: 5000, dstPort: 6000 };
    const hash = tracker.flowHashOfPacket(asFragment(view4(flow), 5, 0, true), 10_000);
    expect(tracker.flowHashOfPacket(asFragment(view4(flow), 5, 8, true), 39_999)).toBe(hash);
    expect(tracker.stats.fragmentMisses).toBe(0);
    tracker.flowHashOfPacket(asFragment(view4(flow), 5, 16, false), 40_000);
    expect(tracker.stats.fragmentMisses).toBe(1);
    expect(tracker.liveCount(40_000)).toBe(0);
  });

  it("is bounded: when full it replaces the oldest entry and counts live replacements", () => {
    const capacity = 64;
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: B, capacity });
    const flow = (i: number): Flow4 => ({ protocol: IpProto.UDP, src: 1000 + i, dst: 2000, srcPort: i, dstPort: 53 });
    const hashes: number[] = [];
    for (let i = 0; i < capacity + 10; i++) hashes.push(tracker.flowHashOfPacket(asFragment(view4(flow(i)), i, 0, true), i));
    expect(tracker.stats.replaced).toBe(10);
    expect(tracker.liveCount(100)).toBe(capacity);
    // The ten oldest are gone, the rest are found.
    for (let i = 0; i < capacity + 10; i++) {
      const misses = tracker.stats.fragmentMisses;
      const h = tracker.flowHashOfPacket(asFragment(view4(flow(i)), i, 8, false), 100);
      if (i < 10) expect(tracker.stats.fragmentMisses).toBe(misses + 1);
      else expect(h).toBe(hashes[i]);
    }
  });

  it("survives heavy churn with chains intact (seed 113)", () => {
    fc.assert(
      // Few distinct keys (4 x 8) against 8 entries: repeats refresh entries in place, chains
      // share index slots, and eviction hits chain heads, middles and tails.
      fc.property(fc.array(fc.record({ src: fc.nat({ max: 3 }), id: fc.nat({ max: 7 }), later: fc.boolean() }), { maxLength: 400 }), (ops) => {
        const tracker = new FragmentTracker({ seed: SEED, bucketCount: 1024, capacity: 8 });
        // Model: the last `capacity` distinct first-fragment insertions, in order.
        const model: string[] = [];
        const modelHash = new Map<string, number>();
        let now = 0;
        for (const op of ops) {
          now++;
          const key = `${op.src}/${op.id}`;
          const f = { protocol: IpProto.UDP, src: op.src, dst: 99, srcPort: op.src * 7, dstPort: op.id };
          if (op.later) {
            const h = tracker.flowHashOfPacket(asFragment(view4(f), op.id, 8, false), now);
            const expected = modelHash.get(key) ?? addressHashOfView(SEED, asFragment(view4(f), op.id, 8, false));
            expect(h).toBe(expected);
          } else {
            const h = tracker.flowHashOfPacket(asFragment(view4(f), op.id, 0, true), now);
            if (!model.includes(key)) {
              model.push(key);
              if (model.length > 8) modelHash.delete(model.shift()!);
            }
            modelHash.set(key, h);
          }
        }
      }),
      { seed: 113, numRuns: 200 },
    );
  });

  it("treats an atomic fragment (offset 0, no more fragments) as a whole datagram", () => {
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: B });
    const v = asFragment(view4({ protocol: IpProto.TCP, src: 1, dst: 2, srcPort: 3, dstPort: 4 }), 1, 0, false);
    expect(tracker.flowHashOfPacket(v, 0)).toBe(flowHashOfView(SEED, v));
    expect(tracker.stats.firstFragments).toBe(0);
    expect(tracker.liveCount(0)).toBe(0);
  });

  it("follows a bucket-count change (entries keep the full flow hash)", () => {
    const tracker = new FragmentTracker({ seed: SEED, bucketCount: 1024 });
    const flow = { protocol: IpProto.UDP, src: 3, dst: 4, srcPort: 5, dstPort: 6 };
    tracker.bucketOfPacket(asFragment(view4(flow), 1, 0, true), 0);
    tracker.setBucketCount(B);
    expect(tracker.bucketOfPacket(asFragment(view4(flow), 1, 8, false), 1)).toBe(bucketOfView(SEED, view4(flow), B));
  });
});
