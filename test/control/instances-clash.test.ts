// Two instances on one Redis, changed through both at once: an API key added under one name
// (or one key under two names), or a deployment id deployed, through both is added once, and
// the other gets 409, as on one instance; what got the 201 is what works, on both. Traffic
// changed through both at once is changed twice, one after the other, with both events.

import t from 'tap';
import { startRedis, waitFor } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { InstancesOnRedis, type Instance } from '../helpers/traffic.js';

t.setTimeout(120_000);

// Ports 19640-19654 belong to this file: Redis 19640; gateway A 19641 (admin 19642),
// replicas 19645-19649; gateway B 19643 (admin 19644), replicas 19650-19654.
const RANGE = { from: 19645, to: 19654 };
const instances = new InstancesOnRedis(t, RANGE);
const pids = instances.pids;

async function start(name: string, port: number, replicas: { from: number; to: number }): Promise<Instance> {
  return instances.startAt(name, port, replicas, {
    workers: 1,
    deployments: [{ model: 'sec', version: '1', runtime: 'sim', policies: { auth: { required: true } } }],
  });
}

let A: Instance;
let B: Instance;

t.before(async () => {
  instances.redis = await startRedis(19640);
  [A, B] = await Promise.all([start('A', 19641, { from: 19645, to: 19649 }), start('B', 19643, { from: 19650, to: 19654 })]);
});

/** The status of a chat request to `sec` on `i` with `key`. */
async function callWith(i: Instance, key: string): Promise<number> {
  const r = await httpRequest(`${i.gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sec', messages: [{ role: 'user', content: 'hi' }] }), timeoutMs: 10_000,
  });
  return r.status;
}

t.test('one key name added through both instances at once: one 201, one 409, and the shown key works on both', async (t) => {
  for (const name of ['team-1', 'team-2', 'team-3']) {
    const [ra, rb] = await Promise.all([A.admin.post('/v1/keys', { name, deployments: ['sec'] }), B.admin.post('/v1/keys', { name, deployments: ['sec'] })]);
    t.same([ra.status, rb.status].sort(), [201, 409], `${name}: one 201, one 409 (${ra.text.slice(0, 120)} | ${rb.text.slice(0, 120)})`);
    const refused = ra.status === 409 ? ra : rb;
    t.equal(refused.body?.error?.code, 'SLUICE_ERR_CONFLICT', `${name}: the other is SLUICE_ERR_CONFLICT`);
    const shown = (ra.status === 201 ? ra : rb).body?.key as string;
    for (const i of [A, B]) {
      const status = await waitFor(async () => ((await callWith(i, shown)) === 200 ? 200 : undefined), 10_000, `${name}'s shown key to work on ${i.name}`);
      t.equal(status, 200, `${name}: the key shown works on ${i.name}`);
    }
  }
});

t.test('one key under two names through both instances at once: one 201, one 409', async (t) => {
  for (const n of [1, 2, 3]) {
    const key = `sk-shared-secret-${n}-0123456789`;
    const [ra, rb] = await Promise.all([A.admin.post('/v1/keys', { name: `a-${n}`, key }), B.admin.post('/v1/keys', { name: `b-${n}`, key })]);
    t.same([ra.status, rb.status].sort(), [201, 409], `key ${n}: one 201, one 409 (${ra.text.slice(0, 120)} | ${rb.text.slice(0, 120)})`);
  }
});

/** The completion tokens of `/<id>/v1/chat/completions` on `i` (the sim answers `--tokens` of them), or its status when not 200. */
async function tokensOf(i: Instance, id: string): Promise<number | string> {
  const r = await httpRequest(`${i.gw.url}/${id}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: id.slice(0, id.lastIndexOf('-')), messages: [{ role: 'user', content: 'hi' }] }), timeoutMs: 10_000,
  });
  return r.status === 200 ? (JSON.parse(r.body.toString()) as { usage: { completion_tokens: number } }).usage.completion_tokens : `status ${r.status}`;
}

t.test('one deployment id deployed through both instances at once: one 201, one 409, and both serve the one stored', async (t) => {
  for (const version of ['1', '2', '3']) {
    const spec = (tokens: string): unknown => ({ model: 'twice', version, runtime: 'sim', args: ['--tokens', tokens] });
    const [ra, rb] = await Promise.all([A.admin.post('/v1/deployments?wait=true', spec('3')), B.admin.post('/v1/deployments?wait=true', spec('9'))]);
    t.same([ra.status, rb.status].sort(), [201, 409], `twice-${version}: one 201, one 409 (${ra.text.slice(0, 120)} | ${rb.text.slice(0, 120)})`);
    const refused = ra.status === 409 ? ra : rb;
    t.equal(refused.body?.error?.code, 'SLUICE_ERR_CONFLICT', `twice-${version}: the other is SLUICE_ERR_CONFLICT`);
    const want = ra.status === 201 ? 3 : 9;
    for (const i of [A, B]) {
      const got = await waitFor(async () => ((await tokensOf(i, `twice-${version}`)) === want ? want : undefined), 15_000, `${i.name} to serve twice-${version}'s stored spec`);
      t.equal(got, want, `${i.name} serves the spec that got 201`);
    }
    pids.note(await A.admin.list());
    pids.note(await B.admin.list());
    t.equal((await A.admin.del(`/v1/deployments/twice-${version}?grace_ms=0`)).status, 200, `twice-${version} undeployed`);
  }
});

t.test('a deployment undeployed and deployed anew through A is followed by B, however soon after', async (t) => {
  const deploy = async (tokens: string): Promise<void> => {
    const r = await A.admin.post('/v1/deployments?wait=true', { model: 'again', version: '1', runtime: 'sim', args: ['--tokens', tokens] });
    t.equal(r.status, 201, `again-1 deployed with --tokens ${tokens} (${r.text.slice(0, 120)})`);
    pids.note(r.body);
  };
  await deploy('3');
  await waitFor(async () => ((await tokensOf(B, 'again-1')) === 3 ? true : undefined), 15_000, 'B to serve again-1');
  for (const tokens of [4, 5, 6]) {
    t.equal((await A.admin.del('/v1/deployments/again-1?grace_ms=0')).status, 200, 'undeployed through A');
    await deploy(String(tokens));
    const got = await waitFor(async () => ((await tokensOf(B, 'again-1')) === tokens ? tokens : undefined), 15_000, `B to serve again-1 with --tokens ${tokens}`);
    t.equal(got, tokens, `B serves the new again-1 (${tokens} tokens)`);
    pids.note(await B.admin.list());
  }
});

t.test("traffic changed through both instances at once: both are applied, one after the other, and both events are kept", async (t) => {
  for (const version of ['1', '2']) {
    const r = await A.admin.post('/v1/deployments?wait=true', { model: 'tr', version, runtime: 'sim' });
    t.equal(r.status, 201, `tr-${version} deployed`);
    pids.note(r.body);
  }
  await waitFor(async () => (await B.admin.list()).filter((d) => d.model === 'tr' && d.state === 'ready').length === 2, 15_000, 'B to run tr-1 and tr-2');
  pids.note(await B.admin.list());
  type Events = { events: Array<{ action: string; to: Record<string, number> | null }> };
  for (const round of [1, 2, 3]) {
    const wa = { '1': 90 + round, '2': 1 };
    const wb = { '1': 1, '2': 90 + round };
    const [ra, rb] = await Promise.all([A.admin.request('PUT', '/v1/models/tr/traffic', { weights: wa }), B.admin.request('PUT', '/v1/models/tr/traffic', { weights: wb })]);
    t.same([ra.status, rb.status], [200, 200], `round ${round}: both 200 (${ra.text.slice(0, 100)} | ${rb.text.slice(0, 100)})`);
    for (const i of [A, B]) {
      const tos = await waitFor(async () => {
        const e = (await i.admin.get('/v1/models/tr/events')).body as Events;
        const got = e.events.filter((x) => x.action === 'traffic').map((x) => JSON.stringify(x.to));
        return got.includes(JSON.stringify(wa)) && got.includes(JSON.stringify(wb)) ? got : undefined;
      }, 5_000, `${i.name} to list both round-${round} changes among its events`).catch(() => undefined);
      t.ok(tos, `round ${round}: ${i.name} lists both changes`);
    }
    const same = await waitFor(async () => {
      const [va, vb] = await Promise.all([A.admin.get('/v1/models/tr'), B.admin.get('/v1/models/tr')]);
      return JSON.stringify(va.body.weights) === JSON.stringify(vb.body.weights) ? va.body.weights as unknown : undefined;
    }, 5_000, `round ${round}: both instances to have the same weights`);
    t.ok([JSON.stringify(wa), JSON.stringify(wb)].includes(JSON.stringify(same)), `round ${round}: both instances end with one of the two changes`);
  }
});
