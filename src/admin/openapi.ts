// The admin API's contract: an OpenAPI 3.1 document of every route that routes.ts,
// deployments-api.ts, keys-api.ts and models-api.ts register (test/admin/openapi.test.ts
// checks both ways, and validates real answers against it). Request bodies that the config
// schema validates, and the config objects the views show, are derived from its Field trees
// (config/json-schema.ts); the rest is described here, next to nothing else.

import { readFileSync } from 'node:fs';
import { apiKeySchema, configSchema, deploymentSchema, jsonSchemaOf, type Field, type JsonSchema } from '../config/index.js';
import { ERRORS } from '../errors/index.js';

type Schema = JsonSchema;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const orNull = (s: Schema): Schema => ({ anyOf: [s, { type: 'null' }] });
const str: Schema = { type: 'string' };
const int: Schema = { type: 'integer', minimum: 0 };
const num: Schema = { type: 'number' };
const time: Schema = { type: 'string', format: 'date-time' };
const oneOfStrings = (...values: string[]): Schema => ({ type: 'string', enum: values });
const listOf = (items: Schema): Schema => ({ type: 'array', items });
const mapOf = (values: Schema): Schema => ({ type: 'object', additionalProperties: values });
/** Views are closed: a field added to one without the document saying so fails the contract test. */
function object(properties: Record<string, Schema>, optional: readonly string[] = []): Schema {
  return { type: 'object', properties, required: Object.keys(properties).filter((k) => !optional.includes(k)), additionalProperties: false };
}

function fieldOf(schema: Field, name: string): Field {
  if (schema.kind !== 'object' || schema.fields[name] === undefined) throw new Error(`the config schema has no field ${name}`);
  return schema.fields[name];
}

const DEPLOYMENT_STATES = oneOfStrings('pending', 'starting', 'ready', 'unhealthy', 'draining', 'stopped', 'failed', 'hibernated');
/** `<model>-<version>`, as `fallbacks` names deployments. */
const DEPLOYMENT_ID = (jsonSchemaOf(fieldOf(deploymentSchema, 'fallbacks'), 'output') as { items: Schema }).items;

/** Request body of /deploy/{model}/{version}: a deployment whose model, version and runtime (mlflow) come from the path. */
function seedDeploySchema(): Schema {
  const spec = jsonSchemaOf(deploymentSchema, 'input') as { properties: Record<string, Schema> };
  const { model: _m, version: _v, runtime: _r, ...properties } = spec.properties;
  return { type: 'object', properties, additionalProperties: false };
}

const weights = mapOf({ type: 'number', minimum: 0, maximum: 1_000_000 });
// What a deployment ran, served and cost (GET /v1/costs), live or undeployed.
const COST_FIELDS: Record<string, Schema> = {
  prices: jsonSchemaOf(fieldOf(deploymentSchema, 'cost'), 'output'),
  running_hours: num, hibernated_hours: num, saved_by_hibernation_usd: num, predictions: int, input_tokens: num, output_tokens: num,
  cost_usd: object({ replica_hours: num, requests: num, input_tokens: num, output_tokens: num, total: num }),
  cost_per_1k_predictions_usd: orNull(num),
};
const windowFigures = object({ requests: int, errors: int, error_rate: num, latency_s: orNull(num) });

const schemas: Record<string, Schema> = {
  Error: object({
    error: {
      type: 'object',
      properties: {
        code: oneOfStrings(...Object.keys(ERRORS)),
        message: str,
        request_id: str,
        field: { type: 'string', description: 'The request field at fault (SLUICE_ERR_INVALID_FIELD).' },
        deployment: { description: 'SLUICE_ERR_DEPLOY_FAILED: the deployment as it stands; SLUICE_ERR_CONFIG_OWNED: its id.' },
        source: { type: 'string', description: 'SLUICE_ERR_CONFIG_OWNED: who owns it (config).' },
        dependency: { type: 'string', description: 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN, SLUICE_ERR_DEPENDENCY_UNAVAILABLE: the failing dependency (redis, mlflow).' },
        use: { type: 'string', description: 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN, SLUICE_ERR_DEPENDENCY_UNAVAILABLE: what the gateway uses it for (state, registry).' },
      },
      required: ['code', 'message', 'request_id'],
    },
  }),
  DeploymentSpec: jsonSchemaOf(deploymentSchema, 'input'),
  SeedDeploySpec: seedDeploySchema(),
  ApiKeySpec: jsonSchemaOf(apiKeySchema, 'input'),
  HealthCheckView: object({
    status: oneOfStrings('starting', 'healthy', 'unhealthy'), check: { type: 'string', description: '`tcp` or `GET <path>`' }, interval_ms: int,
    checks: int, failures: int, consecutive_successes: int, consecutive_failures: int, last_check_at: orNull(time), last_error: orNull(str),
  }),
  ReplicaView: object({
    id: str, url: str, port: int, borrowed: { type: 'boolean', description: 'A server another gateway instance of this host runs (see the deployment\'s `shared`).' },
    weight: num, priority: int, cost: num,
    state: oneOfStrings('starting', 'ready', 'restarting', 'stopping', 'stopped', 'failed', 'unhealthy'),
    breaker: orNull(oneOfStrings('closed', 'open', 'half-open', 'unknown')), pid: orNull(int), restarts: int, last_error: orNull(str),
    health: orNull(ref('HealthCheckView')),
    load: { ...object({ waiting: orNull(num), running: orNull(num), kv_cache_usage: orNull(num), error: orNull(str) }), description: 'queue_aware deployments only: what the server reports.' },
  }, ['load']),
  DeploymentView: object({
    id: str, model: str, version: str, runtime: jsonSchemaOf(fieldOf(deploymentSchema, 'runtime'), 'output'), state: DEPLOYMENT_STATES,
    source: oneOfStrings('config', 'api'),
    shadows: orNull(object({ source: oneOfStrings('api'), created_at: time })),
    auth: orNull(jsonSchemaOf(fieldOf(deploymentSchema, 'auth'), 'output')),
    route: str, created_at: time, last_error: orNull(str),
    policies: jsonSchemaOf(fieldOf(configSchema, 'policies'), 'output'),
    scale: jsonSchemaOf(fieldOf(deploymentSchema, 'scale'), 'output'),
    hibernated_since: orNull(time), served_model: orNull(str),
    shared: {
      ...orNull(object({ role: oneOfStrings('owner', 'borrower'), owner: orNull(str) })),
      description: 'A deployment that may hibernate, with the state in Redis: the gateway instances of one host run one set of its servers. `owner`: this instance runs them (`owner` is `this instance`); `borrower`: it routes to those of instance `owner` (null until known).',
    },
    replicas: listOf(ref('ReplicaView')),
  }),
  DeploymentList: object({ deployments: listOf(ref('DeploymentView')) }),
  DeploymentEvents: object({
    id: str,
    events: listOf(object({ at: time, action: oneOfStrings('scale_up', 'scale_down', 'scale_up_refused', 'hibernate', 'wake', 'wake_failed'), from: int, to: int, why: str })),
  }),
  DeploymentLogs: object({ id: str, lines: listOf(object({ stream: oneOfStrings('stdout', 'stderr'), line: str, at: { type: 'number', description: 'ms since the epoch' }, replica: str })) }),
  Undeployed: object({ id: str, state: oneOfStrings('stopped') }),
  SeedDeployment: object({ model: str, version: str, port: orNull(int), route: str, state: DEPLOYMENT_STATES, runtime: str }),
  DeployedModels: object({ deployed_models: listOf(ref('SeedDeployment')) }),
  RegistryModels: object({ models: listOf(object({ name: str, latest_versions: listOf(str), aliases: mapOf(str) })) }),
  RegistryVersions: object({
    model: str,
    versions: listOf(object({ version: str, status: str, stage: str, run_id: str, source: str, aliases: listOf(str), deployed: { type: 'boolean' } }, ['status', 'stage', 'run_id', 'source'])),
  }),
  KeyView: keyView({}),
  KeyCreated: keyView({ key: { type: 'string', description: 'The generated key, shown this once.' } }, ['key']),
  KeyDeleted: keyView({ state: oneOfStrings('deleted') }),
  KeyList: object({ keys: listOf(ref('KeyView')) }),
  Sticky: {
    oneOf: [
      object({ by: oneOfStrings('header'), name: { type: 'string', pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' } }),
      object({ by: oneOfStrings('api_key') }),
    ],
  },
  TrafficRequest: object({ weights: { ...weights, minProperties: 1, description: 'version: weight; at least one above 0' }, sticky: orNull(ref('Sticky')) }, ['sticky']),
  PromoteRequest: object({ version: { type: 'string', minLength: 1 } }),
  // control/rollout.ts rolloutSpec validates these; the contract test checks that the defaults agree.
  RolloutRequest: object({
    canary: { type: 'string', minLength: 1 },
    steps: { type: 'array', items: { type: 'number', exclusiveMinimum: 0, maximum: 100 }, minItems: 1, maxItems: 100, default: [5, 25, 50, 100], description: 'canary weights in percent, each above the one before' },
    interval_s: { type: 'number', minimum: 0.2, maximum: 86_400, default: 60 },
    min_requests: { type: 'integer', minimum: 1, maximum: 1e9, default: 100 },
    max_error_rate: { type: 'number', minimum: 0, maximum: 1, default: 0.05 },
    error_margin: { type: 'number', minimum: 0, maximum: 1, default: 0.01 },
    max_latency_ratio: { type: 'number', minimum: 1, maximum: 1000, default: 2 },
    latency: { ...oneOfStrings('p99_ttfb', 'p99_total'), default: 'p99_ttfb' },
    failed_checks: { type: 'integer', minimum: 1, maximum: 1000, default: 2 },
  }, ['steps', 'interval_s', 'min_requests', 'max_error_rate', 'error_margin', 'max_latency_ratio', 'latency', 'failed_checks']),
  RolloutView: object({
    canary: str, stable: str, status: oneOfStrings('progressing', 'waiting for traffic', 'promoted', 'rolled_back', 'aborted'), step: int, weight: num,
    failed_checks: int, started_at: time, finished_at: orNull(time),
    spec: object({
      canary: str, steps: listOf(num), interval_s: num, min_requests: int, max_error_rate: num, error_margin: num, max_latency_ratio: num,
      latency: oneOfStrings('p99_ttfb', 'p99_total'), failed_checks: int,
    }),
    checks: listOf(object({ at: time, step: int, weight: num, canary: windowFigures, stable: windowFigures, verdict: oneOfStrings('healthy', 'failed', 'waiting'), why: str })),
  }),
  ModelTraffic: object({
    model: str,
    versions: listOf(object({ version: str, deployment: str, state: DEPLOYMENT_STATES, ready_replicas: int, weight: orNull(num), share: num })),
    weights: orNull(weights), effective: mapOf(num), stable: orNull(str), sticky: orNull(ref('Sticky')),
    source: oneOfStrings('default', 'config', 'api'), fallback: orNull(oneOfStrings('stable', 'any_ready')), rollout: orNull(ref('RolloutView')),
  }),
  ModelList: object({ models: listOf(ref('ModelTraffic')) }),
  TrafficEvents: object({
    model: str,
    events: listOf(object({
      at: time, who: oneOfStrings('api', 'config', 'gateway', 'rollout'), action: oneOfStrings('traffic', 'promote', 'rollback', 'fallback', 'version_removed', 'config'),
      from: orNull(weights), to: orNull(weights), why: str,
    })),
  }),
  Costs: object({
    currency: oneOfStrings('usd'),
    deployments: listOf(object({ id: str, state: DEPLOYMENT_STATES, ...COST_FIELDS })),
    removed: {
      ...listOf(object({ id: str, model: str, version: str, removed_at: time, ...COST_FIELDS })),
      description: 'Deployments undeployed since the gateway started, newest first, with their figures when they stopped (at most 1000)',
    },
    removed_dropped: { ...int, description: 'Undeployed deployments left out of `removed` (the oldest, past 1000)' },
  }),
  Stats: object({
    at: time,
    deployments: listOf(object({
      deployment: str, model: str, version: str, state: DEPLOYMENT_STATES,
      requests: int, errors: { ...int, description: '5xx answers, the gateway\'s own included, and answers that failed after their head (a stream that ended with an error event, a cut connection)' },
      status: object({ '2xx': int, '3xx': int, '4xx': int, '5xx': int }),
      p50_ms: orNull(num), p99_ms: orNull(num),
      ttft_p50_ms: { ...orNull(num), description: 'Time to the first response body byte of 2xx answers (a streamed answer\'s first token)' }, ttft_p99_ms: orNull(num),
      input_tokens: num, output_tokens: num, cache_hits: int, cache_misses: int, cost_usd: num,
      in_flight: { ...int, description: 'Requests on its replicas now, across workers' }, queued: { ...int, description: 'Requests waiting for a replica now' },
    })),
  }),
  Health: object({ status: oneOfStrings('ok'), uws_native: { type: 'boolean' } }),
  Ready: object({ status: oneOfStrings('ready', 'not ready') }),
};

function keyView(extra: Record<string, Schema>, optional: readonly string[] = []): Schema {
  const limits = jsonSchemaOf(fieldOf(apiKeySchema, 'limits'), 'output');
  return object({
    name: str, label: { type: 'string', description: '<name>#<first 8 hex digits of the digest>' }, source: oneOfStrings('config', 'api'),
    deployments: listOf(str), limits, deployment_limits: limits, created_at: orNull(time), ...extra,
  }, optional);
}

const errorResponses: Record<number, { name: string; description: string }> = {
  400: { name: 'BadRequest', description: 'Malformed JSON, a field that is not valid, or a query parameter the operation does not take or given twice (`error.field` names it).' },
  401: { name: 'Unauthorized', description: 'admin.token is set and the request has no valid `Authorization: Bearer <token>`.' },
  403: { name: 'Forbidden', description: 'A browser sent it for a page of another site (`Sec-Fetch-Site` other than same-origin or none, an `Origin` not this server\'s `Host`), or, without admin.token, to a `Host` that is not an IP address, localhost or admin.host (DNS rebinding).' },
  404: { name: 'NotFound', description: 'No such deployment, key, model or registry entry.' },
  409: { name: 'Conflict', description: 'It exists already, is defined in the config file (SLUICE_ERR_CONFIG_OWNED), its state does not allow this now, or a capacity of the gateway is used up (SLUICE_ERR_LIMIT_REACHED).' },
  413: { name: 'TooLarge', description: 'The body exceeds 1 MiB.' },
  415: { name: 'UnsupportedEncoding', description: 'The body is compressed (`Content-Encoding` other than identity), which the admin API does not decode (SLUICE_ERR_CONTENT_ENCODING).' },
  500: { name: 'Internal', description: 'The change could not be stored: a state file that cannot be written (a full disk; the message names the file and the cause). Nothing was changed, and a later write does not store it.' },
  502: { name: 'BadGateway', description: 'The deployment failed to start (`?wait=true`: SLUICE_ERR_DEPLOY_FAILED, with its view), or the MLflow registry answered wrongly.' },
  503: { name: 'Unavailable', description: 'No free port left in `ports`; the MLflow registry is not configured or unreachable; the state store in Redis did not answer (SLUICE_ERR_DEPENDENCY_UNAVAILABLE); or a dependency\'s circuit breaker is open (SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN: the call was not made). For a change that the state store must keep, nothing was changed; the last two come with `Retry-After`.' },
};

interface Operation {
  readonly id: string;
  readonly summary: string;
  readonly tag: string;
  readonly description?: string;
  /** Reachable without the admin token (load balancers probe it; the document and its page are the same for every sluice). */
  readonly public?: boolean;
  readonly query?: ReadonlyArray<{ readonly name: string; readonly schema: Schema; readonly description: string }>;
  readonly body?: string;
  /** Path parameters checked against these rather than PATH_PARAMS's. */
  readonly names?: Record<string, Schema>;
  readonly ok: readonly [status: number, description: string, content: Record<string, { schema: Schema }>];
  /** Another answer that is not an error body (readiness: 503 with the same shape as its 200). */
  readonly also?: readonly [status: number, description: string, content: Record<string, { schema: Schema }>];
  readonly errors?: readonly number[];
}

const json = (name: string): Record<string, { schema: Schema }> => ({ 'application/json': { schema: ref(name) } });
const graceMs = { name: 'grace_ms', schema: { type: 'integer', minimum: 0, maximum: 600_000, default: 30_000 }, description: 'How long requests in flight may finish first.' };
const wait = { name: 'wait', schema: { type: 'string', enum: ['true', 'false'] }, description: '`true`: answer once the deployment is ready, failed or unhealthy (502 for the last two).' };

const PATH_PARAMS: Record<string, { readonly schema: Schema; readonly description: string }> = {
  id: { schema: DEPLOYMENT_ID, description: 'Deployment id, `<model>-<version>`.' },
  model: { schema: { type: 'string', minLength: 1 }, description: 'Model name.' },
  version: { schema: { type: 'string', minLength: 1 }, description: 'Model version.' },
  name: { schema: { type: 'string', minLength: 1 }, description: 'Key name.' },
};
/** The deployment service's routes check names against the config schema's patterns (400 otherwise). */
const REGISTRY_NAMES: Record<string, Schema> = { model: jsonSchemaOf(fieldOf(deploymentSchema, 'model'), 'output'), version: jsonSchemaOf(fieldOf(deploymentSchema, 'version'), 'output') };
/** A deploy names the version by its number or by one of its aliases (MLflow's alias names). */
const DEPLOY_NAMES: Record<string, Schema> = {
  ...REGISTRY_NAMES,
  version: { type: 'string', pattern: '^[\\w-]{1,255}$', description: 'A version number, or an alias that names one (`champion`; `latest`: the highest version), resolved at the deploy' },
};

const operations: Record<string, Record<string, Operation>> = {
  '/healthz': { get: { id: 'healthz', tag: 'operations', public: true, summary: 'Liveness: 200 while the process runs', ok: [200, 'Alive', json('Health')] } },
  '/readyz': {
    get: {
      id: 'readyz', tag: 'operations', public: true, summary: 'Readiness: 503 at start-up and while draining',
      ok: [200, 'Ready', json('Ready')], also: [503, 'Not ready: starting, a deployment meant to run has no ready replica yet, or draining', json('Ready')],
    },
  },
  '/metrics': { get: { id: 'metrics', tag: 'operations', summary: 'Prometheus metrics', ok: [200, 'Prometheus text exposition 0.0.4', { 'text/plain': { schema: str } }] } },
  '/v1/costs': { get: { id: 'costs', tag: 'operations', summary: 'What each deployment ran, served and cost since the gateway started', ok: [200, 'Costs', json('Costs')] } },
  '/v1/stats': { get: { id: 'stats', tag: 'operations', summary: 'Each deployment\'s requests, errors, latency and TTFT quantiles, tokens, cache, cost and load since the gateway started (rates: the difference of two polls)', ok: [200, 'Stats', json('Stats')] } },
  '/openapi.json': { get: { id: 'openapi', tag: 'operations', public: true, summary: 'This document', ok: [200, 'OpenAPI 3.1', { 'application/json': { schema: { type: 'object' } } }] } },
  '/docs': { get: { id: 'docs', tag: 'operations', public: true, summary: 'This document as a web page', ok: [200, 'HTML', { 'text/html': { schema: str } }] } },
  '/v1/events/stream': {
    get: {
      id: 'eventStream', tag: 'operations', summary: 'What the dashboard shows, live (server-sent events)',
      description: 'Every second `event: stats` (the `GET /v1/stats` body); `event: deployments` (the `GET /v1/deployments` body) and `event: models` '
        + '(`{"models": [...], "events": {"<model>": [...]}}`: the `GET /v1/models` list and each model\'s events) first, then whenever they change. '
        + 'A comment line every 15 s when nothing else is sent. Events a slow client could not take are skipped (stats) or sent at the next second (the others). '
        + 'The stream ends after `seconds`, and at shutdown; connect again (`retry` says when).',
      query: [{ name: 'seconds', schema: { type: 'integer', minimum: 1, maximum: 3600, default: 300 }, description: 'How long the stream lasts.' }],
      ok: [200, 'An event stream', { 'text/event-stream': { schema: str } }], errors: [400],
    },
  },
  '/ui': { get: { id: 'dashboard', tag: 'operations', public: true, summary: 'The dashboard (it asks for the admin token when the API needs one)', ok: [200, 'HTML', { 'text/html': { schema: str } }] } },
  '/ui/app.js': { get: { id: 'dashboardScript', tag: 'operations', public: true, summary: 'The dashboard\'s script', ok: [200, 'JavaScript', { 'text/javascript': { schema: str } }] } },
  '/v1/deployments': {
    get: { id: 'listDeployments', tag: 'deployments', summary: 'Every deployment', ok: [200, 'Deployments', json('DeploymentList')] },
    post: {
      id: 'deploy', tag: 'deployments', summary: 'Deploy a model version', body: 'DeploymentSpec', query: [wait],
      description: 'Starts its replicas (ports from `ports`) and stores it, so it comes back after a restart. Fields that depend on the runtime are checked too (400 naming the field).',
      ok: [201, 'Deployed (starting, unless `?wait=true`)', json('DeploymentView')], errors: [400, 409, 413, 415, 500, 502, 503],
    },
  },
  '/v1/deployments/{id}': {
    get: { id: 'getDeployment', tag: 'deployments', summary: 'One deployment', ok: [200, 'Deployment', json('DeploymentView')], errors: [404] },
    delete: {
      id: 'undeploy', tag: 'deployments', summary: 'Drain, stop and forget a deployment made through the API', query: [graceMs],
      ok: [200, 'Stopped', json('Undeployed')], errors: [400, 404, 409, 500, 503],
    },
  },
  '/v1/deployments/{id}/hibernate': {
    post: {
      id: 'hibernate', tag: 'deployments', summary: 'Stop the replicas until a request (or wake) starts them again', query: [graceMs],
      ok: [200, 'Hibernated', json('DeploymentView')], errors: [400, 404, 409],
    },
  },
  '/v1/deployments/{id}/wake': { post: { id: 'wake', tag: 'deployments', summary: 'Start a hibernated deployment, or a failed one anew (502 when it could not be started: it is hibernated again)', ok: [200, 'Starting', json('DeploymentView')], errors: [404, 502] } },
  '/v1/deployments/{id}/events': {
    get: { id: 'deploymentEvents', tag: 'deployments', summary: 'Scale-ups, scale-downs, refusals, hibernations and wakes', ok: [200, 'Events, oldest first', json('DeploymentEvents')], errors: [404] },
  },
  '/v1/deployments/{id}/logs': {
    get: {
      id: 'deploymentLogs', tag: 'deployments', summary: 'The model servers\' latest output lines',
      query: [{ name: 'tail', schema: { type: 'integer', minimum: 1, maximum: 100_000, default: 200 }, description: 'How many lines.' }],
      ok: [200, 'Lines of every replica, in time order', json('DeploymentLogs')], errors: [400, 404],
    },
  },
  '/get_model_list': {
    get: { id: 'getModelList', tag: 'deployment service', summary: 'Registered models in MLflow', ok: [200, 'Models', json('RegistryModels')], errors: [404, 502, 503] },
  },
  '/get_model_version_list/{model}': {
    get: { id: 'getModelVersionList', tag: 'deployment service', summary: 'A registered model\'s versions', names: REGISTRY_NAMES, ok: [200, 'Versions', json('RegistryVersions')], errors: [400, 404, 502, 503] },
  },
  '/deploy/{model}/{version}': {
    post: {
      id: 'deployFromRegistry', tag: 'deployment service', summary: 'Deploy a registered MLflow model version, named by its number or an alias (`mlflow models serve`)', body: 'SeedDeploySpec', query: [wait], names: DEPLOY_NAMES,
      ok: [201, 'Deployed', json('SeedDeployment')], errors: [400, 404, 409, 413, 415, 500, 502, 503],
    },
  },
  '/get_deployed_models': { get: { id: 'getDeployedModels', tag: 'deployment service', summary: 'Every deployment', ok: [200, 'Deployments', json('DeployedModels')] } },
  '/undeploy/{id}': {
    post: { id: 'undeployById', tag: 'deployment service', summary: 'Same as DELETE /v1/deployments/{id}', query: [graceMs], ok: [200, 'Stopped', json('Undeployed')], errors: [400, 404, 409, 500, 503] },
  },
  '/v1/keys': {
    get: { id: 'listKeys', tag: 'keys', summary: 'Every client API key (config and API)', ok: [200, 'Keys', json('KeyList')] },
    post: {
      id: 'createKey', tag: 'keys', summary: 'Add a client API key', body: 'ApiKeySpec',
      description: 'Without `key` and `key_sha256` a key is generated and shown in this answer only; only its SHA-256 is kept.',
      ok: [201, 'Added', json('KeyCreated')], errors: [400, 409, 413, 415, 500, 503],
    },
  },
  '/v1/keys/{name}': {
    get: { id: 'getKey', tag: 'keys', summary: 'One key', ok: [200, 'Key', json('KeyView')], errors: [404] },
    delete: { id: 'deleteKey', tag: 'keys', summary: 'Remove a key added through the API', ok: [200, 'Removed', json('KeyDeleted')], errors: [404, 409, 500, 503] },
  },
  '/v1/models': { get: { id: 'listModels', tag: 'traffic', summary: 'Every model\'s versions, weights and routing', ok: [200, 'Models', json('ModelList')] } },
  '/v1/models/{model}': { get: { id: 'getModel', tag: 'traffic', summary: 'One model\'s traffic', ok: [200, 'Model', json('ModelTraffic')], errors: [404] } },
  '/v1/models/{model}/events': {
    get: { id: 'modelEvents', tag: 'traffic', summary: 'Every change of the model\'s traffic', ok: [200, 'Events, oldest first', json('TrafficEvents')], errors: [404] },
  },
  '/v1/models/{model}/traffic': {
    put: { id: 'setTraffic', tag: 'traffic', summary: 'Set the alias weights (and sticky rule)', body: 'TrafficRequest', ok: [200, 'Model', json('ModelTraffic')], errors: [400, 404, 409, 413, 415, 500, 503] },
  },
  '/v1/models/{model}/promote': {
    post: { id: 'promote', tag: 'traffic', summary: 'All traffic to a version, which becomes stable', body: 'PromoteRequest', ok: [200, 'Model', json('ModelTraffic')], errors: [400, 404, 409, 413, 415, 500, 503] },
  },
  '/v1/models/{model}/rollback': {
    post: { id: 'rollback', tag: 'traffic', summary: 'All traffic back to the stable version (no body)', ok: [200, 'Model', json('ModelTraffic')], errors: [400, 404, 409, 413, 415, 500, 503] },
  },
  '/v1/models/{model}/rollout': {
    put: {
      id: 'startRollout', tag: 'traffic', summary: 'Start a canary rollout', body: 'RolloutRequest',
      ok: [201, 'Started', json('ModelTraffic')], errors: [400, 404, 409, 413, 415, 500, 503],
    },
    delete: { id: 'abortRollout', tag: 'traffic', summary: 'Abort the rollout in progress', ok: [200, 'Aborted', json('ModelTraffic')], errors: [404, 500, 503] },
  },
};

function operationObject(path: string, op: Operation): Record<string, unknown> {
  const pathParams = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => {
    const p = PATH_PARAMS[name!];
    if (p === undefined) throw new Error(`no description of the path parameter ${name}`);
    return { name, in: 'path', required: true, schema: op.names?.[name!] ?? p.schema, description: p.description };
  });
  const query = (op.query ?? []).map((q) => ({ name: q.name, in: 'query', required: false, schema: q.schema, description: q.description }));
  // Any operation refuses a query parameter it does not take (400).
  const statuses = [...new Set([...(op.errors ?? []), 400, ...(op.public === true ? [] : [401, 403])])].sort((a, b) => a - b);
  const [okStatus, okDescription, content] = op.ok;
  return {
    operationId: op.id, summary: op.summary, tags: [op.tag],
    ...(op.description === undefined ? {} : { description: op.description }),
    ...(op.public === true ? { security: [] } : {}),
    ...(pathParams.length + query.length === 0 ? {} : { parameters: [...pathParams, ...query] }),
    ...(op.body === undefined ? {} : { requestBody: { required: true, content: { 'application/json': { schema: ref(op.body) } } } }),
    responses: {
      [okStatus]: { description: okDescription, content },
      ...(op.also === undefined ? {} : { [op.also[0]]: { description: op.also[1], content: op.also[2] } }),
      ...Object.fromEntries(statuses.map((s) => [s, { $ref: `#/components/responses/${errorResponses[s]!.name}` }])),
    },
  };
}

function buildDocument(): Record<string, unknown> {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'sluice admin API',
      version: pkg.version,
      description: 'Deployments, client API keys and alias traffic of a sluice gateway (admin port, 127.0.0.1:8081 by default). '
        + 'Every error is `{"error": {"code": "SLUICE_ERR_...", "message": ..., "request_id": ...}}`.',
    },
    tags: [
      { name: 'deployments', description: 'Model versions and their replicas' },
      { name: 'deployment service', description: 'The deployment service\'s original endpoints: same paths, same meaning' },
      { name: 'keys', description: 'Client API keys (stored as SHA-256 digests)' },
      { name: 'traffic', description: 'Alias weights, promotion, rollback and canary rollouts' },
      { name: 'operations', description: 'Health, readiness, metrics, costs, the dashboard, its live feed and this document' },
    ],
    security: [{ adminToken: [] }],
    paths: Object.fromEntries(Object.entries(operations).map(([path, ops]) => [
      path, Object.fromEntries(Object.entries(ops).map(([method, op]) => [method, operationObject(path, op)])),
    ])),
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'admin.token (or SLUICE_ADMIN_TOKEN); without one every endpoint is open and the admin API listens on loopback only.' } },
      schemas,
      responses: Object.fromEntries(Object.entries(errorResponses).map(([status, r]) => [r.name, {
        description: r.description,
        ...(status === '401' ? { headers: { 'WWW-Authenticate': { required: true, schema: { type: 'string', const: 'Bearer' } } } } : {}),
        ...(status === '503' ? { headers: { 'Retry-After': { required: false, description: 'Seconds: a dependency\'s failure may pass by then.', schema: { type: 'string' } } } } : {}),
        content: json('Error'),
      }])),
    },
  };
}

let built: Record<string, unknown> | null = null;

/** The document (built once: it depends on the code only, never on the config or the state). */
export function adminApiDocument(): Record<string, unknown> {
  return (built ??= buildDocument());
}
