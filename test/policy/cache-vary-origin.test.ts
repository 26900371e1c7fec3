// The response cache in front of a real `llamacpp` deployment: llama-cpp-python's server
// (Starlette's CORS middleware) says `Vary: Origin` on every answer and echoes a page's
// Origin in Access-Control-Allow-Origin. The cache key holds the request's Origin, so a
// deterministic request (temperature 0) is answered from the cache, and one origin's entry
// (its Access-Control-Allow-Origin) never reaches another origin's page.
//
// Replica ports 26520-26529 belong to this file (the gateway and admin ports are ephemeral).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LLAMA_THREADS, writeTinyGguf } from '../fixtures/llama-server.js';
import { adminClient, PidLog, reapServers } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const RANGE = { from: 26520, to: 26529 };
const dir = mkdtempSync(join(tmpdir(), 'sluice-cache-origin-'));
const modelPath = join(dir, 'tiny.gguf');
const pids = new PidLog();
let gw: Gateway;

t.before(async () => {
  await writeTinyGguf(modelPath);
  gw = await startGateway({
    ports: RANGE,
    deployments: [{ model: 'tiny', version: '1', runtime: 'llamacpp', model_path: modelPath, args: ['--model_alias', 'tiny', ...LLAMA_THREADS] }],
  });
  pids.note(await adminClient(gw.adminUrl).list());
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
  rmSync(dir, { recursive: true, force: true });
});

/** A deterministic chat request at the front door; `content` makes it a request of its own. */
function chat(content: string, headers: Record<string, string> = {}): Promise<Reply> {
  const body = JSON.stringify({ model: 'tiny', temperature: 0, max_tokens: 4, messages: [{ role: 'user', content }] });
  return httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}

t.test('an SDK\'s request (no Origin) is answered from the cache the second time', async (t) => {
  const first = await chat('no origin');
  t.equal(first.status, 200);
  t.match(first.headers.vary, /origin/i, 'the server says Vary: Origin');
  t.equal(first.headers['x-sluice-cache'], 'miss');
  const second = await chat('no origin');
  t.equal(second.headers['x-sluice-cache'], 'hit', 'stored although it varies on Origin: the key holds the request\'s (none)');
  t.equal(second.body, first.body);
});

t.test('each origin has its own entries, with its own Access-Control-Allow-Origin', async (t) => {
  // Pages listen.cors_origins allows (by default localhost on any port): at the root the
  // gateway's policy, not the server's echo, says who may read an answer (proxy/cors.ts).
  const a = { origin: 'http://localhost:5173' };
  const b = { origin: 'http://localhost:5174' };
  const first = await chat('by origin', a);
  t.equal(first.headers['x-sluice-cache'], 'miss');
  t.equal(first.headers['access-control-allow-origin'], a.origin);
  const again = await chat('by origin', a);
  t.equal(again.headers['x-sluice-cache'], 'hit', 'the same origin: a hit');
  t.equal(again.headers['access-control-allow-origin'], a.origin);
  const other = await chat('by origin', b);
  t.equal(other.headers['x-sluice-cache'], 'miss', 'another origin: not the first one\'s entry');
  t.equal(other.headers['access-control-allow-origin'], b.origin, 'its own Access-Control-Allow-Origin');
  const none = await chat('by origin');
  t.equal(none.headers['x-sluice-cache'], 'miss', 'no Origin: not a page\'s entry either');
  t.equal(none.headers['access-control-allow-origin'], undefined);
});

t.test('a page of an origin the gateway does not allow gets no Access-Control-Allow-Origin, cached or not', async (t) => {
  const evil = { origin: 'https://evil.example' };
  const first = await chat('elsewhere', evil);
  t.equal(first.status, 200);
  t.equal(first.headers['access-control-allow-origin'], undefined, 'not the server\'s echo of its Origin');
  t.equal(first.headers['access-control-allow-credentials'], undefined);
  const again = await chat('elsewhere', evil);
  t.equal(again.headers['x-sluice-cache'], 'hit');
  t.equal(again.headers['access-control-allow-origin'], undefined, 'nor from the cache');
});
