// A clean stop (SIGTERM) while a client holds an idle keep-alive connection to the
// gateway port, as every pooling HTTP client does: the gateway must still exit 0 and stop
// every model server it started (no orphans).

import { Agent, request } from 'node:http';
import t from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers } from '../helpers/control.js';

t.setTimeout(60_000);

// Replica ports 18620-18624 belong to this file.
const RANGE = { from: 18620, to: 18624 };
const pids = new PidLog();
let gw: Gateway | undefined;
const agent = new Agent({ keepAlive: true });

t.teardown(async () => {
  agent.destroy();
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    }).on('error', reject).end();
  });
}

t.test('SIGTERM with an idle keep-alive client: exit 0, no model server left', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const r = await admin.post('/v1/deployments?wait=true', { model: 'ka', version: '1', runtime: 'sim' });
  pids.note(r.body);
  t.equal(r.status, 201);
  t.equal(await get(`${gw.url}/ka-1/_sim/stats`), 200, 'a request over a keep-alive connection');
  t.equal(await get(`${gw.url}/nope-1/x`), 404, 'and another one on the same connection');
  const code = await gw.stop();
  t.equal(code, 0, 'the gateway exits 0', { signal: gw.child.signalCode, stderr: gw.stderr.filter((l) => /Assertion|Abort|uv_loop/.test(l)) });
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE, 2_000);
});
