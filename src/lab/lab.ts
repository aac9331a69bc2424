// The network lab: test hosts as Linux network namespaces on 198.18.0.0/15, each with a kernel
// VXLAN device whose tunnel points at the distributor, so real programs (ping, curl, iperf3)
// send real frames into Tandem. Used by `tandem lab`, the end-to-end tests and the benches.
//
//   root namespace                         tdm-client                     tdm-server
//   tdm-br0 198.18.0.1/24 (mtu 9000) --+-- tdm-client-u == eth0 198.18.0.11   vx0 VNI 101 198.19.1.10/24
//     distributor listens here         +-- tdm-server-u == eth0 198.18.0.12   vx0 VNI 102 198.19.2.10/24
//                                      +-- tdm-m<i>-u   == eth0 198.18.0.(20+i)   (member namespaces)
//
// Invariants:
// - Everything the lab creates is named `tdm-...` (namespaces and root-namespace links), so
//   labDown() finds and removes it from the system alone, after a crash or a half-done labUp().
// - labStatus() reads the system (ip -j), never this process's memory.
// - Calls of labUp/labDown/labStatus in one process run one at a time (a promise queue), so
//   a test may fire them without awaiting each other and still never sees them interleave.
// - Commands run through execFile with argument arrays: no shell, no string built from input.
// - Each host's vx0 listens on sitePort (default 4789, the contract's SG sitePort) and sends
//   to distributor address:port through the all-zeros FDB entry. Linux uses a vxlan device's
//   `dstport` as both its listening and its sending port; the FDB entry's own port lets the
//   distributor listen on any port while hosts still receive on 4789.

import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { accessSync, constants as fsConstants, existsSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { formatIpv4, parseIpv4 } from "../packet/addr.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export const LAB_PREFIX = "tdm-";
export const LAB_BRIDGE = "tdm-br0";
/** The underlay: the bridge's address and prefix. Hosts and members get 198.18.0.<n>/24. */
export const LAB_BRIDGE_ADDRESS = "198.18.0.1";
export const LAB_UNDERLAY_PREFIX_LENGTH = 24;
export const LAB_UNDERLAY_MTU = 9000;
/** 50 bytes of VXLAN over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14) below the underlay. */
export const LAB_OVERLAY_MTU = LAB_UNDERLAY_MTU - 50;
export const LAB_VXLAN_PORT_DEFAULT = 4789;
/** Member namespace i gets underlay 198.18.0.(MEMBER_UNDERLAY_BASE + i). */
export const LAB_MEMBER_UNDERLAY_BASE = 20;
export const LAB_MEMBERS_MAX = 64;
export const LAB_HOSTS_MAX = 16;
/** Linux interface names are at most 15 bytes: "tdm-" + name + "-u" leaves 9 for the name. */
export const LAB_HOST_NAME_LENGTH_MAX = 9;
const COMMAND_TIMEOUT_MS = 10_000;
const COMMAND_OUTPUT_MAX = 16 * 1024 * 1024;
const VNI_MAX = 0xffffff;

export interface LabHostSpec {
  /** Host name: the namespace is `tdm-<name>`. Lowercase letters and digits, at most 9. */
  name: string;
  /** Underlay IPv4 address in 198.18.0.0/24 (the prefix length is always /24). */
  underlay: string;
  vni: number;
  /** Overlay address on vx0, "a.b.c.d/len". */
  address: string;
  /** Default route (the SG's gateway on this segment); must lie inside `address`'s prefix. */
  gateway: string;
}

export interface LabOptions {
  /** Where every host's VXLAN tunnel points (default 198.18.0.1:4789, the bridge itself). */
  distributor?: { address: string; port: number };
  /** Member namespaces tdm-m1 .. tdm-mN (default 0). */
  memberNamespaces?: number;
  /** Default: client and server from the runtime contract (LAB_DEFAULT_HOSTS). */
  hosts?: LabHostSpec[];
  /** UDP port each host's vx0 listens on (default 4789 = the SG interfaces' sitePort). */
  sitePort?: number;
}

export const LAB_DEFAULT_HOSTS: readonly LabHostSpec[] = [
  { name: "client", underlay: "198.18.0.11", vni: 101, address: "198.19.1.10/24", gateway: "198.19.1.1" },
  { name: "server", underlay: "198.18.0.12", vni: 102, address: "198.19.2.10/24", gateway: "198.19.2.1" },
];

export interface LabHostStatus {
  name: string;
  namespace: string;
  underlay: string;
  /** "a.b.c.d/len" on vx0. */
  address: string;
  gateway: string;
  vni: number;
  /** The UDP port vx0 listens on. */
  sitePort: number;
  /** Where vx0 sends (its all-zeros FDB entry, or its `remote`). */
  distributor: { address: string; port: number } | null;
}

export interface LabMemberStatus {
  name: string;
  namespace: string;
  underlay: string;
}

export interface LabStatus {
  /** Bridge present with its address, at least one complete host, no problems. */
  up: boolean;
  bridge: string | null;
  /** Addresses on the bridge, "a.b.c.d/len" (198.18.0.1/24 plus a distributor /32, if any). */
  bridgeAddresses: string[];
  hosts: LabHostStatus[];
  members: LabMemberStatus[];
  /** Everything `tdm-` that is not part of a complete host or member, one sentence each. */
  problems: string[];
}

/** What labUp() will build, validated; a pure function of the options. */
export interface LabPlan {
  distributor: { address: string; port: number };
  sitePort: number;
  /** The distributor's address is added to the bridge as /32 (not the bridge's or a member's). */
  distributorOnBridge: boolean;
  /** Outside 198.18.0.0/24: namespaces need a route to it via the bridge. */
  distributorRouted: boolean;
  hosts: LabHostSpec[];
  members: LabMemberStatus[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when the process ended by a signal (see `signal`). */
  code: number | null;
  signal: string | null;
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's standard input, which is then closed. */
  input?: string | Buffer;
}

// ---------------------------------------------------------------------------------------------
// Validation (pure)

function invalid(message: string): TandemError {
  return new TandemError(ErrorCode.INVALID_ARGUMENT, `lab: ${message}`);
}

function ipv4(text: string, what: string): number {
  const value = parseIpv4(text);
  if (value === null) throw invalid(`${what} must be an IPv4 address, got "${text}"`);
  return value;
}

function port(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw invalid(`${what} must be a UDP port 1..65535, got ${value}`);
  return value;
}

function maskOf(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

const UNDERLAY_NETWORK = (ipv4(LAB_BRIDGE_ADDRESS, "bridge") & maskOf(LAB_UNDERLAY_PREFIX_LENGTH)) >>> 0;

function inUnderlay(address: number): boolean {
  return ((address & maskOf(LAB_UNDERLAY_PREFIX_LENGTH)) >>> 0) === UNDERLAY_NETWORK;
}

/** Validates options and fills in defaults. Throws TandemError(INVALID_ARGUMENT). */
export function planLab(options: LabOptions = {}): LabPlan {
  const distributor = options.distributor ?? { address: LAB_BRIDGE_ADDRESS, port: LAB_VXLAN_PORT_DEFAULT };
  const distributorAddress = ipv4(distributor.address, "distributor address");
  port(distributor.port, "distributor port");
  const sitePort = port(options.sitePort ?? LAB_VXLAN_PORT_DEFAULT, "sitePort");
  const memberCount = options.memberNamespaces ?? 0;
  if (!Number.isInteger(memberCount) || memberCount < 0 || memberCount > LAB_MEMBERS_MAX) {
    throw invalid(`memberNamespaces must be an integer 0..${LAB_MEMBERS_MAX}, got ${memberCount}`);
  }
  const hosts = (options.hosts ?? LAB_DEFAULT_HOSTS).map((h) => ({ ...h }));
  if (hosts.length > LAB_HOSTS_MAX) throw invalid(`at most ${LAB_HOSTS_MAX} hosts, got ${hosts.length}`);

  const bridgeAddress = ipv4(LAB_BRIDGE_ADDRESS, "bridge");
  const broadcast = (UNDERLAY_NETWORK | ~maskOf(LAB_UNDERLAY_PREFIX_LENGTH)) >>> 0;
  // Underlay address -> who has it, to refuse two owners.
  const owners = new Map<number, string>([[bridgeAddress, "the bridge"]]);
  const claim = (address: number, who: string): void => {
    if (!inUnderlay(address) || address === UNDERLAY_NETWORK || address === broadcast) {
      throw invalid(`${who}: underlay ${formatIpv4(address)} must be a host address in ${formatIpv4(UNDERLAY_NETWORK)}/${LAB_UNDERLAY_PREFIX_LENGTH}`);
    }
    const owner = owners.get(address);
    if (owner !== undefined) throw invalid(`${who}: underlay ${formatIpv4(address)} is already ${owner}'s`);
    owners.set(address, who);
  };

  const members: LabMemberStatus[] = [];
  for (let i = 1; i <= memberCount; i++) {
    const underlay = formatIpv4((UNDERLAY_NETWORK + LAB_MEMBER_UNDERLAY_BASE + i) >>> 0);
    claim(ipv4(underlay, "member"), `member m${i}`);
    members.push({ name: `m${i}`, namespace: `${LAB_PREFIX}m${i}`, underlay });
  }

  const names = new Set<string>();
  for (const host of hosts) {
    const pattern = new RegExp(`^[a-z][a-z0-9]{0,${LAB_HOST_NAME_LENGTH_MAX - 1}}$`);
    if (typeof host.name !== "string" || !pattern.test(host.name)) {
      throw invalid(`host name must be 1..${LAB_HOST_NAME_LENGTH_MAX} lowercase letters/digits starting with a letter, got "${String(host.name)}"`);
    }
    // m<digits> are member namespaces; br0 would collide with the bridge's name.
    if (/^m\d+$/.test(host.name) || host.name === "br0") throw invalid(`host name "${host.name}" is reserved`);
    if (names.has(host.name)) throw invalid(`host name "${host.name}" appears twice`);
    names.add(host.name);
    claim(ipv4(host.underlay, `host ${host.name} underlay`), `host ${host.name}`);
    if (!Number.isInteger(host.vni) || host.vni < 1 || host.vni > VNI_MAX) throw invalid(`host ${host.name}: vni must be 1..${VNI_MAX}, got ${host.vni}`);
    const match = /^([^/]+)\/(\d{1,2})$/.exec(host.address);
    const prefixLength = match === null ? -1 : Number(match[2]);
    if (match === null || prefixLength < 1 || prefixLength > 30) throw invalid(`host ${host.name}: address must be "a.b.c.d/len" with len 1..30, got "${host.address}"`);
    const address = ipv4(match[1]!, `host ${host.name} address`);
    const gateway = ipv4(host.gateway, `host ${host.name} gateway`);
    const mask = maskOf(prefixLength);
    if ((address & mask) !== (gateway & mask) || address === gateway) {
      throw invalid(`host ${host.name}: gateway ${host.gateway} must be another address inside ${host.address}`);
    }
    if (inUnderlay(address)) {
      throw invalid(`host ${host.name}: overlay address ${host.address} lies in the underlay`);
    }
  }

  const distributorOwner = owners.get(distributorAddress);
  if (distributorOwner !== undefined && distributorOwner.startsWith("host ")) {
    throw invalid(`distributor ${distributor.address} is ${distributorOwner}'s underlay address`);
  }
  return {
    distributor: { address: formatIpv4(distributorAddress), port: distributor.port },
    sitePort,
    // A distributor in a member namespace (its underlay) or on the bridge needs nothing more.
    distributorOnBridge: distributorOwner === undefined,
    distributorRouted: !inUnderlay(distributorAddress),
    hosts,
    members,
  };
}

// ---------------------------------------------------------------------------------------------
// Preconditions

const REQUIRED_TOOLS = [
  { tool: "ip", pkg: "iproute2" },
  { tool: "bridge", pkg: "iproute2" },
  { tool: "ethtool", pkg: "ethtool" },
  { tool: "sysctl", pkg: "procps" },
] as const;
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

function onPath(tool: string): boolean {
  // sbin is often missing from a non-root PATH; the tools live there.
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"].filter((d) => d !== "");
  for (const dir of dirs) {
    try {
      accessSync(join(dir, tool), fsConstants.X_OK);
      return true;
    } catch {
      // Not in this directory: try the next one.
      continue;
    }
  }
  return false;
}

function hasCapabilities(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    if (match === null) return false;
    const effective = BigInt(`0x${match[1]}`);
    return ((effective >> CAP_NET_ADMIN) & 1n) === 1n && ((effective >> CAP_SYS_ADMIN) & 1n) === 1n;
  } catch {
    // No /proc/self/status: not a Linux we can build the lab on.
    return false;
  }
}

/**
 * Throws TandemError(LAB_NEEDS_ROOT) unless this process may build the lab: root (or
 * CAP_NET_ADMIN + CAP_SYS_ADMIN, for links and `ip netns`) and the tools ip, bridge (iproute2),
 * ethtool and sysctl (procps) on the PATH.
 */
export function requireRoot(): void {
  const problems: string[] = [];
  if (process.platform !== "linux") problems.push(`Linux network namespaces (this is ${process.platform})`);
  else if (!hasCapabilities()) problems.push("root (or CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo");
  const missing = REQUIRED_TOOLS.filter((t) => !onPath(t.tool));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((t) => t.pkg))];
    problems.push(`the tools ${missing.map((t) => t.tool).join(", ")} (apt-get install -y ${packages.join(" ")})`);
  }
  if (problems.length > 0) {
    throw new TandemError(ErrorCode.LAB_NEEDS_ROOT, `the network lab needs ${problems.join("; and ")}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

function runCommand(command: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, maxBuffer: COMMAND_OUTPUT_MAX, env: options.env, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ stdout, stderr, code: 0, signal: null });
          return;
        }
        // A number: the exit status. A string (ENOENT, ...): it never ran; report as 127 like a shell.
        const code = typeof error.code === "number" ? error.code : error.signal ? null : 127;
        const why = typeof error.code === "string" ? `${stderr}${stderr === "" ? "" : "\n"}${error.message}` : stderr;
        resolve({ stdout, stderr: why, code, signal: error.signal ?? null });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

function checkNamespace(namespace: string): void {
  // `ip netns exec` takes the name as an argument: one that starts with "-" would be an option.
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(namespace)) throw invalid(`bad namespace name "${namespace}"`);
}

/** Runs `cmd args` inside a network namespace and waits; never rejects on a non-zero exit. */
export function execIn(namespace: string, cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  checkNamespace(namespace);
  return runCommand("ip", ["netns", "exec", namespace, cmd, ...args], opts);
}

/** Starts `cmd args` inside a network namespace (through `ip netns exec`) and returns at once. */
export function spawnIn(namespace: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  checkNamespace(namespace);
  return spawn("ip", ["netns", "exec", namespace, cmd, ...args], opts);
}

/** Runs a lab command that must succeed; a failure is an operating error with its stderr. */
async function must(command: string, args: readonly string[]): Promise<string> {
  const result = await runCommand(command, args);
  if (result.code !== 0) {
    throw new TandemError(ErrorCode.INTERNAL, `lab: \`${command} ${args.join(" ")}\` failed (${result.code ?? result.signal}): ${result.stderr.trim()}`, {
      command,
      args: [...args],
      stderr: result.stderr,
    });
  }
  return result.stdout;
}

/** Parses `ip -j` / `bridge -j` output; older iproute2 prints nothing instead of "[]". */
function parseJsonList(text: string, what: string): Record<string, unknown>[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const value: unknown = JSON.parse(trimmed);
  if (!Array.isArray(value)) throw new TandemError(ErrorCode.INTERNAL, `lab: ${what} did not print a JSON list`);
  return value.filter((v): v is Record<string, unknown> => typeof v === "object" && v !== null);
}

// ---------------------------------------------------------------------------------------------
// One operation at a time per process.

let queue: Promise<unknown> = Promise.resolve();

function serialized<T>(operation: () => Promise<T>): Promise<T> {
  const result = queue.then(operation, operation);
  // The queue only orders; each caller sees its own result or error.
  queue = result.then(
    () => undefined,
    () => undefined,
  );
  return result;
}

// ---------------------------------------------------------------------------------------------
// Up

/** Bridged frames pass br_netfilter's iptables/ip6tables/arptables hooks when these are 1; a
 * FORWARD policy of DROP (Docker sets one) would then drop traffic between lab namespaces. */
const BRIDGE_NETFILTER_SYSCTLS = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"];

function disableBridgeNetfilter(): void {
  for (const name of BRIDGE_NETFILTER_SYSCTLS) {
    const path = `/proc/sys/net/bridge/${name}`;
    // Absent when br_netfilter is not loaded: then bridged frames never see iptables.
    if (!existsSync(path)) continue;
    if (readFileSync(path, "utf8").trim() !== "0") writeFileSync(path, "0\n");
  }
}

async function addNamespace(plan: LabPlan, name: string, underlay: string): Promise<string> {
  const namespace = `${LAB_PREFIX}${name}`;
  const outside = `${namespace}-u`;
  const mtu = String(LAB_UNDERLAY_MTU);
  await must("ip", ["netns", "add", namespace]);
  await must("ip", ["link", "add", outside, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", namespace]);
  await must("ip", ["link", "set", outside, "master", LAB_BRIDGE, "up"]);
  // Checksum offload off: frames must carry finished checksums when user space (the
  // distributor, a member) reads them, and when it sends them back into a kernel.
  await must("ethtool", ["-K", outside, "tx", "off"]);
  await must("ip", ["-n", namespace, "link", "set", "lo", "up"]);
  await must("ip", ["-n", namespace, "addr", "add", `${underlay}/${LAB_UNDERLAY_PREFIX_LENGTH}`, "dev", "eth0"]);
  await must("ip", ["-n", namespace, "link", "set", "eth0", "up"]);
  await must("ip", ["netns", "exec", namespace, "ethtool", "-K", "eth0", "tx", "off"]);
  // Replies from the SG arrive on vx0 from addresses routed elsewhere; strict reverse-path
  // filtering (if a distribution made it the default for new namespaces) would drop them.
  await must("ip", ["netns", "exec", namespace, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]);
  if (plan.distributorRouted) {
    await must("ip", ["-n", namespace, "route", "add", `${plan.distributor.address}/32`, "via", LAB_BRIDGE_ADDRESS, "dev", "eth0"]);
  }
  return namespace;
}

async function addHost(plan: LabPlan, host: LabHostSpec): Promise<void> {
  const namespace = await addNamespace(plan, host.name, host.underlay);
  await must("ip", [
    "-n", namespace, "link", "add", "vx0", "mtu", String(LAB_OVERLAY_MTU), "type", "vxlan",
    "id", String(host.vni), "dstport", String(plan.sitePort), "local", host.underlay, "nolearning",
  ]);
  // Every destination MAC goes to the distributor (the all-zeros entry is the default).
  await must("bridge", ["-n", namespace, "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", plan.distributor.address, "port", String(plan.distributor.port)]);
  await must("ip", ["netns", "exec", namespace, "ethtool", "-K", "vx0", "tx", "off"]);
  await must("ip", ["-n", namespace, "link", "set", "vx0", "up"]);
  await must("ip", ["-n", namespace, "addr", "add", host.address, "dev", "vx0"]);
  await must("ip", ["-n", namespace, "route", "add", "default", "via", host.gateway, "dev", "vx0"]);
}

async function up(plan: LabPlan): Promise<LabStatus> {
  await down();
  try {
    disableBridgeNetfilter();
    await must("ip", ["link", "add", LAB_BRIDGE, "mtu", String(LAB_UNDERLAY_MTU), "type", "bridge", "stp_state", "0"]);
    await must("ip", ["addr", "add", `${LAB_BRIDGE_ADDRESS}/${LAB_UNDERLAY_PREFIX_LENGTH}`, "dev", LAB_BRIDGE]);
    if (plan.distributorOnBridge && plan.distributor.address !== LAB_BRIDGE_ADDRESS) {
      await must("ip", ["addr", "add", `${plan.distributor.address}/32`, "dev", LAB_BRIDGE]);
    }
    await must("ip", ["link", "set", LAB_BRIDGE, "up"]);
    // Namespaces are independent of each other: build them side by side.
    await Promise.all([
      ...plan.hosts.map((host) => addHost(plan, host)),
      ...plan.members.map((member) => addNamespace(plan, member.name, member.underlay)),
    ]);
    // Adding ports can lower the bridge's MTU to theirs; all are 9000, but say it once more.
    await must("ip", ["link", "set", LAB_BRIDGE, "mtu", String(LAB_UNDERLAY_MTU)]);
  } catch (error) {
    // Leave nothing half-built; the first error is the one worth reading.
    await down().catch((cleanupError: unknown) => {
      process.stderr.write(`lab: cleanup after a failed lab up also failed: ${String(cleanupError)}\n`);
    });
    throw error;
  }
  return status();
}

/**
 * Builds the lab (tearing down any existing one first). Validates options before touching the
 * system. Throws TandemError: INVALID_ARGUMENT (options), LAB_NEEDS_ROOT, INTERNAL (a command
 * failed; the partial lab is removed again).
 */
export function labUp(options: LabOptions = {}): Promise<LabStatus> {
  const plan = planLab(options);
  requireRoot();
  return serialized(() => up(plan));
}

// ---------------------------------------------------------------------------------------------
// Down

async function listNamespaces(): Promise<string[]> {
  const list = parseJsonList(await must("ip", ["-j", "netns", "list"]), "ip netns list");
  return list.map((n) => String(n.name)).filter((n) => n.startsWith(LAB_PREFIX));
}

async function listRootLinks(): Promise<Record<string, unknown>[]> {
  return parseJsonList(await must("ip", ["-j", "-d", "addr", "show"]), "ip addr show");
}

async function down(): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const failures: string[] = [];
  const links = (await listRootLinks()).filter((l) => String(l.ifname).startsWith(LAB_PREFIX));
  const isBridge = (l: Record<string, unknown>): boolean => String(l.ifname) === LAB_BRIDGE;
  // Ports before the bridge; deleting a veth end deletes its peer inside the namespace too,
  // so no link outlives its namespace's (asynchronous) cleanup.
  for (const link of [...links.filter((l) => !isBridge(l)), ...links.filter(isBridge)]) {
    const name = String(link.ifname);
    const result = await runCommand("ip", ["link", "del", "dev", name]);
    // "Cannot find device": gone already, with its veth peer deleted a moment ago. It existed
    // when listed and does not now, so it counts as removed.
    if (result.code === 0 || /Cannot find device|does not exist/.test(result.stderr)) removed.push(name);
    else failures.push(`link ${name}: ${result.stderr.trim()}`);
  }
  for (const namespace of await listNamespaces()) {
    const result = await runCommand("ip", ["netns", "del", namespace]);
    if (result.code === 0) removed.push(namespace);
    else if (!/No such file or directory/.test(result.stderr)) failures.push(`namespace ${namespace}: ${result.stderr.trim()}`);
  }
  if (failures.length > 0) {
    throw new TandemError(ErrorCode.INTERNAL, `lab: could not remove ${failures.join("; ")}`, { removed, failures });
  }
  return { removed };
}

/**
 * Removes every `tdm-` namespace and every `tdm-` link in the root namespace, whoever made
 * them. Processes still running inside a namespace keep running, without their network.
 */
export function labDown(): Promise<{ removed: string[] }> {
  requireRoot();
  return serialized(down);
}

// ---------------------------------------------------------------------------------------------
// Status

interface AddrInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}

function inet4(link: Record<string, unknown> | undefined): string[] {
  const infos = (link?.addr_info ?? []) as AddrInfo[];
  return infos.filter((a) => a.family === "inet" && typeof a.local === "string").map((a) => `${a.local}/${a.prefixlen}`);
}

function stripPrefix(address: string | undefined): string | null {
  return address === undefined ? null : address.split("/")[0]!;
}

async function inspectNamespace(namespace: string): Promise<{ host?: LabHostStatus; member?: LabMemberStatus; problem?: string }> {
  const name = namespace.slice(LAB_PREFIX.length);
  const links = parseJsonList(await must("ip", ["-n", namespace, "-j", "-d", "addr", "show"]), `ip addr show in ${namespace}`);
  const eth0 = links.find((l) => l.ifname === "eth0");
  const underlay = stripPrefix(inet4(eth0)[0]);
  if (underlay === null) return { problem: `namespace ${namespace}: eth0 has no underlay address` };
  const vx0 = links.find((l) => l.ifname === "vx0");
  if (vx0 === undefined) {
    if (/^m\d+$/.test(name)) return { member: { name, namespace, underlay } };
    return { problem: `namespace ${namespace}: no vx0` };
  }
  const info = ((vx0.linkinfo as { info_data?: Record<string, unknown> } | undefined)?.info_data ?? {}) as Record<string, unknown>;
  const address = inet4(vx0)[0];
  if (address === undefined || typeof info.id !== "number") return { problem: `namespace ${namespace}: vx0 has no VNI or address` };
  const routes = parseJsonList(await must("ip", ["-n", namespace, "-j", "route", "show", "default"]), `ip route in ${namespace}`);
  const gateway = routes.map((r) => r.gateway).find((g): g is string => typeof g === "string");
  if (gateway === undefined) return { problem: `namespace ${namespace}: no default route` };
  const fdb = parseJsonList(await must("bridge", ["-n", namespace, "-j", "fdb", "show", "dev", "vx0"]), `bridge fdb in ${namespace}`);
  const defaultEntry = fdb.find((e) => e.mac === "00:00:00:00:00:00" && typeof e.dst === "string");
  const sitePort = typeof info.port === "number" ? info.port : LAB_VXLAN_PORT_DEFAULT;
  const distributor =
    defaultEntry !== undefined
      ? { address: String(defaultEntry.dst), port: typeof defaultEntry.port === "number" ? defaultEntry.port : sitePort }
      : typeof info.remote === "string"
        ? { address: info.remote, port: sitePort }
        : null;
  return { host: { name, namespace, underlay, address, gateway, vni: info.id, sitePort, distributor } };
}

function underlayOrder(a: { underlay: string }, b: { underlay: string }): number {
  return (parseIpv4(a.underlay) ?? 0) - (parseIpv4(b.underlay) ?? 0);
}

async function status(): Promise<LabStatus> {
  const links = await listRootLinks();
  const namespaces = await listNamespaces();
  const bridgeLink = links.find((l) => l.ifname === LAB_BRIDGE);
  const bridgeAddresses = inet4(bridgeLink);
  const problems: string[] = [];
  if (bridgeLink === undefined) {
    if (namespaces.length > 0) problems.push(`bridge ${LAB_BRIDGE} is missing`);
  } else if (!bridgeAddresses.includes(`${LAB_BRIDGE_ADDRESS}/${LAB_UNDERLAY_PREFIX_LENGTH}`)) {
    problems.push(`bridge ${LAB_BRIDGE} lacks ${LAB_BRIDGE_ADDRESS}/${LAB_UNDERLAY_PREFIX_LENGTH}`);
  }
  const hosts: LabHostStatus[] = [];
  const members: LabMemberStatus[] = [];
  const inspect = (namespace: string): ReturnType<typeof inspectNamespace> =>
    // A namespace deleted while we look is a problem to report, not a reason to fail.
    inspectNamespace(namespace).catch((error: unknown) => ({ problem: `namespace ${namespace}: ${error instanceof Error ? error.message : String(error)}` }));
  for (const found of await Promise.all(namespaces.map(inspect))) {
    if (found.host !== undefined) hosts.push(found.host);
    if (found.member !== undefined) members.push(found.member);
    if (found.problem !== undefined) problems.push(found.problem);
  }
  // Root-namespace links: the bridge and one bridge-side veth per namespace; anything else is
  // left over from something that did not finish.
  const expected = new Set([LAB_BRIDGE, ...namespaces.map((n) => `${n}-u`)]);
  for (const link of links) {
    const name = String(link.ifname);
    if (name.startsWith(LAB_PREFIX) && !expected.has(name)) problems.push(`link ${name} belongs to no lab namespace`);
    else if (name !== LAB_BRIDGE && name.startsWith(LAB_PREFIX) && link.master !== LAB_BRIDGE) problems.push(`link ${name} is not in ${LAB_BRIDGE}`);
  }
  for (const namespace of namespaces) {
    if (!links.some((l) => l.ifname === `${namespace}-u`)) problems.push(`namespace ${namespace} has no link ${namespace}-u in the root namespace`);
  }
  hosts.sort(underlayOrder);
  members.sort(underlayOrder);
  return {
    up: bridgeLink !== undefined && hosts.length > 0 && problems.length === 0,
    bridge: bridgeLink === undefined ? null : LAB_BRIDGE,
    bridgeAddresses,
    hosts,
    members,
    problems,
  };
}

/** The lab as the system has it now (read with `ip -j`, not remembered). */
export function labStatus(): Promise<LabStatus> {
  requireRoot();
  return serialized(status);
}
