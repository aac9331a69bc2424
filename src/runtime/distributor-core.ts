// The distributor's data path, without I/O: VXLAN datagrams from the sites go to the owner of
// their bucket (member-link INGRESS), EGRESS datagrams from the members go to the sites (VXLAN),
// ARP / IPv6 neighbour discovery for the group's gateway addresses is answered here, and the
// neighbours seen on each segment are learned and announced to the members (NEIGH) so that
// they can send most egress traffic to the sites directly.
//
//   site --VXLAN--> fromSite: VNI -> (group, interface); parse inner frame once;
//                     ARP/NS for a gateway -> reply in VXLAN to srcAddress:interface.sitePort
//                     source on-link -> neighbour (ifIndex, ip) -> (mac, vtep)  [glean]
//                     bucket (as ClusterNode computes it) -> owner of the current epoch
//                     VXLAN header overwritten by INGRESS(epoch, ifIndex), same buffer sent
//   member --EGRESS--> fromMember: neighbour of (ifIndex, next hop or inner destination)
//                     known: MACs rewritten, header overwritten by VXLAN, same buffer sent
//                     unknown: ARP request / NS to the site, frame copied into a bounded queue
//
// Invariants:
// - The per-packet paths (fromSite, fromMember, learning an unchanged neighbour) allocate
//   nothing: one reusable PacketView (and one for ICMP quotes), typed-array tables, numeric
//   counters. Replies, resolutions, queued copies and NEIGH datagrams are the slow path and
//   may allocate.
// - The bucket of a frame equals ClusterNode.receiveFrame's: same parser, same seed, a
//   FragmentTracker per group, and an ICMP error goes to the bucket of the flow it quotes.
// - Every datagram ends in exactly one counted outcome: sent on (to a member, to a site, a
//   reply), consumed as a neighbour message, queued, or dropped with a named reason.
// - Every table and queue has a bound: neighboursMax entries (least recently seen evicted,
//   counted), PENDING_NEIGHBOURS_MAX resolutions, PENDING_FRAMES_PER_NEIGHBOUR_MAX frames each
//   and PENDING_FRAMES_MAX in all, NEIGH_ENTRIES_MAX entries per NEIGH datagram.
// - Never throws on datagram bytes; configure() asserts its argument (the orchestrator
//   validated it: a bad table is a programmer error).
// - The core keeps no reference to a received buffer after it returns, except by handing it to
//   a send function (which owns it from then on: the caller must not reuse it).

import { assert } from "../stdx/assert.js";
import { r16, r32, w16, w32 } from "../stdx/bytes.js";
import { fmix32, mixWord } from "../stdx/hash.js";
import { parseIpv4, parseIpv6 } from "../packet/addr.js";
import { onesComplementSum, pseudoHeaderSum } from "../packet/checksum.js";
import { flowHashOfView } from "../packet/flow-hash.js";
import { parseFrame, parseQuotedIp } from "../packet/parse.js";
import { IpProto, LinkType, PacketView } from "../packet/view.js";
import { FragmentTracker } from "../distribution/bucket-hash.js";
import { isPowerOfTwo } from "../distribution/rendezvous.js";
import type { DistributorGroupConfig } from "./cluster-config.js";
import {
  encodeNeighbours,
  LinkMsg,
  linkIfIndex,
  linkTypeOf,
  linkWord,
  NEIGH_ENTRIES_MAX,
  neighbourKeyOf,
  parseEndpoint,
  VXLAN_HEADER_BYTES,
  vxlanVniOf,
  writeLinkHeader,
  writeVxlanHeader,
  type NeighbourEntry,
} from "./member-link.js";

// ---- limits ------------------------------------------------------------------------------

export const NEIGHBOURS_MAX_DEFAULT = 65_536;
/** Groups the distributor serves at once (neighbour keys carry the group's slot). */
export const GROUPS_MAX = 4096;
/** Next hops being resolved at once (ARP / NS outstanding). */
export const PENDING_NEIGHBOURS_MAX = 1024;
export const PENDING_FRAMES_PER_NEIGHBOUR_MAX = 16;
export const PENDING_FRAMES_MAX = 4096;
/** An unanswered ARP request / NS is repeated this often... */
export const RESOLVE_RETRY_MS = 250;
/** ...until the queued frames are dropped (counted "egress-unresolved"). */
export const RESOLVE_TIMEOUT_MS = 1000;
/** Every member is sent the whole neighbour table this often (a lost NEIGH heals). */
export const NEIGH_REANNOUNCE_MS = 3000;

assert(PENDING_FRAMES_PER_NEIGHBOUR_MAX <= PENDING_FRAMES_MAX, "a neighbour's queue fits in the total");
assert(RESOLVE_RETRY_MS < RESOLVE_TIMEOUT_MS, "a resolution is retried before it times out");

/** Why a datagram was dropped. Counted per reason; names are the keys of stats().drops. */
export const DistributorDrop = {
  NOT_VXLAN: 0,
  UNKNOWN_VNI: 1,
  MALFORMED: 2,
  NOT_IP: 3,
  ARP_UNANSWERED: 4,
  ND_UNANSWERED: 5,
  MULTICAST: 6,
  NO_OWNER: 7,
  NO_ENDPOINT: 8,
  UNKNOWN_MEMBER: 9,
  BAD_LINK_HEADER: 10,
  LINK_TYPE: 11,
  EGRESS_BAD_INTERFACE: 12,
  EGRESS_MALFORMED: 13,
  EGRESS_NO_GATEWAY_ADDRESS: 14,
  EGRESS_TO_GATEWAY: 15,
  EGRESS_QUEUE_FULL: 16,
  EGRESS_UNRESOLVED: 17,
  INTERFACE_REMOVED: 18,
} as const;
export type DistributorDrop = (typeof DistributorDrop)[keyof typeof DistributorDrop];
export const DISTRIBUTOR_DROP_NAMES: readonly string[] = [
  "not-vxlan", // shorter than VXLAN + Ethernet, or the I flag is clear
  "unknown-vni",
  "malformed", // the inner frame does not parse
  "not-ip", // neither IP nor ARP (LLDP, ...)
  "arp-unanswered", // an ARP request for an address that is not a gateway's
  "nd-unanswered", // NS for another address, RS, RA, redirect
  "multicast", // multicast / broadcast IP: a gateway does not route it
  "no-owner", // the bucket has no owner in the current epoch
  "no-endpoint", // the owner has not reported its data endpoint yet
  "unknown-member", // a member-link datagram from an endpoint no group names
  "bad-link-header",
  "member-link-type", // INGRESS / CORRECTION / NEIGH sent to the distributor
  "egress-bad-interface",
  "egress-malformed",
  "egress-no-gateway-address", // the interface has no gateway address of the frame's family to ask from
  "egress-to-gateway", // the next hop is the gateway itself
  "egress-queue-full",
  "egress-unresolved", // no ARP reply / NA in time
  "interface-removed", // queued frames of an interface that a new configuration removed
];
assert(DISTRIBUTOR_DROP_NAMES.length === Object.keys(DistributorDrop).length, "one name per drop reason");

// ---- public types --------------------------------------------------------------------------

/** Sends buf[offset, offset + length) to address:port. Owns buf from then on. */
export type SendFn = (buf: Uint8Array, offset: number, length: number, port: number, address: string) => void;

export interface DistributorCoreOptions {
  /** From the VXLAN socket: ARP replies, NAs, resolutions and egress frames to the sites. */
  sendToSite: SendFn;
  /** From the member-link socket: INGRESS and NEIGH to the members. */
  sendToMember: SendFn;
  /** Neighbour table capacity (all groups together). */
  neighboursMax?: number;
}

export interface DistributorGroupStats {
  epoch: number;
  /** The nowMs at which the current epoch was installed. */
  epochInstalledAtMs: number;
  /** VXLAN datagrams received on the group's VNIs. */
  packetsIn: number;
  /** Frames forwarded to owners (INGRESS). */
  toMembers: number;
  /** Frames sent to sites for members (EGRESS), queued ones included once sent. */
  egress: number;
  /** ARP replies and neighbour advertisements for the gateway addresses. */
  arpReplies: number;
  /** Neighbour table entries of the group. */
  neighbours: number;
  /** EGRESS frames that waited for a resolution. */
  egressQueued: number;
  /** ARP requests / NSs sent to resolve next hops. */
  resolutions: number;
  /** ARP replies, gratuitous ARPs and NAs consumed (learned from). */
  neighbourFrames: number;
}

export interface DistributorStats {
  groups: Record<string, DistributorGroupStats>;
  /** Per reason (DISTRIBUTOR_DROP_NAMES), every reason present. */
  drops: Record<string, number>;
  /** Neighbours evicted because the table was full. */
  neighbourEvictions: number;
  /** NEIGH datagrams sent (one per member and batch). */
  neighAnnouncements: number;
  pendingNeighbours: number;
  pendingFrames: number;
}

// ---- neighbour table -----------------------------------------------------------------------

const NONE = -1;
const LEARN_SAME = 0;
const LEARN_NEW = 1;
const LEARN_CHANGED = 2;

/** meta word of a neighbour key: interface index and family (bit 0: IPv6). */
function metaOf(ifIndex: number, v6: boolean): number {
  return (ifIndex << 1) | (v6 ? 1 : 0);
}

/**
 * Neighbours of every group: key (group slot, ifIndex + family, 4 address words; IPv4 in word
 * 0), value (MAC, VTEP address and port). Sized once; a chained hash index; a doubly linked
 * recency list (oldest = least recently learned or seen) chooses the entry to evict when full.
 *
 *   heads[h] -> e -> chainNext[e] -> ...        oldest <-> ... <-> newest  (older/newer)
 */
class NeighbourTable {
  readonly capacity: number;
  count = 0;
  evictions = 0;
  /** Entry learned or refreshed by the last learn(). */
  entry = NONE;
  readonly group: Int32Array;
  readonly meta: Int32Array;
  readonly ip: Uint32Array;
  readonly mac: Uint8Array;
  readonly vtepIp: Uint32Array;
  readonly vtepPort: Uint16Array;
  /** The site's address as the socket reported it (sending needs the string). */
  readonly vtepAddress: string[];
  readonly seenMs: Float64Array;
  /** Group slot + 1 of the dirty list the entry is queued in, 0 when none. */
  readonly dirtyFor: Int32Array;
  readonly perGroup: Int32Array;
  private readonly chainNext: Int32Array;
  private readonly home: Int32Array;
  private readonly heads: Int32Array;
  private readonly indexMask: number;
  private readonly older: Int32Array;
  private readonly newer: Int32Array;
  private oldest = NONE;
  private newest = NONE;
  private readonly free: Int32Array;
  private freeCount: number;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 1 && capacity <= 1 << 22, "neighbour capacity out of range");
    this.capacity = capacity;
    this.group = new Int32Array(capacity).fill(NONE);
    this.meta = new Int32Array(capacity);
    this.ip = new Uint32Array(capacity * 4);
    this.mac = new Uint8Array(capacity * 6);
    this.vtepIp = new Uint32Array(capacity);
    this.vtepPort = new Uint16Array(capacity);
    this.vtepAddress = new Array<string>(capacity).fill("");
    this.seenMs = new Float64Array(capacity);
    this.dirtyFor = new Int32Array(capacity);
    this.perGroup = new Int32Array(GROUPS_MAX);
    this.chainNext = new Int32Array(capacity).fill(NONE);
    this.home = new Int32Array(capacity).fill(NONE);
    let indexSize = 1;
    while (indexSize < capacity * 2) indexSize *= 2;
    this.heads = new Int32Array(indexSize).fill(NONE);
    this.indexMask = indexSize - 1;
    this.older = new Int32Array(capacity).fill(NONE);
    this.newer = new Int32Array(capacity).fill(NONE);
    this.free = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.free[i] = capacity - 1 - i;
    this.freeCount = capacity;
  }

  private slotOf(group: number, meta: number, w0: number, w1: number, w2: number, w3: number): number {
    let h = mixWord(0x6e656967, group);
    h = mixWord(h, meta);
    h = mixWord(h, w0);
    h = mixWord(h, w1);
    h = mixWord(h, w2);
    h = mixWord(h, w3);
    return fmix32(h) & this.indexMask;
  }

  find(group: number, meta: number, w0: number, w1: number, w2: number, w3: number): number {
    const ip = this.ip;
    for (let e = this.heads[this.slotOf(group, meta, w0, w1, w2, w3)]!; e !== NONE; e = this.chainNext[e]!) {
      const b = e * 4;
      if (this.group[e] === group && this.meta[e] === meta && ip[b] === w0 && ip[b + 1] === w1 && ip[b + 2] === w2 && ip[b + 3] === w3) return e;
    }
    return NONE;
  }

  /**
   * Inserts or refreshes a neighbour; the MAC is read from buf[macOffset, +6). Returns
   * LEARN_NEW, LEARN_CHANGED (MAC or VTEP differ) or LEARN_SAME; `entry` names it.
   */
  learn(
    group: number,
    meta: number,
    w0: number,
    w1: number,
    w2: number,
    w3: number,
    buf: Uint8Array,
    macOffset: number,
    vtepAddress: string,
    vtepPort: number,
    nowMs: number,
  ): number {
    let e = this.find(group, meta, w0, w1, w2, w3);
    const mac = this.mac;
    if (e !== NONE) {
      this.entry = e;
      this.seenMs[e] = nowMs;
      this.touch(e);
      const m = e * 6;
      if (
        mac[m] === buf[macOffset] &&
        mac[m + 1] === buf[macOffset + 1] &&
        mac[m + 2] === buf[macOffset + 2] &&
        mac[m + 3] === buf[macOffset + 3] &&
        mac[m + 4] === buf[macOffset + 4] &&
        mac[m + 5] === buf[macOffset + 5] &&
        this.vtepPort[e] === vtepPort &&
        this.vtepAddress[e] === vtepAddress
      ) {
        return LEARN_SAME;
      }
      this.setValue(e, buf, macOffset, vtepAddress, vtepPort);
      return LEARN_CHANGED;
    }
    if (this.freeCount === 0) {
      this.evictions++;
      this.remove(this.oldest);
    }
    e = this.free[--this.freeCount]!;
    this.entry = e;
    const b = e * 4;
    this.group[e] = group;
    this.meta[e] = meta;
    this.ip[b] = w0;
    this.ip[b + 1] = w1;
    this.ip[b + 2] = w2;
    this.ip[b + 3] = w3;
    this.seenMs[e] = nowMs;
    this.setValue(e, buf, macOffset, vtepAddress, vtepPort);
    const slot = this.slotOf(group, meta, w0, w1, w2, w3);
    this.home[e] = slot;
    this.chainNext[e] = this.heads[slot]!;
    this.heads[slot] = e;
    this.linkNewest(e);
    this.count++;
    this.perGroup[group]!++;
    return LEARN_NEW;
  }

  private setValue(e: number, buf: Uint8Array, macOffset: number, vtepAddress: string, vtepPort: number): void {
    for (let i = 0; i < 6; i++) this.mac[e * 6 + i] = buf[macOffset + i]!;
    this.vtepAddress[e] = vtepAddress;
    this.vtepPort[e] = vtepPort;
    // Slow path only (new or changed neighbour): the string is parsed once per change.
    this.vtepIp[e] = parseIpv4(vtepAddress) ?? 0;
  }

  remove(e: number): void {
    assert(e >= 0 && this.group[e] !== NONE, "removing a free neighbour entry");
    const slot = this.home[e]!;
    let previous = NONE;
    let cur = this.heads[slot]!;
    while (cur !== e) {
      assert(cur !== NONE, "neighbour entry missing from its chain");
      previous = cur;
      cur = this.chainNext[cur]!;
    }
    if (previous === NONE) this.heads[slot] = this.chainNext[e]!;
    else this.chainNext[previous] = this.chainNext[e]!;
    this.unlinkRecency(e);
    this.perGroup[this.group[e]!]!--;
    this.group[e] = NONE;
    this.home[e] = NONE;
    this.chainNext[e] = NONE;
    this.dirtyFor[e] = 0;
    this.vtepAddress[e] = "";
    this.free[this.freeCount++] = e;
    this.count--;
  }

  /** Removes every entry of a group (ifIndex < 0) or of one of its interfaces. */
  purge(group: number, ifIndex: number): void {
    for (let e = 0; e < this.capacity; e++) {
      if (this.group[e] !== group) continue;
      if (ifIndex >= 0 && this.meta[e]! >> 1 !== ifIndex) continue;
      this.remove(e);
    }
  }

  /** The entries of a group, as NEIGH entries (slow path). */
  entriesOf(group: number): number[] {
    const out: number[] = [];
    if (this.perGroup[group] === 0) return out;
    for (let e = this.oldest; e !== NONE; e = this.newer[e]!) if (this.group[e] === group) out.push(e);
    return out;
  }

  toEntry(e: number): NeighbourEntry {
    const v6 = (this.meta[e]! & 1) === 1;
    const ip = new Uint8Array(v6 ? 16 : 4);
    for (let i = 0; i < ip.length / 4; i++) w32(ip, i * 4, this.ip[e * 4 + i]!);
    return { ifIndex: this.meta[e]! >> 1, ip, mac: this.mac.slice(e * 6, e * 6 + 6), vtepIp: this.vtepIp[e]!, vtepPort: this.vtepPort[e]! };
  }

  private touch(e: number): void {
    if (this.newest === e) return;
    this.unlinkRecency(e);
    this.linkNewest(e);
  }

  private linkNewest(e: number): void {
    this.older[e] = this.newest;
    this.newer[e] = NONE;
    if (this.newest !== NONE) this.newer[this.newest] = e;
    else this.oldest = e;
    this.newest = e;
  }

  private unlinkRecency(e: number): void {
    const o = this.older[e]!;
    const n = this.newer[e]!;
    if (o !== NONE) this.newer[o] = n;
    else this.oldest = n;
    if (n !== NONE) this.older[n] = o;
    else this.newest = o;
    this.older[e] = NONE;
    this.newer[e] = NONE;
  }
}

// ---- groups and interfaces -----------------------------------------------------------------

interface InterfaceState {
  readonly group: GroupState;
  readonly index: number;
  readonly vni: number;
  /** Gateway configuration as given, to tell whether a new configuration changed it. */
  readonly gatewayText: string;
  readonly mac: Uint8Array;
  /** IPv4 gateway (has4), its prefix mask and the prefix's broadcast address (-1: none, /31 and /32). */
  readonly has4: boolean;
  readonly gw4: number;
  readonly mask4: number;
  readonly broadcast4: number;
  /** IPv6 gateway and prefix length, null when the gateway is IPv4. */
  readonly gw6: Uint8Array | null;
  readonly prefix6: number;
  readonly siteAddress: string;
  readonly sitePort: number;
}

interface MemberRef {
  address: string;
  group: GroupState;
}

class GroupState {
  name: string;
  readonly slot: number;
  epoch = 0;
  epochInstalledAtMs = 0;
  seed = 0;
  bucketMask = 0;
  owner: Int16Array = new Int16Array(0);
  members: string[] = [];
  /** Per table member: data endpoint (port 0: none). */
  endpointAddress: (string | null)[] = [];
  endpointPort: Int32Array = new Int32Array(0);
  /** By interface index (not position: the list may skip indexes). */
  interfaces: (InterfaceState | undefined)[] = [];
  fragments: FragmentTracker | null = null;
  clusterKeyText = "";
  neighKey: Uint8Array = new Uint8Array(0);
  /** Entries learned or changed since the last announcement (see NeighbourTable.dirtyFor). */
  readonly dirty: number[] = [];
  packetsIn = 0;
  toMembers = 0;
  egress = 0;
  arpReplies = 0;
  egressQueued = 0;
  resolutions = 0;
  neighbourFrames = 0;

  constructor(name: string, slot: number) {
    this.name = name;
    this.slot = slot;
  }
}

/** A next hop being resolved, with the frames waiting for it (copies). */
interface Pending {
  group: GroupState;
  ifIndex: number;
  v6: boolean;
  /** 4 address words (IPv4 in word 0). */
  words: Uint32Array;
  frames: Uint8Array[];
  startedMs: number;
  lastRequestMs: number;
}

function pendingKey(slot: number, meta: number, w0: number, w1: number, w2: number, w3: number): string {
  return `${slot}/${meta}/${w0}/${w1}/${w2}/${w3}`;
}

function parseMacText(text: string): Uint8Array {
  const parts = text.split(/[:-]/);
  assert(parts.length === 6 && parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p)), `interface MAC "${text}" is not a MAC address`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_IPV6 = 0x86dd;
/** Inner Ethernet header starts right after the 8-byte VXLAN / member-link header. */
const L2 = VXLAN_HEADER_BYTES;
const ETHERNET_BYTES = 14;
const ND_NS = 135;
const ND_NA = 136;
/** NS / NA with one link-layer address option: 24 + 8 bytes of ICMPv6. */
const ND_BYTES = 32;

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Fills the ICMPv6 checksum of the IPv6 packet at l3 (40-byte header, then ICMPv6 of length bytes). */
function fillIcmpv6Checksum(buf: Uint8Array, l3: number, length: number): void {
  const l4 = l3 + 40;
  buf[l4 + 2] = 0;
  buf[l4 + 3] = 0;
  const sum = onesComplementSum(buf, l4, length) + pseudoHeaderSum(buf, l3 + 8, l3 + 24, 16, IpProto.ICMPV6, length);
  w16(buf, l4 + 2, ~fold(sum) & 0xffff);
}

// ---- the core ------------------------------------------------------------------------------

export class DistributorCore {
  /** Bucket of the last frame fromSite() hashed (-1 when it hashed none): tests, debugging. */
  lastBucket = -1;
  private readonly sendToSite: SendFn;
  private readonly sendToMember: SendFn;
  private readonly view = new PacketView();
  private readonly quote = new PacketView();
  private readonly neighbours: NeighbourTable;
  private readonly drops = new Float64Array(DISTRIBUTOR_DROP_NAMES.length);
  private readonly groups = new Map<string, GroupState>();
  private readonly byVni = new Map<number, InterfaceState>();
  private readonly membersByPort = new Map<number, MemberRef[]>();
  private readonly freeSlots: number[] = [];
  private readonly pending = new Map<string, Pending>();
  private pendingFrames = 0;
  private neighAnnouncements = 0;
  private nextReannounceMs = -1;

  constructor(options: DistributorCoreOptions) {
    this.sendToSite = options.sendToSite;
    this.sendToMember = options.sendToMember;
    this.neighbours = new NeighbourTable(options.neighboursMax ?? NEIGHBOURS_MAX_DEFAULT);
    for (let s = GROUPS_MAX - 1; s >= 0; s--) this.freeSlots.push(s);
  }

  // ---- configuration ------------------------------------------------------------------------

  /**
   * Installs the groups (replacing the previous set). A group keeps its neighbours, fragment
   * entries and queued frames across configurations; an interface whose VNI or gateway
   * changed loses its neighbours. Members whose data endpoint is new are sent the group's
   * whole neighbour table.
   */
  configure(groups: readonly DistributorGroupConfig[], nowMs: number): void {
    const vnis = new Map<number, string>();
    const names = new Set<string>();
    for (const c of groups) {
      assert(!names.has(c.group), `group ${c.group} configured twice`);
      names.add(c.group);
      assert(isPowerOfTwo(c.bucketCount), `group ${c.group}: bucket count must be a power of two`);
      assert(c.owner.length === c.bucketCount, `group ${c.group}: owner table length differs from the bucket count`);
      assert(c.dataEndpoints.length === c.members.length, `group ${c.group}: one data endpoint per table member`);
      assert(Number.isSafeInteger(c.epoch) && c.epoch >= 0, `group ${c.group}: bad epoch`);
      for (let b = 0; b < c.bucketCount; b++) {
        const o = c.owner[b]!;
        assert(o >= -1 && o < c.members.length, `group ${c.group}: owner of bucket ${b} is not a table member`);
      }
      const indexes = new Set<number>();
      for (const i of c.interfaces) {
        const other = vnis.get(i.vni);
        assert(other === undefined, `VNI ${i.vni} is in groups ${other} and ${c.group}`);
        vnis.set(i.vni, c.group);
        assert(Number.isInteger(i.index) && i.index >= 0 && i.index <= 0xffff && !indexes.has(i.index), `group ${c.group}: bad interface index ${i.index}`);
        indexes.add(i.index);
      }
    }

    for (const [name, g] of this.groups) {
      if (names.has(name)) continue;
      this.dropPendingOf(g, -1);
      this.neighbours.purge(g.slot, -1);
      this.groups.delete(name);
      this.freeSlots.push(g.slot);
    }

    const announceTo: { group: GroupState; member: number }[] = [];
    for (const c of groups) {
      let g = this.groups.get(c.group);
      if (g === undefined) {
        const slot = this.freeSlots.pop();
        assert(slot !== undefined, `more than ${GROUPS_MAX} groups`);
        g = new GroupState(c.group, slot);
        this.groups.set(c.group, g);
        g.epochInstalledAtMs = nowMs;
      } else if (g.epoch !== c.epoch) {
        g.epochInstalledAtMs = nowMs;
      }
      const seed = c.seed | 0;
      if (g.fragments === null || g.seed !== seed || g.fragments.bucketCount !== c.bucketCount) {
        g.fragments = new FragmentTracker({ seed, bucketCount: c.bucketCount });
      }
      g.epoch = c.epoch;
      g.seed = seed;
      g.bucketMask = c.bucketCount - 1;
      g.owner = c.owner;
      if (c.clusterKey !== g.clusterKeyText) {
        g.neighKey = neighbourKeyOf(new Uint8Array(Buffer.from(c.clusterKey, "base64")));
        g.clusterKeyText = c.clusterKey;
      }

      // Endpoints: a member whose endpoint is new (joined, restarted) gets the whole table.
      const previous = new Set<string>();
      for (let m = 0; m < g.members.length; m++) {
        if (g.endpointPort[m] !== 0) previous.add(`${g.endpointAddress[m]}:${g.endpointPort[m]}`);
      }
      g.members = [...c.members];
      g.endpointAddress = new Array<string | null>(c.members.length).fill(null);
      g.endpointPort = new Int32Array(c.members.length);
      for (let m = 0; m < c.members.length; m++) {
        const text = c.dataEndpoints[m];
        const ep = text === null || text === undefined ? null : parseEndpoint(text);
        // A member reports its endpoint; an unusable one is treated as not reported yet.
        if (ep === null || ep.port === 0) continue;
        g.endpointAddress[m] = ep.address;
        g.endpointPort[m] = ep.port;
        if (!previous.has(`${ep.address}:${ep.port}`)) announceTo.push({ group: g, member: m });
      }

      // Interfaces: neighbours of a segment whose VNI or gateway changed are no longer valid.
      const interfaces: (InterfaceState | undefined)[] = [];
      for (const i of c.interfaces) {
        const old = g.interfaces[i.index];
        if (old !== undefined && (old.vni !== i.vni || old.gatewayText !== i.gateway)) this.forgetInterface(g, i.index);
        interfaces[i.index] = this.interfaceOf(g, i.index, i.vni, i.gateway, i.mac, i.siteEndpoint, i.sitePort);
      }
      for (let index = 0; index < g.interfaces.length; index++) {
        if (g.interfaces[index] !== undefined && interfaces[index] === undefined) this.forgetInterface(g, index);
      }
      g.interfaces = interfaces;
    }

    this.byVni.clear();
    this.membersByPort.clear();
    for (const g of this.groups.values()) {
      for (const i of g.interfaces) if (i !== undefined) this.byVni.set(i.vni, i);
      for (let m = 0; m < g.members.length; m++) {
        const port = g.endpointPort[m]!;
        if (port === 0) continue;
        let refs = this.membersByPort.get(port);
        if (refs === undefined) this.membersByPort.set(port, (refs = []));
        refs.push({ address: g.endpointAddress[m]!, group: g });
      }
    }

    for (const { group, member } of announceTo) {
      const entries = this.neighbours.entriesOf(group.slot);
      if (entries.length > 0) this.announce(group, entries, member);
    }
  }

  private interfaceOf(
    g: GroupState,
    index: number,
    vni: number,
    gateway: string,
    macText: string,
    siteEndpoint: string,
    sitePort: number,
  ): InterfaceState {
    assert(Number.isInteger(vni) && vni >= 0 && vni <= 0xffffff, `interface ${index}: VNI is 24 bits`);
    assert(Number.isInteger(sitePort) && sitePort > 0 && sitePort <= 0xffff, `interface ${index}: bad site port`);
    assert(parseIpv4(siteEndpoint) !== null, `interface ${index}: site endpoint "${siteEndpoint}" is not an IPv4 address`);
    const slash = gateway.indexOf("/");
    const addressText = slash < 0 ? gateway : gateway.slice(0, slash);
    const v6 = addressText.includes(":");
    const prefix = slash < 0 ? (v6 ? 128 : 32) : Number(gateway.slice(slash + 1));
    assert(Number.isInteger(prefix) && prefix >= 0 && prefix <= (v6 ? 128 : 32), `interface ${index}: bad gateway prefix "${gateway}"`);
    let gw4 = 0;
    let mask4 = 0;
    let broadcast4 = -1;
    let gw6: Uint8Array | null = null;
    if (v6) {
      gw6 = parseIpv6(addressText);
      assert(gw6 !== null, `interface ${index}: gateway "${gateway}" is not an address`);
    } else {
      const a = parseIpv4(addressText);
      assert(a !== null, `interface ${index}: gateway "${gateway}" is not an address`);
      gw4 = a;
      mask4 = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      if (prefix <= 30) broadcast4 = (gw4 | ~mask4) >>> 0;
    }
    return {
      group: g,
      index,
      vni,
      gatewayText: gateway,
      mac: parseMacText(macText),
      has4: !v6,
      gw4,
      mask4,
      broadcast4,
      gw6,
      prefix6: v6 ? prefix : 0,
      siteAddress: siteEndpoint,
      sitePort,
    };
  }

  private forgetInterface(g: GroupState, index: number): void {
    this.neighbours.purge(g.slot, index);
    this.dropPendingOf(g, index);
  }

  // ---- from the sites -----------------------------------------------------------------------

  /** A VXLAN datagram (UDP payload) from a site at srcAddress:srcPort. */
  fromSite(buf: Uint8Array, length: number, srcAddress: string, _srcPort: number, nowMs: number): void {
    assert(length >= 0 && length <= buf.length, "fromSite: length outside buffer");
    this.lastBucket = -1;
    const vni = vxlanVniOf(buf, length);
    if (vni < 0) return this.drop(DistributorDrop.NOT_VXLAN);
    const iface = this.byVni.get(vni);
    if (iface === undefined) return this.drop(DistributorDrop.UNKNOWN_VNI);
    const g = iface.group;
    g.packetsIn++;
    const view = this.view;
    if (!parseFrame(view, buf, L2, length - L2, LinkType.ETHERNET)) return this.drop(DistributorDrop.MALFORMED);
    if (view.arpOp !== 0) return this.onArp(iface, buf, length, srcAddress, nowMs);
    const version = view.ipVersion;
    if (version === 0) return this.drop(DistributorDrop.NOT_IP);

    // Glean: an on-link source is a neighbour behind the VTEP that sent the datagram.
    const macOffset = L2 + 6;
    if (version === 4) {
      const src = view.src4;
      if (iface.has4 && ((src ^ iface.gw4) & iface.mask4) === 0 && src !== iface.gw4 && src !== iface.broadcast4) {
        this.learn(iface, false, src, 0, 0, 0, buf, macOffset, srcAddress, nowMs);
      }
    } else if (iface.gw6 !== null && this.onLink6(iface, buf, view.srcAddrOffset)) {
      const s = view.srcAddrOffset;
      this.learn(iface, true, r32(buf, s), r32(buf, s + 4), r32(buf, s + 8), r32(buf, s + 12), buf, macOffset, srcAddress, nowMs);
    }
    if (version === 6 && view.protocol === IpProto.ICMPV6 && view.icmpType >= 133 && view.icmpType <= 137) {
      return this.onNeighbourDiscovery(iface, buf, srcAddress, nowMs);
    }
    if (version === 4) {
      const d = view.dst4;
      if (d >>> 28 === 0xe || d === 0xffffffff || d === iface.broadcast4) return this.drop(DistributorDrop.MULTICAST);
    } else if (buf[view.dstAddrOffset] === 0xff) {
      return this.drop(DistributorDrop.MULTICAST);
    }

    // The bucket, exactly as ClusterNode.receiveFrame computes it: an ICMP error belongs to
    // the flow it quotes, a later fragment to its first fragment.
    let hash: number;
    const quoteOffset = view.icmpQuoteOffset;
    if (view.icmpIsError && quoteOffset >= 0 && quoteOffset <= view.l3End && parseQuotedIp(this.quote, view.buf, quoteOffset, view.l3End)) {
      hash = flowHashOfView(g.seed, this.quote);
    } else {
      hash = g.fragments!.flowHashOfPacket(view, nowMs);
    }
    const bucket = hash & g.bucketMask;
    this.lastBucket = bucket;
    const owner = g.owner[bucket]!;
    if (owner < 0) return this.drop(DistributorDrop.NO_OWNER);
    const port = g.endpointPort[owner]!;
    if (port === 0) return this.drop(DistributorDrop.NO_ENDPOINT);
    writeLinkHeader(buf, 0, LinkMsg.INGRESS, 0, iface.index, g.epoch);
    g.toMembers++;
    this.sendToMember(buf, 0, length, port, g.endpointAddress[owner]!);
  }

  private onLink6(iface: InterfaceState, buf: Uint8Array, offset: number): boolean {
    const gw = iface.gw6!;
    let bits = iface.prefix6;
    let equal = true;
    for (let i = 0; i < 16; i++) {
      const x = buf[offset + i]! ^ gw[i]!;
      if (x !== 0) equal = false;
      if (bits >= 8) {
        if (x !== 0) return false;
        bits -= 8;
      } else if (bits > 0) {
        if ((x & (0xff << (8 - bits)) & 0xff) !== 0) return false;
        bits = 0;
      }
    }
    return !equal; // the gateway's own address is no neighbour
  }

  private onArp(iface: InterfaceState, buf: Uint8Array, length: number, srcAddress: string, nowMs: number): void {
    const view = this.view;
    const g = iface.group;
    const sender = view.arpSenderIp;
    const target = view.arpTargetIp;
    const s = view.arpSenderMacOffset;
    const t = view.arpTargetMacOffset;
    if (iface.has4 && sender !== 0 && sender !== iface.gw4 && (buf[s]! & 1) === 0) {
      const onLink = ((sender ^ iface.gw4) & iface.mask4) === 0 && sender !== iface.broadcast4;
      if (onLink || this.isPending(g, metaOf(iface.index, false), sender, 0, 0, 0)) {
        this.learn(iface, false, sender, 0, 0, 0, buf, s, srcAddress, nowMs);
      }
    }
    if (view.arpOp === 1 && iface.has4 && target === iface.gw4) {
      // The reply is written over the request (same length): target := sender, sender := gateway.
      buf.copyWithin(t, s, s + 10);
      buf.set(iface.mac, s);
      w32(buf, s + 6, iface.gw4);
      buf[s - 2] = 0;
      buf[s - 1] = 2;
      buf.copyWithin(L2, t, t + 6);
      buf.set(iface.mac, L2 + 6);
      writeVxlanHeader(buf, 0, iface.vni);
      g.arpReplies++;
      this.sendToSite(buf, 0, length, iface.sitePort, srcAddress);
      return;
    }
    if (view.arpOp === 2 || sender === target) {
      g.neighbourFrames++;
      return;
    }
    this.drop(DistributorDrop.ARP_UNANSWERED);
  }

  private onNeighbourDiscovery(iface: InterfaceState, buf: Uint8Array, srcAddress: string, nowMs: number): void {
    const view = this.view;
    const g = iface.group;
    const l4 = view.l4Offset;
    const ndLength = view.l3End - l4;
    // RFC 4861 7.1: hop limit 255 (the message was not forwarded), code 0, room for the target.
    const valid = view.ttl === 255 && view.icmpCode === 0 && ndLength >= 24;
    if (view.icmpType === ND_NS && valid && iface.gw6 !== null && equal16(buf, l4 + 8, iface.gw6, 0)) {
      this.sendNeighbourAdvertisement(iface, buf, srcAddress);
      g.arpReplies++;
      return;
    }
    if (view.icmpType === ND_NA && valid) {
      const target = l4 + 8;
      // The target link-layer address option when it comes first, else the frame's source.
      const macOffset = ndLength >= 32 && buf[l4 + 24] === 2 && buf[l4 + 25] === 1 ? l4 + 26 : L2 + 6;
      if (iface.gw6 !== null && (buf[macOffset]! & 1) === 0) {
        const w0 = r32(buf, target);
        const w1 = r32(buf, target + 4);
        const w2 = r32(buf, target + 8);
        const w3 = r32(buf, target + 12);
        if (this.onLink6(iface, buf, target) || this.isPending(g, metaOf(iface.index, true), w0, w1, w2, w3)) {
          this.learn(iface, true, w0, w1, w2, w3, buf, macOffset, srcAddress, nowMs);
        }
      }
      g.neighbourFrames++;
      return;
    }
    this.drop(DistributorDrop.ND_UNANSWERED);
  }

  /** A neighbour advertisement for the gateway's IPv6 address, answering the NS in this.view. */
  private sendNeighbourAdvertisement(iface: InterfaceState, ns: Uint8Array, srcAddress: string): void {
    const view = this.view;
    const out = new Uint8Array(L2 + ETHERNET_BYTES + 40 + ND_BYTES);
    writeVxlanHeader(out, 0, iface.vni);
    // Duplicate address detection (source ::) is answered to all nodes, without S (RFC 4861 7.2.4).
    let dad = true;
    for (let i = 0; i < 16; i++) if (ns[view.srcAddrOffset + i] !== 0) dad = false;
    if (dad) out.set([0x33, 0x33, 0, 0, 0, 1], L2);
    else for (let i = 0; i < 6; i++) out[L2 + i] = ns[L2 + 6 + i]!;
    out.set(iface.mac, L2 + 6);
    w16(out, L2 + 12, ETHERTYPE_IPV6);
    const l3 = L2 + ETHERNET_BYTES;
    out[l3] = 0x60;
    w16(out, l3 + 4, ND_BYTES);
    out[l3 + 6] = IpProto.ICMPV6;
    out[l3 + 7] = 255;
    out.set(iface.gw6!, l3 + 8);
    if (dad) out.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], l3 + 24);
    else for (let i = 0; i < 16; i++) out[l3 + 24 + i] = ns[view.srcAddrOffset + i]!;
    const l4 = l3 + 40;
    out[l4] = ND_NA;
    out[l4 + 4] = dad ? 0xa0 : 0xe0; // router, solicited, override
    out.set(iface.gw6!, l4 + 8);
    out[l4 + 24] = 2; // target link-layer address
    out[l4 + 25] = 1;
    out.set(iface.mac, l4 + 26);
    fillIcmpv6Checksum(out, l3, ND_BYTES);
    this.sendToSite(out, 0, out.length, iface.sitePort, srcAddress);
  }

  // ---- neighbours ---------------------------------------------------------------------------

  private learn(
    iface: InterfaceState,
    v6: boolean,
    w0: number,
    w1: number,
    w2: number,
    w3: number,
    buf: Uint8Array,
    macOffset: number,
    srcAddress: string,
    nowMs: number,
  ): void {
    // A multicast / broadcast MAC is nobody's address: never learned.
    if ((buf[macOffset]! & 1) !== 0) return;
    const g = iface.group;
    const meta = metaOf(iface.index, v6);
    const n = this.neighbours;
    if (n.learn(g.slot, meta, w0, w1, w2, w3, buf, macOffset, srcAddress, iface.sitePort, nowMs) === LEARN_SAME) return;
    const e = n.entry;
    this.markDirty(g, e);
    if (this.pending.size > 0) {
      const key = pendingKey(g.slot, meta, w0, w1, w2, w3);
      const p = this.pending.get(key);
      if (p !== undefined) {
        this.pending.delete(key);
        this.flushPending(p, e);
      }
    }
  }

  private isPending(g: GroupState, meta: number, w0: number, w1: number, w2: number, w3: number): boolean {
    return this.pending.size > 0 && this.pending.has(pendingKey(g.slot, meta, w0, w1, w2, w3));
  }

  private markDirty(g: GroupState, e: number): void {
    const n = this.neighbours;
    if (n.dirtyFor[e] === g.slot + 1) return;
    n.dirtyFor[e] = g.slot + 1;
    g.dirty.push(e);
    if (g.dirty.length >= NEIGH_ENTRIES_MAX) this.flushDirty(g);
  }

  private flushDirty(g: GroupState): void {
    const n = this.neighbours;
    const entries: number[] = [];
    for (const e of g.dirty) {
      if (n.dirtyFor[e] !== g.slot + 1) continue;
      n.dirtyFor[e] = 0;
      if (n.group[e] === g.slot) entries.push(e);
    }
    g.dirty.length = 0;
    if (entries.length > 0) this.announce(g, entries, -1);
  }

  /** NEIGH datagrams with the given entries, to one table member or (member -1) to all. */
  private announce(g: GroupState, entries: readonly number[], member: number): void {
    const n = this.neighbours;
    for (let i = 0; i < entries.length; i += NEIGH_ENTRIES_MAX) {
      const batch = entries.slice(i, i + NEIGH_ENTRIES_MAX).map((e) => n.toEntry(e));
      const datagram = encodeNeighbours(batch, g.neighKey);
      for (let m = 0; m < g.members.length; m++) {
        if ((member >= 0 && m !== member) || g.endpointPort[m] === 0) continue;
        this.neighAnnouncements++;
        this.sendToMember(datagram, 0, datagram.length, g.endpointPort[m]!, g.endpointAddress[m]!);
      }
    }
  }

  // ---- from the members ---------------------------------------------------------------------

  /** A member-link datagram from srcAddress:srcPort. */
  fromMember(buf: Uint8Array, length: number, srcAddress: string, srcPort: number, nowMs: number): void {
    assert(length >= 0 && length <= buf.length, "fromMember: length outside buffer");
    const refs = this.membersByPort.get(srcPort);
    let g: GroupState | null = null;
    if (refs !== undefined) {
      for (let i = 0; i < refs.length; i++) {
        if (refs[i]!.address === srcAddress) {
          g = refs[i]!.group;
          break;
        }
      }
    }
    if (g === null) return this.drop(DistributorDrop.UNKNOWN_MEMBER);
    const type = linkTypeOf(buf, length);
    if (type === 0) return this.drop(DistributorDrop.BAD_LINK_HEADER);
    if (type !== LinkMsg.EGRESS) return this.drop(DistributorDrop.LINK_TYPE);
    const iface = g.interfaces[linkIfIndex(buf)];
    if (iface === undefined) return this.drop(DistributorDrop.EGRESS_BAD_INTERFACE);

    // Only the inner L3 destination is needed: Ethernet type after at most two VLAN tags.
    if (length < L2 + ETHERNET_BYTES) return this.drop(DistributorDrop.EGRESS_MALFORMED);
    let p = L2 + 12;
    let etherType = r16(buf, p);
    p += 2;
    for (let tags = 0; tags < 2 && (etherType === 0x8100 || etherType === 0x88a8 || etherType === 0x9100); tags++) {
      if (p + 4 > length) return this.drop(DistributorDrop.EGRESS_MALFORMED);
      etherType = r16(buf, p + 2);
      p += 4;
    }
    const n = this.neighbours;
    if (etherType === ETHERTYPE_IPV4) {
      if (p + 20 > length || buf[p]! >>> 4 !== 4) return this.drop(DistributorDrop.EGRESS_MALFORMED);
      const word = linkWord(buf);
      const nextHop = word !== 0 ? word : r32(buf, p + 16);
      const e = n.find(g.slot, metaOf(iface.index, false), nextHop, 0, 0, 0);
      if (e !== NONE) return this.sendToNeighbour(iface, buf, length, e);
      if (!iface.has4) return this.drop(DistributorDrop.EGRESS_NO_GATEWAY_ADDRESS);
      if (nextHop === iface.gw4) return this.drop(DistributorDrop.EGRESS_TO_GATEWAY);
      return this.enqueue(iface, false, nextHop, 0, 0, 0, buf, length, nowMs);
    }
    if (etherType === ETHERTYPE_IPV6) {
      if (p + 40 > length || buf[p]! >>> 4 !== 6) return this.drop(DistributorDrop.EGRESS_MALFORMED);
      const d = p + 24;
      const w0 = r32(buf, d);
      const w1 = r32(buf, d + 4);
      const w2 = r32(buf, d + 8);
      const w3 = r32(buf, d + 12);
      const e = n.find(g.slot, metaOf(iface.index, true), w0, w1, w2, w3);
      if (e !== NONE) return this.sendToNeighbour(iface, buf, length, e);
      if (iface.gw6 === null) return this.drop(DistributorDrop.EGRESS_NO_GATEWAY_ADDRESS);
      if (equal16(buf, d, iface.gw6, 0)) return this.drop(DistributorDrop.EGRESS_TO_GATEWAY);
      return this.enqueue(iface, true, w0, w1, w2, w3, buf, length, nowMs);
    }
    this.drop(DistributorDrop.EGRESS_MALFORMED);
  }

  /** Rewrites the MACs and the 8-byte header (-> VXLAN) in place, sends to the neighbour's VTEP. */
  private sendToNeighbour(iface: InterfaceState, buf: Uint8Array, length: number, e: number): void {
    const n = this.neighbours;
    const m = e * 6;
    for (let i = 0; i < 6; i++) buf[L2 + i] = n.mac[m + i]!;
    buf.set(iface.mac, L2 + 6);
    writeVxlanHeader(buf, 0, iface.vni);
    iface.group.egress++;
    this.sendToSite(buf, 0, length, n.vtepPort[e]!, n.vtepAddress[e]!);
  }

  private enqueue(
    iface: InterfaceState,
    v6: boolean,
    w0: number,
    w1: number,
    w2: number,
    w3: number,
    buf: Uint8Array,
    length: number,
    nowMs: number,
  ): void {
    const g = iface.group;
    const key = pendingKey(g.slot, metaOf(iface.index, v6), w0, w1, w2, w3);
    let p = this.pending.get(key);
    if (p === undefined) {
      if (this.pending.size >= PENDING_NEIGHBOURS_MAX) return this.drop(DistributorDrop.EGRESS_QUEUE_FULL);
      p = { group: g, ifIndex: iface.index, v6, words: Uint32Array.of(w0, w1, w2, w3), frames: [], startedMs: nowMs, lastRequestMs: nowMs };
      this.pending.set(key, p);
      this.sendResolution(iface, p);
    }
    if (p.frames.length >= PENDING_FRAMES_PER_NEIGHBOUR_MAX || this.pendingFrames >= PENDING_FRAMES_MAX) {
      return this.drop(DistributorDrop.EGRESS_QUEUE_FULL);
    }
    // A copy: the caller's buffer may be reused once this returns.
    const copy = new Uint8Array(length);
    copy.set(buf.subarray(0, length));
    p.frames.push(copy);
    this.pendingFrames++;
    g.egressQueued++;
  }

  private flushPending(p: Pending, e: number): void {
    const iface = p.group.interfaces[p.ifIndex];
    for (const frame of p.frames) {
      this.pendingFrames--;
      if (iface === undefined) this.drop(DistributorDrop.INTERFACE_REMOVED);
      else this.sendToNeighbour(iface, frame, frame.length, e);
    }
    p.frames.length = 0;
  }

  /** Drops the queued frames of a group (ifIndex < 0) or of one of its interfaces. */
  private dropPendingOf(g: GroupState, ifIndex: number): void {
    for (const [key, p] of this.pending) {
      if (p.group !== g || (ifIndex >= 0 && p.ifIndex !== ifIndex)) continue;
      this.pending.delete(key);
      for (let i = 0; i < p.frames.length; i++) this.drop(DistributorDrop.INTERFACE_REMOVED);
      this.pendingFrames -= p.frames.length;
    }
  }

  /** An ARP request (IPv4) or a neighbour solicitation (IPv6) for p's address, to the interface's site. */
  private sendResolution(iface: InterfaceState, p: Pending): void {
    iface.group.resolutions++;
    let out: Uint8Array;
    if (!p.v6) {
      // Ethernet is padded to its 60-byte minimum.
      out = new Uint8Array(L2 + 60);
      writeVxlanHeader(out, 0, iface.vni);
      out.fill(0xff, L2, L2 + 6);
      out.set(iface.mac, L2 + 6);
      w16(out, L2 + 12, ETHERTYPE_ARP);
      const a = L2 + ETHERNET_BYTES;
      w16(out, a, 1);
      w16(out, a + 2, ETHERTYPE_IPV4);
      out[a + 4] = 6;
      out[a + 5] = 4;
      w16(out, a + 6, 1);
      out.set(iface.mac, a + 8);
      w32(out, a + 14, iface.gw4);
      w32(out, a + 24, p.words[0]!);
    } else {
      const target = new Uint8Array(16);
      for (let i = 0; i < 4; i++) w32(target, i * 4, p.words[i]!);
      out = new Uint8Array(L2 + ETHERNET_BYTES + 40 + ND_BYTES);
      writeVxlanHeader(out, 0, iface.vni);
      // Solicited-node multicast: ff02::1:ffXX:XXXX and 33:33:ff:XX:XX:XX (RFC 4291, RFC 2464).
      out.set([0x33, 0x33, 0xff, target[13]!, target[14]!, target[15]!], L2);
      out.set(iface.mac, L2 + 6);
      w16(out, L2 + 12, ETHERTYPE_IPV6);
      const l3 = L2 + ETHERNET_BYTES;
      out[l3] = 0x60;
      w16(out, l3 + 4, ND_BYTES);
      out[l3 + 6] = IpProto.ICMPV6;
      out[l3 + 7] = 255;
      out.set(iface.gw6!, l3 + 8);
      out.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, target[13]!, target[14]!, target[15]!], l3 + 24);
      const l4 = l3 + 40;
      out[l4] = ND_NS;
      out.set(target, l4 + 8);
      out[l4 + 24] = 1; // source link-layer address
      out[l4 + 25] = 1;
      out.set(iface.mac, l4 + 26);
      fillIcmpv6Checksum(out, l3, ND_BYTES);
    }
    this.sendToSite(out, 0, out.length, iface.sitePort, iface.siteAddress);
  }

  // ---- time ---------------------------------------------------------------------------------

  /** Resolution retries and timeouts, neighbour announcements (batched here), periodic re-announcement. */
  tick(nowMs: number): void {
    for (const [key, p] of this.pending) {
      if (nowMs - p.startedMs >= RESOLVE_TIMEOUT_MS) {
        this.pending.delete(key);
        for (let i = 0; i < p.frames.length; i++) this.drop(DistributorDrop.EGRESS_UNRESOLVED);
        this.pendingFrames -= p.frames.length;
        continue;
      }
      if (nowMs - p.lastRequestMs >= RESOLVE_RETRY_MS) {
        const iface = p.group.interfaces[p.ifIndex];
        if (iface === undefined) continue; // dropped when the configuration removed it
        p.lastRequestMs = nowMs;
        this.sendResolution(iface, p);
      }
    }
    for (const g of this.groups.values()) if (g.dirty.length > 0) this.flushDirty(g);
    if (this.nextReannounceMs < 0) this.nextReannounceMs = nowMs + NEIGH_REANNOUNCE_MS;
    if (nowMs >= this.nextReannounceMs) {
      this.nextReannounceMs = nowMs + NEIGH_REANNOUNCE_MS;
      for (const g of this.groups.values()) {
        const entries = this.neighbours.entriesOf(g.slot);
        if (entries.length > 0) this.announce(g, entries, -1);
      }
    }
  }

  // ---- counters -----------------------------------------------------------------------------

  private drop(reason: DistributorDrop): void {
    this.drops[reason]!++;
  }

  /** Count of one drop reason (tests, metrics). */
  dropCount(reason: DistributorDrop): number {
    return this.drops[reason]!;
  }

  stats(): DistributorStats {
    const groups: Record<string, DistributorGroupStats> = {};
    for (const g of this.groups.values()) {
      groups[g.name] = {
        epoch: g.epoch,
        epochInstalledAtMs: g.epochInstalledAtMs,
        packetsIn: g.packetsIn,
        toMembers: g.toMembers,
        egress: g.egress,
        arpReplies: g.arpReplies,
        neighbours: this.neighbours.perGroup[g.slot]!,
        egressQueued: g.egressQueued,
        resolutions: g.resolutions,
        neighbourFrames: g.neighbourFrames,
      };
    }
    const drops: Record<string, number> = {};
    for (let i = 0; i < DISTRIBUTOR_DROP_NAMES.length; i++) drops[DISTRIBUTOR_DROP_NAMES[i]!] = this.drops[i]!;
    return {
      groups,
      drops,
      neighbourEvictions: this.neighbours.evictions,
      neighAnnouncements: this.neighAnnouncements,
      pendingNeighbours: this.pending.size,
      pendingFrames: this.pendingFrames,
    };
  }
}

function equal16(buf: Uint8Array, offset: number, other: Uint8Array, otherOffset: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[offset + i] !== other[otherOffset + i]) return false;
  return true;
}
