// An admin port another program listens on, or a state_dir that cannot be made or written,
// stopped the start with Node's bare `sluice: listen EADDRINUSE: ...` / `sluice: EEXIST: file
// already exists, mkdir ...`, naming neither the setting nor its variable, unlike the gateway
// port's `cannot listen on` and every other bad config value.
//
// Ports 26880-26889 belong to this file: 26880 the gateway, 26881 its admin API (taken by the
// test), 26882-26889 model-server ports (none should start).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { occupy } from '../helpers/control.js';
import { serveUntilExit } from '../helpers/procs.js';

function configWith(stateDir?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-places-named-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 26880 },
    admin: { host: '127.0.0.1', port: 26881 },
    ports: { from: 26882, to: 26889 },
    state_dir: stateDir ?? join(dir, 'state'),
    deployments: [{ model: 'demo', version: '1', runtime: 'sim' }],
  }));
  return file;
}

t.test('an admin port in use is named as admin.port, and SLUICE_ADMIN_PORT when it set it', async (t) => {
  const taken = await occupy(26881);
  t.teardown(() => taken.close());
  const { code, proc } = await serveUntilExit(configWith());
  t.equal(code, 1);
  t.match(proc.stderr.join('\n'), /config: admin\.port: cannot listen on 127\.0\.0\.1:26881: .*EADDRINUSE/);
  const byVariable = await serveUntilExit(configWith(), { SLUICE_ADMIN_PORT: '26881' });
  t.equal(byVariable.code, 1);
  t.match(byVariable.proc.stderr.join('\n'), /config: admin\.port: cannot listen on 127\.0\.0\.1:26881: .*\(set by SLUICE_ADMIN_PORT\)/);
});

t.test('a state_dir that is a file, or lies under one, is named as state_dir', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-places-named-')), 'not-a-dir');
  writeFileSync(file, '');
  for (const stateDir of [file, join(file, 'state')]) {
    const { code, proc } = await serveUntilExit(configWith(stateDir));
    t.equal(code, 1, stateDir);
    t.match(proc.stderr.join('\n'), new RegExp(`state_dir ${stateDir} cannot be used: .*\\(config state_dir or SLUICE_STATE_DIR\\)`));
  }
});

t.test('a config deployment that finds no free port stops the start naming the deployment', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-places-named-'));
  const file = join(dir, 'config.yaml');
  // One port for two servers: the second deployment finds none.
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 26880 }, admin: { host: '127.0.0.1', port: 26881 }, ports: { from: 26882, to: 26882 }, state_dir: join(dir, 'state'),
    deployments: [{ model: 'first', version: '1', runtime: 'sim' }, { model: 'second', version: '1', runtime: 'sim' }],
  }));
  const { code, proc } = await serveUntilExit(file);
  t.equal(code, 1);
  t.match(proc.stderr.join('\n'), /sluice: deployment second-1 \(config file\): no free port left in 26882-26882/);
});
