import { describe, expect, it } from "vitest";
import { AssertionError } from "../stdx/assert.js";
import { ErrorCode } from "../stdx/errors.js";
import { CommandQueue } from "./queue.js";

describe("CommandQueue", () => {
  it("hands out one request at a time, in order, only while no step is outstanding", () => {
    const q = new CommandQueue(4);
    const t1 = q.enqueue({ command: "a", input: 1, actor: "x" });
    const t2 = q.enqueue({ command: "b", input: 2, actor: "y" });
    expect(t2).toBe(t1 + 1);
    expect(q.next()).toMatchObject({ ticket: t1, command: "a" });
    const seq = q.begin();
    expect(q.idle).toBe(false);
    expect(q.next()).toBeNull(); // a step is outstanding
    expect(() => q.begin()).toThrow(AssertionError);
    q.end(seq, true);
    expect(q.next()).toMatchObject({ ticket: t2, command: "b" });
    expect(q.next()).toBeNull();
    expect(q.waitingCount).toBe(0);
  });

  it("refuses with TANDEM_BUSY when full", () => {
    const q = new CommandQueue(2);
    q.enqueue({ command: "a", input: null, actor: "x" });
    q.enqueue({ command: "a", input: null, actor: "x" });
    expect(() => q.enqueue({ command: "a", input: null, actor: "x" })).toThrow(expect.objectContaining({ code: ErrorCode.BUSY }));
    q.next();
    q.enqueue({ command: "a", input: null, actor: "x" });
    expect(q.waitingCount).toBe(2);
  });

  it("asserts that the step ended is the outstanding one and counts outcomes", () => {
    const q = new CommandQueue();
    const a = q.begin();
    expect(() => q.end(a + 1, true)).toThrow(AssertionError);
    q.end(a, false);
    expect(() => q.end(a, false)).toThrow(AssertionError);
    q.end(q.begin(), true);
    expect({ prepared: q.prepared, confirmed: q.confirmed, aborted: q.aborted }).toEqual({ prepared: 2, confirmed: 1, aborted: 1 });
  });

  it("stays bounded over a long history", () => {
    const q = new CommandQueue(8);
    let wrong = 0;
    for (let i = 0; i < 10_000; i++) {
      q.enqueue({ command: "c", input: i, actor: "x" });
      if (q.next()!.input !== i) wrong++;
    }
    expect(wrong).toBe(0);
    expect(q.waitingCount).toBe(0);
  });
});
