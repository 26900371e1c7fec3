// Door of the health room: readiness probes of the replicas sluice starts, active health
// checks of the ones it does not (remote), and what a ready server says it serves.
// Control plane only.

export { endpointOf, probe } from './readiness.js';
export { ActiveHealthCheck, type HealthCheckView, type HealthStatus } from './active-check.js';
export { LoadScrape, parseLoadMetrics } from './load-scrape.js';
export { reportedModel } from './reported-model.js';
