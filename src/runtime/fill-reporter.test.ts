// Fill reports: one in flight, failures retried, and early fills (reported under an epoch
// older than the one the orchestrator awaits) reported again once the member runs it.

import { describe, expect, it } from "vitest";
import { FillReporter } from "./fill-reporter.js";

describe("FillReporter", () => {
  it("sends one report at a time and retries a failed one", () => {
    const f = new FillReporter();
    f.add([3, 1]);
    const first = f.take(5)!;
    expect(first).toEqual({ epoch: 5, buckets: [1, 3] });
    f.add([2]);
    expect(f.take(5)).toBeNull(); // one in flight
    f.failed(first);
    expect(f.take(5)).toEqual({ epoch: 5, buckets: [1, 2, 3] });
  });

  it("reports early fills again under the awaited epoch once the member runs it", () => {
    const f = new FillReporter();
    // A bulk reached this member while it still ran epoch 7; the orchestrator awaits 8.
    f.add([10, 11]);
    const early = f.take(7)!;
    f.answered(early, { accepted: 0, complete: false, progress: 0.99, awaitingEpoch: 8 });
    expect(f.take(7)).toBeNull(); // not before the member runs 8
    const again = f.take(8)!;
    expect(again).toEqual({ epoch: 8, buckets: [10, 11] });
    expect(f.rereported).toBe(2);
    // Accepted this time: nothing more.
    f.answered(again, { accepted: 2, complete: true, progress: 1, awaitingEpoch: 8 });
    expect(f.take(8)).toBeNull();
  });

  it("keeps nothing for an answer under the same or an older awaited epoch, or from an older orchestrator", () => {
    const f = new FillReporter();
    f.add([1]);
    f.answered(f.take(8)!, { accepted: 0, awaitingEpoch: 8 }); // refused for another reason (not expected of this member)
    f.add([2]);
    f.answered(f.take(8)!, {}); // no awaitingEpoch
    expect(f.take(9)).toBeNull();
    expect(f.rereported).toBe(0);
  });

  it("forgets everything with a new node, and ignores answers to reports made before the reset", () => {
    const f = new FillReporter();
    f.add([1]);
    const old = f.take(3)!;
    f.reset();
    f.add([2]);
    const fresh = f.take(1)!;
    f.answered(old, { accepted: 0, awaitingEpoch: 4 });
    f.failed(old);
    expect(f.busy).toBe(true); // the fresh report is still in flight
    f.answered(fresh, { accepted: 1, awaitingEpoch: 1 });
    expect(f.take(9)).toBeNull();
  });
});
