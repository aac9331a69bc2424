import { describe, expect, it } from "vitest";
import { Prng } from "../stdx/prng.js";
import { EventQueue } from "./clock.js";
import { LINK_CLASSES, Network, type Envelope, type FaultProfile } from "./network.js";

interface Msg extends Envelope {
  n: number;
}

const LOSSY: FaultProfile = { delayMs: 0.5, jitterMs: 1, lossRate: 0.1, duplicateRate: 0.05, reorderRate: 0.1, reorderDelayMs: 5 };

function world(seed: number, profile: FaultProfile): { q: EventQueue; net: Network<Msg>; got: Map<string, number[]> } {
  const q = new EventQueue();
  const net = new Network<Msg>(q, new Prng(seed), profile, (m) => ({ ...m }));
  const got = new Map<string, number[]>();
  for (const name of ["a", "b", "c"]) {
    got.set(name, []);
    net.attach(name, (m) => got.get(name)!.push(m.n));
  }
  return { q, net, got };
}

function blast(net: Network<Msg>, q: EventQueue, linkClass: Msg["linkClass"], count: number): void {
  for (let i = 0; i < count; i++) net.send({ from: "a", to: i % 2 === 0 ? "b" : "c", linkClass, bytes: new Uint8Array(10), n: i });
  q.runUntil(Infinity, 1_000_000);
}

describe("Network", () => {
  it("applies loss, duplication and reordering, and counts each (deterministic per seed)", () => {
    const run = (seed: number): string => {
      const { q, net, got } = world(seed, LOSSY);
      blast(net, q, "sync", 2000);
      const c = net.counters.sync;
      expect(net.balanced("sync")).toBe(true);
      expect(c.inFlight).toBe(0);
      expect(c.lostRandom).toBeGreaterThan(100);
      expect(c.duplicated).toBeGreaterThan(40);
      expect(c.reordered).toBeGreaterThan(100);
      expect(got.get("b")!.length + got.get("c")!.length).toBe(c.delivered);
      // Reordering happened: some message arrived after a later one.
      const b = got.get("b")!;
      expect(b.some((n, i) => i > 0 && n < b[i - 1]!)).toBe(true);
      return JSON.stringify({ c, trace: net.traceHash, b: b.slice(0, 50) });
    };
    expect(run(42)).toBe(run(42));
    expect(run(42)).not.toBe(run(43));
  });

  it("keeps control messages reliable and in order per pair", () => {
    const { q, net, got } = world(1, LOSSY);
    blast(net, q, "control", 500);
    const c = net.counters.control;
    expect(c.lostRandom + c.duplicated).toBe(0);
    const b = got.get("b")!;
    expect(b).toEqual([...b].sort((x, y) => x - y));
    expect(b.length).toBe(250);
  });

  it("partitions cut only the given classes between the two sides, judged at arrival", () => {
    const { q, net, got } = world(3, { ...LOSSY, lossRate: 0, duplicateRate: 0 });
    net.send({ from: "a", to: "b", linkClass: "sync", bytes: null, n: 1 });
    const id = net.partition(["a"], ["b"], ["sync"]); // cuts the message already on the wire
    net.send({ from: "a", to: "b", linkClass: "member", bytes: null, n: 2 });
    net.send({ from: "a", to: "c", linkClass: "sync", bytes: null, n: 3 });
    net.send({ from: "b", to: "a", linkClass: "sync", bytes: null, n: 4 });
    q.runUntil(Infinity, 100);
    expect(net.counters.sync.lostPartition).toBe(2);
    expect(got.get("b")).toEqual([2]);
    expect(got.get("c")).toEqual([3]);
    net.heal(id);
    net.send({ from: "a", to: "b", linkClass: "sync", bytes: null, n: 5 });
    q.runUntil(Infinity, 100);
    expect(got.get("b")).toEqual([2, 5]);
    for (const k of LINK_CLASSES) expect(net.balanced(k)).toBe(true);
  });

  it("loses what arrives at a down endpoint, counted", () => {
    const { q, net, got } = world(4, { ...LOSSY, lossRate: 0, duplicateRate: 0 });
    net.setDown("b", true);
    net.send({ from: "a", to: "b", linkClass: "member", bytes: null, n: 1 });
    q.runUntil(Infinity, 100);
    expect(got.get("b")).toEqual([]);
    expect(net.counters.member.lostDown).toBe(1);
    expect(net.balanced("member")).toBe(true);
  });
});
