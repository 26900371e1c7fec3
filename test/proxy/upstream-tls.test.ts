// A `remote` deployment at an `https://` URL (a provider such as api.openai.com, a model
// server behind a TLS proxy) is spoken to over TLS, with its certificate checked: requests,
// streams, health checks and the deployment's own credential never go in clear, and a
// server whose certificate is not trusted gets nothing but a handshake.

import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { selfSignedCertificate } from '../../bench/lib/certificate.js';
import { httpRequest, json } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

// Replica ports 19340-19349 belong to this file (its deployments are remote: none is used).
const SECRET = 'sk-test-provider-tls-5b1e9d';
const dir = mkdtempSync(join(tmpdir(), 'sluice-upstream-tls-'));
const trusted = selfSignedCertificate(dir, 'provider');
const untrusted = selfSignedCertificate(dir, 'stranger');

interface Seen { method: string; url: string; host: string | undefined; authorization: string | undefined; body: string }
const seen: Seen[] = [];
let handshakes = 0;
let provider: HttpsServer;
let stranger: HttpsServer;
let strangerRequests = 0;
let plain: TcpServer;
const plainBytes: Buffer[] = [];
let gw: Gateway;

const port = (s: { address(): unknown }): number => (s.address() as AddressInfo).port;
const listen = (s: HttpsServer | TcpServer): Promise<void> => new Promise((r) => s.listen(0, '127.0.0.1', r));

t.before(async () => {
  provider = createHttpsServer({ cert: readFileSync(trusted.certFile), key: readFileSync(trusted.keyFile) }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, authorization: req.headers.authorization, body });
      if (req.url?.endsWith('/health') && req.headers.authorization !== `Bearer ${SECRET}`) {
        res.writeHead(401).end();
        return;
      }
      if (req.url?.endsWith('/stream')) {
        // One event now, the next only after the client has had the first.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: one\n\n');
        setTimeout(() => res.end('data: two\n\ndata: [DONE]\n\n'), 300);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echo: body, path: req.url }));
    });
  });
  provider.on('secureConnection', () => handshakes++);
  stranger = createHttpsServer({ cert: readFileSync(untrusted.certFile), key: readFileSync(untrusted.keyFile) }, (_req, res) => {
    strangerRequests++;
    res.end('{}');
  });
  // A server that speaks plain HTTP where the URL says https: it must see a TLS handshake, nothing readable.
  plain = createTcpServer((socket) => {
    socket.on('data', (b: Buffer) => plainBytes.push(b));
    socket.on('error', () => {});
    setTimeout(() => socket.destroy(), 200);
  });
  await Promise.all([listen(provider), listen(stranger), listen(plain)]);
  gw = await startGateway({
    ports: { from: 19340, to: 19349 },
    deployments: [
      { model: 'prov', version: '1', runtime: 'remote', urls: [`https://localhost:${port(provider)}/base`], auth: { env: 'SLUICE_TEST_TLS_KEY' },
        // One check at start (then every 30 s): no check's handshake during the tests, which count them.
        health_check: { path: '/health', interval_ms: 30_000, healthy_threshold: 1 } },
      { model: 'stranger', version: '1', runtime: 'remote', urls: [`https://127.0.0.1:${port(stranger)}`], health_check: { enabled: false } },
      { model: 'plain', version: '1', runtime: 'remote', urls: [`https://127.0.0.1:${port(plain)}`], auth: { env: 'SLUICE_TEST_TLS_KEY' }, health_check: { enabled: false } },
      { model: 'default-port', version: '1', runtime: 'remote', urls: ['https://localhost/v1'], health_check: { enabled: false } },
    ],
  }, { SLUICE_TEST_TLS_KEY: SECRET, NODE_EXTRA_CA_CERTS: trusted.certFile });
});
t.teardown(async () => {
  await gw?.stop();
  provider?.close();
  stranger?.close();
  plain?.close();
});

t.test('requests and health checks reach an https:// remote over TLS, with the credential and the body intact', async (t) => {
  const body = JSON.stringify({ model: 'prov', messages: [{ role: 'user', content: 'héllo över TLS' }] });
  const before = handshakes;
  const first = await httpRequest(`${gw.url}/prov-1/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  t.equal(first.status, 200, first.body);
  t.same(json(first), { echo: body, path: '/base/v1/chat/completions' }, 'the provider got the body byte for byte, under the URL\'s path');
  const hit = [...seen].reverse().find((s) => s.url === '/base/v1/chat/completions')!;
  t.equal(hit.authorization, `Bearer ${SECRET}`, 'the deployment\'s credential went with it (inside TLS)');
  t.equal(hit.host, `localhost:${port(provider)}`, 'Host names the URL\'s host and port');
  t.ok(seen.some((s) => s.url === '/base/health' && s.authorization === `Bearer ${SECRET}`), 'the health check went over TLS too (the deployment became ready by it)');
  const second = await httpRequest(`${gw.url}/prov-1/v1/models`);
  t.equal(second.status, 200);
  t.ok(handshakes - before <= 1, `the keep-alive TLS connection was reused (${handshakes - before} new handshakes for 2 requests)`);
});

t.test('a stream from an https:// remote goes to the client event by event', async (t) => {
  const r = await httpRequest(`${gw.url}/prov-1/stream`);
  t.equal(r.status, 200);
  t.equal(r.body, 'data: one\n\ndata: two\n\ndata: [DONE]\n\n');
  t.ok(r.chunks.length >= 2 && r.chunks[0]!.text === 'data: one\n\n', 'the first event arrived alone, before the server sent the rest');
  t.ok(r.chunks[r.chunks.length - 1]!.at - r.chunks[0]!.at >= 200, 'and ~300 ms before the last');
});

t.test('a server whose certificate is not trusted gets no request: 502, and the reason is the certificate', async (t) => {
  const r = await httpRequest(`${gw.url}/stranger-1/v1/models`);
  t.equal(r.status, 502, r.body);
  const { error } = json<{ error: { code: string; message: string } }>(r);
  t.equal(error.code, 'SLUICE_ERR_UPSTREAM_CONNECT', 'a failed handshake is a failed connect');
  t.match(error.message, /SELF_SIGNED_CERT/, 'the answer names the certificate problem');
  t.equal(strangerRequests, 0, 'nothing of the request reached it');
});

t.test('a plain-HTTP server at an https:// URL sees a TLS handshake, never the request or the key', async (t) => {
  const r = await httpRequest(`${gw.url}/plain-1/v1/chat/completions`, { method: 'POST', body: '{"prompt":"secret prompt"}' });
  t.equal(r.status, 502, r.body);
  t.equal(json<{ error: { code: string } }>(r).error.code, 'SLUICE_ERR_UPSTREAM_CONNECT', 'closed in the handshake: a failed connect, nothing was sent');
  const got = Buffer.concat(plainBytes);
  t.ok(got.length > 0, 'it was connected to');
  t.equal(got[0], 0x16, 'and got a TLS record (a ClientHello)');
  t.notOk(got.includes(SECRET), 'the key never went in clear');
  t.notOk(got.includes('secret prompt'), 'nor the prompt');
});

t.test('an https:// URL without a port is reached on 443', async (t) => {
  const view = json<{ replicas: Array<{ port: number }> }>(await httpRequest(`${gw.adminUrl}/v1/deployments/default-port-1`));
  t.equal(view.replicas[0]!.port, 443);
});
