// The span of one request through a worker's data plane, and what is recorded on it: the
// wait for a replica (queue, cold start), retries, fallbacks, a cache hit, and, from the
// response, the GenAI attributes. Contexts are passed explicitly (no context manager):
// the request path is callbacks, not an async call chain.

import { performance } from 'node:perf_hooks';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TextMapGetter, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions';
import { bytesAsText } from '../byte-string.js';
import { ollamaApi } from '../genai-endpoints.js';
import type { TokenCounter } from '../policy/index.js';
import {
  GEN_AI_OPERATION_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_RESPONSE_FINISH_REASONS, GEN_AI_RESPONSE_MODEL, GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS,
  genAiOperation,
} from './genai.js';
import { ResponseScan } from './response-scan.js';

/** The client's Trace Context as the tracer reads it (proxy/headers.ts's ClientHead): '' when not sent. */
export interface TracedHead {
  readonly traceparent: string;
  readonly tracestate: string;
}

/** What the end of a request tells its span (proxy/exchange.ts's Exchange). */
export interface TracedExchange {
  trace: RequestTrace | null;
  tokenCounter: TokenCounter | null;
  readonly status: number;
  readonly errorCode: string | null;
  readonly cacheStatus: string;
  /** The deployment that served it (a fallback's, when one took it). */
  readonly route: { readonly id: string; readonly model: string; readonly version: string };
  /** The replica of the last attempt; null when none was tried. */
  readonly replica: { readonly hostHeader: string } | null;
}

const SERVER_SPAN = { kind: SpanKind.SERVER };
const DEPLOYMENT = 'sluice.deployment';
const REQUEST_ID = 'sluice.request_id';
const CACHE = 'sluice.cache';

const propagator = new W3CTraceContextPropagator();
// Scratch for the one synchronous extract of the request being admitted.
const carrier = { traceparent: '', tracestate: '' };
const getter: TextMapGetter<typeof carrier> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (c, key) => {
    const v = key === 'traceparent' ? c.traceparent : key === 'tracestate' ? c.tracestate : '';
    return v === '' ? undefined : v;
  },
};

/** A worker's tracer: one span per request it admits. */
export class RequestTracer {
  readonly #tracer: Tracer;

  constructor(tracer: Tracer) {
    this.#tracer = tracer;
  }

  /**
   * The span of a request about to go upstream, a child of the client's traceparent when it
   * sent one (which the sampler then follows). The caller takes the client's trace headers
   * out of the forwarded ones: the upstream gets the gateway's span as its parent instead (upstreamLines).
   * `requestModel`: the name the client asked for (an alias, or `<model>-<version>`).
   * `arrivedAt`: when the request arrived (performance.now()), for one whose body was read
   * before it was routed; -1: now.
   */
  begin(head: TracedHead, method: string, path: string, upstreamPath: string, requestModel: string, requestId: string, arrivedAt: number): RequestTrace {
    const parent = clientContext(head);
    const operation = genAiOperation(upstreamPath);
    // HTTP's `{method} {target}` for other APIs: the model server's path is the route here.
    const name = operation === undefined ? `${method} ${upstreamPath}` : `${operation} ${requestModel}`;
    const span = this.#tracer.startSpan(name, arrivedAt < 0 ? SERVER_SPAN : { kind: SpanKind.SERVER, startTime: performance.timeOrigin + arrivedAt }, parent);
    if (span.isRecording()) {
      requestAttributes(span, method, path, requestId);
      if (operation !== undefined) {
        span.setAttribute(GEN_AI_OPERATION_NAME, operation);
        span.setAttribute(GEN_AI_REQUEST_MODEL, requestModel);
      }
    }
    return new RequestTrace(this.#tracer, span, operation !== undefined, ollamaApi(upstreamPath));
  }

  /**
   * A request the gateway answered itself with error `code` before any deployment took it
   * (no route, a bad head, an unknown model, a refused key...): a span of its own, named
   * by the method alone as HTTP's conventions have it when there is no route, a child of
   * the client's traceparent when `head` was read. `deployment`: the one it was for, when known.
   */
  refused(head: TracedHead | null, method: string, path: string, status: number, code: string, requestId: string, deployment: string | null): void {
    const span = this.#tracer.startSpan(method, SERVER_SPAN, head === null ? ROOT_CONTEXT : clientContext(head));
    if (span.isRecording()) {
      requestAttributes(span, method, path, requestId);
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      span.setAttribute(ATTR_ERROR_TYPE, code);
      if (deployment !== null) span.setAttribute(DEPLOYMENT, deployment);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
    }
    span.end();
  }
}

export class RequestTrace {
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #genAi: boolean;
  /** To Ollama's own API, whose answers' tokens are its counts alone (TokenCounter). */
  readonly #ollamaApi: boolean;
  /** The lines that make the upstream request a child of this span (W3C Trace Context), CRLF-ended. */
  readonly upstreamLines: string;
  #scan: ResponseScan | null = null;

  constructor(tracer: Tracer, span: Span, genAi: boolean, toOllamaApi: boolean) {
    this.#tracer = tracer;
    this.#span = span;
    this.#genAi = genAi;
    this.#ollamaApi = toOllamaApi;
    const sc = span.spanContext();
    const state = sc.traceState?.serialize() ?? '';
    this.upstreamLines = `traceparent: 00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}\r\n${state === '' ? '' : `tracestate: ${state}\r\n`}`;
  }

  /** The exchange carries the trace; a recorded GenAI request has its response scanned (tokens, model, finish reasons). */
  attach(ex: TracedExchange): void {
    ex.trace = this;
    if (this.#genAi && this.#span.isRecording()) ex.tokenCounter = this.#scan = new ResponseScan(this.#ollamaApi);
  }

  /** The request waited from `sinceMono` (performance.now()) until now: for a free replica, or (`held`) for one to start or wake. */
  waited(held: boolean, sinceMono: number): void {
    if (!this.#span.isRecording()) return;
    const wait = this.#tracer.startSpan(held ? 'sluice.cold_start' : 'sluice.queue_wait', { kind: SpanKind.INTERNAL, startTime: performance.timeOrigin + sinceMono }, this.#context());
    wait.end();
  }

  /** An attempt on `replica` (its `host:port`) failed with `code` before any response byte; attempt `attempt` goes to another replica. */
  retried(attempt: number, code: string, replica: string): void {
    if (this.#span.isRecording()) this.#span.addEvent('sluice.retry', { 'sluice.attempt': attempt, [ATTR_ERROR_TYPE]: code, ...server(replica) });
  }

  /** Deployment `from` could not serve it (no replica could take it, or it answered `status`): `to` does. */
  fellBack(from: string, to: string, status: number): void {
    if (this.#span.isRecording()) this.#span.addEvent('sluice.fallback', { 'sluice.fallback.from': from, 'sluice.fallback.to': to, ...(status > 0 ? { [ATTR_HTTP_RESPONSE_STATUS_CODE]: status } : {}) });
  }

  end(ex: TracedExchange): void {
    const span = this.#span;
    if (span.isRecording()) this.#record(span, ex);
    span.end();
  }

  #record(span: Span, ex: TracedExchange): void {
    const status = ex.status;
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    span.setAttribute(DEPLOYMENT, ex.route.id);
    // The model server that answered (GenAI's server.address).
    const replica = ex.replica;
    if (replica !== null) span.setAttributes(server(replica.hostHeader));
    if (ex.cacheStatus !== 'bypass') {
      span.setAttribute(CACHE, ex.cacheStatus);
      if (ex.cacheStatus === 'hit') span.addEvent('sluice.cache.hit');
    }
    const scan = this.#scan;
    if (scan !== null && status < 400) {
      if (scan.model !== null) span.setAttribute(GEN_AI_RESPONSE_MODEL, scan.model);
      if (scan.finishReasons.length > 0) span.setAttribute(GEN_AI_RESPONSE_FINISH_REASONS, scan.finishReasons);
      span.setAttribute(GEN_AI_USAGE_INPUT_TOKENS, scan.input);
      span.setAttribute(GEN_AI_USAGE_OUTPUT_TOKENS, scan.output);
    }
    const code = ex.errorCode;
    const errorType = code ?? (status >= 500 ? String(status) : null);
    if (errorType !== null) span.setAttribute(ATTR_ERROR_TYPE, errorType);
    // A server span fails on 5xx (HTTP conventions), and on a stream cut after its 200 head.
    if (status >= 500 || (code !== null && status < 400)) span.setStatus({ code: SpanStatusCode.ERROR, message: errorType ?? undefined });
  }

  #context(): Context {
    return trace.setSpan(ROOT_CONTEXT, this.#span);
  }
}

/** What every server span of a request carries, routed or refused. */
function requestAttributes(span: Span, method: string, path: string, requestId: string): void {
  span.setAttribute(ATTR_HTTP_REQUEST_METHOD, method);
  span.setAttribute(ATTR_URL_PATH, path);
  span.setAttribute(REQUEST_ID, bytesAsText(requestId));
}

/** server.address and server.port of a replica's `host:port`. */
function server(hostPort: string): Attributes {
  const colon = hostPort.lastIndexOf(':');
  return colon === -1 ? { [ATTR_SERVER_ADDRESS]: hostPort } : { [ATTR_SERVER_ADDRESS]: hostPort.slice(0, colon), [ATTR_SERVER_PORT]: Number(hostPort.slice(colon + 1)) };
}

/** The parent context the client's traceparent/tracestate name (ROOT_CONTEXT when none or invalid). */
function clientContext(head: TracedHead): Context {
  if (head.traceparent === '') return ROOT_CONTEXT;
  carrier.traceparent = head.traceparent;
  carrier.tracestate = head.tracestate;
  return propagator.extract(ROOT_CONTEXT, carrier, getter);
}
