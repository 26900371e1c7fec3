// A tiny declarative schema: every option, its type, its default and its bounds in one
// place. Validation rejects unknown keys and names the bad field by its full path
// (fastify's build-validation does the same with ajv; we need far less than ajv).

import { SluiceError } from '../errors/index.js';

export type Field =
  | { kind: 'int'; default?: number; min?: number; max?: number }
  | { kind: 'number'; default?: number; min?: number; max?: number }
  | {
    kind: 'string'; default?: string | null; pattern?: RegExp; enum?: readonly string[]; nullable?: boolean;
    /** Values the pattern admits that are refused all the same. */ reserved?: readonly string[];
    /** Never echoed in errors. */ secret?: boolean; /** Absent without a default: left out rather than required. */ optional?: boolean;
    /** A URL, which may carry a user and password: echoed in errors with them as `***`. */ url?: boolean;
  }
  | { kind: 'bool'; default?: boolean }
  /** `shorthand`: a bare string stands for an object with only that field. */
  | { kind: 'object'; fields: Record<string, Field>; optional?: boolean; shorthand?: string }
  | { kind: 'array'; of: Field; default?: unknown[] }
  | { kind: 'map'; of: Field; default?: Record<string, unknown> };

export class ConfigError extends SluiceError {
  readonly field: string;
  readonly reason: string;
  constructor(field: string, reason: string) {
    super('SLUICE_ERR_CONFIG', `config: ${field}: ${reason}`, { field });
    this.name = 'ConfigError';
    this.field = field;
    this.reason = reason;
  }
}

export const MODEL_NAME = /^[A-Za-z0-9_:][A-Za-z0-9._:-]{0,127}$/;
export const VERSION_NAME = /^[A-Za-z0-9_][A-Za-z0-9._]{0,63}$/;
/** The bounds of a rollout's settings (PUT /v1/models/{model}/rollout): the CLI checks them too, before any request. */
export const ROLLOUT_BOUNDS = Object.freeze({
  interval_s: { min: 0.2, max: 86_400 }, min_requests: { min: 1, max: 1e9 }, max_error_rate: { min: 0, max: 1 },
  error_margin: { min: 0, max: 1 }, max_latency_ratio: { min: 1, max: 1000 }, failed_checks: { min: 1, max: 1000 },
});
/**
 * What a model, a version or an API key may not be named: the properties every JavaScript
 * object has (`__proto__`, `constructor`, `toString`, ...). Weights are held by version and
 * events by model in plain objects, on the server and in the dashboard: such a name would
 * read or set a built-in property there instead of an entry (a `__proto__` weight vanished).
 */
export const RESERVED_NAMES: readonly string[] = Object.getOwnPropertyNames(Object.prototype).sort();
const NO_NUL = /^[^\x00]*$/;
/** An HTTP field name (RFC 9110 5.1: a token). */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
const timeout = (def: number): Field => ({ kind: 'int', default: def, min: 1, max: 86_400_000 });

const upstreamFields = {
  connect_timeout_ms: timeout(5_000),
  // Time to the first response byte: long, because a model may load on first request.
  headers_timeout_ms: timeout(300_000),
  // Time between two chunks of a response once it has started. While the upstream is paused
  // for a slow client, the same time without a write taken cuts the client instead (SLUICE_ERR_CLIENT_TOO_SLOW).
  idle_timeout_ms: timeout(60_000),
  max_connections: { kind: 'int', default: 512, min: 1, max: 65_536 },
  // Below uvicorn's 5 s keep-alive so that we close idle sockets before the server does.
  keepalive_idle_ms: { kind: 'int', default: 4_000, min: 100, max: 3_600_000 },
} as const satisfies Record<string, Field>;

// Active checks of `remote` replicas (local ones are supervised as processes). A replica
// is routed only after a check passes: the first one suffices, as in Envoy; one that was
// unhealthy needs healthy_threshold passes in a row, and a routed one leaves the route
// table after unhealthy_threshold failures in a row. path null: the deployment's
// readiness_path when it has one (GET, 200 passes), else a TCP connect.
export const healthCheckFields = {
  enabled: { kind: 'bool', default: true },
  // Printable ASCII, as readiness_path: Node's http.request refuses a path with anything
  // else, and a check that cannot be sent would be a failing check that never says why.
  path: { kind: 'string', default: null, nullable: true, pattern: /^\/[\x21-\x7e]*$/ },
  interval_ms: { kind: 'int', default: 5_000, min: 10, max: 3_600_000 },
  timeout_ms: { kind: 'int', default: 2_000, min: 1, max: 600_000 },
  healthy_threshold: { kind: 'int', default: 2, min: 1, max: 100 },
  unhealthy_threshold: { kind: 'int', default: 3, min: 1, max: 100 },
} as const satisfies Record<string, Field>;

const limitFields = {
  requests_per_second: { kind: 'number', default: 0, min: 0, max: 1e9 },
  requests_per_minute: { kind: 'number', default: 0, min: 0, max: 1e12 },
  // LLM tokens, counted from responses (usage fields, Ollama eval counts, or streamed chunks).
  tokens_per_minute: { kind: 'number', default: 0, min: 0, max: 1e12 },
} as const satisfies Record<string, Field>;

/** Every policy of a deployment; `policies` at the top level holds the defaults. 0 = off. */
const policyFields = {
  auth: { kind: 'object', fields: { required: { kind: 'bool', default: false } } },
  breaker: {
    kind: 'object',
    fields: {
      enabled: { kind: 'bool', default: true },
      consecutive_failures: { kind: 'int', default: 5, min: 1, max: 1_000_000 },
      error_threshold_percentage: { kind: 'number', default: 50, min: 1, max: 100 },
      volume_threshold: { kind: 'int', default: 20, min: 1, max: 1_000_000 },
      window_ms: timeout(10_000),
      reset_timeout_ms: timeout(5_000),
    },
  },
  retry: {
    kind: 'object',
    fields: {
      // Retries on another replica, only when safe: refused or reset before any response byte.
      attempts: { kind: 'int', default: 2, min: 0, max: 10 },
      budget_percent: { kind: 'number', default: 20, min: 0, max: 100 },
      budget_window_ms: timeout(10_000),
      // Bodies up to this size are kept so that they can be replayed; larger ones are never retried.
      replay_max_bytes: { kind: 'int', default: 64 * 1024, min: 0, max: 64 * 1024 * 1024 },
    },
  },
  queue: {
    kind: 'object',
    fields: {
      max_inflight_per_replica: { kind: 'int', default: 0, min: 0, max: 1_000_000 },
      max_length: { kind: 'int', default: 1000, min: 0, max: 1_000_000 },
      max_wait_ms: timeout(30_000),
    },
  },
  // Requests for a deployment that has no ready replica yet but will (starting, restarting,
  // hibernated and waking) wait here instead of failing; an SSE client gets `: waking`
  // comments every heartbeat_ms meanwhile (0: none).
  hold: {
    kind: 'object',
    fields: {
      max_length: { kind: 'int', default: 1000, min: 0, max: 1_000_000 },
      max_wait_ms: timeout(120_000),
      // Well inside the shortest idle timeout of a common client: httpx's (the Python openai SDK's transport) is 5 s.
      heartbeat_ms: { kind: 'int', default: 2_000, min: 0, max: 600_000 },
    },
  },
  rate_limit: { kind: 'object', fields: limitFields },
  // How a replica is chosen. least_outstanding: two at random, the less loaded (P2C);
  // round_robin: each in turn; weighted: at random by the replicas' weight; lowest_latency:
  // the least loaded of those whose average time to first byte is within latency_buffer of
  // the best (0.2: 20% slower), a replica not measured for probe_interval_ms being tried
  // again; lowest_cost: the least loaded of the cheapest replicas that can take the
  // request; failover: the same by priority tier (0 first); queue_aware: the shortest line,
  // from the queue figures the servers export at metrics_path (vLLM, llama.cpp --metrics),
  // scraped every scrape_interval_ms, with sluice's own in-flight count; a replica whose KV
  // cache is above kv_cache_limit only when all are. A replica that cannot take a request
  // (breaker open, at max_inflight) is passed over by every strategy.
  balancer: {
    kind: 'object',
    fields: {
      strategy: {
        kind: 'string', enum: ['least_outstanding', 'round_robin', 'weighted', 'lowest_latency', 'lowest_cost', 'failover', 'queue_aware'], default: 'least_outstanding',
      },
      latency_buffer: { kind: 'number', default: 0.2, min: 0, max: 100 },
      probe_interval_ms: { kind: 'int', default: 2_000, min: 10, max: 3_600_000 },
      metrics_path: { kind: 'string', default: '/metrics', pattern: /^\/[\x21-\x7e]*$/ },
      scrape_interval_ms: { kind: 'int', default: 1_000, min: 50, max: 3_600_000 },
      kv_cache_limit: { kind: 'number', default: 0.95, min: 0, max: 1 },
    },
  },
  // Response cache and request coalescing, in memory per worker thread (so per worker, not
  // per instance, for the byte limits).
  cache: {
    kind: 'object',
    fields: {
      enabled: { kind: 'bool', default: true },
      // With redis.url set: a memory miss looks in Redis, and stored responses go there too
      // (shared by every worker and instance). false: memory only. No effect without Redis.
      shared: { kind: 'bool', default: true },
      ttl_ms: timeout(300_000),
      max_bytes: { kind: 'int', default: 64 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER },
      max_entry_bytes: { kind: 'int', default: 4 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER },
      // Candidates are buffered whole before the key is known; larger bodies bypass the cache.
      max_request_bytes: { kind: 'int', default: 1024 * 1024, min: 0, max: 64 * 1024 * 1024 },
      // Request headers whose values are part of the key, besides the caller's identity.
      vary: { kind: 'array', of: { kind: 'string', pattern: HEADER_NAME }, default: [] },
      // The key holds the caller's identity (its sluice API key, and a digest of the
      // credentials forwarded upstream: Authorization, x-api-key, api-key, Cookie), so one
      // caller's answer never serves another, cached or coalesced. true: callers share
      // entries and in-flight requests, for answers that do not depend on who asks (the
      // `vary` headers and the request's Origin stay in the key).
      shared_across_callers: { kind: 'bool', default: false },
    },
  },
  // Time from request arrival to the end of the response; 0 = no limit (streams may be long).
  total_timeout_ms: { kind: 'int', default: 0, min: 0, max: 86_400_000 },
} as const satisfies Record<string, Field>;

export const apiKeySchema: Field = {
  kind: 'object',
  fields: {
    name: { kind: 'string', pattern: /^[A-Za-z0-9._:-]{1,64}$/, reserved: RESERVED_NAMES },
    // Give the key itself (hashed at load, never logged) or only its SHA-256 in hex.
    key: { kind: 'string', default: null, nullable: true, pattern: /^\S{16,256}$/, secret: true },
    key_sha256: { kind: 'string', default: null, nullable: true, pattern: /^[0-9a-f]{64}$/ },
    // Deployment ids (`demo-1`) or model names (`demo`: every version); `*` for all.
    deployments: { kind: 'array', of: { kind: 'string', pattern: /^[A-Za-z0-9._:*-]+$/ }, default: ['*'] },
    // Limits of the key over all its deployments...
    limits: { kind: 'object', fields: limitFields },
    // ...and of the key on each deployment separately.
    deployment_limits: { kind: 'object', fields: limitFields },
  },
};

// weight: share of a weighted deployment's requests (0: only when no other replica can take
// one); priority: failover tier, 0 first; cost: price of a request or of 1k tokens, in any
// unit shared by the deployment's replicas (lowest_cost).
const endpointSchema: Field = {
  kind: 'object',
  shorthand: 'url',
  fields: {
    url: { kind: 'string', pattern: /^https?:\/\/[^\s/]+(\/.*)?$/, url: true },
    weight: { kind: 'number', default: 1, min: 0, max: 1_000_000 },
    priority: { kind: 'int', default: 0, min: 0, max: 100 },
    cost: { kind: 'number', default: 0, min: 0, max: 1e12 },
  },
};

export const deploymentSchema: Field = {
  kind: 'object',
  fields: {
    model: { kind: 'string', pattern: MODEL_NAME, reserved: RESERVED_NAMES },
    version: { kind: 'string', pattern: VERSION_NAME, reserved: RESERVED_NAMES },
    runtime: { kind: 'string', enum: ['sim', 'remote', 'command', 'mlflow', 'ollama', 'llamacpp'], default: 'sim' },
    replicas: { kind: 'int', default: 1, min: 1, max: 100 },
    // `remote` replicas: a URL, or {url, weight, priority, cost} for the balancing strategies
    // that read them (weighted, failover, lowest_cost).
    urls: { kind: 'array', of: endpointSchema, default: [] },
    // Checked here as the servers' launcher checks them (ports/validate.ts), so that the error
    // names the field as written and comes before any server of the file starts: an argv
    // string holds no NUL, a readiness path is printable ASCII (Node's HTTP client sends
    // nothing else), an environment value no NUL (its names: deploymentProblem).
    args: { kind: 'array', of: { kind: 'string', pattern: NO_NUL }, default: [] },
    command: { kind: 'array', of: { kind: 'string', pattern: NO_NUL }, default: [] },
    // `command` runtime: also pass the allocated port in this environment variable (many
    // servers read PORT). A command needs `{port}` in its argv, or this.
    port_env: { kind: 'string', default: null, nullable: true, pattern: /^[A-Za-z_][A-Za-z0-9_]{0,127}$/ },
    // `llamacpp` runtime: the GGUF file llama-cpp-python's server loads (absolute: a relative
    // path would mean whatever directory the gateway happens to be started from), and the
    // Python that has llama-cpp-python[server] installed. Default: the .venv-llama/ that
    // scripts/setup-llama.sh makes next to sluice when present, else python3 from PATH.
    // `args` go to the server after sluice's own (e.g. ["--n_ctx", "4096"]). NUL is written
    // \x00: patterns are also the admin API document's, read by tools of other regex dialects.
    model_path: { kind: 'string', default: null, nullable: true, pattern: /^\/[^\x00]*$/ },
    python: { kind: 'string', default: null, nullable: true, pattern: /^[^\x00]+$/ },
    readiness_path: { kind: 'string', default: null, nullable: true, pattern: /^\/[\x21-\x7e]*$/ },
    env: { kind: 'map', of: { kind: 'string', pattern: NO_NUL, secret: true }, default: {} },
    start_timeout_ms: timeout(120_000),
    // The model name the server knows (an Ollama `llama3:8b`, a llama.cpp server's alias):
    // the request body's `model` is rewritten to it on the OpenAI and Ollama endpoints.
    // Default: the deployment's model for `sim`, `<model>:<version>` for `ollama`, what the
    // server reports for `llamacpp`; none (the body goes as sent) for the others.
    served_model: { kind: 'string', default: null, nullable: true, pattern: /^[^\x00-\x1f"\\]{1,256}$/ },
    // `ollama` runtime: OLLAMA_KEEP_ALIVE, a Go duration ('10m', '-1') or integer seconds.
    keep_alive: { kind: 'string', default: null, nullable: true, pattern: /^[-+]?(?:\d+|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/ },
    // A credential the gateway adds to every request to this deployment (an OpenAI-compatible
    // provider's key), read from the environment variable named here: never in config or
    // state files, never logged. The client's own Authorization and x-api-key are not sent.
    auth: {
      kind: 'object', optional: true,
      fields: {
        header: { kind: 'string', default: 'authorization', pattern: /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/ },
        env: { kind: 'string', pattern: /^[A-Za-z_][A-Za-z0-9_]{0,127}$/ },
        scheme: { kind: 'string', default: 'Bearer', nullable: true, pattern: /^[A-Za-z][A-Za-z0-9._~+/-]*$/ },
      },
    },
    // Deployments (ids: `small-1`) that take a request this one cannot: none of its replicas
    // can take it (breakers open, none ready, all at max_inflight), or one answered 429 or
    // 5xx before any byte reached the client and the body can be sent again. In order;
    // their own fallbacks are not followed.
    fallbacks: { kind: 'array', of: { kind: 'string', pattern: /^[A-Za-z0-9_:][A-Za-z0-9._:-]{0,127}-[A-Za-z0-9_][A-Za-z0-9._]{0,63}$/ }, default: [] },
    // min_replicas 0: after idle_timeout_s without a request the replicas stop (hibernated)
    // and the next request starts them again, held meanwhile. target_inflight_per_replica > 0:
    // between min_replicas (at least 1) and max_replicas (0: `replicas`), one more replica
    // when the requests in flight and waiting per replica stayed above the target over
    // scale_up_window_s (at once when they reach twice the target), one fewer when fewer
    // replicas would have stayed under it over scale_down_window_s. Not for `remote`.
    scale: {
      kind: 'object',
      fields: {
        min_replicas: { kind: 'int', default: 1, min: 0, max: 100 },
        idle_timeout_s: { kind: 'int', default: 900, min: 1, max: 31_536_000 },
        max_replicas: { kind: 'int', default: 0, min: 0, max: 100 },
        target_inflight_per_replica: { kind: 'number', default: 0, min: 0, max: 1_000_000 },
        scale_up_window_s: { kind: 'int', default: 10, min: 1, max: 3_600 },
        scale_down_window_s: { kind: 'int', default: 300, min: 1, max: 86_400 },
      },
    },
    // What the deployment costs, in any currency (reported as usd): running replicas by the
    // hour (hibernated ones cost nothing), and each request it answers by its tokens and itself.
    cost: {
      kind: 'object',
      fields: {
        per_replica_hour: { kind: 'number', default: 0, min: 0, max: 1e9 },
        per_1k_input_tokens: { kind: 'number', default: 0, min: 0, max: 1e9 },
        per_1k_output_tokens: { kind: 'number', default: 0, min: 0, max: 1e9 },
        per_request: { kind: 'number', default: 0, min: 0, max: 1e9 },
      },
    },
    // Only for `remote`: absent, the defaults above apply.
    health_check: { kind: 'object', optional: true, fields: healthCheckFields },
    upstream: { kind: 'object', optional: true, fields: withoutDefaults(upstreamFields) },
    policies: { kind: 'object', optional: true, fields: partialFields(policyFields) },
  },
};

export const configSchema: Field = {
  kind: 'object',
  fields: {
    listen: {
      kind: 'object',
      fields: {
        host: { kind: 'string', default: '0.0.0.0' },
        port: { kind: 'int', default: 8080, min: 0, max: 65_535 },
        // Append the client's address to X-Forwarded-For. Off by default, as in nginx,
        // HAProxy and Envoy: model servers do not need it, and the access line records the
        // client anyway. uWS has no per-connection hook, so on it costs a getpeername per
        // request (about 10% of throughput on small requests). Off, a client's own
        // X-Forwarded-For still passes through unchanged.
        forwarded_for: { kind: 'bool', default: false },
        // What reads client requests: sluice's own HTTP/1.1 front end on Node's TCP (and,
        // with listen.tls, TLS) handles (src/proxy/front-end/), or uWebSockets.js. auto:
        // node. On the requests SDKs send (POST, a dozen headers, a body) uWS.js's binding
        // costs more per request than its C++ parser saves; the node front end also reads
        // the client's address once per connection, not per request. Over TLS, uWS.js 20.30
        // drops some requests and header bytes (README, Known limits).
        front_end: { kind: 'string', enum: ['auto', 'node', 'uws'], default: 'auto' },
        // A client connection waiting this long for bytes (idle between requests, or in a
        // head or an upload nothing answers yet) is closed. The node front end only: uWS's is
        // fixed at 10 s.
        client_idle_timeout_ms: { kind: 'int', default: 10_000, min: 1000, max: 3_600_000 },
        // A request head must arrive whole within this long from its first byte, however its
        // bytes trickle in (a slowloris client resets no idle timer): else 408 and close.
        // nginx's client_header_timeout and Node's headersTimeout are 60 s too. The node front end only.
        client_header_timeout_ms: { kind: 'int', default: 60_000, min: 1000, max: 3_600_000 },
        // Bound to a loopback address (listen.host 127.0.0.1, ::1, localhost), the gateway
        // answers only requests whose Host is local, as Ollama's server does (src/host-guard.ts):
        // a page whose name was rebound to 127.0.0.1 (DNS rebinding) is same-origin for its
        // browser, so CORS does not stop it. These names are allowed too (a proxy on the same
        // host that passes its own Host on); '*' turns the guard off.
        allowed_hosts: { kind: 'array', of: { kind: 'string', pattern: /^[\x21-\x7e]{1,255}$/ }, default: [] },
        // Pages and browser extensions allowed to call the front door (the root's OpenAI and
        // Ollama endpoints) from a browser: their preflights are answered and the answers are
        // readable by them (src/proxy/cors.ts). `*` stands for any text. The default is the
        // origins Ollama's server always allows (protocols.md, OLLAMA_ORIGINS) and browser
        // extensions, so that what works against Ollama works against sluice; [] turns it off.
        cors_origins: {
          kind: 'array', of: { kind: 'string', pattern: /^[\x21-\x7e]{1,255}$/ },
          default: [
            'http://localhost', 'https://localhost', 'http://localhost:*', 'https://localhost:*',
            'http://127.0.0.1', 'https://127.0.0.1', 'http://127.0.0.1:*', 'https://127.0.0.1:*',
            'http://0.0.0.0', 'https://0.0.0.0', 'http://0.0.0.0:*', 'https://0.0.0.0:*',
            'app://*', 'file://*', 'tauri://*', 'vscode-webview://*', 'vscode-file://*',
            'chrome-extension://*', 'moz-extension://*', 'safari-web-extension://*',
          ],
        },
        // HTTPS instead of HTTP (absent: plain HTTP). See tlsField.
        tls: tlsField(),
        // Strict-Transport-Security on every response (only with tls: browsers ignore it over
        // plain HTTP). preload: hstspreload.org's conditions, include_subdomains and a year.
        hsts: {
          kind: 'object', optional: true,
          fields: {
            max_age_s: { kind: 'int', default: 31_536_000, min: 0, max: 2_147_483_647 },
            include_subdomains: { kind: 'bool', default: false },
            preload: { kind: 'bool', default: false },
          },
        },
      },
    },
    admin: {
      kind: 'object',
      fields: {
        host: { kind: 'string', default: '127.0.0.1' },
        port: { kind: 'int', default: 8081, min: 0, max: 65_535 },
        token: { kind: 'string', default: null, nullable: true },
        tls: tlsField(),
      },
    },
    // 0 means one worker per core.
    workers: { kind: 'int', default: 0, min: 0, max: 64 },
    ports: {
      kind: 'object',
      fields: {
        from: { kind: 'int', default: 8001, min: 1, max: 65_535 },
        to: { kind: 'int', default: 8100, min: 1, max: 65_535 },
      },
    },
    state_dir: { kind: 'string', default: './.sluice' },
    // Shared desired state, rate limits and response cache for several instances.
    redis: { kind: 'object', fields: { url: { kind: 'string', default: null, nullable: true, pattern: /^rediss?:\/\//, url: true } } },
    mlflow: {
      kind: 'object',
      fields: {
        // Registry and `models:/` resolution; the admin's /get_model_list reads it.
        tracking_uri: { kind: 'string', default: null, nullable: true, pattern: /^(https?|file|sqlite|databricks):/, url: true },
        // Default: the project's .venv/bin/mlflow when present, else `mlflow` from PATH.
        bin: { kind: 'string', default: null, nullable: true },
      },
    },
    limits: {
      kind: 'object',
      fields: {
        // A byte count: an integer, and a safe one so that comparisons stay exact.
        max_body_bytes: { kind: 'int', default: 64 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER },
        // A body read whole before it is routed or forwarded (the front door's `model`, a
        // served_model rewrite) may not exceed this either: it is held in memory.
        max_buffered_body_bytes: { kind: 'int', default: 16 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER },
        // What a worker holds of such bodies at once, while they arrive (slow clients hold it
        // longest); a request that would pass it is answered 503 SLUICE_ERR_BUFFERS_FULL.
        // At least max_buffered_body_bytes.
        max_buffered_bytes: { kind: 'int', default: 256 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER },
      },
    },
    upstream: { kind: 'object', fields: upstreamFields },
    log: {
      kind: 'object',
      fields: {
        level: { kind: 'string', enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' },
        access: { kind: 'bool', default: true },
        // Access lines are written by each worker in batches, as nginx's `buffer=`: once this
        // many bytes wait, or every access_flush_ms.
        access_buffer_bytes: { kind: 'int', default: 64 * 1024, min: 0, max: 64 * 1024 * 1024 },
        access_flush_ms: { kind: 'int', default: 1000, min: 0, max: 60_000 },
        // A sink slower than the traffic: at most this many bytes wait per worker, further
        // lines are dropped and counted (sluice_log_dropped_total), never blocking.
        access_max_buffer_bytes: { kind: 'int', default: 16 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024 },
        // The share of successful requests that get a line; failures always do.
        access_sample: { kind: 'number', default: 1, min: 0, max: 1 },
      },
    },
    // Tokens per answer (gen_ai_client_token_usage, time per output token, sluice_tokens_total):
    // counted from the usage the servers report, for every deployment. Off: only for those
    // whose cost or tokens-per-minute limits need them.
    // retired_series_ms: how long an undeployed deployment's last figures stay in /metrics
    // after its drain, so that a scrape sees what its last requests added (two scrapes at
    // Prometheus's default 1 m interval, and then some).
    metrics: { kind: 'object', fields: { tokens: { kind: 'bool', default: true }, retired_series_ms: { kind: 'int', default: 300_000, min: 0 } } },
    policies: { kind: 'object', fields: policyFields },
    api_keys: { kind: 'array', of: apiKeySchema, default: [] },
    rate_limit: {
      kind: 'object',
      fields: {
        // Buckets live in Redis when redis.url is set (shared by all instances), else in memory.
        // A check Redis does not answer in time: `open` checks the instance's own in-memory
        // buckets instead (each instance then admits the limit on its own), `closed` is a 503.
        on_redis_error: { kind: 'string', enum: ['open', 'closed'], default: 'open' },
        // The timeout also counts the time the worker takes to get to Redis's reply, which a
        // burst delays: 100 concurrent requests per instance on 2 busy cores (load 7-11)
        // measured 70 ms typical and 330 ms at worst; at 50 ms most checks of such a burst
        // timed out, and the limit held per instance instead of shared.
        redis_timeout_ms: { kind: 'int', default: 1_000, min: 1, max: 10_000 },
      },
    },
    cache: {
      kind: 'object',
      fields: {
        // With redis.url set, the shared tier of the response cache (policies.cache.shared):
        // a lookup slower than this is a miss, so it bounds what a request may wait for Redis.
        redis_timeout_ms: { kind: 'int', default: 100, min: 1, max: 10_000 },
      },
    },
    // Circuit breakers around the gateway's own calls (src/dependencies), one per dependency
    // and use. Each call's timeout is its client's: rate_limit.redis_timeout_ms,
    // cache.redis_timeout_ms, and timeout_ms below. What a failed call means is said where
    // the call is made (rate_limit.on_redis_error; a cache miss; a 503 from the admin API).
    dependencies: {
      kind: 'object',
      fields: {
        redis: {
          kind: 'object',
          fields: {
            rate_limit: dependencyBreaker(10, 2_000),
            cache: dependencyBreaker(10, 2_000),
            // The desired state (deployments, keys, traffic, rollout leases and counts).
            state: dependencyBreaker(5, 2_000, { timeout_ms: { kind: 'int', default: 2_000, min: 1, max: 600_000 } }),
          },
        },
        mlflow: {
          kind: 'object',
          fields: {
            // The registry the admin API reads (/get_model_list, /deploy/{model}/{version}).
            registry: dependencyBreaker(3, 5_000, { timeout_ms: { kind: 'int', default: 10_000, min: 1, max: 600_000 } }),
          },
        },
        // The OTLP collector each worker exports its spans to (tracing): while it is open,
        // batches are dropped at once (counted) rather than retried against a dead collector.
        otlp: { kind: 'object', fields: { export: dependencyBreaker(3, 10_000) } },
      },
    },
    // On SIGTERM or SIGINT /readyz answers 503 at once, but requests are still served for
    // drain_delay_ms: a load balancer needs a few probe periods to notice and take the
    // instance out, and what it sends meanwhile must not be refused. Then the gateway stops
    // accepting and lets requests in flight finish for up to grace_ms. Together they should
    // stay under the orchestrator's kill deadline (Kubernetes: 30 s by default).
    shutdown: {
      kind: 'object',
      fields: {
        drain_delay_ms: { kind: 'int', default: 5_000, min: 0, max: 600_000 },
        grace_ms: { kind: 'int', default: 10_000, min: 0, max: 3_600_000 },
      },
    },
    // OpenTelemetry traces of the data plane (README "Tracing"), off by default. The standard
    // OTEL_* variables override these fields (config/otel-env.ts), as they do in any OTel SDK.
    tracing: {
      kind: 'object',
      fields: {
        enabled: { kind: 'bool', default: false },
        // The OTLP/HTTP (protobuf) traces URL, path included, as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
        endpoint: { kind: 'string', default: 'http://localhost:4318/v1/traces', pattern: /^https?:\/\/\S+$/, url: true },
        // Sent with every export (a collector's or vendor's API key).
        headers: { kind: 'map', of: { kind: 'string', secret: true }, default: {} },
        service_name: { kind: 'string', default: 'sluice', pattern: /\S/ },
        // The share of new traces recorded; parent_based: a request whose traceparent says
        // sampled (or not) follows its caller instead (OTel's parentbased_traceidratio).
        sample_ratio: { kind: 'number', default: 1, min: 0, max: 1 },
        parent_based: { kind: 'bool', default: true },
      },
    },
    deployments: { kind: 'array', of: deploymentSchema, default: [] },
    // model -> version -> weight, for the alias route `/<model>/...`.
    traffic: { kind: 'map', of: { kind: 'map', of: { kind: 'number', min: 0, max: 1_000_000 } }, default: {} },
  },
};

/**
 * A TLS listener (listen.tls, admin.tls): PEM files, the certificate file holding the chain
 * (leaf first). Both are read again on SIGHUP and when either changes; a pair that does not
 * load is logged and the one in use kept. (A function, hoisted: configSchema uses it twice.)
 */
function tlsField(): Field {
  return {
    kind: 'object', optional: true,
    fields: {
      cert_file: { kind: 'string', pattern: /\S/ },
      key_file: { kind: 'string', pattern: /\S/ },
      min_version: { kind: 'string', enum: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.2' },
    },
  };
}

/**
 * A dependency's breaker (src/dependencies): it opens when more than
 * error_threshold_percentage of the calls in the last rolling_window_ms failed, once there
 * were volume_threshold calls; reset_timeout_ms later one call goes through as a probe.
 */
function dependencyBreaker(volumeThreshold: number, resetTimeoutMs: number, extra: Record<string, Field> = {}): Field {
  return {
    kind: 'object',
    fields: {
      error_threshold_percentage: { kind: 'number', default: 50, min: 0, max: 100 },
      volume_threshold: { kind: 'int', default: volumeThreshold, min: 1, max: 1_000_000 },
      reset_timeout_ms: { kind: 'int', default: resetTimeoutMs, min: 10, max: 3_600_000 },
      rolling_window_ms: { kind: 'int', default: 10_000, min: 100, max: 3_600_000 },
      ...extra,
    },
  };
}

/** The same fields, every one optional: a deployment overrides only what it names. */
function partialFields(fields: Record<string, Field>): Record<string, Field> {
  const out: Record<string, Field> = {};
  for (const [k, f] of Object.entries(withoutDefaults(fields))) {
    out[k] = f.kind === 'object' ? { ...f, optional: true, fields: partialFields(f.fields) } : f.kind === 'string' ? { ...f, optional: true } : f;
  }
  return out;
}

function withoutDefaults(fields: Record<string, Field>): Record<string, Field> {
  const out: Record<string, Field> = {};
  for (const [k, f] of Object.entries(fields)) {
    const { default: _ignored, ...rest } = f as Field & { default?: unknown };
    out[k] = rest as Field;
  }
  return out;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/**
 * Returns a new value with defaults filled in; throws ConfigError naming the bad field.
 * Config values may stand for another type: text for numbers and booleans (environment
 * variables), an integer for a string (YAML's `version: 1`), null for a default. `exact`
 * (JSON request bodies, whose contract is the admin API's OpenAPI document) takes each
 * value as the type it has.
 */
/**
 * `value` with the numbers YAML made of its string fields turned back into text, as the
 * config file reads them, and nothing else changed (no default filled in, no other check):
 * for a spec read from a YAML file and sent to the admin API, which takes its body as typed
 * (sluice deploy -f). Throws a ConfigError for a decimal, whose text is lost.
 */
export function stringsAsWritten(field: Field, value: unknown, path: string): unknown {
  const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  switch (field.kind) {
    case 'string':
      return typeof value === 'number' ? numberAsText(value, path) : value;
    case 'object':
      return isMap(value) ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k in field.fields ? stringsAsWritten(field.fields[k]!, v, join(path, k)) : v])) : value;
    case 'array':
      return Array.isArray(value) ? value.map((v, i) => stringsAsWritten(field.of, v, `${path}[${i}]`)) : value;
    case 'map':
      return isMap(value) ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, stringsAsWritten(field.of, v, join(path, k))])) : value;
    default:
      return value;
  }
}

// YAML reads `version: 1.10` as the number 1.1: the text written is gone, and a name made of
// the number would not be it (deployment x-1.1, not x-1.10). An integer is its text.
function numberAsText(value: number, path: string): string {
  if (!Number.isInteger(value)) throw new ConfigError(path, `expected a string, got the number ${value} (YAML drops a decimal's trailing zeros: 1.10 reads as 1.1); quote it, as "1.10"`);
  return String(value);
}

export function validate(field: Field, value: unknown, path: string, exact = false): unknown {
  switch (field.kind) {
    case 'int':
    case 'number': {
      if (value === undefined) {
        if (field.default === undefined) return undefined;
        return field.default;
      }
      const n = !exact && typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n)) throw new ConfigError(path, `expected a number, got ${typeName(value)}`);
      if (field.kind === 'int' && !Number.isInteger(n)) throw new ConfigError(path, `expected an integer, got ${n}`);
      if (field.min !== undefined && n < field.min) throw new ConfigError(path, `must be >= ${field.min}, got ${n}`);
      if (field.max !== undefined && n > field.max) throw new ConfigError(path, `must be <= ${field.max}, got ${n}`);
      return n;
    }
    case 'string': {
      if (value === undefined) {
        if (field.default === undefined) {
          if (field.optional === true) return undefined;
          throw new ConfigError(path, 'is required');
        }
        return field.default;
      }
      if (value === null && field.nullable) return null;
      if (!exact && typeof value === 'number') value = numberAsText(value, path);
      if (typeof value !== 'string') throw new ConfigError(path, `expected a string, got ${typeName(value)}`);
      if (field.enum && !field.enum.includes(value)) throw new ConfigError(path, `must be one of ${field.enum.join(', ')}, got ${shown(field, value)}`);
      if (field.pattern && !field.pattern.test(value)) throw new ConfigError(path, `${shown(field, value)} does not match ${field.pattern}`);
      if (field.url === true && !parsesAsUrl(value)) throw new ConfigError(path, `${shown(field, value)} is not a valid URL (a port of 1-65535, a host, percent signs as %XX)`);
      if (field.reserved?.includes(value)) throw new ConfigError(path, reservedReason(value));
      return value;
    }
    case 'bool': {
      if (value === undefined) return field.default;
      if (!exact && (value === 'true' || value === '1')) return true;
      if (!exact && (value === 'false' || value === '0')) return false;
      if (typeof value !== 'boolean') throw new ConfigError(path, `expected true or false, got ${typeName(value)}`);
      return value;
    }
    case 'object': {
      if (value === undefined || (value === null && !exact)) {
        if (field.optional) return undefined;
        value = {};
      }
      // Checked here too, so that a bad bare string is named as written (`urls[0]`).
      if (typeof value === 'string' && field.shorthand !== undefined) value = { [field.shorthand]: validate(field.fields[field.shorthand]!, value, path, exact) };
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(path, `expected an object, got ${typeName(value)}`);
      const input = value as Record<string, unknown>;
      for (const key of Object.keys(input)) {
        // Own fields only: `in` found toString, constructor and __proto__ on Object.prototype,
        // and such a key passed for a known one, then vanished.
        if (!Object.hasOwn(field.fields, key)) throw new ConfigError(join(path, key), 'unknown option');
      }
      const out: Record<string, unknown> = {};
      for (const [key, sub] of Object.entries(field.fields)) {
        const v = validate(sub, input[key], join(path, key), exact);
        if (v !== undefined) out[key] = v;
      }
      return out;
    }
    case 'array': {
      if (value === undefined || (value === null && !exact)) return field.default ?? [];
      if (!Array.isArray(value)) throw new ConfigError(path, `expected a list, got ${typeName(value)}`);
      return value.map((v, i) => validate(field.of, v, `${path}[${i}]`, exact));
    }
    case 'map': {
      if (value === undefined || (value === null && !exact)) return field.default ?? {};
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(path, `expected a map, got ${typeName(value)}`);
      // Entries, not assignments: an assigned `__proto__` key would set the prototype and vanish.
      return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, validate(field.of, v, join(path, k), exact)]));
    }
  }
}

/**
 * What a URL field's users will do with it parses: WHATWG's URL (Node, the gateway's own
 * clients) and the decoding of its user and password (ioredis, which otherwise printed a
 * URL it could not parse, password included, and connected to 127.0.0.1:6379 instead).
 */
function parsesAsUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    return false;
  }
  return true;
}

/** A refused string as an error quotes it: never a secret, nor a URL's password. */
function shown(field: Extract<Field, { kind: 'string' }>, value: string): string {
  if (field.secret === true) return 'the value';
  return `'${field.url === true ? redactUrlSecrets(value) : value}'`;
}

/**
 * The URL with its userinfo's password as `***` (`redis://:***@host`); a userinfo without
 * a colon may be a token alone (`https://TOKEN@host`), so all of it goes. The value was
 * refused, so it may not parse as a URL: the userinfo is what precedes the first `@` of the
 * authority, and without a `//` all of that goes too (it may be `user:password`). The query
 * goes as `?***`: some collectors and registries take their key there (`?api_key=`).
 */
export function redactUrlSecrets(value: string): string {
  return value.replace(/^([^\s/@]*\/\/)?([^\s/@]*)@/, (_m, scheme: string | undefined, userinfo: string) => {
    const colon = scheme === undefined ? -1 : userinfo.indexOf(':');
    return `${scheme ?? ''}${colon < 0 ? '***' : `${userinfo.slice(0, colon)}:***`}@`;
  }).replace(/\?[^#\s]*/, '?***');
}

export function reservedReason(name: string): string {
  return `'${name}' is reserved: the names of the properties every JavaScript object has (${RESERVED_NAMES.join(', ')}) are refused`;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
