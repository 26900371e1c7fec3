// A request waiting for one of its replica's upstream connections (all of
// upstream.max_connections busy) whose client leaves is dropped then: it never reaches the
// model server, which would start a generation for nobody once a connection is free. Its
// small body (at the front door read before routing, on a path route right after the head)
// is read while it waits, so its socket shows the client leaving; one whose client stays is
// served once the connection is free. The clients that leave send their body a moment after
// the head, as a client may: the request is already waiting when it comes.

import t from 'tap';
import { connect, httpRequest } from '../helpers/http.js';
import { eventually, jsonLogs, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 21950-21954 belong to this file.
let gw: Gateway;
let simUrl: string;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 21950, to: 21954 },
    policies: { cache: { enabled: false } },
    deployments: [{
      model: 'one', version: '1', runtime: 'sim', args: ['--ttft-ms', '20', '--token-ms', '50', '--tokens', '30'],
      upstream: { max_connections: 1 },
    }],
  });
  const r = await httpRequest(`${gw.adminUrl}/v1/deployments/one-1`);
  simUrl = (JSON.parse(r.body) as { replicas: Array<{ url: string }> }).replicas[0]!.url;
});
t.teardown(() => gw?.stop());

interface SimStats { requests: number; active: number }
const simStats = async (): Promise<SimStats> => JSON.parse((await httpRequest(`${simUrl}/_sim/stats`)).body) as SimStats;

const stream = (path: string, model: string, timeoutMs?: number): ReturnType<typeof httpRequest> =>
  httpRequest(`${gw.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, timeoutMs,
    body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });

for (const [where, path, model] of [['the front door', '/v1/chat/completions', 'one-1'], ['a path route', '/one-1/v1/chat/completions', 'one']] as const) {
  t.test(`${where}: clients that leave while waiting for a connection never reach the server`, async (t) => {
    await httpRequest(`${simUrl}/_sim/reset`, { method: 'POST' });
    // Holds the only connection for 30 x 50 ms.
    const first = stream(path, model);
    await eventually(async () => ((await simStats()).active === 1 ? true : undefined), 3_000, 'the first stream on the connection');
    const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const leaving = Array.from({ length: 5 }, async () => {
      const sock = connect(gw.port);
      sock.on('error', () => undefined);
      sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
      await sleep(100);
      sock.write(body);
      await sleep(200);
      sock.destroy();
    });
    const staying = stream(path, model);
    await Promise.all(leaving);
    const done = await first;
    t.match(done.body, /data: \[DONE\]\n\n$/, 'the first stream is whole');
    const served = await staying;
    t.match(served.body, /data: \[DONE\]\n\n$/, 'the client that stayed is served once the connection is free');
    await sleep(200);
    t.equal((await simStats()).requests, 2, 'the server saw the two requests whose clients stayed, none of the five that left');
    const left = jsonLogs(gw).filter((l) => l.msg === 'request' && l.path === path && l.status === 499);
    t.ok(left.length >= 5, `the five that left are logged 499 (${left.length})`);
  });
}
