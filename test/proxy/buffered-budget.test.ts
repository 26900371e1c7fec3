// A worker holds at most limits.max_buffered_bytes of the bodies it reads whole before it
// routes them (the front door's, whose `model` picks the deployment). Before, nothing
// bounded their sum: 20 clients each sending most of a 16 MiB body and stalling held
// 285 MB, and more clients more. A request past the budget is answered 503
// SLUICE_ERR_BUFFERS_FULL with Retry-After and its connection closed; the budget comes
// back as the bodies are read or their clients leave.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config/index.js';
import { httpRequest, rawRequest } from '../helpers/http.js';
import { sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19370-19379 belong to this file.
const MiB = 1024 * 1024;
let gw: Gateway;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 19370, to: 19379 },
    limits: { max_buffered_body_bytes: 4 * MiB, max_buffered_bytes: 8 * MiB },
    deployments: [{ model: 'demo', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '3'] }],
  });
});
t.teardown(() => gw?.stop());

/** Sends a head announcing `announced` bytes and `sent` of them, then stalls. */
function stall(announced: number, sent: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: gw.port }, () => {
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${announced}\r\n\r\n`);
      socket.write(Buffer.alloc(sent, 0x20), () => resolve(socket));
    });
    socket.on('error', () => undefined);
  });
}

const chat = JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hi' }] });
const ask = (): ReturnType<typeof httpRequest> => httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat });

t.test('bodies being read past the budget are refused 503 with Retry-After; the budget comes back when their clients leave', async (t) => {
  t.equal((await ask()).status, 200, 'a chat request is served');
  // Two bodies of 4 MiB, 3.5 MiB of each sent: their buffers have grown to 4 MiB each, the whole budget.
  const stalled = [await stall(4 * MiB, 3.5 * MiB), await stall(4 * MiB, 3.5 * MiB)];
  await sleep(300);
  const refused = await rawRequest(gw.port, `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${chat.length}\r\n\r\n${chat}`);
  t.equal(refused.status, 503, 'a third body does not fit');
  const body = JSON.parse(refused.body) as { error: { code: string; message: string; request_id: string } };
  t.equal(body.error.code, 'SLUICE_ERR_BUFFERS_FULL');
  t.match(body.error.message, /limits\.max_buffered_bytes/, 'naming the setting');
  t.equal(refused.headers['x-request-id'], body.error.request_id, 'with its request id');
  t.equal(refused.headers['retry-after'], '1', 'and when to retry');
  t.ok(refused.closed, 'its connection closed');
  for (const s of stalled) s.destroy();
  await sleep(300);
  t.equal((await ask()).status, 200, 'once their clients left, requests are served again');
});

t.test('a budget smaller than one body is refused at start, naming the field', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-budget-')), 'c.yaml');
  writeFileSync(file, 'limits: { max_buffered_body_bytes: 1000, max_buffered_bytes: 999 }\n');
  t.throws(() => loadConfig(file, {}), { name: 'ConfigError', field: 'limits.max_buffered_bytes' });
});
