import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backupOf, createEpochTable, ownerOf } from "../distribution/epoch.js";
import { NO_MEMBER } from "../distribution/rendezvous.js";
import { planFailure, planJoin } from "../distribution/transition.js";
import type { SecurityGroup } from "./model.js";
import { decodeRoles, encodeRoles, FillProgress, fillMapOf, isFullyProtected, planOf, rescueOf, routingTableOf, tableRecordOf, epochTableOfRecord } from "./transitions.js";

const SEED = 42;
const B = 256;
const members = (ids: string[]) => ids.map((id) => ({ id, weight: 4 }));

function groupWith(transition: SecurityGroup["transition"]): SecurityGroup {
  return {
    name: "g",
    interfaces: [],
    routes: [],
    policy: { rules: [] },
    policyRevision: 1,
    weights: {},
    weightsSource: "cores",
    autoscale: { enabled: false, minMembers: 1, maxMembers: 4, cpuHighPct: 80, cpuLowPct: 20, connectionsPerMemberHigh: 10, cooldownMs: 0, priority: 0 },
    allowMixedModels: false,
    upgrade: null,
    seed: 7,
    bucketCount: B,
    epoch: 5,
    tableMembers: [],
    transition,
    transitionSeq: 1,
    createdAt: "2025-01-01T00:00:00.000Z",
  };
}

describe("table records", () => {
  it(`encode and decode owner/backup arrays exactly (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1, max: 4095 }), { minLength: 1, maxLength: 300 }), (values) => {
        const roles = Int16Array.from(values);
        expect(decodeRoles(encodeRoles(roles), roles.length)).toEqual(roles);
        expect(decodeRoles(encodeRoles(roles), roles.length + 1)).toBeNull();
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it("a rendezvous record rebuilds its table; an encoded one keeps its arrays", () => {
    const t = createEpochTable(members(["a", "b", "c"]), 7, { bucketCount: B, epoch: 3 });
    const plain = JSON.parse(JSON.stringify(tableRecordOf(t, true)));
    expect(plain.owner).toBeNull();
    expect(epochTableOfRecord(plain, 7, B)).toEqual(t);
    const { table } = rescueOf(planFailure(t, "a").phases[0]!.table, "b");
    const encoded = JSON.parse(JSON.stringify(tableRecordOf(table, false)));
    expect(typeof encoded.owner).toBe("string");
    expect(epochTableOfRecord(encoded, 7, B)).toEqual(table);
  });
});

describe("plans from records", () => {
  it("recomputes the same plan a record was started with", () => {
    const from = createEpochTable(members(["a", "b", "c"]), 7, { bucketCount: B, epoch: 5 });
    const record = {
      seq: 1,
      kind: "join" as const,
      from: JSON.parse(JSON.stringify(tableRecordOf(from, true))),
      target: members(["a", "b", "c", "d"]),
      dead: null,
      joining: [{ appliance: "d", revert: "pool" as const }],
      leaving: [],
      consumed: [],
      weightsAfter: {},
      lostBuckets: 0,
      startedAt: "x",
    };
    const plan = planOf(groupWith(record));
    expect(plan).toEqual(planJoin(from, { id: "d", weight: 4 }));
    expect(routingTableOf(plan).epoch).toBe(5);
    const fills = fillMapOf(plan.phases[0]!);
    for (const targets of fills.values()) expect(targets).toEqual(["d"]);
  });

  it("routes the promote table while a failure's reprotect fills", () => {
    const from = createEpochTable(members(["a", "b", "c"]), 7, { bucketCount: B, epoch: 5 });
    const plan = planFailure(from, "c");
    expect(routingTableOf(plan)).toBe(plan.phases[0]!.table);
    expect(fillMapOf(plan.phases[1]!).size).toBe(plan.phases[1]!.moves.length);
  });
});

describe("FillProgress", () => {
  it("confirms expected pairs once, ignores stale epochs and strangers", () => {
    const from = createEpochTable(members(["a", "b", "c"]), 7, { bucketCount: B, epoch: 5 });
    const plan = planJoin(from, { id: "d", weight: 4 });
    const fp = new FillProgress("g", 1, plan, 100);
    const buckets = [...fillMapOf(plan.phases[0]!).keys()];
    expect(fp.total).toBe(buckets.length);
    expect(fp.confirm("d", 4, buckets)).toBe(0);
    expect(fp.confirm("a", 5, buckets)).toBe(0);
    expect(fp.confirm("d", 5, [buckets[0]!, buckets[0]!, -1, B + 3])).toBe(1);
    expect(fp.outstandingOf("d")).toEqual(buckets.slice(1));
    expect(fp.confirm("d", 5, buckets)).toBe(buckets.length - 1);
    expect(fp.complete).toBe(true);
    expect(fp.progress).toBe(1);
    expect(fp.outstandingPerMember()).toEqual([{ member: "d", outstanding: 0, expected: buckets.length }]);
  });
});

describe("rescueOf", () => {
  it(`keeps every surviving copy after a second failure (seed ${SEED})`, () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 7 }), fc.nat(), fc.nat(), (n, i, j) => {
        const ids = Array.from({ length: n }, (_, k) => `m${k}`);
        const first = ids[i % n]!;
        const rest = ids.filter((id) => id !== first);
        const second = rest[j % rest.length]!;
        const promote = planFailure(createEpochTable(members(ids), 7, { bucketCount: B, epoch: 1 }), first).phases[0]!.table;
        expect(isFullyProtected(promote)).toBe(false);
        const { table, survivors, lostBuckets } = rescueOf(promote, second);
        expect(table.epoch).toBe(promote.epoch + 1);
        expect(survivors.map((m) => m.id)).toEqual(rest.filter((id) => id !== second));
        expect(table.table.members).not.toContain(second);
        let lost = 0;
        const wrong: number[] = [];
        for (let b = 0; b < B; b++) {
          const o = ownerOf(promote, b);
          const k = backupOf(promote, b);
          const survivor = o !== second ? o : k;
          if (survivor === null) lost++;
          else if (ownerOf(table, b) !== survivor) wrong.push(b);
          if (table.table.owner[b] === NO_MEMBER || backupOf(table, b) === ownerOf(table, b)) wrong.push(b);
        }
        expect(wrong).toEqual([]);
        expect(lostBuckets).toBe(lost);
      }),
      { seed: SEED, numRuns: 40 },
    );
  });
});
