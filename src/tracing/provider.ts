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

import { createNoopMeter, diag, DiagLogLevel, type Attributes, type DiagLogger, type Meter, type MeterProvider } from '@opentelemetry/api';
import { ExportResultCode, setGlobalErrorHandler, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type BufferConfig, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config/index.js';
import type { SpanCounts } from '../telemetry/index.js';
import { waitAtMost } from '../wait-at-most.js';
import { RequestTracer } from './request-trace.js';

export interface Tracing {
  readonly tracer: RequestTracer;
  readonly spans: SpanCounts;
  /** Exports the spans still buffered, then stops; gives up after `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** An export of one batch behind the OTLP dependency breaker (dependencies/): rejects at once while the collector is failing. */
export interface ExportGuard {
  fire(spans: ReadableSpan[]): Promise<ExportResult>;
}

/** An SDK problem as log fields: its own message, the error (as every logged error: an object), or both. */
export interface TracingProblem {
  readonly detail?: string;
  readonly err?: unknown;
}

/**
 * `warn`: where the SDK's own problems go (an unreachable collector, a refused export);
 * `guard`: puts the exporter's calls behind a breaker (config dependencies.otlp.export).
 */
export function startTracing(settings: TracingConfig, warn: (problem: TracingProblem) => void, guard: (exportBatch: (spans: ReadableSpan[]) => Promise<ExportResult>) => ExportGuard): Tracing {
  const say = (...args: unknown[]): void => {
    const err = args.find((a) => a instanceof Error);
    const detail = args.filter((a) => a !== err).map(String).join(' ');
    warn(err === undefined ? { detail } : detail === '' ? { err } : { detail, err });
  };
  const logger: DiagLogger = { error: say, warn: say, info: () => {}, debug: () => {}, verbose: () => {} };
  diag.setLogger(logger, DiagLogLevel.WARN);
  // A failed export reaches the SDK's global error handler, whose default flattens the
  // error into a JSON string for diag: the error itself is what the log wants.
  setGlobalErrorHandler((ex) => warn(typeof ex === 'string' ? { detail: ex } : { err: ex }));
  const resource = defaultResource()
    .merge(detectResources({ detectors: [envDetector] }))
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.service_name }));
  const ratio = new TraceIdRatioBasedSampler(settings.sample_ratio);
  const spans: SpanCounts = { exported: 0, dropped: 0, failed: 0 };
  // sdk-trace-base's BatchSpanProcessor hands its options to sdk-trace's, which takes this one; its own type does not name it.
  const processorOptions: BufferConfig & { selfObsMeterProvider: MeterProvider } = { selfObsMeterProvider: spanCounter(spans) };
  const provider = new BasicTracerProvider({
    resource,
    sampler: settings.parent_based ? new ParentBasedSampler({ root: ratio }) : ratio,
    spanProcessors: [new BatchSpanProcessor(new GuardedExporter(new OTLPTraceExporter({ url: settings.endpoint, headers: { ...settings.headers } }), guard), processorOptions)],
  });
  return {
    tracer: new RequestTracer(provider.getTracer('sluice')),
    spans,
    async shutdown(timeoutMs) {
      await waitAtMost(provider.shutdown().catch((err: unknown) => warn({ detail: 'shutdown failed', err })), timeoutMs);
    },
  };
}

// The batch processor's one counter of its own telemetry (semantic conventions'
// otel.sdk.processor.span.processed): a batch exported, or not with `error.type` (queue_full
// for spans it dropped). The SDK has no other way to say how many it dropped; the option is
// marked experimental, so the pinned version's behaviour is what test/telemetry/trace-spans-dropped checks.
const SPANS_PROCESSED = 'otel.sdk.processor.span.processed';

function spanCounter(counts: SpanCounts): MeterProvider {
  const noop = createNoopMeter();
  const meter: Meter = Object.assign(Object.create(noop) as Meter, {
    createCounter: ((name: string, options) => {
      if (name !== SPANS_PROCESSED) return noop.createCounter(name, options);
      return {
        add(n: number, attributes?: Attributes): void {
          const error = attributes?.['error.type'];
          if (error === undefined) counts.exported += n;
          else if (error === 'queue_full') counts.dropped += n;
          else counts.failed += n;
        },
      };
    }) as Meter['createCounter'],
  });
  return { getMeter: () => meter };
}

/**
 * The OTLP exporter behind a breaker: a batch whose export fails (after the exporter's own
 * retries) counts against the collector; while the breaker is open, batches are dropped at
 * once instead of each waiting through those retries.
 */
class GuardedExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #guard: ExportGuard;

  constructor(inner: SpanExporter, guard: (exportBatch: (spans: ReadableSpan[]) => Promise<ExportResult>) => ExportGuard) {
    this.#inner = inner;
    this.#guard = guard((spans) => new Promise((resolve, reject) => {
      inner.export(spans, (result) => (result.code === ExportResultCode.SUCCESS ? resolve(result) : reject(result.error ?? new Error('the OTLP export failed'))));
    }));
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#guard.fire(spans).then(done, (error: Error) => done({ code: ExportResultCode.FAILED, error }));
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}
