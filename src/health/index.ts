// Door of the health room: readiness probes of model-server replicas. Control plane only.

export { probe } from './readiness.js';
