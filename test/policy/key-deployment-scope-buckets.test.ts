// A key's `deployment_limits` take rate-limit buckets only on the deployments its scope
// lets it call. Before, every key had them on every deployment: 700 keys scoped to two of
// 100 deployments asked for 70,000 of the 65,536 shared slots, and the gateway did not
// start ("more than 65536 rate-limit buckets"); keys added through the admin API past that
// point were stored with a 500, and no route table was published again.

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Ports 25515-25517 belong to this file: 25515-25516 the (unused) replica range, 25517 the
// upstream every remote deployment points at.
const RANGE = { from: 25515, to: 25516 };
const UPSTREAM_PORT = 25517;
const DEPLOYMENTS = 100;
const KEYS = 700;
let gw: Gateway | undefined;
let upstream: Server | undefined;

t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => upstream?.close(resolve) ?? resolve(undefined));
});

const keyOf = (i: number): string => `sk-scope-test-${String(i).padStart(6, '0')}`;

t.before(async () => {
  upstream = createServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => upstream!.listen(UPSTREAM_PORT, '127.0.0.1', resolve));
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    policies: { auth: { required: true } },
    deployments: Array.from({ length: DEPLOYMENTS }, (_, i) => ({
      model: `m${i}`, version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false },
    })),
    api_keys: Array.from({ length: KEYS }, (_, i) => ({
      name: `k${i}`, key: keyOf(i), deployments: [`m${i % DEPLOYMENTS}`, `m${(i + 1) % DEPLOYMENTS}-1`], deployment_limits: { requests_per_minute: 2 },
    })),
  });
});

async function statuses(path: string, key: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${gw!.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

t.test('700 keys scoped to 2 of 100 deployments each: the gateway starts and limits each key where it may call', async (t) => {
  t.same(await statuses('/m5-1/x', keyOf(5), 3), [200, 200, 429], 'by model name: its own bucket of 2 a minute');
  t.same(await statuses('/m6-1/x', keyOf(5), 3), [200, 200, 429], 'by deployment id: another bucket of 2');
  t.same(await statuses('/m7-1/x', keyOf(5), 1), [403], 'outside its scope: refused as before');
});

t.test('keys with deployment limits added through the admin API are all in force, and changes still route', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  const added = await Promise.all(Array.from({ length: 50 }, (_, i) => admin.post('/v1/keys', { name: `api${i}`, deployments: [`m${i}`], deployment_limits: { requests_per_minute: 1 } })));
  t.same(added.filter((r) => r.status !== 201).map((r) => r.text), [], 'every key: 201');
  const key = (added[3]!.body as { key: string }).key;
  t.same(await statuses('/m3-1/x', key, 2), [200, 429], 'a new key is limited on its deployment');
  const deployed = await admin.post('/v1/deployments', { model: 'late', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${UPSTREAM_PORT}`], health_check: { enabled: false }, policies: { auth: { required: false } } });
  t.equal(deployed.status, 201, 'a deployment made afterwards: 201');
  t.same(await statuses('/late-1/x', '', 1), [200], 'and routed');
});
