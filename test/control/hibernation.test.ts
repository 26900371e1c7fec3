// Scale to zero: a deployment with scale.min_replicas 0 hibernates after idle_timeout_s
// without a request (its server stops, its port is freed), and the next requests are held,
// not failed, while exactly one start wakes it; a restart keeps it asleep. The hold also
// covers a deployment that is still starting, within policies.hold's bounds.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient, canBind, gwRequest, pidAlive, reapServers, serverCommand, waitFor, waitState, writeServerScript, type AdminClient } from '../helpers/control.js';
import { jsonLogs, metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(180_000);

// Replica ports 18930-18939 belong to this file.
const RANGE = { from: 18930, to: 18939 };
const stateDir = join(mkdtempSync(join(tmpdir(), 'sluice-hibernation-')), 'state');
let script: string;
let gw: Gateway;
let admin: AdminClient;

function config(): Record<string, unknown> {
  return {
    ports: RANGE,
    state_dir: stateDir,
    log: { level: 'info', access: false },
    deployments: [
      // Listens 1.5 s after it starts: a cold start a client would notice.
      {
        model: 'nap', version: '1', runtime: 'command', command: serverCommand(script, 'slow', '1500'), readiness_path: '/ping',
        scale: { min_replicas: 0, idle_timeout_s: 1 },
      },
      { model: 'awake', version: '1', runtime: 'sim' },
      // A chat model that takes 1.5 s to start: its streaming clients get `: waking` meanwhile.
      {
        model: 'chat', version: '1', runtime: 'sim', args: ['--start-delay-ms', '1500', '--tokens', '3'],
        scale: { min_replicas: 0, idle_timeout_s: 1 }, policies: { hold: { heartbeat_ms: 300 } },
      },
    ],
  };
}

t.before(async () => {
  script = writeServerScript(mkdtempSync(join(tmpdir(), 'sluice-nap-')));
  gw = await startGateway(config());
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

async function metric(name: string): Promise<number> {
  const m = new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(await metricsText(gw));
  return m === null ? NaN : Number(m[1]);
}

t.test('an idle deployment hibernates: its server stops and its port is freed; the others run on', async (t) => {
  const first = await gwRequest(`${gw.url}/nap-1/ping`);
  t.equal(first.status, 200);
  const before = (await admin.deployment('nap-1'))!.replicas[0]!;
  // Ollama's /api/ps: expires_at is when an idle model unloads; one that never hibernates is kept loaded.
  // (The autoscaler forecasts it at its first tick, within a second of the deployment being ready: kept awake until then.)
  type Ps = { models: Array<{ name: string; expires_at: string }> };
  const ps = await waitFor(async () => {
    await gwRequest(`${gw.url}/nap-1/ping`);
    const list = (await gwRequest(`${gw.url}/api/ps`)).json as Ps;
    return list.models.some((m) => m.name === 'nap:1' && !m.expires_at.startsWith('2318')) ? list : undefined;
  }, 5_000, 'a forecast for nap:1', 200);
  const expires = (name: string): number => Date.parse(ps.models.find((m) => m.name === name)?.expires_at ?? '');
  const now = Date.now();
  t.ok(expires('nap:1') > now - 2_500 && expires('nap:1') < now + 2_500, `nap:1 expires within its 1 s idle timeout of its last request (${ps.models.find((m) => m.name === 'nap:1')?.expires_at})`);
  t.ok(expires('awake:1') > now + 100 * 365 * 86_400_000, 'awake:1 is kept loaded');
  await waitState(admin, 'nap-1', 'hibernated', 10_000);
  // Hibernated at once (requests are held from then on); the replica goes once it has stopped.
  const asleep = await waitFor(async () => {
    const d = (await admin.deployment('nap-1'))!;
    return d.replicas.length === 0 ? d : undefined;
  }, 10_000, 'the replica to stop');
  t.equal(asleep.state, 'hibernated');
  t.ok((asleep as unknown as { hibernated_since: string }).hibernated_since, 'the view says since when');
  await waitFor(() => !pidAlive(before.pid!), 5_000, 'the server to exit');
  // Bounded: on a loaded machine the port may be bound a moment longer than its server lives.
  t.ok(await waitFor(() => canBind(before.port), 5_000, `port ${before.port} to be free`), `port ${before.port} is free again`);
  t.equal(await metric('sluice_deployment_hibernated{deployment="nap-1"}'), 1);
  t.equal((await admin.deployment('awake-1'))!.state, 'ready', 'a deployment without min_replicas 0 never hibernates');
  t.equal((await gwRequest(`${gw.url}/readyz`)).status, 200, 'the gateway stays ready: a hibernated deployment still serves');
});

t.test('50 requests at once wake it with one start, and every one is answered', async (t) => {
  const startedAt = Date.now();
  const replies = await Promise.all(Array.from({ length: 50 }, () => gwRequest(`${gw.url}/nap-1/ping`, { timeoutMs: 30_000 })));
  const took = Date.now() - startedAt;
  t.same(replies.map((r) => r.status), new Array(50).fill(200), 'held, then answered: none failed');
  t.ok(took >= 1_400, `they waited for the cold start (${took} ms)`);
  t.equal(new Set(replies.map((r) => r.json.pid)).size, 1, 'all by one server');
  t.equal(jsonLogs(gw).filter((l) => l.msg === 'waking' && l.deployment === 'nap-1').length, 1, 'woken once');
  const d = (await admin.deployment('nap-1'))!;
  t.equal(d.state, 'ready');
  t.equal(d.replicas.length, 1);
  t.equal(await metric('sluice_cold_starts_total{deployment="nap-1"}'), 1);
  t.equal(await metric('sluice_cold_start_seconds_count{deployment="nap-1"}'), 1);
  t.ok(await metric('sluice_cold_start_seconds_sum{deployment="nap-1"}') >= 1.4, 'the cold start took the server\'s start-up time');
  t.equal(await metric('sluice_queue_depth{deployment="nap-1"}'), 0, 'nobody waits any more');
});

const STREAM_BODY = { model: 'chat', stream: true, messages: [{ role: 'user', content: 'hi' }] };

t.test('a streaming client held while the model wakes gets its head and `: waking` comments, then the tokens', async (t) => {
  await waitFor(async () => ((await admin.deployment('chat-1'))!.state === 'hibernated' && (await admin.deployment('chat-1'))!.replicas.length === 0 ? true : undefined), 15_000, 'chat-1 to hibernate');
  const t0 = performance.now();
  let headAt = 0;
  const r = await gwRequest(`${gw.url}/chat-1/v1/chat/completions`, {
    method: 'POST', body: STREAM_BODY, timeoutMs: 30_000, onResponse: () => { headAt = performance.now() - t0; },
  });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^text\/event-stream/);
  t.ok(headAt < 1_200, `the head came before the model was up (${Math.round(headAt)} ms)`);
  const comments = r.text.split('\n\n').filter((e) => e === ': waking').length;
  t.ok(comments >= 2, `${comments} heartbeats while it woke`);
  t.ok(r.text.indexOf(': waking') < r.text.indexOf('data: '), 'heartbeats first, then the tokens');
  t.match(r.text, /data: \[DONE\]\n\n$/, 'the stream ends as the model ended it');
  const events = r.text.split('\n\n').filter((e) => e.startsWith('data: {'));
  t.ok(events.length >= 3, `${events.length} token events`);
});

t.test('a held stream whose deployment does not come up in time ends with an error event', async (t) => {
  // Never listens: the hold times out at 1.5 s, long after the head went at 200-300 ms.
  t.equal((await admin.post('/v1/deployments', {
    model: 'gone', version: '1', runtime: 'command', command: serverCommand(script, 'hang'), readiness_path: '/ping',
    policies: { hold: { heartbeat_ms: 200, max_wait_ms: 1_500 } },
  })).status, 201);
  const r = await gwRequest(`${gw.url}/gone-1/v1/chat/completions`, { method: 'POST', body: STREAM_BODY, timeoutMs: 30_000 });
  t.equal(r.status, 200, 'the head went while it was held');
  t.match(r.text, /^: waking\n\n/);
  t.match(r.text, /event: error\ndata: \{"error":\{[^\n]*"code":"SLUICE_ERR_NOT_READY_TIMEOUT"/, 'then the usual error event');
  t.ok(r.complete, 'and the stream ended cleanly');
  t.equal((await admin.del('/v1/deployments/gone-1')).status, 200);
});

t.test('a held client that leaves is removed at once', async (t) => {
  await waitState(admin, 'nap-1', 'hibernated', 10_000);
  const controller = new AbortController();
  const gone = fetch(`${gw.url}/nap-1/ping`, { signal: controller.signal }).catch(() => 'aborted');
  await waitFor(async () => (await metric('sluice_queue_depth{deployment="nap-1"}')) === 1, 5_000, 'the request to be held');
  controller.abort();
  t.equal(await gone, 'aborted');
  await waitFor(async () => (await metric('sluice_queue_depth{deployment="nap-1"}')) === 0, 2_000, 'its place to be given back');
  t.pass('the held request left the queue');
  // It had asked for the wake already: the deployment comes up, and serves the next one.
  await waitState(admin, 'nap-1', 'ready', 10_000);
  t.equal((await gwRequest(`${gw.url}/nap-1/ping`)).status, 200);
});

t.test('by hand: hibernate and wake through the admin API', async (t) => {
  const slept = await admin.post('/v1/deployments/nap-1/hibernate');
  t.equal(slept.status, 200);
  t.equal(slept.body.state, 'hibernated');
  const woke = await admin.post('/v1/deployments/nap-1/wake');
  t.equal(woke.status, 200);
  t.equal(woke.body.state, 'starting');
  await waitState(admin, 'nap-1', 'ready', 10_000);
  t.equal((await admin.post('/v1/deployments/nope-1/wake')).status, 404);
});

t.test('a restart keeps a hibernated deployment asleep, and a request wakes it', async (t) => {
  await waitState(admin, 'nap-1', 'hibernated', 10_000);
  // One with min_replicas 1, hibernated by hand: it used to run again after a restart.
  t.equal((await admin.post('/v1/deployments/awake-1/hibernate')).status, 200);
  await gw.stop();
  gw = await startGateway(config(), {}, false);
  admin = adminClient(gw.adminUrl);
  for (const id of ['nap-1', 'awake-1']) {
    const d = await waitState(admin, id, 'hibernated', 20_000);
    t.same(d.replicas, [], `${id} still asleep after the restart, its server not started`);
  }
  const r = await gwRequest(`${gw.url}/nap-1/ping`, { timeoutMs: 30_000 });
  t.equal(r.status, 200, 'the first request wakes it and is answered');
  const tags = await gwRequest(`${gw.url}/awake-1/api/tags`, { timeoutMs: 30_000 });
  t.equal(tags.status, 200, 'and so for the one hibernated by hand');
  await waitState(admin, 'awake-1', 'ready', 20_000);
});

t.test('requests for a deployment still starting are held, within the hold\'s bounds', async (t) => {
  const deploy = (version: string, hold: Record<string, number>, delay = '4000'): ReturnType<AdminClient['post']> => admin.post('/v1/deployments', {
    model: 'late', version, runtime: 'command', command: serverCommand(script, 'slow', delay), readiness_path: '/ping', policies: { hold },
  });
  t.equal((await deploy('1', {}, '1500')).status, 201);
  const served = await gwRequest(`${gw.url}/late-1/ping`, { timeoutMs: 20_000 });
  t.equal(served.status, 200, 'sent during the start: held until ready, then answered');

  t.equal((await deploy('2', { max_wait_ms: 500 })).status, 201);
  const t0 = Date.now();
  const late = await gwRequest(`${gw.url}/late-2/ping`);
  t.equal(late.status, 503);
  t.equal(late.json?.error?.code, 'SLUICE_ERR_NOT_READY_TIMEOUT');
  t.ok(late.headers['retry-after'], 'with Retry-After');
  t.ok(Date.now() - t0 >= 450, 'after the hold\'s max_wait_ms');

  t.equal((await deploy('3', { max_length: 2 })).status, 201);
  const replies = await Promise.all([0, 1, 2].map(() => gwRequest(`${gw.url}/late-3/ping`, { timeoutMs: 20_000 })));
  const statuses = replies.map((r) => r.status).sort();
  t.same(statuses, [200, 200, 503], 'two held and answered, the third refused at once');
  t.equal(replies.find((r) => r.status === 503)!.json.error.code, 'SLUICE_ERR_QUEUE_FULL');
});

t.test('a start that fails ends the held requests with an error, not a long wait', async (t) => {
  t.equal((await admin.post('/v1/deployments', { model: 'dead', version: '1', runtime: 'command', command: serverCommand(script, 'exit'), readiness_path: '/ping' })).status, 201);
  const t0 = Date.now();
  const r = await gwRequest(`${gw.url}/dead-1/ping`, { timeoutMs: 60_000 });
  t.equal(r.status, 503);
  t.equal(r.json?.error?.code, 'SLUICE_ERR_NO_READY_REPLICA');
  t.ok(Date.now() - t0 < 60_000, `answered once the start had failed (${Date.now() - t0} ms)`);
});
