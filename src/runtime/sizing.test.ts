// Sizing: the formulas (deriveSizing, memberRateOf) on fixed figures, the option checks, and
// one short real run (inline distributor, 0.3 s) for the report's shape.

import { describe, it, expect } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { parseFrame } from "../packet/parse.js";
import { verifyChecksums } from "../packet/checksum.js";
import { LinkType, PacketView } from "../packet/view.js";
import { checkSizingOptions, deriveSizing, memberRateOf, runSizing, sizingDatagrams, SIZING_FRAME_BYTES, SIZING_MIX, type MeasuredSize } from "./sizing.js";
import { vxlanVniOf } from "./member-link.js";

function measured(socket: number, core: number, engine: number): MeasuredSize[] {
  return SIZING_FRAME_BYTES.map((frameBytes) => ({
    frameBytes,
    coreFramesPerSec: core,
    engineFramesPerSec: engine,
    socketFramesPerSec: socket,
    socketBasis: "thread-cpu" as const,
    socketUtilization: 1,
    socketCpuShare: 1,
    offeredPerSec: socket,
    forwardedPerSec: socket,
    deliveredPerSec: socket,
    baselineFramesPerSec: socket * 1.25,
  }));
}

describe("the synthetic traffic", () => {
  it("is VXLAN around valid TCP/IPv4 frames of the stated sizes, distinct flows, the same for the same seed", () => {
    const view = new PacketView();
    for (const bytes of SIZING_FRAME_BYTES) {
      const datagrams = sizingDatagrams(256, bytes, 7);
      expect(datagrams).toHaveLength(256);
      const flows = new Set<string>();
      for (const d of datagrams) {
        expect(d.length).toBe(8 + bytes);
        expect(vxlanVniOf(d, d.length)).toBe(101);
        expect(parseFrame(view, d, 8, bytes, LinkType.ETHERNET)).toBe(true);
        expect(view.protocol).toBe(6);
        expect(verifyChecksums(view)).toBe(true);
        flows.add(`${view.src4}:${view.srcPort}>${view.dst4}:${view.dstPort}`);
      }
      expect(flows.size).toBe(256);
    }
    expect(sizingDatagrams(64, 128, 7)).toEqual(sizingDatagrams(64, 128, 7));
    expect(sizingDatagrams(64, 128, 7)).not.toEqual(sizingDatagrams(64, 128, 8));
  });
});

describe("memberRateOf", () => {
  it("swaps the distributor's core for the engine in the socket path's cost per frame", () => {
    // 10 us socket path, of which 1 us core; engine 4 us -> member 13 us per frame.
    expect(memberRateOf({ socketFramesPerSec: 100_000, coreFramesPerSec: 1_000_000, engineFramesPerSec: 250_000 })).toBeCloseTo(1e6 / 13, 6);
  });

  it("never counts a negative I/O cost (noise: core slower than the socket path)", () => {
    expect(memberRateOf({ socketFramesPerSec: 100_000, coreFramesPerSec: 50_000, engineFramesPerSec: 250_000 })).toBeCloseTo(250_000, 6);
  });
});

describe("deriveSizing", () => {
  it("states capacity, traffic at 1,450 B and at the mix, and members fed, with formulas", () => {
    const d = deriveSizing(measured(100_000, 1_000_000, 250_000), null);
    expect(d.capacity.large).toEqual({ frameBytes: 1450, framesPerSec: 100_000, gbps: (100_000 * 1450 * 8) / 1e9 });
    // Equal rates at every size: the mix runs at the same frames/s, at the mix's mean size.
    const mean = SIZING_MIX.reduce((a, m) => a + m.share * m.frameBytes, 0);
    expect(d.capacity.mix.meanFrameBytes).toBeCloseTo(mean, 9);
    expect(d.capacity.mix.meanFrameBytes).toBeCloseTo(4394 / 12, 9);
    expect(d.capacity.mix.framesPerSec).toBeCloseTo(100_000, 6);
    expect(d.capacity.mix.gbps).toBeCloseTo((100_000 * mean * 8) / 1e9, 9);
    expect(d.members.memberFramesPerSec).toBeCloseTo(1e6 / 13, 3);
    expect(d.members.ratio).toBeCloseTo(1.3, 9);
    expect(d.members.fedAtFullRate).toBe(1);
    expect(d.members.fedAtHeadroom).toEqual({ cpuPct: 60, members: 2 }); // 1.3 / 0.6 = 2.17
    expect(d.members.memberSource).toBe("derived");
    expect(d.sizes.map((s) => s.datagramBytes)).toEqual([136, 520, 1458]);
    expect(d.formulas.some((f) => f.startsWith("capacity(1450 B) = frames handled / CPU seconds"))).toBe(true);
    expect(d.formulas.some((f) => f.includes("traffic(1450 B) = capacity x 1450 B x 8 / 1e9 = 100,000 x 1450 x 8 / 1e9 = 1.16 Gb/s"))).toBe(true);
    expect(d.formulas.at(-2)).toBe("members fed at full rate = floor(capacity(mix) / member(mix)) = floor(100,000 / 76,923) = floor(1.3) = 1");
    expect(d.formulas.at(-1)).toBe("members fed at 60% CPU = floor(capacity(mix) / (member(mix) x 0.6)) = floor(100,000 / 46,154) = 2");
  });

  it("the mix weights time per frame, not frames/s (a slow small size dominates)", () => {
    const m = measured(100_000, 1_000_000, 250_000);
    m[0]!.socketFramesPerSec = 50_000; // 128 B twice as slow
    const d = deriveSizing(m, null);
    const expected = 1 / ((7 / 12) / 50_000 + (4 / 12) / 100_000 + (1 / 12) / 100_000);
    expect(d.capacity.mix.framesPerSec).toBeCloseTo(expected, 6);
  });

  it("a given member rate replaces the derived one", () => {
    const d = deriveSizing(measured(300_000, 1_000_000, 250_000), 40_000);
    expect(d.members.memberSource).toBe("option");
    expect(d.members.memberFramesPerSec).toBeCloseTo(40_000, 6);
    expect(d.members.fedAtFullRate).toBe(7);
    expect(d.formulas.some((f) => f.startsWith("member(128 B)"))).toBe(false);
  });
});

describe("checkSizingOptions", () => {
  it.each([{ seconds: 0 }, { seconds: 1000 }, { seconds: Number.NaN }, { members: 0 }, { flows: 10 }, { memberFramesPerSec: -1 }])("refuses %j", (o) => {
    let error: unknown = null;
    try {
      checkSizingOptions(o);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TandemError);
    expect((error as TandemError).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});

describe("runSizing", () => {
  it("a short run on this thread: every size measured, capacity positive, formulas present", async () => {
    const r = await runSizing({ seconds: 0.3, flows: 256, distributorThread: "inline" });
    expect(r.kind).toBe("tandem-sizing");
    expect(r.sizes.map((s) => s.frameBytes)).toEqual([...SIZING_FRAME_BYTES]);
    for (const s of r.sizes) {
      expect(s.coreFramesPerSec).toBeGreaterThan(0);
      expect(s.engineFramesPerSec).toBeGreaterThan(0);
      expect(s.socketFramesPerSec).toBeGreaterThan(0);
      expect(s.forwardedPerSec).toBeGreaterThan(0);
      expect(s.socketUtilization).toBeGreaterThan(0);
      expect(s.socketUtilization).toBeLessThanOrEqual(1);
    }
    expect(r.capacity.large.gbps).toBeGreaterThan(0);
    expect(r.capacity.mix.framesPerSec).toBeGreaterThan(0);
    expect(r.members.fedAtFullRate).toBe(Math.floor(r.members.ratio));
    expect(r.formulas.length).toBeGreaterThanOrEqual(SIZING_FRAME_BYTES.length * 2 + 4);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  }, 10_000);
});
