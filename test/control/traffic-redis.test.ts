// The traffic API over several instances sharing one Redis: a change made through one
// instance's admin API is followed by the others' aliases within about a second, every
// instance shows the same weights, stable version, stickiness and events, sticky users
// get the same version whichever instance they reach, and an instance started later
// comes up with the shared traffic rather than its config's.

import t, { type Test } from 'tap';
import { startRedis, type AdminReply } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { pool } from '../helpers/policy.js';
import { InstancesOnRedis, modelEvents, modelView, type Instance, type ModelView, type TrafficEvent } from '../helpers/traffic.js';
import { sleep } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18230-18259 belong to this file: gateway A 18230-18239, B 18240-18249,
// C 18250-18259.
const RANGE = { from: 18230, to: 18259 };
const instances = new InstancesOnRedis(t, RANGE);

const nonZero = (m: Record<string, number> | null | undefined): Record<string, number> => Object.fromEntries(Object.entries(m ?? {}).filter(([, v]) => v !== 0));

async function start(name: string, ports: { from: number; to: number }): Promise<Instance> {
  return instances.start(name, {
    ports,
    workers: 2,
    deployments: [
      { model: 'r', version: '1', runtime: 'sim' },
      { model: 'r', version: '2', runtime: 'sim' },
    ],
    traffic: { r: { '1': 80, '2': 20 } },
  });
}

const view = (i: Instance): Promise<ModelView> => modelView(i.admin, 'r', i.name);
const events = (i: Instance): Promise<TrafficEvent[]> => modelEvents(i.admin, 'r', i.name);

async function aliasVersion(i: Instance, headers: Record<string, string> = {}): Promise<string> {
  let r: Reply;
  try {
    r = await httpRequest(`${i.gw.url}/r/_sim/echo`, { headers, timeoutMs: 10_000 });
  } catch (err) {
    return `error ${(err as Error).message}`;
  }
  if (r.status !== 200) return `status ${r.status}`;
  return String(r.headers['x-sluice-version']);
}

function counts(vs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of vs) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/**
 * Polls instance `i` until its view shows `weights` (zero entries ignored) and a batch of
 * 20 alias requests on fresh connections (both workers) all go to `version`; returns the
 * ms from `since` to the start of that poll round, and 60 more requests' versions.
 */
async function follows(i: Instance, weights: Record<string, number>, version: string, since: number, timeoutMs = 5_000): Promise<{ ms: number; confirm: Record<string, number> }> {
  for (;;) {
    const round = performance.now();
    const [v, batch] = await Promise.all([view(i), pool(20, 5, () => aliasVersion(i))]);
    if (JSON.stringify(nonZero(v.weights)) === JSON.stringify(weights) && batch.every((x) => x === version)) {
      return { ms: round - since, confirm: counts(await pool(60, 6, () => aliasVersion(i))) };
    }
    if (performance.now() - since > timeoutMs) {
      throw new Error(`${i.name} did not follow ${JSON.stringify(weights)} within ${timeoutMs} ms: view ${JSON.stringify(v.weights)}, alias ${JSON.stringify(counts(batch))}`);
    }
    await sleep(10);
  }
}

const put = (i: Instance, body: unknown): Promise<AdminReply<ModelView>> => i.admin.request<ModelView>('PUT', '/v1/models/r/traffic', body);

/** The parts of a view every instance must agree on. */
const shared = (v: ModelView): unknown => ({ weights: v.weights, effective: v.effective, stable: v.stable, sticky: v.sticky, source: v.source, fallback: v.fallback, versions: v.versions.map((x) => [x.version, x.weight, x.share]) });

let A: Instance;
let B: Instance;
let eventsBefore = 0;

t.before(async () => {
  instances.redis = await startRedis();
  [A, B] = await Promise.all([start('A', { from: 18230, to: 18239 }), start('B', { from: 18240, to: 18249 })]);
});

t.test('both instances start from the config traffic', async (t) => {
  const [va, vb] = await Promise.all([view(A), view(B)]);
  t.same([va.source, va.weights, va.stable], ['config', { '1': 80, '2': 20 }, '1'], 'A: the config traffic');
  t.same(shared(vb), shared(va), 'B shows the same');
  eventsBefore = (await events(A)).length;
});

t.test('a PUT on A is followed by B\'s alias within 1 s', async (t) => {
  const sent = performance.now();
  const r = await put(A, { weights: { '1': 0, '2': 100 } });
  const answered = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.equal(r.body.source, 'api');
  const [fb, fa] = await Promise.all([follows(B, { '2': 100 }, '2', answered), follows(A, { '2': 100 }, '2', answered)]);
  t.ok(fb.ms < 1500, `B's view and alias followed ${Math.round(fb.ms)} ms after A's PUT answered (${Math.round(fb.ms + answered - sent)} ms after it was sent)`);
  t.same(fb.confirm, { '2': 60 }, 'and B stays on version 2');
  t.ok(fa.ms < 1500, `A itself followed in ${Math.round(fa.ms)} ms`);
  t.same(fa.confirm, { '2': 60 });
});

t.test('a promotion through B is followed by A within 1 s', async (t) => {
  const r = await B.admin.post<ModelView>('/v1/models/r/promote', { version: '1' });
  const answered = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.equal(r.body.stable, '1');
  const fa = await follows(A, { '1': 100 }, '1', answered);
  t.ok(fa.ms < 1500, `A followed B's promotion in ${Math.round(fa.ms)} ms`);
  t.same(fa.confirm, { '1': 60 });
  t.equal((await view(A)).stable, '1', 'A shows the stable version B set');
});

t.test('sticky traffic set on A: B shows it and sends each user to the same version as A', async (t) => {
  const r = await put(A, { weights: { '1': 50, '2': 50 }, sticky: { by: 'header', name: 'x-user-id' } });
  const answered = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  const vb = await (async () => {
    for (;;) {
      const v = await view(B);
      if (v.sticky !== null || performance.now() - answered > 5_000) return v;
      await sleep(20);
    }
  })();
  t.same(vb.sticky, { by: 'header', name: 'x-user-id' }, 'B shows the sticky setting');
  t.same(vb.weights, { '1': 50, '2': 50 });
  await sleep(Math.max(0, answered + 1500 - performance.now()));
  const ids = Array.from({ length: 300 }, (_, i) => `redis-user-${i}`);
  const onA = await pool(ids.length, 10, (i) => aliasVersion(A, { 'x-user-id': ids[i]! }));
  const onB = await pool(ids.length, 10, (i) => aliasVersion(B, { 'x-user-id': ids[i]! }));
  t.ok(onA.every((v) => v === '1' || v === '2'), `A answered every user: ${JSON.stringify(counts(onA))}`);
  t.same(onB, onA, 'each of 300 users gets the same version on B as on A');
  const c = counts(onA);
  t.ok((c['1'] ?? 0) >= 100 && (c['2'] ?? 0) >= 100, `users are spread over both versions at 50/50: ${JSON.stringify(c)}`);
});

t.test('both instances show the same weights and the same events', async (t) => {
  const [va, vb] = await Promise.all([view(A), view(B)]);
  t.same(shared(vb), shared(va), 'the same view on A and B');
  let ea: TrafficEvent[] = [];
  let eb: TrafficEvent[] = [];
  const deadline = Date.now() + 3_000;
  do {
    [ea, eb] = await Promise.all([events(A), events(B)]);
    if (JSON.stringify(ea) === JSON.stringify(eb)) break;
    await sleep(50);
  } while (Date.now() < deadline);
  t.same(eb, ea, 'the same event list on A and B');
  t.same(ea.slice(eventsBefore).map((e) => [e.who, e.action]), [['api', 'traffic'], ['api', 'promote'], ['api', 'traffic']], 'one event per change, whichever instance took it');
});

t.test('an instance started later comes up with the shared traffic and events', async (t) => {
  const C = await start('C', { from: 18250, to: 18259 });
  const [va, vc] = await Promise.all([view(A), view(C)]);
  t.same(shared(vc), shared(va), 'C shows the shared traffic, not its config\'s 80/20');
  t.equal(vc.source, 'api');
  t.same(await events(C), await events(A), 'and the same events');
  const ids = Array.from({ length: 100 }, (_, i) => `redis-user-${i}`);
  const onA = await pool(ids.length, 10, (i) => aliasVersion(A, { 'x-user-id': ids[i]! }));
  const onC = await pool(ids.length, 10, (i) => aliasVersion(C, { 'x-user-id': ids[i]! }));
  t.same(onC, onA, 'sticky users get the same version on C');

  // A rollback through the newcomer reaches the others.
  const r = await C.admin.post<ModelView>('/v1/models/r/rollback');
  const answered = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.same(nonZero(r.body.weights), { '1': 100 }, 'rollback to the stable version 1');
  const [fa, fb] = await Promise.all([follows(A, { '1': 100 }, '1', answered), follows(B, { '1': 100 }, '1', answered)]);
  t.ok(fa.ms < 1500 && fb.ms < 1500, `A and B followed C's rollback in ${Math.round(fa.ms)} and ${Math.round(fb.ms)} ms`);
});

t.test('stopping the gateways stops every model server they started', async (t: Test) => {
  await instances.stopAll(t);
});
