// Routes of the running cluster: status, all members at once (tandem monitor), connections
// (which member owns and backs up a flow), sync status and verification, events and audit,
// tokens, and the member-facing routes (heartbeat, fill and verification reports, the routing
// table). One line each over the daemon.
//
// Invariant: a "member" token speaks only for the appliance it is named after (and reads only
// its own group's table); operator and admin tokens may speak for any (tools, tests).

import type { FastifyInstance } from "fastify";
import type { HeartbeatInput, OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import type { HeldConnection } from "../runtime/connection-queries.js";
import type { Role } from "../runtime/tokens.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { route, type Call } from "./server.js";
import * as S from "./schemas.js";

/** The :appliance a call reports for, after checking a member token speaks for itself. */
function self(call: Call): string {
  const appliance = call.params.appliance!;
  if (call.principal.role === "member" && call.principal.name !== appliance) {
    throw new TandemError(ErrorCode.FORBIDDEN, `member token ${call.principal.name} may only report for appliance ${call.principal.name}, not ${appliance}`);
  }
  return appliance;
}

export function registerOperationRoutes(app: FastifyInstance, d: OrchestratorDaemon): void {
  const view = () => d.controlPlane.view();
  const now = () => d.nowMs();

  const O = "operations";
  route(app, { method: "GET", url: "/api/status", access: "monitor", tag: O, summary: "Orchestrator overview: role, store, queue, appliances, groups" }, () => d.status());
  route(app, { method: "GET", url: "/api/members", access: "monitor", tag: O, summary: "Every member of every group with load and data-plane counters (tandem monitor)" }, () =>
    [...d.controlPlane.current.groups.keys()].sort().flatMap((g) => view().members(g, now()).map((m) => ({ ...m, counters: d.countersOf(m.appliance) }))),
  );
  route(
    app,
    { method: "GET", url: "/api/connections", access: "monitor", tag: O, summary: "Live connections matching addresses/ports (asked of the members): bucket, owner, backup, state", querystring: S.QUERY_CONNECTIONS },
    (c) =>
      d.findConnections({
        ...(c.query.group !== undefined ? { group: c.query.group } : {}),
        ...(c.query.protocol !== undefined ? { protocol: /^[0-9]+$/.test(c.query.protocol) ? Number(c.query.protocol) : (c.query.protocol as "tcp") } : {}),
        ...(c.query.src !== undefined ? { src: c.query.src } : {}),
        ...(c.query.dst !== undefined ? { dst: c.query.dst } : {}),
        ...(c.query.srcPort !== undefined ? { srcPort: S.digitsOf(c.query.srcPort)! } : {}),
        ...(c.query.dstPort !== undefined ? { dstPort: S.digitsOf(c.query.dstPort)! } : {}),
      }),
  );
  route(app, { method: "GET", url: "/api/sync", access: "monitor", tag: O, summary: "Sync status per group: epochs and policy revisions members run, sync lag", querystring: S.QUERY_GROUP }, (c) =>
    d.syncStatus(c.query.group),
  );
  route(
    app,
    {
      method: "POST",
      url: "/api/groups/:name/verify",
      access: "operator",
      tag: O,
      summary: "Start a verification: members compare per-bucket digests with their backups",
      description: "Returns the round (or the one still running); follow it at /api/groups/{name}/verify/{id}.",
      params: S.PARAMS_GROUP,
      status: 201,
    },
    (c) => d.startVerify(c.params.name!),
  );
  route(app, { method: "GET", url: "/api/groups/:name/verify/:id", access: "monitor", tag: O, summary: "A verification round: progress and differing buckets", params: S.PARAMS_GROUP_VERIFY }, (c) =>
    d.verifyStatus(c.params.name!, Number(c.params.id)),
  );
  route(app, { method: "GET", url: "/api/events", access: "monitor", tag: O, summary: "Events, oldest first (pass the last seq seen as afterSeq to follow)", querystring: S.QUERY_EVENTS }, (c) =>
    d.events({ afterSeq: S.digitsOf(c.query.afterSeq), limit: S.digitsOf(c.query.limit) }),
  );
  route(app, { method: "GET", url: "/api/audit", access: "monitor", tag: O, summary: "Audit records (every command, accepted or refused), newest first", querystring: S.QUERY_AUDIT }, (c) =>
    d.audit({ beforeSeq: S.digitsOf(c.query.beforeSeq), limit: S.digitsOf(c.query.limit) }),
  );

  route(app, { method: "GET", url: "/api/export", access: "admin", tag: O, summary: "The persisted model as store documents (backup, audits, restore checks)" }, () => ({
    revision: d.storeRevision,
    documents: view().documents(),
  }));

  const T = "tokens";
  route(app, { method: "GET", url: "/api/tokens", access: "admin", tag: T, summary: "List tokens (names and roles; secrets are never stored)" }, () => d.listTokens());
  route(app, { method: "POST", url: "/api/tokens", access: "admin", tag: T, summary: "Create a token; its secret is in this answer only", body: S.TOKEN_CREATE, status: 201 }, (c) =>
    d.createToken(c.body.name as string, c.body.role as Role, c.actor),
  );
  route(app, { method: "DELETE", url: "/api/tokens/:name", access: "admin", tag: T, summary: "Revoke a token (not the last admin token)", params: S.PARAMS_TOKEN }, (c) => d.revokeToken(c.params.name!, c.actor));

  const MB = "member reports";
  route(
    app,
    {
      method: "POST",
      url: "/api/members/:appliance/heartbeat",
      access: "member",
      tag: MB,
      summary: "A member's heartbeat with its load and counters; answers what it should run",
      params: S.PARAMS_APPLIANCE,
      body: S.HEARTBEAT,
    },
    (c) => d.heartbeat(self(c), c.body as HeartbeatInput),
  );
  route(app, { method: "GET", url: "/api/members/:appliance/config", access: "member", tag: MB, summary: "What a member process runs: group, interfaces, routes, policy, HyperSync identity and key", params: S.PARAMS_APPLIANCE }, (c) =>
    d.memberConfig(self(c)),
  );
  route(app, { method: "POST", url: "/api/members/:appliance/connections", access: "member", tag: MB, summary: "A member's answer to a connection lookup", params: S.PARAMS_APPLIANCE, body: S.CONNECTIONS_REPORT }, (c) =>
    d.connectionsReport(self(c), c.body as { id: number; connections: HeldConnection[] }),
  );
  route(app, { method: "POST", url: "/api/members/:appliance/fills", access: "member", tag: MB, summary: "Buckets a member now holds completely during a transition", params: S.PARAMS_APPLIANCE, body: S.FILLS }, (c) =>
    d.fillReport(self(c), c.body as { epoch: number; buckets: number[] }),
  );
  route(app, { method: "POST", url: "/api/members/:appliance/verify", access: "member", tag: MB, summary: "A member's answer to a verification round", params: S.PARAMS_APPLIANCE, body: S.VERIFY_REPORT }, (c) =>
    d.verifyReport(self(c), c.body as { id: number; bucketsChecked: number; mismatched: number[] }),
  );
  route(
    app,
    { method: "GET", url: "/api/groups/:name/distribution", access: "member", tag: MB, summary: "The group's routing table and fill map (for its members and the distributor)", params: S.PARAMS_GROUP },
    (c, _request, reply) => {
      if (c.principal.role === "member" && d.controlPlane.current.members.get(c.principal.name)?.group !== c.params.name) {
        throw new TandemError(ErrorCode.FORBIDDEN, `member token ${c.principal.name} may only read its own group's table`);
      }
      d.controlPlane.view().group(c.params.name!); // TANDEM_SG_NOT_FOUND
      const json = d.distributionJson(c.params.name!);
      if (json === null) return null;
      return reply.type("application/json").send(json);
    },
  );
}
