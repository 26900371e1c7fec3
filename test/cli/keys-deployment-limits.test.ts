// `sluice keys ls` shows both kinds of a key's limits: those over all its deployments
// (`limits`) and those on each deployment its scope allows (`deployment_limits`). It showed
// the first only, so a key limited to 5 requests/s on each deployment was listed with
// LIMITS '-', as a key without any.

import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { runCli } from '../helpers/cli.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// No model server: the port range 29510-29519 is this file's all the same.
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({ ports: { from: 29510, to: 29519 }, log: { level: 'info', access: false } });
});
t.teardown(() => gw?.stop());

/** The cells of `keys ls` for key `name`, by column (columns start where their heading does). */
function row(stdout: string, name: string): Record<string, string> {
  const lines = stdout.split('\n');
  const head = lines[0]!;
  const starts = [...head.matchAll(/\S+(?: \S+)*/g)].map((m) => ({ name: m[0], at: m.index }));
  const line = lines.find((l) => l.startsWith(`${name} `)) ?? '';
  return Object.fromEntries(starts.map((c, i) => [c.name, line.slice(c.at, starts[i + 1]?.at).trim()]));
}

t.test('keys ls shows the limits a key has on each deployment', async (t) => {
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/keys', { name: 'each', deployment_limits: { requests_per_second: 5 } })).status, 201);
  t.equal((await admin.post('/v1/keys', { name: 'both', limits: { requests_per_minute: 600 }, deployment_limits: { tokens_per_minute: 20000 } })).status, 201);
  t.equal((await admin.post('/v1/keys', { name: 'none' })).status, 201);

  const ls = await runCli(['keys', 'ls'], { SLUICE_ADMIN_URL: gw.adminUrl });
  t.equal(ls.code, 0, ls.stderr);
  t.match(row(ls.stdout, 'each'), { LIMITS: '-', 'PER DEPLOYMENT': 'rps=5' }, 'limited on each deployment only');
  t.match(row(ls.stdout, 'both'), { LIMITS: 'rpm=600', 'PER DEPLOYMENT': 'tpm=20000' }, 'limited both ways');
  t.match(row(ls.stdout, 'none'), { LIMITS: '-', 'PER DEPLOYMENT': '-' }, 'not limited');
});
