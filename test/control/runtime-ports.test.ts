// How a spawned server learns its port and its name. A `command` deployment must use the
// allocated port: `{port}` in its argv, or `port_env: NAME` to receive it in the
// environment (many servers read PORT); one with neither is refused up front (400 from the
// admin API, a config error at load) instead of timing out on every start. A `sim`
// deployment serves its own model name unless its args choose `--models`.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { jsonLogs, spawnCli, startGateway, waitForLine, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, gwRequest, PidLog, reapServers, serversInRange, waitFor, type AdminClient } from '../helpers/control.js';

t.setTimeout(180_000);

// Replica ports 18650-18664 belong to this file: the main gateway 18650-18659, the
// config-file gateways 18660-18661 and 18662-18664.
const RANGE = { from: 18650, to: 18664 };
const dir = t.testdir();
const pids = new PidLog();

// A server that, like many, reads its port from the environment only.
const ENV_SERVER = join(dir, 'env-port-server.mjs');
writeFileSync(ENV_SERVER, `
import http from 'node:http';
const name = process.argv[2] ?? 'PORT';
const port = Number(process.env[name]);
if (!Number.isInteger(port) || port <= 0) { console.error('no port in $' + name); process.exit(2); }
http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ port, env: process.env[name], argv: process.argv.slice(2), url: req.url }));
}).listen(port, '127.0.0.1', () => console.log('listening on ' + port));
`);

let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  gw = await startGateway({ ports: { from: 18650, to: 18659 } }, {}, false);
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

t.test('a command deployment without {port} or port_env: 400 naming the field, nothing started or stored', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['no {port} anywhere', { command: [process.execPath, ENV_SERVER, 'NOPE'] }, 'command'],
    ['a {port}-like typo', { command: [process.execPath, ENV_SERVER, '{Port}', '{ port }'] }, 'command'],
    ['a port_env that is not a variable name', { command: [process.execPath, ENV_SERVER], port_env: 'MY-PORT' }, 'port_env'],
    ['a port_env with =', { command: [process.execPath, ENV_SERVER], port_env: 'PORT=1' }, 'port_env'],
  ];
  for (const [what, extra, field] of cases) {
    const r = await admin.post('/v1/deployments', { model: 'noport', version: '1', runtime: 'command', readiness_path: '/', ...extra });
    t.equal(r.status, 400, `${what}: 400 (${r.text.slice(0, 200)})`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INVALID_FIELD', `${what}: code`);
    t.equal(r.body?.error?.field, field, `${what}: names ${field}`);
    t.match(r.body?.error?.message, field, `${what}: the message names ${field}`);
    if (field === 'command') t.match(r.body?.error?.message, /\{port\}.*port_env/, `${what}: and says what would do`);
  }
  const onSim = await admin.post('/v1/deployments', { model: 'noport', version: '1', runtime: 'sim', port_env: 'PORT' });
  t.equal(onSim.status, 400, 'port_env on a runtime that is not command: 400');
  t.equal(onSim.body?.error?.field, 'port_env');
  t.same(await admin.list(), [], 'nothing registered');
  t.same(serversInRange(RANGE.from, RANGE.to), [], 'nothing listens on the range');
  t.same(jsonLogs(gw).filter((l) => l.deployment === 'noport-1'), [], 'no replica of noport-1 was ever launched');
});

t.test('port_env: the allocated port reaches the server in that variable; served through the gateway', async (t) => {
  const r = await admin.post('/v1/deployments?wait=true', {
    model: 'envy', version: '1', runtime: 'command', command: [process.execPath, ENV_SERVER], port_env: 'PORT', readiness_path: '/', start_timeout_ms: 15_000,
  });
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));
  t.equal(r.body.state, 'ready', 'ready well before any start timeout');
  const port = r.body.replicas[0].port as number;
  t.ok(port >= RANGE.from && port <= RANGE.to, `a port from the range (${port})`);
  const res = await gwRequest(`${gw.url}/envy-1/hello`);
  t.equal(res.status, 200, 'served through the gateway');
  t.same(res.json, { port, env: String(port), argv: [], url: '/hello' }, 'PORT held the allocated port');

  // Any name, and {port} in the argv as well still works.
  const both = await admin.post('/v1/deployments?wait=true', {
    model: 'envy', version: '2', runtime: 'command', command: [process.execPath, ENV_SERVER, 'HTTP_PORT', '--also={port}'], port_env: 'HTTP_PORT',
    readiness_path: '/', start_timeout_ms: 15_000, env: { HTTP_PORT: '1' },
  });
  pids.note(both.body);
  t.equal(both.status, 201, both.text.slice(0, 300));
  const port2 = both.body.replicas[0].port as number;
  const res2 = await gwRequest(`${gw.url}/envy-2/x`);
  t.same(res2.json, { port: port2, env: String(port2), argv: ['HTTP_PORT', `--also=${port2}`], url: '/x' }, 'port_env wins over the same name in env; {port} substituted too');
  t.match((await admin.deployment('envy-1')) ?? {}, { state: 'ready' });
  for (const id of ['envy-1', 'envy-2']) t.equal((await admin.del(`/v1/deployments/${id}?grace_ms=0`)).status, 200);
});

t.test('config load: a command deployment without {port} or port_env is a config error naming the field', async (t) => {
  const file = join(dir, 'noport.yaml');
  writeFileSync(file, JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, workers: 1, state_dir: join(dir, 'noport-state'), ports: { from: 18660, to: 18661 },
    deployments: [{ model: 'ok', version: '1', runtime: 'sim' }, { model: 'tool', version: '1', runtime: 'command', command: [process.execPath, ENV_SERVER] }],
  }));
  const proc = spawnCli(['serve', '--config', file]);
  t.teardown(() => proc.stop('SIGKILL'));
  const line = await waitForLine(proc, (l) => /deployments\[1\]\.command/.test(l) || /sluice is listening/.test(l), 20_000).catch((err: Error) => err.message);
  t.match(line, /config: deployments\[1\]\.command: .*\{port\}.*port_env/, 'the error names deployments[1].command and says what would do');
  const code = await waitFor(() => (proc.ended() ? proc.child.exitCode ?? undefined : undefined), 10_000, 'the gateway to exit').catch(() => null);
  t.equal(code, 1, 'and the gateway exits 1');
  t.notOk(proc.lines.some((l) => /sluice is listening/.test(l)), 'without ever listening');

  const g = await startGateway({ ports: { from: 18662, to: 18664 }, state_dir: join(dir, 'portenv-state'), deployments: [
    { model: 'tool', version: '1', runtime: 'command', command: [process.execPath, ENV_SERVER], port_env: 'PORT', readiness_path: '/', start_timeout_ms: 15_000 },
  ] });
  t.teardown(() => g.stop());
  const view = (await adminClient(g.adminUrl).deployment('tool-1'))!;
  pids.note(view);
  const res = await gwRequest(`${g.url}/tool-1/from-config`);
  t.same(res.json, { port: view.replicas[0]!.port, env: String(view.replicas[0]!.port), argv: [], url: '/from-config' }, 'port_env from the config file works too');
  t.equal(await g.stop(), 0);
});

t.test('a sim deployment serves its own model name, on the Ollama and OpenAI paths', async (t) => {
  const r = await admin.post('/v1/deployments?wait=true', { model: 'chat', version: '2', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'] });
  pids.note(r.body);
  t.equal(r.status, 201, r.text.slice(0, 300));

  const gen = await gwRequest(`${gw.url}/chat-2/api/generate`, { body: { model: 'chat', prompt: 'hi', stream: false } });
  t.equal(gen.status, 200, `Ollama /api/generate with model chat: 200 (${gen.text.slice(0, 200)})`);
  t.match(gen.json, { model: 'chat', done: true, eval_count: 3 });
  const streamed = await gwRequest(`${gw.url}/chat-2/api/chat`, { body: { model: 'chat:latest', messages: [{ role: 'user', content: 'hi' }] } });
  t.equal(streamed.status, 200, 'Ollama /api/chat, streamed, with chat:latest: 200');
  t.match(streamed.text.trim().split('\n').pop(), /"done":true/);
  const tags = await gwRequest(`${gw.url}/chat-2/api/tags`);
  t.equal(tags.status, 200);
  t.equal(tags.json?.models?.[0]?.name, 'chat:latest', '/api/tags lists chat first');

  const chat = await gwRequest(`${gw.url}/chat-2/v1/chat/completions`, { body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
  t.equal(chat.status, 200, `OpenAI /v1/chat/completions with model chat: 200 (${chat.text.slice(0, 200)})`);
  t.equal(chat.json?.model, 'chat');
  t.equal(chat.json?.choices?.[0]?.message?.role, 'assistant');
  const sse = await gwRequest(`${gw.url}/chat-2/v1/chat/completions`, { body: { model: 'chat', stream: true, messages: [{ role: 'user', content: 'hi' }] } });
  t.equal(sse.status, 200, 'streamed OpenAI chat: 200');
  t.match(sse.text, /data: \[DONE\]/);
  const models = await gwRequest(`${gw.url}/chat-2/v1/models`);
  t.equal(models.status, 200);
  t.equal(models.json?.data?.[0]?.id, 'chat:latest', '/v1/models lists chat first');
  t.equal((await gwRequest(`${gw.url}/chat-2/v1/models/chat`)).status, 200, '/v1/models/chat: 200');

  // The simulator's built-in name keeps working (clients written against `demo`).
  const demo = await gwRequest(`${gw.url}/chat-2/api/generate`, { body: { model: 'demo', prompt: 'hi', stream: false } });
  t.equal(demo.status, 200, 'demo is still served too');
  const other = await gwRequest(`${gw.url}/chat-2/api/generate`, { body: { model: 'llama3', prompt: 'hi', stream: false } });
  t.equal(other.status, 404, 'a name it does not serve: 404');

  // Other args, no --models: the default still applies; --protocol openai speaks OpenAI only.
  const oa = await admin.post('/v1/deployments?wait=true', { model: 'gpt-mini', version: '1', runtime: 'sim', args: ['--protocol', 'openai'] });
  pids.note(oa.body);
  t.equal(oa.status, 201, oa.text.slice(0, 300));
  const oaChat = await gwRequest(`${gw.url}/gpt-mini-1/v1/chat/completions`, { body: { model: 'gpt-mini', messages: [{ role: 'user', content: 'hi' }] } });
  t.equal(oaChat.status, 200, `--protocol openai, model gpt-mini: 200 (${oaChat.text.slice(0, 200)})`);
  t.equal(oaChat.json?.model, 'gpt-mini');
  t.equal((await gwRequest(`${gw.url}/gpt-mini-1/v1/models`)).json?.data?.[0]?.id, 'gpt-mini:latest');

  // --models in the args: exactly those names.
  const own = await admin.post('/v1/deployments?wait=true', { model: 'multi', version: '1', runtime: 'sim', args: ['--models', 'llama3.2:1b,qwen2.5'] });
  pids.note(own.body);
  t.equal(own.status, 201, own.text.slice(0, 300));
  const listed = (await gwRequest(`${gw.url}/multi-1/api/tags`)).json?.models?.map((m: { name: string }) => m.name);
  t.same(listed, ['llama3.2:1b', 'qwen2.5:latest'], '--models chooses the names, nothing added');
  t.equal((await gwRequest(`${gw.url}/multi-1/api/generate`, { body: { model: 'qwen2.5', prompt: 'hi', stream: false } })).status, 200);
  t.equal((await gwRequest(`${gw.url}/multi-1/api/generate`, { body: { model: 'multi', prompt: 'hi', stream: false } })).status, 404, 'the deployment name is not added to an explicit list');

  // Any model name the gateway accepts, e.g. a leading underscore.
  const under = await admin.post('/v1/deployments?wait=true', { model: '_chat', version: '1', runtime: 'sim' });
  pids.note(under.body);
  t.equal(under.status, 201, under.text.slice(0, 300));
  t.equal(under.body.state, 'ready', 'the simulator accepts the name');
  t.equal((await gwRequest(`${gw.url}/_chat-1/api/generate`, { body: { model: '_chat', prompt: 'hi', stream: false } })).status, 200, 'and serves it');

  for (const id of ['chat-2', 'gpt-mini-1', 'multi-1', '_chat-1']) t.equal((await admin.del(`/v1/deployments/${id}?grace_ms=0`)).status, 200);
});

t.test('stopping the gateway stops every model server it started', async (t) => {
  t.equal(await gw.stop(), 0);
  await assertNoServersLeft(t, pids.pids, RANGE);
});
