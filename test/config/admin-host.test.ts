// A bad admin.host (one that does not resolve, or no address of this machine) stopped the
// start with Node's bare `sluice: getaddrinfo ENOTFOUND 10.0.0.999`, naming neither the field
// nor the variable; README promises bad values "rejected with the field named". (Without an
// admin token the admin API stays on 127.0.0.1 whatever the host: these runs set one.)

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { serveUntilExit } from '../helpers/procs.js';

// Ports 24380-24388 belong to this file: 24380 the gateway, 24381 its admin API, 24382-24388
// model-server ports (none should start).
function configWith(adminHost: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-admin-host-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 24380 },
    admin: { host: adminHost, port: 24381 },
    ports: { from: 24382, to: 24388 },
    state_dir: join(dir, 'state'),
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  }));
  return file;
}

const TOKEN = { SLUICE_ADMIN_TOKEN: 'admin-host-test-token-0123456789' };

t.test('an admin.host that does not resolve is named', async (t) => {
  const { code, proc } = await serveUntilExit(configWith('10.0.0.999'), TOKEN);
  t.equal(code, 1);
  t.match(proc.stderr.join('\n'), /config: admin\.host: cannot listen on 10\.0\.0\.999: getaddrinfo/);
});

t.test('set by SLUICE_ADMIN_HOST, the variable is named too; an address not of this host as well', async (t) => {
  const { code, proc } = await serveUntilExit(configWith('127.0.0.1'), { ...TOKEN, SLUICE_ADMIN_HOST: '10.255.255.1' });
  t.equal(code, 1);
  t.match(proc.stderr.join('\n'), /config: admin\.host: cannot listen on 10\.255\.255\.1: .*EADDRNOTAVAIL.*\(set by SLUICE_ADMIN_HOST\)/);
});
