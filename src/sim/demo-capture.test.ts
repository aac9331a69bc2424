import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { buildDemoCapture } from "./demo-capture.js";

describe("demo capture", () => {
  it("examples/demo.pcap is exactly what the generator makes (run `npm run make-demo` after changing it)", () => {
    const committed = readFileSync(new URL("../../examples/demo.pcap", import.meta.url));
    const made = buildDemoCapture();
    expect(made.length).toBe(committed.length);
    expect(Buffer.compare(Buffer.from(made), committed)).toBe(0);
  });
});
