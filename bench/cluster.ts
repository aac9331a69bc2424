// `npm run bench -- cluster --json`: iperf3 (4 streams, 10 s) from the lab's client host to its
// server host, first through a no-op relay (bench/relay.ts: swaps VXLAN ids and MACs,
// decrements TTL, nothing else), then through a 3-member security group (the distributor in
// the orchestrator, stateful filtering with a policy, HyperSync of every connection to its
// backup). Same lab, same machine, same run: the ratio is the figure; absolute Mbit/s drift.
// Needs root (the lab). Target: ratio >= 0.7.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { labDown, labUp, spawnIn, execIn, requireRoot } from "../src/lab/lab.js";
import { LocalCluster } from "../src/runtime/local-cluster.js";
import type { DistributorStats } from "../src/runtime/distributor-core.js";
import { startRelay } from "./relay.js";

const SERVER = "198.19.2.10";

interface IperfEnd {
  end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
  error?: string;
}

async function iperf(seconds: number, streams: number): Promise<{ mbps: number; retransmits: number }> {
  const r = await execIn("tdm-client", "iperf3", ["-c", SERVER, "-P", String(streams), "-t", String(seconds), "-J"], { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`iperf3 failed (${r.code}): ${r.stderr || r.stdout.slice(0, 500)}`);
  const j = JSON.parse(r.stdout) as IperfEnd;
  if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`);
  return { mbps: j.end.sum_received.bits_per_second / 1e6, retransmits: j.end.sum_sent.retransmits ?? 0 };
}

async function withIperfServer<T>(fn: () => Promise<T>): Promise<T> {
  const server = spawnIn("tdm-server", "iperf3", ["-s", "-B", SERVER], { stdio: "ignore" });
  try {
    // Ready when a 1-second probe passes (the server binds, ARP resolves through the path).
    let lastError: unknown = null;
    for (let i = 0; i < 20; i++) {
      try {
        await iperf(1, 1);
        lastError = null;
        break;
      } catch (error) {
        lastError = error;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    if (lastError !== null) throw lastError;
    return await fn();
  } finally {
    server.kill("SIGKILL");
  }
}

export async function run(opts: { json: boolean; quick: boolean }): Promise<Record<string, unknown>> {
  requireRoot();
  const seconds = opts.quick ? 4 : 10;
  const streams = 4;
  const log = (s: string): void => {
    if (!opts.json) process.stderr.write(`${s}\n`);
  };

  // Baseline: the no-op relay on the distributor's address.
  await labUp({ distributor: { address: "198.18.0.1", port: 4789 } });
  const relay = await startRelay({
    listen: { address: "198.18.0.1", port: 4789 },
    segments: [
      { vni: 101, siteEndpoint: { address: "198.18.0.11", port: 4789 }, gatewayIp: "198.19.1.1", gatewayMac: "02:54:00:00:01:01" },
      { vni: 102, siteEndpoint: { address: "198.18.0.12", port: 4789 }, gatewayIp: "198.19.2.1", gatewayMac: "02:54:00:00:02:01" },
    ],
  });
  let relayResult: { mbps: number; retransmits: number };
  try {
    relayResult = await withIperfServer(() => iperf(seconds, streams));
    log(`no-op relay: ${relayResult.mbps.toFixed(0)} Mbit/s`);
  } finally {
    await relay.close();
    await labDown();
  }

  // Tandem: 3 members, a stateful policy, every connection synced to its backup.
  const dir = mkdtempSync(join(tmpdir(), "tandem-bench-cluster-"));
  const cluster = new LocalCluster({
    dataDir: dir,
    members: 3,
    lab: true,
    listen: { host: "127.0.0.1", port: 0 },
    traffic: false,
    logger: pino({ level: "warn" }, pino.destination(2)),
  });
  let clusterResult: { mbps: number; retransmits: number };
  let syncRecords = 0;
  let distributorStats: DistributorStats | null = null;
  try {
    await cluster.start();
    const client = cluster.adminClient();
    await client.applyPolicy("default", {
      policy: { rules: [{ name: "iperf", protocol: "tcp", ports: [5201], action: "accept" }, { name: "ping", protocol: "icmp", action: "accept" }] },
    } as never);
    clusterResult = await withIperfServer(() => iperf(seconds, streams));
    log(`cluster: ${clusterResult.mbps.toFixed(0)} Mbit/s`);
    await new Promise((resolve) => setTimeout(resolve, 300)); // one more heartbeat with the counters
    for (const m of await client.allMembers()) syncRecords += (m as { counters?: { syncRecordsSent?: number | null } | null }).counters?.syncRecordsSent ?? 0;
    distributorStats = (await cluster.distributor!.stats()) as DistributorStats;
  } finally {
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const g = distributorStats?.groups.default;
  return {
    clusterMbps: Math.round(clusterResult.mbps),
    noopRelayMbps: Math.round(relayResult.mbps),
    ratio: Math.round((clusterResult.mbps / relayResult.mbps) * 100) / 100,
    streams,
    seconds,
    members: 3,
    clusterRetransmits: clusterResult.retransmits,
    relayRetransmits: relayResult.retransmits,
    syncRecordsSent: syncRecords,
    distributorToMembers: g?.toMembers ?? null,
    distributorEgress: g?.egress ?? null,
    target: { ratio: 0.7 },
  };
}
