// Rate-limit buckets live in slots of shared memory (65,536). A bucket no route table has
// any more (an undeployed deployment's, a removed key's) gives its slot back. Before, slots
// were only ever added: a removed key's bucket stayed, so a key added again under its name
// started empty, and a gateway that made and dropped deployments and keys ran out of slots,
// after which every admin change answered 500 and the gateway could crash.

import t from 'tap';
import { adminClient, reapServers } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(180_000);

// Replica ports 24140-24149 belong to this file.
const RANGE = { from: 24140, to: 24149 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

t.before(async () => {
  gw = await startGateway({
    ports: RANGE,
    deployments: [{ model: 'bs', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0'] }],
  });
});

async function statuses(key: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${gw!.url}/bs-1/api/tags`, { headers: { authorization: `Bearer ${key}` } });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

t.test('a key added again under a removed key\'s name starts with a full bucket', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  const old = await admin.post<{ key: string }>('/v1/keys', { name: 'again', limits: { requests_per_minute: 1 } });
  t.equal(old.status, 201);
  t.same(await statuses(old.body.key, 2), [200, 429], 'the old key used its one request');
  t.equal((await admin.del('/v1/keys/again')).status, 200);
  const fresh = await admin.post<{ key: string }>('/v1/keys', { name: 'again', limits: { requests_per_minute: 100 } });
  t.equal(fresh.status, 201);
  t.same(await statuses(fresh.body.key, 10), Array(10).fill(200), 'the new key has its 100');
});

t.test('deployments made and dropped for ever do not use up the slots', async (t) => {
  const admin = adminClient(gw!.adminUrl);
  // 200 keys x 3 limits on every deployment: 600 slots per deployment id, 65,536 in all.
  const limits = { requests_per_second: 100, requests_per_minute: 6000, tokens_per_minute: 100_000 };
  for (let i = 0; i < 200; i++) {
    const r = await admin.post('/v1/keys', { name: `k${i}`, deployment_limits: limits });
    if (r.status !== 201) t.fail(`key k${i}: ${r.status} ${r.text}`);
  }
  let failed: string | null = null;
  for (let i = 0; i < 130 && failed === null; i++) {
    // Remote, checks off: routed at once, nothing to start.
    const made = await admin.post('/v1/deployments', { model: 'cyc', version: String(i), runtime: 'remote', urls: [`http://127.0.0.1:${RANGE.to}`], health_check: { enabled: false } });
    if (made.status !== 201) failed = `deploy cyc-${i}: ${made.status} ${made.text}`;
    const gone = await admin.del(`/v1/deployments/cyc-${i}?grace_ms=0`);
    if (failed === null && gone.status !== 200) failed = `undeploy cyc-${i}: ${gone.status} ${gone.text}`;
  }
  t.equal(failed, null, '130 deployments made and dropped (78,000 bucket ids)');
  t.equal(gw!.child.exitCode, null, 'the gateway runs');
  const key = await admin.post<{ key: string }>('/v1/keys', { name: 'after', limits: { requests_per_minute: 5 } });
  t.equal(key.status, 201, 'a key can still be added');
  t.same(await statuses(key.body.key, 6), [200, 200, 200, 200, 200, 429], 'and its limit holds');
});
