import { apiKeySchema, deploymentSchema, validate, type ApiKeyConfig, type DeploymentConfig } from '../config/index.js';
import { StateError, type DesiredDeployment, type RolloutSpec, type RolloutView, type StoredApiKey, type StoredTraffic } from './types.js';

const FORMAT = 1;

/** The key a deployment is stored under: its id, `<model>-<version>`. */
export function desiredId(spec: Pick<DeploymentConfig, 'model' | 'version'>): string {
  return `${spec.model}-${spec.version}`;
}

export function encodeDesired(deployments: readonly DesiredDeployment[]): string {
  return JSON.stringify({ format: FORMAT, deployments }, null, 2) + '\n';
}

/** Parses and re-validates stored state: a hand-edited or corrupt file fails loudly here. */
export function decodeDesired(text: string, where: string): DesiredDeployment[] {
  const doc = parse(text, where);
  const d = doc as { format?: unknown; deployments?: unknown };
  if (typeof doc !== 'object' || doc === null || d.format !== FORMAT || !Array.isArray(d.deployments)) {
    throw new StateError(`${where}: not a sluice state document of format ${FORMAT}`);
  }
  return d.deployments.map((entry: unknown, i: number) => checkEntry(entry, where, `deployments[${i}].spec`));
}

/** One deployment or API key stored on its own (a field of a Redis hash). */
export function encodeEntry(entry: DesiredDeployment | StoredApiKey | StoredTraffic): string {
  return JSON.stringify(entry);
}

/** Parses one entry stored under `id`; the id must be the entry's own. */
export function decodeEntry(text: string, id: string, where: string): DesiredDeployment {
  const entry = checkEntry(parse(text, where), where, 'spec');
  if (desiredId(entry.spec) !== id) throw new StateError(`${where}: holds ${desiredId(entry.spec)}, not ${id}`);
  return entry;
}

function parse(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new StateError(`${where}: state is not valid JSON (${(err as Error).message}); fix or remove it`);
  }
}

function checkEntry(entry: unknown, where: string, path: string): DesiredDeployment {
  const e = entry as { spec?: unknown; created_at?: unknown } | null;
  try {
    const spec = validate(deploymentSchema, e?.spec, path) as DeploymentConfig;
    return { spec, created_at: typeof e?.created_at === 'string' ? e.created_at : new Date(0).toISOString() };
  } catch (err) {
    throw new StateError(`${where}: ${(err as Error).message}; fix or remove it`);
  }
}

export function encodeKeys(keys: readonly StoredApiKey[]): string {
  return JSON.stringify({ format: FORMAT, api_keys: keys }, null, 2) + '\n';
}

/** Parses and re-validates stored keys (the same schema as config's api_keys, digest only). */
export function decodeKeys(text: string, where: string): StoredApiKey[] {
  const doc = parse(text, where) as { format?: unknown; api_keys?: unknown } | null;
  if (typeof doc !== 'object' || doc === null || doc.format !== FORMAT || !Array.isArray(doc.api_keys)) {
    throw new StateError(`${where}: not a sluice key document of format ${FORMAT}`);
  }
  return doc.api_keys.map((entry: unknown, i: number) => checkKey(entry, where, `api_keys[${i}]`));
}

/** One key stored on its own (a field of the Redis hash), under its name. */
export function decodeKeyEntry(text: string, name: string, where: string): StoredApiKey {
  const key = checkKey(parse(text, where), where, name);
  if (key.name !== name) throw new StateError(`${where}: holds key ${key.name}, not ${name}`);
  return key;
}

function checkKey(entry: unknown, where: string, path: string): StoredApiKey {
  if (typeof entry !== 'object' || entry === null) throw new StateError(`${where}: ${path} is not a key entry; fix or remove it`);
  const { created_at: createdAt, ...spec } = entry as { created_at?: unknown };
  try {
    const k = validate(apiKeySchema, spec, path) as ApiKeyConfig;
    if (k.key !== null || k.key_sha256 === null) throw new Error(`${path}: a stored key must hold key_sha256 and no key`);
    return {
      name: k.name, key_sha256: k.key_sha256, deployments: k.deployments, limits: k.limits, deployment_limits: k.deployment_limits,
      created_at: typeof createdAt === 'string' ? createdAt : new Date(0).toISOString(),
    };
  } catch (err) {
    throw new StateError(`${where}: ${(err as Error).message}; fix or remove it`);
  }
}

export function encodeTraffic(list: readonly StoredTraffic[]): string {
  return JSON.stringify({ format: FORMAT, traffic: list }, null, 2) + '\n';
}

export function decodeTraffic(text: string, where: string): StoredTraffic[] {
  const doc = parse(text, where) as { format?: unknown; traffic?: unknown } | null;
  if (typeof doc !== 'object' || doc === null || doc.format !== FORMAT || !Array.isArray(doc.traffic)) {
    throw new StateError(`${where}: not a sluice traffic document of format ${FORMAT}`);
  }
  return doc.traffic.map((entry: unknown, i: number) => checkTraffic(entry, `${where}: traffic[${i}]`));
}

/** One model's traffic stored on its own (a field of the Redis hash), under the model's name. */
export function decodeTrafficEntry(text: string, model: string, where: string): StoredTraffic {
  const t = checkTraffic(parse(text, where), where);
  if (t.model !== model) throw new StateError(`${where}: holds the traffic of ${t.model}, not ${model}`);
  return t;
}

const STICKY_HEADER = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function checkTraffic(entry: unknown, where: string): StoredTraffic {
  const e = entry as Partial<Record<keyof StoredTraffic, unknown>> | null;
  const bad = (what: string): never => {
    throw new StateError(`${where}: ${what}; fix or remove it`);
  };
  if (typeof e !== 'object' || e === null) return bad('not a traffic entry');
  if (typeof e.model !== 'string' || e.model === '') bad('model is not a name');
  let weights: Record<string, number> | null = null;
  if (e.weights !== null) {
    if (typeof e.weights !== 'object' || e.weights === undefined || Array.isArray(e.weights)) return bad('weights is not an object');
    // Entries, not assignments: an assigned `__proto__` key would set the prototype and vanish.
    weights = Object.fromEntries(Object.entries(e.weights as object).map(([v, w]) => {
      if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) bad(`weights.${v} is not a weight`);
      return [v, w as number];
    }));
  }
  const sticky = e.sticky as { by?: unknown; name?: unknown } | null | undefined;
  if (sticky != null && !(sticky.by === 'api_key' || (sticky.by === 'header' && typeof sticky.name === 'string' && STICKY_HEADER.test(sticky.name)))) bad('sticky is not a sticky rule');
  if (e.stable !== null && typeof e.stable !== 'string') bad('stable is not a version');
  if (typeof e.config_digest !== 'string') bad('config_digest is not a string');
  if (!Array.isArray(e.events)) bad('events is not a list');
  return {
    model: e.model as string, weights, sticky: (sticky ?? null) as StoredTraffic['sticky'], stable: (e.stable ?? null) as string | null,
    config_digest: e.config_digest as string, events: e.events as StoredTraffic['events'], rollout: checkRollout(e.rollout, bad),
    updated_at: typeof e.updated_at === 'string' ? e.updated_at : new Date(0).toISOString(),
  };
}

const ROLLOUT_STATUSES: ReadonlySet<unknown> = new Set(['progressing', 'waiting for traffic', 'promoted', 'rolled_back', 'aborted']);

/** A stored rollout: enough of its shape checked that carrying it on cannot go astray. */
function checkRollout(raw: unknown, bad: (what: string) => never): RolloutView | null {
  if (raw === undefined || raw === null) return null;
  const r = raw as Partial<Record<keyof RolloutView, unknown>>;
  const spec = r.spec as Partial<Record<keyof RolloutSpec, unknown>> | undefined;
  if (typeof r !== 'object' || typeof r.canary !== 'string' || typeof r.stable !== 'string' || !ROLLOUT_STATUSES.has(r.status)
    || typeof r.step !== 'number' || typeof r.failed_checks !== 'number' || typeof r.started_at !== 'string' || !Array.isArray(r.checks)
    || typeof spec !== 'object' || spec === null || !Array.isArray(spec.steps) || typeof spec.interval_s !== 'number') {
    return bad('rollout is not a rollout state');
  }
  return raw as RolloutView;
}
