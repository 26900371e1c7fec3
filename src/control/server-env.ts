// The environment a model server starts from: the gateway's own, less sluice's settings and
// the secrets it holds. A server needs PATH, HOME, CUDA_*, HF_* and the like; it has no
// use for the admin token, the Redis URL (password included) or a provider's key, and
// anything it can read, a model's code or a dependency of it can leak (/proc/<pid>/environ
// is readable by its user). Its deployment's own `env` is layered over this by ports/.

import type { Config, Runtime } from '../config/index.js';

/** OTEL_EXPORTER_OTLP_HEADERS and the per-signal ones (_TRACES_, _METRICS_, _LOGS_): collector credentials. */
const OTLP_HEADERS = /^OTEL_EXPORTER_OTLP_(?:[A-Z]+_)?HEADERS$/;

/**
 * The MLflow tracking server's credentials (the gateway reads the registry with them): an
 * `mlflow` server needs them to fetch its model, and a `command` one may run anything;
 * the servers of the other runtimes never call MLflow.
 */
const MLFLOW_CREDENTIALS = new Set(['MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_TOKEN']);
const MLFLOW_CALLERS: ReadonlySet<Runtime> = new Set<Runtime>(['mlflow', 'command']);

/**
 * `credentialVars`: every variable a deployment names as its upstream credential
 * (`auth.env`), whichever deployment it is: a key is withheld from every server, not only
 * from the deployment that uses it.
 */
export function serverEnvironment(config: Config, credentialVars: ReadonlySet<string>, runtime: Runtime, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const secrets = secretValues(config, credentialVars, env);
  const mlflow = MLFLOW_CALLERS.has(runtime);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || name.startsWith('SLUICE_') || OTLP_HEADERS.test(name) || credentialVars.has(name)) continue;
    if (!mlflow && MLFLOW_CREDENTIALS.has(name)) continue;
    // The same secret under a name sluice does not read: Kubernetes spells SLUICE_REDIS_URL
    // from a REDIS_PASSWORD variable (deploy/kubernetes/deployment.yaml), which stays set.
    if (secrets.has(value)) continue;
    out[name] = value;
  }
  return out;
}

function secretValues(config: Config, credentialVars: ReadonlySet<string>, env: NodeJS.ProcessEnv): Set<string> {
  const values: Array<string | null | undefined> = [config.admin.token, config.redis.url, ...Object.values(config.tracing.headers)];
  if (config.redis.url !== null) values.push(urlPassword(config.redis.url));
  for (const name of credentialVars) values.push(env[name]);
  return new Set(values.filter((v): v is string => v !== null && v !== undefined && v !== ''));
}

function urlPassword(url: string): string | null {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return null;
  }
}
