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

/** CLI exit status per error code: 2 for bad input the user can fix, 1 otherwise. */
export function exitCodeOf(code: string): number {
  switch (code) {
    case ErrorCode.INVALID_ARGUMENT:
    case ErrorCode.POLICY_INVALID:
    case ErrorCode.CAPTURE_UNREADABLE:
    case ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED:
    case ErrorCode.FILE_NOT_FOUND:
      return 2;
    default:
      return 1;
  }
}
