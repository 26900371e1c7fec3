// A streaming request held while its deployment starts gets its 200 head and heartbeats
// early. When the server then refuses the request (400: a prompt too long, a bad parameter),
// the stream ends with an error event. That event said only "the model server answered 400",
// and the server's reason was lost to the user of a chat UI (S4). It now quotes the server's
// own message, from OpenAI's `error.message` (or Ollama's `error`, a `detail`, the text).

import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 22580-22588 belong to this file.
const RANGE = { from: 22580, to: 22588 };

t.test('a held stream refused by its server ends with the server\'s reason', async (t) => {
  const gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: true },
    deployments: [{
      model: 'picky', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--start-delay-ms', '1500', '--status', '400'],
      scale: { min_replicas: 0 }, policies: { hold: { heartbeat_ms: 200 } },
    }],
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/picky-1/hibernate')).status, 200);
  await waitState(admin, 'picky-1', 'hibernated');
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'picky-1', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.text();
  t.equal(res.status, 200, 'the head went early, with heartbeats');
  t.match(text, /^: waking\n\n/);
  t.match(text, /event: error\ndata: \{"error":\{"code":"SLUICE_ERR_UPSTREAM_STATUS","message":"the model server answered 400 after the stream had started: simulated status 400"/, 'the server\'s reason is in the error event');
});
