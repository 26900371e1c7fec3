// The control plane's door. The admin API takes only the facade's types from here; the
// composition root (src/serve.ts) takes the parts it wires together.
export type { ApiKeyControl, ControlPlane, DeploymentControl, ManagedDeployment, ManagedReplica, TrafficControl } from './facade.js';
export { KeyRegistry, type ActiveKey } from './api-keys.js';
export { DataPlane } from './dataplane.js';
export { DeploymentManager, type Deployment, type DeploymentEvent, type Replica } from './deployments.js';
export { Autoscaler } from './autoscaler.js';
export { costUsd, deploymentCost, RemovedCosts } from './costs.js';
export { type BucketAssigner, BucketSlots, buildRouteSnapshot } from './route-snapshot.js';
export { IndexAllocator, MAX_REPLICA_SLOTS, SlotAllocator } from './slots.js';
export { TrafficRegistry } from './traffic.js';
export type { VersionInfo } from './model-versions.js';
export { RolloutCounts } from './rollout-counts.js';
export { ReplicaSharing } from './shared-replicas.js';
export { CertificateReloader, hstsValue, isProblem, readCertificatePair, type CertificatePair, type TlsPort } from './tls.js';
