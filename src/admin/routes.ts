// Admin endpoints. Health and readiness are public (load balancers probe them); the rest
// needs the admin token when one is configured.

import type { DeploymentManager } from '../control/deployments.js';
import { SluiceError } from '../errors/index.js';
import type { AdminServer } from './server.js';

export interface AdminContext {
  readonly manager: DeploymentManager;
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
    .route('GET', '/metrics', async () => ({ text: await ctx.metrics(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }))
    .route('GET', '/v1/deployments', () => ({ body: { deployments: ctx.manager.list().map((d) => d.view()) } }))
    .route('GET', '/v1/deployments/:id', (req) => {
      const d = ctx.manager.get(req.params.id!);
      if (d === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment ${req.params.id}`);
      return { body: d.view() };
    });
}
