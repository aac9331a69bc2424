// Live connection lookups (`tandem conns find`): the orchestrator holds no connection state, so
// it asks the group's members. A query is handed out with the members' next heartbeat answer;
// each member answers with the connections it holds that match (any role: owner, backup,
// fill), and the query resolves when every asked member answered or after a deadline, with
// whatever arrived (marked incomplete).
//
// Soft state of the daemon, never persisted. Bounds: at most QUERIES_MAX queries outstanding
// (TANDEM_BUSY beyond), at most MATCHES_MAX connections per member answer.

import { ErrorCode, TandemError } from "../stdx/errors.js";

export const QUERIES_MAX = 64;
export const MATCHES_MAX = 1000;
export const QUERY_TIMEOUT_MS_DEFAULT = 1500;

/** What members match against (absent fields match anything). */
export interface ConnectionFilter {
  /** Protocol number. */
  protocol?: number;
  src?: string;
  dst?: string;
  srcPort?: number;
  dstPort?: number;
}

/** One connection as a member reports it. */
export interface HeldConnection {
  bucket: number;
  role: string;
  protocol: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  /** Connection state name (e.g. ESTABLISHED). */
  state: string;
  /** Time until the connection expires if idle. */
  expiresInMs: number;
}

export interface QueryAnswer {
  /** Members that answered, with what they hold. */
  answers: Map<string, HeldConnection[]>;
  /** Members asked that did not answer in time. */
  missing: string[];
}

interface Query {
  id: number;
  group: string;
  filter: ConnectionFilter;
  expected: Set<string>;
  answers: Map<string, HeldConnection[]>;
  resolve(answer: QueryAnswer): void;
  timer: NodeJS.Timeout;
}

export class ConnectionQueries {
  private readonly queries = new Map<number, Query>();
  private idNext = 1;

  constructor(readonly timeoutMs: number = QUERY_TIMEOUT_MS_DEFAULT) {}

  /** Asks `members` of `group`; resolves when all answered or at the deadline. */
  ask(group: string, members: readonly string[], filter: ConnectionFilter): Promise<QueryAnswer> {
    if (members.length === 0) return Promise.resolve({ answers: new Map(), missing: [] });
    if (this.queries.size >= QUERIES_MAX) throw new TandemError(ErrorCode.BUSY, `too many connection lookups in progress (${QUERIES_MAX}); retry shortly`);
    const id = this.idNext++;
    return new Promise((resolve) => {
      const q: Query = {
        id,
        group,
        filter,
        expected: new Set(members),
        answers: new Map(),
        resolve,
        timer: setTimeout(() => this.finish(id), this.timeoutMs),
      };
      q.timer.unref();
      this.queries.set(id, q);
    });
  }

  /** The query a member should answer next (with its heartbeat answer), or null. */
  pendingFor(group: string, appliance: string): ({ id: number } & ConnectionFilter) | null {
    for (const q of this.queries.values()) {
      if (q.group === group && q.expected.has(appliance) && !q.answers.has(appliance)) return { id: q.id, ...q.filter };
    }
    return null;
  }

  /** A member's answer; unknown or finished queries are ignored (answered late). */
  answer(appliance: string, id: number, connections: HeldConnection[]): { accepted: boolean } {
    const q = this.queries.get(id);
    if (q === undefined || !q.expected.has(appliance)) return { accepted: false };
    q.answers.set(appliance, connections.slice(0, MATCHES_MAX));
    if (q.answers.size === q.expected.size) this.finish(id);
    return { accepted: true };
  }

  private finish(id: number): void {
    const q = this.queries.get(id);
    if (q === undefined) return;
    clearTimeout(q.timer);
    this.queries.delete(id);
    q.resolve({ answers: q.answers, missing: [...q.expected].filter((m) => !q.answers.has(m)).sort() });
  }

  /** Resolves everything outstanding (shutdown). */
  close(): void {
    for (const id of [...this.queries.keys()]) this.finish(id);
  }
}
