// The CI sweep: full-size simulator runs over a range of seeds, every fault the scenario
// generator draws (loss, duplication, reordering, partitions of the sync network, crashes at
// any moment, joins and drains during traffic). Split over files so the test runner spreads
// the 200 seeds across cores. A failing seed prints the command that replays it.

import { runSimulation } from "./simulator.js";

export interface SweepSummary {
  runs: number;
  failing: string[];
  crashes: number;
  crashesDuringFill: number;
  joins: number;
  drains: number;
  partitions: number;
  handshakes: number;
}

export function sweep(fromSeed: number, count: number): SweepSummary {
  const s: SweepSummary = { runs: 0, failing: [], crashes: 0, crashesDuringFill: 0, joins: 0, drains: 0, partitions: 0, handshakes: 0 };
  for (let seed = fromSeed; seed < fromSeed + count; seed++) {
    const r = runSimulation(seed);
    s.runs++;
    s.crashes += r.stats.crashes;
    s.crashesDuringFill += r.stats.crashesDuringFill;
    s.joins += r.stats.joins;
    s.drains += r.stats.drains;
    s.partitions += r.stats.partitions;
    s.handshakes += r.stats.handshakesCompleted;
    if (r.violationCount > 0) s.failing.push(`seed ${seed} (replay: tandem sim --seed ${seed}): ${r.violations.slice(0, 3).join(" | ")}`);
  }
  return s;
}
