// A retry goes to another replica: never back to one that already failed the request
// (reset it before answering), which would get the same body once more. With two replicas
// and retry.attempts 2, a request both reset is sent twice, not three times.

import { createServer, type Server, type Socket } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Ports 24290-24299 belong to this file: the two resetting replicas on the first two.
const PORTS = [24290, 24291];
let gw: Gateway;
const servers: Server[] = [];
const seen = [0, 0];

t.before(async () => {
  for (const [i, port] of PORTS.entries()) {
    // Resets every connection as soon as request bytes arrive: no response byte.
    const server = createServer((sock: Socket) => {
      sock.on('error', () => undefined);
      sock.once('data', () => {
        seen[i]!++;
        sock.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    servers.push(server);
  }
  gw = await startGateway({
    ports: { from: 24292, to: 24299 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'rr', version: '1', runtime: 'remote', health_check: { enabled: false }, urls: PORTS.map((p) => `http://127.0.0.1:${p}`),
        policies: { balancer: { strategy: 'round_robin' }, breaker: { enabled: false }, retry: { attempts: 2 } },
      },
    ],
  });
});

t.teardown(async () => {
  await gw?.stop();
  for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
});

t.test('each replica gets a failing request once', async (t) => {
  for (let i = 0; i < 2; i++) {
    const before = seen[0]! + seen[1]!;
    const r = await httpRequest(`${gw.url}/rr-1/predict`, { method: 'POST', body: '{"pay":"once"}' });
    t.equal(r.status, 502);
    t.match(r.body, /SLUICE_ERR_UPSTREAM_RESET/);
    t.equal(seen[0]! + seen[1]! - before, 2, `sent twice, once to each replica (request ${i + 1})`);
  }
  t.same(seen, [2, 2]);
});
