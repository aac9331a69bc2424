// What a member tells the orchestrator about the buckets it has been filled with, and when.
//
// A fill report names the epoch the member runs. The orchestrator confirms fills only under the
// epoch its running phase routes by, and ignores others as stale. But an owner may start a bulk
// transfer as soon as IT installs the next phase, while the receiving member still runs the
// previous epoch: the receiver keeps the early copy (ClusterNode does) and reports it with its
// old epoch, which is refused. Reported once and refused, such a fill was never confirmed, and
// the transition waited for the fill timeout (seen as a re-protection stuck at 99% for 60 s
// under load). So the orchestrator's answer says which epoch it awaits fills under, and buckets
// reported under an older epoch are kept and reported again once the member runs that epoch.
//
// Invariants: at most one report in flight; a bucket is in at most one of pending, in flight,
// early; a failed report's buckets are reported again (same node); everything is dropped with
// the node (reset) — another node's fills are its own.

export interface FillReport {
  epoch: number;
  buckets: number[];
}

/** The part of the orchestrator's answer this needs (older orchestrators send no awaitingEpoch). */
export interface FillAnswer {
  accepted?: number;
  awaitingEpoch?: number | null;
}

export class FillReporter {
  private readonly pending = new Set<number>();
  private readonly early = new Set<number>();
  private earlyEpoch = 0;
  private inFlight: FillReport | null = null;
  /** Buckets reported again after their first report was under an older epoch than awaited. */
  rereported = 0;

  /** Buckets the node now holds completely. */
  add(buckets: Iterable<number>): void {
    for (const b of buckets) this.pending.add(b);
  }

  /** The next report to send when none is in flight (epoch: what the node runs now); null: nothing to send. */
  take(epoch: number): FillReport | null {
    if (this.early.size > 0 && epoch >= this.earlyEpoch) {
      for (const b of this.early) this.pending.add(b);
      this.rereported += this.early.size;
      this.early.clear();
    }
    if (this.inFlight !== null || this.pending.size === 0) return null;
    const report = { epoch, buckets: [...this.pending].sort((a, b) => a - b) };
    this.pending.clear();
    this.inFlight = report;
    return report;
  }

  /** The orchestrator answered `report` (ignored when it is not the one in flight: a reset came between). */
  answered(report: FillReport, answer: unknown): void {
    if (report !== this.inFlight) return;
    this.inFlight = null;
    const a = (typeof answer === "object" && answer !== null ? answer : {}) as FillAnswer;
    const awaiting = typeof a.awaitingEpoch === "number" ? a.awaitingEpoch : null;
    if (awaiting !== null && awaiting > report.epoch) {
      // Early fills: reported before this member ran the epoch they belong to.
      for (const b of report.buckets) this.early.add(b);
      this.earlyEpoch = Math.max(this.earlyEpoch, awaiting);
    }
  }

  /** `report` failed (network, orchestrator busy): its buckets go again (unless a reset came between). */
  failed(report: FillReport): void {
    if (report !== this.inFlight) return;
    this.inFlight = null;
    for (const b of report.buckets) this.pending.add(b);
  }

  /** A new node: its predecessor's fills are not its own. */
  reset(): void {
    this.pending.clear();
    this.early.clear();
    this.earlyEpoch = 0;
    this.inFlight = null;
  }

  get busy(): boolean {
    return this.inFlight !== null;
  }
}
