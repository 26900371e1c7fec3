// CORS at the front door (listen.cors_origins). A page or a browser extension calling the
// root's OpenAI or Ollama endpoints sends a preflight first, which no deployment could answer
// (it names no model): the front door refused it with 405, so no browser app could use
// sluice where it used Ollama, whose server allows localhost pages and apps. The gateway now
// answers preflights from the allowed origins, its answers to them say the page may read them
// (a model server's own Access-Control-* lines give way: a browser refuses two), its own
// errors too; other origins get 403; `cors_origins: []` turns it off. In a real Chromium, and
// over plain HTTP for the exact headers.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrowserContext } from 'playwright-core';
import t from 'tap';
import { launchChromium } from '../helpers/chromium.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Model-server ports 22530-22539 belong to this file; the rest are ephemeral.
const RANGE = { from: 22530, to: 22539 };

let gw: Gateway;
let upstream: Server;
let page: Server;
let browser: BrowserContext | undefined;

t.before(async () => {
  // A model server with CORS of its own (llama.cpp's and llama-cpp-python's answer every origin with '*').
  upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*', 'access-control-allow-credentials': 'true' });
      res.end('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  // The page's own origin: http://127.0.0.1:<port>, which the default cors_origins allow.
  page = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title>'));
  await new Promise<void>((r) => page.listen(0, '127.0.0.1', r));
  gw = await startGateway({
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [
      { model: 'remote', version: '1', runtime: 'remote', urls: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`], health_check: { enabled: false } },
      { model: 'limited', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 1 } } },
    ],
  });
});
t.teardown(async () => {
  await browser?.close();
  await gw?.stop();
  await new Promise((r) => upstream?.close(r));
  await new Promise((r) => page?.close(r));
});

const APP = 'http://localhost:5173';
const chat = (model: string, origin?: string): Promise<Reply> => httpRequest(`${gw.url}/v1/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...(origin === undefined ? {} : { origin }) },
  body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
});
const preflight = (origin: string, path = '/v1/chat/completions', asked = 'authorization, content-type, x-stainless-os'): Promise<Reply> => httpRequest(`${gw.url}${path}`, {
  method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
});
/** Every value of a response header, as received. */
const all = (r: Reply, name: string): string[] => r.rawHeaders.filter((_, i) => i % 2 === 1 && r.rawHeaders[i - 1]!.toLowerCase() === name);

t.test('a preflight from an allowed origin is answered; another origin is refused', async (t) => {
  const ok = await preflight(APP);
  t.equal(ok.status, 204);
  t.equal(ok.headers['access-control-allow-origin'], APP);
  t.match(ok.headers['access-control-allow-methods'], /POST/);
  t.equal(ok.headers['access-control-allow-headers'], 'authorization, content-type, x-stainless-os', 'the headers it asked for');
  t.equal(ok.body, '');
  t.equal((await preflight('chrome-extension://abcdefghijklmnop', '/api/chat')).status, 204, 'a browser extension, on Ollama\'s API');
  t.equal((await preflight(APP, '/v1/models')).status, 204, 'the model list');
  const evil = await preflight('https://evil.example');
  t.equal(evil.status, 403, 'a page of another site');
  t.equal(evil.headers['access-control-allow-origin'], undefined);
  t.equal((await preflight(APP, '/v1/chat/completions', 'content-type,authorization')).status, 204, 'a list of names');
  t.equal((await preflight(APP, '/v1/chat/completions', 'a b')).status, 403, 'not a list of header names');
});

t.test('answers to an allowed origin say so, once, whoever answers', async (t) => {
  const r = await chat('remote-1', APP);
  t.equal(r.status, 200);
  t.same(all(r, 'access-control-allow-origin'), [APP], 'the gateway\'s, not the server\'s "*" beside it');
  t.same(all(r, 'access-control-allow-credentials'), [], 'nor its credentials mode');
  t.match(r.headers['access-control-expose-headers'], /x-request-id/);
  const direct = await chat('remote-1');
  t.same(all(direct, 'access-control-allow-origin'), ['*'], 'without an Origin, the server\'s own headers pass as they were');
  const unknown = await chat('nope', APP);
  t.equal(unknown.status, 404);
  t.equal(unknown.headers['access-control-allow-origin'], APP, 'the front door\'s own errors too');
  t.equal((await chat('limited-1', APP)).status, 200);
  const limited = await chat('limited-1', APP);
  t.equal(limited.status, 429);
  t.equal(limited.headers['access-control-allow-origin'], APP, 'and a policy\'s refusal, so the page can read its Retry-After');
  const models = await httpRequest(`${gw.url}/v1/models`, { headers: { origin: APP } });
  t.equal(models.headers['access-control-allow-origin'], APP);
});

t.test('a page in Chromium calls the front door with a key and reads the answer', async (t) => {
  browser = await launchChromium();
  const tab = browser.pages()[0] ?? await browser.newPage();
  await tab.goto(`http://127.0.0.1:${(page.address() as AddressInfo).port}/`);
  const result = await tab.evaluate(async (url) => {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-page' },
      body: JSON.stringify({ model: 'remote-1', messages: [{ role: 'user', content: 'hi' }] }),
    });
    return { status: r.status, id: r.headers.get('x-request-id'), content: (await r.json()).choices[0].message.content };
  }, gw.url);
  t.equal(result.status, 200);
  t.equal(result.content, 'hi', 'the page read the answer');
  t.match(result.id, /^[0-9a-f-]{36}$/, 'and its request id');
});

// A page of an origin cors_origins does not allow sends no preflight for a "simple" POST
// (text/plain), and the front door reads its body's model all the same: the server's own
// `Access-Control-Allow-Origin: *` (or its echo of the Origin, with credentials, as
// llama-cpp-python and vLLM answer) let any site read the answer through the gateway, the
// deployment's provider key spent for it (W2). At the root the gateway's policy decides.
t.test('a page of an origin not allowed cannot read an answer its server would let it read', async (t) => {
  const other = await chat('remote-1', 'https://evil.example');
  t.equal(other.status, 200);
  t.same(all(other, 'access-control-allow-origin'), [], 'the server\'s "*" does not reach another origin');
  t.same(all(other, 'access-control-allow-credentials'), [], 'nor its credentials mode');
  // A real page of another origin (127.0.0.2 is loopback, but not an origin the defaults allow).
  const evil = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>evil</title>'));
  await new Promise<void>((r) => evil.listen(0, '127.0.0.2', r));
  browser ??= await launchChromium();
  const tab = await browser.newPage();
  t.teardown(async () => {
    await tab.close();
    // The browser keeps its connection to the page open.
    evil.closeAllConnections();
    await new Promise((r) => evil.close(r));
  });
  await tab.goto(`http://127.0.0.2:${(evil.address() as AddressInfo).port}/`);
  const result = await tab.evaluate(async (url) => {
    try {
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'text/plain' },
        body: JSON.stringify({ model: 'remote-1', messages: [{ role: 'user', content: 'hi' }] }),
      });
      return `read ${r.status}: ${await r.text()}`;
    } catch (err) {
      return `refused: ${(err as Error).name}`;
    }
  }, gw.url);
  t.equal(result, 'refused: TypeError', 'the browser keeps the answer from the page');
});

t.test('cors_origins: [] turns it off', async (t) => {
  const off = await startGateway({ ports: RANGE, log: { level: 'info', access: false }, listen: { host: '127.0.0.1', port: 0, cors_origins: [] }, deployments: [] });
  t.teardown(() => off.stop());
  const r = await httpRequest(`${off.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': 'POST' } });
  t.equal(r.status, 405, 'no preflight is answered');
  t.equal(r.headers['access-control-allow-origin'], undefined);
});
