// A stop whose grace runs out with requests still in flight: each ends as a gateway
// failure the client can read (an SSE error event, an NDJSON error line, a 503 for one that
// was still waiting), logged with its error code, not as a client that went away (499).

import t from 'tap';
import { httpRequest, type Reply } from '../helpers/http.js';
import { reapServers } from '../helpers/control.js';
import { eventually, jsonLogs, simStats, sleep, startGateway, replicaPorts, type Gateway } from '../helpers/procs.js';

t.setTimeout(60_000);

// Replica ports 19160-19169 belong to this file.
const RANGE = { from: 19160, to: 19169 };
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers([], RANGE);
});

t.test('the grace runs out: streams end with an error, a held request gets 503, each logged with SLUICE_ERR_SHUTTING_DOWN', async (t) => {
  gw = await startGateway({
    ports: RANGE,
    shutdown: { drain_delay_ms: 0, grace_ms: 800 },
    deployments: [
      { model: 'slow', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '50', '--tokens', '400'] },
      // Never ready: its requests are held until a replica comes (policies.hold).
      { model: 'cold', version: '1', runtime: 'command', command: ['sleep', '1000'], port_env: 'PORT', policies: { hold: { heartbeat_ms: 0 } } },
    ],
  }, {}, false);
  const g = gw;
  await eventually(async () => {
    const r = await httpRequest(`${g.url}/slow-1/_sim/stats`);
    return r.status === 200 ? true : undefined;
  }, 30_000, 'slow-1 to be ready');
  const [port] = await replicaPorts(g, 'slow-1');
  const chat = JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const replies: Array<Promise<Reply>> = [
    httpRequest(`${g.url}/slow-1/v1/chat/completions`, { method: 'POST', headers: { 'x-request-id': 'cut-sse' }, body: chat }),
    httpRequest(`${g.url}/slow-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'cut-ndjson' }, body: '{"model":"slow","prompt":"hi"}' }),
    httpRequest(`${g.url}/cold-1/api/generate`, { method: 'POST', headers: { 'x-request-id': 'cut-held' }, body: '{"model":"cold","prompt":"hi"}' }),
  ];
  await eventually(async () => ((await simStats(port!)).active === 2 ? true : undefined), 5_000, 'both streams running');
  await sleep(200);
  const stopping = g.stop();
  const [sse, ndjson, held] = await Promise.all(replies);

  t.equal(sse.status, 200);
  t.ok(sse.complete, 'the SSE stream ended cleanly, not by a cut connection');
  t.match(sse.body, /\n\nevent: error\ndata: \{"error":\{"code":"SLUICE_ERR_SHUTTING_DOWN"[^\n]*"request_id":"cut-sse"\}\}\n\n$/, 'with an error event');
  t.ok(ndjson.complete, 'the NDJSON stream too');
  const last = JSON.parse(ndjson.body.trim().split('\n').at(-1)!) as { error?: { code: string } };
  t.equal(last.error?.code, 'SLUICE_ERR_SHUTTING_DOWN', 'with an error line');
  t.equal(held.status, 503, 'the held request gets an answer');
  t.match(JSON.parse(held.body), { error: { code: 'SLUICE_ERR_SHUTTING_DOWN', request_id: 'cut-held' } });
  t.ok(Number(held.headers['retry-after']) >= 1, 'with Retry-After');

  t.equal(await stopping, 0, 'the gateway exits 0');
  gw = undefined;
  for (const id of ['cut-sse', 'cut-ndjson', 'cut-held']) {
    const line = jsonLogs(g).find((l) => l.request_id === id);
    t.match(line, { error: 'SLUICE_ERR_SHUTTING_DOWN' }, `${id}: logged as the gateway's failure`);
    t.not(line?.status, 499, `${id}: not as a client that left`);
  }
});
