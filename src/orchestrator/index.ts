// Public surface of the orchestrator's control plane: the ControlPlane (prepare / confirm /
// abort / tick, heartbeats, fill reports, views), the command set, the model types and the
// pieces the simulator and the runtime reuse (health tracking, the command queue, transitions,
// the autoscaler's decision core).
// Everything here is synchronous and free of I/O.

export {
  ControlPlane,
  ControlPlaneView,
  type ApplianceView,
  type ChangesView,
  type ControlPlaneOptions,
  type Distribution,
  type FillAnswer,
  type FillReport,
  type FlowLocation,
  type FlowQuery,
  type HeartbeatReport,
  type LoadFigures,
  type MemberView,
  type PreparedStep,
  type TableSide,
  type TransitionView,
} from "./orchestrator.js";
export {
  groupSummary,
  isCommandName,
  mutationBetween,
  OPERATOR_COMMANDS,
  planApply,
  runCommand,
  SYSTEM_COMMANDS,
  type ApplyPlan,
  type CommandContext,
  type CommandEnv,
  type CommandName,
  type CommandOutcome,
  type Effect,
  type Observations,
  type OperatorCommand,
  type SoftUpdate,
} from "./commands.js";
export {
  Autoscaler,
  windowMsOf,
  type AutoscaleAction,
  type AutoscaleDecision,
  type AutoscaleGroupInput,
  type AutoscalerOptions,
  type LoadSample,
  type SpareAppliance,
} from "./autoscaler.js";
export {
  CapacityEstimator,
  CapacityWeigher,
  capacityGroupInputs,
  proposeWeights,
  type CapacityDecision,
  type CapacityEstimate,
  type CapacityGroupInput,
  type WeightsProposal,
} from "./capacity-weights.js";
export { CommandQueue, QUEUE_WAITING_MAX_DEFAULT, type QueuedCommand } from "./queue.js";
export { FlapDamper, HEALTH_DEFAULTS, HealthTracker, resolveHealthOptions, type DampingOptions, type HealthInput, type HealthOptions } from "./health.js";
export {
  awaitedPhaseOf,
  currentTableOf,
  fillMapOf,
  FillProgress,
  planOf,
  rescueOf,
  routingTableOf,
  settledTableOf,
  TRANSITION_DEFAULTS,
} from "./transitions.js";
export { documentsOf, MODEL_COLLECTIONS, modelFromDocuments, modelFromSnapshot, type ModelCollection } from "./documents.js";
export {
  AUTOSCALE_DEFAULTS,
  AUTOSCALE_PRIORITY_MAX,
  AUTOSCALE_PRIORITY_MIN,
  checkModelInvariants,
  consistencyProblem,
  emptyModel,
  MEMBER_STATES,
  ORCHESTRATOR_LIMITS,
  resolveAutoscale,
  resolveInterfaces,
  WATCHED_STATES,
  type Appliance,
  type AssignedState,
  type AutoscaleInput,
  type AutoscaleRules,
  type ChangeKind,
  type ControlModel,
  type Member,
  type MemberState,
  type PendingChange,
  type SecurityGroup,
  type SgInterface,
  type SgInterfaceInput,
  type TableRecord,
  type TransitionKind,
  type TransitionRecord,
  type UpgradeState,
  type WeightsSource,
} from "./model.js";
export { MemoryHarness, MemoryStore } from "./memory-harness.js";
