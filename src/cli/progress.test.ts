import { describe, expect, it } from "vitest";
import { ProgressBar } from "./progress.js";

function sink(isTTY: boolean): { text: string; isTTY: boolean; columns: number; write(t: string): boolean } {
  return {
    text: "",
    isTTY,
    columns: 80,
    write(t: string) {
      this.text += t;
      return true;
    },
  };
}

describe("ProgressBar", () => {
  it("redraws one line in place on a terminal", () => {
    const s = sink(true);
    const bar = new ProgressBar(s);
    bar.update(0.5, "fills 5/10");
    bar.update(1, "fills 10/10");
    bar.finish("done");
    expect(s.text).toBe(`\r\x1b[2K[${"#".repeat(12)}${".".repeat(12)}]  50% fills 5/10\r\x1b[2K[${"#".repeat(24)}] 100% fills 10/10\ndone\n`);
  });

  it("prints a plain line per tenth (or new label) in a pipe", () => {
    const s = sink(false);
    const bar = new ProgressBar(s);
    for (const f of [0, 0.01, 0.05, 0.12, 0.15, 0.5]) bar.update(f, "join #1");
    bar.update(0.5, "join #1 done");
    expect(s.text).toBe("progress 0% join #1\nprogress 12% join #1\nprogress 50% join #1\nprogress 50% join #1 done\n");
  });
});
