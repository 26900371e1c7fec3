// Fallbacks across deployments (config `fallbacks`), through the real gateway: a request
// the addressed deployment cannot take (every breaker open), or that one of its replicas
// answers 429/5xx before any byte reached the client, goes to the next deployment in the
// list, with its body sent again whole and the fallback's own credential; the answer says
// who gave it (x-sluice-served-by) and /metrics counts the fallbacks.

import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { metricsText, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18370-18399 belong to this file (one sim replica uses one).
const CLOUD_KEY = 'sk-cloud-fallback-4c1e9b7d';

/** A provider whose answer the test sets: 200 echoing what it got, or an error status. */
interface Provider {
  url: string;
  status: number;
  seen: Array<{ url: string; headers: IncomingHttpHeaders; sha256: string }>;
  server: Server;
}

async function provider(): Promise<Provider> {
  const p: Provider = { url: '', status: 200, seen: [], server: null as unknown as Server };
  p.server = createServer((req, res) => {
    const hash = createHash('sha256');
    req.on('data', (c: Buffer) => hash.update(c));
    req.on('end', () => {
      const sha256 = hash.digest('hex');
      p.seen.push({ url: req.url ?? '', headers: req.headers, sha256 });
      if (p.status !== 200) {
        res.writeHead(p.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `status ${p.status}` } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ served: 'provider', sha256, authorization: req.headers.authorization ?? null }));
    });
  });
  await new Promise<void>((r) => p.server.listen(0, '127.0.0.1', r));
  p.url = `http://127.0.0.1:${(p.server.address() as AddressInfo).port}`;
  return p;
}

let gw: Gateway;
let main: Provider;
let small: Sim;
let cloud: Provider;
/** Answers 503 to everything: a deployment on it hands every request to its fallback. */
let broken: Provider;

t.before(async () => {
  main = await provider();
  cloud = await provider();
  broken = await provider();
  broken.status = 503;
  small = await startSim(['--ttft-ms', '1', '--tokens', '1']);
  gw = await startGateway({
    ports: { from: 18370, to: 18399 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'main', version: '1', runtime: 'remote', urls: [main.url], health_check: { enabled: false }, fallbacks: ['small-1', 'cloud-1'],
        policies: { breaker: { consecutive_failures: 3, reset_timeout_ms: 60_000 }, retry: { replay_max_bytes: 4096 } },
      },
      { model: 'small', version: '1', runtime: 'remote', urls: [small.url], health_check: { enabled: false } },
      { model: 'cloud', version: '1', runtime: 'remote', urls: [cloud.url], health_check: { enabled: false }, auth: { env: 'SLUICE_TEST_CLOUD_KEY' } },
      { model: 'lean', version: '1', runtime: 'remote', urls: [broken.url], health_check: { enabled: false }, fallbacks: ['spare-1'] },
      { model: 'spare', version: '1', runtime: 'sim', scale: { min_replicas: 0, idle_timeout_s: 2 } },
      { model: 'named', version: '1', runtime: 'remote', urls: [broken.url], health_check: { enabled: false }, fallbacks: ['llama-1'] },
      // Its server knows only `llama3:8b`: a request a fallback hands it must be renamed.
      { model: 'llama', version: '1', runtime: 'sim', args: ['--models', 'llama3:8b', '--tokens', '2', '--token-ms', '1'], served_model: 'llama3:8b' },
    ],
  }, { SLUICE_TEST_CLOUD_KEY: CLOUD_KEY });
});
t.teardown(async () => {
  await gw?.stop();
  await small?.stop();
  for (const p of [main, cloud, broken]) p?.server.close();
});

const body = JSON.stringify({ model: 'main', prompt: 'x'.repeat(1000) });
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function upload(payload = body, headers: Record<string, string> = {}): ReturnType<typeof httpRequest> {
  return httpRequest(`${gw.url}/main-1/_sim/upload`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', ...headers } });
}

async function fallbacksCounted(): Promise<number> {
  const m = /^sluice_fallbacks_total\{deployment="main-1"\} (\d+)$/m.exec(await metricsText(gw));
  return m === null ? -1 : Number(m[1]);
}

t.test('a healthy deployment answers itself, and says nothing of fallbacks', async (t) => {
  const r = await upload();
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).served, 'provider');
  t.equal(r.headers['x-sluice-served-by'], undefined);
  t.equal(main.seen.length, 1);
});

t.test('429 from the replica: the next deployment answers, with the body sent again whole', async (t) => {
  main.status = 429;
  const before = (await small.stats()).requests;
  const r = await upload();
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'small-1');
  t.same(JSON.parse(r.body), { bytes: Buffer.byteLength(body), sha256: sha(body) }, 'the fallback got the same body');
  t.equal((await small.stats()).requests, before + 1);
  t.equal(main.seen.at(-1)!.sha256, sha(body), 'after the primary had it');
  t.equal(await fallbacksCounted(), 1);

  // A body over the replay limit cannot be sent again: the 429 reaches the client.
  const big = JSON.stringify({ prompt: 'y'.repeat(8000) });
  const refused = await upload(big);
  t.equal(refused.status, 429);
  t.equal(refused.headers['x-sluice-served-by'], undefined);
  t.equal(await fallbacksCounted(), 1);
});

t.test('5xx from the replica, then its breaker open: the fallback takes every request', async (t) => {
  main.status = 503;
  const seenBefore = main.seen.length;
  for (let i = 0; i < 6; i++) {
    const r = await upload();
    t.equal(r.status, 200);
    t.equal(r.headers['x-sluice-served-by'], 'small-1');
  }
  t.equal(main.seen.length - seenBefore, 3, 'the primary saw three until its breaker opened, then none');
  t.equal(await fallbacksCounted(), 7);
  const m = /^sluice_requests_total\{deployment="main-1",code="503",class="5xx"\} (\d+)$/m.exec(await metricsText(gw));
  t.equal(m?.[1], '6', 'the primary\'s own 503s (3) and its open breaker\'s (3, the fallback\'s) count in its metrics (rollout analysis, alerts)');
});

t.test('the next fallback in order, with its own credential, when the first cannot take the request', async (t) => {
  await small.stop();
  const r = await upload(body, { authorization: 'Bearer client-own-token' });
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'cloud-1');
  const answer = JSON.parse(r.body) as { sha256: string; authorization: string };
  t.equal(answer.sha256, sha(body));
  t.equal(answer.authorization, `Bearer ${CLOUD_KEY}`, 'the fallback\'s key, not the client\'s token');
});

t.test('when the last fallback fails too, its answer reaches the client', async (t) => {
  cloud.status = 500;
  const r = await upload();
  t.equal(r.status, 500);
  t.equal(r.headers['x-sluice-served-by'], 'cloud-1');
  t.match(r.body, /status 500/);
});

t.test('what a fallback serves keeps it from hibernating', async (t) => {
  const until = Date.now() + 4_000;
  let served = 0;
  // 4 s of requests addressed to lean-1, all served by spare-1, whose idle timeout is 2 s.
  while (Date.now() < until) {
    const r = await httpRequest(`${gw.url}/lean-1/_sim/echo`);
    t.equal(r.headers['x-sluice-served-by'], 'spare-1');
    served++;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const spare = (await (await fetch(`${gw.adminUrl}/v1/deployments/spare-1`)).json()) as { state: string };
  t.equal(spare.state, 'ready', `still awake after serving ${served} requests for lean-1`);
});

t.test('a fallback\'s server is asked for its own model name (served_model), the rest of the body unchanged', async (t) => {
  const chat = { model: 'named', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, user: 'u-7' };
  const r = await httpRequest(`${gw.url}/named-1/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat), headers: { 'content-type': 'application/json' } });
  t.equal(r.status, 200, r.body);
  t.equal(r.headers['x-sluice-served-by'], 'llama-1');
  t.equal(JSON.parse(r.body).model, 'llama3:8b', 'asked for llama3:8b (its server knows no other), with a longer body than the client sent');
  t.equal(broken.seen.at(-1)!.sha256, sha(JSON.stringify(chat)), 'the primary got the body as the client sent it');
});
