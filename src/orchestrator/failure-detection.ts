// Failure detection from measured round-trip times: how long a member may stay silent before it
// is DOWN, per member, from the round trips its own heartbeats measure.
//
// Each heartbeat carries the round trip of the member's previous heartbeat (request to answer,
// timed by the member: the network both ways plus the orchestrator's time to answer). The
// samples feed one RFC 6298 estimator per member (HealthTracker keeps it):
//
//   first sample R:  srtt = R,  rttvar = R / 2
//   every next R:    rttvar = (1 - beta) * rttvar + beta * |srtt - R|    beta  = 1/4 (old srtt)
//                    srtt   = (1 - alpha) * srtt + alpha * R             alpha = 1/8
//
//   downAfterMs = min(ceiling, max(floor, ceil(2 * interval + srtt + 4 * rttvar)))
//     floor    = the configured downAfterMs (default 300 ms; `tandem up` 200 ms)
//     ceiling  = DOWN_AFTER_CEILING_FACTOR * floor
//     interval = the configured heartbeat interval (default 100 ms; `tandem up` 40 ms)
//   no sample yet: the floor.
//
// Why these terms. srtt + 4 * rttvar is RFC 6298's retransmission timeout: a round trip that
// an answer exceeds only rarely. A member keeps at most one heartbeat in flight and sends at
// ticks one interval apart, so after a slow answer its next beat leaves at the next tick, up to
// one interval later; the second interval tolerates one tick that fires late or one beat that
// fails. With the usual floor of three intervals the floor holds while srtt + 4 * rttvar stays
// within one interval: on loopback (round trips well under a few milliseconds) failover is
// exactly as fast as with the constant, while a member behind a slow or jittery link gets the
// time its heartbeats need. The ceiling bounds how long a dead member can go unnoticed however
// bad its link looked before it died.
//
// Pure: no clock, no I/O, no state. Invariants: srtt >= 0, rttvar >= 0;
// floor <= downAfterMs <= ceiling, and downAfterMs is the floor until a sample arrives.

import { assert } from "../stdx/assert.js";

/** Gain of the smoothed RTT (RFC 6298 alpha). */
export const RTT_ALPHA = 1 / 8;
/** Gain of the RTT variation (RFC 6298 beta). */
export const RTT_BETA = 1 / 4;
/** Variations added to srtt for a round trip that is rarely exceeded (RFC 6298 K). */
export const RTT_VARIANCE_FACTOR = 4;
/** Heartbeat intervals a member may lose to tick alignment and one late or failed beat. */
export const HEARTBEAT_INTERVALS_TOLERATED = 2;
/** The silence a measured link may earn, at most, as a multiple of the configured floor. */
export const DOWN_AFTER_CEILING_FACTOR = 10;

/** One member's RTT estimate (milliseconds). */
export interface RttEstimate {
  readonly srttMs: number;
  readonly rttvarMs: number;
}

/** What the member view shows: the formula's inputs and its result (null: no round trip measured yet). */
export interface Detection {
  srttMs: number | null;
  rttvarMs: number | null;
  heartbeatIntervalMs: number;
  downAfterMs: number;
}

export interface FailureDetectionOptions {
  heartbeatIntervalMs: number;
  /** The configured downAfterMs: never less. */
  downAfterMsFloor: number;
  /** Never more, however slow the link measured. */
  downAfterMsCeiling: number;
}

/** The estimate after one more sample (RFC 6298 section 2; rttvar first, from the old srtt). */
export function nextRttEstimate(previous: RttEstimate | null, sampleMs: number): RttEstimate {
  assert(Number.isFinite(sampleMs) && sampleMs >= 0, "an RTT sample is a non-negative number");
  if (previous === null) return { srttMs: sampleMs, rttvarMs: sampleMs / 2 };
  return {
    rttvarMs: (1 - RTT_BETA) * previous.rttvarMs + RTT_BETA * Math.abs(previous.srttMs - sampleMs),
    srttMs: (1 - RTT_ALPHA) * previous.srttMs + RTT_ALPHA * sampleMs,
  };
}

/** Floor, ceiling and interval from the health options (the configured downAfterMs is the floor). */
export function failureDetectionOptions(health: { heartbeatIntervalMs: number; downAfterMs: number }): FailureDetectionOptions {
  assert(health.heartbeatIntervalMs > 0 && health.downAfterMs > health.heartbeatIntervalMs, "health options are resolved first");
  return {
    heartbeatIntervalMs: health.heartbeatIntervalMs,
    downAfterMsFloor: health.downAfterMs,
    downAfterMsCeiling: health.downAfterMs * DOWN_AFTER_CEILING_FACTOR,
  };
}

/** The silence after which a member with this estimate is DOWN (see the file comment). */
export function downAfterMsOf(options: FailureDetectionOptions, estimate: RttEstimate | null): number {
  const floor = options.downAfterMsFloor;
  assert(options.downAfterMsCeiling >= floor, "the ceiling is not below the floor");
  if (estimate === null) return floor;
  const needed = HEARTBEAT_INTERVALS_TOLERATED * options.heartbeatIntervalMs + estimate.srttMs + RTT_VARIANCE_FACTOR * estimate.rttvarMs;
  const value = Math.min(options.downAfterMsCeiling, Math.max(floor, Math.ceil(needed)));
  assert(value >= floor && value <= options.downAfterMsCeiling, "downAfterMs within its bounds");
  return value;
}

/**
 * The HealthTracker hook (HealthOptions.downAfterMsOf) that applies the formula with these
 * health options; the runtime installs it (src/runtime/orchestrator-daemon.ts).
 */
export function measuredDownAfterMsOf(health: {
  heartbeatIntervalMs: number;
  downAfterMs: number;
}): (appliance: string, smoothedRttMs: number | null, rttVarianceMs: number | null) => number {
  const options = failureDetectionOptions(health);
  return (_appliance, smoothedRttMs, rttVarianceMs) =>
    downAfterMsOf(options, smoothedRttMs === null ? null : { srttMs: smoothedRttMs, rttvarMs: rttVarianceMs ?? 0 });
}
