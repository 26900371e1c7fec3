// `urls` and `command` mean something for one runtime each. Given to another (runtime
// defaults to sim), they used to be ignored: `sluice deploy gpt 4 --url http://...` without
// `--runtime remote` started a simulator that answered real clients with made-up tokens.
// They are refused with the field named, as health_check, port_env and model_path are.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { serveUntilExit, startGateway } from '../helpers/procs.js';

// Ports 24330-24339 belong to this file: 24330 the gateway, 24331 its admin API, 24332 a URL
// nothing serves, 24333-24339 model-server ports (none should start).
const config = { listen: { host: '127.0.0.1', port: 24330 }, admin: { host: '127.0.0.1', port: 24331 }, ports: { from: 24333, to: 24339 } };

t.test('the admin API refuses urls without runtime remote and command without runtime command', async (t) => {
  const gw = await startGateway(config);
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ model: 'gpt', version: '4', urls: ['http://127.0.0.1:24332'] }, 'urls', /only for the remote runtime, not sim/],
    [{ model: 'gpt', version: '5', runtime: 'mlflow', urls: ['http://127.0.0.1:24332'] }, 'urls', /not mlflow/],
    [{ model: 'tool', version: '1', runtime: 'sim', command: ['python3', 'serve.py', '{port}'] }, 'command', /only for the command runtime, not sim/],
    [{ model: 'tool', version: '2', runtime: 'remote', urls: ['http://127.0.0.1:24332'], command: ['x', '{port}'] }, 'command', /not remote/],
  ];
  for (const [spec, field, message] of cases) {
    const res = await admin.post('/v1/deployments', spec);
    t.equal(res.status, 400, `${JSON.stringify(spec)}: 400`);
    t.match(res.body, { error: { code: 'SLUICE_ERR_INVALID_FIELD', field, message } });
  }
  t.same((await admin.list()).map((d) => d.id), [], 'nothing deployed, no simulator started in their place');
});

t.test('the config file refuses them too, naming the field', async (t) => {
  for (const [entry, field] of [
    [{ model: 'gpt', version: '4', urls: ['http://127.0.0.1:24332'] }, 'deployments[0].urls'],
    [{ model: 'tool', version: '1', runtime: 'sim', command: ['python3', 'serve.py', '{port}'] }, 'deployments[0].command'],
  ] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-runtime-fields-'));
    const configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, JSON.stringify({ ...config, state_dir: join(dir, 'state'), deployments: [entry] }));
    const { code, proc } = await serveUntilExit(configFile);
    t.equal(code, 1, `${field}: exit 1`);
    t.match(proc.stderr.join('\n'), `config: ${field}: only for the`);
  }
});
