// What travels on the simulator's network: one message shape for every link class, so the
// network, the accounting and the trace treat them alike.
//
//   site -> distributor          "frame"     a host's frame (flow, fromClient set)
//   distributor -> member        "frame"     to the owner of the frame's bucket
//   member -> distributor        "egress"    a verdict-FORWARD frame, to be sent on to its host
//   member -> distributor        "correct"   the member is not the owner: send it to correctTo
//   distributor -> site          "frame"     delivered to the destination host
//   member <-> member            "sync"      a HyperSync datagram
//   controller <-> member        "control"   heartbeats, epochs, fill reports
//
// A frame keeps its flow id across hops: that is simulator bookkeeping (which flow a drop
// belongs to, for the invariants), not information the cluster code sees.

import type { EpochTable } from "../distribution/epoch.js";
import type { Envelope } from "./network.js";

export type MessageKind = "frame" | "egress" | "correct" | "sync" | "control";

export type ControlBody =
  /** Member -> controller: alive; `epoch` is the member's current epoch. */
  | { type: "heartbeat"; session: number; epoch: number }
  /** Controller -> member: install an epoch (fill: bucket -> extra backups; peers: name -> memberId). */
  | {
      type: "set-epoch";
      table: EpochTable;
      fill: ReadonlyMap<number, readonly string[]>;
      peers: ReadonlyMap<string, number>;
    }
  /** Member -> controller: buckets completely received as an extra backup, in `epoch`. */
  | { type: "filled"; session: number; epoch: number; buckets: number[] };

export interface SimMessage extends Envelope {
  kind: MessageKind;
  /** Flow id of a frame, -1 otherwise. */
  flow: number;
  /** Direction of a frame in its flow. */
  fromClient: boolean;
  /** Corrections this frame went through (bounded by the distributor). */
  hops: number;
  /** For "correct": the member the frame must go to. */
  correctTo: string | null;
  /** When a member forwarded the frame (egress and on to the host), -1 before. */
  processedAtMs: number;
  control: ControlBody | null;
}

export function frameMessage(from: string, to: string, linkClass: "host" | "member", kind: MessageKind, bytes: Uint8Array, flow: number, fromClient: boolean, hops: number): SimMessage {
  return { from, to, linkClass, kind, bytes, flow, fromClient, hops, correctTo: null, control: null, processedAtMs: -1 };
}

/** A network duplicate: its own copy of the bytes (a member may rewrite a frame in place). */
export function cloneMessage(m: SimMessage): SimMessage {
  return { ...m, bytes: m.bytes === null ? null : m.bytes.slice() };
}
