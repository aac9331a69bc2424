import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EventQueue } from "./clock.js";

describe("EventQueue", () => {
  it("runs events in time order, ties in scheduling order", () => {
    const q = new EventQueue();
    const seen: string[] = [];
    q.at(5, "a", () => seen.push("a5"));
    q.at(1, "b", () => seen.push("b1"));
    q.at(5, "c", () => seen.push("c5"));
    q.at(3, "d", () => seen.push("d3"));
    q.at(1, "e", () => seen.push("e1"));
    q.runUntil(Infinity, 100);
    expect(seen).toEqual(["b1", "e1", "d3", "a5", "c5"]);
    expect(q.nowMs).toBe(5);
  });

  it("skips cancelled events and lets events schedule more at the same time", () => {
    const q = new EventQueue(10);
    const seen: number[] = [];
    const x = q.after(2, "x", () => seen.push(1));
    q.after(2, "y", () => {
      seen.push(2);
      q.after(0, "z", () => seen.push(3));
    });
    q.cancel(x);
    expect(q.runUntil(Infinity, 100)).toBe(2);
    expect(seen).toEqual([2, 3]);
    expect(q.executed).toBe(2);
  });

  it("stops at untilMs and advances the clock to it", () => {
    const q = new EventQueue();
    let ran = 0;
    q.at(10, "late", () => ran++);
    expect(q.runUntil(7, 100)).toBe(0);
    expect(q.nowMs).toBe(7);
    expect(ran).toBe(0);
    expect(() => q.at(6, "past", () => ran++)).toThrow(/past/);
  });

  it("bounds the number of events per run", () => {
    const q = new EventQueue();
    const tick = (): void => {
      q.after(1, "tick", tick);
    };
    tick();
    expect(q.runUntil(Infinity, 50)).toBe(50);
    expect(q.nowMs).toBe(50);
  });

  it("pops any schedule in (time, sequence) order (property, seed 7)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.boolean()), { maxLength: 200 }), (items) => {
        const q = new EventQueue();
        const out: [number, number][] = [];
        const events = items.map(([t], i) => q.at(t, "p", () => out.push([t, i])));
        items.forEach(([, cancel], i) => {
          if (cancel) q.cancel(events[i]!);
        });
        q.runUntil(Infinity, 1000);
        const expected = items
          .map(([t, cancel], i) => ({ t, i, cancel }))
          .filter((e) => !e.cancel)
          .sort((a, b) => a.t - b.t || a.i - b.i)
          .map((e) => [e.t, e.i]);
        expect(out).toEqual(expected);
      }),
      { seed: 7, numRuns: 200 },
    );
  });
});
