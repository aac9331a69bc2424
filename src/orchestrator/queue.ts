// The command queue: every mutation of the control plane passes here, one at a time (like
// GoBGP's serialized operation loop). It is a synchronous state machine; the runtime does the
// waiting. The only asynchronous step, the durable store commit, happens BETWEEN prepare and
// confirm, outside the core:
//
//   runtime                                   core (this package)
//   -------                                   -------------------
//   ticket = cp.queue.enqueue({command, input, actor})      (bounded FIFO of waiting requests)
//   loop:  item = cp.queue.next()             null while a step is outstanding or none waits
//          step = cp.prepare(item.command, item.input, ctx)  computes the mutation; the model
//                                                            is NOT changed yet
//          try   { rev = await store.commit(step.mutation)   durable (audit + events included)
//                  cp.confirm(step, rev) }                  now the in-memory model changes
//          catch { cp.abort(step) }                         the model stays as it was
//          answer item's caller (ok / error)    ONLY after confirm: an acknowledged command is
//                                               durable; a refused command is audited too, so
//                                               its (audit-only) mutation is committed as well
//
// Invariants: at most one step is outstanding (prepared, neither confirmed nor aborted) — a
// second prepare is a programmer error (assert); steps are confirmed or aborted in the order
// prepared (there is only one); waiting requests are bounded (waitingMax) and a full queue
// refuses with TANDEM_BUSY (HTTP 503) instead of growing.

import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

export const QUEUE_WAITING_MAX_DEFAULT = 1024;

export interface QueuedCommand {
  /** Assigned by enqueue, increasing: the runtime maps it to the caller waiting for the answer. */
  ticket: number;
  command: string;
  input: unknown;
  actor: string;
}

export class CommandQueue {
  private readonly waiting: QueuedCommand[] = [];
  private head = 0;
  private outstandingSeq: number | null = null;
  private ticketNext = 1;
  private stepSeqNext = 1;
  /** Steps prepared, confirmed and aborted so far (for metrics). */
  prepared = 0;
  confirmed = 0;
  aborted = 0;

  constructor(readonly waitingMax: number = QUEUE_WAITING_MAX_DEFAULT) {
    assert(Number.isInteger(waitingMax) && waitingMax > 0, "waitingMax must be a positive integer");
  }

  get waitingCount(): number {
    return this.waiting.length - this.head;
  }

  /** True when no step is outstanding: prepare (or tick) may run. */
  get idle(): boolean {
    return this.outstandingSeq === null;
  }

  /** Seq of the outstanding step, or null. */
  get outstanding(): number | null {
    return this.outstandingSeq;
  }

  /** Adds a request; returns its ticket. Refuses with TANDEM_BUSY when waitingMax are waiting. */
  enqueue(request: { command: string; input: unknown; actor: string }): number {
    if (this.waitingCount >= this.waitingMax) {
      throw new TandemError(ErrorCode.BUSY, `the command queue is full (${this.waitingMax} waiting); try again shortly`, {
        waitingMax: this.waitingMax,
      });
    }
    const ticket = this.ticketNext++;
    this.waiting.push({ ticket, command: request.command, input: request.input, actor: request.actor });
    return ticket;
  }

  /** The next waiting request to prepare, or null (a step is outstanding, or nothing waits). */
  next(): QueuedCommand | null {
    if (this.outstandingSeq !== null || this.head === this.waiting.length) return null;
    const item = this.waiting[this.head++]!;
    // Compact now and then so the array does not grow with the history.
    if (this.head > 64 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }

  /** Marks a step outstanding and returns its seq. Asserts none is. */
  begin(): number {
    assert(this.outstandingSeq === null, `step ${this.outstandingSeq} is still outstanding: confirm or abort it before preparing another`);
    const seq = this.stepSeqNext++;
    this.outstandingSeq = seq;
    this.prepared++;
    return seq;
  }

  /** Ends the outstanding step (confirmed or aborted). */
  end(seq: number, confirmed: boolean): void {
    assert(this.outstandingSeq === seq, `step ${seq} is not the outstanding step (${this.outstandingSeq})`);
    this.outstandingSeq = null;
    if (confirmed) this.confirmed++;
    else this.aborted++;
  }
}
