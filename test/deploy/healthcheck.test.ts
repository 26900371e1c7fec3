// The image's HEALTHCHECK, as the Dockerfile writes it, against a gateway whose admin port
// speaks plain HTTP and one whose admin port speaks TLS (admin.tls: it asked http:// and
// failed whenever TLS was on). It passes once /readyz says 200, and fails with nothing on
// the port. Not in a container: the command alone, with the image's SLUICE_ADMIN_PORT.
// Ports 19250-19255 belong to this file: the admin ports, then the model servers'.

import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { readImage } from '../helpers/dockerfile.js';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { reapServers, waitFor } from '../helpers/control.js';

t.setTimeout(180_000);

const PLAIN_ADMIN = 19250;
const TLS_ADMIN = 19251;
const RANGE = { from: 19252, to: 19255 };
const image = readImage();
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

/** The HEALTHCHECK command's exit status, with the image's environment but the admin port. */
function healthcheck(adminPort: number): number | null {
  const [command, ...args] = image.healthcheck;
  return spawnSync(command!, args, { env: { PATH: process.env.PATH, ...image.env, SLUICE_ADMIN_PORT: String(adminPort) }, timeout: 10_000 }).status;
}

for (const [name, adminPort, tls] of [['plain HTTP', PLAIN_ADMIN, false], ['TLS', TLS_ADMIN, true]] as const) {
  t.test(`an admin port over ${name}: HEALTHCHECK passes once ready, fails once stopped`, async (t) => {
    const admin: Record<string, unknown> = { host: '127.0.0.1', port: adminPort };
    if (tls) {
      const cert = selfSignedCertificate(mkdtempSync(join(tmpdir(), 'sluice-healthcheck-')), 'admin');
      admin.tls = { cert_file: cert.certFile, key_file: cert.keyFile };
    }
    gw = await startGateway({ admin, ports: RANGE, deployments: [{ model: 'hc', version: '1', runtime: 'sim' }] }, {}, false);
    await waitFor(() => healthcheck(adminPort) === 0, 30_000, 'HEALTHCHECK to pass');
    t.pass('HEALTHCHECK passes');
    await gw.stop();
    gw = undefined;
    t.equal(healthcheck(adminPort), 1, 'nothing on the port: HEALTHCHECK fails');
  });
}
