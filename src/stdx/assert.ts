// Assertions for programmer errors. They stay on in production: a broken invariant in a
// gateway must crash loudly rather than forward packets from a corrupt table.
// Operating errors use TandemError (errors.ts); data-plane outcomes are verdicts.

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function unreachable(value: never, message = "unreachable"): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
