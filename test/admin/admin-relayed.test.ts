// A tokenless admin API is safe because it listens on loopback only. A proxy on the same
// machine must not become the network's way to it, least of all the gateway itself: a
// `remote` deployment whose URL is the admin port would relay any client's deploy (of a
// command: anything run as the gateway's user). Without a token, a request a proxy relayed
// (X-Forwarded-*, Forwarded, Via: the gateway sends the first two upstream) is refused.
// Ports 26282-26285 belong to this file: 26282 the gateway, 26283 its admin API, 26284-26285
// model servers (a deploy the test expects refused would take one).

import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway } from '../helpers/procs.js';

const GATEWAY_PORT = 26282;
const ADMIN_PORT = 26283;

t.test('a remote deployment naming the tokenless admin API does not open it on the gateway port', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    ports: { from: 26284, to: 26285 },
    deployments: [{ model: 'adm', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${ADMIN_PORT}`], health_check: { path: '/healthz' } }],
  });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);

  const list = await httpRequest(`${gw.url}/adm-1/v1/deployments`);
  t.equal(list.status, 403, `the admin API's list through the gateway: ${list.body}`);
  t.match(JSON.parse(list.body), { error: { code: 'SLUICE_ERR_FORBIDDEN', message: /admin\.token.*x-forwarded-host/ } });

  const deploy = await httpRequest(`${gw.url}/adm-1/v1/deployments`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'pwn', version: '1', runtime: 'sim' }),
  });
  t.equal(deploy.status, 403, `a deploy through the gateway: ${deploy.body}`);
  t.equal((await admin.get('/v1/deployments/pwn-1')).status, 404, 'nothing deployed');

  for (const header of ['x-forwarded-for', 'forwarded', 'via']) {
    const relayed = await httpRequest(`${gw.adminUrl}/v1/deployments`, { headers: { [header]: 'x' } });
    t.equal(relayed.status, 403, `a request another proxy relayed (${header})`);
  }
  t.equal((await admin.get('/v1/deployments')).status, 200, 'a client on the machine itself is answered as before');
  t.equal((await httpRequest(`${gw.url}/adm-1/healthz`)).status, 200, 'the public probes stay public');
});
