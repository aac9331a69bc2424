// The REST API: a fastify app over an OrchestratorDaemon. Routes are one-line adapters to the
// daemon and its control plane (routes-*.ts); this file holds what every route shares:
// authentication and roles, JSON-schema validation, the error format, the OpenAPI document
// (/api/openapi.json) with readable docs beside it (/api/docs), and /metrics.
//
// Invariants kept: every error leaves as JSON {code, message} (plus the TandemError's details,
// e.g. a policy error's rule and field, when it has some) with the HTTP status
// httpStatusOf(code) (framework errors get their own 4xx status and TANDEM_INVALID_ARGUMENT or
// TANDEM_NOT_FOUND); a route without an access level is refused to all but admins (a forgotten
// tag fails closed); the only unauthenticated routes are health, the OpenAPI document, the
// docs and the web UI's static files (routes-web.ts); a handler runs only on input its schema
// accepted (no coercion, no unknown fields).

import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import { allows, type Access, type Principal } from "../runtime/tokens.js";
import { ErrorCode, httpStatusOf, TandemError } from "../stdx/errors.js";
import { createMetrics } from "./metrics.js";
import { registerInventoryRoutes } from "./routes-inventory.js";
import { registerOperationRoutes } from "./routes-operations.js";
import { registerWebRoutes } from "./routes-web.js";
import { ERROR_BODY, type Schema } from "./schemas.js";

export const API_VERSION = "0.1.0";
/** Largest request body: a policy of many rules or a fill report of many buckets. */
export const BODY_LIMIT_BYTES = 16 * 1024 * 1024;

export interface ApiOptions {
  logger?: Logger;
  /** The built web UI served at / (default: this package's web/dist; null: none). */
  webRoot?: string | null;
}

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** What a handler gets: validated input and the caller. */
export interface Call {
  body: Record<string, unknown>;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  principal: Principal;
  /** Name recorded in the audit log. */
  actor: string;
}

export interface RouteSpec {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  url: string;
  access: Access;
  summary: string;
  tag: string;
  description?: string;
  body?: Schema;
  params?: Schema;
  querystring?: Schema;
  /** Success status (default 200). */
  status?: number;
}

export type Handler = (call: Call, request: FastifyRequest, reply: FastifyReply) => unknown;

const ACCESS_TEXT: Record<Access, string> = {
  public: "No token needed.",
  monitor: "Role: monitor (or operator, admin).",
  operator: "Role: operator (or admin).",
  admin: "Role: admin.",
  member: "Role: member (its own appliance only), operator or admin.",
};

const registered = new WeakMap<FastifyInstance, RouteSpec[]>();

/** The routes registered through route() (tests check each is in the OpenAPI document). */
export function routesOf(app: FastifyInstance): readonly RouteSpec[] {
  return registered.get(app) ?? [];
}

/** Registers one route with its schemas, its access level and its OpenAPI description. */
export function route(app: FastifyInstance, spec: RouteSpec, handler: Handler): void {
  const list = registered.get(app) ?? [];
  list.push(spec);
  registered.set(app, list);
  const errors: Record<string, Schema> = { "4xx": ERROR_BODY, "5xx": ERROR_BODY };
  app.route({
    method: spec.method,
    url: spec.url,
    config: { access: spec.access },
    schema: {
      summary: spec.summary,
      description: [spec.description, ACCESS_TEXT[spec.access]].filter((s) => s !== undefined).join("\n\n"),
      tags: [spec.tag],
      ...(spec.access === "public" ? {} : { security: [{ bearer: [] }] }),
      ...(spec.body ? { body: spec.body } : {}),
      ...(spec.params ? { params: spec.params } : {}),
      ...(spec.querystring ? { querystring: spec.querystring } : {}),
      response: errors,
    },
    handler: async (request, reply) => {
      const principal = request.principal ?? { name: "anonymous", role: "monitor" as const };
      const call: Call = {
        body: (request.body ?? {}) as Record<string, unknown>,
        params: (request.params ?? {}) as Record<string, string>,
        query: (request.query ?? {}) as Record<string, string | undefined>,
        principal,
        actor: principal.name,
      };
      const result = await handler(call, request, reply);
      if (reply.sent) return reply;
      reply.code(spec.status ?? 200);
      return result === undefined ? null : result;
    },
  });
}

/** "body.cores: must be >= 1", "body: unknown field \"color\"", "querystring.src: is required". */
function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  const context = error.validationContext ?? "input";
  if (first === undefined) return error.message;
  const path = `${context}${first.instancePath.replace(/\//g, ".")}`;
  const params = first.params as Record<string, unknown>;
  if (first.keyword === "additionalProperties") return `${path}: unknown field "${String(params.additionalProperty)}"`;
  if (first.keyword === "required") return `${path}.${String(params.missingProperty)}: is required`;
  if (first.keyword === "enum") return `${path}: must be one of ${(params.allowedValues as unknown[]).join(", ")}`;
  return `${path}: ${first.message ?? "is invalid"}`;
}

function sendError(reply: FastifyReply, status: number, code: string, message: string, details?: Record<string, unknown>): FastifyReply {
  const body = details === undefined || Object.keys(details).length === 0 ? { code, message } : { code, message, details };
  return reply.code(status).type("application/json").send(body);
}

export async function buildApi(daemon: OrchestratorDaemon, options: ApiOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: (options.logger ?? daemon.logger) as FastifyBaseLogger,
    // Commands are logged by the daemon (with their outcome); request lines would only repeat them.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Strict: no coercion (a "8" is not 8), unknown fields are errors (not silently removed).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  });
  app.decorateRequest("principal", null);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof TandemError) return sendError(reply, httpStatusOf(error.code), error.code, error.message, error.details);
    if (error.validation !== undefined) return sendError(reply, 400, ErrorCode.INVALID_ARGUMENT, validationMessage(error));
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, status === 404 ? ErrorCode.NOT_FOUND : ErrorCode.INVALID_ARGUMENT, error.message);
    request.log.error({ err: error, url: request.url }, "request failed");
    return sendError(reply, 500, ErrorCode.INTERNAL, "internal error (see the orchestrator's log)");
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, ErrorCode.NOT_FOUND, `no route ${request.method} ${request.url.split("?")[0]}`));

  // Authentication, then authorisation by the route's access level.
  app.addHook("onRequest", async (request, reply) => {
    const url = request.url;
    let access = request.routeOptions.config?.access;
    if (access === undefined) access = request.is404 || url.startsWith("/api/docs") ? "public" : "admin";
    if (access === "public") return;
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match === null) {
      reply.header("www-authenticate", 'Bearer realm="tandem"');
      return sendError(reply, 401, ErrorCode.UNAUTHENTICATED, "this call needs a token: send the header Authorization: Bearer TOKEN (see tandem token create, or DATA_DIR/admin-token)");
    }
    const principal = daemon.authenticate(match[1]!);
    if (principal === null) {
      reply.header("www-authenticate", 'Bearer realm="tandem", error="invalid_token"');
      return sendError(reply, 401, ErrorCode.UNAUTHENTICATED, "unknown or revoked token");
    }
    if (!allows(principal.role, access)) {
      return sendError(reply, 403, ErrorCode.FORBIDDEN, `token ${principal.name} has role ${principal.role}; ${request.method} ${request.routeOptions.url} needs ${access}`);
    }
    request.principal = principal;
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "Tandem orchestrator API",
        version: API_VERSION,
        description: "Inventory, security groups, staged topology changes, policy, connections, sync, events and audit of a Tandem gateway cluster. Errors are JSON {code, message}; see docs/api.md.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "an API token (tandem token create; the first admin token is in DATA_DIR/admin-token)" } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: "/api/docs", uiConfig: { docExpansion: "list", deepLinking: true } });

  route(app, { method: "GET", url: "/api/health", access: "public", tag: "system", summary: "Liveness: role (active or standby) and store revision" }, () => ({
    status: "ok",
    role: daemon.role,
    storeRevision: daemon.storeRevision,
    store: daemon.storeKind,
    instance: daemon.instanceId,
    version: API_VERSION,
  }));
  route(app, { method: "GET", url: "/api/openapi.json", access: "public", tag: "system", summary: "This API's OpenAPI 3 document" }, () => app.swagger());

  const metrics = createMetrics(daemon);
  route(
    app,
    { method: "GET", url: "/metrics", access: "monitor", tag: "system", summary: "Prometheus metrics (text format) per security group and member" },
    async (_call, _request, reply) => reply.type(metrics.contentType).send(await metrics.render()),
  );

  registerInventoryRoutes(app, daemon);
  registerOperationRoutes(app, daemon);
  registerWebRoutes(app, daemon, options.webRoot === undefined ? {} : { webRoot: options.webRoot });
  return app;
}
