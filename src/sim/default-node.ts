// The simulator's default member node: the real ClusterNode (src/hypersync/cluster-node.ts).
// Kept apart from simulator.ts so tests can run the simulator with other factories (sabotaged
// nodes) and so the contract between the two is checked in one place, at compile time.

import { ClusterNode } from "../hypersync/cluster-node.js";
import type { NodeFactory, SimNode } from "./member.js";

export const clusterNodeFactory: NodeFactory = (options, nowMs): SimNode => new ClusterNode(options, nowMs);
