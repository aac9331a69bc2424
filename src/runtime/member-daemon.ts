// The member process: one ClusterNode (engine + HyperSync, the synchronous core) wired to two
// UDP sockets and to the orchestrator's member API. It mirrors src/sim/member.ts with real I/O:
//
//   data socket  <- INGRESS (distributor), CORRECTION (peers), NEIGH (distributor, SipHash tag)
//                -> VXLAN straight to a site (neighbour known), EGRESS to the distributor
//                   (neighbour unknown), CORRECTION to the owner, reject replies to the site
//   sync socket  <-> HyperSync datagrams between peers (node.outbox / node.receiveSync)
//   control      heartbeat every heartbeatIntervalMs (at most one in flight), config and
//                distribution fetches (at most one of each in flight, coalesced), fill and
//                verify reports
//
// Data path: every datagram is handled in the buffer it arrived in. The 8-byte member-link
// header is rewritten in place (CORRECTION, EGRESS) or replaced by a VXLAN header, and the
// same buffer is sent on: no copy, no string, no closure per packet (IPv4 neighbours are keyed
// by a number; IPv6 ones by a string, IPv6 being rare here). Reject replies (RST, ICMP) are the
// exception: the engine builds them in its own buffer, so they are copied once.
//
// Invariants kept: after every call into the node its outbox is drained, its `filled` set moved
// to the fill reports and the node's timer re-armed no later than nextDeadlineMs() (one timer,
// at least 1 ms ahead); frames are accepted only from the endpoints the orchestrator named
// (INGRESS and NEIGH from the distributor, CORRECTION and sync from the peers), everything else
// is a counted drop; a control-plane failure never blocks the data path (it is logged,
// rate-limited, and retried at the next heartbeat). Clock: performance.now() (monotonic ms).

import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { totalmem } from "node:os";
import { performance } from "node:perf_hooks";
import { pino, type Logger } from "pino";
import { TandemClient } from "../api/client.js";
import type { EpochTable } from "../distribution/epoch.js";
import { isPowerOfTwo, NO_MEMBER } from "../distribution/rendezvous.js";
import { compilePolicy, type RuleBase } from "../engine/rule-base.js";
import { validatePolicy } from "../engine/policy.js";
import { RouteTable } from "../engine/routing.js";
import { CONN_STATE_NAMES, DROP_REASON_NAMES, Verdict } from "../engine/types.js";
import { ClusterNode, FILL_TARGETS_MAX } from "../hypersync/cluster-node.js";
import { inProtocolVersionRange, PROTOCOL_VERSIONS_DEFAULT, type ProtocolVersionRange } from "../hypersync/protocol-version.js";
import { capacityOfMemory } from "../orchestrator/model.js";
import { decodeRoles } from "../orchestrator/transitions.js";
import { formatIp, formatIpv6, parseIpv4 } from "../packet/addr.js";
import { LinkType } from "../packet/view.js";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { MemberCountersInput } from "./member-reports.js";
import { HeartbeatThread } from "./heartbeat-thread.js";
import { switchRelease } from "./releases.js";
import { FillReporter } from "./fill-reporter.js";
import { softwareVersion } from "../version.js";
import type { DistributionDocument, HeartbeatInput } from "./orchestrator-daemon.js";
import { MATCHES_MAX, type ConnectionFilter, type HeldConnection } from "./connection-queries.js";
import type { MemberConfig, MemberEndpoints } from "./cluster-config.js";
import {
  CORRECTION_HOPS_MAX,
  decodeNeighbours,
  formatEndpoint,
  linkHops,
  linkIfIndex,
  LinkMsg,
  linkTypeOf,
  linkWord,
  MEMBER_LINK_HEADER_BYTES,
  MemberLinkError,
  neighbourKeyOf,
  parseEndpoint,
  u32ToIpv4,
  writeLinkHeader,
  writeVxlanHeader,
  type Endpoint,
} from "./member-link.js";

// ---- bounds and timers ------------------------------------------------------------------

/** Heartbeat period until the first answer names one (the contract's ~40 ms). */
export const HEARTBEAT_INTERVAL_MS_INITIAL = 40;
/** A heartbeat without an answer after this long is given up (the next interval sends a fresh one). */
export const HEARTBEAT_TIMEOUT_MS = 1000;
/** Timeout of the other control requests (config, distribution, reports). */
export const CONTROL_TIMEOUT_MS = 5000;
/** Bounds on the period an answer may set. */
const HEARTBEAT_INTERVAL_MS_MIN = 5;
const HEARTBEAT_INTERVAL_MS_MAX = 10_000;
/** Receive and send buffer of both sockets: absorbs bursts while the event loop is busy. */
export const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
/** Neighbours kept per address family; the oldest learned goes first when full. */
export const NEIGHBOURS_MAX = 65_536;
/** A distribution fetch caused by an unknown endpoint (not by a new epoch) waits this long after the previous fetch. */
export const ENDPOINT_REFETCH_GAP_MS = 250;
/** While the config names no distributor, it is fetched again this often. */
export const DISTRIBUTOR_REFETCH_GAP_MS = 1000;
/** A verification asks one peer at a time and gives up on a peer after this long. */
export const VERIFY_PEER_TIMEOUT_MS = 2000;
/** Verification rounds remembered as answered (ids restart with the orchestrator: a set, not a high-water mark). */
const VERIFY_IDS_KEPT = 32;
/** The same control-plane error is logged at most this often. */
const LOG_REPEAT_MS = 5000;
/** start() retries the first config fetch this long while the orchestrator is unreachable. */
export const START_TIMEOUT_MS_DEFAULT = 30_000;
const START_RETRY_MS = 250;
/** Rule hit counts sent per heartbeat (the rules with hits, first ones first). */
const RULE_HITS_REPORTED_MAX = 1000;

const TWO_POW_32 = 4294967296;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;

// ---- the orchestrator seam ---------------------------------------------------------------

/** What a member sends with each heartbeat (POST /api/members/:appliance/heartbeat). */
export interface MemberHeartbeat {
  endpoints: MemberEndpoints;
  session: number;
  epoch?: number;
  policyRevision?: number;
  cpuPct: number;
  packetsPerSec: number;
  connections: number;
  rttMs?: number;
  counters: MemberCountersInput;
  ruleHits: Record<string, number>;
  pid: number;
  /** HyperSync protocol versions this member reads (the orchestrator picks the group's version from them). */
  hypersync: { min: number; max: number };
  /** The software version this process runs. */
  version: string;
  /** Why the last restart asked for could not happen. */
  restartError?: string;
}

/** The part of the heartbeat answer the member acts on (the API's HeartbeatAnswer satisfies it). */
export interface MemberHeartbeatAnswer {
  group: string | null;
  epoch: number | null;
  policyRevision: number | null;
  transition: { seq: number; phase: string } | null;
  heartbeatIntervalMs: number;
  verify: { id: number; epoch: number } | null;
  /** A connection lookup to answer (absent from older orchestrators). */
  connectionQuery?: ({ id: number } & ConnectionFilter) | null;
  /** Rolling upgrade: restart on this version. */
  restart?: { version: string } | null;
  /** Why the orchestrator did not count this heartbeat (e.g. a version its group does not run). */
  refused?: string | null;
}

/** GET /api/groups/:name/distribution as the member reads it: the orchestrator's document itself. */
export type MemberDistribution = DistributionDocument;

/** The member's way to the orchestrator: TandemClient in production (clientControl), fakes in tests. */
export interface MemberControl {
  heartbeat(input: MemberHeartbeat): Promise<MemberHeartbeatAnswer>;
  config(): Promise<MemberConfig>;
  distribution(group: string): Promise<MemberDistribution | null>;
  reportFills(report: { epoch: number; buckets: number[] }): Promise<unknown>;
  reportVerify(report: { id: number; bucketsChecked: number; mismatched: number[] }): Promise<unknown>;
  reportConnections(report: { id: number; connections: HeldConnection[] }): Promise<unknown>;
}

/**
 * MemberControl over the REST API, with the member's own token. Heartbeats may go through a
 * client of their own with a short timeout: a heartbeat late by more than a second is worth
 * nothing (the member is DOWN after a few hundred ms) and must not hold the next one back.
 */
export function clientControl(client: TandemClient, appliance: string, heartbeatClient: TandemClient = client): MemberControl {
  return {
    heartbeat: (input) => heartbeatClient.heartbeat(appliance, input),
    config: () => client.memberConfig(appliance),
    distribution: (group) => client.distribution(group),
    reportFills: (report) => client.reportFills(appliance, report),
    reportVerify: (report) => client.reportVerify(appliance, report),
    reportConnections: (report) => client.reportConnections(appliance, report),
  };
}

// ---- options and counters ------------------------------------------------------------------

export interface MemberDaemonOptions {
  /** This member's appliance id. */
  appliance: string;
  /** Orchestrator URL: the default control's server, and the host whose route picks the default listen address. */
  orchestrator: string;
  /** Member token for the default control (ignored when `control` is given). */
  token?: string | null;
  control?: MemberControl;
  /** IPv4 address both sockets bind to; default: the local address the OS uses to reach the orchestrator. */
  listen?: string;
  /** Ports of the data and sync sockets (0: OS-chosen, the default). */
  dataPort?: number;
  syncPort?: number;
  /** The address peers and the distributor should send to, when it is not the listen address (NAT, 0.0.0.0). */
  advertise?: string;
  logger?: Logger;
  /** How long start() keeps retrying an unreachable orchestrator. */
  startTimeoutMs?: number;
  /** Heartbeats from a thread of their own (default true over the API; off with an injected control). */
  threadedHeartbeat?: boolean;
  /** HyperSync protocol versions the node reads (default: this build's; tests stand for another build with it). */
  hypersyncVersions?: ProtocolVersionRange;
  /** The software version to report (default: this build's). */
  version?: string;
  /**
   * Rolling upgrades (src/runtime/releases.ts): where releases are installed and the symlink the
   * supervisor starts this member through. Without them a restart request is reported as
   * impossible and the operator restarts the member on the new version by hand.
   */
  releasesDir?: string;
  currentLink?: string;
  /** Called once the CURRENT link points at the requested release: stop and exit for the supervisor. */
  onRestart?: (version: string) => void;
}

/** Member-link drops the daemon makes itself (the engine counts its own verdicts). */
export class LinkDrops {
  /** Datagrams without a valid member-link header. */
  malformed = 0;
  /** A type this member never receives (EGRESS). */
  unexpectedType = 0;
  /** INGRESS/NEIGH not from the distributor, CORRECTION not from a peer. */
  badSource = 0;
  /** CORRECTION with hops >= CORRECTION_HOPS_MAX (a loop between members). */
  hops = 0;
  /** A frame or sync datagram before the member has a node (no group yet). */
  noNode = 0;
  /** A correction to a peer whose data endpoint is unknown. */
  noPeerEndpoint = 0;
  /** A frame to send via the distributor while none is configured. */
  noDistributor = 0;
  /** FORWARD without a usable egress interface. */
  noEgress = 0;
  /** NEIGH whose tag did not verify. */
  neighTag = 0;
  /** NEIGH that did not decode (length, family, interface index). */
  neighMalformed = 0;
  /** Sync datagrams from an address that is no peer's sync endpoint. */
  syncUnknownSource = 0;
  /** Sync datagrams for a peer whose sync endpoint is unknown. */
  syncNoEndpoint = 0;
  /** Socket send errors (reported asynchronously on the socket). */
  sendErrors = 0;
}

export class MemberDaemonCounters {
  /** Frames handed to the node (INGRESS and CORRECTION). */
  framesIn = 0;
  /** Frames forwarded after processing (direct + viaDistributor). */
  forwarded = 0;
  /** ... sent straight to the neighbour's VTEP as VXLAN. */
  direct = 0;
  /** ... sent to the distributor as EGRESS. */
  viaDistributor = 0;
  /** Frames sent to their owner as CORRECTION. */
  corrected = 0;
  /** Reject / time-exceeded replies sent back to the ingress site. */
  replies = 0;
  syncIn = 0;
  syncOut = 0;
  /** Datagrams from an endpoint not allowed to send them (data and sync). */
  badSource = 0;
  neighboursLearned = 0;
  heartbeats = 0;
  heartbeatErrors = 0;
  /** Heartbeat intervals skipped because the previous heartbeat was still in flight. */
  heartbeatsSkipped = 0;
  /** Heartbeats sent more than 3 intervals after the previous one (this process or the orchestrator was slow). */
  heartbeatsLate = 0;
  /** Heartbeats the heartbeat thread withheld because this (main) thread was silent too long. */
  heartbeatsWithheld = 0;
  configFetches = 0;
  distributionFetches = 0;
  /** Distribution documents refused (inconsistent with the config or the node). */
  distributionsRefused = 0;
  fillReports = 0;
  verifyReports = 0;
  readonly drops = new LinkDrops();
}

interface Neighbour {
  mac: Uint8Array;
  vtepAddress: string;
  vtepPort: number;
}

interface PeerEndpoint {
  name: string;
  address: string;
  port: number;
}

interface VerifyRun {
  id: number;
  peers: string[];
  /** Owned buckets per peer as backup (checked when the peer answers). */
  sharedOf: Map<string, number>;
  next: number;
  current: string | null;
  deadlineMs: number;
  bucketsChecked: number;
  mismatched: Set<number>;
  /**
   * Live traffic keeps changes in flight (a backup applies them up to ~150 ms later: see
   * hypersync.md), so a bucket differs for real only when it differs twice, VERIFY_SETTLE_MS
   * apart: pass 1 finds candidates, pass 2 keeps those that still differ.
   */
  pass: 1 | 2;
  candidates: Set<number> | null;
  resumeAtMs: number;
}

/** Wait between the two verification passes: longer than HyperSync's deferral (150 ms) plus a round trip. */
export const VERIFY_SETTLE_MS = 400;

/** HyperSync session: nonzero u32 that grows across restarts (100 ms steps since 2024). */
export function sessionNow(): number {
  return Math.max(1, Math.floor((Date.now() - Date.UTC(2024, 0, 1)) / 100)) >>> 0;
}

/**
 * The connection-table capacity a member builds: the orchestrator's figure (from the memory the
 * appliance is registered with), never more than the same formula gives for the memory this
 * machine really has, so a wrong inventory entry cannot size a table the machine cannot hold.
 */
export function tableCapacityOf(configured: number, machineMemoryBytes: number): number {
  return Math.min(configured, capacityOfMemory(Math.floor(machineMemoryBytes / 2 ** 20)));
}

/** IP version (4, 6) of the Ethernet frame at buf[offset, end), 0 for anything else. Allocates nothing. */
export function ipVersionOfFrame(buf: Uint8Array, offset: number, end: number): number {
  let at = offset + 12;
  for (let tags = 0; tags <= 2; tags++) {
    if (at + 2 > end) return 0;
    const type = (buf[at]! << 8) | buf[at + 1]!;
    if (type === ETHERTYPE_IPV4) return 4;
    if (type === ETHERTYPE_IPV6) return 6;
    if (type !== 0x8100 && type !== 0x88a8 && type !== 0x9100) return 0;
    at += 4;
  }
  return 0;
}

function neighbour6Key(ifIndex: number, ip: Uint8Array, offset: number): string {
  return `${ifIndex}/${formatIpv6(ip, offset)}`;
}

function parseMacText(text: string): Uint8Array | null {
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) return null;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

function isTransient(error: unknown): boolean {
  if (!(error instanceof TandemError)) return false;
  return error.code === ErrorCode.SERVER_UNREACHABLE || error.code === ErrorCode.TIMEOUT || error.code === ErrorCode.STORE_UNAVAILABLE || error.code === ErrorCode.NOT_LEADER || error.code === ErrorCode.BUSY;
}

function bindSocket(socket: Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(new TandemError(ErrorCode.INVALID_ARGUMENT, `cannot bind a UDP socket on ${address}:${port}: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
    socket.once("error", onError);
    socket.bind(port, address, () => {
      socket.off("error", onError);
      resolve();
    });
  });
}

/** The local IPv4 address the OS would use to reach `host` (a connected UDP socket sends nothing). */
export async function localAddressToward(host: string, port: number): Promise<string> {
  const socket = createSocket("udp4");
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(port, host, () => resolve(socket.address().address));
    });
  } catch (error) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `cannot find a local IPv4 address toward ${host}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; pass --listen`, { host });
  } finally {
    socket.close();
  }
}

// ---- the daemon -----------------------------------------------------------------------------

export class MemberDaemon {
  readonly appliance: string;
  readonly counters = new MemberDaemonCounters();
  readonly logger: Logger;
  /** The node, once the member has a group (rebuilt when its identity in the group changes). */
  node: ClusterNode | null = null;
  /** The configuration the node runs (policy: see policyRevision). */
  config: MemberConfig | null = null;
  /** Revision of the policy the engine runs (0: none yet). */
  policyRevision = 0;

  private readonly control: MemberControl;
  private readonly options: MemberDaemonOptions;
  private dataSocket: Socket | null = null;
  private syncSocket: Socket | null = null;
  private dataEndpointValue: Endpoint | null = null;
  private syncEndpointValue: Endpoint | null = null;
  private endpointsText: MemberEndpoints | null = null;
  private started = false;
  private stopped = false;
  private session = 0;

  // Data path state, sized from the config.
  private ifCount = 0;
  private ifVni = new Int32Array(0);
  private ifMac = new Uint8Array(0);
  private ifSiteAddress: string[] = [];
  private ifSitePort = new Int32Array(0);
  private distributor: Endpoint | null = null;
  private neighbourKey: Uint8Array | null = null;
  private readonly neigh4 = new Map<number, Neighbour>();
  private readonly neigh6 = new Map<string, Neighbour>();
  private peerData = new Map<string, Endpoint>();
  private peerSync = new Map<string, Endpoint>();
  private dataPeers: PeerEndpoint[] = [];
  private syncPeers: PeerEndpoint[] = [];
  /** A member of the group has no endpoints in the last document (it did not heartbeat yet). */
  private endpointsIncomplete = false;
  private epochTable: EpochTable | null = null;
  private installedBucketCount = 0;
  private routesKey = "";
  private identityKey = "";

  // Timers.
  private tickTimer: NodeJS.Timeout | null = null;
  private tickAtMs = Infinity;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatIntervalMs = HEARTBEAT_INTERVAL_MS_INITIAL;

  // Control plane state.
  private heartbeatInFlight = false;
  private lastBeatSentMs = 0;
  private lastRttMs = -1;
  /** The software version this process reports. */
  readonly version: string;
  private restarting = false;
  private restartError: string | null = null;
  private configInFlight = false;
  private configAgain = false;
  private lastConfigFetchMs = -Infinity;
  private failedPolicyRevision = -1;
  private distributionInFlight = false;
  private distributionAgain = false;
  private lastDistributionFetchMs = -Infinity;
  /** Highest epoch a frame header announced (one fetch per new number). */
  private epochWanted = 0;
  private transitionKey = "";
  private readonly fills = new FillReporter();
  private verifyRun: VerifyRun | null = null;
  private verifyPumping = false;
  private readonly queriesAnswered = new Set<number>();
  private readonly verifyIdsDone: number[] = [];
  private readonly logRepeats = new Map<string, { lastMs: number; suppressed: number }>();

  // Rates for the heartbeat.
  private lastRateMs = 0;
  private lastCpu: NodeJS.CpuUsage = process.cpuUsage();
  private lastFramesIn = 0;

  constructor(options: MemberDaemonOptions) {
    assert(options.appliance.length > 0, "a member needs an appliance id");
    this.options = options;
    this.appliance = options.appliance;
    this.version = options.version ?? softwareVersion();
    this.logger = (options.logger ?? pino({ level: "info" }, pino.destination(2))).child({ appliance: options.appliance });
    const client = (timeoutMs: number): TandemClient => new TandemClient({ server: options.orchestrator, token: options.token ?? null, timeoutMs });
    this.control = options.control ?? clientControl(client(CONTROL_TIMEOUT_MS), options.appliance, client(HEARTBEAT_TIMEOUT_MS));
    // Over the API, heartbeats go from a thread of their own (heartbeat-thread.ts): the main
    // thread's synchronous work must not make a live member look dead.
    this.threadedHeartbeat = options.control === undefined && options.threadedHeartbeat !== false;
  }

  private readonly threadedHeartbeat: boolean;
  private heartbeatThread: HeartbeatThread | null = null;

  private startHeartbeatThread(): HeartbeatThread {
    const thread = new HeartbeatThread({ server: this.options.orchestrator, token: this.options.token ?? null, appliance: this.appliance, intervalMs: this.heartbeatIntervalMs });
    thread.onAnswer = (answer, rttMs) => {
      this.lastRttMs = rttMs;
      this.counters.heartbeats++;
      if (this.stopped) return;
      const before = this.heartbeatIntervalMs;
      this.onAnswer(answer as MemberHeartbeatAnswer);
      if (this.heartbeatIntervalMs !== before) thread.setIntervalMs(this.heartbeatIntervalMs);
    };
    thread.onError = (message) => {
      this.counters.heartbeatErrors++;
      this.logRepeated("heartbeat", `heartbeat failed; retrying: ${message}`, null);
    };
    thread.onWithheld = (silentMs) => {
      this.counters.heartbeatsWithheld++;
      this.logRepeated("heartbeat-withheld", `main thread silent for ${Math.round(silentMs)} ms: heartbeats withheld`, null);
    };
    return thread;
  }

  /** Where this member receives member-link datagrams (advertised address), once started. */
  get dataEndpoint(): Endpoint {
    assert(this.dataEndpointValue !== null, "member not started");
    return this.dataEndpointValue;
  }

  /** Where this member receives HyperSync datagrams (advertised address), once started. */
  get syncEndpoint(): Endpoint {
    assert(this.syncEndpointValue !== null, "member not started");
    return this.syncEndpointValue;
  }

  /** Neighbours known (both families). */
  get neighbourCount(): number {
    return this.neigh4.size + this.neigh6.size;
  }

  /** Binds the sockets, fetches the configuration, builds the node and starts heartbeating. */
  async start(): Promise<void> {
    assert(!this.started, "member already started");
    this.started = true;
    let url: URL;
    try {
      url = new URL(this.options.orchestrator);
    } catch {
      throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the orchestrator must be a URL, got "${this.options.orchestrator}"`);
    }
    let listen = this.options.listen;
    let discovered: string | null = null;
    if (listen === undefined || listen === "0.0.0.0") {
      const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
      discovered = await localAddressToward(url.hostname.replace(/^\[|\]$/g, ""), port);
      listen ??= discovered;
    }
    if (parseIpv4(listen) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the listen address must be IPv4, got "${listen}"`);
    const advertise = this.options.advertise ?? (listen === "0.0.0.0" ? discovered! : listen);
    if (parseIpv4(advertise) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `the advertised address must be IPv4, got "${advertise}"`);

    const data = createSocket({ type: "udp4" });
    const sync = createSocket({ type: "udp4" });
    this.dataSocket = data;
    this.syncSocket = sync;
    try {
      await bindSocket(data, listen, this.options.dataPort ?? 0);
      await bindSocket(sync, listen, this.options.syncPort ?? 0);
    } catch (error) {
      await this.closeSockets();
      throw error;
    }
    for (const socket of [data, sync]) {
      this.sizeBuffers(socket);
      socket.on("error", (error) => {
        this.counters.drops.sendErrors++;
        this.logRepeated("socket-error", "socket error", error);
      });
    }
    data.on("message", this.onData);
    sync.on("message", this.onSync);
    this.dataEndpointValue = { address: advertise, port: data.address().port };
    this.syncEndpointValue = { address: advertise, port: sync.address().port };
    this.endpointsText = { data: formatEndpoint(this.dataEndpointValue), sync: formatEndpoint(this.syncEndpointValue) };

    let config: MemberConfig;
    try {
      config = await this.fetchConfigAtStart();
      if (this.stopped) return; // stop() came while the orchestrator was being reached
      this.applyConfig(config);
    } catch (error) {
      await this.closeSockets();
      throw error;
    }
    this.lastRateMs = performance.now();
    this.lastCpu = process.cpuUsage();
    this.logger.info({ data: this.endpointsText.data, sync: this.endpointsText.sync, group: config.group, memberId: config.memberId }, "member running");
    this.beat();
  }

  /** Closes the sockets and clears the timers; control-plane answers still in flight are ignored. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer !== null) clearTimeout(this.tickTimer);
    if (this.heartbeatTimer !== null) clearTimeout(this.heartbeatTimer);
    this.tickTimer = null;
    this.heartbeatTimer = null;
    if (this.heartbeatThread !== null) await this.heartbeatThread.stop();
    await this.closeSockets();
    this.logger.info("member stopped");
  }

  private closeSockets(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const socket of [this.dataSocket, this.syncSocket]) {
      if (socket === null) continue;
      closing.push(
        new Promise<void>((resolve) => {
          try {
            socket.close(() => resolve());
          } catch (error) {
            // Closing a socket that never bound throws ERR_SOCKET_DGRAM_NOT_RUNNING: nothing to release.
            this.logger.debug({ err: error }, "socket already closed");
            resolve();
          }
        }),
      );
    }
    this.dataSocket = null;
    this.syncSocket = null;
    return Promise.all(closing).then(() => undefined);
  }

  private sizeBuffers(socket: Socket): void {
    try {
      socket.setRecvBufferSize(SOCKET_BUFFER_BYTES);
      socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
    } catch (error) {
      this.logger.warn({ err: error, bytes: SOCKET_BUFFER_BYTES }, "cannot size the socket buffers; bursts may be dropped by the kernel");
    }
  }

  private async fetchConfigAtStart(): Promise<MemberConfig> {
    const deadline = performance.now() + (this.options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT);
    while (true) {
      try {
        this.counters.configFetches++;
        this.lastConfigFetchMs = performance.now();
        return await this.control.config();
      } catch (error) {
        if (!isTransient(error) || performance.now() >= deadline || this.stopped) throw error;
        this.logRepeated("config-start", "orchestrator not reachable yet; retrying", error);
        await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
        if (this.stopped) throw new TandemError(ErrorCode.INVALID_STATE, "member stopped while starting");
      }
    }
  }

  // ---- configuration ---------------------------------------------------------------------

  /** Builds the node (first config, or a new identity in the group) or updates policy, routes and endpoints. */
  private applyConfig(config: MemberConfig): void {
    const identity = JSON.stringify([config.group, config.memberId, config.clusterId, config.clusterKey, config.hashSeed, config.bucketCount, config.capacity]);
    const routesKey = JSON.stringify([config.interfaces, config.routes]);
    if (config.group === null) {
      if (this.node !== null) this.logger.warn({ group: this.config?.group }, "member left its group; its node stops");
      this.dropNode();
      this.config = config;
      this.identityKey = identity;
      return;
    }
    if (this.node === null || identity !== this.identityKey) {
      // Everything is built before anything is replaced: a bad config leaves the running node alone.
      const ruleBase = this.compile(config);
      const routes = this.buildRoutes(config);
      const key = Buffer.from(config.clusterKey, "base64");
      if (key.length < 16) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `cluster key of ${key.length} bytes; at least 16 expected`);
      if (!Number.isInteger(config.memberId) || config.memberId < 1 || config.memberId > 0xffff) {
        throw new TandemError(ErrorCode.INVALID_ARGUMENT, `memberId ${config.memberId} is not 1..65535`);
      }
      if (this.node !== null) this.logger.warn({ from: this.identityKey, to: identity }, "member identity changed: new node");
      this.dropNode();
      this.session = Math.max(sessionNow(), this.session + 1) >>> 0;
      const clusterKey = new Uint8Array(key.buffer, key.byteOffset, key.length).slice();
      const capacity = tableCapacityOf(config.capacity, totalmem());
      if (capacity < config.capacity) {
        this.logger.warn({ configured: config.capacity, capacity, memoryMb: Math.floor(totalmem() / 2 ** 20) }, "connection table sized to this machine's memory: the appliance is registered with more memory than it has");
      }
      this.node = new ClusterNode(
        { name: this.appliance, memberId: config.memberId, clusterId: config.clusterId, clusterKey, hashSeed: config.hashSeed, capacity, ruleBase, routes, session: this.session, protocolVersions: this.options.hypersyncVersions },
        performance.now(),
      );
      this.neighbourKey = neighbourKeyOf(clusterKey);
      this.installInterfaces(config);
      this.policyRevision = config.policyRevision;
      this.routesKey = routesKey;
      this.identityKey = identity;
      this.config = config;
      this.distributor = config.distributor === null ? null : this.endpointOrNull(config.distributor, "distributor");
      this.logger.info({ group: config.group, memberId: config.memberId, session: this.session, policyRevision: config.policyRevision }, "node built");
      this.wantDistribution();
      return;
    }
    const node = this.node;
    if (config.policyRevision !== this.policyRevision) {
      try {
        node.engine.ruleBase = this.compile(config);
        this.policyRevision = config.policyRevision;
        this.logger.info({ policyRevision: config.policyRevision }, "policy applied");
      } catch (error) {
        this.failedPolicyRevision = config.policyRevision;
        this.logger.error({ err: error, policyRevision: config.policyRevision }, "policy refused; the previous one stays");
      }
    }
    if (routesKey !== this.routesKey) {
      try {
        const routes = this.buildRoutes(config);
        node.engine.routes = routes;
        this.installInterfaces(config);
        this.routesKey = routesKey;
        this.logger.info({ interfaces: config.interfaces.length, routes: config.routes.length }, "interfaces and routes applied");
      } catch (error) {
        this.logger.error({ err: error }, "interfaces or routes refused; the previous ones stay");
      }
    }
    this.distributor = config.distributor === null ? null : this.endpointOrNull(config.distributor, "distributor");
    this.config = config;
  }

  private compile(config: MemberConfig): RuleBase {
    return compilePolicy(validatePolicy(config.policy));
  }

  private buildRoutes(config: MemberConfig): RouteTable {
    config.interfaces.forEach((ifc, position) => {
      if (ifc.index !== position) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `interface ${ifc.name} has index ${ifc.index} at position ${position}`);
      if (parseMacText(ifc.mac) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `interface ${ifc.name}: bad MAC "${ifc.mac}"`);
      if (!Number.isInteger(ifc.sitePort) || ifc.sitePort < 1 || ifc.sitePort > 65535) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `interface ${ifc.name}: bad site port ${ifc.sitePort}`);
      if (parseIpv4(ifc.siteEndpoint) === null) throw new TandemError(ErrorCode.INVALID_ARGUMENT, `interface ${ifc.name}: bad site endpoint "${ifc.siteEndpoint}"`);
    });
    return new RouteTable(
      config.interfaces.map((ifc) => ({ name: ifc.name, index: ifc.index, addresses: [ifc.gateway] })),
      config.routes,
    );
  }

  private installInterfaces(config: MemberConfig): void {
    const n = config.interfaces.length;
    this.ifCount = n;
    this.ifVni = Int32Array.from(config.interfaces, (ifc) => ifc.vni);
    this.ifMac = new Uint8Array(n * 6);
    config.interfaces.forEach((ifc, i) => this.ifMac.set(parseMacText(ifc.mac)!, i * 6));
    this.ifSiteAddress = config.interfaces.map((ifc) => ifc.siteEndpoint);
    this.ifSitePort = Int32Array.from(config.interfaces, (ifc) => ifc.sitePort);
  }

  private dropNode(): void {
    this.node = null;
    this.epochTable = null;
    this.installedBucketCount = 0;
    this.epochWanted = 0;
    this.verifyRun = null;
    this.neigh4.clear();
    this.neigh6.clear();
    this.peerData = new Map();
    this.peerSync = new Map();
    this.dataPeers = [];
    this.syncPeers = [];
    this.fills.reset();
    if (this.tickTimer !== null) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.tickAtMs = Infinity;
  }

  /** A peer's or the distributor's endpoint; null when malformed (port 0 included: send() would throw on it). */
  private endpointOrNull(text: string, what: string): Endpoint | null {
    const endpoint = parseEndpoint(text);
    if (endpoint === null || endpoint.port === 0) {
      this.logRepeated(`endpoint-${what}`, `malformed ${what} endpoint "${text}"`, null);
      return null;
    }
    return endpoint;
  }

  /** Fetches the config again (at most one fetch in flight; a request meanwhile fetches once more after it). */
  private refreshConfig(): void {
    if (this.stopped) return;
    if (this.configInFlight) {
      this.configAgain = true;
      return;
    }
    this.configInFlight = true;
    this.counters.configFetches++;
    this.lastConfigFetchMs = performance.now();
    this.control.config().then(
      (config) => {
        this.configInFlight = false;
        if (this.stopped) return;
        try {
          this.applyConfig(config);
        } catch (error) {
          if (!(error instanceof TandemError)) throw error;
          this.failedPolicyRevision = config.policyRevision;
          this.logger.error({ err: error }, "configuration refused; the member keeps what it runs");
        }
        if (this.configAgain) {
          this.configAgain = false;
          this.refreshConfig();
        }
      },
      (error: unknown) => {
        this.configInFlight = false;
        this.configAgain = false;
        this.logRepeated("config", "config fetch failed; retrying at the next heartbeat", error);
      },
    );
  }

  // ---- distribution ------------------------------------------------------------------------

  /** Fetches the group's distribution (at most one fetch in flight; requests meanwhile coalesce into one more). */
  private wantDistribution(): void {
    if (this.stopped || this.config === null || this.config.group === null || this.node === null) return;
    if (this.distributionInFlight) {
      this.distributionAgain = true;
      return;
    }
    this.distributionInFlight = true;
    this.counters.distributionFetches++;
    this.lastDistributionFetchMs = performance.now();
    const group = this.config.group;
    this.control.distribution(group).then(
      (doc) => {
        this.distributionInFlight = false;
        if (this.stopped) return;
        if (doc !== null) this.applyDistribution(doc);
        if (this.distributionAgain) {
          this.distributionAgain = false;
          this.wantDistribution();
        }
      },
      (error: unknown) => {
        this.distributionInFlight = false;
        this.distributionAgain = false;
        this.epochWanted = 0; // the next frame of a newer epoch asks again
        this.transitionKey = "\u0000"; // and the next heartbeat, even when only the fill map changed
        this.logRepeated("distribution", "distribution fetch failed; retrying at the next heartbeat", error);
      },
    );
  }

  /** A fetch for endpoints (not for an epoch): rate-limited, the data path may ask per datagram. */
  private wantEndpoints(): void {
    if (performance.now() - this.lastDistributionFetchMs >= ENDPOINT_REFETCH_GAP_MS) this.wantDistribution();
  }

  private refuseDistribution(doc: MemberDistribution, why: string): void {
    this.counters.distributionsRefused++;
    this.logRepeated("distribution-refused", `distribution refused: ${why}`, null, { group: doc.group, epoch: doc.epoch });
  }

  /** Installs a distribution document: checked first (setEpoch asserts what it assumes). */
  private applyDistribution(doc: MemberDistribution): void {
    const node = this.node;
    const config = this.config;
    if (node === null || config === null || doc.group !== config.group) return;
    if (doc.epoch < node.epoch) return; // an older answer overtaken by a newer one
    const bucketCount = doc.bucketCount;
    if (!Number.isInteger(bucketCount) || !isPowerOfTwo(bucketCount)) return this.refuseDistribution(doc, `bucket count ${bucketCount} is not a power of two`);
    if (this.installedBucketCount !== 0 && bucketCount !== this.installedBucketCount) return this.refuseDistribution(doc, "the bucket count changed");
    if ((doc.seed | 0) !== (config.hashSeed | 0)) return this.refuseDistribution(doc, "seed differs from the config's hash seed");
    const owner = decodeRoles(doc.owner, bucketCount);
    const backup = decodeRoles(doc.backup, bucketCount);
    if (owner === null || backup === null) return this.refuseDistribution(doc, "owner/backup of the wrong size");
    const memberCount = doc.members.length;
    if (doc.weights.length !== memberCount) return this.refuseDistribution(doc, "weights and members differ in length");
    for (let b = 0; b < bucketCount; b++) {
      if (owner[b]! < 0 || owner[b]! >= memberCount || backup[b]! < NO_MEMBER || backup[b]! >= memberCount) return this.refuseDistribution(doc, `bucket ${b} names no member`);
    }
    const fill = new Map<number, readonly string[]>();
    for (const f of doc.fills) {
      if (!Number.isInteger(f.bucket) || f.bucket < 0 || f.bucket >= bucketCount || f.to.length > FILL_TARGETS_MAX) return this.refuseDistribution(doc, `fill of bucket ${f.bucket}`);
      fill.set(f.bucket, [...f.to]);
    }
    const peers = new Map<string, number>();
    for (const [name, id] of Object.entries(doc.memberIds ?? {})) {
      if (!Number.isInteger(id) || id < 1 || id > 0xffff) return this.refuseDistribution(doc, `member ${name} has id ${id}`);
      if (name === this.appliance) {
        if (id !== node.memberId) {
          // The orchestrator renumbered this member: the node must be rebuilt from a fresh config.
          this.refreshConfig();
          return this.refuseDistribution(doc, `this member's id is ${id}, the node runs ${node.memberId}`);
        }
        continue;
      }
      if (id === node.memberId) return this.refuseDistribution(doc, `member ${name} has this member's id ${id}`);
      peers.set(name, id);
    }
    this.installEndpoints(doc, peers);
    this.applyHypersyncVersion(node, doc);
    const table: EpochTable = { epoch: doc.epoch, seed: doc.seed, table: { bucketCount, members: [...doc.members], weights: [...doc.weights], owner, backup } };
    const before = node.epoch;
    const startedMs = performance.now();
    node.setEpoch(table, fill, peers, startedMs);
    const tookMs = performance.now() - startedMs;
    if (tookMs > 50) this.logger.warn({ epoch: doc.epoch, tookMs: Math.round(tookMs), fills: doc.fills.length }, "installing the epoch took long");
    this.epochTable = table;
    this.installedBucketCount = bucketCount;
    if (node.epoch !== before) this.logger.info({ epoch: node.epoch, members: doc.members, fills: doc.fills.length }, "epoch installed");
    this.afterCall();
  }

  /**
   * Seals HyperSync datagrams with the document's version (the highest every member of the
   * group reads). One this node does not read keeps the current version and is logged: the
   * document's tables still install.
   */
  private applyHypersyncVersion(node: ClusterNode, doc: MemberDistribution): void {
    const version: unknown = (doc as Partial<MemberDistribution>).hypersyncVersion; // absent from older orchestrators
    if (version === undefined || version === node.protocolVersion) return;
    const range = node.protocolVersions;
    if (typeof version !== "number" || !inProtocolVersionRange(range, version)) {
      this.logRepeated("hypersync-version", `HyperSync protocol version ${String(version)} is outside this member's range ${range.min}..${range.max}; it keeps sending ${node.protocolVersion}`, null, {
        epoch: doc.epoch,
      });
      return;
    }
    const from = node.protocolVersion;
    node.setProtocolVersion(version);
    this.logger.info({ from, to: version, epoch: doc.epoch }, "HyperSync protocol version changed");
  }

  private installEndpoints(doc: MemberDistribution, peers: ReadonlyMap<string, number>): void {
    const peerData = new Map<string, Endpoint>();
    const peerSync = new Map<string, Endpoint>();
    let incomplete = false;
    for (const name of peers.keys()) {
      const e = doc.endpoints?.[name] ?? null;
      const data = e === null ? null : this.endpointOrNull(e.data, `data of ${name}`);
      const sync = e === null ? null : this.endpointOrNull(e.sync, `sync of ${name}`);
      if (data === null || sync === null) {
        incomplete = true;
        continue;
      }
      peerData.set(name, data);
      peerSync.set(name, sync);
    }
    this.peerData = peerData;
    this.peerSync = peerSync;
    this.dataPeers = [...peerData].map(([name, e]) => ({ name, address: e.address, port: e.port }));
    this.syncPeers = [...peerSync].map(([name, e]) => ({ name, address: e.address, port: e.port }));
    this.endpointsIncomplete = incomplete;
  }

  // ---- data socket ---------------------------------------------------------------------------

  private isDistributor(rinfo: RemoteInfo): boolean {
    const d = this.distributor;
    return d !== null && rinfo.port === d.port && rinfo.address === d.address;
  }

  private isDataPeer(rinfo: RemoteInfo): boolean {
    const peers = this.dataPeers;
    for (let i = 0; i < peers.length; i++) if (peers[i]!.port === rinfo.port && peers[i]!.address === rinfo.address) return true;
    return false;
  }

  private syncPeerOf(rinfo: RemoteInfo): string | null {
    const peers = this.syncPeers;
    for (let i = 0; i < peers.length; i++) if (peers[i]!.port === rinfo.port && peers[i]!.address === rinfo.address) return peers[i]!.name;
    return null;
  }

  private readonly onData = (buf: Buffer, rinfo: RemoteInfo): void => {
    if (this.stopped) return;
    const length = buf.length;
    const type = linkTypeOf(buf, length);
    const drops = this.counters.drops;
    switch (type) {
      case LinkMsg.INGRESS:
        if (!this.isDistributor(rinfo)) return this.badSource();
        this.receiveFrame(buf, length, 0);
        return;
      case LinkMsg.CORRECTION: {
        if (!this.isDataPeer(rinfo)) {
          this.badSource();
          if (this.node !== null) this.wantEndpoints(); // a restarted peer on new ports
          return;
        }
        const hops = linkHops(buf);
        if (hops >= CORRECTION_HOPS_MAX) {
          drops.hops++;
          return;
        }
        this.receiveFrame(buf, length, hops);
        return;
      }
      case LinkMsg.NEIGH:
        if (!this.isDistributor(rinfo)) return this.badSource();
        this.learnNeighbours(buf, length);
        return;
      case 0:
        drops.malformed++;
        return;
      default:
        drops.unexpectedType++;
    }
  };

  private badSource(): void {
    this.counters.badSource++;
    this.counters.drops.badSource++;
  }

  /** One INGRESS/CORRECTION frame: the node decides, then the frame goes where the verdict says. */
  private receiveFrame(buf: Buffer, length: number, hops: number): void {
    const node = this.node;
    if (node === null) {
      this.counters.drops.noNode++;
      return;
    }
    this.counters.framesIn++;
    const ifIndex = linkIfIndex(buf);
    const epoch = linkWord(buf);
    if (epoch > node.epoch && epoch > this.epochWanted) {
      // The distributor routes by a newer table than this node knows: fetch it (once per number).
      this.epochWanted = epoch;
      this.wantDistribution();
    }
    const engine = node.engine;
    // receiveFrame calls the engine only for frames it processes: clear the last reply first.
    engine.reply.length = 0;
    const verdict = node.receiveFrame(buf, MEMBER_LINK_HEADER_BYTES, length - MEMBER_LINK_HEADER_BYTES, LinkType.ETHERNET, performance.now());
    const correctTo = node.correctTo;
    if (correctTo !== null) {
      this.sendCorrection(buf, length, correctTo, hops, ifIndex, epoch);
    } else {
      if (verdict === Verdict.FORWARD) this.forward(buf, length, node);
      if (engine.reply.length > 0) this.sendReply(node, ifIndex);
    }
    this.afterCall();
  }

  private sendCorrection(buf: Buffer, length: number, to: string, hops: number, ifIndex: number, epoch: number): void {
    const endpoint = this.peerData.get(to);
    if (endpoint === undefined) {
      this.counters.drops.noPeerEndpoint++;
      this.wantEndpoints();
      return;
    }
    writeLinkHeader(buf, 0, LinkMsg.CORRECTION, hops + 1, ifIndex, epoch);
    this.dataSocket!.send(buf, 0, length, endpoint.port, endpoint.address);
    this.counters.corrected++;
  }

  /**
   * A processed frame leaves through the engine's egress interface: straight to the next
   * hop's VTEP when its neighbour is known (MACs rewritten, VXLAN header over the link header),
   * else to the distributor as EGRESS (it resolves the next hop and encapsulates).
   */
  private forward(buf: Buffer, length: number, node: ClusterNode): void {
    const egress = node.engine.egress;
    const routes = node.engine.routes;
    if (egress < 0 || egress >= this.ifCount || routes === null) {
      this.counters.drops.noEgress++;
      return;
    }
    const version = ipVersionOfFrame(buf, MEMBER_LINK_HEADER_BYTES, length);
    let neighbour: Neighbour | undefined;
    let nextHop4 = 0;
    if (version === 4) {
      nextHop4 = routes.lastNextHop4 >>> 0;
      neighbour = this.neigh4.get(egress * TWO_POW_32 + nextHop4);
    } else if (version === 6 && this.neigh6.size > 0) {
      neighbour = this.neigh6.get(neighbour6Key(egress, routes.lastNextHop6, 0));
    }
    if (neighbour !== undefined) {
      const mac = neighbour.mac;
      const ifMac = this.ifMac;
      const at = MEMBER_LINK_HEADER_BYTES;
      for (let i = 0; i < 6; i++) {
        buf[at + i] = mac[i]!;
        buf[at + 6 + i] = ifMac[egress * 6 + i]!;
      }
      writeVxlanHeader(buf, 0, this.ifVni[egress]!);
      this.dataSocket!.send(buf, 0, length, neighbour.vtepPort, neighbour.vtepAddress);
      this.counters.forwarded++;
      this.counters.direct++;
      return;
    }
    const distributor = this.distributor;
    if (distributor === null) {
      this.counters.drops.noDistributor++;
      return;
    }
    writeLinkHeader(buf, 0, LinkMsg.EGRESS, 0, egress, nextHop4);
    this.dataSocket!.send(buf, 0, length, distributor.port, distributor.address);
    this.counters.forwarded++;
    this.counters.viaDistributor++;
  }

  /**
   * A reply the engine built (RST or ICMP for a reject, ICMP time exceeded) goes back out of
   * the ingress interface. Its Ethernet header mirrors the offending frame's (the engine swaps
   * the MACs), which is already right for the hop it came from, so it is sent as VXLAN to the
   * ingress interface's site endpoint. Copied: the engine reuses its reply buffer.
   */
  private sendReply(node: ClusterNode, ifIndex: number): void {
    const reply = node.engine.reply;
    if (ifIndex >= this.ifCount) {
      this.counters.drops.noEgress++;
      return;
    }
    const out = Buffer.allocUnsafe(MEMBER_LINK_HEADER_BYTES + reply.length);
    out.set(reply.buf.subarray(0, reply.length), MEMBER_LINK_HEADER_BYTES);
    writeVxlanHeader(out, 0, this.ifVni[ifIndex]!);
    this.dataSocket!.send(out, 0, out.length, this.ifSitePort[ifIndex]!, this.ifSiteAddress[ifIndex]!);
    this.counters.replies++;
  }

  /** NEIGH from the distributor: authenticated neighbour entries (control path: may allocate). */
  private learnNeighbours(buf: Buffer, length: number): void {
    const key = this.neighbourKey;
    if (key === null) {
      this.counters.drops.noNode++;
      return;
    }
    const entries = decodeNeighbours(buf, length, key);
    if (typeof entries === "number") {
      if (entries === MemberLinkError.TAG) this.counters.drops.neighTag++;
      else this.counters.drops.neighMalformed++;
      return;
    }
    for (const e of entries) {
      if (e.ifIndex >= this.ifCount || e.vtepPort === 0) {
        this.counters.drops.neighMalformed++;
        continue;
      }
      const neighbour: Neighbour = { mac: e.mac, vtepAddress: u32ToIpv4(e.vtepIp), vtepPort: e.vtepPort };
      if (e.ip.length === 4) {
        const ip = ((e.ip[0]! << 24) | (e.ip[1]! << 16) | (e.ip[2]! << 8) | e.ip[3]!) >>> 0;
        learn(this.neigh4, e.ifIndex * TWO_POW_32 + ip, neighbour);
      } else {
        learn(this.neigh6, neighbour6Key(e.ifIndex, e.ip, 0), neighbour);
      }
      this.counters.neighboursLearned++;
    }
  }

  // ---- sync socket ---------------------------------------------------------------------------

  private readonly onSync = (buf: Buffer, rinfo: RemoteInfo): void => {
    if (this.stopped) return;
    const node = this.node;
    if (node === null) {
      this.counters.drops.noNode++;
      return;
    }
    const name = this.syncPeerOf(rinfo);
    if (name === null) {
      this.counters.badSource++;
      this.counters.drops.syncUnknownSource++;
      this.wantEndpoints();
      return;
    }
    this.counters.syncIn++;
    node.receiveSync(name, buf, buf.length, performance.now());
    this.afterCall();
  };

  // ---- after every call into the node ---------------------------------------------------------

  /** Sends the node's outbox, moves its fills to the report, re-arms its timer. */
  private afterCall(): void {
    const node = this.node;
    if (node === null || this.stopped) return;
    const outbox = node.outbox;
    if (outbox.length > 0) {
      const socket = this.syncSocket!;
      for (let i = 0; i < outbox.length; i++) {
        const d = outbox[i]!;
        const endpoint = this.peerSync.get(d.to);
        if (endpoint === undefined) {
          this.counters.drops.syncNoEndpoint++;
          continue;
        }
        socket.send(d.bytes, 0, d.bytes.length, endpoint.port, endpoint.address);
        this.counters.syncOut++;
      }
      if (this.counters.drops.syncNoEndpoint > 0 && this.endpointsIncomplete) this.wantEndpoints();
      outbox.length = 0;
    }
    if (node.filled.size > 0) {
      this.fills.add(node.filled);
      node.filled.clear();
      this.flushFills();
    }
    if (this.verifyRun !== null) this.pumpVerify();
    this.armTimer(node);
  }

  /** One timer for the node, at its next deadline (never earlier than 1 ms from now; an earlier timer stays). */
  private armTimer(node: ClusterNode): void {
    const at = node.nextDeadlineMs();
    if (!Number.isFinite(at)) return;
    const now = performance.now();
    const fireAtMs = Math.max(at, now + 1);
    if (this.tickTimer !== null) {
      if (this.tickAtMs <= fireAtMs) return;
      clearTimeout(this.tickTimer);
    }
    this.tickAtMs = fireAtMs;
    this.tickTimer = setTimeout(this.onTick, fireAtMs - now);
  }

  private readonly onTick = (): void => {
    this.tickTimer = null;
    this.tickAtMs = Infinity;
    const node = this.node;
    if (node === null || this.stopped) return;
    node.tick(performance.now());
    this.afterCall();
  };

  private flushFills(): void {
    const node = this.node;
    if (node === null || this.stopped) return;
    const report = this.fills.take(node.epoch);
    if (report === null) return;
    this.control.reportFills(report).then(
      (answer) => {
        this.fills.answered(report, answer);
        this.counters.fillReports++;
        this.flushFills();
      },
      (error: unknown) => {
        // Kept for the next heartbeat (dropped if the node changed meanwhile: its fills are its own).
        this.fills.failed(report);
        this.logRepeated("fills", "fill report failed; retrying at the next heartbeat", error, { buckets: report.buckets.length });
      },
    );
  }

  // ---- heartbeat -----------------------------------------------------------------------------

  private readonly beat = (): void => {
    this.heartbeatTimer = null;
    if (this.stopped) return;
    this.heartbeatTimer = setTimeout(this.beat, this.heartbeatIntervalMs);
    const now = performance.now();
    this.flushFills();
    if (this.verifyRun !== null) this.pumpVerify();
    if (this.node !== null && this.endpointsIncomplete) this.wantEndpoints();
    if (this.config !== null && this.config.group !== null && this.config.distributor === null && now - this.lastConfigFetchMs >= DISTRIBUTOR_REFETCH_GAP_MS) this.refreshConfig();
    if (this.threadedHeartbeat) {
      this.heartbeatThread ??= this.startHeartbeatThread();
      this.heartbeatThread.report(this.heartbeatInput(now) as HeartbeatInput);
      return;
    }
    if (this.heartbeatInFlight) {
      this.counters.heartbeatsSkipped++;
      return;
    }
    const input = this.heartbeatInput(now);
    if (this.lastBeatSentMs > 0 && now - this.lastBeatSentMs > 3 * this.heartbeatIntervalMs) {
      this.counters.heartbeatsLate++;
      this.logRepeated("heartbeat-late", `heartbeat ${Math.round(now - this.lastBeatSentMs)} ms after the previous one (last round trip ${Math.round(this.lastRttMs)} ms)`, null);
    }
    this.lastBeatSentMs = now;
    this.heartbeatInFlight = true;
    this.control.heartbeat(input).then(
      (answer) => {
        this.heartbeatInFlight = false;
        this.lastRttMs = performance.now() - now;
        this.counters.heartbeats++;
        if (!this.stopped) this.onAnswer(answer);
      },
      (error: unknown) => {
        this.heartbeatInFlight = false;
        this.counters.heartbeatErrors++;
        this.logRepeated("heartbeat", "heartbeat failed; retrying", error);
      },
    );
  };

  /** Rolling upgrade: switch CURRENT to the release and hand over to the supervisor (once). */
  private restartOn(version: string): void {
    if (this.restarting || version === this.version) return;
    const o = this.options;
    if (o.releasesDir === undefined || o.currentLink === undefined || o.onRestart === undefined) {
      this.restartError = `started without --releases/--current: restart ${o.appliance} on ${version} by hand`;
    } else {
      try {
        const dir = switchRelease(o.releasesDir, o.currentLink, version);
        this.restarting = true;
        this.restartError = null;
        this.logger.info({ version, release: dir, from: this.version }, "restarting on another release (rolling upgrade)");
        o.onRestart(version);
        return;
      } catch (error) {
        this.restartError = error instanceof Error ? error.message : String(error);
      }
    }
    this.logRepeated("restart-error", `cannot restart on ${version}: ${this.restartError}`, null);
  }

  /** The HyperSync versions this member reads: its node's, or (before it has one) what the node will read. */
  private hypersyncVersions(): { min: number; max: number } {
    const r = this.node?.protocolVersions ?? this.options.hypersyncVersions ?? PROTOCOL_VERSIONS_DEFAULT;
    return { min: r.min, max: r.max };
  }

  private heartbeatInput(now: number): MemberHeartbeat {
    const node = this.node;
    const elapsedMs = Math.max(1, now - this.lastRateMs);
    const cpu = process.cpuUsage(this.lastCpu);
    const cpuPct = ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100;
    const packetsPerSec = ((this.counters.framesIn - this.lastFramesIn) * 1000) / elapsedMs;
    this.lastRateMs = now;
    this.lastCpu = process.cpuUsage();
    this.lastFramesIn = this.counters.framesIn;
    const input: MemberHeartbeat = {
      endpoints: this.endpointsText!,
      session: this.session,
      cpuPct: Math.round(cpuPct * 10) / 10,
      packetsPerSec: Math.round(packetsPerSec),
      connections: node === null ? 0 : node.engine.table.size,
      counters: this.countersReport(),
      ruleHits: this.ruleHits(),
      pid: process.pid,
      hypersync: this.hypersyncVersions(),
      version: this.version,
    };
    if (this.restartError !== null) input.restartError = this.restartError;
    if (node !== null && node.epoch > 0) input.epoch = node.epoch;
    if (this.policyRevision > 0) input.policyRevision = this.policyRevision;
    if (this.lastRttMs >= 0) input.rttMs = Math.round(this.lastRttMs * 10) / 10;
    return input;
  }

  private countersReport(): MemberCountersInput {
    const node = this.node;
    const drops: Record<string, number> = {};
    const linkDrops = this.counters.drops as unknown as Record<string, number>;
    for (const name of Object.keys(linkDrops)) {
      const n = linkDrops[name]!;
      if (n > 0) drops[`link-${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`] = n;
    }
    if (node === null) return { packets: 0, drops };
    const engine = node.engine.counters;
    for (let r = 1; r < DROP_REASON_NAMES.length; r++) if (engine.dropReasons[r]! > 0) drops[DROP_REASON_NAMES[r]!] = engine.dropReasons[r]!;
    if (node.counters.notOwnerDrops > 0) drops["not-owner"] = (drops["not-owner"] ?? 0) + node.counters.notOwnerDrops;
    const out: MemberCountersInput = {
      packets: node.counters.frames,
      drops,
      corrections: node.counters.corrections,
      syncRecordsSent: node.counters.syncRecordsSent,
      syncDatagramsSent: node.counters.syncDatagramsSent,
      syncRecordsApplied: node.counters.syncRecordsApplied,
      badDatagrams: node.counters.badDatagrams,
      syncLagMs: Math.round(node.syncLagMs(performance.now()) * 10) / 10,
    };
    if (node.counters.reprotectMs >= 0) out.reprotectMs = node.counters.reprotectMs;
    return out;
  }

  private ruleHits(): Record<string, number> {
    const out: Record<string, number> = {};
    const ruleBase = this.node?.engine.ruleBase ?? null;
    if (ruleBase === null) return out;
    let reported = 0;
    for (let i = 0; i < ruleBase.ruleCount && reported < RULE_HITS_REPORTED_MAX; i++) {
      const hits = ruleBase.hits[i]!;
      if (hits === 0) continue;
      out[ruleBase.nameOf(i)] = hits;
      reported++;
    }
    return out;
  }

  private onAnswer(answer: MemberHeartbeatAnswer): void {
    if (Number.isFinite(answer.heartbeatIntervalMs)) {
      this.heartbeatIntervalMs = Math.min(HEARTBEAT_INTERVAL_MS_MAX, Math.max(HEARTBEAT_INTERVAL_MS_MIN, answer.heartbeatIntervalMs));
    }
    if (answer.refused !== undefined && answer.refused !== null) this.logRepeated("refused", `the orchestrator does not count this member's heartbeats: ${answer.refused}`, null);
    if (answer.restart !== undefined && answer.restart !== null) this.restartOn(answer.restart.version);
    const config = this.config;
    if (config === null) return;
    if (answer.group !== config.group || (answer.group !== null && this.node === null)) {
      this.refreshConfig();
      return;
    }
    const node = this.node;
    if (node === null) return;
    if (answer.policyRevision !== null && answer.policyRevision !== this.policyRevision && answer.policyRevision !== this.failedPolicyRevision) this.refreshConfig();
    // A fill phase keeps the epoch number and changes the fill map: the transition says so.
    const transitionKey = answer.transition === null ? "" : `${answer.transition.seq}:${answer.transition.phase}`;
    if (answer.epoch !== null && (answer.epoch !== node.epoch || transitionKey !== this.transitionKey)) {
      this.transitionKey = transitionKey;
      this.wantDistribution();
    }
    if (answer.verify !== null && !this.verifyIdsDone.includes(answer.verify.id) && (this.verifyRun === null || this.verifyRun.id !== answer.verify.id)) {
      this.startVerify(answer.verify.id);
    }
    const q = answer.connectionQuery ?? null;
    if (q !== null && !this.queriesAnswered.has(q.id)) {
      this.queriesAnswered.add(q.id);
      if (this.queriesAnswered.size > 64) this.queriesAnswered.delete(this.queriesAnswered.values().next().value!);
      const connections = this.matchConnections(node, q);
      this.control.reportConnections({ id: q.id, connections }).catch((error: unknown) => this.logger.warn({ err: error, id: q.id }, "connection lookup answer failed"));
    }
  }

  /** Connections this node holds (any role) that match a lookup; at most MATCHES_MAX. */
  private matchConnections(node: ClusterNode, q: ConnectionFilter): HeldConnection[] {
    const out: HeldConnection[] = [];
    const now = performance.now();
    node.forEachConnection((bucket, c, role) => {
      if (out.length >= MATCHES_MAX) return;
      if (q.protocol !== undefined && c.protocol !== q.protocol) return;
      if (q.srcPort !== undefined && c.srcPort !== q.srcPort) return;
      if (q.dstPort !== undefined && c.dstPort !== q.dstPort) return;
      const src = formatIp(c.src);
      const dst = formatIp(c.dst);
      if (q.src !== undefined && src !== q.src) return;
      if (q.dst !== undefined && dst !== q.dst) return;
      out.push({ bucket, role, protocol: c.protocol, src, srcPort: c.srcPort, dst, dstPort: c.dstPort, state: CONN_STATE_NAMES[c.state] ?? String(c.state), expiresInMs: Math.round(c.expiresAtMs - now) });
    });
    return out;
  }

  // ---- verification --------------------------------------------------------------------------

  /**
   * A `tandem verify` round: this member compares each bucket it owns with its backup, one
   * backup peer at a time (node.requestVerify: digests over HyperSync), and reports the owned
   * buckets whose digests differ.
   */
  private startVerify(id: number): void {
    const node = this.node;
    const table = this.epochTable;
    const sharedOf = new Map<string, number>();
    if (node !== null && table !== null) {
      const me = table.table.members.indexOf(this.appliance);
      for (let b = 0; b < table.table.bucketCount; b++) {
        if (me === NO_MEMBER || table.table.owner[b] !== me) continue;
        const backup = table.table.backup[b]!;
        if (backup === NO_MEMBER) continue;
        const name = table.table.members[backup]!;
        sharedOf.set(name, (sharedOf.get(name) ?? 0) + 1);
      }
    }
    this.verifyRun = { id, peers: [...sharedOf.keys()].sort(), sharedOf, next: 0, current: null, deadlineMs: 0, bucketsChecked: 0, mismatched: new Set(), pass: 1, candidates: null, resumeAtMs: 0 };
    this.logger.info({ id, peers: this.verifyRun.peers }, "verification started");
    this.pumpVerify();
  }

  private pumpVerify(): void {
    if (this.verifyPumping) return;
    this.verifyPumping = true;
    try {
      while (true) {
        const run = this.verifyRun;
        const node = this.node;
        if (run === null) return;
        const now = performance.now();
        if (now < run.resumeAtMs) return; // settling between the passes (the heartbeat timer pumps again)
        if (run.current !== null) {
          const result = node?.lastVerify ?? null;
          if (result !== null && result.peer === run.current) {
            for (const b of result.differing) if (node!.roleOf(b) === "owner") run.mismatched.add(b);
            run.bucketsChecked += run.sharedOf.get(run.current) ?? 0;
            run.current = null;
          } else if (now >= run.deadlineMs || node === null) {
            this.logger.warn({ id: run.id, peer: run.current }, "verification: no answer from the peer; its buckets are not checked");
            run.current = null;
          } else {
            return;
          }
        }
        if (run.next < run.peers.length && node !== null) {
          const peer = run.peers[run.next++]!;
          run.current = peer;
          run.deadlineMs = now + VERIFY_PEER_TIMEOUT_MS;
          try {
            node.requestVerify(peer, now);
          } catch (error) {
            if (!(error instanceof TandemError)) throw error;
            this.logger.warn({ err: error, id: run.id, peer }, "verification: peer unknown to the node");
            run.current = null;
          }
          this.afterCall();
          continue;
        }
        if (run.pass === 1 && run.mismatched.size > 0) {
          // Candidates: check them again once changes in flight have landed.
          run.pass = 2;
          run.candidates = run.mismatched;
          run.mismatched = new Set();
          run.next = 0;
          run.bucketsChecked = 0;
          run.resumeAtMs = now + VERIFY_SETTLE_MS;
          continue;
        }
        if (run.candidates !== null) {
          const candidates = run.candidates;
          run.mismatched = new Set([...run.mismatched].filter((b) => candidates.has(b)));
        }
        this.finishVerify(run);
        return;
      }
    } finally {
      this.verifyPumping = false;
    }
  }

  private finishVerify(run: VerifyRun): void {
    this.verifyRun = null;
    this.verifyIdsDone.push(run.id);
    if (this.verifyIdsDone.length > VERIFY_IDS_KEPT) this.verifyIdsDone.shift();
    const report = { id: run.id, bucketsChecked: run.bucketsChecked, mismatched: [...run.mismatched].sort((a, b) => a - b) };
    this.logger.info({ id: run.id, bucketsChecked: report.bucketsChecked, mismatched: report.mismatched.length }, "verification done");
    this.control.reportVerify(report).then(
      () => {
        this.counters.verifyReports++;
      },
      (error: unknown) => {
        // Forget the round: the next heartbeat that still names it runs it again.
        const at = this.verifyIdsDone.indexOf(run.id);
        if (at >= 0) this.verifyIdsDone.splice(at, 1);
        this.logRepeated("verify", "verification report failed", error);
      },
    );
  }

  // ---- logging -------------------------------------------------------------------------------

  /** Logs a recurring control-plane problem at most once per LOG_REPEAT_MS per key, with the count suppressed meanwhile. */
  private logRepeated(key: string, message: string, error: unknown, extra: Record<string, unknown> = {}): void {
    const now = performance.now();
    const entry = this.logRepeats.get(key);
    if (entry !== undefined && now - entry.lastMs < LOG_REPEAT_MS) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.logRepeats.set(key, { lastMs: now, suppressed: 0 });
    this.logger.warn({ ...extra, ...(error === null ? {} : { err: error }), ...(suppressed > 0 ? { suppressed } : {}) }, message);
  }
}

/** Inserts or refreshes a neighbour; the oldest entry goes when the map is full (Map keeps insertion order). */
function learn<K>(map: Map<K, Neighbour>, key: K, neighbour: Neighbour): void {
  map.delete(key);
  map.set(key, neighbour);
  if (map.size > NEIGHBOURS_MAX) map.delete(map.keys().next().value as K);
}
