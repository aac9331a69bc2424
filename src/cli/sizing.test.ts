// `tandem sizing` wiring: flags become runSizing options (checked before anything runs), --json
// prints one JSON object, the text output has the table, the headline figures and the
// formulas. runSizing itself is replaced by a fixed report (the measurement has its own tests).
import { Command } from "commander";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TandemError } from "../stdx/errors.js";
import { deriveSizing, SIZING_FRAME_BYTES, type SizingOptions, type SizingReport } from "../runtime/sizing.js";

const calls: SizingOptions[] = [];

function fakeReport(): SizingReport {
  const measured = SIZING_FRAME_BYTES.map((frameBytes) => ({
    frameBytes,
    coreFramesPerSec: 1_000_000,
    engineFramesPerSec: 500_000,
    socketFramesPerSec: 200_000,
    socketBasis: "thread-cpu" as const,
    socketUtilization: 0.97,
    socketCpuShare: 0.95,
    offeredPerSec: 250_000,
    forwardedPerSec: 190_000,
    deliveredPerSec: 189_000,
    baselineFramesPerSec: 260_000,
  }));
  return {
    kind: "tandem-sizing",
    date: "2026-11-29T12:00:00.000Z",
    node: "v20.20.2",
    cpu: { model: "test cpu", count: 2 },
    loadAverage1m: 0.5,
    seconds: 3,
    group: { members: 4, buckets: 8192, flows: 4096, seed: 1 },
    distributorThread: "worker",
    ...deriveSizing(measured, null),
    notes: ["a note"],
  };
}

vi.mock("../runtime/sizing.js", async (importOriginal) => {
  const original = await importOriginal<typeof import("../runtime/sizing.js")>();
  return {
    ...original,
    runSizing: (options: SizingOptions) => {
      calls.push(options);
      return Promise.resolve(fakeReport());
    },
  };
});

const { registerSizing, sizingOptionsOf } = await import("./sizing.js");

async function tandem(...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerSizing(program);
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const errSpy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    await program.parseAsync(["node", "tandem", ...args]);
  } finally {
    spy.mockRestore();
    errSpy.mockRestore();
  }
  return out;
}

afterEach(() => {
  calls.length = 0;
});

describe("tandem sizing", () => {
  it("--json prints one JSON object on one line, with the options passed through", async () => {
    const out = await tandem("sizing", "--seconds", "1.5", "--members", "3", "--member-fps", "40000", "--json");
    expect(out.trimEnd().split("\n")).toHaveLength(1);
    const report = JSON.parse(out) as SizingReport;
    expect(report.kind).toBe("tandem-sizing");
    expect(report.sizes.map((s) => s.frameBytes)).toEqual([...SIZING_FRAME_BYTES]);
    expect(Object.keys(report.capacity)).toEqual(["large", "mix"]);
    expect(report.formulas.length).toBeGreaterThan(0);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ seconds: 1.5, members: 3, memberFramesPerSec: 40_000 });
    expect(calls[0]!.onProgress).toBeUndefined(); // nothing but the object on stdout, nothing on stderr
  });

  it("prints the per-size table, the headline figures and every formula", async () => {
    const out = await tandem("sizing");
    expect(calls[0]).toMatchObject({ seconds: 3, members: 4 });
    expect(out).toMatch(/^frame B +core frames\/s/m);
    expect(out).toMatch(/^ +1450 +1,000,000 /m);
    expect(out).toContain("capacity at 1450 B frames");
    expect(out).toContain("200,000 frames/s = 2.32 Gb/s");
    expect(out).toContain("members fed at full rate");
    for (const f of fakeReport().formulas) expect(out).toContain(f);
    expect(out).toContain("note: a note");
  });

  it("refuses bad flags before measuring", async () => {
    await expect(tandem("sizing", "--seconds", "0")).rejects.toThrow(TandemError);
    await expect(tandem("sizing", "--seconds", "abc")).rejects.toThrow(/--seconds must be a number/);
    await expect(tandem("sizing", "--member-fps", "-5")).rejects.toThrow(TandemError);
    expect(calls).toHaveLength(0);
    expect(sizingOptionsOf({})).toEqual({});
  });
});
