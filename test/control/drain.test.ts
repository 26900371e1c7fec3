// Shutdown as a load balancer sees it. On SIGTERM (or SIGINT) /readyz answers 503 at once
// on both ports while the gateway still serves, new requests included, for
// shutdown.drain_delay_ms (the balancer needs a few probes to take it out); then it stops
// accepting, lets the requests in flight finish (up to shutdown.grace_ms), stops its
// model servers and exits 0. A second signal ends the drain delay at once.

import { connect } from 'node:net';
import t from 'tap';
import { adminClient, assertNoServersLeft, gwRequest, PidLog, reapServers, sleep, waitFor, type GwReply } from '../helpers/control.js';
import { jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18980-18989 belong to this file.
const RANGE = { from: 18980, to: 18989 };
const pids = new PidLog();
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop('SIGKILL');
  await reapServers(pids.pids, RANGE);
});

type Answer = number | 'refused';

/** GET /readyz: its status, or 'refused' when nothing listens any more (or stopped listening as it connected). */
async function readyz(base: string): Promise<Answer> {
  try {
    return (await gwRequest(`${base}/readyz`, { timeoutMs: 5_000 })).status;
  } catch (err) {
    // ECONNRESET: the connection sat in the backlog when the listen socket closed.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET') return 'refused';
    throw err;
  }
}

/** A new TCP connection to `port`: 'connected', or the error code. */
function tcpConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve('connected');
    });
    sock.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** /readyz on both ports every 25 ms until stopped; each poll notes when it started. */
function pollReadyz(g: Gateway): { polls: Array<{ at: number; admin: Answer; gateway: Answer }>; stop(): Promise<void> } {
  const polls: Array<{ at: number; admin: Answer; gateway: Answer }> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const [admin, gateway] = await Promise.all([readyz(g.adminUrl), readyz(g.url)]);
      polls.push({ at, admin, gateway });
      if (admin === 'refused' && gateway === 'refused') return;
      await sleep(25);
    }
  })();
  return { polls, async stop() { running = false; await loop; } };
}

/** When the gateway first logged `msg` (as seen by this process), or undefined. */
function logged(g: Gateway, msg: string): Record<string, unknown> | undefined {
  return jsonLogs(g).find((l) => l.msg === msg);
}

async function waitLogged(g: Gateway, msg: string, timeoutMs: number): Promise<number> {
  await waitFor(() => logged(g, msg) !== undefined, timeoutMs, `the log line "${msg}"`, 10);
  return Date.now();
}

function exitCode(g: Gateway, timeoutMs: number): Promise<number | null> {
  return waitFor(() => (g.ended() ? { code: g.child.exitCode } : undefined), timeoutMs, 'the gateway to exit')
    .then((r) => r.code);
}

/** A streamed chat completion (SSE); `first` resolves with the first chunk. */
function stream(g: Gateway, model: string): { done: Promise<GwReply>; first: Promise<void>; ended: () => boolean } {
  let onFirst!: () => void;
  const first = new Promise<void>((r) => (onFirst = r));
  let ended = false;
  const done = gwRequest(`${g.url}/${model}-1/v1/chat/completions`, {
    body: { model, stream: true, messages: [{ role: 'user', content: 'tell me a long story' }] },
    timeoutMs: 90_000,
    onChunk: () => onFirst(),
  }).finally(() => {
    ended = true;
  });
  return { done, first, ended: () => ended };
}

const contentEvents = (text: string): number => text.split('"content":').length - 1;

t.test('SIGTERM: 503 at once on both ports, served for drain_delay_ms, then refused; the stream in flight ends whole; exit 0', async (t) => {
  const DRAIN_DELAY_MS = 1500;
  const TOKENS = 80; // at 50 ms each: the stream outlives the drain delay by seconds
  gw = await startGateway({
    ports: RANGE,
    shutdown: { drain_delay_ms: DRAIN_DELAY_MS, grace_ms: 30_000 },
    deployments: [{ model: 'drain', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '50', '--tokens', String(TOKENS)] }],
  });
  const g = gw;
  const admin = adminClient(g.adminUrl);
  pids.note(await admin.list());
  t.same([await readyz(g.adminUrl), await readyz(g.url)], [200, 200], 'ready on both ports before the signal');

  const s = stream(g, 'drain');
  await s.first;
  const poller = pollReadyz(g);
  const signalled = Date.now();
  g.child.kill('SIGTERM');

  // Both ports say 503 while the data plane still accepts.
  const first503 = await waitFor(() => poller.polls.find((p) => p.at >= signalled && p.admin === 503 && p.gateway === 503), DRAIN_DELAY_MS, '503 on both ports', 10);
  t.ok(first503.at - signalled < DRAIN_DELAY_MS, `503 on both ports ${first503.at - signalled} ms after SIGTERM, within the drain delay`);
  await waitLogged(g, 'draining', 5_000);

  // A new request on a new connection during the drain delay is served.
  const fresh = await gwRequest(`${g.url}/drain-1/v1/chat/completions`, {
    body: { model: 'drain', max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }, timeoutMs: 10_000,
  });
  const freshAt = Date.now();
  t.equal(fresh.status, 200, 'a new request during the drain delay is served');
  t.equal(fresh.json?.choices?.[0]?.finish_reason, 'length', 'with a whole answer');
  t.equal(logged(g, 'stopped accepting'), undefined, `still accepting when it was answered (${freshAt - signalled} ms after SIGTERM)`);

  // Then the listen socket goes: new connections are refused; the stream goes on.
  const stoppedAt = await waitLogged(g, 'stopped accepting', DRAIN_DELAY_MS + 10_000);
  t.ok(stoppedAt - signalled >= DRAIN_DELAY_MS, `stopped accepting ${stoppedAt - signalled} ms after SIGTERM, not before the drain delay`);
  t.match(logged(g, 'stopped accepting'), { in_flight: 1 }, 'with the stream in flight');
  t.equal(await tcpConnect(g.port), 'ECONNREFUSED', 'a new connection is refused once it stopped accepting');
  t.notOk(s.ended(), 'while the stream in flight is still going');

  const r = await s.done;
  t.equal(r.status, 200, 'the stream was answered 200');
  t.ok(r.complete, 'the stream ended cleanly');
  t.equal(contentEvents(r.text), TOKENS, `all ${TOKENS} tokens arrived`);
  t.ok(r.text.endsWith('data: [DONE]\n\n'), 'up to its [DONE]');

  t.equal(await exitCode(g, 20_000), 0, 'the gateway exits 0');
  await poller.stop();
  const after = poller.polls.filter((p) => p.at >= first503.at);
  const wrong = after.filter((p) => !(p.admin === 503 || p.admin === 'refused') || !(p.gateway === 503 || p.gateway === 'refused'));
  t.same(wrong, [], `from the first 503 on, each of ${after.length} polls got 503 or a refused connection on both ports`);
  t.ok(after.some((p) => p.gateway === 'refused'), 'the gateway port ends up refusing');

  const order = ['draining', 'stopped accepting', 'drained', 'model servers stopped', 'stopped'];
  const msgs = jsonLogs(g).map((l) => l.msg as string);
  const at = order.map((m) => msgs.indexOf(m));
  t.ok(at.every((i, k) => i >= 0 && (k === 0 || i > at[k - 1]!)), `logged in order: ${order.join(', ')} (${at.join(', ')})`);
  t.match(logged(g, 'draining'), { signal: 'SIGTERM', drain_delay_ms: DRAIN_DELAY_MS, grace_ms: 30_000 });
  await assertNoServersLeft(t, pids.pids, RANGE);
  gw = undefined;
});

t.test('SIGINT twice: the second ends the drain delay; grace_ms cuts a stream that would not end; exit 0', async (t) => {
  gw = await startGateway({
    ports: RANGE,
    shutdown: { drain_delay_ms: 600_000, grace_ms: 1000 },
    // 1000 tokens at 50 ms: far longer than the grace period.
    deployments: [{ model: 'endless', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '50', '--tokens', '1000'] }],
  });
  const g = gw;
  pids.note(await adminClient(g.adminUrl).list());
  const s = stream(g, 'endless');
  await s.first;
  g.child.kill('SIGINT');
  await waitLogged(g, 'draining', 5_000);
  t.same([await readyz(g.adminUrl), await readyz(g.url)], [503, 503], '503 on both ports after SIGINT');
  await sleep(300);
  t.equal(logged(g, 'stopped accepting'), undefined, 'still accepting: the drain delay is 10 minutes');
  t.equal(await tcpConnect(g.port), 'connected', 'a new connection is accepted');

  const second = Date.now();
  g.child.kill('SIGINT');
  await waitLogged(g, 'stopped accepting', 10_000);
  t.pass(`a second SIGINT: stopped accepting ${Date.now() - second} ms later`);
  t.equal(await tcpConnect(g.port), 'ECONNREFUSED', 'new connections are refused');

  const r = await s.done;
  t.match(r.text, /event: error\ndata: \{"error":\{"code":"SLUICE_ERR_SHUTTING_DOWN"/, 'the stream still going when the grace period ran out ends with an error event, not as if whole');
  t.ok(contentEvents(r.text) < 1000, `after ${contentEvents(r.text)} of 1000 tokens`);
  t.equal(await exitCode(g, 20_000), 0, 'the gateway exits 0');
  t.match(jsonLogs(g).find((l) => l.msg === 'grace period over: requests still in flight were cut'), { cut: 1, grace_ms: 1000 }, 'the cut is logged');
  t.ok(logged(g, 'stopped'), 'and the gateway says it stopped');
  await assertNoServersLeft(t, pids.pids, RANGE);
  gw = undefined;
});

t.test('shutdown settings are validated, naming the field', async (t) => {
  const { validate, configSchema } = await import('../../src/config/schema.js');
  t.throws(() => validate(configSchema, { shutdown: { drain_delay_ms: -1 } }, ''), { message: /^config: shutdown\.drain_delay_ms: must be >= 0/ });
  t.throws(() => validate(configSchema, { shutdown: { drain_delay_ms: 3_600_000 } }, ''), { message: /^config: shutdown\.drain_delay_ms: must be <= 600000/ });
  t.throws(() => validate(configSchema, { shutdown: { grace_ms: 'soon' } }, ''), { message: /^config: shutdown\.grace_ms: expected a number/ });
  t.throws(() => validate(configSchema, { shutdown: { drain_ms: 5 } }, ''), { message: /^config: shutdown\.drain_ms: unknown option/ });
  t.match(validate(configSchema, {}, ''), { shutdown: { drain_delay_ms: 5000, grace_ms: 10_000 } }, 'defaults: 5 s of drain delay, 10 s of grace');
});
