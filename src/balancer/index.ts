export { NoReplica, type Balanced, type Balancer, type PickContext } from './balancer.js';
export { LeastOutstanding } from './least-outstanding.js';
export { ReplicaQueue, type QueuedRequest, type QueueOwner } from './replica-queue.js';
export { Fifo } from './fifo.js';
export { pickWeighted, cumulativeWeights, pickSticky, stickyHash } from './weighted.js';
export { BreakerBoard, Admission, BreakerState, type BreakerOptions } from './breaker.js';
export { DeploymentCounters, tryAcquire } from './admission.js';
