// The CLI against an admin API with admin.tls (the README's TLS example; a self-signed pair
// is common): it used to say "cannot reach the admin API ... is `sluice serve` running
// there?", though the admin API had answered the handshake. It now says that the
// certificate is not trusted and how to trust it (NODE_EXTRA_CA_CERTS), with which the
// command works; https to a plain admin port says to use http://.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { runCli } from '../helpers/cli.js';
import { startGateway } from '../helpers/procs.js';

// Ports 24360-24369 belong to this file: 24360 the gateway, 24361 its admin API over TLS,
// 24362 the plain admin API of the second gateway (24363 its gateway port), 24364-24369
// model-server ports (unused).
t.test('an untrusted admin certificate is named as such, and NODE_EXTRA_CA_CERTS trusts it', async (t) => {
  const cert = selfSignedCertificate(mkdtempSync(`${tmpdir()}/sluice-admin-tls-`), 'admin');
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24360 },
    admin: { host: '127.0.0.1', port: 24361, tls: { cert_file: cert.certFile, key_file: cert.keyFile } },
    ports: { from: 24364, to: 24369 },
  }, {}, false);
  t.teardown(() => gw.stop());

  const untrusted = await runCli(['--admin-url', 'https://127.0.0.1:24361', 'ls']);
  t.equal(untrusted.code, 3);
  t.match(untrusted.stderr, /presented a certificate this CLI does not trust \(DEPTH_ZERO_SELF_SIGNED_CERT\).*NODE_EXTRA_CA_CERTS/);
  t.notMatch(untrusted.stderr, /is `sluice serve` running there/);

  const trusted = await runCli(['--admin-url', 'https://127.0.0.1:24361', 'ls'], { NODE_EXTRA_CA_CERTS: cert.certFile });
  t.equal(trusted.code, 0, trusted.stderr);
  t.match(trusted.stdout, /no deployments|ID/);
});

t.test('https to a plain admin port says to use http://', async (t) => {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port: 24363 },
    admin: { host: '127.0.0.1', port: 24362 },
    ports: { from: 24364, to: 24369 },
  }, {}, false);
  t.teardown(() => gw.stop());
  const r = await runCli(['--admin-url', 'https://127.0.0.1:24362', 'ls']);
  t.equal(r.code, 3);
  t.match(r.stderr, /ERR_SSL_WRONG_VERSION_NUMBER \(the port answers without TLS: use http:\/\/\)/);
});
