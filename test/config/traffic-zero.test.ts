// The traffic API refuses weights that give no version anything ("must give some version a
// weight above 0"); the config file's `traffic` took them, and the model's view then showed
// weights of 0 while its alias sent everything to the newest ready version. The file is
// refused the same way, naming the model.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { serveUntilExit } from '../helpers/procs.js';

// Ports 24370-24379 belong to this file: 24370 the gateway, 24371 its admin API, 24372-24379
// model-server ports (none should start).
t.test('traffic weights that sum to 0 stop the start, naming traffic.<model>', async (t) => {
  for (const weights of [{ 1: 0, 2: 0 }, {}]) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-traffic-zero-'));
    const configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, JSON.stringify({
      listen: { host: '127.0.0.1', port: 24370 },
      admin: { host: '127.0.0.1', port: 24371 },
      ports: { from: 24372, to: 24379 },
      state_dir: join(dir, 'state'),
      deployments: [{ model: 'demo', version: '1', runtime: 'sim' }, { model: 'demo', version: '2', runtime: 'sim' }],
      traffic: { demo: weights },
    }));
    const { code, proc } = await serveUntilExit(configFile);
    t.equal(code, 1, `${JSON.stringify(weights)}: exit 1`);
    t.match(proc.stderr.join('\n'), 'config: traffic.demo: must give some version a weight above 0');
  }
});
