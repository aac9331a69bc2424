// Interactive traffic endpoints for the simulator: client hosts that open connections to
// server hosts through the cluster, and servers that answer. Unlike traffic.ts (which writes
// whole conversations ahead of time), both ends here react to what actually arrives, so a
// packet lost by a network fault or a dead member is retransmitted as a real stack would:
//
//   TCP   client SYN -> server SYN-ACK -> client ACK, then `exchanges` request/response
//         pairs separated by think time, then a FIN close (or a RST). Stop-and-wait: each end
//         has at most one unacknowledged segment (SYN, data or FIN), retransmitted with the
//         same sequence number after an RTO that doubles up to RTO_MAX_MS, at most
//         RETRIES_MAX times. Sequence, acknowledgement and window fields are consistent, so a
//         strict connection tracker accepts every segment, retransmissions included.
//   UDP   request datagram -> response datagram, the request resent after an RTO.
//   ICMP  echo request -> echo reply (id = client port, seq = exchange), resent after an RTO.
//
// Per flow the record keeps what the invariants need: when the handshake completed (the
// server saw its SYN-ACK acknowledged, so the cluster forwarded an ACK for an ESTABLISHED
// connection; UDP/ICMP: the first reply came back), whether the flow completed, why it
// failed, and every member drop of its packets.
//
// Invariants kept: a flow ends at most once (completed or failed); sequence numbers only
// advance when the peer acknowledged them; every frame sent goes through `transmit`, so the
// packet accounting sees it. Allocation is fine here: this is the simulator, not a data path.

import { packet, parseMac, type PacketBuilder } from "../packet/builder.js";
import { formatIpv4, parseIpv4 } from "../packet/addr.js";
import { parseFrame } from "../packet/parse.js";
import { IpProto, LinkType, PacketView, TcpFlag } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import type { Prng } from "../stdx/prng.js";
import type { EventQueue, SimEvent } from "./clock.js";

export type FlowKind = "tcp" | "tcp-reset" | "udp" | "icmp";

export interface FlowSpec {
  kind: FlowKind;
  clientAddress: string;
  clientPort: number;
  serverAddress: string;
  serverPort: number;
  startMs: number;
  /** Request/response pairs. */
  exchanges: number;
  /** Pause between one exchange's end and the next request. */
  thinkMs: number;
  requestBytes: number;
  responseBytes: number;
}

/** First retransmission timeout; it doubles per retry up to RTO_MAX_MS. */
export const RTO_INITIAL_MS = 60;
export const RTO_MAX_MS = 1000;
/**
 * Retransmissions of one segment before the flow gives up (about 8.9 s in all). A round trip
 * crosses 8 lossy links; at 5% loss each, it fails with p = 0.34, so 13 failures in a row (a
 * give-up caused by random loss alone) have p = 8e-7: a give-up means the cluster lost the flow.
 */
export const RETRIES_MAX = 12;
const WINDOW = 64240;
const WSCALE = 7;
const CLIENT_SIDE_MAC = parseMac("02:00:00:00:0c:01");
const GATEWAY_MAC = parseMac("02:00:00:00:0a:01");

export interface MemberDrop {
  timeMs: number;
  member: string;
  reason: number;
}

export class FlowRecord {
  /** Virtual time the handshake completed (see the file header), -1 before. */
  handshakeAtMs = -1;
  /** When the cluster member forwarded the frame that completed it (the owner's view), -1 before. */
  handshakeProcessedAtMs = -1;
  completedAtMs = -1;
  failedAtMs = -1;
  failedReason: string | null = null;
  /** Every packet of this flow a member dropped, with its reason. */
  readonly memberDrops: MemberDrop[] = [];
  packetsSent = 0;
  packetsReceived = 0;
  retransmits = 0;

  constructor(
    readonly id: number,
    readonly spec: FlowSpec,
  ) {}

  get ended(): boolean {
    return this.completedAtMs >= 0 || this.failedAtMs >= 0;
  }
}

/** Sends one frame of a flow into the network; fromClient says which site it leaves from. */
export type Transmit = (flow: number, fromClient: boolean, frame: Uint8Array) => void;

const TcpState = { CLOSED: 0, LISTEN: 1, SYN_SENT: 2, SYN_RCVD: 3, ESTABLISHED: 4, FIN_SENT: 5, TIME_WAIT: 6, DONE: 7 } as const;

/** One end of a TCP connection (stop-and-wait). */
class TcpEnd {
  state: number = TcpState.CLOSED;
  iss = 0;
  sndNxt = 0;
  sndUna = 0;
  rcvNxt = 0;
  /** The unacknowledged segment: flags, sequence, data length; flags 0 when none. */
  outFlags = 0;
  outSeq = 0;
  outLength = 0;
  retries = 0;
  rtoMs = RTO_INITIAL_MS;
  timer: SimEvent | null = null;
  /** Exchanges done (client: responses received; server: requests answered). */
  exchangesDone = 0;

  constructor(readonly isClient: boolean) {}
}

/** One flow's both ends and its scripted progress. */
class Flow {
  readonly client: TcpEnd = new TcpEnd(true);
  readonly server: TcpEnd = new TcpEnd(false);
  /** UDP/ICMP: the outstanding request (exchange index), -1 when none. */
  pendingExchange = -1;
  /** Every end timer and think timer, for cancellation when the flow ends. */
  thinkTimer: SimEvent | null = null;
  readonly client4: number;
  readonly server4: number;

  constructor(readonly record: FlowRecord) {
    const c = parseIpv4(record.spec.clientAddress);
    const s = parseIpv4(record.spec.serverAddress);
    assert(c !== null && s !== null, "flows are IPv4");
    this.client4 = c;
    this.server4 = s;
  }
}

export class HostStats {
  flowsStarted = 0;
  flowsCompleted = 0;
  flowsFailed = 0;
  framesSent = 0;
  framesReceived = 0;
  retransmits = 0;
  /** Frames that arrived for a flow already ended (late duplicates): delivered, ignored. */
  framesAfterEnd = 0;
}

export class Hosts {
  readonly flows: FlowRecord[] = [];
  readonly stats = new HostStats();
  private readonly state: Flow[] = [];
  private readonly view = new PacketView();
  private readonly payloads = new Map<number, Uint8Array>();
  /** processedAtMs of the frame being delivered. */
  private processedAtMs = -1;

  constructor(
    private readonly queue: EventQueue,
    private readonly prng: Prng,
    private readonly transmit: Transmit,
  ) {}

  /** Registers a flow; it starts at spec.startMs. Returns its id. */
  addFlow(spec: FlowSpec): number {
    assert(spec.exchanges >= 1, "a flow needs at least one exchange");
    assert(spec.startMs >= this.queue.nowMs, "flow starts in the past");
    const id = this.flows.length;
    const record = new FlowRecord(id, spec);
    this.flows.push(record);
    const flow = new Flow(record);
    this.state.push(flow);
    this.queue.at(spec.startMs, "flow-start", () => this.start(flow));
    return id;
  }

  get activeFlows(): number {
    return this.stats.flowsStarted - this.stats.flowsCompleted - this.stats.flowsFailed;
  }

  /**
   * A frame arrived at a site for flow `flowId` (the network carries the flow id), forwarded
   * by a member at `processedAtMs` (simulator bookkeeping for the invariants).
   */
  deliver(flowId: number, toClient: boolean, frame: Uint8Array, processedAtMs = -1): void {
    this.processedAtMs = processedAtMs;
    this.stats.framesReceived++;
    const flow = this.state[flowId]!;
    const record = flow.record;
    record.packetsReceived++;
    const view = this.view;
    // Frames come back unmodified (routing is off in the simulator); a parse failure here is
    // a simulator bug, so it is asserted rather than counted.
    assert(parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET), "host received an unparsable frame");
    const spec = record.spec;
    const port = toClient ? view.dstPort : view.srcPort;
    if (spec.kind !== "icmp") assert(port === spec.clientPort, "frame delivered to the wrong flow");
    if (record.ended) {
      this.lateFrame(flow, toClient, view);
      return;
    }
    switch (spec.kind) {
      case "tcp":
      case "tcp-reset":
        this.tcpReceive(flow, toClient ? flow.client : flow.server, view);
        break;
      case "udp":
      case "icmp":
        this.datagramReceive(flow, toClient, view);
        break;
    }
  }

  /** A member dropped a packet of this flow (called by the simulator's member process). */
  memberDrop(flowId: number, member: string, reason: number): void {
    this.flows[flowId]!.memberDrops.push({ timeMs: this.queue.nowMs, member, reason });
  }

  // ---- flow life --------------------------------------------------------------------------

  private start(flow: Flow): void {
    this.stats.flowsStarted++;
    const spec = flow.record.spec;
    if (spec.kind === "udp" || spec.kind === "icmp") {
      this.sendRequest(flow, 0);
      return;
    }
    const c = flow.client;
    c.iss = this.prng.nextU32();
    c.sndUna = c.iss;
    c.sndNxt = (c.iss + 1) >>> 0;
    c.state = TcpState.SYN_SENT;
    flow.server.state = TcpState.LISTEN;
    this.sendSegment(flow, c, TcpFlag.SYN, c.iss, 0, true);
  }

  private complete(flow: Flow): void {
    const r = flow.record;
    if (r.ended) return;
    r.completedAtMs = this.queue.nowMs;
    this.stats.flowsCompleted++;
    this.stopTimers(flow);
  }

  private fail(flow: Flow, reason: string): void {
    const r = flow.record;
    if (r.ended) return;
    r.failedAtMs = this.queue.nowMs;
    r.failedReason = reason;
    this.stats.flowsFailed++;
    this.stopTimers(flow);
  }

  private stopTimers(flow: Flow): void {
    for (const end of [flow.client, flow.server]) {
      if (end.timer !== null) this.queue.cancel(end.timer);
      end.timer = null;
      end.outFlags = 0;
    }
    if (flow.thinkTimer !== null) this.queue.cancel(flow.thinkTimer);
    flow.thinkTimer = null;
  }

  /** After the flow ended: a TCP client in TIME_WAIT still acknowledges a retransmitted FIN. */
  private lateFrame(flow: Flow, toClient: boolean, view: PacketView): void {
    this.stats.framesAfterEnd++;
    const c = flow.client;
    if (toClient && view.protocol === IpProto.TCP && c.state === TcpState.TIME_WAIT && (view.tcpFlags & TcpFlag.FIN) !== 0) {
      this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
    }
  }

  private think(flow: Flow, run: () => void): void {
    const delayMs = flow.record.spec.thinkMs;
    flow.thinkTimer = this.queue.after(delayMs, "think", () => {
      flow.thinkTimer = null;
      if (!flow.record.ended) run();
    });
  }

  // ---- TCP --------------------------------------------------------------------------------

  private tcpReceive(flow: Flow, end: TcpEnd, view: PacketView): void {
    const flags = view.tcpFlags;
    const seq = view.tcpSeq;
    const length = view.tcpDataLength;
    if ((flags & TcpFlag.RST) !== 0) {
      // Only the client sends RSTs (tcp-reset flows): the server's side is then done.
      if (!end.isClient) {
        end.state = TcpState.DONE;
        if (flow.record.spec.kind === "tcp-reset" && flow.client.state === TcpState.DONE) this.complete(flow);
      }
      return;
    }
    if (end.isClient) this.tcpClientReceive(flow, end, view, flags, seq, length);
    else this.tcpServerReceive(flow, end, view, flags, seq, length);
  }

  /** Processes an ACK field: true when it acknowledged the outstanding segment just now. */
  private acked(end: TcpEnd, view: PacketView): boolean {
    if ((view.tcpFlags & TcpFlag.ACK) === 0 || end.outFlags === 0) return false;
    if (view.tcpAck !== end.sndNxt) return false;
    end.sndUna = end.sndNxt;
    end.outFlags = 0;
    end.retries = 0;
    end.rtoMs = RTO_INITIAL_MS;
    if (end.timer !== null) this.queue.cancel(end.timer);
    end.timer = null;
    return true;
  }

  private tcpClientReceive(flow: Flow, c: TcpEnd, view: PacketView, flags: number, seq: number, length: number): void {
    const spec = flow.record.spec;
    if (c.state === TcpState.SYN_SENT) {
      if ((flags & (TcpFlag.SYN | TcpFlag.ACK)) !== (TcpFlag.SYN | TcpFlag.ACK) || !this.acked(c, view)) return;
      c.rcvNxt = (seq + 1) >>> 0;
      c.state = TcpState.ESTABLISHED;
      this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
      this.think(flow, () => this.clientRequest(flow));
      return;
    }
    if ((flags & TcpFlag.SYN) !== 0) {
      // A retransmitted SYN-ACK: our ACK was lost. Acknowledge again.
      this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
      return;
    }
    this.acked(c, view);
    const fin = (flags & TcpFlag.FIN) !== 0;
    if (seq !== c.rcvNxt) {
      // Duplicate (or, impossible with stop-and-wait, out of order): acknowledge what we have.
      if (length > 0 || fin) this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
      return;
    }
    if (length > 0) {
      c.rcvNxt = (c.rcvNxt + length) >>> 0;
      c.exchangesDone++;
      this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
      if (c.exchangesDone < spec.exchanges) this.think(flow, () => this.clientRequest(flow));
      else this.think(flow, () => this.clientClose(flow));
      return;
    }
    if (fin && c.state === TcpState.FIN_SENT) {
      c.rcvNxt = (c.rcvNxt + 1) >>> 0;
      this.emitTcp(flow, c, TcpFlag.ACK, c.sndNxt, 0);
      if (c.outFlags === 0) {
        c.state = TcpState.TIME_WAIT;
        if (flow.server.state === TcpState.DONE) this.complete(flow);
      }
    }
  }

  private clientRequest(flow: Flow): void {
    const c = flow.client;
    const bytes = flow.record.spec.requestBytes;
    const seq = c.sndNxt;
    c.sndNxt = (c.sndNxt + bytes) >>> 0;
    this.sendSegment(flow, c, TcpFlag.PSH | TcpFlag.ACK, seq, bytes, true);
  }

  private clientClose(flow: Flow): void {
    const c = flow.client;
    if (flow.record.spec.kind === "tcp-reset") {
      this.emitTcp(flow, c, TcpFlag.RST, c.sndNxt, 0);
      c.state = TcpState.DONE;
      // The RST is not acknowledged: the client is done whether or not it arrives.
      this.complete(flow);
      return;
    }
    const seq = c.sndNxt;
    c.sndNxt = (c.sndNxt + 1) >>> 0;
    c.state = TcpState.FIN_SENT;
    this.sendSegment(flow, c, TcpFlag.FIN | TcpFlag.ACK, seq, 0, true);
  }

  private tcpServerReceive(flow: Flow, s: TcpEnd, view: PacketView, flags: number, seq: number, length: number): void {
    const spec = flow.record.spec;
    if ((flags & TcpFlag.SYN) !== 0) {
      if (s.state === TcpState.LISTEN) {
        s.iss = this.prng.nextU32();
        s.sndUna = s.iss;
        s.sndNxt = (s.iss + 1) >>> 0;
        s.rcvNxt = (seq + 1) >>> 0;
        s.state = TcpState.SYN_RCVD;
        this.sendSegment(flow, s, TcpFlag.SYN | TcpFlag.ACK, s.iss, 0, true);
      } else if (s.state === TcpState.SYN_RCVD) {
        this.emitTcp(flow, s, TcpFlag.SYN | TcpFlag.ACK, s.iss, 0);
      } else {
        // An old duplicate SYN on an open connection: challenge ACK (RFC 5961).
        this.emitTcp(flow, s, TcpFlag.ACK, s.sndNxt, 0);
      }
      return;
    }
    if (s.state === TcpState.LISTEN || s.state === TcpState.DONE) return;
    const ackedNow = this.acked(s, view);
    if (s.state === TcpState.SYN_RCVD) {
      if (!ackedNow) return;
      s.state = TcpState.ESTABLISHED;
      flow.record.handshakeAtMs = this.queue.nowMs;
      flow.record.handshakeProcessedAtMs = this.processedAtMs;
    } else if (ackedNow && s.state === TcpState.FIN_SENT) {
      s.state = TcpState.DONE;
      if (flow.client.state === TcpState.TIME_WAIT) this.complete(flow);
      return;
    }
    const fin = (flags & TcpFlag.FIN) !== 0;
    if (seq !== s.rcvNxt) {
      if (length > 0 || fin) this.emitTcp(flow, s, TcpFlag.ACK, s.sndNxt, 0);
      return;
    }
    if (length > 0) {
      s.rcvNxt = (s.rcvNxt + length) >>> 0;
      s.exchangesDone++;
      const bytes = spec.responseBytes;
      const responseSeq = s.sndNxt;
      s.sndNxt = (s.sndNxt + bytes) >>> 0;
      this.sendSegment(flow, s, TcpFlag.PSH | TcpFlag.ACK, responseSeq, bytes, true);
      return;
    }
    if (fin && s.state === TcpState.ESTABLISHED && s.outFlags === 0) {
      s.rcvNxt = (s.rcvNxt + 1) >>> 0;
      const finSeq = s.sndNxt;
      s.sndNxt = (s.sndNxt + 1) >>> 0;
      s.state = TcpState.FIN_SENT;
      this.sendSegment(flow, s, TcpFlag.FIN | TcpFlag.ACK, finSeq, 0, true);
    }
  }

  /** Sends a segment that must be acknowledged: it becomes the end's outstanding segment. */
  private sendSegment(flow: Flow, end: TcpEnd, flags: number, seq: number, length: number, fresh: boolean): void {
    assert(end.outFlags === 0 || !fresh, "stop-and-wait: one outstanding segment per end");
    end.outFlags = flags;
    end.outSeq = seq;
    end.outLength = length;
    if (fresh) {
      end.retries = 0;
      end.rtoMs = RTO_INITIAL_MS;
    }
    this.emitTcp(flow, end, flags, seq, length);
    this.armRetransmit(flow, end);
  }

  private armRetransmit(flow: Flow, end: TcpEnd): void {
    if (end.timer !== null) this.queue.cancel(end.timer);
    end.timer = this.queue.after(end.rtoMs, "rto", () => {
      end.timer = null;
      if (flow.record.ended || end.outFlags === 0) return;
      if (end.retries >= RETRIES_MAX) {
        this.fail(flow, `${end.isClient ? "client" : "server"} ${segmentName(end.outFlags)} retries exhausted`);
        return;
      }
      end.retries++;
      end.rtoMs = Math.min(end.rtoMs * 2, RTO_MAX_MS);
      flow.record.retransmits++;
      this.stats.retransmits++;
      this.emitTcp(flow, end, end.outFlags, end.outSeq, end.outLength);
      this.armRetransmit(flow, end);
    });
  }

  private emitTcp(flow: Flow, end: TcpEnd, flags: number, seq: number, length: number): void {
    const spec = flow.record.spec;
    const fromClient = end.isClient;
    const syn = (flags & TcpFlag.SYN) !== 0;
    const b = this.ipFrame(flow, fromClient, true)
      .tcp({
        sport: fromClient ? spec.clientPort : spec.serverPort,
        dport: fromClient ? spec.serverPort : spec.clientPort,
        flags,
        seq,
        ack: (flags & TcpFlag.ACK) !== 0 ? end.rcvNxt : 0,
        // Windows after the SYN are scaled by WSCALE, as negotiated.
        window: syn ? WINDOW : (flags & TcpFlag.RST) !== 0 ? 0 : WINDOW >> WSCALE,
        options: syn ? { mss: 1460, wscale: WSCALE, sackPerm: true } : undefined,
      });
    if (length > 0) b.payload(this.payloadOf(length));
    this.send(flow, fromClient, b.build());
  }

  // ---- UDP and ICMP -------------------------------------------------------------------------

  private sendRequest(flow: Flow, exchange: number): void {
    flow.pendingExchange = exchange;
    const c = flow.client;
    c.retries = 0;
    c.rtoMs = RTO_INITIAL_MS;
    c.outFlags = 1;
    this.emitDatagram(flow, true, exchange);
    this.armDatagramRetransmit(flow, exchange);
  }

  private armDatagramRetransmit(flow: Flow, exchange: number): void {
    const c = flow.client;
    if (c.timer !== null) this.queue.cancel(c.timer);
    c.timer = this.queue.after(c.rtoMs, "rto", () => {
      c.timer = null;
      if (flow.record.ended || flow.pendingExchange !== exchange) return;
      if (c.retries >= RETRIES_MAX) {
        this.fail(flow, `${flow.record.spec.kind} request retries exhausted`);
        return;
      }
      c.retries++;
      c.rtoMs = Math.min(c.rtoMs * 2, RTO_MAX_MS);
      flow.record.retransmits++;
      this.stats.retransmits++;
      this.emitDatagram(flow, true, exchange);
      this.armDatagramRetransmit(flow, exchange);
    });
  }

  private datagramReceive(flow: Flow, toClient: boolean, view: PacketView): void {
    const spec = flow.record.spec;
    const exchange = spec.kind === "icmp" ? view.icmpSeq : view.payloadOffset >= 0 ? this.exchangeOfUdp(view) : -1;
    if (!toClient) {
      // The server answers every request, duplicates included (it keeps no state).
      this.emitDatagram(flow, false, exchange);
      return;
    }
    if (exchange !== flow.pendingExchange) return; // a late duplicate reply
    const c = flow.client;
    if (c.timer !== null) this.queue.cancel(c.timer);
    c.timer = null;
    c.outFlags = 0;
    flow.pendingExchange = -1;
    if (flow.record.handshakeAtMs < 0) {
      flow.record.handshakeAtMs = this.queue.nowMs;
      flow.record.handshakeProcessedAtMs = this.processedAtMs;
    }
    c.exchangesDone++;
    if (c.exchangesDone >= spec.exchanges) {
      this.complete(flow);
      return;
    }
    this.think(flow, () => this.sendRequest(flow, exchange + 1));
  }

  /** UDP datagrams carry their exchange index in the first payload byte pair. */
  private exchangeOfUdp(view: PacketView): number {
    return (view.buf[view.payloadOffset]! << 8) | view.buf[view.payloadOffset + 1]!;
  }

  private emitDatagram(flow: Flow, fromClient: boolean, exchange: number): void {
    const spec = flow.record.spec;
    const b = this.ipFrame(flow, fromClient, false);
    const length = fromClient ? spec.requestBytes : spec.responseBytes;
    if (spec.kind === "icmp") {
      b.icmp({ type: fromClient ? 8 : 0, id: spec.clientPort & 0xffff, seq: exchange & 0xffff }).payload(this.payloadOf(length));
    } else {
      const data = new Uint8Array(Math.max(2, length));
      data[0] = (exchange >>> 8) & 0xff;
      data[1] = exchange & 0xff;
      b.udp({ sport: fromClient ? spec.clientPort : spec.serverPort, dport: fromClient ? spec.serverPort : spec.clientPort }).payload(data);
    }
    this.send(flow, fromClient, b.build());
  }

  /** Ethernet + IPv4 of a flow's frame (the sites' MACs face the gateway's). */
  private ipFrame(flow: Flow, fromClient: boolean, df: boolean): PacketBuilder {
    return packet()
      .ethernet(fromClient ? { src: CLIENT_SIDE_MAC, dst: GATEWAY_MAC } : { src: GATEWAY_MAC, dst: CLIENT_SIDE_MAC })
      .ipv4(fromClient ? { src: flow.client4, dst: flow.server4, ttl: 64, df } : { src: flow.server4, dst: flow.client4, ttl: 64, df });
  }

  private send(flow: Flow, fromClient: boolean, frame: Uint8Array): void {
    this.stats.framesSent++;
    flow.record.packetsSent++;
    this.transmit(flow.record.id, fromClient, frame);
  }

  /** Zero-filled payloads, shared per length: their bytes are never inspected. */
  private payloadOf(length: number): Uint8Array {
    let p = this.payloads.get(length);
    if (p === undefined) {
      p = new Uint8Array(length);
      this.payloads.set(length, p);
    }
    return p;
  }
}

function segmentName(flags: number): string {
  if ((flags & TcpFlag.SYN) !== 0) return (flags & TcpFlag.ACK) !== 0 ? "SYN-ACK" : "SYN";
  if ((flags & TcpFlag.FIN) !== 0) return "FIN";
  return "data";
}

/** Client host i: 198.18.x.y; server host i: 198.19.x.y (198.18.0.0/15 is for benchmarks). */
export function simClientAddress(i: number): string {
  return formatIpv4((0xc6120000 + 10 + i) >>> 0);
}

export function simServerAddress(i: number): string {
  return formatIpv4((0xc6130000 + 10 + i) >>> 0);
}

/** True for addresses of the server site (198.19.0.0/16), as a 32-bit value. */
export function isServerAddress(address4: number): boolean {
  return address4 >>> 16 === 0xc613;
}
