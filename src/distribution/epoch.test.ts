// Epoch table helpers: owner/backup lookup, per-member buckets and load.

import { describe, expect, it } from "vitest";
import {
  backupOf,
  bucketsBackedUpBy,
  bucketsOwnedBy,
  createEpochTable,
  loadPerMember,
  ownerOf,
  unprotectedCount,
} from "./epoch.js";
import { buildBucketTable } from "./rendezvous.js";

const members = [
  { id: "gw-c", weight: 4 },
  { id: "gw-a", weight: 4 },
  { id: "gw-b", weight: 8 },
];

describe("EpochTable", () => {
  it("defaults to epoch 1 and the automatic bucket count", () => {
    const t = createEpochTable(members, 9);
    expect(t.epoch).toBe(1);
    expect(t.seed).toBe(9);
    expect(t.table.bucketCount).toBe(65536);
    expect(t.table.members).toEqual(["gw-a", "gw-b", "gw-c"]);
    const fresh = buildBucketTable(members, 65536, 9);
    // One comparison of the bytes: expect().toEqual walks 65,536 elements slowly.
    expect(Buffer.from(t.table.owner.buffer).equals(Buffer.from(fresh.owner.buffer))).toBe(true);
  });

  it("answers owner, backup and per-member buckets consistently (seed 5)", () => {
    const t = createEpochTable(members, 5, { bucketCount: 4096, epoch: 7 });
    expect(t.epoch).toBe(7);
    let owned = 0;
    let backed = 0;
    let wrong = 0;
    for (const m of t.table.members) {
      for (const b of bucketsOwnedBy(t, m)) if (ownerOf(t, b) !== m) wrong++;
      for (const b of bucketsBackedUpBy(t, m)) if (backupOf(t, b) !== m) wrong++;
      owned += bucketsOwnedBy(t, m).length;
      backed += bucketsBackedUpBy(t, m).length;
    }
    expect(wrong).toBe(0);
    expect(owned).toBe(4096);
    expect(backed).toBe(4096);
    expect(bucketsOwnedBy(t, "nobody")).toEqual([]);
    expect(unprotectedCount(t)).toBe(0);
  });

  it("reports load per member against the weight share (seed 6)", () => {
    const t = createEpochTable(members, 6);
    const load = loadPerMember(t);
    expect(load.map((l) => l.id)).toEqual(["gw-a", "gw-b", "gw-c"]);
    expect(load.reduce((s, l) => s + l.owned, 0)).toBe(65536);
    expect(load.reduce((s, l) => s + l.backups, 0)).toBe(65536);
    for (const l of load) expect(Math.abs(l.ownedShare / l.weightShare - 1)).toBeLessThan(0.03);
    expect(load[1]!.weightShare).toBe(0.5);
  });

  it("a single member owns everything and has no backup", () => {
    const t = createEpochTable([{ id: "solo", weight: 1 }], 1, { bucketCount: 1024 });
    expect(ownerOf(t, 0)).toBe("solo");
    expect(backupOf(t, 1023)).toBeNull();
    expect(unprotectedCount(t)).toBe(1024);
    expect(() => ownerOf(t, 1024)).toThrow();
  });
});
