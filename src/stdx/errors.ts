// Operating errors: bad configuration, unreadable files, API conflicts. Each carries a
// stable string code that users, the CLI's exit status and the HTTP status map from.
// Programmer errors are assertions (assert.ts); data-plane outcomes are verdicts.

export const ErrorCode = {
  INVALID_ARGUMENT: "TANDEM_INVALID_ARGUMENT",
  POLICY_INVALID: "TANDEM_POLICY_INVALID",
  CAPTURE_UNREADABLE: "TANDEM_CAPTURE_UNREADABLE",
  CAPTURE_LINKTYPE_UNSUPPORTED: "TANDEM_CAPTURE_LINKTYPE_UNSUPPORTED",
  FILE_NOT_FOUND: "TANDEM_FILE_NOT_FOUND",
  NOT_FOUND: "TANDEM_NOT_FOUND",
  CONFLICT: "TANDEM_CONFLICT",
  INTERNAL: "TANDEM_INTERNAL",
  STORE_UNAVAILABLE: "TANDEM_STORE_UNAVAILABLE",
  STORE_CORRUPT: "TANDEM_STORE_CORRUPT",
  STORE_SCHEMA_NEWER: "TANDEM_STORE_SCHEMA_NEWER",
  NOT_LEADER: "TANDEM_NOT_LEADER",
  // Control plane (src/orchestrator) and its API.
  APPLIANCE_NOT_FOUND: "TANDEM_APPLIANCE_NOT_FOUND",
  APPLIANCE_EXISTS: "TANDEM_APPLIANCE_EXISTS",
  APPLIANCE_IN_USE: "TANDEM_APPLIANCE_IN_USE",
  SG_NOT_FOUND: "TANDEM_SG_NOT_FOUND",
  SG_EXISTS: "TANDEM_SG_EXISTS",
  SG_NOT_EMPTY: "TANDEM_SG_NOT_EMPTY",
  MEMBER_NOT_FOUND: "TANDEM_MEMBER_NOT_FOUND",
  MODEL_MISMATCH: "TANDEM_MODEL_MISMATCH",
  VERSION_MISMATCH: "TANDEM_VERSION_MISMATCH",
  CHANGE_PENDING: "TANDEM_CHANGE_PENDING",
  NO_PENDING_CHANGES: "TANDEM_NO_PENDING_CHANGES",
  TRANSITION_IN_PROGRESS: "TANDEM_TRANSITION_IN_PROGRESS",
  INVALID_STATE: "TANDEM_INVALID_STATE",
  LIMIT_EXCEEDED: "TANDEM_LIMIT_EXCEEDED",
  BUSY: "TANDEM_BUSY",
  UNAUTHENTICATED: "TANDEM_UNAUTHENTICATED",
  FORBIDDEN: "TANDEM_FORBIDDEN",
  // API clients (src/api/client.ts, the CLI): the server could not be reached, a wait gave up,
  // an applied transition was rolled back, a verification found differing buckets.
  SERVER_UNREACHABLE: "TANDEM_SERVER_UNREACHABLE",
  TIMEOUT: "TANDEM_TIMEOUT",
  TRANSITION_FAILED: "TANDEM_TRANSITION_FAILED",
  VERIFY_FAILED: "TANDEM_VERIFY_FAILED",
  // The network lab (src/lab): needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2/ethtool.
  LAB_NEEDS_ROOT: "TANDEM_LAB_NEEDS_ROOT",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TandemError extends Error {
  override name = "TandemError";
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/**
 * CLI exit status per error code: 2 for bad input the user can fix (arguments, names that do
 * not exist, requests that conflict with the cluster's state, credentials), 1 otherwise
 * (transient or internal: retrying later may succeed).
 */
export function exitCodeOf(code: string): number {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT:
    case ErrorCode.POLICY_INVALID:
    case ErrorCode.CAPTURE_UNREADABLE:
    case ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED:
    case ErrorCode.FILE_NOT_FOUND:
    case ErrorCode.APPLIANCE_NOT_FOUND:
    case ErrorCode.APPLIANCE_EXISTS:
    case ErrorCode.APPLIANCE_IN_USE:
    case ErrorCode.SG_NOT_FOUND:
    case ErrorCode.SG_EXISTS:
    case ErrorCode.SG_NOT_EMPTY:
    case ErrorCode.MEMBER_NOT_FOUND:
    case ErrorCode.MODEL_MISMATCH:
    case ErrorCode.VERSION_MISMATCH:
    case ErrorCode.CHANGE_PENDING:
    case ErrorCode.NO_PENDING_CHANGES:
    case ErrorCode.INVALID_STATE:
    case ErrorCode.LIMIT_EXCEEDED:
    case ErrorCode.UNAUTHENTICATED:
    case ErrorCode.FORBIDDEN:
    case ErrorCode.LAB_NEEDS_ROOT:
      return 2;
    default:
      return 1;
  }
}

/**
 * HTTP status per error code, for the REST API: 400 bad input, 401/403 credentials, 404 a
 * named thing does not exist, 409 the request conflicts with the cluster's state (exists,
 * in use, mismatch, a transition running), 503 try again later (store, leadership, busy
 * queue), 500 anything else.
 */
export function httpStatusOf(code: string): number {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT:
    case ErrorCode.POLICY_INVALID:
    case ErrorCode.CAPTURE_UNREADABLE:
    case ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED:
      return 400;
    case ErrorCode.UNAUTHENTICATED:
      return 401;
    case ErrorCode.FORBIDDEN:
      return 403;
    case ErrorCode.NOT_FOUND:
    case ErrorCode.FILE_NOT_FOUND:
    case ErrorCode.APPLIANCE_NOT_FOUND:
    case ErrorCode.SG_NOT_FOUND:
    case ErrorCode.MEMBER_NOT_FOUND:
      return 404;
    case ErrorCode.CONFLICT:
    case ErrorCode.APPLIANCE_EXISTS:
    case ErrorCode.APPLIANCE_IN_USE:
    case ErrorCode.SG_EXISTS:
    case ErrorCode.SG_NOT_EMPTY:
    case ErrorCode.MODEL_MISMATCH:
    case ErrorCode.VERSION_MISMATCH:
    case ErrorCode.CHANGE_PENDING:
    case ErrorCode.NO_PENDING_CHANGES:
    case ErrorCode.TRANSITION_IN_PROGRESS:
    case ErrorCode.INVALID_STATE:
    case ErrorCode.LIMIT_EXCEEDED:
      return 409;
    case ErrorCode.STORE_UNAVAILABLE:
    case ErrorCode.NOT_LEADER:
    case ErrorCode.BUSY:
      return 503;
    default:
      return 500;
  }
}
