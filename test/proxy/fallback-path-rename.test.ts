// A request on a path route (`/<model>-<version>/v1/...`) whose deployment cannot take it
// (its one slot busy, or hibernated) goes to a fallback before its body has been read: the
// fallback's server must still be asked for its own model name. It was asked for the
// addressed deployment's (`sat`), which it does not serve: 404 `model 'sat' not found`,
// while the same request at the root, whose body the gateway reads first, was served.

import t, { type Test } from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 22900-22909 belong to this file.

let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 22900, to: 22909 },
    deployments: [
      // One request at a time, each 1.5 s: a second one finds no free replica.
      {
        model: 'sat', version: '1', runtime: 'sim', args: ['--ttft-ms', '1500', '--tokens', '1'], fallbacks: ['spare-1'],
        policies: { queue: { max_inflight_per_replica: 1 }, cache: { enabled: false }, retry: { replay_max_bytes: 1024 } },
      },
      // Hibernated by the test; its server takes 1.5 s to start.
      {
        model: 'sleepy', version: '1', runtime: 'sim', args: ['--start-delay-ms', '1500', '--tokens', '1'], fallbacks: ['spare-1'],
        scale: { min_replicas: 0, idle_timeout_s: 600 }, policies: { cache: { enabled: false } },
      },
      // Serves `spare` (and the simulator's `demo`), never `sat` or `sleepy`.
      { model: 'spare', version: '1', runtime: 'sim', args: ['--ttft-ms', '1', '--tokens', '1'] },
    ],
  });
});
t.teardown(() => gw?.stop());

function chat(path: string, model: string, content = 'hi'): Promise<Reply> {
  return httpRequest(`${gw.url}${path}`, {
    method: 'POST',
    body: JSON.stringify({ model, messages: [{ role: 'user', content }] }),
    headers: { 'content-type': 'application/json' },
  });
}

/** Sends `second` while a first request holds sat-1's only slot. */
async function whileBusy(t: Test, second: () => Promise<Reply>): Promise<Reply> {
  const first = chat('/sat-1/v1/chat/completions', 'sat');
  await sleep(300);
  const r = await second();
  t.equal((await first).status, 200, 'the first request is served by sat-1 itself');
  return r;
}

t.test('a path-route request its deployment has no slot for: the fallback is asked for its own model', async (t) => {
  const r = await whileBusy(t, () => chat('/sat-1/v1/chat/completions', 'sat'));
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'spare-1');
  t.equal(JSON.parse(r.body).model, 'spare', 'the body named the fallback\'s model');
});

t.test('the same through Ollama\'s API on the path route', async (t) => {
  const r = await whileBusy(t, () => httpRequest(`${gw.url}/sat-1/api/chat`, {
    method: 'POST',
    body: JSON.stringify({ model: 'sat', stream: false, messages: [{ role: 'user', content: 'hi' }] }),
    headers: { 'content-type': 'application/json' },
  }));
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'spare-1');
  t.equal(JSON.parse(r.body).model, 'spare');
});

t.test('a hibernated deployment\'s path route: the fallback serves it under its own name, and it wakes', async (t) => {
  const h = await fetch(`${gw.adminUrl}/v1/deployments/sleepy-1/hibernate`, { method: 'POST' });
  t.equal(h.status, 200, 'hibernated');
  await h.arrayBuffer();
  const r = await chat('/sleepy-1/v1/chat/completions', 'sleepy');
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'spare-1');
  t.equal(JSON.parse(r.body).model, 'spare');
  const deadline = Date.now() + 10_000;
  let state = '';
  while (Date.now() < deadline) {
    state = ((await (await fetch(`${gw.adminUrl}/v1/deployments/sleepy-1`)).json()) as { state: string }).state;
    if (state === 'ready') break;
    await sleep(100);
  }
  t.equal(state, 'ready', 'the request woke it');
});

t.test('a body over retry.replay_max_bytes is not held back for the rename: it goes as sent', async (t) => {
  const r = await whileBusy(t, () => chat('/sat-1/v1/chat/completions', 'sat', 'x'.repeat(2000)));
  t.equal(r.headers['x-sluice-served-by'], 'spare-1');
  t.equal(r.status, 404, 'the fallback got the model name the client sent');
  t.match(r.body, /model 'sat' not found/);
});
