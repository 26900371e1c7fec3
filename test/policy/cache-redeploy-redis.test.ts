// The shared cache in Redis after a deployment is undeployed and deployed anew under the same
// id with another spec (a fixed model, another command): the new one answers from its own
// servers, on every instance, not with what the old one stored there (for up to ttl_ms).
// Two gateways on one real Redis; a deployment made through the admin API is one spec on both,
// so its entries are still shared between them.

import t from 'tap';
import { adminClient, reapServers, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Ports 27450-27469 belong to this file: Redis 27450, gateway A 27451 (admin 27452), B 27453
// (admin 27454); replicas of A 27460-27464, of B 27465-27469.
const REDIS_PORT = 27450;
const RANGE = { from: 27460, to: 27469 };
let redis: RedisServer | undefined;
const gateways: Gateway[] = [];

t.teardown(async () => {
  for (const gw of gateways) await gw.stop();
  await redis?.stop();
  await reapServers([], RANGE);
});

async function gateway(port: number, from: number): Promise<Gateway> {
  const gw = await startGateway({
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: port + 1 },
    ports: { from, to: from + 4 },
    log: { level: 'info', access: false },
    redis: { url: redis!.url },
    deployments: [],
  });
  gateways.push(gw);
  return gw;
}

const sim = (tokens: number): Record<string, unknown> => ({ model: 'cc', version: '1', runtime: 'sim', args: ['--tokens', String(tokens)] });

function ask(gw: Gateway): Promise<Reply> {
  return httpRequest(`${gw.url}/cc-1/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, timeoutMs: 5_000,
    body: JSON.stringify({ model: 'cc', temperature: 0, messages: [{ role: 'user', content: 'the same question' }] }),
  });
}

const answer = (r: Reply): string => (JSON.parse(r.body) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;

t.test('undeployed and deployed anew with another spec: no hit on the old answers, through either instance', async (t) => {
  redis = await startRedis(REDIS_PORT);
  const a = await gateway(27451, 27460);
  const b = await gateway(27453, 27465);
  const adminA = adminClient(a.adminUrl);
  const ready = (gw: Gateway): Promise<unknown> => eventually(async () => (await ask(gw)).status === 200 || undefined, 20_000, 'cc-1 to answer');

  t.equal((await adminA.post('/v1/deployments?wait=true', sim(3))).status, 201, 'cc-1 deployed: 3 tokens');
  const first = await ask(a);
  t.equal(first.headers['x-sluice-cache'], 'miss', 'asked through A: a miss, stored in Redis');
  await ready(b);
  t.equal((await ask(b)).headers['x-sluice-cache'], 'hit', 'through B: a hit, from Redis');

  t.equal((await adminA.del('/v1/deployments/cc-1')).status, 200, 'undeployed');
  const made = await adminA.post('/v1/deployments?wait=true', sim(8));
  t.equal(made.status, 201, 'deployed anew: 8 tokens');
  const createdAt = (made.body as { created_at: string }).created_at;
  await eventually(async () => {
    const v = (await adminClient(b.adminUrl).get('/v1/deployments/cc-1')).body as { state: string; created_at: string; replicas: Array<{ state: string }> };
    return v.created_at === createdAt && v.state === 'ready' && v.replicas.every((r) => r.state === 'ready') || undefined;
  }, 20_000, 'B to run the new cc-1');
  for (const [name, gw] of [['A', a], ['B', b]] as const) {
    const r = await ask(gw);
    t.not(answer(r), answer(first), `through ${name}: the new deployment's answer (${r.headers['x-sluice-cache']}), not the old one's`);
    t.match(answer(r), /tok7/, `through ${name}: 8 tokens`);
  }
  const shared = await ask(b);
  t.equal(shared.headers['x-sluice-cache'], 'hit', 'the new deployment\'s entries are shared by both instances too');
});
