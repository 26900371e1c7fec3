import { isLoopbackAddress } from '../host-guard.js';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism, networkInterfaces } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseDocument, visit } from 'yaml';
import { otelOverrides } from './otel-env.js';
import { ConfigError, configSchema, healthCheckFields, redactUrlSecrets, validate } from './schema.js';
import type { Config, DeploymentConfig, HealthCheckConfig, PoliciesConfig, PoliciesOverride } from './types.js';
import { hashKey } from '../api-key-digest.js';

/** The file `sluice serve` reads when no --config is given. */
export const DEFAULT_CONFIG_FILE = fileURLToPath(new URL("../../config/default.yaml", import.meta.url));

// Environment variables override the file; each maps to one field of the schema.
const ENV_OVERRIDES: ReadonlyArray<readonly [string, readonly string[]]> = [
  ['SLUICE_PORT', ['listen', 'port']],
  ['SLUICE_HOST', ['listen', 'host']],
  ['SLUICE_ADMIN_PORT', ['admin', 'port']],
  ['SLUICE_ADMIN_HOST', ['admin', 'host']],
  ['SLUICE_ADMIN_TOKEN', ['admin', 'token']],
  ['SLUICE_WORKERS', ['workers']],
  ['SLUICE_STATE_DIR', ['state_dir']],
  ['SLUICE_REDIS_URL', ['redis', 'url']],
  ['MLFLOW_TRACKING_URI', ['mlflow', 'tracking_uri']],
  ['SLUICE_MLFLOW_BIN', ['mlflow', 'bin']],
  ['SLUICE_LOG_LEVEL', ['log', 'level']],
  ['SLUICE_MAX_BODY_BYTES', ['limits', 'max_body_bytes']],
];

export function loadConfig(file: string | null, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown = {};
  if (file !== null) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, `cannot read: ${(err as Error).message}`);
    }
    try {
      raw = parseYamlAsWritten(text) ?? {};
    } catch (err) {
      throw new ConfigError(file, `invalid YAML: ${(err as Error).message}`);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(file ?? '(config)', 'top level must be a map');
  const merged = structuredClone(raw) as Record<string, unknown>;
  const fromEnv = new Map<string, string>();
  for (const [name, path] of ENV_OVERRIDES) {
    const value = env[name];
    if (value !== undefined && value !== '') {
      setPath(merged, path, value);
      fromEnv.set(path.join('.'), name);
    }
  }
  for (const [path, value, name] of otelOverrides(env)) {
    setPath(merged, path, value);
    fromEnv.set(path.join('.'), name);
  }
  try {
    return finalize(validate(configSchema, merged, '') as Config);
  } catch (err) {
    // A bad value that came from the environment: say which variable, not only the field
    // (the file may well hold a good value there). Never echo the value: it may be a token.
    const name = err instanceof ConfigError ? fromEnv.get(err.field) : undefined;
    if (name === undefined) throw err;
    const prefix = `config: ${(err as ConfigError).field}: `;
    const detail = (err as ConfigError).message.startsWith(prefix) ? (err as ConfigError).message.slice(prefix.length) : (err as ConfigError).message;
    throw new ConfigError((err as ConfigError).field, `${detail} (set by ${name})`);
  }
}

/**
 * YAML as the config file reads it. YAML reads `version: 02` (or 007, 1e3, 0x1F, +5) as a
 * number whose text is another: the deployment would be x-2. Such an integer is kept as
 * written; where a number is expected the schema reads the text as one (Number('0x1F') is
 * 31), as it reads environment values. Throws a SyntaxError for a text that is not YAML.
 */
export function parseYamlAsWritten(text: string): unknown {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new SyntaxError(doc.errors[0]!.message);
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value === 'number' && Number.isInteger(node.value) && node.source !== undefined && node.source !== String(node.value)) node.value = node.source;
    },
  });
  return doc.toJS();
}

/** The front end that reads client requests: listen.front_end, auto resolved (node). */
export function frontEndOf(listen: Config['listen']): 'node' | 'uws' {
  return listen.front_end === 'auto' ? 'node' : listen.front_end;
}

/**
 * The Host names the gateway port allows beside the local ones (listen.allowed_hosts), or
 * null when it allows any: it is not bound to a loopback address, or the list has '*'.
 */
export function guardedHosts(listen: Config['listen']): readonly string[] | null {
  return isLoopbackAddress(listen.host) && !listen.allowed_hosts.includes('*') ? listen.allowed_hosts : null;
}

/** Checks that span several fields, then freezes. */
function finalize(config: Config): Config {
  if (config.ports.from > config.ports.to) throw new ConfigError('ports.from', `must be <= ports.to (${config.ports.to})`);
  if (config.limits.max_buffered_bytes < config.limits.max_buffered_body_bytes) {
    throw new ConfigError('limits.max_buffered_bytes', `must be >= limits.max_buffered_body_bytes (${config.limits.max_buffered_body_bytes}): one such body could never be read`);
  }
  // Each worker binds its own socket by address (front-end/reuseport.ts): no resolver there.
  if (frontEndOf(config.listen) === 'node' && config.listen.host !== 'localhost' && isIP(config.listen.host) === 0) {
    throw new ConfigError('listen.host', 'must be an IP address (or localhost) with the node front end (listen.front_end)');
  }
  const hsts = config.listen.hsts;
  if (hsts !== undefined) {
    // RFC 6797 8.1: a browser ignores the header over plain HTTP, so it would promise nothing.
    if (config.listen.tls === undefined) throw new ConfigError('listen.hsts', 'needs listen.tls: Strict-Transport-Security is ignored over plain HTTP');
    if (hsts.preload && (!hsts.include_subdomains || hsts.max_age_s < 31_536_000)) {
      throw new ConfigError('listen.hsts.preload', 'needs include_subdomains: true and max_age_s >= 31536000 (the preload list\'s conditions)');
    }
  }
  const seen = new Set<string>();
  config.deployments.forEach((d, i) => {
    const id = deploymentId(d.model, d.version);
    if (seen.has(id)) throw new ConfigError(`deployments[${i}]`, `duplicate deployment ${id}`);
    seen.add(id);
    const problem = deploymentProblem(d) ?? loopProblem(d, config.listen) ?? shadowProblem(d, config.deployments);
    if (problem !== null) throw new ConfigError(`deployments[${i}].${problem.field}`, problem.reason);
  });
  refusePlaceholders(config);
  const tracking = config.mlflow.tracking_uri;
  // The registry's API paths are added to an http(s) tracking URI: with a query, every call was a 500 showing it, password and all.
  if (tracking !== null && /^https?:/i.test(tracking) && /[?#]/.test(tracking)) {
    throw new ConfigError('mlflow.tracking_uri', `'${redactUrlSecrets(tracking)}' must not have a query or fragment: the registry's API paths are added to it`);
  }
  const keyNames = new Set<string>();
  config.api_keys.forEach((k, i) => {
    if ((k.key === null) === (k.key_sha256 === null)) throw new ConfigError(`api_keys[${i}]`, 'give exactly one of key and key_sha256');
    if (keyNames.has(k.name)) throw new ConfigError(`api_keys[${i}].name`, `duplicate key name ${k.name}`);
    keyNames.add(k.name);
  });
  for (const [model, weights] of Object.entries(config.traffic)) {
    for (const version of Object.keys(weights)) {
      if (!seen.has(deploymentId(model, version))) throw new ConfigError(`traffic.${model}.${version}`, 'no such deployment');
    }
    // As the traffic API refuses them: weights that send nothing would say one thing while the
    // alias, falling back to the newest ready version, did another.
    if (!Object.values(weights).some((w) => w > 0)) throw new ConfigError(`traffic.${model}`, 'must give some version a weight above 0');
  }
  const workers = config.workers === 0 ? availableParallelism() : config.workers;
  // From here on a key given in the clear exists only as its digest.
  const apiKeys = config.api_keys.map((k) => (k.key === null ? k : { ...k, key: null, key_sha256: hashKey(k.key) }));
  // A request presenting the key could only be one of them: the other's scope and limits would never apply.
  const digests = new Map<string, string>();
  apiKeys.forEach((k, i) => {
    const first = digests.get(k.key_sha256!);
    if (first !== undefined) throw new ConfigError(`api_keys[${i}].${config.api_keys[i]!.key === null ? 'key_sha256' : 'key'}`, `the same key as API key ${first}: give each key one name`);
    digests.set(k.key_sha256!, k.name);
  });
  return deepFreeze({ ...config, workers, api_keys: apiKeys });
}

// `${NAME}` (shells, Compose) or `$(NAME)` (Kubernetes): sluice expands neither in the file.
const PLACEHOLDER = /\$\{[^}]*\}|\$\([^)]*\)/;

/**
 * A credential written as a variable placeholder would be taken as it is written: an admin
 * token or API key anyone who reads the file, or knows the convention, could send. Refused,
 * saying what sets it instead (the value is not echoed: it may hold part of a secret).
 */
function refusePlaceholders(config: Config): void {
  const refuse = (field: string, value: string | null, instead: string): void => {
    if (value !== null && PLACEHOLDER.test(value)) throw new ConfigError(field, `holds a variable placeholder, which sluice does not expand (it would be the credential as written): ${instead}`);
  };
  refuse('admin.token', config.admin.token, 'set SLUICE_ADMIN_TOKEN instead');
  refuse('redis.url', config.redis.url, 'set SLUICE_REDIS_URL instead');
  config.api_keys.forEach((k, i) => refuse(`api_keys[${i}].key`, k.key, 'give key_sha256, or add the key through the admin API'));
  for (const [name, value] of Object.entries(config.tracing.headers)) refuse(`tracing.headers.${name}`, value, 'set OTEL_EXPORTER_OTLP_HEADERS instead');
}

/** A deployment's id and the first path segment of its route: `<model>-<version>`. */
export function deploymentId(model: string, version: string): string {
  return `${model}-${version}`;
}

/**
 * Whether `d`'s routes and another deployment's would be one path: its id (the segment
 * `/<model>-<version>/`) is another model's name (that model's alias segment), or its
 * model's name is another deployment's id. The route table can serve only one of them,
 * and the other would be silently unreachable.
 */
export function shadowProblem(d: DeploymentConfig, others: Iterable<DeploymentConfig>): { field: string; reason: string } | null {
  const id = deploymentId(d.model, d.version);
  for (const o of others) {
    if (o.model === d.model) continue;
    const otherId = deploymentId(o.model, o.version);
    if (otherId === d.model) return { field: 'model', reason: `'${d.model}' is the id of deployment ${otherId}: this model's alias and that deployment would share the path /${d.model}/` };
    if (o.model === id) return { field: 'version', reason: `${id} is the name of model ${o.model}: this deployment and that model's alias would share the path /${id}/` };
  }
  return null;
}

/**
 * A remote URL that is this gateway's own port on this machine: every request sent there
 * comes back as a new one, sent there again, until the upstream connections of a worker run
 * out and the innermost waits time out (one client request became 512). By address only: a
 * host name that resolves here is not caught.
 */
export function loopProblem(d: DeploymentConfig, listen: { readonly host: string; readonly port: number }): { field: string; reason: string } | null {
  if (listen.port === 0) return null;
  for (const [i, { url }] of d.urls.entries()) {
    const parsed = URL.canParse(url) ? new URL(url) : null;
    if (parsed === null) continue;
    const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port);
    if (port !== listen.port || !isThisMachine(parsed.hostname, listen.host)) continue;
    return { field: `urls[${i}]`, reason: `${parsed.host} is this gateway's own port (listen.port ${listen.port}): its requests would come back to it, a loop` };
  }
  return null;
}

/**
 * A URL host name (IPv6 in brackets) that names this machine: loopback, any-address, the one
 * the gateway listens on, or, when it listens on every address, any of its interfaces'.
 */
function isThisMachine(hostname: string, listenHost: string): boolean {
  const host = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  if (host === 'localhost' || host.endsWith('.localhost') || host === listenHost.toLowerCase()) return true;
  if (isIP(host) === 4 && (host.startsWith('127.') || host === '0.0.0.0')) return true;
  // WHATWG URL writes an IPv4-mapped address in hex (::ffff:7f00:1).
  if (host === '::1' || host === '::' || host.startsWith('::ffff:7f') || host === '::ffff:0:0') return true;
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return false;
  return Object.values(networkInterfaces()).some((addresses) => addresses?.some((a) => a.address === host) === true);
}

/**
 * What the schema cannot say about one deployment: fields that depend on its runtime.
 * Shared by the config file and the admin API, so that both refuse the same specs.
 */
export function deploymentProblem(d: DeploymentConfig): { field: string; reason: string } | null {
  // `/v1/...` and `/api/...` are the OpenAI and Ollama front door: an alias of that name would hide it.
  if (d.model === 'v1' || d.model === 'api') return { field: 'model', reason: `'${d.model}' is reserved for the front door's /${d.model}/ paths` };
  // The gateway port's probes: routes are matched first, so the alias would answer them (a draining gateway "ready").
  if (d.model === 'healthz' || d.model === 'readyz') return { field: 'model', reason: `'${d.model}' is reserved for the gateway port's /${d.model} probe` };
  if (d.runtime === 'remote' && d.urls.length === 0) return { field: 'urls', reason: 'a remote deployment needs at least one URL' };
  for (const [i, { url }] of d.urls.entries()) {
    // Sent nowhere (a request's credential is a header), so the URL's would silently be dropped.
    const parsed = URL.canParse(url) ? new URL(url) : null;
    if (parsed !== null && (parsed.username !== '' || parsed.password !== '')) {
      return { field: `urls[${i}]`, reason: 'a user or password in a remote URL is not sent: put the credential in an environment variable and name it in auth (auth: {env: NAME, scheme: Basic} for a base64 user:password)' };
    }
  }
  // Ignored on another runtime, they would leave a server nobody asked for in their place:
  // urls without `runtime: remote` (the default is sim) made a simulator answer real clients.
  if (d.runtime !== 'remote' && d.urls.length > 0) return { field: 'urls', reason: `only for the remote runtime, not ${d.runtime} (set runtime: remote)` };
  if (d.runtime !== 'command' && d.command.length > 0) return { field: 'command', reason: `only for the command runtime, not ${d.runtime} (set runtime: command)` };
  for (const name of Object.keys(d.env)) {
    if (name === '' || name.includes('=') || name.includes('\0')) return { field: `env.${name}`, reason: 'is not a valid variable name (empty, or holding = or NUL)' };
  }
  if (d.runtime === 'command') {
    if (d.command.length === 0) return { field: 'command', reason: 'a command deployment needs an argv template' };
    if (d.command[0] === '') return { field: 'command[0]', reason: 'the program to run may not be empty' };
    // Without either the server cannot know the port it was given: it would start on its
    // own default, never pass the readiness probe, and be relaunched on every start.
    if (d.port_env === null && !d.command.some((arg) => arg.includes('{port}'))) {
      return { field: 'command', reason: 'put {port} in an argv element (e.g. "--port", "{port}"), or set port_env to pass the port in an environment variable' };
    }
  } else if (d.port_env !== null) {
    return { field: 'port_env', reason: `only for the command runtime, not ${d.runtime}` };
  }
  if (d.runtime === 'llamacpp') {
    if (d.model_path === null) return { field: 'model_path', reason: 'a llamacpp deployment needs the absolute path of its GGUF file' };
    // Refused here: the server would exit at every start until the replica failed.
    if (!isFile(d.model_path)) return { field: 'model_path', reason: `not a file: ${d.model_path}` };
  } else {
    for (const field of ['model_path', 'python'] as const) {
      if (d[field] !== null) return { field, reason: `only for the llamacpp runtime, not ${d.runtime}` };
    }
  }
  if (d.auth !== undefined) {
    const secret = process.env[d.auth.env] ?? '';
    if (secret === '') return { field: 'auth.env', reason: `the environment variable ${d.auth.env} is not set (it holds the credential; it is never stored)` };
    // RFC 9110 5.5 field-vchar (and obs-text), Node's own check of a header value.
    if (/[^\t\x20-\x7e\x80-\xff]/.test(secret)) return { field: 'auth.env', reason: `the environment variable ${d.auth.env} holds a control character or one above U+00FF, which cannot go in a header` };
  }
  if (d.scale.min_replicas === 0 && d.runtime === 'remote') return { field: 'scale.min_replicas', reason: 'remote replicas are not started by sluice: there is nothing to hibernate' };
  if (d.scale.target_inflight_per_replica > 0) {
    if (d.runtime === 'remote') return { field: 'scale.target_inflight_per_replica', reason: 'remote replicas are not started by sluice: it cannot add or remove them' };
    const max = d.scale.max_replicas === 0 ? d.replicas : d.scale.max_replicas;
    if (max < Math.max(1, d.scale.min_replicas)) return { field: 'scale.max_replicas', reason: `must be at least min_replicas (${d.scale.min_replicas}) and 1` };
    if (d.replicas > max) return { field: 'replicas', reason: `the replicas to start with (${d.replicas}) must not exceed scale.max_replicas (${max})` };
  }
  if (d.fallbacks.includes(deploymentId(d.model, d.version))) return { field: 'fallbacks', reason: 'a deployment cannot be its own fallback' };
  if (d.health_check !== undefined && d.runtime !== 'remote') {
    return { field: 'health_check', reason: `only for the remote runtime: ${d.runtime} replicas are started and watched as processes (see readiness_path)` };
  }
  return null;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    if (typeof cur[key] !== 'object' || cur[key] === null) cur[key] = {};
    cur = cur[key] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

const DEFAULT_HEALTH_CHECK = Object.freeze(validate({ kind: 'object', fields: healthCheckFields }, {}, 'health_check') as HealthCheckConfig);

/** A remote deployment's health check: its own, or every default. */
export function resolveHealthCheck(d: DeploymentConfig): HealthCheckConfig {
  return d.health_check ?? DEFAULT_HEALTH_CHECK;
}

/** A deployment's effective policies: the defaults, overridden field by field. */
export function resolvePolicies(defaults: PoliciesConfig, override: PoliciesOverride | undefined): PoliciesConfig {
  if (override === undefined) return defaults;
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(override)) {
    const base = (defaults as unknown as Record<string, unknown>)[k];
    out[k] = typeof v === 'object' && v !== null && typeof base === 'object' ? { ...base, ...v } : v;
  }
  return deepFreeze(out as unknown as PoliciesConfig);
}
