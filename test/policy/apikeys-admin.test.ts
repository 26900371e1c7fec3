// Client API keys managed through the admin API (/v1/keys): a key added there works at
// once on the data plane, with its scope; a generated key is shown once, in the answer that
// created it; the state store keeps only its digest, so the key survives a restart and is
// never written anywhere in the clear; removing it refuses the next request; config keys
// are listed but cannot be removed through the API.

import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { reapServers, redisCommand, startRedis, waitFor } from '../helpers/control.js';
import { httpRequest } from '../helpers/http.js';
import { errorOf } from '../helpers/policy.js';
import { metricsText, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 18830-18834 belong to this file.
const RANGE = { from: 18830, to: 18834 };
const CONFIG_KEY = 'sk-config-0123456789abcdef-CONFIGKEY';
const CHOSEN_KEY = 'sk-chosen-0123456789abcdef-CHOSENKEY';
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-keys-')), 'state');
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

const config = {
  ports: RANGE,
  state_dir: stateDir,
  log: { level: 'debug', access: true },
  api_keys: [{ name: 'from-config', key: CONFIG_KEY, deployments: ['*'] }],
  deployments: [
    { model: 'sec', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
    { model: 'other', version: '1', runtime: 'sim', policies: { auth: { required: true } } },
  ],
};

let gw: Gateway;
const output: string[] = [];
// Every secret this file ever handles, to look for in logs, state and answers at the end.
const secrets: string[] = [CONFIG_KEY, CHOSEN_KEY];

t.before(async () => {
  gw = await startGateway(config);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const r = await fetch(`${gw.adminUrl}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text === '' ? null : JSON.parse(text), text };
}

const call = (path: string, key: string): Promise<{ status: number }> => httpRequest(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key}` } });

t.test('a generated key is shown once and works at once, within its scope', async (t) => {
  const created = await admin('POST', '/v1/keys', { name: 'gen', deployments: ['sec'] });
  t.equal(created.status, 201);
  const secret = created.json.key as string;
  t.match(secret, /^sk-sluice-[A-Za-z0-9_-]{32}$/, 'the answer carries the generated key');
  secrets.push(secret);
  t.equal(created.json.label, `gen#${sha256(secret).slice(0, 8)}`, 'named by its label: name and 8 hex digits of its digest');
  t.equal(created.json.source, 'api');

  t.equal((await call('/sec-1/_sim/echo', secret)).status, 200, 'accepted on the deployment it may call');
  const other = await call('/other-1/_sim/echo', secret);
  t.equal(other.status, 403, 'refused on another one');
  t.equal(errorOf(other as never)?.code, 'SLUICE_ERR_FORBIDDEN');

  const shown = await admin('GET', '/v1/keys/gen');
  t.equal(shown.status, 200);
  t.equal(shown.json.key, undefined, 'reading it back never shows the key');
  const list = await admin('GET', '/v1/keys');
  t.same(list.json.keys.map((k: { name: string; source: string }) => [k.name, k.source]), [['from-config', 'config'], ['gen', 'api']], 'config keys and added keys are listed');
});

t.test('a key chosen by the client, or given as its digest, with its own limits', async (t) => {
  const chosen = await admin('POST', '/v1/keys', { name: 'chosen', key: CHOSEN_KEY, limits: { requests_per_minute: 2 } });
  t.equal(chosen.status, 201);
  t.equal(chosen.json.key, undefined, 'a key the client chose is not echoed');
  t.notOk(chosen.text.includes(CHOSEN_KEY));
  t.equal((await call('/sec-1/_sim/echo', CHOSEN_KEY)).status, 200);
  t.equal((await call('/other-1/_sim/echo', CHOSEN_KEY)).status, 200, 'deployments default to every one');
  const limited = await call('/sec-1/_sim/echo', CHOSEN_KEY);
  t.equal(limited.status, 429, 'the key\'s own limit of 2 a minute applies');

  const digestOnly = 'sk-digest-only-0123456789abcdef-DIGEST';
  secrets.push(digestOnly);
  const hashed = await admin('POST', '/v1/keys', { name: 'hashed', key_sha256: sha256(digestOnly), deployments: ['other-1'] });
  t.equal(hashed.status, 201);
  t.equal((await call('/other-1/_sim/echo', digestOnly)).status, 200, 'a key given only by its SHA-256 works');
});

t.test('bad requests are refused with the field named, and nothing changes', async (t) => {
  const dup = await admin('POST', '/v1/keys', { name: 'gen' });
  t.equal(dup.status, 409, 'a name in use: 409');
  t.equal(dup.json.error.code, 'SLUICE_ERR_CONFLICT');
  const reused = await admin('POST', '/v1/keys', { name: 'again', key: CONFIG_KEY });
  t.equal(reused.status, 409, 'a key already in use under another name: 409');
  const short = await admin('POST', '/v1/keys', { name: 'short', key: 'tiny-secret' });
  t.equal(short.status, 400);
  t.equal(short.json.error.field, 'key', 'the bad field is named');
  t.notOk(short.text.includes('tiny-secret'), 'but its value, a secret, is not echoed');
  const both = await admin('POST', '/v1/keys', { name: 'both', key: CHOSEN_KEY + 'x', key_sha256: sha256('x') });
  t.equal(both.status, 400, 'key and key_sha256 together: 400');
  const unknown = await admin('POST', '/v1/keys', { name: 'typo', deployment: ['sec'] });
  t.equal(unknown.status, 400);
  t.equal(unknown.json.error.field, 'deployment', 'an unknown field is named');
  const names = (await admin('GET', '/v1/keys')).json.keys.map((k: { name: string }) => k.name);
  t.same(names, ['from-config', 'gen', 'chosen', 'hashed'], 'no refused request added a key');
  const fromConfig = await admin('DELETE', '/v1/keys/from-config');
  t.equal(fromConfig.status, 409, 'a config key cannot be removed through the API');
  t.equal((await call('/sec-1/_sim/echo', CONFIG_KEY)).status, 200, 'and still works');
  t.equal((await admin('DELETE', '/v1/keys/nope')).status, 404);
});

t.test('added keys survive a restart; the state holds digests only', async (t) => {
  // Every file below the state directory, replica logs included.
  const files = readdirSync(stateDir, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(stateDir, f)).isFile());
  t.ok(files.includes('api-keys.json'), 'the keys are in the state directory');
  const stored = readFileSync(join(stateDir, 'api-keys.json'), 'utf8');
  t.ok(stored.includes(sha256(CHOSEN_KEY)), 'as digests');
  for (const f of files) {
    const text = readFileSync(join(stateDir, f), 'utf8');
    for (const s of secrets) t.notOk(text.includes(s), `no key in the clear in state/${f}`);
  }
  output.push(...gw.lines);
  await gw.stop();
  gw = await startGateway(config);
  const names = (await admin('GET', '/v1/keys')).json.keys.map((k: { name: string }) => k.name);
  t.same(names, ['from-config', 'gen', 'chosen', 'hashed'], 'every key is back');
  t.equal((await call('/sec-1/_sim/echo', secrets[2]!)).status, 200, 'the generated key works after the restart');
});

t.test('a removed key is refused at once', async (t) => {
  const secret = secrets[2]!;
  const removed = await admin('DELETE', '/v1/keys/gen');
  t.equal(removed.status, 200);
  t.equal(removed.json.state, 'deleted');
  const after = await call('/sec-1/_sim/echo', secret);
  t.equal(after.status, 401, 'the next request with it: 401');
  t.equal((await admin('GET', '/v1/keys/gen')).status, 404);
  t.notOk(readFileSync(join(stateDir, 'api-keys.json'), 'utf8').includes(sha256(secret)), 'and its digest left the state');
});

t.test('no key appears in the logs, the metrics or the admin API', async (t) => {
  await sleep(1200); // worker logs are flushed every second
  const logs = [...output, ...gw.lines].join('\n');
  const metrics = await metricsText(gw);
  const views = (await admin('GET', '/v1/keys')).text + (await admin('GET', '/v1/deployments')).text;
  t.ok(logs.includes('API key added') && logs.includes('"request"'), 'the logs that could leak a key were written');
  for (const s of secrets) {
    t.notOk(logs.includes(s), 'not in the gateway output');
    t.notOk(metrics.includes(s), 'not in /metrics');
    t.notOk(views.includes(s), 'not in the admin API');
  }
});

t.test('on a shared Redis, a key added on one instance reaches the others', async (t) => {
  const redis = await startRedis();
  const shared = { ...config, ports: { from: 18835, to: 18839 }, redis: { url: redis.url }, api_keys: [] };
  const a = await startGateway({ ...shared, state_dir: join(mkdtempSync(join(tmpdir(), 'sluice-keys-a-')), 'state') });
  const b = await startGateway({ ...shared, state_dir: join(mkdtempSync(join(tmpdir(), 'sluice-keys-b-')), 'state') });
  t.teardown(async () => {
    await Promise.all([a.stop(), b.stop()]);
    await redis.stop();
    await reapServers([], { from: 18835, to: 18839 });
  });
  const created = await (await fetch(`${a.adminUrl}/v1/keys`, { method: 'POST', body: JSON.stringify({ name: 'shared' }) })).json() as { key: string };
  const stored = String(await redisCommand(redis.port, 'HGET', 'sluice:api_keys', 'shared'));
  t.ok(stored.includes(sha256(created.key)) && !stored.includes(created.key), 'Redis holds its digest, not the key');
  const seen = await waitFor(async () => {
    const r = await fetch(`${b.adminUrl}/v1/keys/shared`);
    return r.status === 200 ? ((await r.json()) as { label: string }) : undefined;
  }, 10_000, 'instance B to see the key');
  t.equal(seen.label, `shared#${sha256(created.key).slice(0, 8)}`, 'instance B lists it');
  await fetch(`${b.adminUrl}/v1/keys/shared`, { method: 'DELETE' });
  await waitFor(async () => (await fetch(`${a.adminUrl}/v1/keys/shared`)).status === 404, 10_000, 'instance A to drop the removed key');
  t.pass('removed on B, gone on A');

  // Removed and added again on A between two of B's reconciles: same name and digest,
  // narrower scope. B's data plane must take the new scope, not keep the key it had.
  const gen = (gw: Gateway, id: string): Promise<{ status: number }> => httpRequest(`${gw.url}/${id}/_sim/echo`, { headers: { authorization: `Bearer ${created.key}` } });
  await fetch(`${a.adminUrl}/v1/keys`, { method: 'POST', body: JSON.stringify({ name: 'shared', key_sha256: sha256(created.key) }) });
  await waitFor(async () => (await gen(b, 'other-1')).status === 200, 10_000, 'instance B to accept the key on other-1');
  await fetch(`${a.adminUrl}/v1/keys/shared`, { method: 'DELETE' });
  await fetch(`${a.adminUrl}/v1/keys`, { method: 'POST', body: JSON.stringify({ name: 'shared', key_sha256: sha256(created.key), deployments: ['sec'] }) });
  await waitFor(async () => (await gen(b, 'other-1')).status === 403, 10_000, 'instance B to refuse the key on other-1 under its new scope');
  t.equal((await gen(b, 'sec-1')).status, 200, 'instance B applies the new scope: sec-1 still accepts it');
});
