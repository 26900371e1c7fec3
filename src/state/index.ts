export { FileStateStore } from './file-store.js';
export { RedisStateStore, redactUrl } from './redis-store.js';
export { ReplicaRecords } from './replica-records.js';
export { HibernationRecords } from './hibernation-records.js';
export { loadInstanceId } from './instance-id.js';
export { isGateway, StateDirLock } from './state-dir-lock.js';
export { writeFileAtomic } from './atomic-file.js';
export {
  StateError, StateLostError, type DesiredDeployment, type DesiredStateStore, type KeyClash, type ReplicaRecord, type RolloutCheck, type RolloutSpec, type RolloutStatus, type RolloutView, type StickySpec, type StoredApiKey, type StoredTraffic, type TrafficEvent, type TrafficWeights, type WindowFigures,
} from './types.js';
