// The simulator's distributor: the orchestrator's data path. It takes frames from the sites,
// computes each frame's bucket with the cluster seed (FragmentTracker, so every fragment of a
// datagram follows its first fragment), and forwards the frame to the bucket's owner in the
// CURRENT epoch it knows; frames a member forwards (verdict FORWARD) go on to the site of
// their destination; a member's correction is sent to the member it names.
//
// It never waits on the control plane: an epoch change is a table swap (setEpoch), and a frame
// is routed by whatever table is installed when it arrives.
//
// Invariants kept: every frame that arrives ends in exactly one counted outcome (sent on to a
// member, sent on to a site, or dropped with a counted reason: unparsable, no table yet, too
// many corrections), so the packet accounting can add them up.

import { FragmentTracker } from "../distribution/bucket-hash.js";
import { ownerOf, type EpochTable } from "../distribution/epoch.js";
import { parseFrame } from "../packet/parse.js";
import { LinkType, PacketView } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import type { EventQueue } from "./clock.js";
import { isServerAddress } from "./hosts.js";
import { frameMessage, type SimMessage } from "./messages.js";
import type { Network } from "./network.js";

export const DISTRIBUTOR = "distributor";
export const CLIENT_SITE = "site-c";
export const SERVER_SITE = "site-s";
/** Corrections one frame may go through before the distributor drops it (a loop guard). */
export const CORRECTION_HOPS_MAX = 3;

export class DistributorStats {
  framesFromSites = 0;
  framesToMembers = 0;
  framesToSites = 0;
  corrections = 0;
  dropUnparsable = 0;
  dropNoEpoch = 0;
  dropCorrectionHops = 0;

  get drops(): number {
    return this.dropUnparsable + this.dropNoEpoch + this.dropCorrectionHops;
  }
}

export class SimDistributor {
  readonly stats = new DistributorStats();
  table: EpochTable | null = null;
  private readonly fragments: FragmentTracker;
  private readonly view = new PacketView();

  constructor(
    private readonly queue: EventQueue,
    private readonly network: Network<SimMessage>,
    readonly seed: number,
    readonly bucketCount: number,
  ) {
    this.fragments = new FragmentTracker({ seed, bucketCount, capacity: 1024 });
    network.attach(DISTRIBUTOR, (m) => this.receive(m));
  }

  setEpoch(table: EpochTable): void {
    assert(table.table.bucketCount === this.bucketCount, "bucket count never changes");
    assert(table.seed === this.seed, "cluster seed never changes");
    assert(this.table === null || table.epoch >= this.table.epoch, "distributor epoch went backwards");
    this.table = table;
  }

  /** Bucket of a frame (for the invariants): -1 when it does not parse. */
  bucketOfFrame(frame: Uint8Array): number {
    if (!parseFrame(this.view, frame, 0, frame.length, LinkType.ETHERNET)) return -1;
    return this.fragments.bucketOfPacket(this.view, this.queue.nowMs);
  }

  private receive(m: SimMessage): void {
    assert(m.bytes !== null, "distributor receives frames only");
    const s = this.stats;
    switch (m.kind) {
      case "frame": {
        s.framesFromSites++;
        const bucket = this.bucketOfFrame(m.bytes);
        if (bucket < 0) {
          s.dropUnparsable++;
          return;
        }
        if (this.table === null) {
          s.dropNoEpoch++;
          return;
        }
        s.framesToMembers++;
        this.network.send(frameMessage(DISTRIBUTOR, ownerOf(this.table, bucket), "member", "frame", m.bytes, m.flow, m.fromClient, 0));
        return;
      }
      case "egress": {
        const ok = parseFrame(this.view, m.bytes, 0, m.bytes.length, LinkType.ETHERNET);
        assert(ok, "a member forwarded an unparsable frame");
        const toServer = isServerAddress(this.view.dst4);
        assert(toServer === m.fromClient, "egress frame's destination disagrees with its direction");
        s.framesToSites++;
        const out = frameMessage(DISTRIBUTOR, toServer ? SERVER_SITE : CLIENT_SITE, "host", "frame", m.bytes, m.flow, m.fromClient, 0);
        out.processedAtMs = m.processedAtMs;
        this.network.send(out);
        return;
      }
      case "correct": {
        assert(m.correctTo !== null, "correction without a target");
        if (m.hops >= CORRECTION_HOPS_MAX) {
          s.dropCorrectionHops++;
          return;
        }
        s.corrections++;
        this.network.send(frameMessage(DISTRIBUTOR, m.correctTo, "member", "frame", m.bytes, m.flow, m.fromClient, m.hops + 1));
        return;
      }
      default:
        assert(false, `distributor got a ${m.kind} message`);
    }
  }
}
