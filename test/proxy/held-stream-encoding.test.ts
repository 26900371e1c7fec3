// A streaming request held while its deployment starts gets its `200 text/event-stream`
// head and `: waking` heartbeats early (policies.hold.heartbeat_ms): the answer then joins
// that plain event stream, so its server is asked for it uncompressed, even when the client
// accepts gzip (as the SDKs do) and the server compresses for such clients.
//
// Replica ports 26560-26569 belong to this file (the gateway and admin ports are ephemeral).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { adminClient, reapServers, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

const RANGE = { from: 26560, to: 26569 };
// Listens after 1.5 s (a model loading); answers a stream of three events that say which
// Accept-Encoding came, gzip-compressed when that accepts gzip, as a compressing middleware does.
const SERVER = `
const http = require('node:http');
const zlib = require('node:zlib');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.method === 'GET') return res.end('ok');
    const accept = req.headers['accept-encoding'] ?? '';
    const zip = /gzip/.test(accept);
    res.writeHead(200, { 'content-type': 'text/event-stream', ...(zip ? { 'content-encoding': 'gzip' } : {}) });
    let text = '';
    for (let i = 0; i < 3; i++) text += 'data: {"choices":[{"index":0,"delta":{"content":"tok' + i + ' (accept-encoding: ' + accept + ')"}}]}\\n\\n';
    text += 'data: [DONE]\\n\\n';
    res.end(zip ? zlib.gzipSync(text) : text);
  });
});
setTimeout(() => server.listen(Number(process.argv[2]), '127.0.0.1'), 1500);
`;

const dir = mkdtempSync(join(tmpdir(), 'sluice-held-encoding-'));
const script = join(dir, 'server.cjs');
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  writeFileSync(script, SERVER);
  gw = await startGateway({ ports: RANGE });
  admin = adminClient(gw.adminUrl);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
  rmSync(dir, { recursive: true, force: true });
});

/** A streaming chat request from a client that accepts gzip; the body as it came, decoded when it says gzip. */
function streamChat(model: string): Promise<{ status: number; type: string | undefined; encoding: string | undefined; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const bytes = Buffer.concat(parts);
        const encoding = res.headers['content-encoding'];
        resolve({ status: res.statusCode!, type: res.headers['content-type'], encoding, text: (encoding === 'gzip' ? gunzipSync(bytes) : bytes).toString() });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] }));
  });
}

t.test('held past a heartbeat, the stream gets the answer uncompressed, in the event stream it began', async (t) => {
  const made = await admin.post('/v1/deployments', {
    model: 'zipped', version: '1', runtime: 'command', command: ['node', script, '{port}'], readiness_path: '/',
    policies: { hold: { heartbeat_ms: 200 } },
  });
  t.equal(made.status, 201, 'deployed, starting');
  const held = await streamChat('zipped');
  t.equal(held.status, 200);
  t.match(held.type, /^text\/event-stream/);
  t.equal(held.encoding, undefined, 'the early head said nothing of a coding');
  t.match(held.text, /^: waking\n\n/, 'heartbeats while the server started');
  t.equal(held.text.match(/^data: \{"choices".*"tok\d \(accept-encoding: identity\)"/gm)?.length, 3, 'then its three events, asked for uncompressed (compressed: bytes no SDK can read)');
  t.match(held.text, /data: \[DONE\]\n\n$/);

  // Ready now: a request that is not held gets what the server sends the client.
  const direct = await streamChat('zipped');
  t.equal(direct.encoding, 'gzip', 'not held: the client\'s Accept-Encoding went on, and the gzip answer came back as sent');
  t.match(direct.text, /"tok0 \(accept-encoding: gzip\)"/);
});
