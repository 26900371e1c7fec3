// Traffic endpoints (/v1/models): each model's versions and weights, changed at runtime.
// A change is stored before it answers and reaches every worker (and, on Redis, every
// instance within a second); requests in flight keep the version they were given.

import type { TrafficControl } from '../control/index.js';
import { SluiceError } from '../errors/index.js';
import type { StickySpec, TrafficWeights } from '../state/index.js';
import type { AdminServer } from './server.js';

export interface ModelsApiContext {
  readonly traffic: TrafficControl;
}

/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
const MAX_WEIGHT = 1_000_000;

export function registerModelsApi(admin: AdminServer, { traffic }: ModelsApiContext): void {
  admin
    .route('GET', '/v1/models', () => ({ body: { models: traffic.models().map((m) => traffic.view(m)) } }))
    .route('GET', '/v1/models/:model', (req) => ({ body: traffic.view(req.params.model!) }))
    .route('GET', '/v1/models/:model/events', (req) => {
      const model = req.params.model!;
      return { body: { model, events: traffic.events(model) } };
    })
    .route('PUT', '/v1/models/:model/traffic', async (req) => {
      const model = req.params.model!;
      const body = onlyFields(await req.json(), '', ['weights', 'sticky']);
      const weights = weightsOf(body['weights']);
      const sticky = stickyOf(body['sticky']);
      await traffic.setWeights(model, weights, sticky, 'api', 'set through the admin API');
      return { body: traffic.view(model) };
    })
    .route('POST', '/v1/models/:model/promote', async (req) => {
      const model = req.params.model!;
      const version = onlyFields(await req.json(), '', ['version'])['version'];
      if (typeof version !== 'string' || version === '') throw invalid('version', 'must be the version to promote, a string');
      await traffic.promote(model, version, 'api', `version ${version} promoted through the admin API`);
      return { body: traffic.view(model) };
    })
    .route('POST', '/v1/models/:model/rollback', async (req) => {
      const model = req.params.model!;
      // It returns to the stable version: a body naming another (`{"version": "3"}`) is not obeyed in silence.
      const field = Object.keys(await req.json())[0];
      if (field !== undefined) throw invalid(field, 'unknown field: rollback takes no body, it returns to the stable version (promote moves traffic to another)');
      await traffic.rollback(model, 'api', 'rolled back through the admin API');
      return { body: traffic.view(model) };
    })
    .route('PUT', '/v1/models/:model/rollout', async (req) => {
      const model = req.params.model!;
      await traffic.startRollout(model, await req.json());
      return { status: 201, body: traffic.view(model) };
    })
    .route('DELETE', '/v1/models/:model/rollout', async (req) => {
      const model = req.params.model!;
      await traffic.abortRollout(model);
      return { body: traffic.view(model) };
    });
}

function weightsOf(raw: unknown): TrafficWeights {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('weights', 'must be an object of version: weight');
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) throw invalid('weights', 'must name at least one version');
  let sum = 0;
  for (const [version, w] of entries) {
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > MAX_WEIGHT) throw invalid(`weights.${version}`, `must be a number 0..${MAX_WEIGHT}`);
    sum += w;
  }
  if (sum <= 0) throw invalid('weights', 'must give some version a weight above 0');
  return raw as TrafficWeights;
}

function stickyOf(raw: unknown): StickySpec | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid('sticky', 'must be null, {"by": "header", "name": ...} or {"by": "api_key"}');
  const s = raw as { by?: unknown; name?: unknown };
  if (s.by === 'api_key') {
    onlyFields(raw as Record<string, unknown>, 'sticky.', ['by']);
    return { by: 'api_key' };
  }
  if (s.by !== 'header') throw invalid('sticky.by', 'must be "header" or "api_key"');
  onlyFields(raw as Record<string, unknown>, 'sticky.', ['by', 'name']);
  if (typeof s.name !== 'string' || !HEADER_NAME.test(s.name)) throw invalid('sticky.name', 'must be a header name');
  return { by: 'header', name: s.name.toLowerCase() };
}

/** Refuses a field it does not know, as the config schema does: a misspelt `sticky` must not pass for none. */
function onlyFields(body: Record<string, unknown>, prefix: string, known: readonly string[]): Record<string, unknown> {
  const unknown = Object.keys(body).find((k) => !known.includes(k));
  if (unknown !== undefined) throw invalid(`${prefix}${unknown}`, 'unknown field');
  return body;
}

function invalid(field: string, reason: string): SluiceError {
  return new SluiceError('SLUICE_ERR_INVALID_FIELD', `${field}: ${reason}`, { field });
}
