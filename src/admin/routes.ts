// Admin endpoints. Health and readiness are public (load balancers probe them), and so are
// the API's document and its page: they are built from the code alone, the same for every
// sluice of this version (no config value, deployment or key is in them), and a browser
// opening /docs cannot send a bearer token. The rest needs the admin token when one is
// configured.

import type { Config } from '../config/index.js';
import type { ControlPlane } from '../control/index.js';
import { registerDeploymentsApi } from './deployments-api.js';
import { docsPage } from './docs-page.js';
import { registerKeysApi } from './keys-api.js';
import { registerModelsApi } from './models-api.js';
import { adminApiDocument } from './openapi.js';
import type { AdminServer } from './server.js';

export interface AdminContext {
  readonly config: Config;
  readonly control: ControlPlane;
}

export function registerAdminRoutes(admin: AdminServer, { config, control }: AdminContext): void {
  const document = JSON.stringify(adminApiDocument());
  const page = docsPage(adminApiDocument());
  admin
    .route('GET', '/healthz', () => ({ body: { status: 'ok', uws_native: control.native() } }), true)
    .route('GET', '/readyz', () => {
      const ready = control.ready();
      return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready' } };
    }, true)
    .route('GET', '/metrics', async () => ({ text: await control.metrics(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }))
    .route('GET', '/v1/costs', async () => ({ body: await control.costs() }))
    .route('GET', '/v1/stats', async () => ({ body: await control.stats() }))
    .route('GET', '/openapi.json', () => ({ text: document, contentType: 'application/json' }), true)
    .route('GET', '/docs', () => ({ text: page, contentType: 'text/html; charset=utf-8' }), true);
  registerDeploymentsApi(admin, { config, deployments: control.deployments });
  registerKeysApi(admin, { keys: control.keys });
  registerModelsApi(admin, { traffic: control.traffic });
}
