// Admin endpoints. Health and readiness are public (load balancers probe them); the rest
// needs the admin token when one is configured.

import type { Config } from '../config/index.js';
import type { ControlPlane } from '../control/index.js';
import { registerDeploymentsApi } from './deployments-api.js';
import { registerKeysApi } from './keys-api.js';
import { registerModelsApi } from './models-api.js';
import type { AdminServer } from './server.js';

export interface AdminContext {
  readonly config: Config;
  readonly control: ControlPlane;
}

export function registerAdminRoutes(admin: AdminServer, { config, control }: AdminContext): void {
  admin
    .route('GET', '/healthz', () => ({ body: { status: 'ok', uws_native: control.native() } }), true)
    .route('GET', '/readyz', () => {
      const ready = control.ready();
      return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready' } };
    }, true)
    .route('GET', '/metrics', async () => ({ text: await control.metrics(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }))
    .route('GET', '/v1/costs', async () => ({ body: await control.costs() }));
  registerDeploymentsApi(admin, { config, deployments: control.deployments });
  registerKeysApi(admin, { keys: control.keys });
  registerModelsApi(admin, { traffic: control.traffic });
}
