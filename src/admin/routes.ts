// Admin endpoints. Health and readiness are public (load balancers probe them); the rest
// needs the admin token when one is configured.

import { registerDeploymentsApi, type DeploymentsApiContext } from './deployments-api.js';
import { registerKeysApi, type KeysApiContext } from './keys-api.js';
import type { AdminServer } from './server.js';

export interface AdminContext extends DeploymentsApiContext, KeysApiContext {
  readonly metrics: () => Promise<string>;
  readonly ready: () => boolean;
  readonly native: () => boolean;
}

export function registerAdminRoutes(admin: AdminServer, ctx: AdminContext): void {
  admin
    .route('GET', '/healthz', () => ({ body: { status: 'ok', uws_native: ctx.native() } }), true)
    .route('GET', '/readyz', () => {
      const ready = ctx.ready();
      return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready' } };
    }, true)
    .route('GET', '/metrics', async () => ({ text: await ctx.metrics(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }));
  registerDeploymentsApi(admin, ctx);
  registerKeysApi(admin, ctx);
}
