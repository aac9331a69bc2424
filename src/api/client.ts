// The typed API client: one method per route, over fetch (Node 20's global, or a browser's).
// The CLI and the web UI talk to the orchestrator through this and nothing else.
//
// Invariants kept: every failure is a TandemError: the server's {code, message} as sent (with
// the server's details, if any, and the HTTP status in details), TANDEM_SERVER_UNREACHABLE when no answer came (connection
// refused, reset, DNS), TANDEM_TIMEOUT when the answer took longer than timeoutMs; path
// segments are always URL-encoded; no Node-only import, so the web UI can bundle it.

import { ErrorCode, TandemError } from "../stdx/errors.js";
import type {
  ApplianceInput,
  AppliancePatch,
  ApplianceView,
  ApplyResult,
  AuditRecord,
  AutoscaleView,
  BucketMap,
  ChangesView,
  ConnectionLocation,
  ConnectionQuery,
  DistributionDocument,
  EventRecord,
  GroupDetail,
  GroupInput,
  GroupPatch,
  GroupSummary,
  Health,
  HeartbeatAnswer,
  HeartbeatInput,
  HeldConnection,
  MemberConfig,
  MemberStatus,
  MemberView,
  PolicySpec,
  Role,
  SgInterface,
  SgInterfaceInput,
  StageResult,
  StatusView,
  SyncStatus,
  UpgradeStatusView,
  TokenInfo,
  TransitionView,
  VerifyView,
  Whoami,
} from "./types.js";

export const DEFAULT_SERVER = "http://127.0.0.1:7470";
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000;
/** Longest server-sent event the stream reader buffers (a snapshot of many members is ~100 KB). */
export const STREAM_EVENT_BYTES_MAX = 16 * 1024 * 1024;

export interface ClientOptions {
  /** Base URL, e.g. http://127.0.0.1:7470 */
  server: string;
  /** Bearer token; null: only public routes work. */
  token: string | null;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
type Query = Record<string, string | number | undefined>;

const seg = encodeURIComponent;

export class TandemClient {
  readonly server: string;
  private readonly token: string | null;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(options: ClientOptions) {
    this.server = options.server.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One request; the answer's JSON, or a TandemError. */
  async request<T>(method: Method, path: string, options: { body?: unknown; query?: Query; text?: boolean } = {}): Promise<T> {
    let url = `${this.server}${path}`;
    const query = Object.entries(options.query ?? {}).filter((e): e is [string, string | number] => e[1] !== undefined);
    if (query.length > 0) url += `?${new URLSearchParams(query.map(([k, v]): [string, string] => [k, String(v)])).toString()}`;
    const headers: Record<string, string> = { accept: options.text ? "text/plain" : "application/json" };
    if (this.token !== null) headers.authorization = `Bearer ${this.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchFn(url, {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const e = error as Error & { cause?: { code?: string; message?: string } };
      if (e.name === "TimeoutError" || e.name === "AbortError") {
        throw new TandemError(ErrorCode.TIMEOUT, `${method} ${path}: no answer from ${this.server} within ${this.timeoutMs} ms`);
      }
      const why = e.cause?.code ?? e.cause?.message ?? e.message;
      throw new TandemError(ErrorCode.SERVER_UNREACHABLE, `cannot reach the orchestrator at ${this.server} (${why}); is it running? (--server, TANDEM_SERVER)`);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new TandemError(ErrorCode.SERVER_UNREACHABLE, `${method} ${path}: the connection to ${this.server} broke while reading the answer (${(error as Error).message})`);
    }
    if (!response.ok) throw errorOf(response.status, text, `${method} ${path}`);
    if (options.text) return text as T;
    if (text.length === 0) return null as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new TandemError(ErrorCode.INTERNAL, `${method} ${path}: the answer is not JSON (HTTP ${response.status})`);
    }
  }

  // ---- system
  health(): Promise<Health> {
    return this.request("GET", "/api/health");
  }
  openapi(): Promise<Record<string, unknown>> {
    return this.request("GET", "/api/openapi.json");
  }
  metrics(): Promise<string> {
    return this.request("GET", "/metrics", { text: true });
  }
  status(): Promise<StatusView> {
    return this.request("GET", "/api/status");
  }

  // ---- appliances
  listAppliances(): Promise<ApplianceView[]> {
    return this.request("GET", "/api/appliances");
  }
  getAppliance(id: string): Promise<ApplianceView> {
    return this.request("GET", `/api/appliances/${seg(id)}`);
  }
  addAppliance(input: ApplianceInput): Promise<ApplianceView> {
    return this.request("POST", "/api/appliances", { body: input });
  }
  updateAppliance(id: string, patch: AppliancePatch): Promise<ApplianceView> {
    return this.request("PATCH", `/api/appliances/${seg(id)}`, { body: patch });
  }
  removeAppliance(id: string): Promise<{ id: string }> {
    return this.request("DELETE", `/api/appliances/${seg(id)}`);
  }

  // ---- security groups
  listGroups(): Promise<GroupSummary[]> {
    return this.request("GET", "/api/groups");
  }
  getGroup(name: string): Promise<GroupDetail> {
    return this.request("GET", `/api/groups/${seg(name)}`);
  }
  createGroup(input: GroupInput): Promise<GroupSummary> {
    return this.request("POST", "/api/groups", { body: input });
  }
  updateGroup(name: string, patch: GroupPatch): Promise<GroupSummary> {
    return this.request("PATCH", `/api/groups/${seg(name)}`, { body: patch });
  }
  deleteGroup(name: string): Promise<{ name: string; droppedChanges: number }> {
    return this.request("DELETE", `/api/groups/${seg(name)}`);
  }
  /** The group's auto-scaling rules, last decision (with its reason), last action and load window. */
  groupAutoscale(name: string): Promise<AutoscaleView> {
    return this.request("GET", `/api/groups/${seg(name)}/autoscale`);
  }

  // ---- members (staged)
  listMembers(group: string): Promise<MemberView[]> {
    return this.request("GET", `/api/groups/${seg(group)}/members`);
  }
  assign(group: string, appliance: string, weight?: number): Promise<StageResult> {
    return this.request("POST", `/api/groups/${seg(group)}/members`, { body: weight === undefined ? { appliance } : { appliance, weight } });
  }
  unassign(group: string, appliance: string): Promise<StageResult> {
    return this.request("DELETE", `/api/groups/${seg(group)}/members/${seg(appliance)}`);
  }
  drain(group: string, appliance: string): Promise<StageResult> {
    return this.request("POST", `/api/groups/${seg(group)}/members/${seg(appliance)}/drain`);
  }
  setWeight(group: string, appliance: string, weight: number): Promise<StageResult> {
    return this.request("PUT", `/api/groups/${seg(group)}/members/${seg(appliance)}/weight`, { body: { weight } });
  }
  /** Weights back to automatic: overrides staged back to cores (apply them); weightsSource "cores" once applied. */
  autoWeights(group: string): Promise<{ group: string; staged: number; pending: number; weightsSource: string }> {
    return this.request("POST", `/api/groups/${seg(group)}/weights/auto`);
  }

  // ---- interfaces and policy
  getInterfaces(group: string): Promise<{ interfaces: SgInterface[]; routes: unknown[] }> {
    return this.request("GET", `/api/groups/${seg(group)}/interfaces`);
  }
  setInterfaces(group: string, interfaces: SgInterfaceInput[]): Promise<GroupSummary> {
    return this.request("PUT", `/api/groups/${seg(group)}/interfaces`, { body: { interfaces } });
  }
  getPolicy(group: string): Promise<{ group: string; policyRevision: number; policy: PolicySpec; hits: Record<string, number> }> {
    return this.request("GET", `/api/groups/${seg(group)}/policy`);
  }
  /** A policy as rules, or as YAML/JSON text (errors then name the line). */
  applyPolicy(group: string, policy: { policy: PolicySpec } | { policyText: string }): Promise<{ group: string; policyRevision: number; rules: number }> {
    return this.request("PUT", `/api/groups/${seg(group)}/policy`, { body: policy });
  }

  // ---- changes and transitions
  changes(group: string): Promise<ChangesView> {
    return this.request("GET", `/api/groups/${seg(group)}/changes`);
  }
  applyChanges(group: string): Promise<ApplyResult> {
    return this.request("POST", `/api/groups/${seg(group)}/changes/apply`);
  }
  discardChanges(group: string, appliance?: string): Promise<{ group: string; discarded: number }> {
    return this.request("DELETE", appliance === undefined ? `/api/groups/${seg(group)}/changes` : `/api/groups/${seg(group)}/changes/${seg(appliance)}`);
  }
  transition(group: string): Promise<TransitionView | null> {
    return this.request("GET", `/api/groups/${seg(group)}/transition`);
  }
  startUpgrade(group: string, targetVersion: string): Promise<{ group: string; fromVersion: string; targetVersion: string }> {
    return this.request("POST", `/api/groups/${seg(group)}/upgrade`, { body: { targetVersion } });
  }
  finishUpgrade(group: string): Promise<{ group: string; version: string }> {
    return this.request("POST", `/api/groups/${seg(group)}/upgrade/finish`);
  }
  upgradeStatus(group: string): Promise<UpgradeStatusView> {
    return this.request("GET", `/api/groups/${seg(group)}/upgrade`);
  }
  upgradeControl(group: string, verb: "pause" | "resume" | "rollback" | "abort"): Promise<Record<string, unknown>> {
    return this.request("POST", `/api/groups/${seg(group)}/upgrade/${verb}`);
  }

  // ---- operations
  allMembers(): Promise<MemberStatus[]> {
    return this.request("GET", "/api/members");
  }
  findConnections(query: ConnectionQuery): Promise<ConnectionLocation[]> {
    return this.request("GET", "/api/connections", { query: { ...query, protocol: query.protocol === undefined ? undefined : String(query.protocol) } });
  }
  syncStatus(group?: string): Promise<SyncStatus[]> {
    return this.request("GET", "/api/sync", { query: { group } });
  }
  startVerify(group: string): Promise<VerifyView> {
    return this.request("POST", `/api/groups/${seg(group)}/verify`);
  }
  verifyStatus(group: string, id: number): Promise<VerifyView> {
    return this.request("GET", `/api/groups/${seg(group)}/verify/${id}`);
  }
  events(options: { afterSeq?: number; limit?: number } = {}): Promise<EventRecord[]> {
    return this.request("GET", "/api/events", { query: options });
  }
  audit(options: { beforeSeq?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    return this.request("GET", "/api/audit", { query: options });
  }

  /** The persisted model as store documents, by collection (admin). */
  exportModel(): Promise<{ revision: number; documents: Record<string, { id: string; [field: string]: unknown }[]> }> {
    return this.request("GET", "/api/export");
  }

  // ---- tokens
  listTokens(): Promise<TokenInfo[]> {
    return this.request("GET", "/api/tokens");
  }
  createToken(name: string, role: Role): Promise<{ name: string; role: Role; token: string }> {
    return this.request("POST", "/api/tokens", { body: { name, role } });
  }
  revokeToken(name: string): Promise<{ name: string }> {
    return this.request("DELETE", `/api/tokens/${seg(name)}`);
  }

  // ---- member reports (member processes)
  heartbeat(appliance: string, report: HeartbeatInput): Promise<HeartbeatAnswer> {
    return this.request("POST", `/api/members/${seg(appliance)}/heartbeat`, { body: report });
  }
  reportFills(appliance: string, report: { epoch: number; buckets: number[] }): Promise<{ accepted: number; complete: boolean; progress: number; awaitingEpoch: number | null }> {
    return this.request("POST", `/api/members/${seg(appliance)}/fills`, { body: report });
  }
  reportVerify(appliance: string, report: { id: number; bucketsChecked: number; mismatched: number[] }): Promise<VerifyView> {
    return this.request("POST", `/api/members/${seg(appliance)}/verify`, { body: report });
  }
  memberConfig(appliance: string): Promise<MemberConfig> {
    return this.request("GET", `/api/members/${encodeURIComponent(appliance)}/config`);
  }

  reportConnections(appliance: string, report: { id: number; connections: HeldConnection[] }): Promise<{ accepted: boolean }> {
    return this.request("POST", `/api/members/${encodeURIComponent(appliance)}/connections`, { body: report });
  }

  distribution(group: string): Promise<DistributionDocument | null> {
    return this.request("GET", `/api/groups/${seg(group)}/distribution`);
  }

  // ---- web UI
  whoami(): Promise<Whoami> {
    return this.request("GET", "/api/whoami");
  }
  /** The group's bucket map (monitor role); null: the group has no table yet. */
  buckets(group: string): Promise<BucketMap | null> {
    return this.request("GET", `/api/groups/${seg(group)}/buckets`);
  }

  /**
   * Follows GET /api/stream (server-sent events, read with fetch so the token travels in the
   * Authorization header) and calls onEvent with each event's name and parsed data. Resolves
   * when the server ends the stream or `signal` aborts; rejects with a TandemError otherwise.
   */
  async stream(onEvent: (name: string, data: unknown) => void, signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.token !== null) headers.authorization = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await this.fetchFn(`${this.server}/api/stream`, { headers, signal });
    } catch (error) {
      if (signal.aborted) return;
      throw new TandemError(ErrorCode.SERVER_UNREACHABLE, `cannot reach the orchestrator at ${this.server} (${(error as Error).message})`);
    }
    if (!response.ok) throw errorOf(response.status, await response.text(), "GET /api/stream");
    if (response.body === null) throw new TandemError(ErrorCode.INTERNAL, "GET /api/stream: the answer has no body");
    const reader = response.body.getReader();
    try {
      await readEvents(reader, onEvent, signal, this.server);
    } finally {
      // Ends the request when we stop early (onEvent threw, a bad event); after the end or an
      // abort there is nothing left to cancel, and a failure to cancel changes nothing.
      reader.cancel().catch((error: unknown) => void error);
    }
  }
}

/** Reads server-sent events from a stream until it ends (or `signal` aborts). */
async function readEvents(reader: ReadableStreamDefaultReader<Uint8Array>, onEvent: (name: string, data: unknown) => void, signal: AbortSignal, server: string): Promise<void> {
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (signal.aborted) return;
      throw new TandemError(ErrorCode.SERVER_UNREACHABLE, `the stream from ${server} broke (${(error as Error).message})`);
    }
    if (chunk.done) return;
    buffered += decoder.decode(chunk.value, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf("\n\n");
      let name = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue; // a comment or keep-alive
      const parsed = jsonOrNull(data.join("\n"));
      if (parsed === null) throw new TandemError(ErrorCode.INTERNAL, `GET /api/stream: event ${name} is not JSON`);
      onEvent(name, parsed);
    }
    if (buffered.length > STREAM_EVENT_BYTES_MAX) throw new TandemError(ErrorCode.INTERNAL, `GET /api/stream: an event longer than ${STREAM_EVENT_BYTES_MAX} bytes`);
  }
}

/** The server's {code, message}; anything else (a proxy's HTML page) becomes a code by status. */
function errorOf(status: number, text: string, what: string): TandemError {
  const body = jsonOrNull(text) as { code?: unknown; message?: unknown; details?: unknown } | null;
  if (body !== null && typeof body.code === "string" && typeof body.message === "string") {
    const details = typeof body.details === "object" && body.details !== null ? (body.details as Record<string, unknown>) : {};
    return new TandemError(body.code, body.message, { ...details, status });
  }
  const code = status === 401 ? ErrorCode.UNAUTHENTICATED : status === 403 ? ErrorCode.FORBIDDEN : status === 404 ? ErrorCode.NOT_FOUND : status === 503 ? ErrorCode.STORE_UNAVAILABLE : ErrorCode.INTERNAL;
  return new TandemError(code, `${what}: HTTP ${status} ${text.slice(0, 200)}`, { status });
}

/** Parsed JSON, or null when `text` is not JSON (an error page from a proxy). */
function jsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
