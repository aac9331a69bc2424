// The simulator's invariants, checked continuously (every CHECK_INTERVAL_MS of virtual time,
// and on every frame a member processes) and once more at the end of a run:
//
//   (a) ownership   every bucket of the distributor's table has exactly one owner, a member of
//                   the table, distinct from its backup, and never a member declared dead; one
//                   epoch number always names one table; a member processes a frame only if it
//                   owns the frame's bucket in the distributor's table, or owned it in a table
//                   that was replaced less than STRAGGLER_WINDOW ago (frames in flight across an
//                   epoch change).
//   (b) protection  after convergence (no transition, no partition, no undetected crash, a quiet
//                   period since the last change), every connection quiet for QUIET_MS (QUIET_LOSSY_MS
//                   while the network loses or duplicates) is held by
//                   its bucket's owner (role owner) and by its backup (role backup) and by no
//                   other live member, and the two copies agree on key and state; at the end,
//                   per-bucket digests of owner and backup are equal.
//   (c) survival    no connection whose handshake completed is lost: neither given up by its
//                   hosts (retries exhausted) nor has any packet dropped by a member after the
//                   handshake. Excused, and counted apart: losses after a double fault, and a
//                   connection whose handshake completed less than REPLICATION_GRACE_MS before
//                   its owner crashed and that no surviving member held at the crash (its
//                   creation was still on its way to the backup: replication is asynchronous).
//   (d) accounting  every frame copy a host sent (or the network duplicated) is delivered to a
//                   host, dropped by a member with a counted reason, lost by a counted network
//                   fault, dropped by the distributor with a counted reason, or still in flight:
//                   an exact sum, at every check. The members' own engine counters must agree
//                   with what the simulator saw them drop, reason by reason.
//
// A violation is a sentence naming the time, the member, the bucket and the flow, so a failing
// seed explains itself before anyone replays it.

import { backupOf, ownerOf, type EpochTable } from "../distribution/epoch.js";
import { NO_MEMBER } from "../distribution/rendezvous.js";
import { bucketOfView } from "../distribution/bucket-hash.js";
import { CONN_STATE_NAMES, DROP_REASON_COUNT, DROP_REASON_NAMES, DropReason, type ConnectionSnapshot } from "../engine/types.js";
import { formatIp } from "../packet/addr.js";
import { parseFrame } from "../packet/parse.js";
import { IpProto, LinkType, PacketView } from "../packet/view.js";
import { BACKUP_EXPIRY_GRACE_MS, STALE_HOLD_MS } from "../hypersync/cluster-node.js";
import type { EventQueue } from "./clock.js";
import type { SimController } from "./controller.js";
import type { SimDistributor } from "./distributor.js";
import type { FlowRecord, Hosts } from "./hosts.js";
import type { ConnectionRole, SimMember, SimNode } from "./member.js";
import type { SimMessage } from "./messages.js";
import type { Network } from "./network.js";

export const CHECK_INTERVAL_MS = 50;
/** The protection check (b) walks every member's table: every PROTECTION_EVERY-th check only. */
export const PROTECTION_EVERY = 5;
/** A connection (or a cluster) untouched for this long must have converged. */
export const QUIET_MS = 300;
/**
 * While the network loses or duplicates messages, a record may need retransmissions (the
 * channel's RTO reaches 200 ms): a connection must then be quiet this long before its copies
 * are compared. The final check runs with faults off.
 */
export const QUIET_LOSSY_MS = 1000;
/** A protection finding must persist this long to be a violation (expiry sweep + DELETE + retransmission). */
export const CONFIRM_MS = 1500;
/** A handshake this close before its owner's crash may not have reached the backup yet. */
export const REPLICATION_GRACE_MS = 200;
/** Violations kept as text (the count keeps going). */
const VIOLATION_TEXTS_MAX = 50;

/** A member crash as the invariants remember it. */
export interface CrashRecord {
  member: string;
  atMs: number;
  /** Flow keys the crashed node held as owner. */
  ownedKeys: Set<string>;
  /** Flow keys some surviving member held (any role) at the crash. */
  heldElsewhere: Set<string>;
}

export interface World {
  queue: EventQueue;
  network: Network<SimMessage>;
  distributor: SimDistributor;
  controller: SimController;
  members: readonly SimMember[];
  hosts: Hosts;
  crashes: CrashRecord[];
  /** Times partitions of the sync network were last healed (for the quiet period). */
  lastPartitionHealMs: number;
  /** When the run switched its lossy fault profile off (-Infinity while never). */
  faultsClearedAtMs: number;
}

export class InvariantStats {
  checks = 0;
  convergenceChecks = 0;
  connectionsCompared = 0;
  /** Owner/backup copies that agree on state but not on TCP window fields (informative). */
  windowMismatches = 0;
  /** Frames processed by the previous owner within STRAGGLER_WINDOW of an epoch change. */
  stragglersProcessed = 0;
  /**
   * Two running members processed frames of one connection under the same epoch number of
   * theirs: the handover at a flip (the new owner, still on the old epoch, processes what it
   * holds as filled copy while the old owner finishes frames in flight; the old owner's
   * changes reach it as the fill's live updates). Informative: (a) judges processing against
   * the distributor's table instead.
   */
  sameEpochOverlaps = 0;
  lostExcusedReplicationLag = 0;
  lostExcusedDoubleFault = 0;
  handshakesCompleted = 0;
  failedBeforeHandshake = 0;
}

export function flowKeyOf(protocol: number, src: string, srcPort: number): string {
  return `${protocol}/${src}/${srcPort}`;
}

export function flowKeyOfSpec(f: FlowRecord): string {
  const s = f.spec;
  const protocol = s.kind === "udp" ? IpProto.UDP : s.kind === "icmp" ? IpProto.ICMP : IpProto.TCP;
  return flowKeyOf(protocol, s.clientAddress, s.kind === "icmp" ? s.clientPort & 0xffff : s.clientPort);
}

export function flowKeyOfSnapshot(s: ConnectionSnapshot): string {
  return flowKeyOf(s.protocol, formatIp(s.src), s.srcPort);
}

interface TableEra {
  table: EpochTable;
  fromMs: number;
  /** When the next table replaced it (Infinity while current). */
  untilMs: number;
}

export class InvariantChecker {
  readonly violations: string[] = [];
  violationCount = 0;
  readonly stats = new InvariantStats();
  /** Last time a member processed a frame of each flow. */
  private lastActivityMs = new Float64Array(0);
  /** Per flow: the member that last processed one of its frames, and that member's epoch then. */
  private lastMember: (string | null)[] = [];
  private lastEpoch = new Float64Array(0);
  /** Protection findings awaiting confirmation (see suspect()). */
  private readonly suspects = new Map<string, { sinceMs: number; reported: boolean }>();
  private readonly seenNow = new Set<string>();
  private readonly keyToFlow = new Map<string, number>();
  private readonly eras: TableEra[] = [];
  private readonly epochTables = new Map<number, EpochTable>();
  private installedSeen = 0;
  /** Last time any member processed a frame. */
  lastProcessedMs = -Infinity;
  private readonly view = new PacketView();

  constructor(
    private readonly world: World,
    /** Frames in flight across an epoch change may reach the previous owner this long after it. */
    readonly stragglerWindowMs: number,
  ) {}

  /** Call once every flow is registered (before the run starts). */
  indexFlows(): void {
    const flows = this.world.hosts.flows;
    this.lastActivityMs = new Float64Array(flows.length).fill(-Infinity);
    this.lastMember = new Array<string | null>(flows.length).fill(null);
    this.lastEpoch = new Float64Array(flows.length);
    for (const f of flows) this.keyToFlow.set(flowKeyOfSpec(f), f.id);
  }

  private violation(text: string): void {
    this.violationCount++;
    if (this.violations.length < VIOLATION_TEXTS_MAX) this.violations.push(`t=${this.world.queue.nowMs.toFixed(3)}ms ${text}`);
  }

  private followTables(): void {
    const installed = this.world.controller.installed;
    for (; this.installedSeen < installed.length; this.installedSeen++) {
      const table = installed[this.installedSeen]!;
      const known = this.epochTables.get(table.epoch);
      if (known !== undefined && !sameTable(known, table)) this.violation(`(a) epoch ${table.epoch} names two different tables`);
      this.epochTables.set(table.epoch, table);
      const last = this.eras[this.eras.length - 1];
      if (last !== undefined && sameTable(last.table, table)) continue; // a fill phase re-installs the same table
      const now = this.world.queue.nowMs;
      if (last !== undefined) last.untilMs = now;
      this.eras.push({ table, fromMs: now, untilMs: Infinity });
      if (this.eras.length > 64) this.eras.shift();
    }
  }

  // ---- per frame --------------------------------------------------------------------------

  /** A member processed (not corrected) a frame of `flow`. */
  processed(member: string, flow: number, frame: Uint8Array, nodeBucket: number, dropReason: number, epoch: number): void {
    const now = this.world.queue.nowMs;
    this.followTables();
    this.lastActivityMs[flow] = now;
    this.lastProcessedMs = now;
    const previous = this.lastMember[flow];
    if (previous !== null && previous !== member && this.lastEpoch[flow] === epoch && this.world.members.some((m) => m.name === previous && m.alive)) {
      this.stats.sameEpochOverlaps++;
    }
    this.lastMember[flow] = member;
    this.lastEpoch[flow] = epoch;
    const d = this.world.distributor;
    if (!parseFrame(this.view, frame, 0, frame.length, LinkType.ETHERNET)) {
      this.violation(`(a) ${member} processed an unparsable frame of flow ${flow}`);
      return;
    }
    const bucket = bucketOfView(d.seed, this.view, d.bucketCount);
    if (nodeBucket !== bucket) this.violation(`(a) ${member} put flow ${flow} in bucket ${nodeBucket}, the distributor in ${bucket}`);
    const current = this.eras[this.eras.length - 1]!;
    if (ownerOf(current.table, bucket) === member) return;
    for (let i = this.eras.length - 2; i >= 0; i--) {
      const era = this.eras[i]!;
      if (now - era.untilMs > this.stragglerWindowMs) break;
      if (ownerOf(era.table, bucket) === member) {
        this.stats.stragglersProcessed++;
        return;
      }
    }
    this.violation(
      `(a) ${member} processed a frame of flow ${flow} (bucket ${bucket}, ${DROP_REASON_NAMES[dropReason]}) but the owner is ${ownerOf(current.table, bucket)} in epoch ${current.table.epoch} since t=${current.fromMs.toFixed(3)}`,
    );
  }

  // ---- periodic ---------------------------------------------------------------------------

  periodic(): void {
    this.stats.checks++;
    this.followTables();
    this.checkTable();
    this.checkAccounting();
    if (this.stats.checks % PROTECTION_EVERY === 0 && this.converged()) this.checkProtection(false);
  }

  /** End of the run: everything, digests included. */
  final(): void {
    this.periodic();
    if (this.converged()) this.checkProtection(true);
    else {
      const t = this.world.controller.transition;
      const pending = t === null ? "" : `, ${t.pending.size} fills pending (bucket/member: ${[...t.pending].slice(0, 8).join(" ")})`;
      this.violation(`(b) the cluster did not converge by the end of the run (transition: ${t === null ? "none" : `${t.kind} of ${t.member}`}${pending})`);
    }
    this.checkSurvival();
  }

  private checkTable(): void {
    const w = this.world;
    const t = w.distributor.table;
    if (t === null) return;
    if (t.epoch !== w.controller.current.epoch) this.violation(`(a) distributor at epoch ${t.epoch}, controller at ${w.controller.current.epoch}`);
    const { owner, backup, members, bucketCount } = t.table;
    for (let b = 0; b < bucketCount; b++) {
      const o = owner[b]!;
      if (o === NO_MEMBER || o < 0 || o >= members.length) {
        this.violation(`(a) bucket ${b} has no owner in epoch ${t.epoch}`);
        return;
      }
      if (backup[b] === o) {
        this.violation(`(a) bucket ${b} has ${members[o]} as owner and backup in epoch ${t.epoch}`);
        return;
      }
    }
    for (const m of members) {
      if (w.controller.statusOf(m) === "down") {
        this.violation(`(a) epoch ${t.epoch} routes to ${m}, which was declared dead`);
        return;
      }
    }
  }

  private checkAccounting(): void {
    const w = this.world;
    const n = w.network.counters;
    let memberDrops = 0;
    const byReason = new Float64Array(DROP_REASON_COUNT);
    const engineByReason = new Float64Array(DROP_REASON_COUNT);
    for (const m of w.members) {
      for (let r = 0; r < DROP_REASON_COUNT; r++) {
        memberDrops += m.stats.drops[r]!;
        byReason[r] += m.stats.drops[r]!;
      }
      for (const node of m.nodes) {
        for (let r = 0; r < DROP_REASON_COUNT; r++) engineByReason[r] += node.engine.counters.dropReasons[r]!;
        // A node without an epoch drops frames itself (not-owner), outside its engine.
        engineByReason[DropReason.NOT_OWNER] += node.counters.notOwnerDrops ?? 0;
      }
    }
    const sent = w.hosts.stats.framesSent + n.host.duplicated + n.member.duplicated;
    const ended =
      w.hosts.stats.framesReceived +
      memberDrops +
      n.host.lostRandom + n.host.lostPartition + n.host.lostDown +
      n.member.lostRandom + n.member.lostPartition + n.member.lostDown +
      w.distributor.stats.drops +
      n.host.inFlight + n.member.inFlight;
    if (sent !== ended) {
      this.violation(`(d) packet accounting: ${sent} frame copies sent, ${ended} delivered, dropped, lost or in flight`);
    }
    for (let r = 1; r < DROP_REASON_COUNT; r++) {
      if (byReason[r] !== engineByReason[r]) {
        this.violation(`(d) members dropped ${byReason[r]} frames as ${DROP_REASON_NAMES[r]}, their engines counted ${engineByReason[r]}`);
        return;
      }
    }
  }

  /** How long a connection must be untouched before its copies must agree (see QUIET_LOSSY_MS). */
  quietMs(): number {
    const w = this.world;
    const p = w.network.profile;
    const lossy = p.lossRate > 0 || p.duplicateRate > 0 || w.queue.nowMs - w.faultsClearedAtMs < QUIET_LOSSY_MS;
    return lossy ? QUIET_LOSSY_MS : QUIET_MS;
  }

  /** No transition, no partition, no crash waiting for detection, nothing changed for QUIET_MS. */
  converged(): boolean {
    const w = this.world;
    const now = w.queue.nowMs;
    if (w.controller.transition !== null || w.network.partitionsActive > 0) return false;
    if (now - w.controller.lastChangeMs < QUIET_MS || now - w.lastPartitionHealMs < QUIET_MS) return false;
    for (const m of w.members) {
      const status = w.controller.statusOf(m.name);
      const running = status === "up" || status === "joining" || status === "draining";
      if (running !== m.alive) return false; // crashed, not yet declared dead (or stopping)
      if (status === "joining" || status === "draining") return false;
    }
    return true;
  }

  /**
   * A protection finding becomes a violation only when it persists for CONFIRM_MS: an owner's
   * expiry sweep and its DELETE (or a record retransmitted after a loss) race any single look,
   * and (b) is about convergence, not about one instant.
   */
  private suspect(id: string, text: string): void {
    this.seenNow.add(id);
    const known = this.suspects.get(id);
    const now = this.world.queue.nowMs;
    if (known === undefined) {
      this.suspects.set(id, { sinceMs: now, reported: false });
      return;
    }
    if (!known.reported && now - known.sinceMs >= CONFIRM_MS) {
      known.reported = true;
      this.violation(`${text} (for ${(now - known.sinceMs).toFixed(0)} ms)`);
    }
  }

  /** Runs the full protection check (b), digests included: the simulator calls it at the end. */
  probeProtection(): void {
    if (this.converged()) this.checkProtection(true);
  }

  private checkProtection(final: boolean): void {
    this.stats.convergenceChecks++;
    this.seenNow.clear();
    this.checkProtectionInner(final);
    // Findings not seen this time went away: forget them (digests are compared by full checks only).
    for (const id of [...this.suspects.keys()]) {
      if (!this.seenNow.has(id) && (final || !id.startsWith("digest "))) this.suspects.delete(id);
    }
  }

  private checkProtectionInner(final: boolean): void {
    const w = this.world;
    const now = w.queue.nowMs;
    const table = w.controller.current;
    const live = w.members.filter((m) => m.alive && table.table.members.includes(m.name));
    const quietMs = this.quietMs();
    // A node keeps copies of buckets it no longer holds for STALE_HOLD_MS (a peer one epoch
    // ahead may be filling them for it); after that they must be gone.
    // Records a partition held back arrive after the heal and extend the hold.
    const staleAllowed = now - Math.max(w.controller.lastChangeMs, w.lastPartitionHealMs) < STALE_HOLD_MS + QUIET_MS;
    // key -> holders
    const holders = new Map<string, { member: string; role: ConnectionRole; s: ConnectionSnapshot; bucket: number }[]>();
    for (const m of w.members) {
      if (!m.alive) continue;
      m.node!.forEachConnection((bucket, s, role) => {
        const key = flowKeyOfSnapshot(s);
        let list = holders.get(key);
        if (list === undefined) holders.set(key, (list = []));
        list.push({ member: m.name, role, s, bucket });
      });
    }
    for (const [key, all] of holders) {
      const list = staleAllowed ? all.filter((h) => h.role !== "stale") : all;
      if (list.length === 0) continue;
      const flow = this.keyToFlow.get(key);
      if (flow !== undefined && now - this.lastActivityMs[flow]! < quietMs) continue;
      // Expiring: the sweeps and the DELETE race the comparison. A copy's expiry carries the
      // backup grace on top of the owner's, whose expiry (and sweep, up to a second later) is
      // what removes the connection everywhere.
      if (list.some((h) => h.s.expiresAtMs - (h.role === "owner" ? 0 : BACKUP_EXPIRY_GRACE_MS) < now + quietMs)) continue;
      const bucket = list[0]!.bucket;
      const owner = ownerOf(table, bucket);
      const backup = backupOf(table, bucket);
      const where = `${key} (flow ${flow ?? "?"}, bucket ${bucket}, epoch ${table.epoch}, owner ${owner}, backup ${backup ?? "none"})`;
      const atOwner = list.filter((h) => h.member === owner);
      const atBackup = list.filter((h) => h.member === backup);
      const elsewhere = list.filter((h) => h.member !== owner && h.member !== backup);
      this.stats.connectionsCompared++;
      if (list.some((h) => h.bucket !== bucket)) this.suspect(`bucket ${key}`, `(b) members disagree on the bucket of ${where}`);
      if (atOwner.length === 0) {
        this.suspect(`owner ${key}`, `(b) ${where} is held by ${list.map((h) => `${h.member}:${h.role}`).join(",")} but not by its owner`);
        continue;
      }
      if (atOwner.length > 1 || atOwner[0]!.role !== "owner") this.suspect(`owner-role ${key}`, `(b) owner holds ${where} ${atOwner.length}x as ${atOwner[0]!.role}`);
      if (elsewhere.length > 0) this.suspect(`elsewhere ${key}`, `(b) ${where} also held by ${elsewhere.map((h) => `${h.member}:${h.role}`).join(",")}`);
      if (backup === null) continue;
      if (atBackup.length !== 1) {
        this.suspect(`backup ${key}`, `(b) backup holds ${where} ${atBackup.length} times`);
        continue;
      }
      const o = atOwner[0]!.s;
      const b = atBackup[0]!.s;
      if (atBackup[0]!.role !== "backup") this.suspect(`backup-role ${key}`, `(b) backup holds ${where} as ${atBackup[0]!.role}`);
      if (o.state !== b.state) this.suspect(`state ${key}`, `(b) ${where}: owner has ${CONN_STATE_NAMES[o.state]}, backup ${CONN_STATE_NAMES[b.state]}`);
      else if (!sameWindows(o, b)) this.stats.windowMismatches++;
    }
    if (!final) return;
    // Buckets with a connection near its expiry are skipped: the owner's sweep and its DELETE
    // race the comparison (a backup adds BACKUP_EXPIRY_GRACE_MS to the owner's expiry).
    const unstable = new Set<number>();
    for (const list of holders.values()) {
      for (const h of list) if (h.s.expiresAtMs - now < QUIET_MS + BACKUP_EXPIRY_GRACE_MS) unstable.add(h.bucket);
    }
    for (let bucket = 0; bucket < table.table.bucketCount; bucket++) {
      if (unstable.has(bucket)) continue;
      const owner = ownerOf(table, bucket);
      const backup = backupOf(table, bucket);
      const ownerNode = nodeOf(live, owner);
      if (ownerNode === null) continue;
      const digest = ownerNode.bucketDigest(bucket);
      if (backup !== null) {
        const backupNode = nodeOf(live, backup);
        if (backupNode !== null && backupNode.bucketDigest(bucket) !== digest) {
          this.suspect(`digest ${bucket}`, `(b) bucket ${bucket} digests differ: owner ${owner} ${hex(digest)}, backup ${backup} ${hex(backupNode.bucketDigest(bucket))}`);
        }
      }
    }
  }

  private checkSurvival(): void {
    const w = this.world;
    const s = this.stats;
    for (const f of w.hosts.flows) {
      if (f.handshakeAtMs < 0) {
        if (f.failedAtMs >= 0) s.failedBeforeHandshake++;
        continue;
      }
      s.handshakesCompleted++;
      const drop = f.memberDrops.find((d) => d.timeMs >= f.handshakeAtMs);
      const lostAtMs = drop !== undefined ? drop.timeMs : f.failedAtMs >= 0 ? f.failedAtMs : f.completedAtMs < 0 ? w.queue.nowMs : -1;
      if (lostAtMs < 0) continue;
      const how =
        drop !== undefined
          ? `packet dropped by ${drop.member} as ${DROP_REASON_NAMES[drop.reason]} at t=${drop.timeMs.toFixed(3)}`
          : f.failedReason !== null
            ? `${f.failedReason} at t=${f.failedAtMs.toFixed(3)}`
            : "never completed";
      if (w.controller.doubleFaultAtMs >= 0 && lostAtMs >= w.controller.doubleFaultAtMs) {
        s.lostExcusedDoubleFault++;
        continue;
      }
      const key = flowKeyOfSpec(f);
      // The crash of the connection's owner between its handshake (as the owner saw it: when it
      // forwarded the completing segment) and its loss, if any.
      const completedAtMs = f.handshakeProcessedAtMs >= 0 ? f.handshakeProcessedAtMs : f.handshakeAtMs;
      // The last such crash before the loss: the one that explains it, if any does.
      const crash = [...w.crashes].reverse().find((c) => c.atMs >= completedAtMs && c.atMs <= lostAtMs && c.ownedKeys.has(key));
      if (crash !== undefined && !crash.heldElsewhere.has(key) && crash.atMs - completedAtMs < REPLICATION_GRACE_MS) {
        s.lostExcusedReplicationLag++;
        continue;
      }
      const crashNote =
        crash !== undefined ? `; its owner ${crash.member} crashed at t=${crash.atMs.toFixed(3)} and ${crash.heldElsewhere.has(key) ? "a survivor held it" : "no survivor held it"}` : "";
      this.violation(
        `(c) connection lost: flow ${f.id} ${f.spec.kind} ${f.spec.clientAddress}:${f.spec.clientPort} > ${f.spec.serverAddress}:${f.spec.serverPort}, handshake at t=${f.handshakeAtMs.toFixed(3)} (forwarded at t=${completedAtMs.toFixed(3)}), ${how}${crashNote}`,
      );
    }
  }
}

function nodeOf(members: readonly SimMember[], name: string): SimNode | null {
  for (const m of members) if (m.name === name) return m.node;
  return null;
}

function sameTable(a: EpochTable, b: EpochTable): boolean {
  if (a === b) return true;
  const x = a.table;
  const y = b.table;
  if (a.seed !== b.seed || x.bucketCount !== y.bucketCount || x.members.join() !== y.members.join()) return false;
  for (let i = 0; i < x.bucketCount; i++) if (x.owner[i] !== y.owner[i] || x.backup[i] !== y.backup[i]) return false;
  return true;
}

function sameWindows(a: ConnectionSnapshot, b: ConnectionSnapshot): boolean {
  if (a.tcp === null || b.tcp === null) return a.tcp === b.tcp;
  const d = (p: typeof a.tcp.original, q: typeof a.tcp.original): boolean => p.end === q.end && p.maxEnd === q.maxEnd && p.maxWindow === q.maxWindow && p.scale === q.scale;
  return d(a.tcp.original, b.tcp.original) && d(a.tcp.reply, b.tcp.reply);
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

/** Flow keys every running member holds (any role), except `except`. */
export function keysHeld(members: readonly SimMember[], except: string | null): Set<string> {
  const out = new Set<string>();
  for (const m of members) {
    if (!m.alive || m.name === except) continue;
    m.node!.forEachConnection((_b, s) => out.add(flowKeyOfSnapshot(s)));
  }
  return out;
}

/** Flow keys a node holds as owner. */
export function keysOwned(node: SimNode): Set<string> {
  const out = new Set<string>();
  node.forEachConnection((_b, s, role) => {
    if (role === "owner") out.add(flowKeyOfSnapshot(s));
  });
  return out;
}
