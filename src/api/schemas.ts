// JSON schemas of every API input (bodies, path parameters, query strings), used by fastify to
// validate requests before a handler runs and by @fastify/swagger to write the OpenAPI document.
//
// Invariants kept: every object schema has additionalProperties: false (an unknown field is a
// 400 naming it, never silently dropped); every string, list and number is bounded here with
// the control plane's own limits (ORCHESTRATOR_LIMITS, POLICY_LIMITS), so the handlers behind
// receive well-shaped, bounded input (the control plane still checks meaning: addresses,
// consistency, state). Query-string numbers are digit strings (no type coercion anywhere:
// a body's "8" is not 8).

import { BUCKET_COUNT_MAX } from "../distribution/rendezvous.js";
import { POLICY_LIMITS } from "../engine/policy.js";
import { AUTOSCALE_PRIORITY_MAX, AUTOSCALE_PRIORITY_MIN, ORCHESTRATOR_LIMITS } from "../orchestrator/index.js";
import { ROLES } from "../runtime/tokens.js";

export type Schema = Record<string, unknown>;

const L = ORCHESTRATOR_LIMITS;

export const NAME: Schema = { type: "string", minLength: 1, maxLength: L.nameLengthMax, pattern: "^[A-Za-z0-9][A-Za-z0-9._:-]*$" };
/** Model, version, address: one word, no white space. */
export const WORD: Schema = { type: "string", minLength: 1, maxLength: L.textLengthMax, pattern: "^\\S+$" };
const ADDRESS: Schema = { type: "string", minLength: 2, maxLength: 64 };
const DIGITS: Schema = { type: "string", pattern: "^[0-9]{1,15}$" };
const COUNT: Schema = { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const BUCKETS: Schema = { type: "array", maxItems: BUCKET_COUNT_MAX, items: { type: "integer", minimum: 0, maximum: BUCKET_COUNT_MAX - 1 } };
const WEIGHT: Schema = { type: "number", exclusiveMinimum: 0, maximum: L.weightMax };

function object(properties: Record<string, Schema>, required: string[] = [], extra: Schema = {}): Schema {
  return { type: "object", properties, required, additionalProperties: false, ...extra };
}

export const ERROR_BODY: Schema = object(
  {
    code: { type: "string" },
    message: { type: "string" },
    details: { type: "object", additionalProperties: true, description: "What the error concerns, when known: e.g. a policy error's rule, ruleIndex, field and line; a field name" },
  },
  ["code", "message"],
  { description: "Every error: a stable code (see docs/api.md) and a sentence for people." },
);

// ---- path parameters and query strings ------------------------------------------------------

export const PARAMS_ID = object({ id: NAME }, ["id"]);
export const PARAMS_GROUP = object({ name: NAME }, ["name"]);
export const PARAMS_GROUP_APPLIANCE = object({ name: NAME, appliance: NAME }, ["name", "appliance"]);
export const PARAMS_GROUP_VERIFY = object({ name: NAME, id: DIGITS }, ["name", "id"]);
export const PARAMS_APPLIANCE = object({ appliance: NAME }, ["appliance"]);
export const PARAMS_TOKEN = object({ name: NAME }, ["name"]);

export const QUERY_EVENTS = object({ afterSeq: DIGITS, limit: DIGITS });
export const QUERY_AUDIT = object({ beforeSeq: DIGITS, limit: DIGITS });
export const QUERY_GROUP = object({ group: NAME });
export const QUERY_CONNECTIONS = object(
  {
    group: NAME,
    protocol: { type: "string", pattern: "^(tcp|udp|icmp|icmpv6|[0-9]{1,3})$", description: "tcp, udp, icmp, icmpv6 or a protocol number (default: any)" },
    src: ADDRESS,
    dst: ADDRESS,
    srcPort: { type: "string", pattern: "^[0-9]{1,5}$" },
    dstPort: { type: "string", pattern: "^[0-9]{1,5}$" },
  },
  [],
  { minProperties: 1 },
);

// ---- appliances ---------------------------------------------------------------------------

const APPLIANCE_FIELDS: Record<string, Schema> = {
  model: WORD,
  cores: { type: "integer", minimum: 1, maximum: L.coresMax },
  memoryMb: { type: "integer", minimum: 1, maximum: L.memoryMbMax },
  version: WORD,
  address: { ...WORD, description: 'where its member process listens, "host" or "host:port"' },
};
export const APPLIANCE_ADD = object({ id: NAME, ...APPLIANCE_FIELDS }, ["id", "model", "cores", "memoryMb", "version", "address"]);
export const APPLIANCE_PATCH = object(APPLIANCE_FIELDS, [], { minProperties: 1 });

// ---- security groups ----------------------------------------------------------------------

const INTERFACE = object(
  {
    name: NAME,
    vni: { type: "integer", minimum: 1, maximum: 0xffffff },
    siteEndpoint: { ...ADDRESS, description: "the site's VXLAN tunnel endpoint (IP address)" },
    sitePort: { type: "integer", minimum: 1, maximum: 65535, description: "UDP port of the site's VXLAN endpoint (default 4789)" },
    gateway: { ...ADDRESS, description: 'the group\'s gateway on this segment, "address/prefix"' },
    mac: { type: "string", pattern: "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$" },
  },
  ["name", "vni", "siteEndpoint", "gateway"],
);
export const INTERFACES: Schema = { type: "array", maxItems: L.interfacesPerGroupMax, items: INTERFACE };
const ROUTE = object({ prefix: ADDRESS, interface: NAME, via: ADDRESS }, ["prefix", "interface"]);
const ROUTES: Schema = { type: "array", maxItems: L.routesPerGroupMax, items: ROUTE };
const AUTOSCALE = object({
  enabled: { type: "boolean" },
  minMembers: { type: "integer", minimum: 1, maximum: 4096 },
  maxMembers: { type: "integer", minimum: 1, maximum: 4096 },
  cpuHighPct: { type: "number", minimum: 1, maximum: 100 },
  cpuLowPct: { type: "number", minimum: 0, maximum: 99 },
  connectionsPerMemberHigh: { type: "integer", minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
  cooldownMs: { type: "integer", minimum: 0, maximum: 86_400_000 },
  priority: { type: "integer", minimum: AUTOSCALE_PRIORITY_MIN, maximum: AUTOSCALE_PRIORITY_MAX, description: "groups wanting the same spare: the higher first (default 0)" },
});

const ADDRESS_LIST: Schema = {
  anyOf: [{ type: "string", maxLength: 64 }, { type: "array", maxItems: POLICY_LIMITS.addressesPerFieldMax, items: { type: "string", maxLength: 64 } }],
};
const PORT_ITEM: Schema = { anyOf: [{ type: "integer", minimum: 0, maximum: 65535 }, { type: "string", maxLength: 16 }] };
const PORTS: Schema = { anyOf: [PORT_ITEM, { type: "array", maxItems: POLICY_LIMITS.portRangesPerFieldMax, items: PORT_ITEM }] };
const RULE = object(
  {
    name: { type: "string", minLength: 1, maxLength: POLICY_LIMITS.nameLengthMax },
    source: ADDRESS_LIST,
    destination: ADDRESS_LIST,
    protocol: { anyOf: [{ type: "string", enum: ["any", "tcp", "udp", "icmp", "icmpv6"] }, { type: "integer", minimum: 0, maximum: 255 }] },
    ports: PORTS,
    sourcePorts: PORTS,
    icmpTypes: { anyOf: [{ type: "integer", minimum: 0, maximum: 255 }, { type: "array", maxItems: 256, items: { type: "integer", minimum: 0, maximum: 255 } }] },
    action: { type: "string", enum: ["accept", "drop", "reject"] },
    log: { type: "boolean" },
    description: { type: "string", maxLength: POLICY_LIMITS.descriptionLengthMax },
  },
  ["name", "action"],
);
export const POLICY = object({ rules: { type: "array", maxItems: POLICY_LIMITS.rulesMax, items: RULE } }, ["rules"], {
  description: "rules in order; the first match decides a new connection (see docs/engine.md)",
});
const POLICY_TEXT: Schema = { type: "string", maxLength: 16 * 1024 * 1024, description: "the policy as YAML or JSON text (errors then name the line)" };

export const SG_CREATE = object(
  {
    name: NAME,
    interfaces: INTERFACES,
    routes: ROUTES,
    policy: POLICY,
    policyText: POLICY_TEXT,
    autoscale: AUTOSCALE,
    allowMixedModels: { type: "boolean" },
    bucketCount: { type: "integer", minimum: L.bucketCountMin, maximum: L.bucketCountMax, description: "a power of two; default automatic" },
    seed: { type: "integer", minimum: 0, maximum: 0xffffffff, description: "keys the flow hash; default random" },
  },
  ["name"],
);
export const SG_PATCH = object({ interfaces: INTERFACES, routes: ROUTES, autoscale: AUTOSCALE, allowMixedModels: { type: "boolean" } }, [], { minProperties: 1 });
export const INTERFACES_PUT = object({ interfaces: INTERFACES }, ["interfaces"]);
export const POLICY_PUT = object({ policy: POLICY, policyText: POLICY_TEXT }, [], { minProperties: 1, maxProperties: 1 });
export const ASSIGN = object({ appliance: NAME, weight: WEIGHT }, ["appliance"]);
export const WEIGHT_PUT = object({ weight: WEIGHT }, ["weight"]);
export const UPGRADE_START = object({ targetVersion: WORD }, ["targetVersion"]);

// ---- tokens -------------------------------------------------------------------------------

export const TOKEN_CREATE = object({ name: NAME, role: { type: "string", enum: [...ROLES] } }, ["name", "role"]);

// ---- member reports -----------------------------------------------------------------------

const COUNTERS = object(
  {
  packets: COUNT,
  drops: { type: "object", maxProperties: 64, propertyNames: { type: "string", maxLength: 64 }, additionalProperties: COUNT },
  corrections: COUNT,
  syncLagMs: { type: "number", minimum: 0, maximum: 1e12 },
  syncRecordsSent: COUNT,
  syncDatagramsSent: COUNT,
  syncRecordsApplied: COUNT,
  badDatagrams: COUNT,
  reprotectMs: { type: "number", minimum: 0, maximum: 1e12 },
},
  [],
  // A newer member (rolling upgrade: members may move before the orchestrator) may report
  // counters this orchestrator does not know: accepted and ignored, within a bound.
  { additionalProperties: true, maxProperties: 64 },
);
export const HEARTBEAT = object(
  {
  epoch: COUNT,
  policyRevision: COUNT,
  cpuPct: { type: "number", minimum: 0, maximum: 100_000 },
  packetsPerSec: { type: "number", minimum: 0, maximum: 1e15 },
  connections: COUNT,
  rttMs: { type: "number", minimum: 0, maximum: 1e9 },
  counters: COUNTERS,
  endpoints: object(
    {
      data: { type: "string", pattern: "^\\d{1,3}(\\.\\d{1,3}){3}:\\d{1,5}$", description: "member-link socket, a.b.c.d:port" },
      sync: { type: "string", pattern: "^\\d{1,3}(\\.\\d{1,3}){3}:\\d{1,5}$", description: "HyperSync socket, a.b.c.d:port" },
    },
    ["data", "sync"],
  ),
  session: { type: "integer", minimum: 0, maximum: 0xffffffff, description: "0 until the member runs a node" },
  pid: { type: "integer", minimum: 1, maximum: 0x7fffffff },
  ruleHits: { type: "object", maxProperties: 100_000, propertyNames: { type: "string", maxLength: 128 }, additionalProperties: COUNT },
  version: { ...WORD, description: "software version the member process runs" },
  restartError: { type: "string", maxLength: 512, description: "why the restart asked for (rolling upgrade) could not happen" },
  hypersync: object(
    {
      min: { type: "integer", minimum: 1, maximum: 255 },
      max: { type: "integer", minimum: 1, maximum: 255 },
    },
    ["min", "max"],
    { description: "HyperSync protocol versions the member reads (min <= max)" },
  ),
},
  [],
  // Fields of a newer member (rolling upgrade) are accepted and ignored, within a bound: the
  // orchestrator reads only the fields above, each checked.
  { additionalProperties: true, maxProperties: 64 },
);
const HELD_CONNECTION = object(
  {
    bucket: { type: "integer", minimum: 0, maximum: BUCKET_COUNT_MAX - 1 },
    role: { type: "string", enum: ["owner", "backup", "fill", "stale"] },
    protocol: { type: "integer", minimum: 0, maximum: 255 },
    src: ADDRESS,
    srcPort: { type: "integer", minimum: 0, maximum: 65535 },
    dst: ADDRESS,
    dstPort: { type: "integer", minimum: 0, maximum: 65535 },
    state: { type: "string", maxLength: 32 },
    expiresInMs: { type: "number", minimum: -1e12, maximum: 1e12 },
  },
  ["bucket", "role", "protocol", "src", "srcPort", "dst", "dstPort", "state", "expiresInMs"],
);
export const CONNECTIONS_REPORT = object({ id: { type: "integer", minimum: 1, maximum: Number.MAX_SAFE_INTEGER }, connections: { type: "array", maxItems: 1000, items: HELD_CONNECTION } }, ["id", "connections"]);
export const FILLS = object({ epoch: COUNT, buckets: BUCKETS }, ["epoch", "buckets"]);
export const VERIFY_REPORT = object({ id: { type: "integer", minimum: 1, maximum: Number.MAX_SAFE_INTEGER }, bucketsChecked: COUNT, mismatched: BUCKETS }, ["id", "bucketsChecked", "mismatched"]);

/** A digit string from a query or path (already checked against DIGITS). */
export function digitsOf(value: string | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}
