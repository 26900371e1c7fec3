// The admin port over TLS 1.2 offers the gateway port's suites (ECDHE with AES-GCM or
// ChaCha20): it used to take Node's defaults, whose HIGH takes in AES-CBC with a static RSA
// key exchange, so a client could carry the admin token under a suite without forward
// secrecy. A certificate reload keeps the list.

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectionOptions } from 'node:tls';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 25370-25379 belong to this file (model-server ports, unused).
const dir = mkdtempSync(join(tmpdir(), 'sluice-admin-tls-suites-'));
const cert = selfSignedCertificate(dir, 'admin');
const gwCert = selfSignedCertificate(dir, 'gateway');
let gw: Gateway;

/** The TLS 1.2 suite a handshake with `port` agrees on, or the error code. */
function suite(port: number, ciphers: string): Promise<string> {
  const opts: ConnectionOptions = { host: '127.0.0.1', port, rejectUnauthorized: false, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers };
  return new Promise((resolve) => {
    const socket = connect(opts, () => {
      resolve(socket.getCipher().standardName);
      socket.end();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.before(async () => {
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 0, tls: { cert_file: gwCert.certFile, key_file: gwCert.keyFile } },
    admin: { host: '127.0.0.1', port: 0, tls: { cert_file: cert.certFile, key_file: cert.keyFile } },
    ports: { from: 25370, to: 25379 },
  }, {}, false);
  await eventually(async () => (await httpRequest(`https://127.0.0.1:${gw.adminPort}/healthz`, { ca: readFileSync(cert.certFile) })).status === 200 || undefined, 20_000, 'the admin port');
});
t.teardown(() => gw?.stop());

const CBC_RSA = 'AES128-SHA:AES256-SHA:AES128-GCM-SHA256';

t.test('a client offering only CBC or static-RSA suites is refused on both ports', async (t) => {
  t.equal(await suite(gw.port, CBC_RSA), 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'the gateway port refuses them');
  t.equal(await suite(gw.adminPort, CBC_RSA), 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'and so does the admin port');
  t.equal(await suite(gw.adminPort, 'ECDHE-RSA-AES128-GCM-SHA256'), 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'ECDHE with AES-GCM is served');
});

t.test('after a certificate reload (SIGHUP) the admin port keeps the list', async (t) => {
  const before = jsonLogs(gw).filter((l) => l['msg'] === 'certificate unchanged' && l['port'] === 'admin').length;
  gw.child.kill('SIGHUP');
  await eventually(() => jsonLogs(gw).filter((l) => l['msg'] === 'certificate unchanged' && l['port'] === 'admin').length > before || undefined, 10_000, 'the reload');
  t.equal(await suite(gw.adminPort, CBC_RSA), 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE');
});
