// The traffic endpoints through one real engine over a lossy, duplicating, reordering link:
// every flow must complete by retransmission, and the strict connection tracker must accept
// every segment the hosts send (zero drops) — otherwise the simulator's "no state drop on an
// established connection" invariant would blame the cluster for the hosts' mistakes.

import { describe, expect, it } from "vitest";
import { Engine } from "../engine/engine.js";
import { DROP_REASON_NAMES, Verdict } from "../engine/types.js";
import { LinkType } from "../packet/view.js";
import { Prng } from "../stdx/prng.js";
import { EventQueue } from "./clock.js";
import { Hosts, isServerAddress, RETRIES_MAX, simClientAddress, simServerAddress } from "./hosts.js";
import { frameMessage, cloneMessage, type SimMessage } from "./messages.js";
import { Network, type FaultProfile } from "./network.js";
import { generateFlows } from "./scenario.js";

function throughOneEngine(seed: number, profile: FaultProfile, flows: number, gatewayDown?: [number, number]) {
  const q = new EventQueue();
  const net = new Network<SimMessage>(q, new Prng(seed), profile, cloneMessage);
  const engine = new Engine({ capacity: 4096, hashSeed: 99 });
  const hosts = new Hosts(q, new Prng(seed + 1), (flow, fromClient, frame) =>
    net.send(frameMessage(fromClient ? "site-c" : "site-s", "gw", "host", "frame", frame, flow, fromClient, 0)),
  );
  let drops = 0;
  const reasons: string[] = [];
  net.attach("gw", (m) => {
    const verdict = engine.processFrame(m.bytes!, 0, m.bytes!.length, LinkType.ETHERNET, 0, q.nowMs);
    if (verdict !== Verdict.FORWARD) {
      drops++;
      reasons.push(DROP_REASON_NAMES[engine.dropReason]!);
      return;
    }
    const toServer = isServerAddress((m.bytes![30]! << 24) | (m.bytes![31]! << 16) | (m.bytes![32]! << 8) | m.bytes![33]!);
    net.send(frameMessage("gw", toServer ? "site-s" : "site-c", "host", "frame", m.bytes!, m.flow, m.fromClient, 0));
  });
  net.attach("site-c", (m) => hosts.deliver(m.flow, true, m.bytes!));
  net.attach("site-s", (m) => hosts.deliver(m.flow, false, m.bytes!));
  if (gatewayDown) {
    q.at(gatewayDown[0], "down", () => net.setDown("gw", true));
    q.at(gatewayDown[1], "up", () => net.setDown("gw", false));
  }
  for (const f of generateFlows(new Prng(seed + 2), flows, 3000)) hosts.addFlow(f);
  q.runUntil(60_000, 5_000_000);
  return { hosts, drops, reasons, net };
}

describe("Hosts", () => {
  it("complete every flow through a strict tracker over a clean link", () => {
    const { hosts, drops } = throughOneEngine(1, { delayMs: 0.3, jitterMs: 0.5, lossRate: 0, duplicateRate: 0, reorderRate: 0, reorderDelayMs: 0 }, 200);
    expect(hosts.stats.flowsCompleted).toBe(200);
    expect(hosts.stats.retransmits).toBe(0);
    expect(drops).toBe(0);
    expect(hosts.flows.every((f) => f.handshakeAtMs > 0 && f.completedAtMs >= f.handshakeAtMs)).toBe(true);
  });

  for (const seed of [11, 12, 13]) {
    it(`retransmit through 5% loss, duplication and reordering without a single tracker drop (seed ${seed})`, () => {
      const { hosts, drops, reasons, net } = throughOneEngine(
        seed,
        { delayMs: 0.3, jitterMs: 1.5, lossRate: 0.05, duplicateRate: 0.03, reorderRate: 0.05, reorderDelayMs: 8 },
        200,
      );
      expect(reasons).toEqual([]);
      expect(drops).toBe(0);
      expect(hosts.stats.flowsFailed).toBe(0);
      expect(hosts.stats.flowsCompleted).toBe(200);
      expect(hosts.stats.retransmits).toBeGreaterThan(10);
      expect(net.counters.host.duplicated).toBeGreaterThan(10);
    });
  }

  it("give up after RETRIES_MAX retransmissions when the gateway is gone, and say why", () => {
    const { hosts } = throughOneEngine(5, { delayMs: 0.3, jitterMs: 0.3, lossRate: 0, duplicateRate: 0, reorderRate: 0, reorderDelayMs: 0 }, 50, [500, 30_000]);
    const failed = hosts.flows.filter((f) => f.failedAtMs >= 0);
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) expect(f.failedReason).toMatch(/retries exhausted/);
    expect(hosts.stats.flowsCompleted + hosts.stats.flowsFailed).toBe(50);
    expect(RETRIES_MAX).toBeGreaterThan(3);
  });

  it("address clients and servers on two /16s of 198.18.0.0/15", () => {
    expect(simClientAddress(0)).toBe("198.18.0.10");
    expect(simServerAddress(0)).toBe("198.19.0.10");
    expect(isServerAddress(0xc6130000 + 10)).toBe(true);
    expect(isServerAddress(0xc6120000 + 10)).toBe(false);
  });
});
