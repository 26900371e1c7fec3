// Door of the ports room: port allocation and model-server process supervision. Control
// plane only; the data plane must not import this folder.

export { PortAllocator, PORT_RANGE_DEFAULTS, type PortAllocatorOptions } from './allocator.js';
export {
  ReplicaProcess,
  type AdoptOptions,
  type FailureReason,
  type ReplicaEvents,
  type ReplicaState,
  type StateInfo,
} from './supervisor.js';
export { REPLICA_DEFAULTS, type ReplicaProcessOptions, type RestartPolicy } from './replica-options.js';
export type { LogLine, LogStream } from './log-buffer.js';
export { removeDeploymentLogs, removeOtherLogs, removeReplicaLogs, replicaFileName } from './log-files.js';
export { launchFingerprint } from './fingerprint.js';
export { killGroup, readStatSync, recordedProcess, startTicksOf, type KillResult } from './process-group.js';
export {
  checkModel,
  checkVersion,
  launchPlan,
  simServedModel,
  type CommandSpec,
  type LaunchContext,
  type LaunchPlan,
  type LlamacppSpec,
  type MlflowSpec,
  type OllamaSpec,
  type ProcessPlan,
  type RemotePlan,
  type RemoteSpec,
  type ReplicaSpec,
  type RuntimeName,
  type SimSpec,
} from './runtimes.js';
