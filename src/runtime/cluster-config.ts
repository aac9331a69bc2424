// What the orchestrator hands to the data path: a member's configuration (GET
// /api/members/:appliance/config, with the member's own token) and the distributor's view of a
// security group. Plain JSON-friendly values: the member fetches them over HTTP, the
// distributor receives them by postMessage in its worker thread.
//
// Invariants: interface `index` is the position in `interfaces` (the member-link header and the
// engine's egress index use it); `memberIds` give every member of the group a distinct id in
// 1..65535, stable for as long as the appliance is in the group; endpoint strings are
// "a.b.c.d:port".

/** One segment of the group, as the data path needs it. */
export interface InterfaceConfig {
  index: number;
  name: string;
  vni: number;
  /** The group's gateway on this segment, "address/prefix" (IPv4 or IPv6). */
  gateway: string;
  /** The gateway's MAC, "02:..". */
  mac: string;
  /** The site's VXLAN tunnel endpoint (IPv4) and UDP port (default 4789). */
  siteEndpoint: string;
  sitePort: number;
}

/** Everything a member process needs to run, besides the bucket table (see DistributionDocument). */
export interface MemberConfig {
  appliance: string;
  group: string | null;
  /** HyperSync sender id of this member (1..65535). */
  memberId: number;
  clusterId: number;
  /** base64 of the cluster key (32 bytes): keys HyperSync and neighbour announcements. */
  clusterKey: string;
  hashSeed: number;
  bucketCount: number;
  interfaces: InterfaceConfig[];
  routes: { prefix: string; interface: string; via?: string }[];
  /** The group's policy (a PolicySpec, src/engine/policy.ts) and its revision. */
  policy: unknown;
  policyRevision: number;
  /** Where the distributor receives member-link datagrams ("a.b.c.d:port"), null when none runs. */
  distributor: string | null;
  /** Connection-table capacity this member should allocate (from its memory). */
  capacity: number;
}

/** A member's data-path addresses, reported with every heartbeat. */
export interface MemberEndpoints {
  /** Member-link socket (frames from the distributor and corrections from peers). */
  data: string;
  /** HyperSync socket. */
  sync: string;
}

/** One group as the distributor forwards it. */
export interface DistributorGroupConfig {
  group: string;
  interfaces: InterfaceConfig[];
  epoch: number;
  seed: number;
  bucketCount: number;
  /** Table member names; owner/backup values index this list (-1: none). */
  members: string[];
  owner: Int16Array;
  backup: Int16Array;
  /** Member-link endpoint per table member (same order as `members`; null: not reported yet). */
  dataEndpoints: (string | null)[];
  /** base64 cluster key: tags neighbour announcements. */
  clusterKey: string;
}
