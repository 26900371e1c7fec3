// An answer that fails after its head went out (a model server that resets its connection
// in the middle of a stream) is a 200 to the status counts, but an error to its client: an
// `event: error`. It must be an error to what sluice reports too: `errors` in GET /v1/stats
// (`top`'s ERR%, the dashboard's error rate) and the rollout's error check, which promoted a
// canary that cut every other stream ("error rate 0").

import { createServer, type Server } from 'node:http';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { eventually, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 19560-19569 belong to this file: 19560 the gateway, 19561 its admin API, 19562 the
// model server that cuts its streams, 19563-19569 the simulators the gateway starts.
const CUTTER_PORT = 19562;

let gw: Gateway;
let cutter: Server;

/** Answers every POST with a 200 event-stream head and one event, then resets the connection. */
function startCutter(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n', () => req.socket.destroy());
    });
  });
  return new Promise((resolve) => server.listen(CUTTER_PORT, '127.0.0.1', () => resolve(server)));
}

t.before(async () => {
  cutter = await startCutter();
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19560 },
    admin: { host: '127.0.0.1', port: 19561 },
    ports: { from: 19563, to: 19569 },
    log: { level: 'info', access: false },
    workers: 2,
    // Every cut would open the breaker and turn the canary's answers into the gateway's own
    // 503s, which count already: this is about the replica's own cut answers.
    policies: { breaker: { enabled: false }, retry: { attempts: 0 } },
    deployments: [
      { model: 'fa', version: '1', runtime: 'sim', args: ['--protocol', 'openai', '--ttft-ms', '5', '--token-ms', '0', '--tokens', '3'] },
      { model: 'fa', version: '2', runtime: 'remote', urls: [`http://127.0.0.1:${CUTTER_PORT}`], health_check: { enabled: false } },
    ],
    traffic: { fa: { '1': 100 } },
  });
});
t.teardown(async () => {
  await gw?.stop();
  await new Promise((resolve) => cutter?.close(resolve));
});

const CHAT = JSON.stringify({ model: 'fa', stream: true, messages: [{ role: 'user', content: 'hi' }] });

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await httpRequest(`${gw.adminUrl}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown> };
}

interface StatsRow { deployment: string; requests: number; errors: number; status: Record<string, number> }
async function statsOf(id: string): Promise<StatsRow> {
  const rows = (await admin('GET', '/v1/stats')).json['deployments'] as StatsRow[];
  return rows.find((r) => r.deployment === id)!;
}

t.test('a stream cut after its 200 head counts as an error in GET /v1/stats', async (t) => {
  for (let i = 0; i < 4; i++) {
    const r = await httpRequest(`${gw.url}/fa-2/v1/chat/completions`, { method: 'POST', body: CHAT, headers: { 'content-type': 'application/json' } });
    t.equal(r.status, 200, 'the head went out as the server sent it');
    t.match(r.body, /event: error\ndata: \{"error":\{"code":"SLUICE_ERR_UPSTREAM_RESET"/, 'and the stream ended with an error event');
  }
  // The stats are collected from the workers: poll until all four are counted.
  const row = await eventually(async () => {
    const s = await statsOf('fa-2');
    return s.requests >= 4 ? s : undefined;
  }, 10_000, 'the four requests in /v1/stats');
  t.same(row.status, { '2xx': 4, '3xx': 0, '4xx': 0, '5xx': 0 }, 'the status counts say what was sent');
  t.equal(row.errors, 4, 'every cut stream is an error');
  const healthy = await httpRequest(`${gw.url}/fa-1/v1/chat/completions`, { method: 'POST', body: CHAT, headers: { 'content-type': 'application/json' } });
  t.notMatch(healthy.body, /event: error/, 'a whole stream is not cut');
  const stable = await eventually(async () => {
    const s = await statsOf('fa-1');
    return s.requests >= 1 ? s : undefined;
  }, 10_000, 'the stable version\'s request in /v1/stats');
  t.equal(stable.errors, 0, 'and is no error');
});

t.test('a canary that cuts its streams is rolled back, not promoted', async (t) => {
  const promoted = await admin('POST', '/v1/models/fa/promote', { version: '1' });
  t.equal(promoted.status, 200, JSON.stringify(promoted.json));
  // The latency limit is out of the way: the cutter answers its head at once.
  const started = await admin('PUT', '/v1/models/fa/rollout', { canary: '2', steps: [50, 100], interval_s: 1, min_requests: 4, max_latency_ratio: 1000, failed_checks: 1 });
  t.equal(started.status, 201, JSON.stringify(started.json));
  let running = true;
  const loops = Array.from({ length: 4 }, async () => {
    while (running) {
      await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: CHAT, headers: { 'content-type': 'application/json' } }).catch(() => undefined);
    }
  });
  let view: Record<string, unknown>;
  try {
    view = await eventually(async () => {
      const m = (await admin('GET', '/v1/models/fa')).json;
      const r = m['rollout'] as { finished_at: string | null } | null;
      return r !== null && r.finished_at !== null ? m : undefined;
    }, 30_000, 'the rollout to end');
  } finally {
    running = false;
    await Promise.all(loops);
  }
  const rollout = view['rollout'] as { status: string; checks: Array<{ verdict: string; why: string }> };
  t.equal(rollout.status, 'rolled_back', `the rollout's checks: ${JSON.stringify(rollout.checks)}`);
  t.match(rollout.checks.find((c) => c.verdict === 'failed')?.why, /canary error rate 1 above/, 'for its error rate');
  t.same(view['weights'], { '1': 100 }, 'all traffic is back on the stable version');
});
