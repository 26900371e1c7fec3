// The admin port against what a careless client or an attacker sends it: a request target
// that is no URL must cost that request only, never the gateway process (which holds every
// worker and the model servers' supervision).

import { connect } from 'node:net';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24000-24009 belong to this file: 24000 the gateway, 24001 its admin API,
// 24002-24009 model servers.
const GATEWAY_PORT = 24000;
const ADMIN_PORT = 24001;

/** Sends `raw` on a new connection and returns what comes back until the server closes it (or 3 s). */
function rawExchange(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(raw, 'latin1'));
    let got = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 3_000);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('close', done);
    socket.on('error', done);
  });
}

t.test('a request target that is not a URL gets a 400, and the gateway goes on', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: GATEWAY_PORT },
    admin: { host: '127.0.0.1', port: ADMIN_PORT },
    ports: { from: 24002, to: 24009 },
    deployments: [],
  });
  t.teardown(() => gw.stop());
  let exited = false;
  gw.child.once('exit', () => (exited = true));

  for (const target of ['http://[', '//[/v1/keys', 'http://x:99999/v1/deployments']) {
    const answer = await rawExchange(ADMIN_PORT, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    t.match(answer, /^HTTP\/1\.1 400 /, `${target}: 400`);
    t.match(answer, /SLUICE_ERR_BAD_REQUEST/, `${target}: the gateway's error body`);
  }
  const health = await adminClient(gw.adminUrl).get('/healthz');
  t.equal(health.status, 200, 'the admin API still answers');
  t.notOk(exited, 'the gateway process is still running');
});
