// SIGTERM or SIGINT (Ctrl-C) while the gateway starts its model servers: the start goes on,
// then the usual drain and stop, exit 0, no server left. Node's default ended the process at
// once (exit by the signal), leaving the servers it had spawned running and the state
// directory's lock behind.
//
// Ports 26840-26869 belong to this file: model servers; the gateway listens on port 0.

import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnCli, waitForLine } from '../helpers/procs.js';
import { assertNoServersLeft, reapServers } from '../helpers/control.js';

t.setTimeout(120_000);

const RANGE = { from: 26840, to: 26869 };

t.teardown(() => reapServers([], RANGE));

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} after the first model server was spawned: the start finishes, then a clean stop`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-signal-start-'));
    const configFile = join(dir, 'config.yaml');
    const stateDir = join(dir, 'state');
    writeFileSync(configFile, JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      workers: 1,
      ports: RANGE,
      state_dir: stateDir,
      shutdown: { drain_delay_ms: 0 },
      // Many deployments, so that the start is still spawning servers when the signal comes.
      deployments: Array.from({ length: 12 }, (_, i) => ({ model: `s${i}`, version: '1', runtime: 'sim' })),
    }));
    const gw = spawnCli(['serve', '--config', configFile]);
    t.teardown(() => gw.stop('SIGKILL'));
    await waitForLine(gw, (l) => l.includes('"state":"starting"'), 30_000);
    gw.child.kill(signal);
    t.equal(await gw.exited, 0, 'exit 0');
    t.equal(gw.child.signalCode, null, 'not ended by the signal itself');
    t.ok(gw.lines.some((l) => l.includes('stopping once started')), 'it said it would stop once started');
    t.ok(gw.lines.some((l) => l.includes('model servers stopped')), 'and stopped its model servers');
    t.notOk(existsSync(join(stateDir, 'gateway.pid')), 'the state directory is released');
    await assertNoServersLeft(t, [], RANGE);
  });
}
