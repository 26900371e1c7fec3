// A request for a deployment whose server failed to start (a model that raises at load), or
// held for a start or a wake that then failed, got 503 SLUICE_ERR_NO_READY_REPLICA "no ready
// replica for x-1" or "x-1 has no ready replica and none is starting", never why: the
// cause was on the admin API alone, while a wake that could not spawn at all (no port, a
// GGUF gone) was named. Such an answer now says the deployment failed and how (its server
// exited, did not answer in time); the server's output stays on the admin API.

import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, gwRequest, reapServers, waitState } from '../helpers/control.js';
import { startGateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Ports 28170-28179 belong to this file: 28170 the gateway, 28171 its admin API, 28172-28179
// the model-server ports.
const RANGE = { from: 28172, to: 28179 };

// An HTTP server that raises at load once `marker` exists (the model's files went bad),
// after a load of 0.5 s: a held stream gets its head (heartbeats every 100 ms) first, however
// fast Python starts.
const SERVER = `
import http.server, os, sys, time
if os.path.exists(sys.argv[2]):
    time.sleep(0.5)
    raise RuntimeError("boom at load: secret-detail")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    do_POST = do_GET
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
`;

t.test('a failed deployment names its failure to the requests it refuses', async (t) => {
  const dir = t.testdir();
  const script = join(dir, 'server.py');
  writeFileSync(script, SERVER);
  const marker = join(dir, 'bad');
  const gw = await startGateway({ listen: { host: '127.0.0.1', port: 28170 }, admin: { host: '127.0.0.1', port: 28171 }, ports: RANGE });
  t.teardown(async () => {
    await gw.stop();
    await reapServers([], RANGE);
  });
  const admin = adminClient(gw.adminUrl);
  const spec = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> => (
    { model, version: '1', runtime: 'command', command: ['python3', script, '{port}', marker], readiness_path: '/', ...extra });

  writeFileSync(marker, '');
  t.equal((await admin.post('/v1/deployments?wait=true', spec('broken'))).status, 502, 'a deploy that fails');
  const refused = await gwRequest(`${gw.url}/broken-1/invocations`, { method: 'POST', body: { inputs: [[1]] } });
  t.equal(refused.status, 503);
  t.equal(refused.json?.error?.code, 'SLUICE_ERR_NO_READY_REPLICA');
  t.equal(refused.json?.error?.message, 'broken-1 failed: replica broken-1/0 exited with code 1 before becoming ready', refused.text);
  // It stays failed until deployed again: the OpenAI SDKs (which obey this header) must not retry it at once.
  t.equal(refused.headers['x-should-retry'], 'false', 'no retry asked for');
  t.equal(refused.headers['retry-after'], undefined, 'nor a time to retry after');

  // Held for a wake whose server then fails: a plain request, and a stream given its head early.
  rmSync(marker);
  const sleeper = spec('sleeper', { scale: { min_replicas: 0, idle_timeout_s: 600 }, policies: { hold: { heartbeat_ms: 100 } } });
  t.equal((await admin.post('/v1/deployments?wait=true', sleeper)).status, 201, 'it starts while its files are good');
  t.equal((await admin.post('/v1/deployments/sleeper-1/hibernate?grace_ms=0')).status, 200);
  await waitState(admin, 'sleeper-1', 'hibernated');
  writeFileSync(marker, '');
  const [held, stream] = await Promise.all([
    gwRequest(`${gw.url}/sleeper-1/invocations`, { method: 'POST', body: { inputs: [[1]] } }),
    gwRequest(`${gw.url}/sleeper-1/v1/chat/completions`, { method: 'POST', body: { model: 'x', stream: true, messages: [{ role: 'user', content: 'hi' }] } }),
  ]);
  t.equal(held.status, 503, held.text);
  t.match(held.json?.error?.message, /^sleeper-1 could not be started: replica sleeper-1\/\d+ exited with code 1 before becoming ready$/, held.text);
  t.equal(stream.status, 200, 'the stream had its head (heartbeats)');
  t.match(stream.text, /event: error\ndata: .*sleeper-1 could not be started: replica sleeper-1\/\d+ exited with code 1 before becoming ready"/, stream.text);
  for (const text of [refused.text, held.text, stream.text]) t.notMatch(text, /secret-detail|boom/, 'the server\'s output is not sent to clients');
  const view = await admin.get('/v1/deployments/sleeper-1');
  t.match(view.body.last_error, /first error: RuntimeError: boom at load: secret-detail/, 'the admin API has it');
});
