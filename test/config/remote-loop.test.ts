// A remote deployment whose URL is the gateway's own port on this machine sends each request
// back to the gateway, which sends it there again: one client request became 512 until the
// worker's upstream connections ran out and the innermost wait timed out. Such a URL is
// refused, in the config file and through the admin API, naming the field.
// Ports 26293-26294 belong to this file: the gateway and its admin API (no replicas).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { serveUntilExit, startGateway } from '../helpers/procs.js';

const GATEWAY_PORT = 26293;
const ADMIN_PORT = 26294;

t.test('the config file: serve stops, naming the URL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-loop-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    state_dir: join(dir, 'state'),
    deployments: [{ model: 'loop', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:26001', `http://localhost:${GATEWAY_PORT}/loop-1`] }],
  }));
  const { code, proc } = await serveUntilExit(file);
  t.equal(code, 1, 'exit 1');
  t.match(proc.lines.join('\n'), /config: deployments\[0\]\.urls\[1\]: localhost:26293 is this gateway's own port \(listen\.port 26293\)/);
});

t.test('the admin API: 400 for every spelling of this machine, 201 for another port', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    deployments: [],
  });
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const spec = (version: string, url: string): Record<string, unknown> => ({ model: 'loop', version, runtime: 'remote', urls: [url], health_check: { enabled: false } });
  for (const host of ['127.0.0.1', '127.1', 'localhost', '0.0.0.0', '[::1]', '[::ffff:127.0.0.1]']) {
    const r = await admin.post('/v1/deployments', spec('1', `http://${host}:${GATEWAY_PORT}/loop-1`));
    t.equal(r.status, 400, `${host}: ${r.text.slice(0, 200)}`);
    t.match(r.body, { error: { code: 'SLUICE_ERR_INVALID_FIELD', field: 'urls[0]' } });
  }
  t.equal((await admin.get('/v1/deployments/loop-1')).status, 404, 'nothing deployed');
  const other = await admin.post('/v1/deployments', spec('2', `http://127.0.0.1:${GATEWAY_PORT + 100}`));
  t.equal(other.status, 201, 'another port of this machine is a server like any');
});
