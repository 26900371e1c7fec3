// Client API key endpoints (/v1/keys). Answers name a key and show a short prefix of its
// digest; the key itself appears once, in the answer that generated it.

import { apiKeySchema, type ApiKeyConfig } from '../config/index.js';
import type { ActiveKey, ApiKeyControl } from '../control/index.js';
import { SluiceError } from '../errors/index.js';
import { keyLabel } from '../policy/index.js';
import { validBody, type AdminServer } from './server.js';

export interface KeysApiContext {
  readonly keys: ApiKeyControl;
}

export function registerKeysApi(admin: AdminServer, ctx: KeysApiContext): void {
  const { keys } = ctx;
  admin
    .route('GET', '/v1/keys', () => ({ body: { keys: keys.list().map(keyView) } }))
    .route('POST', '/v1/keys', async (req) => {
      const { key, secret } = await keys.create(validBody<ApiKeyConfig>(apiKeySchema, await req.json()));
      return { status: 201, body: secret === null ? keyView(key) : { ...keyView(key), key: secret } };
    })
    .route('GET', '/v1/keys/:name', (req) => {
      const key = keys.get(req.params.name!);
      if (key === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no API key '${req.params.name}'`);
      return { body: keyView(key) };
    })
    .route('DELETE', '/v1/keys/:name', async (req) => ({ body: { ...keyView(await keys.remove(req.params.name!)), state: 'deleted' } }));
}

function keyView(k: ActiveKey): Record<string, unknown> {
  return {
    name: k.name, label: keyLabel(k.name, k.digest), source: k.source, deployments: k.deployments,
    limits: k.limits, deployment_limits: k.deployment_limits, created_at: k.created_at,
  };
}
