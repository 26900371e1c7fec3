// The gateway's fixed capacities (1,024 deployments, 4,096 replicas, 65,536 rate-limit
// buckets: slots of shared memory) are refused by name. Before, the 1,025th deployment got
// 500 SLUICE_ERR_INTERNAL "more than 1024 entries", and a config file over a capacity
// stopped the start with the same words (or, for buckets, started a gateway that never
// published a route table).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { serveUntilExit, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 25525-25527 belong to this file: 25525-25526 the (unused) replica range, 25527 the
// remote deployments' URL, where nothing listens (their health checks are off).
const RANGE = { from: 25525, to: 25526 };
const REMOTE = 'http://127.0.0.1:25527';
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
});

const spec = (model: string, urls = [REMOTE]): Record<string, unknown> => ({ model, version: '1', runtime: 'remote', urls, health_check: { enabled: false } });

t.test('the 1,025th deployment through the admin API: 409 SLUICE_ERR_LIMIT_REACHED naming the limit, nothing stored', async (t) => {
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false }, deployments: Array.from({ length: 1020 }, (_, i) => spec(`c${i}`)) });
  const admin = adminClient(gw.adminUrl);
  const replies = [];
  for (let i = 0; i < 6; i++) replies.push(await admin.post('/v1/deployments', spec(`a${i}`)));
  t.same(replies.map((r) => r.status), [201, 201, 201, 201, 409, 409], 'four fit, the next are refused');
  t.equal(replies[4]!.body.error.code, 'SLUICE_ERR_LIMIT_REACHED');
  t.match(replies[4]!.body.error.message, /at most 1024 deployments/, 'naming the limit');
  t.equal((await admin.get('/v1/deployments/a4-1')).status, 404, 'the refused one is not listed');
  t.equal((await admin.del('/v1/deployments/a0-1?grace_ms=0')).status, 200);
  t.equal((await admin.post('/v1/deployments', spec('a4'))).status, 201, 'once one is undeployed, another fits');
  t.equal((await fetch(`${gw.url}/a4-1/x`)).status, 502, 'and is routed (to its URL, where nothing listens)');
});

t.test('a config file over a capacity stops the start naming it', async (t) => {
  const dir = t.testdir();
  const urls = Array.from({ length: 5 }, (_, i) => `${REMOTE}/u${i}`);
  const cases: Array<[string, unknown[], RegExp]> = [
    ['deployments', Array.from({ length: 1025 }, (_, i) => spec(`c${i}`)), /at most 1024 deployments/],
    ['replicas', Array.from({ length: 820 }, (_, i) => spec(`r${i}`, urls)), /at most 4096 replicas/],
    ['rate-limit buckets', Array.from({ length: 100 }, (_, i) => spec(`b${i}`)), /at most 65536 rate-limit buckets/],
  ];
  // 220 keys for every deployment, three limits on each: 66,000 buckets.
  const keys = Array.from({ length: 220 }, (_, i) => ({
    name: `k${i}`, key: `sk-capacity-test-${String(i).padStart(4, '0')}`,
    deployment_limits: { requests_per_second: 10, requests_per_minute: 100, tokens_per_minute: 1000 },
  }));
  for (const [what, deployments, message] of cases) {
    const file = join(dir, `${what.replaceAll(' ', '-')}.json`);
    writeFileSync(file, JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, workers: 1, ports: RANGE,
      state_dir: join(dir, `state-${what.replaceAll(' ', '-')}`), deployments, ...(what === 'rate-limit buckets' ? { api_keys: keys } : {}),
    }));
    const { code, proc } = await serveUntilExit(file);
    t.equal(code, 1, `too many ${what}: exit 1`);
    t.match(proc.stderr.join('\n'), message, 'naming the limit');
  }
});

t.test('a key or a deployment whose rate-limit buckets would not fit: 409 SLUICE_ERR_LIMIT_REACHED, nothing stored', async (t) => {
  await gw?.stop();
  // 100 deployments and 218 keys with three limits on each of them: 65,400 of 65,536 buckets.
  const keys = Array.from({ length: 218 }, (_, i) => ({
    name: `k${i}`, key: `sk-capacity-test-${String(i).padStart(4, '0')}`,
    deployment_limits: { requests_per_second: 10, requests_per_minute: 100, tokens_per_minute: 1000 },
  }));
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false }, api_keys: keys, deployments: Array.from({ length: 100 }, (_, i) => spec(`b${i}`)) });
  const admin = adminClient(gw.adminUrl);
  const everywhere = await admin.post('/v1/keys', { name: 'wide', key: 'sk-capacity-wide', deployment_limits: { requests_per_second: 5, requests_per_minute: 50, tokens_per_minute: 500 } });
  t.equal(everywhere.status, 409, '300 more buckets do not fit');
  t.equal(everywhere.body.error.code, 'SLUICE_ERR_LIMIT_REACHED');
  t.match(everywhere.body.error.message, /at most 65536 rate-limit buckets/, 'naming the limit');
  t.notOk((await admin.get('/v1/keys')).body.keys.some((k: { name: string }) => k.name === 'wide'), 'the refused key is not stored');
  t.notOk(gw.stderr.join('\n').includes('cannot build a route table'), 'no table failed');
  // Three buckets fit; the key's own limit of 1 request a second shows that the workers route by a table that has it.
  const narrow = await admin.post('/v1/keys', { name: 'narrow', key: 'sk-capacity-narrow', deployments: ['b0-1'], limits: { requests_per_second: 1 } });
  t.equal(narrow.status, 201, 'a key whose buckets fit is added');
  const headers = { authorization: 'Bearer sk-capacity-narrow' };
  let statuses: number[] = [];
  for (let i = 0; i < 20 && !statuses.includes(429); i++) {
    statuses = [];
    for (let k = 0; k < 3; k++) statuses.push((await fetch(`${gw.url}/b0-1/x`, { headers })).status);
    if (!statuses.includes(429)) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(statuses.includes(429), `its limit applies (${statuses.join(', ')})`);
  // Every key's three limits on a 101st deployment: 654 more buckets.
  const deploy = await admin.post('/v1/deployments', spec('b100'));
  t.equal(deploy.status, 409, 'a deployment whose buckets would not fit is refused');
  t.match(deploy.body.error.message, /at most 65536 rate-limit buckets/, 'naming the limit');
  t.equal((await admin.get('/v1/deployments/b100-1')).status, 404, 'and not stored');
  t.notOk(gw.stderr.join('\n').includes('cannot build a route table'), 'no table failed');
});
