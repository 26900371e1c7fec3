// A worker thread's OpenTelemetry SDK: a tracer provider exporting its spans itself, in
// batches, over OTLP/HTTP (protobuf). Each worker exports its own: spans never cross to
// the main thread (a structured clone per batch and a hop the BatchSpanProcessor already
// saves), and a worker stopping flushes its own.
//
// sdk-trace-base and resources rather than sdk-node's NodeSDK: NodeSDK registers a global
// AsyncLocalStorage context manager (a cost on every async step of the thread, which the
// data plane, passing contexts explicitly, has no use for), loads instrumentations and
// reads OTEL_* variables itself, where the control plane has already resolved them with
// the config file (config/otel-env.ts). The batch processor still honours OTEL_BSP_*.

import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config/index.js';
import { RequestTracer } from './request-trace.js';

export interface Tracing {
  readonly tracer: RequestTracer;
  /** Exports the spans still buffered, then stops; gives up after `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** `warn`: where the SDK's own errors go (an unreachable collector, a refused export). */
export function startTracing(settings: TracingConfig, warn: (message: string) => void): Tracing {
  const say = (...args: unknown[]): void => warn(args.map(String).join(' '));
  const logger: DiagLogger = { error: say, warn: say, info: () => {}, debug: () => {}, verbose: () => {} };
  diag.setLogger(logger, DiagLogLevel.WARN);
  const resource = defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.service_name }));
  const ratio = new TraceIdRatioBasedSampler(settings.sample_ratio);
  const provider = new BasicTracerProvider({
    resource,
    sampler: settings.parent_based ? new ParentBasedSampler({ root: ratio }) : ratio,
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.endpoint, headers: { ...settings.headers } }))],
  });
  return {
    tracer: new RequestTracer(provider.getTracer('sluice')),
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([provider.shutdown().catch((err: unknown) => warn(`tracing: shutdown failed: ${String(err)}`)), timeout]);
      clearTimeout(timer);
    },
  };
}
