export { startTracing, type Tracing } from './provider.js';
export { RequestTrace, RequestTracer, type TracedExchange, type TracedHead } from './request-trace.js';
