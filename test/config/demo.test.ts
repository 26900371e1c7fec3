// The `npm start` demo: config/default.yaml as shipped, with only its listen and admin
// ports (to free ones) and its state_dir (to a temporary one) rewritten, serves the demo
// deployment (the built-in simulator speaking Ollama) through the gateway, on its own
// route /demo-1/ and on the model alias /demo/ that its traffic split defines.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseDocument } from 'yaml';
import { freePort } from '../fixtures/free-port.js';
import { httpRequest } from '../helpers/http.js';
import { spawnCli, waitDeploymentsReady, waitForLine, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

const DEMO = fileURLToPath(new URL('../../config/default.yaml', import.meta.url));

let gw: Gateway;
let demo: { deployments: Array<{ model: string; version: string; runtime: string; args: string[] }> };

t.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  const doc = parseDocument(readFileSync(DEMO, 'utf8'));
  demo = doc.toJS() as typeof demo;
  const configFile = join(dir, 'default.yaml');
  doc.set('state_dir', join(dir, 'state'));
  // A free port may be taken by a test running alongside before the gateway binds it: try again.
  for (let attempt = 1; ; attempt++) {
    const [port, adminPort] = [await freePort(), await freePort()];
    doc.setIn(['listen', 'port'], port);
    doc.setIn(['admin', 'port'], adminPort);
    writeFileSync(configFile, String(doc));
    const proc = spawnCli(['serve', '--config', configFile]);
    try {
      await waitForLine(proc, (l) => l.includes('sluice is listening'), 60_000);
    } catch (err) {
      if (attempt < 3 && proc.lines.some((l) => l.includes('EADDRINUSE'))) continue;
      throw err;
    }
    gw = { ...proc, port, adminPort, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, configFile };
    break;
  }
  await waitDeploymentsReady(gw);
});
t.teardown(async () => {
  await gw?.stop();
});

const generate = (path: string, body: Record<string, unknown>) =>
  httpRequest(`${gw.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

t.test('the shipped demo is one sim deployment, demo version 1, on the alias /demo/', async (t) => {
  t.match(demo.deployments, [{ model: 'demo', version: '1', runtime: 'sim' }]);
  t.equal(demo.deployments.length, 1);
  const list = (await (await fetch(`${gw.adminUrl}/v1/deployments`)).json()) as { deployments: Array<{ id: string; state: string; replicas: Array<{ state: string }> }> };
  t.match(list.deployments, [{ id: 'demo-1', state: 'ready', replicas: [{ state: 'ready' }] }]);
  t.equal((await fetch(`${gw.url}/readyz`)).status, 200, 'the gateway is ready');
});

t.test('demo-1 answers an Ollama generate request through the gateway', async (t) => {
  const r = await generate('/demo-1/api/generate', { model: 'demo', prompt: 'why is the sky blue', stream: false });
  t.equal(r.status, 200, r.body.slice(0, 300));
  t.match(r.headers['content-type'], /^application\/json/);
  t.type(r.headers['x-request-id'], 'string');
  const body = JSON.parse(r.body) as { model: string; response: string; done: boolean; eval_count: number };
  // The demo's simulator produces 20 tokens (--tokens 20 in default.yaml).
  t.match(body, { model: 'demo', done: true, eval_count: 20 });
  t.equal(body.response.trim().split(' ').length, 20, '20 tokens of text');
  const root = await httpRequest(`${gw.url}/demo-1/`);
  t.equal(root.status, 200);
  t.equal(root.body, 'Ollama is running');
});

t.test('the alias /demo/ routes to demo-1 and streams NDJSON chunk by chunk', async (t) => {
  const tags = await httpRequest(`${gw.url}/demo/api/tags`);
  t.equal(tags.status, 200);
  t.match(JSON.parse(tags.body), { models: [{ name: 'demo:latest' }] });
  const r = await generate('/demo/api/chat', { model: 'demo', messages: [{ role: 'user', content: 'hello' }] });
  t.equal(r.status, 200);
  t.equal(r.headers['content-type'], 'application/x-ndjson');
  const lines = r.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { done: boolean; message?: { content: string } });
  t.equal(lines.length, 21, '20 token chunks and the final one');
  t.equal(lines.at(-1)!.done, true);
  // 20 tokens 20 ms apart: they arrive over time, not in one piece at the end.
  t.ok(r.chunks.length >= 5, `streamed in ${r.chunks.length} chunks`);
  t.ok(r.chunks.at(-1)!.at - r.chunks[0]!.at >= 200, 'over at least ~20 x 20 ms less a margin');
});
