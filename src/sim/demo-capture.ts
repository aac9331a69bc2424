// The bundled demonstration capture (examples/demo.pcap): a seeded traffic mix written as
// an Ethernet pcap. A test regenerates it and compares bytes, so the file in the repo is
// always exactly what this code makes (`npm run make-demo` rewrites it).

import { PcapWriter } from "../packet/pcap.js";
import { LinkType } from "../packet/view.js";
import { trafficMix } from "./traffic.js";

export const DEMO_SEED = 20261129;
export const DEMO_CONVERSATIONS = 400;

export function buildDemoCapture(): Uint8Array {
  const writer = new PcapWriter(LinkType.ETHERNET);
  for (const f of trafficMix({ seed: DEMO_SEED, conversations: DEMO_CONVERSATIONS, startMs: 1_764_400_000_000 })) {
    writer.writeFrame(f.frame, f.timeMs);
  }
  return writer.toBytes();
}
