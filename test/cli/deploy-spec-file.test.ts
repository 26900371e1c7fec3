// `sluice deploy -f` takes "the fields of a config file's deployments: entry", and reads them
// as the config file does. It used to turn a YAML number into text for `version` only, with
// String(): `version: 1.10` deployed x-1.1 (the config file refuses it: quote it),
// `version: 02` deployed x-2 (the config file's x-02), and `args: [--tokens, 3]` or
// `env: {X: 8000}`, which a config file takes, were refused by the API.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { adminClient } from '../helpers/control.js';
import { runCli } from '../helpers/cli.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 24340-24349 belong to this file: 24340 the gateway, 24341 its admin API, 24343-24349
// its model servers.
let gw: Gateway;
t.before(async () => {
  gw = await startGateway({ listen: { host: '127.0.0.1', port: 24340 }, admin: { host: '127.0.0.1', port: 24341 }, ports: { from: 24343, to: 24349 } });
});
t.teardown(() => gw.stop());

const deployFile = async (t: Test, yaml: string, ...flags: string[]) => {
  const file = join(t.testdir(), 'spec.yaml');
  writeFileSync(file, yaml);
  return runCli(['deploy', '-f', file, '--json', ...flags], { SLUICE_ADMIN_URL: gw.adminUrl });
};

t.test('a decimal version is refused before any request, as in the config file', async (t) => {
  const r = await deployFile(t, 'model: dec\nversion: 1.10\nruntime: sim\n');
  t.equal(r.code, 2, 'a usage error');
  t.match(r.stderr, /version: expected a string, got the number 1\.1 .*quote it, as "1\.10"/);
  t.same((await adminClient(gw.adminUrl).list()).filter((d) => d.id.startsWith('dec-')), [], 'nothing deployed');
});

t.test('an integer version is its text as written', async (t) => {
  const r = await deployFile(t, 'model: lead\nversion: 02\nruntime: sim\n');
  t.equal(r.code, 0, r.stderr);
  t.equal((JSON.parse(r.stdout) as { id: string }).id, 'lead-02', 'lead-02, not lead-2');
});

t.test('numbers in args and env are text, as the config file reads them', async (t) => {
  const r = await deployFile(t, 'model: nums\nversion: 1\nruntime: sim\nargs: ["--tokens", 3]\nenv: { SPEC_X: 8000 }\n', '--wait');
  t.equal(r.code, 0, r.stderr);
  const view = JSON.parse(r.stdout) as { id: string; replicas: Array<{ pid: number }> };
  t.equal(view.id, 'nums-1');
  const pid = view.replicas[0]!.pid;
  t.ok(readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('\u0000--tokens\u00003\u0000'), 'its server got --tokens 3');
  t.ok(readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes('SPEC_X=8000'), 'and SPEC_X=8000');
});
