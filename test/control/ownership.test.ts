// One owner for each deployment: those of the config file are changed only there (the
// admin API refuses DELETE, /undeploy and a replacing POST with 409 saying so), those of
// the admin API are changed only through it. A config deployment that takes the id of a
// stored API deployment is warned about at start-up and shown as shadowing it; the stored
// one is kept and returns once the config file no longer has that id.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test as Tap } from 'tap';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, gwRequest, PidLog, reapServers, waitState, type AdminClient, type AdminReply } from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 18640-18649 belong to this file.
const RANGE = { from: 18640, to: 18649 };
const dir = t.testdir();
const stateDir = join(dir, 'state');
const pids = new PidLog();
const sim = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model, version: '1', runtime: 'sim', ...extra });

let gw: Gateway | undefined;
let admin: AdminClient;

async function boot(deployments: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): Promise<Gateway> {
  gw = await startGateway({ ports: RANGE, state_dir: stateDir, deployments, ...extra }, {}, false);
  admin = adminClient(gw.adminUrl);
  for (const d of deployments) pids.note(await waitState(admin, `${d.model as string}-${d.version as string}`, 'ready'));
  return gw;
}

async function stop(t: Tap): Promise<void> {
  const g = gw!;
  gw = undefined;
  t.equal(await g.stop(), 0, 'the gateway stops cleanly');
}

const storedIds = (): string[] =>
  (JSON.parse(readFileSync(join(stateDir, 'desired.json'), 'utf8')).deployments as Array<{ spec: { model: string; version: string } }>)
    .map((d) => `${d.spec.model}-${d.spec.version}`).sort();

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

let chatCreatedAt = '';

t.test('an API deployment is stored and belongs to the API', async (t) => {
  await boot([]);
  const r = await admin.post('/v1/deployments?wait=true', sim('chat', { args: ['--tokens', '7'] }));
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.equal(r.body.source, 'api');
  t.equal(r.body.shadows, null, 'it shadows nothing');
  chatCreatedAt = r.body.created_at as string;
  t.same(storedIds(), ['chat-1']);
  await stop(t);
});

t.test('config deployments: DELETE, /undeploy and a replacing POST get 409 naming the config file', async (t) => {
  await boot([sim('demo'), sim('chat', { args: ['--tokens', '3'] })], { api_keys: [{ name: 'from-config', key_sha256: 'a'.repeat(64) }] });

  const demo = (await admin.deployment('demo-1'))!;
  t.equal(demo.source, 'config');
  t.equal((demo as unknown as { shadows: unknown }).shadows, null, 'demo-1 shadows nothing');

  const attempts: Array<[string, () => Promise<AdminReply>]> = [
    ['DELETE /v1/deployments/demo-1', () => admin.del('/v1/deployments/demo-1?grace_ms=0')],
    ['POST /undeploy/demo-1', () => admin.post('/undeploy/demo-1')],
    ['POST /v1/deployments demo-1', () => admin.post('/v1/deployments', sim('demo', { replicas: 2 }))],
    ['POST /v1/deployments?wait=true demo-1', () => admin.post('/v1/deployments?wait=true', sim('demo'))],
    ['DELETE /v1/deployments/chat-1 (config, shadowing a stored one)', () => admin.del('/v1/deployments/chat-1?grace_ms=0')],
    ['POST /undeploy/chat-1', () => admin.post('/undeploy/chat-1')],
    // The same rule for API keys.
    ['DELETE /v1/keys/from-config', () => admin.del('/v1/keys/from-config')],
    ['POST /v1/keys from-config', () => admin.post('/v1/keys', { name: 'from-config' })],
  ];
  for (const [what, call] of attempts) {
    const r = await call();
    t.equal(r.status, 409, `${what}: 409`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_CONFIG_OWNED', `${what}: code`);
    t.match(r.body?.error?.message, /defined in the config file/, `${what}: the message says where it is defined`);
  }

  const after = (await admin.deployment('demo-1'))!;
  t.equal(after.state, 'ready', 'demo-1 is still ready');
  t.equal(after.replicas.length, 1, 'with its configured replica count, not the refused POST\'s');
  const served = await gwRequest(`${gw!.url}/demo-1/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
  t.equal(served.status, 200, 'and serves');
  t.same(storedIds(), ['chat-1'], 'nothing about demo-1 was stored; the stored chat-1 is kept');
  t.match((await admin.get('/v1/keys')).body?.keys, [{ name: 'from-config', source: 'config' }], 'the config key is still the only key');

  // An API deployment next to them is still the API's to remove.
  const other = await admin.post('/v1/deployments?wait=true', sim('other'));
  pids.note(other.body);
  t.equal(other.status, 201);
  const dup = await admin.post('/v1/deployments', sim('other'));
  t.equal(dup.status, 409, 'a second POST of an API deployment: 409');
  t.equal(dup.body?.error?.code, 'SLUICE_ERR_CONFLICT', 'with the plain conflict code');
  t.equal((await admin.del('/v1/deployments/other-1?grace_ms=0')).status, 200, 'an API deployment is removed through the API');
  t.equal(await admin.deployment('other-1'), null);
  await stop(t);
});

t.test('a config deployment shadowing a stored API deployment: a warning, and shown in the view', async (t) => {
  const g = await boot([sim('demo'), sim('chat', { args: ['--tokens', '3'] })]);
  const warning = jsonLogs(g).find((l) => l.level === 'warn' && l.deployment === 'chat-1');
  t.ok(warning, 'a warning names chat-1 at start-up');
  t.match(warning?.msg, /config file/, 'and says the config file wins');

  const chat = (await admin.deployment('chat-1')) as unknown as Record<string, unknown>;
  t.equal(chat.source, 'config', 'the config deployment is the one running');
  t.same(chat.shadows, { source: 'api', created_at: chatCreatedAt }, 'the view says which API deployment it shadows');
  const listed = (await admin.list()).find((d) => d.id === 'chat-1') as unknown as Record<string, unknown>;
  t.same(listed.shadows, chat.shadows, 'the list view says so too');
  const gen = await gwRequest(`${g.url}/chat-1/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
  t.equal(gen.json?.eval_count, 3, 'the config spec (--tokens 3) is in force, not the stored one (--tokens 7)');
  t.notOk(jsonLogs(g).some((l) => l.level === 'warn' && l.deployment === 'demo-1'), 'no warning for demo-1, which shadows nothing');
  await stop(t);
});

t.test('removed from the config file, the stored API deployment comes back and is the API\'s again', async (t) => {
  const g = await boot([sim('demo')]);
  const chat = await waitState(admin, 'chat-1', 'ready');
  pids.note(chat);
  t.equal(chat.source, 'api');
  t.equal((chat as unknown as { shadows: unknown }).shadows, null);
  t.notOk(jsonLogs(g).some((l) => l.level === 'warn' && l.deployment === 'chat-1'), 'no shadowing warning any more');
  const gen = await gwRequest(`${g.url}/chat-1/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
  t.equal(gen.json?.eval_count, 7, 'the stored spec (--tokens 7) is back');
  t.equal((await admin.del('/v1/deployments/chat-1?grace_ms=0')).status, 200, 'and DELETE removes it');
  t.same(storedIds(), [], 'from the store too');
  t.equal((await admin.del('/v1/deployments/demo-1?grace_ms=0')).status, 409, 'demo-1 is still the config file\'s');
  await stop(t);
  await assertNoServersLeft(t, pids.pids, RANGE);
});
