import { apiKeySchema, deploymentSchema, validate, type ApiKeyConfig, type DeploymentConfig } from '../config/index.js';
import { StateError, type DesiredDeployment, type StoredApiKey } from './types.js';

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
export function encodeEntry(entry: DesiredDeployment | StoredApiKey): string {
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
    throw new StateError(`${where}: ${(err as Error).message}`);
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
  if (typeof entry !== 'object' || entry === null) throw new StateError(`${where}: ${path} is not a key entry`);
  const { created_at: createdAt, ...spec } = entry as { created_at?: unknown };
  try {
    const k = validate(apiKeySchema, spec, path) as ApiKeyConfig;
    if (k.key !== null || k.key_sha256 === null) throw new Error(`${path}: a stored key must hold key_sha256 and no key`);
    return {
      name: k.name, key_sha256: k.key_sha256, deployments: k.deployments, limits: k.limits, deployment_limits: k.deployment_limits,
      created_at: typeof createdAt === 'string' ? createdAt : new Date(0).toISOString(),
    };
  } catch (err) {
    throw new StateError(`${where}: ${(err as Error).message}`);
  }
}
