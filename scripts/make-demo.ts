// Rewrites examples/demo.pcap from its generator (src/sim/demo-capture.ts).
import { writeFileSync } from "node:fs";
import { buildDemoCapture } from "../src/sim/demo-capture.js";

const bytes = buildDemoCapture();
writeFileSync(new URL("../../examples/demo.pcap", import.meta.url), bytes);
process.stdout.write(`examples/demo.pcap: ${bytes.length} bytes\n`);
