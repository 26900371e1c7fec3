// sluice_requests_total counts an answer by the status its client got, whatever three digits
// the upstream sent (HTTP allows 100-999; a server may use one past 599): never as code "0".
// Through the real gateway, with a server that answers the status its path names.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { metricsText, sample, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27750-27759 belong to this file: 27750 the server.
const SERVER_PORT = 27750;

let server: Server;
let gw: Gateway;

t.before(async () => {
  server = createServer((req, res) => {
    res.writeHead(Number(req.url!.slice(1)), { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(SERVER_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    deployments: [{
      model: 'odd', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${SERVER_PORT}`], health_check: { enabled: false },
      policies: { breaker: { enabled: false } },
    }],
  });
});

t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

t.test('each status counts as itself', async (t) => {
  for (const status of [200, 599, 600, 999]) t.equal((await httpRequest(`${gw.url}/odd-1/${status}`)).status, status);
  const text = await metricsText(gw);
  for (const status of ['200', '599', '600', '999']) {
    t.equal(sample(text, 'sluice_requests_total', { deployment: 'odd-1', code: status, class: `${status[0]}xx` }), 1, `code ${status}`);
  }
  t.equal(sample(text, 'sluice_requests_total', { deployment: 'odd-1', code: '0' }), undefined, 'no code 0');
});
