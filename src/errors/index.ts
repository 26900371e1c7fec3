// One table of every error the gateway itself produces. Code branches on `err.code`,
// never on message text; the JSON body a client sees carries the same code.

import { bytesAsText } from '../byte-string.js';

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
}

export const ERRORS = {
  SLUICE_ERR_BAD_REQUEST: { status: 400, message: 'malformed request' },
  SLUICE_ERR_INVALID_FIELD: { status: 400, message: 'invalid field' },
  // A config file or environment value that fails the schema: start-up stops (the admin API
  // answers SLUICE_ERR_INVALID_FIELD for the same fault in a request body).
  SLUICE_ERR_CONFIG: { status: 400, message: 'invalid configuration' },
  SLUICE_ERR_UNAUTHORIZED: { status: 401, message: 'missing or invalid credentials' },
  SLUICE_ERR_FORBIDDEN: { status: 403, message: 'not allowed' },
  SLUICE_ERR_NO_ROUTE: { status: 404, message: 'no deployment serves this path' },
  SLUICE_ERR_NOT_FOUND: { status: 404, message: 'not found' },
  // The front door (/v1/..., /api/...) answers these in the OpenAI or Ollama error shape.
  SLUICE_ERR_MODEL_NOT_FOUND: { status: 404, message: 'no deployment serves this model' },
  SLUICE_ERR_MODEL_REQUIRED: { status: 400, message: 'the request body names no model' },
  SLUICE_ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  SLUICE_ERR_CONFLICT: { status: 409, message: 'conflict' },
  // Deployments and API keys of the config file are changed there, never through the admin API.
  SLUICE_ERR_CONFIG_OWNED: { status: 409, message: 'defined in the config file: change it there' },
  // A fixed capacity of the shared memory is used up (deployments, replicas, rate-limit buckets): remove some first.
  SLUICE_ERR_LIMIT_REACHED: { status: 409, message: 'the gateway holds as many as it can: remove some first' },
  SLUICE_ERR_BODY_TOO_LARGE: { status: 413, message: 'request body exceeds the configured limit' },
  // A body the gateway must read (the front door's model, a served_model rewrite) sent compressed (Content-Encoding).
  SLUICE_ERR_CONTENT_ENCODING: { status: 415, message: 'the request body is compressed (Content-Encoding), which the gateway does not read' },
  SLUICE_ERR_RATE_LIMITED: { status: 429, message: 'rate limit exceeded' },
  // Never an answer's status: a member of a coalesced request (src/proxy/flight.ts) that fell
  // too far behind, or a client whose socket took no write for upstream.idle_timeout_ms while
  // the upstream was paused for it, has its connection closed mid-response; the code names why in
  // the access log and the trace. 429: the client could not take the response at the pace it came.
  SLUICE_ERR_CLIENT_TOO_SLOW: { status: 429, message: 'the client read its response too slowly: it took nothing written to it for the idle timeout, or fell too far behind the identical requests sharing its upstream call' },
  // A request the node front end cannot read (src/proxy/front-end/request-parser.ts).
  SLUICE_ERR_HEADERS_TOO_LARGE: { status: 431, message: 'the request head exceeds the limit' },
  // A head trickled in for longer than listen.client_header_timeout_ms (slowloris), or an upload stopped for listen.client_idle_timeout_ms.
  SLUICE_ERR_REQUEST_TIMEOUT: { status: 408, message: 'the request head or body did not arrive in time' },
  SLUICE_ERR_TRANSFER_CODING: { status: 501, message: 'the request uses a transfer coding other than chunked' },
  SLUICE_ERR_HTTP_VERSION: { status: 505, message: 'only HTTP/1.0 and HTTP/1.1 are served' },
  SLUICE_ERR_INTERNAL: { status: 500, message: 'internal gateway error' },
  SLUICE_ERR_UPSTREAM_CONNECT: { status: 502, message: 'upstream refused or reset the connection' },
  SLUICE_ERR_UPSTREAM_PROTOCOL: { status: 502, message: 'upstream sent an invalid HTTP response' },
  SLUICE_ERR_UPSTREAM_RESET: { status: 502, message: 'upstream closed the connection before the response ended' },
  SLUICE_ERR_UPSTREAM_STATUS: { status: 502, message: 'the model server answered an error after the stream had started' },
  SLUICE_ERR_NO_READY_REPLICA: { status: 503, message: 'no ready replica for this deployment' },
  SLUICE_ERR_SHUTTING_DOWN: { status: 503, message: 'the gateway stopped before the request ended (its shutdown grace ran out)' },
  SLUICE_ERR_CIRCUIT_OPEN: { status: 503, message: 'every replica of this deployment is failing (circuit breakers open)' },
  SLUICE_ERR_QUEUE_FULL: { status: 503, message: 'the deployment is at capacity and its queue is full' },
  // A worker holds limits.max_buffered_bytes of bodies being read whole (the front door's, a served_model rewrite's).
  SLUICE_ERR_BUFFERS_FULL: { status: 503, message: 'the gateway holds as many request bodies being read as it may: retry shortly' },
  SLUICE_ERR_QUEUE_TIMEOUT: { status: 503, message: 'waited too long for a free replica' },
  SLUICE_ERR_NOT_READY_TIMEOUT: { status: 503, message: 'the deployment did not become ready in time' },
  SLUICE_ERR_RATE_LIMIT_UNAVAILABLE: { status: 503, message: 'the rate-limit store is unavailable' },
  // A call the gateway did not make: the dependency's breaker is open (src/dependencies).
  SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN: { status: 503, message: 'a service the gateway depends on is failing: its circuit breaker is open' },
  // A call the gateway made that failed: no connection, or no answer in time (the state store in Redis).
  SLUICE_ERR_DEPENDENCY_UNAVAILABLE: { status: 503, message: 'a service the gateway depends on did not answer' },
  // The MLflow registry (src/registry): what the admin API answers when it fails.
  SLUICE_ERR_REGISTRY_UNAVAILABLE: { status: 503, message: 'model registry unavailable' },
  SLUICE_ERR_REGISTRY_BAD_RESPONSE: { status: 502, message: 'model registry sent an invalid response' },
  SLUICE_ERR_REGISTRY_UNAUTHORIZED: { status: 502, message: 'model registry refused the gateway credentials' },
  SLUICE_ERR_REGISTRY_NOT_FOUND: { status: 404, message: 'not found in the model registry' },
  SLUICE_ERR_REGISTRY_REJECTED: { status: 502, message: 'model registry rejected the request' },
  SLUICE_ERR_NO_FREE_PORT: { status: 503, message: 'no free port left in the configured range' },
  SLUICE_ERR_DEPLOY_FAILED: { status: 502, message: 'the deployment failed to start' },
  SLUICE_ERR_REGISTRY_NOT_CONFIGURED: { status: 503, message: 'no MLflow tracking URI configured (mlflow.tracking_uri or MLFLOW_TRACKING_URI)' },
  SLUICE_ERR_UPSTREAM_HEADERS_TIMEOUT: { status: 504, message: 'upstream did not send response headers in time' },
  SLUICE_ERR_UPSTREAM_IDLE_TIMEOUT: { status: 504, message: 'upstream stalled longer than the idle timeout' },
  SLUICE_ERR_TOTAL_TIMEOUT: { status: 504, message: 'the request exceeded the total timeout' },
  SLUICE_ERR_UPSTREAM_CONNECT_TIMEOUT: { status: 504, message: 'upstream connection timed out' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** The error code of each status the node front end's parser refuses a request with (its head or its chunked body). */
export function malformedRequestCode(status: number): ErrorCode {
  return MALFORMED[status] ?? 'SLUICE_ERR_BAD_REQUEST';
}
const MALFORMED: Readonly<Record<number, ErrorCode>> = Object.freeze({
  400: 'SLUICE_ERR_BAD_REQUEST', 408: 'SLUICE_ERR_REQUEST_TIMEOUT', 413: 'SLUICE_ERR_BODY_TOO_LARGE', 431: 'SLUICE_ERR_HEADERS_TOO_LARGE',
  501: 'SLUICE_ERR_TRANSFER_CODING', 505: 'SLUICE_ERR_HTTP_VERSION',
});

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'SluiceError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }
}

/** The JSON body every gateway error carries (DESIGN.md, "Hot-path rules"). */
export function errorBody(code: string, message: string, requestId: string, extra?: Record<string, unknown>): string {
  return JSON.stringify({ error: { code, message, request_id: bytesAsText(requestId), ...extra } });
}

/**
 * The event data that ends a Responses API stream (`/v1/responses`) the gateway fails: an
 * event of that stream (`type: "error"`, a `sequence_number`) whose `error` holds the message,
 * as api.openai.com sends it. The AI SDK's Responses provider reads no event without a `type`
 * (it showed "Type validation failed" for sluice's own shape); the openai SDKs throw on the
 * `error` member either way. The gateway reads no sequence numbers as the stream passes: 0.
 */
export function responsesErrorEvent(code: string, message: string, requestId: string): string {
  return JSON.stringify({ type: 'error', sequence_number: 0, error: { type: 'server_error', code, message, param: null, request_id: bytesAsText(requestId) } });
}

/** Ollama's error shape (`{"error": "<message>"}`, which its clients show as is), with the request id. */
export function ollamaErrorBody(message: string, requestId: string): string {
  return JSON.stringify({ error: message, request_id: bytesAsText(requestId) });
}

/** Status line text uWS needs ("404 Not Found"); precomputed once, not per request. */
export const STATUS_LINES: Readonly<Record<number, string>> = Object.freeze({
  200: '200 OK', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden',
  404: '404 Not Found', 405: '405 Method Not Allowed', 408: '408 Request Timeout', 409: '409 Conflict',
  413: '413 Payload Too Large', 429: '429 Too Many Requests', 500: '500 Internal Server Error',
  502: '502 Bad Gateway', 503: '503 Service Unavailable', 504: '504 Gateway Timeout',
});
