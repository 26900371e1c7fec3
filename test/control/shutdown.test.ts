// A clean stop (SIGTERM) while a client holds an idle keep-alive connection to the
// gateway port, as every pooling HTTP client does: the gateway must still exit 0 and stop
// every model server it started (no orphans). And while a front-door request's body is
// still arriving: it is work in progress, which the stop waits for.

import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import t from 'tap';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, assertNoServersLeft, PidLog, reapServers } from '../helpers/control.js';

t.setTimeout(60_000);

// Replica ports 18620-18624 belong to this file.
const RANGE = { from: 18620, to: 18624 };
const pids = new PidLog();
let gw: Gateway | undefined;
const agent = new Agent({ keepAlive: true });

t.teardown(async () => {
  agent.destroy();
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
});

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    }).on('error', reject).end();
  });
}

t.test('SIGTERM with an idle keep-alive client: exit 0, no model server left', async (t) => {
  gw = await startGateway({ ports: RANGE }, {}, false);
  const admin = adminClient(gw.adminUrl);
  const r = await admin.post('/v1/deployments?wait=true', { model: 'ka', version: '1', runtime: 'sim' });
  pids.note(r.body);
  t.equal(r.status, 201);
  t.equal(await get(`${gw.url}/ka-1/_sim/stats`), 200, 'a request over a keep-alive connection');
  t.equal(await get(`${gw.url}/nope-1/x`), 404, 'and another one on the same connection');
  const code = await gw.stop();
  t.equal(code, 0, 'the gateway exits 0', { signal: gw.child.signalCode, stderr: gw.stderr.filter((l) => /Assertion|Abort|uv_loop/.test(l)) });
  gw = undefined;
  await assertNoServersLeft(t, pids.pids, RANGE, 2_000);
});

t.test('SIGTERM while a front-door request\'s body is still arriving: it is read, routed and answered, then exit 0', async (t) => {
  gw = await startGateway({ ports: RANGE, deployments: [{ model: 'ka', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0'] }] });
  const body = Buffer.from(JSON.stringify({ model: 'ka-1', messages: [{ role: 'user', content: 'x'.repeat(2000) }], max_tokens: 2 }));
  const socket = connect(gw.port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = once(socket, 'close');
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`);
  socket.write(body.subarray(0, 1000));
  await sleep(300);
  // The front door reads the whole body before it routes: no exchange exists yet.
  const stopping = gw.stop();
  await sleep(500);
  t.equal(gw.child.exitCode, null, 'the gateway waits for the body being read');
  // write, not end: a half-closed connection is a client that went away (499).
  socket.write(body.subarray(1000));
  await closed;
  const answer = Buffer.concat(chunks).toString('latin1');
  t.match(answer, /^HTTP\/1\.1 200 /, `answered: ${answer.slice(0, 300)}`);
  t.match(answer, /"chat\.completion"/);
  t.equal(await stopping, 0, 'then exit 0');
  gw = undefined;
});
