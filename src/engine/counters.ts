// Engine counters: one plain object of numbers and typed arrays, updated on the hot path
// without allocation and read by replay reports, metrics and the API.
//
// Invariant (checked by tests): packets == sum(verdicts), and
// verdicts[DROP] + verdicts[REJECT] == sum(dropReasons) — every packet not forwarded has
// exactly one reason. parseFailures breaks dropReasons[PARSE_ERROR] down by parse reason.

import { PARSE_FAILURE_NAMES } from "../packet/view.js";
import { CONN_STATE_NAMES, DROP_REASON_COUNT, DROP_REASON_NAMES, VERDICT_NAMES } from "./types.js";

export class EngineCounters {
  packets = 0;
  bytes = 0;
  readonly verdicts = new Float64Array(VERDICT_NAMES.length);
  readonly dropReasons = new Float64Array(DROP_REASON_COUNT);
  readonly parseFailures = new Float64Array(PARSE_FAILURE_NAMES.length);
  /** Connections created (accepted by policy and inserted). */
  connectionsCreated = 0;
  /** TCP handshakes completed; UDP/ICMP flows that saw a reply. */
  connectionsEstablished = 0;
  /** Connections ended by a RST. */
  connectionsReset = 0;
  /** Connections ended by a FIN exchange (reached TIME_WAIT or CLOSE without RST). */
  connectionsClosed = 0;
  /** Connections removed by the expiry sweep. */
  connectionsExpired = 0;
  /** Connections evicted because the table was full. */
  connectionsEvicted = 0;
  /** ICMP errors forwarded because they quote a tracked connection. */
  icmpErrorsRelated = 0;
  /** Reject packets (TCP RST / ICMP unreachable) and ICMP time-exceeded messages built. */
  repliesBuilt = 0;
  /** Packets that matched a rule with the log flag. */
  logged = 0;

  toJSON(): Record<string, unknown> {
    return {
      packets: this.packets,
      bytes: this.bytes,
      verdicts: namedCounts(VERDICT_NAMES, this.verdicts, true),
      dropReasons: namedCounts(DROP_REASON_NAMES, this.dropReasons, false, 1),
      parseFailures: namedCounts(PARSE_FAILURE_NAMES, this.parseFailures, false, 1),
      connections: {
        created: this.connectionsCreated,
        established: this.connectionsEstablished,
        reset: this.connectionsReset,
        closed: this.connectionsClosed,
        expired: this.connectionsExpired,
        evicted: this.connectionsEvicted,
      },
      icmpErrorsRelated: this.icmpErrorsRelated,
      repliesBuilt: this.repliesBuilt,
      logged: this.logged,
    };
  }
}

/** Named view of a counter array; zero entries omitted unless `keepZero`. */
export function namedCounts(
  names: readonly string[],
  values: ArrayLike<number>,
  keepZero: boolean,
  from = 0,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = from; i < names.length; i++) {
    const value = values[i] ?? 0;
    if (keepZero || value !== 0) out[names[i]!] = value;
  }
  return out;
}

export { CONN_STATE_NAMES };
