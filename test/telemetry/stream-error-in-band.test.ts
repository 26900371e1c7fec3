// A server that fails once its 200 head is out says so in the stream itself: Ollama's last
// NDJSON line `{"error": ...}` (protocols.md), an OpenAI-compatible `data: {"error": ...}`
// event before `[DONE]`, the Responses API's `event: error`. Such an answer counted as a
// success: `errors` in GET /v1/stats (top, the dashboard) and a rollout's error check saw
// none, so a canary whose model failed every generation this way looked healthy. It counts
// as an error now, as a stream the server cut does; a whole stream does not.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';
import { firstEvent, STREAM_FAILURES } from '../helpers/stream-failures.js';


let gw: Gateway;
let server: Server;

t.before(async () => {
  // The answer fails when the request's path has ?fail.
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const url = new URL(req.url!, 'http://x');
      const kind = Object.values(STREAM_FAILURES).find((k) => k.path === url.pathname)!;
      res.writeHead(200, { 'content-type': kind.type });
      res.write(firstEvent(kind.type));
      res.end(url.searchParams.has('fail') ? kind.error : kind.ok);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gw = await startGateway({
    log: { level: 'info', access: false },
    workers: 2,
    deployments: [{
      model: 'inband', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`],
      health_check: { enabled: false }, policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    }],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => server?.close(resolve));
});

interface StatsRow { deployment: string; requests: number; errors: number; status: Record<string, number> }

t.test('a stream that says its server failed counts as an error; a whole one does not', async (t) => {
  let sent = 0;
  for (const [name, kind] of Object.entries(STREAM_FAILURES)) {
    for (const fail of [false, true, true]) {
      const r = await httpRequest(`${gw.url}/inband-1${kind.path}${fail ? '?fail' : ''}`, { method: 'POST', body: '{"model":"m","stream":true}', headers: { 'content-type': 'application/json' } });
      t.equal(r.status, 200, `${name}: the head went out as the server sent it`);
      t.ok(r.body.endsWith(fail ? kind.error : kind.ok), `${name}: the stream reached the client as sent`);
      sent++;
    }
  }
  const row = await eventually(async () => {
    const rows = JSON.parse((await httpRequest(`${gw.adminUrl}/v1/stats`)).body).deployments as StatsRow[];
    const s = rows.find((x) => x.deployment === 'inband-1')!;
    return s.requests >= sent ? s : undefined;
  }, 10_000, 'every request in /v1/stats');
  t.same(row.status, { '2xx': sent, '3xx': 0, '4xx': 0, '5xx': 0 }, 'the status counts say what was sent');
  t.equal(row.errors, 6, 'the two failing streams of each kind are errors, the whole ones are not');
});
