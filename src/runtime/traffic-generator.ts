// The built-in synthetic traffic source of `tandem up` when there is no lab: two emulated sites
// (a client site and a server site), each one UDP socket acting as a VXLAN tunnel endpoint, the
// way a site's kernel vxlan device would with remote = the distributor.
//
//   client hosts --frame--> [client site VTEP] --VXLAN(vni C)--> distributor ... cluster
//   server hosts <--frame-- [server site VTEP] <--VXLAN(vni S)-- distributor / members
//
// The hosts are the simulator's interactive hosts (src/sim/hosts.ts): they react to what
// arrives, retransmit and close as a real stack would. Their EventQueue is driven from real
// time: a timer runs it up to performance.now() (ms since start), and so does every arrival
// before it is delivered, so a host's timers and the frames it sees share one clock.
//
// Invariants kept:
// - No IP frame leaves a site before that site resolved its gateway's MAC by ARP; flows start
//   only when both sites have. Every IP frame leaves with dst = the gateway's MAC and src =
//   the site's fixed MAC; every frame goes to the distributor endpoint (as a kernel vxlan's
//   remote), whatever endpoint sent the frame it answers.
// - Bytes from the network never reach an assertion: a datagram is delivered to the hosts
//   only after it parsed, matched the site's VNI and MAC, and matched a live flow's addresses,
//   protocol and client port; everything else is counted as ignored.
// - Memory is bounded while the generator runs for hours: flows are registered in
//   generations of FLOWS_PER_GENERATION Hosts records, and a generation is dropped once all
//   its flows ended. Active flows are bounded by the client port space (one port per flow).
//
// This is a test tool on the control side of the house: it allocates per frame (the hosts
// build every frame with the packet builder), which is fine at tens of flows per second.

import dgram from "node:dgram";
import { performance } from "node:perf_hooks";
import { formatIpv4, parseIpv4 } from "../packet/addr.js";
import { packet, parseMac } from "../packet/builder.js";
import { parseFrame } from "../packet/parse.js";
import { EtherType, IpProto, LinkType, PacketView } from "../packet/view.js";
import { EventQueue, type SimEvent } from "../sim/clock.js";
import { Hosts, type FlowKind, type FlowSpec } from "../sim/hosts.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { Prng } from "../stdx/prng.js";
import { formatEndpoint, VXLAN_HEADER_BYTES, vxlanVniOf, writeVxlanHeader, type Endpoint } from "./member-link.js";

export interface TrafficSiteOptions {
  /** VNI of the SG interface this site sits on. */
  vni: number;
  /** The SG gateway on this segment, "a.b.c.d/len": next hop of the site, and the prefix its hosts take addresses in. */
  gateway: string;
  /** Where the site's VTEP socket binds (default 127.0.0.1, OS-chosen port). */
  listen?: Endpoint;
}

/** Relative weights of flow kinds (normalised; at least one positive). */
export interface TrafficMix {
  tcp?: number;
  /** TCP flows that end with a RST instead of a FIN exchange. */
  tcpReset?: number;
  udp?: number;
  icmp?: number;
}

export interface TrafficGeneratorOptions {
  /** The distributor's VXLAN endpoint. */
  distributor: Endpoint;
  sites: { client: TrafficSiteOptions; server: TrafficSiteOptions };
  /** Mean new flows per second (Poisson arrivals); 0 only ARPs. Default 50. */
  flowsPerSecond?: number;
  mix?: TrafficMix;
  /** Prng seed (flow kinds, addresses, sizes, TCP initial sequence numbers). Default 1. */
  seed?: number;
  /** Host addresses per site (from .10 of the gateway's prefix). Default 4. */
  hostsPerSite?: number;
  /** Period of the timer that runs the hosts' event queue. Default 5 ms. */
  tickMs?: number;
  /** ARP retry period while a gateway is unresolved. Default 250 ms. */
  arpRetryMs?: number;
  /** Flows per Hosts generation (see the file header). Default FLOWS_PER_GENERATION. */
  flowsPerGeneration?: number;
}

export interface TrafficStats {
  flowsStarted: number;
  flowsCompleted: number;
  flowsFailed: number;
  /** VXLAN datagrams sent / received by both sites (ARP included). */
  framesSent: number;
  framesReceived: number;
  /** Gateway MACs learned (one per site once resolved; a changed MAC counts again). */
  arpResolved: number;
  arpRequestsSent: number;
  /** ARP replies for the sites' host addresses. */
  arpRepliesSent: number;
  activeFlows: number;
  retransmits: number;
  /** Datagrams that were not for a live flow (wrong VNI or MAC, unparsable, unknown flow...). */
  framesIgnored: number;
  /** Flow arrivals dropped because every client port was in use. */
  flowsSkipped: number;
  sendErrors: number;
  socketErrors: number;
  /** Hosts generations dropped after all their flows ended (memory stays bounded). */
  generationsRetired: number;
  /** Receive buffer the client site's socket got (the OS may cap the size asked for). */
  recvBufferBytes: number;
}

export interface TrafficGenerator {
  /** The sites' bound VTEP addresses: the SG interfaces' siteEndpoint/sitePort. */
  readonly sites: { client: Endpoint; server: Endpoint };
  stats(): TrafficStats;
  stop(): Promise<void>;
}

export const TRAFFIC_DEFAULTS = {
  flowsPerSecond: 50,
  mix: { tcp: 0.7, tcpReset: 0.05, udp: 0.15, icmp: 0.1 } as Required<TrafficMix>,
  seed: 1,
  hostsPerSite: 4,
  tickMs: 5,
  arpRetryMs: 250,
} as const;

/** Flows per Hosts generation: a generation's records are freed once all its flows ended. */
export const FLOWS_PER_GENERATION = 4096;
/** Queue events run per tick at most (a bound; the rest run on the next tick). */
const EVENTS_PER_TICK_MAX = 100_000;
/** Client ports handed out round-robin; a port is reused only after its flow ended. */
const CLIENT_PORT_FIRST = 20_000;
const CLIENT_PORT_COUNT = 40_000;
/** First host address of a site: offset 10 in its prefix (the lab's hosts sit at .10). */
const HOST_OFFSET = 10;
/** Socket send/receive buffer size asked for (see bindSite). */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
const TCP_SERVER_PORTS = [80, 443, 8080] as const;
const UDP_SERVER_PORT = 53;
const CLIENT_SITE_MAC = "02:54:47:00:01:01";
const SERVER_SITE_MAC = "02:54:47:00:02:01";
const BROADCAST_MAC = parseMac("ff:ff:ff:ff:ff:ff");
const KIND_CODES: readonly FlowKind[] = ["tcp", "tcp-reset", "udp", "icmp"];

/** Starts both sites and begins ARPing; flows start once both gateways are resolved. */
export async function startTrafficGenerator(options: TrafficGeneratorOptions): Promise<TrafficGenerator> {
  const config = resolveOptions(options);
  const client = await bindSite(options.sites.client, config.hostsPerSite, CLIENT_SITE_MAC);
  let server: Site;
  try {
    server = await bindSite(options.sites.server, config.hostsPerSite, SERVER_SITE_MAC);
  } catch (error) {
    await closeSocket(client.socket);
    throw error;
  }
  const generator = new Generator(config, client, server);
  generator.start();
  return {
    sites: { client: client.bound, server: server.bound },
    stats: () => generator.stats(),
    stop: () => generator.stop(),
  };
}

interface ResolvedOptions {
  distributor: Endpoint;
  flowsPerSecond: number;
  /** Cumulative weights per KIND_CODES entry, the last one 1. */
  mixCumulative: number[];
  seed: number;
  hostsPerSite: number;
  tickMs: number;
  arpRetryMs: number;
  flowsPerGeneration: number;
}

function invalid(message: string): TandemError {
  return new TandemError(ErrorCode.INVALID_ARGUMENT, `traffic generator: ${message}`);
}

function resolveOptions(options: TrafficGeneratorOptions): ResolvedOptions {
  const flowsPerSecond = options.flowsPerSecond ?? TRAFFIC_DEFAULTS.flowsPerSecond;
  if (!Number.isFinite(flowsPerSecond) || flowsPerSecond < 0) throw invalid(`flowsPerSecond must be >= 0, got ${flowsPerSecond}`);
  const mix = { ...TRAFFIC_DEFAULTS.mix, ...(options.mix ?? {}) };
  const weights = [mix.tcp, mix.tcpReset, mix.udp, mix.icmp];
  if (weights.some((w) => !Number.isFinite(w) || w < 0)) throw invalid("mix weights must be finite and >= 0");
  const total = weights.reduce((a, b) => a + b, 0);
  if (total <= 0) throw invalid("mix needs at least one positive weight");
  let running = 0;
  const mixCumulative = weights.map((w) => (running += w / total));
  mixCumulative[mixCumulative.length - 1] = 1;
  const hostsPerSite = options.hostsPerSite ?? TRAFFIC_DEFAULTS.hostsPerSite;
  if (!Number.isInteger(hostsPerSite) || hostsPerSite < 1 || hostsPerSite > 1000) throw invalid("hostsPerSite must be 1..1000");
  const tickMs = options.tickMs ?? TRAFFIC_DEFAULTS.tickMs;
  if (!Number.isFinite(tickMs) || tickMs < 1 || tickMs > 1000) throw invalid("tickMs must be 1..1000");
  const arpRetryMs = options.arpRetryMs ?? TRAFFIC_DEFAULTS.arpRetryMs;
  if (!Number.isFinite(arpRetryMs) || arpRetryMs < 1) throw invalid("arpRetryMs must be >= 1");
  const flowsPerGeneration = options.flowsPerGeneration ?? FLOWS_PER_GENERATION;
  if (!Number.isInteger(flowsPerGeneration) || flowsPerGeneration < 1) throw invalid("flowsPerGeneration must be >= 1");
  const { client, server } = options.sites;
  for (const [name, site] of [["client", client], ["server", server]] as const) {
    if (!Number.isInteger(site.vni) || site.vni < 0 || site.vni > 0xffffff) throw invalid(`${name} vni must be 0..16777215`);
  }
  if (client.vni === server.vni) throw invalid("the client and server sites need different VNIs");
  checkEndpoint("distributor", options.distributor);
  return {
    distributor: options.distributor,
    flowsPerSecond,
    mixCumulative,
    seed: options.seed ?? TRAFFIC_DEFAULTS.seed,
    hostsPerSite,
    tickMs,
    arpRetryMs,
    flowsPerGeneration,
  };
}

function checkEndpoint(name: string, e: Endpoint): void {
  if (parseIpv4(e.address) === null || !Number.isInteger(e.port) || e.port < 0 || e.port > 65535) {
    throw invalid(`${name} must be an IPv4 address and port, got ${e.address}:${e.port}`);
  }
}

/** Gateway "a.b.c.d/len" -> its address and `count` host addresses from .10 of its prefix. */
export function siteAddressPlan(gateway: string, count: number): { gateway4: number; hosts4: number[] } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(gateway);
  const gateway4 = m === null ? null : parseIpv4(m[1]!);
  const prefixLength = m === null ? -1 : Number(m[2]);
  if (gateway4 === null || prefixLength < 1 || prefixLength > 30) throw invalid(`gateway must be "a.b.c.d/len" (len 1..30), got "${gateway}"`);
  const size = 2 ** (32 - prefixLength);
  const base = (gateway4 - (gateway4 % size)) >>> 0;
  const hosts4: number[] = [];
  // Usable addresses are base+1 .. base+size-2; start at .10 when the prefix leaves room.
  const first = size - 2 >= HOST_OFFSET + count ? HOST_OFFSET : 1;
  for (let offset = first; offset <= size - 2 && hosts4.length < count; offset++) {
    const address = (base + offset) >>> 0;
    if (address !== gateway4) hosts4.push(address);
  }
  if (hosts4.length < count) throw invalid(`prefix of ${gateway} has no room for ${count} hosts`);
  return { gateway4, hosts4 };
}

interface Site {
  readonly socket: dgram.Socket;
  readonly bound: Endpoint;
  readonly vni: number;
  readonly gateway4: number;
  readonly hosts4: readonly number[];
  readonly mac: Uint8Array;
  /** The gateway's MAC once an ARP reply named it. */
  gatewayMac: Uint8Array | null;
  arpTimer: SimEvent | null;
}

async function bindSite(options: TrafficSiteOptions, hostsPerSite: number, mac: string): Promise<Site> {
  const { gateway4, hosts4 } = siteAddressPlan(options.gateway, hostsPerSite);
  const listen = options.listen ?? { address: "127.0.0.1", port: 0 };
  checkEndpoint("listen", listen);
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      socket.close();
      reject(new TandemError(ErrorCode.INVALID_ARGUMENT, `traffic generator: cannot bind ${formatEndpoint(listen)}: ${error.message}`));
    };
    socket.once("error", onError);
    socket.bind(listen.port, listen.address, () => {
      socket.off("error", onError);
      resolve();
    });
  });
  // Hosts' retransmission timers fire in bursts after an event-loop stall; the default
  // receive buffer (~200 KiB, a few hundred small datagrams) would overflow and turn the
  // stall into loss, then into more retransmissions. Linux caps the size at rmem_max.
  setSocketBuffers(socket, SOCKET_BUFFER_BYTES);
  const address = socket.address();
  return {
    socket,
    bound: { address: address.address, port: address.port },
    vni: options.vni,
    gateway4,
    hosts4,
    mac: parseMac(mac),
    gatewayMac: null,
    arpTimer: null,
  };
}

/** Best effort: an OS that refuses the size keeps its default (reported in stats). */
function setSocketBuffers(socket: dgram.Socket, bytes: number): void {
  try {
    socket.setRecvBufferSize(bytes);
    socket.setSendBufferSize(bytes);
  } catch (error) {
    // Not fatal: the generator works with the default sizes, it only loses more under stalls.
    assert(error instanceof Error, "setRecvBufferSize throws Errors");
  }
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

/** One Hosts instance and the flows registered in it. */
interface Generation {
  readonly hosts: Hosts;
  retired: boolean;
}

class Generator {
  private readonly queue = new EventQueue(0);
  private readonly prng: Prng;
  private readonly view = new PacketView();
  private readonly generations: Generation[] = [];
  private current: Generation;
  private t0Ms = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private arrivalsStarted = false;
  private stopped = false;
  // Per client port: the flow using it (generation, flow id, kind code, addresses).
  private readonly portGeneration: (Generation | null)[] = new Array<Generation | null>(65536).fill(null);
  private readonly portFlow = new Int32Array(65536);
  private readonly portKind = new Uint8Array(65536);
  private readonly portClient4 = new Uint32Array(65536);
  private readonly portServer4 = new Uint32Array(65536);
  private readonly portServerPort = new Uint16Array(65536);
  private nextPortIndex = 0;
  // Totals of retired generations' host stats.
  private retiredStarted = 0;
  private retiredCompleted = 0;
  private retiredFailed = 0;
  private retiredRetransmits = 0;
  private generationsRetired = 0;
  private readonly counters = {
    framesSent: 0,
    framesReceived: 0,
    arpResolved: 0,
    arpRequestsSent: 0,
    arpRepliesSent: 0,
    framesIgnored: 0,
    flowsSkipped: 0,
    sendErrors: 0,
    socketErrors: 0,
  };
  /** One send callback for every datagram (no closure per frame). */
  private readonly onSent = (error: Error | null): void => {
    if (error !== null) this.counters.sendErrors++;
  };

  constructor(
    private readonly config: ResolvedOptions,
    private readonly client: Site,
    private readonly server: Site,
  ) {
    this.prng = new Prng(config.seed);
    this.current = this.newGeneration();
  }

  start(): void {
    this.t0Ms = performance.now();
    for (const site of [this.client, this.server]) {
      site.socket.on("message", (msg: Buffer) => this.onDatagram(site, msg));
      site.socket.on("error", () => {
        this.counters.socketErrors++;
      });
      this.sendArpRequest(site);
    }
    this.timer = setInterval(() => this.tick(), this.config.tickMs);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await Promise.all([closeSocket(this.client.socket), closeSocket(this.server.socket)]);
  }

  stats(): TrafficStats {
    let started = this.retiredStarted;
    let completed = this.retiredCompleted;
    let failed = this.retiredFailed;
    let retransmits = this.retiredRetransmits;
    for (const g of this.generations) {
      started += g.hosts.stats.flowsStarted;
      completed += g.hosts.stats.flowsCompleted;
      failed += g.hosts.stats.flowsFailed;
      retransmits += g.hosts.stats.retransmits;
    }
    return {
      flowsStarted: started,
      flowsCompleted: completed,
      flowsFailed: failed,
      activeFlows: started - completed - failed,
      retransmits,
      ...this.counters,
      generationsRetired: this.generationsRetired,
      recvBufferBytes: this.stopped ? 0 : this.client.socket.getRecvBufferSize(),
    };
  }

  // ---- clock ------------------------------------------------------------------------------

  /** Runs the hosts' queue up to real time (ms since start). */
  private advanceClock(): void {
    this.queue.runUntil(performance.now() - this.t0Ms, EVENTS_PER_TICK_MAX);
  }

  private tick(): void {
    if (this.stopped) return;
    this.advanceClock();
    this.retireGenerations();
  }

  private newGeneration(): Generation {
    const generation: Generation = {
      hosts: new Hosts(this.queue, this.prng, (_flow, fromClient, frame) => this.transmit(fromClient ? this.client : this.server, frame)),
      retired: false,
    };
    this.generations.push(generation);
    return generation;
  }

  /** Drops every generation but the current one whose flows all ended. */
  private retireGenerations(): void {
    for (let i = this.generations.length - 1; i >= 0; i--) {
      const g = this.generations[i]!;
      if (g === this.current) continue;
      const s = g.hosts.stats;
      if (s.flowsCompleted + s.flowsFailed < g.hosts.flows.length) continue;
      g.retired = true;
      this.retiredStarted += s.flowsStarted;
      this.retiredCompleted += s.flowsCompleted;
      this.retiredFailed += s.flowsFailed;
      this.retiredRetransmits += s.retransmits;
      this.generationsRetired++;
      this.generations.splice(i, 1);
    }
  }

  // ---- flows ------------------------------------------------------------------------------

  private scheduleArrival(): void {
    if (this.config.flowsPerSecond === 0) return;
    // Exponential inter-arrival times: a Poisson process of flowsPerSecond.
    const delayMs = (-Math.log(1 - this.prng.nextFloat()) * 1000) / this.config.flowsPerSecond;
    this.queue.after(delayMs, "flow-arrival", () => {
      if (this.stopped) return;
      this.startFlow();
      this.scheduleArrival();
    });
  }

  private startFlow(): void {
    const port = this.allocatePort();
    if (port < 0) {
      this.counters.flowsSkipped++;
      return;
    }
    if (this.current.hosts.flows.length >= this.config.flowsPerGeneration) this.current = this.newGeneration();
    const prng = this.prng;
    const u = prng.nextFloat();
    let kindCode = 0;
    while (u >= this.config.mixCumulative[kindCode]!) kindCode++;
    const kind = KIND_CODES[kindCode]!;
    const client4 = prng.pick(this.client.hosts4);
    const server4 = prng.pick(this.server.hosts4);
    const spec: FlowSpec = {
      kind,
      clientAddress: formatIpv4(client4),
      clientPort: port,
      serverAddress: formatIpv4(server4),
      serverPort: kind === "udp" ? UDP_SERVER_PORT : kind === "icmp" ? 0 : prng.pick(TCP_SERVER_PORTS),
      startMs: this.queue.nowMs,
      exchanges: kind === "tcp" || kind === "tcp-reset" ? prng.range(1, 4) : prng.range(1, 3),
      thinkMs: prng.range(0, 20),
      requestBytes: kind === "icmp" ? 56 : prng.range(32, 400),
      responseBytes: kind === "icmp" ? 56 : prng.range(64, 1400),
    };
    const id = this.current.hosts.addFlow(spec);
    this.portGeneration[port] = this.current;
    this.portFlow[port] = id;
    this.portKind[port] = kindCode;
    this.portClient4[port] = client4;
    this.portServer4[port] = server4;
    this.portServerPort[port] = spec.serverPort;
  }

  /** A client port no live flow uses, or -1 when all are taken. */
  private allocatePort(): number {
    for (let tries = 0; tries < CLIENT_PORT_COUNT; tries++) {
      const port = CLIENT_PORT_FIRST + this.nextPortIndex;
      this.nextPortIndex = (this.nextPortIndex + 1) % CLIENT_PORT_COUNT;
      const g = this.portGeneration[port];
      if (g === null || g === undefined || g.retired || g.hosts.flows[this.portFlow[port]!]!.ended) return port;
    }
    return -1;
  }

  // ---- transmit ---------------------------------------------------------------------------

  /** A host frame leaves its site: gateway MAC as destination, the site's MAC as source. */
  private transmit(site: Site, frame: Uint8Array): void {
    if (this.stopped) return;
    const gatewayMac = site.gatewayMac;
    // Flows start after both gateways resolved and a resolved MAC is never forgotten.
    assert(gatewayMac !== null, "IP frame before the gateway was resolved");
    frame.set(gatewayMac, 0);
    frame.set(site.mac, 6);
    this.sendFrame(site, frame);
  }

  private sendFrame(site: Site, frame: Uint8Array): void {
    const datagram = Buffer.allocUnsafe(VXLAN_HEADER_BYTES + frame.length);
    writeVxlanHeader(datagram, 0, site.vni);
    datagram.set(frame, VXLAN_HEADER_BYTES);
    this.counters.framesSent++;
    site.socket.send(datagram, this.config.distributor.port, this.config.distributor.address, this.onSent);
  }

  // ---- ARP --------------------------------------------------------------------------------

  private sendArpRequest(site: Site): void {
    if (this.stopped || site.gatewayMac !== null) return;
    const frame = packet()
      .ethernet({ src: site.mac, dst: BROADCAST_MAC })
      .arp({ op: 1, senderMac: site.mac, senderIp: site.hosts4[0]!, targetIp: site.gateway4 })
      .build();
    this.counters.arpRequestsSent++;
    this.sendFrame(site, frame);
    site.arpTimer = this.queue.after(this.config.arpRetryMs, "arp-retry", () => {
      site.arpTimer = null;
      this.sendArpRequest(site);
    });
  }

  private onArp(site: Site, frame: Uint8Array, view: PacketView): void {
    if (view.arpOp === 2 && view.arpSenderIp === site.gateway4) {
      const mac = frame.subarray(view.arpSenderMacOffset, view.arpSenderMacOffset + 6);
      if (site.gatewayMac !== null && sameBytes(site.gatewayMac, mac)) return;
      site.gatewayMac = mac.slice();
      this.counters.arpResolved++;
      if (site.arpTimer !== null) this.queue.cancel(site.arpTimer);
      site.arpTimer = null;
      if (!this.arrivalsStarted && this.client.gatewayMac !== null && this.server.gatewayMac !== null) {
        this.arrivalsStarted = true;
        this.advanceClock();
        this.scheduleArrival();
      }
      return;
    }
    if (view.arpOp === 1 && site.hosts4.includes(view.arpTargetIp)) {
      const requesterMac = frame.slice(view.arpSenderMacOffset, view.arpSenderMacOffset + 6);
      const reply = packet()
        .ethernet({ src: site.mac, dst: requesterMac })
        .arp({ op: 2, senderMac: site.mac, senderIp: view.arpTargetIp, targetMac: requesterMac, targetIp: view.arpSenderIp })
        .build();
      this.counters.arpRepliesSent++;
      this.sendFrame(site, reply);
      return;
    }
    this.counters.framesIgnored++;
  }

  // ---- receive ----------------------------------------------------------------------------

  private onDatagram(site: Site, msg: Buffer): void {
    if (this.stopped) return;
    this.counters.framesReceived++;
    if (vxlanVniOf(msg, msg.length) !== site.vni) {
      this.counters.framesIgnored++;
      return;
    }
    const frame = msg.subarray(VXLAN_HEADER_BYTES);
    const view = this.view;
    if (!parseFrame(view, frame, 0, frame.length, LinkType.ETHERNET) || view.vlanCount !== 0 || !this.addressedTo(site, frame)) {
      this.counters.framesIgnored++;
      return;
    }
    if (view.etherType === EtherType.ARP) {
      this.onArp(site, frame, view);
      return;
    }
    const toClient = site === this.client;
    const port = view.ipVersion === 4 ? this.clientPortOf(view, toClient) : -1;
    const g = port < 0 ? null : this.portGeneration[port]!;
    if (g === null || g.retired || !this.matchesFlow(view, port, toClient)) {
      this.counters.framesIgnored++;
      return;
    }
    // Host timers and the frame share one clock: bring the queue to now first.
    this.advanceClock();
    g.hosts.deliver(this.portFlow[port]!, toClient, frame);
  }

  /** Unicast to the site's MAC, or broadcast. */
  private addressedTo(site: Site, frame: Uint8Array): boolean {
    return sameBytes(frame.subarray(0, 6), site.mac) || sameBytes(frame.subarray(0, 6), BROADCAST_MAC);
  }

  /** The client port that names the flow of an IPv4 frame, or -1 (not a frame a host expects). */
  private clientPortOf(view: PacketView, toClient: boolean): number {
    if (view.isFragment || view.l4Offset < 0) return -1;
    if (view.protocol === IpProto.TCP || view.protocol === IpProto.UDP) return toClient ? view.dstPort : view.srcPort;
    if (view.protocol === IpProto.ICMP && view.icmpIsEcho && view.icmpType === (toClient ? 0 : 8)) return view.icmpId;
    return -1;
  }

  private matchesFlow(view: PacketView, port: number, toClient: boolean): boolean {
    const kind = KIND_CODES[this.portKind[port]!]!;
    const protocol = kind === "udp" ? IpProto.UDP : kind === "icmp" ? IpProto.ICMP : IpProto.TCP;
    if (view.protocol !== protocol) return false;
    if (protocol !== IpProto.ICMP && (toClient ? view.srcPort : view.dstPort) !== this.portServerPort[port]) return false;
    const client4 = this.portClient4[port]!;
    const server4 = this.portServer4[port]!;
    return toClient ? view.src4 === server4 && view.dst4 === client4 : view.src4 === client4 && view.dst4 === server4;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

