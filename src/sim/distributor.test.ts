import { describe, expect, it } from "vitest";
import { createEpochTable, ownerOf } from "../distribution/epoch.js";
import { packet } from "../packet/builder.js";
import { Prng } from "../stdx/prng.js";
import { EventQueue } from "./clock.js";
import { CLIENT_SITE, CORRECTION_HOPS_MAX, DISTRIBUTOR, SERVER_SITE, SimDistributor } from "./distributor.js";
import { cloneMessage, frameMessage, type SimMessage } from "./messages.js";
import { NO_FAULTS, Network } from "./network.js";

function setup() {
  const q = new EventQueue();
  const net = new Network<SimMessage>(q, new Prng(1), NO_FAULTS, cloneMessage);
  const d = new SimDistributor(q, net, 1234, 64);
  const got = new Map<string, SimMessage[]>();
  for (const name of ["m1", "m2", "m3", CLIENT_SITE, SERVER_SITE]) {
    got.set(name, []);
    net.attach(name, (m) => got.get(name)!.push(m));
  }
  const table = createEpochTable(
    ["m1", "m2", "m3"].map((id) => ({ id, weight: 1 })),
    1234,
    { bucketCount: 64 },
  );
  return { q, net, d, got, table };
}

function frame(port: number, toServer = true): Uint8Array {
  const b = packet().ethernet();
  return (toServer ? b.ipv4({ src: "198.18.0.10", dst: "198.19.0.10" }).udp({ sport: port, dport: 53 }) : b.ipv4({ src: "198.19.0.10", dst: "198.18.0.10" }).udp({ sport: 53, dport: port }))
    .payload(new Uint8Array(8))
    .build();
}

describe("SimDistributor", () => {
  it("sends each frame to the owner of its bucket in the current epoch, both directions to one member", () => {
    const { q, net, d, got, table } = setup();
    d.setEpoch(table);
    for (let port = 1000; port < 1100; port++) {
      net.send(frameMessage(CLIENT_SITE, DISTRIBUTOR, "host", "frame", frame(port), port, true, 0));
      net.send(frameMessage(SERVER_SITE, DISTRIBUTOR, "host", "frame", frame(port, false), port, false, 0));
    }
    q.runUntil(Infinity, 10_000);
    let total = 0;
    for (const m of ["m1", "m2", "m3"]) {
      for (const msg of got.get(m)!) {
        expect(ownerOf(table, d.bucketOfFrame(msg.bytes!))).toBe(m);
        total++;
      }
      // Both directions of a flow reach the same member.
      const flows = got.get(m)!.map((x) => x.flow);
      for (const f of flows) expect(flows.filter((x) => x === f).length).toBe(2);
    }
    expect(total).toBe(200);
    expect(d.stats.framesToMembers).toBe(200);
  });

  it("drops frames before the first epoch, counted", () => {
    const { q, net, d } = setup();
    net.send(frameMessage(CLIENT_SITE, DISTRIBUTOR, "host", "frame", frame(1), 1, true, 0));
    q.runUntil(Infinity, 100);
    expect(d.stats.dropNoEpoch).toBe(1);
    expect(d.stats.drops).toBe(1);
  });

  it("sends a member's forwarded frame to the site of its destination, and bounds corrections", () => {
    const { q, net, d, got, table } = setup();
    d.setEpoch(table);
    net.send(frameMessage("m1", DISTRIBUTOR, "member", "egress", frame(7), 7, true, 0));
    net.send(frameMessage("m1", DISTRIBUTOR, "member", "egress", frame(7, false), 7, false, 0));
    const c = frameMessage("m1", DISTRIBUTOR, "member", "correct", frame(8), 8, true, 0);
    c.correctTo = "m2";
    net.send(c);
    const looping = frameMessage("m1", DISTRIBUTOR, "member", "correct", frame(9), 9, true, CORRECTION_HOPS_MAX);
    looping.correctTo = "m3";
    net.send(looping);
    q.runUntil(Infinity, 100);
    expect(got.get(SERVER_SITE)!.map((m) => m.flow)).toEqual([7]);
    expect(got.get(CLIENT_SITE)!.map((m) => m.flow)).toEqual([7]);
    expect(got.get("m2")!.map((m) => [m.flow, m.hops])).toEqual([[8, 1]]);
    expect(got.get("m3")).toEqual([]);
    expect(d.stats.corrections).toBe(1);
    expect(d.stats.dropCorrectionHops).toBe(1);
  });
});
