// Refusals of requests no deployment owns (no route, an unknown model at the front door, a
// 405) are counted in sluice_gateway_refusals_total with deployment="", summed over the
// workers like the per-deployment ones, and the page still passes `promtool check metrics`.

import { spawnSync } from 'node:child_process';
import t from 'tap';
import { httpRequest, metric } from '../helpers/http.js';
import { metricsText, startGateway } from '../helpers/procs.js';

// Ports 19720-19729 belong to this file: gateway, admin, model servers.
const GATEWAY_PORT = 19720;
const ADMIN_PORT = 19721;
const PORTS = { from: 19722, to: 19729 };

t.test('refusals without a deployment are in /metrics, every worker\'s together', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    workers: 2,
    ports: PORTS,
    deployments: [{ model: 'known', version: '1', runtime: 'sim' }],
  });
  t.teardown(() => gw.stop());

  // One connection per request (httpRequest), so that both workers' listening sockets take some.
  const NO_ROUTE = 8;
  for (let i = 0; i < NO_ROUTE; i++) t.equal((await httpRequest(`${gw.url}/nosuch-1/x`)).status, 404, 'no route');
  const UNKNOWN = 4;
  for (let i = 0; i < UNKNOWN; i++) {
    const r = await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nope', messages: [] }) });
    t.equal(r.status, 404, 'unknown model at the front door');
  }
  t.equal((await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'DELETE' })).status, 405, 'a method no route takes');
  t.equal((await httpRequest(`${gw.url}/known-1/api/tags`)).status, 200, 'the deployment answers');

  const text = await metricsText(gw);
  const refusals = (code: string): number => metric(text, 'sluice_gateway_refusals_total', { deployment: '', code });
  t.equal(refusals('SLUICE_ERR_NO_ROUTE'), NO_ROUTE);
  t.equal(refusals('SLUICE_ERR_MODEL_NOT_FOUND'), UNKNOWN);
  t.equal(refusals('SLUICE_ERR_METHOD_NOT_ALLOWED'), 1);
  t.equal(metric(text, 'sluice_requests_total', { deployment: 'known-1', code: '200' }), 1, 'a deployment\'s own series are unchanged');

  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(promtool.error, undefined, 'promtool runs');
  t.equal(promtool.status, 0, `promtool check metrics: ${promtool.stdout}${promtool.stderr}`);
});
