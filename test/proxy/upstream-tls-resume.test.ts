// New connections to an `https://` remote resume the TLS session of the ones before (as
// Node's https.Agent and nginx's proxy_ssl_session_reuse do): a burst that opens several
// connections pays one full handshake, not one per connection.

import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { httpRequest } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 25300-25309 belong to this file (its deployment is remote: none is used).
const BURST = 8;
const dir = mkdtempSync(join(tmpdir(), 'sluice-upstream-tls-resume-'));
const cert = selfSignedCertificate(dir, 'provider');

let full = 0;
let resumed = 0;
let provider: HttpsServer;
let gw: Gateway;

t.before(async () => {
  provider = createHttpsServer({ cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) }, (req, res) => {
    req.resume();
    // Slow enough that the burst's requests overlap: each needs a connection of its own.
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'), 150));
  });
  provider.on('secureConnection', (socket: TLSSocket) => (socket.isSessionReused() ? resumed++ : full++));
  await new Promise<void>((r) => provider.listen(0, '127.0.0.1', r));
  gw = await startGateway({
    // One worker: one pool, so the session its first connection got is the one the burst can resume.
    workers: 1,
    ports: { from: 25300, to: 25309 },
    deployments: [
      { model: 'prov', version: '1', runtime: 'remote', urls: [`https://localhost:${(provider.address() as AddressInfo).port}`], health_check: { enabled: false } },
    ],
  }, { NODE_EXTRA_CA_CERTS: cert.certFile });
});
t.teardown(async () => {
  await gw?.stop();
  provider?.close();
});

t.test('a burst of requests opens new connections that resume the TLS session', async (t) => {
  const first = await httpRequest(`${gw.url}/prov-1/v1/models`);
  t.equal(first.status, 200, first.body);
  t.equal(full, 1, 'the first connection did a full handshake');
  const replies = await Promise.all(Array.from({ length: BURST }, () => httpRequest(`${gw.url}/prov-1/v1/models`)));
  t.same(replies.map((r) => r.status), Array(BURST).fill(200));
  t.ok(full + resumed >= BURST, `the burst opened new connections (${full + resumed} in all)`);
  t.equal(full, 1, `no new connection paid a full handshake (${full - 1} did, ${resumed} resumed)`);
});
