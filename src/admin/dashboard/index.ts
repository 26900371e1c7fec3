// The dashboard at /ui: a page (page.ts) and its script (app.ts, compiled next to this
// module), both public like /docs: they hold no secret, and the data the script shows
// comes from the admin API with the operator's token.

import { readFileSync } from 'node:fs';
import type { AdminServer } from '../server.js';
import { DASHBOARD_PAGE } from './page.js';

export function registerDashboard(admin: AdminServer): void {
  let script: string | null = null;
  admin
    .route('GET', '/ui', () => ({ text: DASHBOARD_PAGE, contentType: 'text/html; charset=utf-8' }), { public: true })
    // Read on first use: app.js is tsc's output, there only in dist/ (tests that load src/ never ask for it).
    .route('GET', '/ui/app.js', () => ({ text: (script ??= readFileSync(new URL('./app.js', import.meta.url), 'utf8')), contentType: 'text/javascript; charset=utf-8' }), { public: true });
}
