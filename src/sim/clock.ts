// The simulator's virtual clock and event queue. Nothing in the simulator reads real time:
// every actor schedules callbacks here, and the run loop pops them in (timeMs, sequence)
// order, so two events at the same virtual millisecond run in the order they were
// scheduled, on every machine and every run. That total order is what makes a seed replay
// exactly.
//
// Invariants kept:
// - nowMs never decreases; an event is never scheduled in the past.
// - Pop order is by (timeMs, sequence) with sequence strictly increasing per schedule() call.
// - A cancelled event is skipped when popped (lazy deletion), never run.
//
//   heap (array, 1-based parent = (i - 1) >> 1):      [ (t=3,#7) ]
//                                                      /          \
//                                             [ (t=3,#9) ]   [ (t=5,#8) ]

import { assert } from "../stdx/assert.js";

export interface SimEvent {
  readonly timeMs: number;
  readonly sequence: number;
  /** Short label for traces and debugging. */
  readonly label: string;
  run: (() => void) | null;
}

export class EventQueue {
  nowMs: number;
  private readonly heap: SimEvent[] = [];
  private sequence = 0;
  /** Events run so far (cancelled ones not counted). */
  executed = 0;

  constructor(startMs = 0) {
    assert(Number.isFinite(startMs) && startMs >= 0, "start time must be a finite non-negative number");
    this.nowMs = startMs;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Runs `run` at absolute virtual time `timeMs` (>= now). */
  at(timeMs: number, label: string, run: () => void): SimEvent {
    assert(Number.isFinite(timeMs), "event time must be finite");
    assert(timeMs >= this.nowMs, "event scheduled in the past");
    const event: SimEvent = { timeMs, sequence: this.sequence++, label, run };
    this.push(event);
    return event;
  }

  /** Runs `run` after `delayMs` (>= 0) of virtual time. */
  after(delayMs: number, label: string, run: () => void): SimEvent {
    assert(delayMs >= 0, "negative delay");
    return this.at(this.nowMs + delayMs, label, run);
  }

  cancel(event: SimEvent): void {
    event.run = null;
  }

  /** Time of the earliest pending event (cancelled ones included), or Infinity. */
  peekTimeMs(): number {
    return this.heap.length === 0 ? Infinity : this.heap[0]!.timeMs;
  }

  /**
   * Pops and runs the next live event. Returns false when the queue is empty or the next
   * event lies beyond `untilMs` (the clock then advances to untilMs when finite).
   */
  step(untilMs = Infinity): boolean {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (top.timeMs > untilMs) break;
      this.pop();
      if (top.run === null) continue;
      assert(top.timeMs >= this.nowMs, "clock went backwards");
      this.nowMs = top.timeMs;
      const run = top.run;
      top.run = null;
      this.executed++;
      run();
      return true;
    }
    if (Number.isFinite(untilMs) && untilMs > this.nowMs) this.nowMs = untilMs;
    return false;
  }

  /** Runs events up to and including `untilMs`, at most `eventsMax` of them; returns how many ran. */
  runUntil(untilMs: number, eventsMax: number): number {
    let ran = 0;
    while (ran < eventsMax && this.step(untilMs)) ran++;
    return ran;
  }

  private push(event: SimEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(event, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = event;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let i = 0;
    const n = heap.length;
    while (true) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && earlier(heap[right]!, heap[left]!) ? right : left;
      if (!earlier(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
  }
}

function earlier(a: SimEvent, b: SimEvent): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.sequence < b.sequence);
}
