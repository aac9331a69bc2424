// Shared vocabulary of the engine: verdicts, drop reasons, connection states and their
// default timeouts. Every dropped packet carries exactly one DropReason, and every reason
// has a counter (Counters in counters.ts); the enumeration is fixed so that metrics,
// replay reports and the API all speak the same names.

export const Verdict = {
  FORWARD: 0,
  DROP: 1,
  REJECT: 2,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];
export const VERDICT_NAMES = ["forward", "drop", "reject"] as const;

/** Why a packet was dropped (or rejected). Fixed enumeration; names are stable API. */
export const DropReason = {
  NONE: 0,
  PARSE_ERROR: 1, // the frame did not parse (the parse failure reason is counted separately)
  NOT_IP: 2, // ARP and other non-IP frames reaching the engine (the runtime answers ARP itself)
  POLICY_DROP: 3, // a rule with action drop matched
  POLICY_REJECT: 4, // a rule with action reject matched (a reject packet was built)
  POLICY_DEFAULT: 5, // no rule matched: default drop
  TCP_INVALID_STATE: 6, // segment not allowed in the connection's TCP state
  TCP_OUT_OF_WINDOW: 7, // sequence/ack far outside the tracked window
  TCP_NEW_NOT_SYN: 8, // a new TCP connection that does not start with a SYN
  TCP_INVALID_FLAGS: 9, // impossible flag combinations (SYN+FIN, SYN+RST, no flags...)
  TABLE_FULL: 10, // table full and nothing could be evicted
  NO_ROUTE: 11, // no route to the destination
  TTL_EXCEEDED: 12, // TTL / hop limit reached zero (an ICMP time exceeded was built)
  ICMP_ERROR_NO_CONNECTION: 13, // ICMP error quoting a connection we do not track
  FRAGMENT_NO_CONNECTION: 14, // non-first fragment of a flow we do not track
  UNSUPPORTED_PROTOCOL: 15, // IP protocol the engine does not forward statelessly
  NOT_OWNER: 16, // (cluster) bucket not owned here and correction impossible
  MARTIAN_ADDRESS: 17, // multicast/broadcast/unspecified source, loopback
  ICMP_INVALID_NEW: 18, // ICMP/ICMPv6 without a connection that cannot start one (not an echo request)
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];
export const DROP_REASON_NAMES: readonly string[] = [
  "none",
  "parse-error",
  "not-ip",
  "policy-drop",
  "policy-reject",
  "policy-default",
  "tcp-invalid-state",
  "tcp-out-of-window",
  "tcp-new-not-syn",
  "tcp-invalid-flags",
  "table-full",
  "no-route",
  "ttl-exceeded",
  "icmp-error-no-connection",
  "fragment-no-connection",
  "unsupported-protocol",
  "not-owner",
  "martian-address",
  "icmp-invalid-new",
];
export const DROP_REASON_COUNT = DROP_REASON_NAMES.length;

/**
 * Connection states. TCP states follow Linux nf_conntrack (enum tcp_conntrack) and its
 * default timeouts; UDP and ICMP have their own two states.
 */
export const ConnState = {
  NONE: 0,
  TCP_SYN_SENT: 1,
  TCP_SYN_RECV: 2,
  TCP_ESTABLISHED: 3,
  TCP_FIN_WAIT: 4,
  TCP_CLOSE_WAIT: 5,
  TCP_LAST_ACK: 6,
  TCP_TIME_WAIT: 7,
  TCP_CLOSE: 8,
  TCP_SYN_SENT2: 9,
  UDP_UNREPLIED: 10,
  UDP_ASSURED: 11,
  ICMP_UNREPLIED: 12,
  ICMP_REPLIED: 13,
  OTHER_UNREPLIED: 14, // any other IP protocol (ESP, GRE, ...), tracked by addresses
  OTHER_REPLIED: 15,
} as const;
export type ConnState = (typeof ConnState)[keyof typeof ConnState];
export const CONN_STATE_NAMES: readonly string[] = [
  "NONE",
  "SYN_SENT",
  "SYN_RECV",
  "ESTABLISHED",
  "FIN_WAIT",
  "CLOSE_WAIT",
  "LAST_ACK",
  "TIME_WAIT",
  "CLOSE",
  "SYN_SENT2",
  "UDP_UNREPLIED",
  "UDP_ASSURED",
  "ICMP_UNREPLIED",
  "ICMP_REPLIED",
  "OTHER_UNREPLIED",
  "OTHER_REPLIED",
];

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/** Default timeouts in milliseconds, per state (Linux nf_conntrack_proto_tcp.c / _udp.c / _icmp.c). */
export const STATE_TIMEOUT_MS: readonly number[] = [
  0, // NONE
  2 * MINUTE, // SYN_SENT
  60 * SECOND, // SYN_RECV
  5 * 24 * 60 * MINUTE, // ESTABLISHED (5 days)
  2 * MINUTE, // FIN_WAIT
  60 * SECOND, // CLOSE_WAIT
  30 * SECOND, // LAST_ACK
  2 * MINUTE, // TIME_WAIT
  10 * SECOND, // CLOSE
  2 * MINUTE, // SYN_SENT2
  30 * SECOND, // UDP unreplied
  120 * SECOND, // UDP assured (stream)
  30 * SECOND, // ICMP
  30 * SECOND, // ICMP replied
  10 * MINUTE, // other protocols, unreplied (Linux generic: 600 s)
  10 * MINUTE, // other protocols, replied
];

/** Packet direction relative to the connection's original (initiating) direction. */
export const Direction = { ORIGINAL: 0, REPLY: 1 } as const;
export type Direction = (typeof Direction)[keyof typeof Direction];

/** True when the state counts as "established" for eviction and statistics (handshake completed / reply seen). */
export function isEstablishedState(state: number): boolean {
  return (
    state === ConnState.TCP_ESTABLISHED ||
    state === ConnState.TCP_FIN_WAIT ||
    state === ConnState.TCP_CLOSE_WAIT ||
    state === ConnState.TCP_LAST_ACK ||
    state === ConnState.UDP_ASSURED ||
    state === ConnState.ICMP_REPLIED ||
    state === ConnState.OTHER_REPLIED
  );
}

/** Per-direction TCP window tracking (Linux struct ip_ct_tcp_state). */
export interface TcpDirectionSnapshot {
  /** Highest sequence number sent + data length (td_end), unsigned 32-bit. */
  end: number;
  /** Highest acceptable end: ack + window seen from the peer (td_maxend). */
  maxEnd: number;
  /** Largest window seen (td_maxwin), already scaled. */
  maxWindow: number;
  /** Window scale shift (td_scale), 0..14. */
  scale: number;
  /** Per-direction flags (TcpDirFlag bits). */
  flags: number;
}

/** Per-direction TCP flags kept in the table (Linux IP_CT_TCP_FLAG_*). */
export const TcpDirFlag = {
  WINDOW_SCALE: 0x01,
  SACK_PERM: 0x02,
  CLOSE_INIT: 0x04,
  BE_LIBERAL: 0x08,
  DATA_UNACKNOWLEDGED: 0x10,
  MAXACK_SET: 0x20,
} as const;

/**
 * One connection as ordinary values: what HyperSync replicates and the API shows.
 * Addresses and ports are in the original (initiating) direction.
 */
export interface ConnectionSnapshot {
  zone: number;
  protocol: number;
  src: Uint8Array; // 4 or 16 bytes
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
  state: ConnState;
  /** Absolute expiry on the engine clock, milliseconds. */
  expiresAtMs: number;
  /** A reply has been seen. */
  seenReply: boolean;
  /** Counted as established (handshake completed, or reply seen for UDP/ICMP). Eviction spares these. */
  assured: boolean;
  /** TCP only; null for other protocols. */
  tcp: { original: TcpDirectionSnapshot; reply: TcpDirectionSnapshot } | null;
}
