// Admin endpoints. Health and readiness are public (load balancers probe them), and so are
// the API's document and its page, and the dashboard's page and script: they are built from
// the code alone, the same for every sluice of this version (no config value, deployment or
// key is in them), and a browser opening them cannot send a bearer token. The rest needs
// the admin token when one is configured, the dashboard's live feed included.

import type { Config } from '../config/index.js';
import type { ControlPlane, TrafficControl } from '../control/index.js';
import type { DependencyBreakers } from '../dependencies/index.js';
import { registerDashboard } from './dashboard/index.js';
import { registerDeploymentsApi } from './deployments-api.js';
import { docsPage } from './docs-page.js';
import { registerKeysApi } from './keys-api.js';
import { LiveFeed } from './live-feed.js';
import { registerModelsApi } from './models-api.js';
import { adminApiDocument } from './openapi.js';
import { intParam } from './query-params.js';
import type { AdminServer } from './server.js';

export interface AdminContext {
  readonly config: Config;
  readonly control: ControlPlane;
  /** The control plane's breakers (the registry's is made here), for /metrics. */
  readonly dependencies: DependencyBreakers;
}

export function registerAdminRoutes(admin: AdminServer, { config, control, dependencies }: AdminContext): void {
  const document = JSON.stringify(adminApiDocument());
  const page = docsPage(adminApiDocument());
  const feed = new LiveFeed({
    stats: () => control.stats(),
    deployments: () => ({ deployments: control.deployments.list().map((d) => control.deployments.view(d)) }),
    models: () => modelsWithEvents(control.traffic),
  }, admin.logger);
  admin
    .route('GET', '/healthz', () => ({ body: { status: 'ok', uws_native: control.native() } }), { public: true })
    .route('GET', '/readyz', () => {
      const ready = control.ready();
      return { status: ready ? 200 : 503, body: { status: ready ? 'ready' : 'not ready' } };
    }, { public: true })
    .route('GET', '/metrics', async () => ({ text: await control.metrics(), contentType: 'text/plain; version=0.0.4; charset=utf-8' }))
    .route('GET', '/v1/costs', async () => ({ body: await control.costs() }))
    .route('GET', '/v1/stats', async () => ({ body: await control.stats() }))
    .route('GET', '/openapi.json', () => ({ text: document, contentType: 'application/json' }), { public: true })
    .route('GET', '/docs', () => ({ text: page, contentType: 'text/html; charset=utf-8' }), { public: true })
    .route('GET', '/v1/events/stream', (req) => {
      const seconds = intParam(req, 'seconds', 300, 1, 3600);
      return { stream: (out) => feed.stream(out, seconds) };
    }, { query: ['seconds'] });
  registerDashboard(admin);
  registerDeploymentsApi(admin, { config, deployments: control.deployments, dependencies });
  registerKeysApi(admin, { keys: control.keys });
  registerModelsApi(admin, { traffic: control.traffic });
}

/** GET /v1/models and each model's events, in one object. */
function modelsWithEvents(traffic: TrafficControl): { models: Array<Record<string, unknown>>; events: Record<string, unknown> } {
  const models: Array<Record<string, unknown>> = [];
  const events: Record<string, unknown> = {};
  for (const model of traffic.models()) {
    // A model whose last version goes between models() and here is a 404: it is just not listed.
    try {
      models.push(traffic.view(model));
      events[model] = traffic.events(model);
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SLUICE_ERR_NOT_FOUND') throw err;
    }
  }
  return { models, events };
}
