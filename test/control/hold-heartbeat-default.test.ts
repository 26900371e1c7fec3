// A streaming request held while its deployment starts gets its head and a `: waking`
// comment every hold.heartbeat_ms. The default was 5000 ms, the very read timeout of httpx
// (the Python openai SDK's transport): a client with it gave up at 5.07 s on every cold start
// longer than that. With the defaults, the first byte now comes well inside 5 s, and the
// stream goes on to its tokens once the server is up (about 7 s here).

import t from 'tap';
import { adminClient, reapServers, waitState } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 22540-22549 belong to this file.
const RANGE = { from: 22540, to: 22549 };

t.test('with the default hold, a cold stream\'s first byte comes inside a 5 s read timeout', async (t) => {
  const gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [{ model: 'slow', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--start-delay-ms', '7000', '--tokens', '3', '--token-ms', '0'], scale: { min_replicas: 0 } }],
  });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  t.equal((await admin.post('/v1/deployments/slow-1/hibernate')).status, 200);
  await waitState(admin, 'slow-1', 'hibernated');
  const started = Date.now();
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow-1', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const reader = res.body!.getReader();
  const gaps: number[] = [];
  let last = Date.now();
  let text = '';
  const decoder = new TextDecoder();
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    gaps.push(Date.now() - last);
    last = Date.now();
    text += decoder.decode(r.value, { stream: true });
  }
  t.equal(res.status, 200);
  t.ok(Date.now() - started > 5_000, `the server took its time to start (${Date.now() - started} ms)`);
  t.ok(Math.max(...gaps) < 4_000, `no wait between bytes as long as httpx's 5 s read timeout (longest ${Math.max(...gaps)} ms)`);
  t.match(text, /^: waking\n\n/, 'the heartbeats first');
  t.match(text, /data: \[DONE\]/, 'then the tokens, whole');
});
