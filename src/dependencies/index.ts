// The dependencies room's door: circuit breakers around the gateway's calls to Redis, the
// MLflow registry and the like (not the replicas' breakers: balancer/).
export { BreakerState, type BreakerLog, CircuitOpenError, DependencyBreaker, DependencyBreakers, guarded, worseState, type BreakerSnapshot, type CallBreaker } from './breaker.js';
export { DependencyUnavailableError } from './unavailable.js';
export { watchConnection } from './redis-connection.js';
