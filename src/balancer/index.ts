export { pickReplica, pickWeighted, cumulativeWeights, type Balanced } from './replica-pick.js';
export { BreakerBoard, BREAKER_DEFAULTS, Admission, BreakerState, type BreakerOptions } from './breaker.js';
export { DeploymentCounters, tryAcquire } from './admission.js';
