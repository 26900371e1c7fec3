// A check the gateway cannot send (a path or a credential Node's http.request refuses) is
// refused where it is given, naming the field: sent, it threw inside the health check's or
// the load scrape's timer and ended the process, and a deployment stored through the admin
// API did so again at every start.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { serveUntilExit, startGateway } from '../helpers/procs.js';

// Ports 24010-24019 belong to this file: 24010 the gateway, 24011 its admin API,
// 24012-24015 model servers, 24016 the remote replica (nothing listens: the checks fail).
const GATEWAY_PORT = 24010;
const ADMIN_PORT = 24011;

t.test('a health check or metrics path Node cannot send is a 400 naming it, and the gateway goes on', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    ports: { from: 24012, to: 24015 },
    deployments: [],
  });
  t.teardown(() => gw.stop());
  let exited = false;
  gw.child.once('exit', () => (exited = true));
  const admin = adminClient(gw.adminUrl);

  const remote = await admin.post('/v1/deployments', {
    model: 'hc', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:24016'], health_check: { path: '/\u0101', interval_ms: 50 },
  });
  t.equal(remote.status, 400, remote.text);
  t.equal(remote.body.error?.field, 'health_check.path');
  const scraped = await admin.post('/v1/deployments', {
    model: 'qa', version: '1', runtime: 'sim', policies: { balancer: { strategy: 'queue_aware', metrics_path: '/m\u0101', scrape_interval_ms: 50 } },
  });
  t.equal(scraped.status, 400, scraped.text);
  t.equal(scraped.body.error?.field, 'policies.balancer.metrics_path');
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await admin.get('/healthz')).status, 200, 'the admin API still answers');
  t.notOk(exited, 'the gateway process is still running');
  t.same((await admin.list()).map((d) => d.id), [], 'nothing was deployed');
});

t.test('a provider credential a header cannot carry stops the start with the field named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-probe-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(config, JSON.stringify({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    state_dir: join(dir, 'state'),
    workers: 1,
    deployments: [{ model: 'r', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:24016'], auth: { env: 'PROBE_BAD_KEY' }, health_check: { path: '/health' } }],
  }));
  for (const value of ['sk-abc\u0001def', 'sk-abc\u20acdef']) {
    const { code, proc } = await serveUntilExit(config, { PROBE_BAD_KEY: value });
    t.equal(code, 1, 'the start stops');
    const out = proc.lines.join('\n');
    t.match(out, /config: deployments\[0\]\.auth\.env: .*PROBE_BAD_KEY.*cannot go in a header/, 'naming the field and the variable');
    t.notMatch(out, /sk-abc/, 'never the credential');
    t.notMatch(out, /TypeError/, 'not a crash');
  }
});
