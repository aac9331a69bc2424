// The live view of the cluster: one GET /api/stream per tab (fetch streaming, token in the
// Authorization header), reconnected after a break, feeding every page. Pages read the latest
// snapshot, the load history (for charts) and the recent events; nothing polls for them.
//
// Invariants kept: history holds at most HISTORY_SAMPLES_MAX samples, events at most
// EVENTS_KEPT_MAX (deduplicated by seq: a reconnect resends the recent ones); one stream at a
// time (start() after stop() makes a new one).

import { useEffect, useState } from "preact/hooks";
import type { TandemClient } from "../../src/api/client.js";
import type { EventRecord, StreamSample, StreamSnapshot } from "../../src/api/types.js";
import { TandemError } from "../../src/stdx/errors.js";

export const HISTORY_SAMPLES_MAX = 300;
export const EVENTS_KEPT_MAX = 200;
const RECONNECT_MS_MIN = 500;
const RECONNECT_MS_MAX = 5_000;

export type LiveStatus = "connecting" | "live" | "reconnecting" | "standby";

export interface LiveState {
  status: LiveStatus;
  /** Why the stream is not live (shown beside the status). */
  problem: string | null;
  snapshot: StreamSnapshot | null;
  history: StreamSample[];
  /** Oldest first. */
  events: EventRecord[];
}

export class Live {
  state: LiveState = { status: "connecting", problem: null, snapshot: null, history: [], events: [] };
  private readonly listeners = new Set<(state: LiveState) => void>();
  private abort: AbortController | null = null;

  constructor(
    private readonly client: TandemClient,
    /** Called when the API no longer accepts the token (revoked): sign out. */
    private readonly onUnauthenticated: (message: string) => void,
  ) {}

  subscribe(listener: (state: LiveState) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private set(patch: Partial<LiveState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l(this.state);
  }

  start(): void {
    if (this.abort !== null) return;
    const abort = new AbortController();
    this.abort = abort;
    void this.run(abort.signal);
  }

  stop(): void {
    this.abort?.abort();
    this.abort = null;
  }

  private async run(signal: AbortSignal): Promise<void> {
    let waitMs = RECONNECT_MS_MIN;
    while (!signal.aborted) {
      try {
        await this.client.stream((name, data) => {
          waitMs = RECONNECT_MS_MIN;
          this.onEvent(name, data);
        }, signal);
        if (!signal.aborted) this.set({ status: "reconnecting", problem: "the orchestrator ended the stream" });
      } catch (error) {
        const e = error instanceof TandemError ? error : new TandemError("TANDEM_INTERNAL", String(error));
        if (e.code === "TANDEM_UNAUTHENTICATED") {
          this.onUnauthenticated(e.message);
          return;
        }
        this.set({ status: "reconnecting", problem: e.message });
      }
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      waitMs = Math.min(RECONNECT_MS_MAX, waitMs * 2);
    }
  }

  private onEvent(name: string, data: unknown): void {
    switch (name) {
      case "history":
        this.set({ history: (data as StreamSample[]).slice(-HISTORY_SAMPLES_MAX) });
        return;
      case "snapshot": {
        const snapshot = data as StreamSnapshot;
        const load: StreamSample["load"] = {};
        for (const m of snapshot.members) load[m.appliance] = [m.packetsPerSec, m.connections];
        const last = this.state.history[this.state.history.length - 1];
        const history = last !== undefined && last.atMs >= snapshot.atMs ? this.state.history : [...this.state.history, { atMs: snapshot.atMs, load }].slice(-HISTORY_SAMPLES_MAX);
        this.set({ status: "live", problem: null, snapshot, history });
        return;
      }
      case "events": {
        const bySeq = new Map<number, EventRecord>();
        for (const e of [...this.state.events, ...(data as EventRecord[])]) bySeq.set(e.seq ?? -1, e);
        const events = [...bySeq.values()].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0)).slice(-EVENTS_KEPT_MAX);
        this.set({ events });
        return;
      }
      case "unavailable":
        this.set({ status: "standby", problem: (data as { message: string }).message });
        return;
      default:
        return; // an event kind of a newer server: ignored
    }
  }
}

/** The live state, re-rendering the component at each change. */
export function useLive(live: Live): LiveState {
  const [state, setState] = useState(live.state);
  useEffect(() => live.subscribe(setState), [live]);
  return state;
}
