// The traffic API of one instance: GET /v1/models[/{model}] says how each model's alias
// splits its requests; PUT .../traffic sets the weights (and stickiness), promote and
// rollback move everything to one version, and every change is an event. The data plane
// follows within about a second on every worker, names the version it chose in
// x-sluice-version, keeps sticky users where they are when weights move (rendezvous
// hashing), drops undeployed versions and falls back rather than refusing, switches a
// blue-green pair under load without a failed request, and the traffic set through the
// API survives a restart until the config's own traffic entry for the model changes.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { adminClient, assertNoServersLeft, PidLog, reapServers, type AdminClient, type AdminReply } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { pool } from '../helpers/policy.js';
import { modelEvents, modelView, type ModelView, type TrafficEvent } from '../helpers/traffic.js';
import {
  replicaPorts, sleep, spawnCli, startGateway, waitDeploymentsReady, waitForLine, type Gateway,
} from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 18200-18229 belong to this file: the main gateway 18200-18219, the
// restarted one (persistence) 18220-18229.
const RANGE = { from: 18200, to: 18229 };
const MAIN_PORTS = { from: 18200, to: 18219 };
const PERSIST_PORTS = { from: 18220, to: 18229 };
const pids = new PidLog();
const gateways = new Set<Gateway>();

t.teardown(async () => {
  await Promise.all([...gateways].map((g) => g.stop()));
  await reapServers(pids.pids, RANGE);
});

// ---------------------------------------------------------------------------------------
// Shapes and small helpers

interface AliasReply {
  status: number;
  complete: boolean;
  /** The x-sluice-version header, or undefined without one. */
  version: string | undefined;
  /** The replica port that answered (the echo's Host header), or null. */
  port: number | null;
  startedAt: number;
  body: string;
}

const KEYS = Array.from({ length: 16 }, (_, i) => ({ name: `key-${String(i).padStart(2, '0')}`, key: `sk-traffic-${i}-0123456789abcdef-${i * 7919}` }));

async function aliasRequest(base: string, path: string, headers: Record<string, string> = {}): Promise<AliasReply> {
  const startedAt = performance.now();
  let r: Reply;
  try {
    r = await httpRequest(`${base}${path}`, { headers, timeoutMs: 10_000 });
  } catch (err) {
    return { status: -1, complete: false, version: undefined, port: null, startedAt, body: String(err) };
  }
  const v = r.headers['x-sluice-version'];
  let port: number | null = null;
  try {
    port = Number(String((JSON.parse(r.body) as { headers: { host: string } }).headers.host).split(':')[1]);
  } catch {
    port = null;
  }
  return { status: r.status, complete: r.complete, version: Array.isArray(v) ? v.join(',') : v, port, startedAt, body: r.body };
}

const echo = (gw: Gateway, model: string, headers: Record<string, string> = {}): Promise<AliasReply> => aliasRequest(gw.url, `/${model}/_sim/echo`, headers);

function countVersions(replies: AliasReply[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of replies) {
    const k = r.status === 200 ? String(r.version) : `status ${r.status}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Drops the zero entries of a share map ({"1":0,"2":1} and {"2":1} say the same). */
function nonZero(m: Record<string, number> | null | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== 0) out[k] = v;
  return out;
}

/** The effective shares equal `want` (zero entries ignored), to 1e-9. */
function sameShares(t: Test, got: Record<string, number> | null | undefined, want: Record<string, number>, what: string): void {
  const g = nonZero(got);
  const ok = Object.keys(g).sort().join() === Object.keys(want).sort().join() && Object.entries(want).every(([k, v]) => Math.abs((g[k] ?? NaN) - v) < 1e-9);
  t.ok(ok, `${what}: effective ${JSON.stringify(got)} is ${JSON.stringify(want)}`);
  const sum = Object.values(g).reduce((a, b) => a + b, 0);
  if (Object.keys(want).length > 0) t.ok(Math.abs(sum - 1) < 1e-9, `${what}: effective shares sum to 1 (${sum})`);
}

/** Weights equal `want`, zero entries ignored. */
function sameWeights(t: Test, got: Record<string, number> | null | undefined, want: Record<string, number>, what: string): void {
  t.same(nonZero(got), want, `${what}: weights ${JSON.stringify(got)}`);
  t.not(got, null, `${what}: weights are set`);
}

const view = (admin: AdminClient, model: string): Promise<ModelView> => modelView(admin, model);
const events = (admin: AdminClient, model: string): Promise<TrafficEvent[]> => modelEvents(admin, model);

/** The model's view once `pred` holds (or the last one seen after `timeoutMs`, for the assertions to show). */
async function viewWhen(admin: AdminClient, model: string, pred: (v: ModelView) => boolean, timeoutMs = 5_000): Promise<ModelView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(admin, model);
    if (pred(v) || Date.now() > deadline) return v;
    await sleep(25);
  }
}

/** The model's events from index `from` on, once `pred` holds for them (or after `timeoutMs`). */
async function eventsWhen(admin: AdminClient, model: string, from: number, pred: (e: TrafficEvent[]) => boolean, timeoutMs = 3_000): Promise<TrafficEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const e = (await events(admin, model)).slice(from);
    if (pred(e) || Date.now() > deadline) return e;
    await sleep(25);
  }
}

const put = (admin: AdminClient, model: string, body: unknown): Promise<AdminReply<ModelView>> => admin.request<ModelView>('PUT', `/v1/models/${model}/traffic`, body);

/** A 4xx JSON error with `code` (and `field`), its request id the x-request-id header. */
function isError(t: Test, r: AdminReply, status: number, code: string, field: string | undefined, what: string): void {
  t.equal(r.status, status, `${what}: ${status} (${r.text.slice(0, 200)})`);
  t.equal(r.body?.error?.code, code, `${what}: ${code}`);
  if (field !== undefined) t.equal(r.body?.error?.field, field, `${what}: field ${field}`);
  t.equal(typeof r.body?.error?.message, 'string', `${what}: a message`);
  t.equal(r.body?.error?.request_id, r.headers.get('x-request-id'), `${what}: request_id is the x-request-id header`);
}

/**
 * Polls the alias until a batch of 20 requests on fresh connections (spread over the
 * workers by the kernel) all say `version`, then checks 60 more; returns the ms since
 * `since` at which the first full batch started, or throws after `timeoutMs`.
 */
async function follows(gw: Gateway, model: string, version: string, since: number, timeoutMs = 5_000, headers: Record<string, string> = {}): Promise<{ ms: number; confirm: Record<string, number> }> {
  for (;;) {
    const start = performance.now();
    const batch = await pool(20, 5, () => echo(gw, model, headers));
    if (batch.every((r) => r.status === 200 && r.version === version)) {
      const more = await pool(60, 6, () => echo(gw, model, headers));
      return { ms: start - since, confirm: countVersions(more) };
    }
    if (performance.now() - since > timeoutMs) throw new Error(`${model}: the alias did not follow version ${version} within ${timeoutMs} ms: last batch ${JSON.stringify(countVersions(batch))}`);
    await sleep(20);
  }
}

/** Sleeps until `ms` have passed since `since` (performance.now()). */
async function until(since: number, ms: number): Promise<void> {
  const left = since + ms - performance.now();
  if (left > 0) await sleep(left);
}

// ---------------------------------------------------------------------------------------
// The main gateway: two workers, config deployments, config traffic for some models

let gw: Gateway;
let admin: AdminClient;
const testStart = Date.now();

t.before(async () => {
  gw = await startGateway({
    ports: MAIN_PORTS,
    workers: 2,
    log: { level: 'info', access: false },
    api_keys: KEYS.map((k) => ({ name: k.name, key: k.key, deployments: ['*'] })),
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim' },
      { model: 'demo', version: '2', runtime: 'sim' },
      { model: 'solo', version: '1', runtime: 'sim' },
      // Declared out of version order on purpose: the newest (last declared) is u-2.
      { model: 'u', version: '1', runtime: 'sim' },
      { model: 'u', version: '3', runtime: 'sim' },
      { model: 'u', version: '2', runtime: 'sim' },
      { model: 'st', version: '1', runtime: 'sim' },
      { model: 'st', version: '2', runtime: 'sim' },
      { model: 'ak', version: '1', runtime: 'sim' },
      { model: 'ak', version: '2', runtime: 'sim' },
    ],
    traffic: { demo: { '1': 90, '2': 10 }, st: { '1': 90, '2': 10 }, ak: { '1': 50, '2': 50 } },
  });
  gateways.add(gw);
  admin = adminClient(gw.adminUrl);
  pids.note(await admin.list());
});

t.test('GET /v1/models and /v1/models/{model}: views of the config traffic, sorted, 404 for no such model', async (t) => {
  const list = await admin.get<{ models: ModelView[] }>('/v1/models');
  t.equal(list.status, 200, list.text.slice(0, 300));
  const names = list.body.models.map((m) => m.model);
  t.same(names, ['ak', 'demo', 'solo', 'st', 'u'], 'every configured model, sorted by name');
  for (const m of list.body.models) t.same((await admin.get(`/v1/models/${m.model}`)).body, m, `GET /v1/models/${m.model} is the list's entry`);

  const demo = await view(admin, 'demo');
  t.equal(demo.model, 'demo');
  t.same(demo.versions.map((v) => [v.version, v.deployment, v.state, v.ready_replicas, v.weight]), [['1', 'demo-1', 'ready', 1, 90], ['2', 'demo-2', 'ready', 1, 10]], 'versions, oldest first, with their weights');
  t.ok(Math.abs(demo.versions[0]!.share - 0.9) < 1e-9 && Math.abs(demo.versions[1]!.share - 0.1) < 1e-9, `shares 0.9 and 0.1 (${demo.versions.map((v) => v.share)})`);
  t.same(demo.weights, { '1': 90, '2': 10 }, 'the config weights');
  sameShares(t, demo.effective, { '1': 0.9, '2': 0.1 }, 'demo');
  t.equal(demo.stable, '1', 'stable: the heaviest version of the config traffic');
  t.equal(demo.sticky, null);
  t.equal(demo.source, 'config');
  t.equal(demo.fallback, null);
  t.equal(demo.rollout, null);

  const u = await view(admin, 'u');
  t.same(u.versions.map((v) => v.version), ['1', '3', '2'], 'versions in declaration order (oldest first), not sorted by number');
  t.equal(u.weights, null, 'no weights ever set: null');
  t.equal(u.source, 'default');
  t.equal(u.stable, null, 'no stable version without traffic');
  sameShares(t, u.effective, { '2': 1 }, 'u: the newest (last declared) version takes all');
  t.ok(Math.abs(u.versions.find((v) => v.version === '2')!.share - 1) < 1e-9, 'and its share is 1');

  const solo = await view(admin, 'solo');
  t.same(solo.versions.map((v) => [v.version, v.deployment, v.state, v.ready_replicas]), [['1', 'solo-1', 'ready', 1]]);
  sameShares(t, solo.effective, { '1': 1 }, 'solo');
  t.equal(solo.source, 'default');

  // The data plane agrees with the view of u.
  const [u2] = (await replicaPorts(gw, 'u-2')) as [number];
  const replies = await pool(30, 5, () => echo(gw, 'u'));
  t.same(countVersions(replies), { '2': 30 }, 'all 30 alias requests of u say x-sluice-version: 2');
  t.ok(replies.every((r) => r.port === u2), 'and were answered by u-2');

  for (const path of ['/v1/models/nope', '/v1/models/demo-1', '/v1/models/nope/events']) {
    isError(t, await admin.get(path), 404, 'SLUICE_ERR_NOT_FOUND', undefined, `GET ${path}`);
  }
});

t.test('the alias splits by the config weights (90/10) and names the version that answered', async (t) => {
  const [p1] = (await replicaPorts(gw, 'demo-1')) as [number];
  const [p2] = (await replicaPorts(gw, 'demo-2')) as [number];
  const N = 500;
  const replies = await pool(N, 10, () => echo(gw, 'demo'));
  const counts = countVersions(replies);
  t.equal((counts['1'] ?? 0) + (counts['2'] ?? 0), N, `every request answered by version 1 or 2 with its header: ${JSON.stringify(counts)}`);
  const wrong = replies.filter((r) => r.port !== (r.version === '1' ? p1 : r.version === '2' ? p2 : -1));
  t.equal(wrong.length, 0, 'x-sluice-version names the version whose replica answered');
  // v2 ~ Binomial(500, 0.1): mean 50, sd 6.7; +-30 is 4.5 sd.
  const v2 = counts['2'] ?? 0;
  t.ok(v2 >= 20 && v2 <= 80, `version 2 got ${v2} of ${N} (expected 50 +- 30)`);
  // Pinned routes reach their version.
  t.equal((await aliasRequest(gw.url, '/demo-1/_sim/echo')).port, p1, '/demo-1/ reaches demo-1');
  t.equal((await aliasRequest(gw.url, '/demo-2/_sim/echo')).port, p2, '/demo-2/ reaches demo-2');
});

let demoEventsBefore = 0;

t.test('PUT traffic: every worker follows within ~1 s; the split follows the new weights', async (t) => {
  demoEventsBefore = (await events(admin, 'demo')).length;
  const sent = performance.now();
  const r = await put(admin, 'demo', { weights: { '1': 0, '2': 100 } });
  const answered = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  sameWeights(t, r.body.weights, { '2': 100 }, 'PUT reply');
  sameShares(t, r.body.effective, { '2': 1 }, 'PUT reply');
  t.equal(r.body.source, 'api', 'source: api');
  t.equal(r.body.stable, '1', 'the config\'s stable version stays');
  t.equal(r.body.sticky, null, 'no sticky given: null');
  t.same(await view(admin, 'demo'), r.body, 'GET shows what PUT answered');

  const f = await follows(gw, 'demo', '2', answered);
  t.ok(f.ms < 1500, `both workers route to version 2 ${Math.round(f.ms)} ms after the PUT answered (took ${Math.round(answered - sent)} ms itself)`);
  t.same(f.confirm, { '2': 60 }, 'and keep doing so');

  const r2 = await put(admin, 'demo', { weights: { '1': 30, '2': 70 } });
  const answered2 = performance.now();
  t.equal(r2.status, 200);
  t.same(r2.body.weights, { '1': 30, '2': 70 });
  sameShares(t, r2.body.effective, { '1': 0.3, '2': 0.7 }, '30/70');
  t.same(r2.body.versions.map((v) => v.weight), [30, 70], 'version weights');
  await until(answered2, 1500);
  const N = 500;
  const counts = countVersions(await pool(N, 10, () => echo(gw, 'demo')));
  const v2 = counts['2'] ?? 0;
  t.equal((counts['1'] ?? 0) + v2, N, JSON.stringify(counts));
  // Binomial(500, 0.7): mean 350, sd 10.2; +-46 is 4.5 sd. The old 0/100 or 90/10 fails.
  t.ok(v2 >= 304 && v2 <= 396, `version 2 got ${v2} of ${N} (expected 350 +- 46)`);
});

t.test('bad traffic requests: 400 naming the field, 404 for an unknown model, nothing changes', async (t) => {
  const before = await view(admin, 'demo');
  const evBefore = (await events(admin, 'demo')).length;
  const cases: Array<[string, string, string]> = [
    ['no weights', '{}', 'weights'],
    ['weights null', '{"weights": null}', 'weights'],
    ['weights a number', '{"weights": 5}', 'weights'],
    ['weights a string', '{"weights": "1:90"}', 'weights'],
    ['weights an array', '{"weights": [90, 10]}', 'weights'],
    ['a negative weight', '{"weights": {"1": -1, "2": 10}}', 'weights.1'],
    ['a weight given as a string', '{"weights": {"1": 50, "2": "50"}}', 'weights.2'],
    ['a null weight', '{"weights": {"1": null, "2": 10}}', 'weights.1'],
    ['an infinite weight (1e999)', '{"weights": {"1": 1e999, "2": 10}}', 'weights.1'],
    ['an object as weight', '{"weights": {"1": {"w": 1}}}', 'weights.1'],
    ['all weights 0', '{"weights": {"1": 0, "2": 0}}', 'weights'],
    ['empty weights', '{"weights": {}}', 'weights'],
    ['a version without a deployment', '{"weights": {"1": 50, "9": 50}}', 'weights.9'],
    ['a sticky that is a string', '{"weights": {"1": 50, "2": 50}, "sticky": "x-user-id"}', 'sticky'],
  ];
  for (const [what, body, field] of cases) {
    isError(t, await admin.request('PUT', '/v1/models/demo/traffic', body), 400, 'SLUICE_ERR_INVALID_FIELD', field, what);
  }
  // A sticky of an unknown kind, or a header sticky without a usable name: the field named
  // is the sticky or the part of it that is wrong.
  for (const [what, body, fields] of [
    ['an unknown sticky kind', '{"weights": {"1": 50, "2": 50}, "sticky": {"by": "cookie", "name": "sid"}}', ['sticky', 'sticky.by']],
    ['a sticky without a kind', '{"weights": {"1": 50, "2": 50}, "sticky": {"name": "x-user-id"}}', ['sticky', 'sticky.by']],
    ['a header sticky without a name', '{"weights": {"1": 50, "2": 50}, "sticky": {"by": "header"}}', ['sticky', 'sticky.name']],
    ['a header sticky with an empty name', '{"weights": {"1": 50, "2": 50}, "sticky": {"by": "header", "name": ""}}', ['sticky', 'sticky.name']],
    ['a header sticky with a name that is no header name', '{"weights": {"1": 50, "2": 50}, "sticky": {"by": "header", "name": "x user:id"}}', ['sticky', 'sticky.name']],
  ] as const) {
    const r = await admin.request('PUT', '/v1/models/demo/traffic', body);
    t.equal(r.status, 400, `${what}: 400 (${r.text.slice(0, 200)})`);
    t.equal(r.body?.error?.code, 'SLUICE_ERR_INVALID_FIELD', `${what}: code`);
    t.ok((fields as readonly string[]).includes(r.body?.error?.field), `${what}: field ${fields.join(' or ')} (${r.body?.error?.field})`);
  }
  const notJson = await admin.request('PUT', '/v1/models/demo/traffic', '{"weights": {"1": 5');
  t.equal(notJson.status, 400, 'malformed JSON: 400');
  isError(t, await put(admin, 'nope', { weights: { '1': 100 } }), 404, 'SLUICE_ERR_NOT_FOUND', undefined, 'PUT on an unknown model');

  t.same(await view(admin, 'demo'), before, 'the view is unchanged after every bad request');
  t.equal((await events(admin, 'demo')).length, evBefore, 'and no event was recorded');
  t.same(before.weights, { '1': 30, '2': 70 }, 'still the weights of the last good PUT');
});

t.test('promote and rollback', async (t) => {
  // demo: weights 30/70 through the API, stable 1 from the config.
  const rb = await admin.post<ModelView>('/v1/models/demo/rollback');
  const rbAt = performance.now();
  t.equal(rb.status, 200, rb.text.slice(0, 300));
  sameWeights(t, rb.body.weights, { '1': 100 }, 'rollback to the stable version');
  t.equal(rb.body.stable, '1');
  sameShares(t, rb.body.effective, { '1': 1 }, 'after rollback');
  const f1 = await follows(gw, 'demo', '1', rbAt);
  t.ok(f1.ms < 1500, `the alias follows the rollback in ${Math.round(f1.ms)} ms`);

  const before = await view(admin, 'demo');
  isError(t, await admin.post('/v1/models/demo/promote', { version: '9' }), 400, 'SLUICE_ERR_INVALID_FIELD', 'version', 'promote of a version without a deployment');
  isError(t, await admin.post('/v1/models/demo/promote', {}), 400, 'SLUICE_ERR_INVALID_FIELD', 'version', 'promote without a version');
  isError(t, await admin.post('/v1/models/nope/promote', { version: '1' }), 404, 'SLUICE_ERR_NOT_FOUND', undefined, 'promote on an unknown model');
  isError(t, await admin.post('/v1/models/nope/rollback'), 404, 'SLUICE_ERR_NOT_FOUND', undefined, 'rollback on an unknown model');
  // Rollback returns to the stable version, whatever the body says: one that names a version is refused, not obeyed as another.
  isError(t, await admin.post('/v1/models/demo/rollback', { version: '2' }), 400, 'SLUICE_ERR_INVALID_FIELD', 'version', 'rollback with a version');
  t.same(await view(admin, 'demo'), before, 'bad promotes and rollbacks change nothing');

  const pr = await admin.post<ModelView>('/v1/models/demo/promote', { version: '2' });
  const prAt = performance.now();
  t.equal(pr.status, 200, pr.text.slice(0, 300));
  sameWeights(t, pr.body.weights, { '2': 100 }, 'promote 2');
  t.equal(pr.body.stable, '2', 'promote makes the version stable');
  t.equal(pr.body.source, 'api');
  const f2 = await follows(gw, 'demo', '2', prAt);
  t.ok(f2.ms < 1500, `the alias follows the promotion in ${Math.round(f2.ms)} ms`);

  const split = await put(admin, 'demo', { weights: { '1': 50, '2': 50 } });
  t.equal(split.body.stable, '2', 'a PUT leaves the promoted stable version alone');
  const rb2 = await admin.post<ModelView>('/v1/models/demo/rollback');
  t.equal(rb2.status, 200);
  sameWeights(t, rb2.body.weights, { '2': 100 }, 'rollback now goes to the promoted version');

  // A model without a stable version: nothing to roll back to.
  const soloBefore = await view(admin, 'solo');
  isError(t, await admin.post('/v1/models/solo/rollback'), 409, 'SLUICE_ERR_CONFLICT', undefined, 'rollback without a stable version');
  t.same(await view(admin, 'solo'), soloBefore, 'and nothing changed');

  // u: no stable version; the first PUT makes the version with the largest share (the
  // newest, u-2) stable, whatever the new weights say.
  const uPut = await put(admin, 'u', { weights: { '1': 50, '3': 50 } });
  t.equal(uPut.status, 200);
  t.equal(uPut.body.stable, '2', 'the version that took all the traffic before the first PUT becomes stable');
  t.equal(uPut.body.source, 'api');
  const uRb = await admin.post<ModelView>('/v1/models/u/rollback');
  sameWeights(t, uRb.body.weights, { '2': 100 }, 'u rolls back to it');
  const f3 = await follows(gw, 'u', '2', performance.now());
  t.ok(f3.ms < 1500, 'and the alias follows');

  // Every change is an event, oldest first.
  const ev = await events(admin, 'demo');
  const mine = ev.slice(demoEventsBefore);
  t.same(mine.map((e) => [e.who, e.action]), [
    ['api', 'traffic'], ['api', 'traffic'], ['api', 'rollback'], ['api', 'promote'], ['api', 'traffic'], ['api', 'rollback'],
  ], 'one event per change, in order: PUT, PUT, rollback, promote, PUT, rollback');
  for (const e of mine) {
    t.match(e.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/, `event time ${e.at} is ISO 8601`);
    t.ok(Date.parse(e.at) >= testStart - 1000 && Date.parse(e.at) <= Date.now() + 1000, 'and recent');
    t.equal(typeof e.why, 'string');
    t.ok(e.to === null || typeof e.to === 'object', 'to: an object or null');
    t.ok(e.from === null || typeof e.from === 'object', 'from: an object or null');
  }
  t.ok(ev.every((e, i) => i === 0 || Date.parse(e.at) >= Date.parse(ev[i - 1]!.at)), 'events are oldest first');
  t.not(mine[3]!.to, null, 'the promote event says what it changed to');
  t.match(JSON.stringify(mine[3]!.to), /"2"\s*:\s*100/, 'the promote event\'s `to` holds the new weights');
  t.match(JSON.stringify(mine[2]!.from), /"1"\s*:\s*30/, 'the first rollback\'s `from` holds the weights before it');
  const uEv = await events(admin, 'u');
  t.same(uEv.slice(-2).map((e) => e.action), ['traffic', 'rollback'], 'events are per model');
  t.equal((await admin.get('/v1/models/u/events')).body.model, 'u');
});

t.test('sticky by header: same user, same version; a weight change moves only the users it must', async (t) => {
  const r = await put(admin, 'st', { weights: { '1': 90, '2': 10 }, sticky: { by: 'header', name: 'x-user-id' } });
  const at = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.same(r.body.sticky, { by: 'header', name: 'x-user-id' });
  t.same(r.body.weights, { '1': 90, '2': 10 });
  await until(at, 1500);

  const IDS = 4000;
  const ids = Array.from({ length: IDS }, (_, i) => `user-${i}-${(i * 2654435761) % 1000003}`);
  const versionsOf = async (list: string[]): Promise<string[]> => (await pool(list.length, 20, (i) => echo(gw, 'st', { 'x-user-id': list[i]! }))).map((x) => (x.status === 200 ? String(x.version) : `status ${x.status}`));
  const before = await versionsOf(ids);
  const again = await versionsOf(ids.slice(0, 1000));
  t.same(again, before.slice(0, 1000), 'the same 1000 users get the same versions a second time (over both workers)');
  const v2Before = before.filter((v) => v === '2').length;
  t.equal(before.filter((v) => v === '1').length + v2Before, IDS, 'every user got version 1 or 2');
  // A fair hash gives version 2 ~ Binomial(4000, 0.1): 400, sd 19; +-85 is 4.5 sd.
  t.ok(v2Before >= 315 && v2Before <= 485, `version 2 holds ${v2Before} of ${IDS} users at 90/10 (expected 400 +- 85)`);

  const noHeader = countVersions(await pool(300, 10, () => echo(gw, 'st')));
  const nh2 = noHeader['2'] ?? 0;
  t.equal((noHeader['1'] ?? 0) + nh2, 300, JSON.stringify(noHeader));
  // Binomial(300, 0.1): 30, sd 5.2.
  t.ok(nh2 >= 7 && nh2 <= 53, `requests without x-user-id are split by weight: version 2 got ${nh2} of 300 (expected 30 +- 23)`);

  const r2 = await put(admin, 'st', { weights: { '1': 70, '2': 30 }, sticky: { by: 'header', name: 'x-user-id' } });
  const at2 = performance.now();
  t.equal(r2.status, 200);
  await until(at2, 1500);
  const after = await versionsOf(ids);
  const after2 = await versionsOf(ids.slice(0, 1000));
  t.same(after2, after.slice(0, 1000), 'sticky again at the new weights');
  const v2After = after.filter((v) => v === '2').length;
  t.ok(v2After >= 1070 && v2After <= 1330, `version 2 holds ${v2After} of ${IDS} users at 70/30 (expected 1200 +- 130)`);
  let moved = 0;
  let back = 0;
  for (let i = 0; i < IDS; i++) {
    if (before[i] !== after[i]) moved++;
    if (before[i] === '2' && after[i] === '1') back++;
  }
  const frac = moved / IDS;
  t.ok(frac <= 0.22, `${moved} of ${IDS} users (${(100 * frac).toFixed(1)}%) changed version from 90/10 to 70/30: at most 22% (the 20% that must move, + 2%)`);
  t.ok(frac >= 0.15, `and at least 15% moved (${(100 * frac).toFixed(1)}%): the new weights apply to sticky users too`);
  t.ok(back <= IDS / 100, `users of version 2 stay there when its weight grows (${back} moved back to 1)`);
});

t.test('sticky by API key: each key sticks to one version, keys spread over both', async (t) => {
  const r = await put(admin, 'ak', { weights: { '1': 50, '2': 50 }, sticky: { by: 'api_key' } });
  const at = performance.now();
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.same(r.body.sticky, { by: 'api_key' });
  await until(at, 1500);
  const perKey: Record<string, string[]> = {};
  for (const k of KEYS) {
    const replies = await pool(8, 4, (i) => echo(gw, 'ak', i % 2 === 0 ? { authorization: `Bearer ${k.key}` } : { 'x-api-key': k.key }));
    perKey[k.name] = replies.map((x) => (x.status === 200 ? String(x.version) : `status ${x.status}`));
  }
  for (const [name, vs] of Object.entries(perKey)) t.equal(new Set(vs).size, 1, `key ${name}: one version for all 8 requests, by either header (${vs.join(',')})`);
  const chosen = new Set(Object.values(perKey).map((vs) => vs[0]));
  t.same([...chosen].sort(), ['1', '2'], `the 16 keys are spread over both versions: ${JSON.stringify(perKey)}`);
  const anon = countVersions(await pool(60, 6, () => echo(gw, 'ak')));
  t.ok((anon['1'] ?? 0) > 0 && (anon['2'] ?? 0) > 0 && (anon['1'] ?? 0) + (anon['2'] ?? 0) === 60, `requests without a key are split at random: ${JSON.stringify(anon)}`);
});

t.test('undeploying weighted versions removes them; the alias falls back to stable, then any ready version, never a 503', async (t) => {
  for (const v of ['1', '2', '3', '4', '5']) {
    const d = await admin.post('/v1/deployments?wait=true', { model: 'ud', version: v, runtime: 'sim' });
    pids.note(d.body);
    t.equal(d.status, 201, `ud-${v} deployed: ${d.text.slice(0, 200)}`);
  }
  const v0 = await view(admin, 'ud');
  t.same(v0.versions.map((v) => v.version), ['1', '2', '3', '4', '5'], 'versions in deployment order');
  t.equal(v0.source, 'default');
  sameShares(t, v0.effective, { '5': 1 }, 'the newest deployed version takes all');

  const p = await put(admin, 'ud', { weights: { '3': 50, '4': 50 } });
  t.equal(p.status, 200);
  t.equal(p.body.stable, '5', 'the version that had all the traffic becomes stable');
  await until(performance.now(), 1500);

  // A steady client on the alias while versions go.
  const replies: AliasReply[] = [];
  let running = true;
  const load = Promise.all(Array.from({ length: 3 }, async () => {
    while (running) replies.push(await echo(gw, 'ud'));
  }));
  try {
    const evCount = (await events(admin, 'ud')).length;
    t.equal((await admin.del('/v1/deployments/ud-3')).status, 200, 'DELETE ud-3');
    const a = await viewWhen(admin, 'ud', (v) => !v.versions.some((x) => x.version === '3') && !('3' in nonZero(v.weights)));
    t.notOk(a.versions.some((v) => v.version === '3'), 'ud-3 is gone from the versions');
    sameWeights(t, a.weights, { '4': 50 }, 'ud-3 is gone from the weights');
    sameShares(t, a.effective, { '4': 1 }, 'the rest takes its share');
    t.equal(a.fallback, null, 'no fallback while a weighted version is ready');
    const ev1 = await eventsWhen(admin, 'ud', evCount, (e) => e.some((x) => x.action === 'version_removed'));
    t.ok(ev1.some((e) => e.action === 'version_removed'), `a version_removed event: ${JSON.stringify(ev1)}`);
    const f4 = await follows(gw, 'ud', '4', performance.now());
    t.same(f4.confirm, { '4': 60 }, 'the alias routes to ud-4 only');

    t.equal((await admin.del('/v1/deployments/ud-4')).status, 200, 'DELETE ud-4: no weighted version left');
    const b = await viewWhen(admin, 'ud', (v) => !v.versions.some((x) => x.version === '4') && v.fallback !== null);
    t.equal(b.fallback, 'stable', 'the alias falls back to the stable version');
    t.equal(b.stable, '5');
    sameShares(t, b.effective, { '5': 1 }, 'fallback to stable');
    t.notOk(Object.keys(nonZero(b.weights)).some((k) => k === '4' || k === '3'), `no removed version keeps a weight: ${JSON.stringify(b.weights)}`);
    const ev2 = await eventsWhen(admin, 'ud', evCount + ev1.length, (e) => e.some((x) => x.action === 'fallback'));
    t.ok(ev2.some((e) => e.action === 'fallback' && e.who === 'gateway'), `a fallback event by the gateway: ${JSON.stringify(ev2)}`);
    const f5 = await follows(gw, 'ud', '5', performance.now());
    t.same(f5.confirm, { '5': 60 }, 'the alias routes to the stable ud-5');

    t.equal((await admin.del('/v1/deployments/ud-5')).status, 200, 'DELETE ud-5: the stable version goes too');
    const c = await viewWhen(admin, 'ud', (v) => !v.versions.some((x) => x.version === '5') && v.fallback === 'any_ready');
    t.equal(c.fallback, 'any_ready', 'the alias falls back to any ready version');
    sameShares(t, c.effective, { '2': 1 }, 'the newest ready version (ud-2)');
    const ev3 = await eventsWhen(admin, 'ud', evCount + ev1.length + ev2.length, (e) => e.some((x) => x.action === 'fallback'));
    t.ok(ev3.some((e) => e.action === 'fallback' && e.who === 'gateway'), `another fallback event: ${JSON.stringify(ev3)}`);
    const f2 = await follows(gw, 'ud', '2', performance.now());
    t.same(f2.confirm, { '2': 60 }, 'the alias routes to ud-2');
  } finally {
    running = false;
    await load;
  }
  const counts = countVersions(replies);
  t.ok(replies.length > 100, `the steady client sent ${replies.length} requests`);
  t.equal(replies.filter((r) => r.status === 503).length, 0, `no 503 on the alias while a version was ready: ${JSON.stringify(counts)}`);
  // A failure names its answers (the error code says which path failed: CI once saw one 502 here).
  const failed = replies.filter((r) => r.status !== 200 || !r.complete);
  t.equal(failed.length, 0, `every alias request succeeded: ${JSON.stringify(counts)} ${JSON.stringify(failed.slice(0, 3).map((r) => `${r.status} ${r.body.slice(0, 300)}`))}`);
  t.ok(replies.every((r) => r.status !== 200 || r.version !== undefined), 'each named its version');

  isError(t, await admin.del('/v1/deployments/demo-1'), 409, 'SLUICE_ERR_CONFIG_OWNED', undefined, 'a config deployment cannot be undeployed');
  t.ok((await view(admin, 'demo')).versions.some((v) => v.deployment === 'demo-1'), 'and stays');
});

t.test('events: one per change, the newest 200 kept', async (t) => {
  const before = (await events(admin, 'solo')).length;
  const N = 210;
  for (let i = 1; i <= N; i++) {
    const r = await put(admin, 'solo', { weights: { '1': i } });
    if (r.status !== 200) {
      t.fail(`PUT ${i}: ${r.status} ${r.text.slice(0, 200)}`);
      return;
    }
  }
  const ev = await events(admin, 'solo');
  t.equal(ev.length, 200, `at most 200 events kept (${before} before, ${N} changes)`);
  t.match(JSON.stringify(ev[ev.length - 1]!.to), /"1"\s*:\s*210\b/, 'the newest is the last change');
  t.match(JSON.stringify(ev[0]!.to), new RegExp(`"1"\\s*:\\s*${N - 200 + 1}\\b`), 'the oldest kept is the 200th newest change');
  t.ok(ev.every((e) => e.who === 'api' && e.action === 'traffic'), 'all of them traffic changes through the API');
});

t.test('blue-green: v2 joins at weight 0, a promotion under load fails no request; in-flight requests keep their version', async (t) => {
  const d1 = await admin.post('/v1/deployments?wait=true', { model: 'bg', version: '1', runtime: 'sim' });
  pids.note(d1.body);
  t.equal(d1.status, 201, d1.text.slice(0, 200));
  const listed = (await admin.get<{ models: ModelView[] }>('/v1/models')).body.models.map((m) => m.model);
  t.ok(listed.includes('bg'), `GET /v1/models lists bg, deployed through the API, before any traffic is set for it: ${JSON.stringify(listed)}`);
  t.same(listed, [...listed].sort(), 'still sorted');
  const pin = await admin.post<ModelView>('/v1/models/bg/promote', { version: '1' });
  t.equal(pin.status, 200, pin.text.slice(0, 200));
  sameWeights(t, pin.body.weights, { '1': 100 }, 'pinned to v1');
  t.equal(pin.body.stable, '1');

  const d2 = await admin.post('/v1/deployments?wait=true', { model: 'bg', version: '2', runtime: 'sim' });
  pids.note(d2.body);
  t.equal(d2.status, 201, d2.text.slice(0, 200));
  const joined = await view(admin, 'bg');
  t.same(joined.versions.map((v) => [v.version, v.state]), [['1', 'ready'], ['2', 'ready']], 'both versions ready');
  t.equal(joined.versions[1]!.weight ?? 0, 0, 'v2 joined at weight 0');
  t.equal(joined.versions[1]!.share, 0, 'with share 0');
  sameWeights(t, joined.weights, { '1': 100 }, 'the weights did not change');
  sameShares(t, joined.effective, { '1': 1 }, 'all traffic on v1');
  await sleep(1200);
  t.same(countVersions(await pool(100, 10, () => echo(gw, 'bg'))), { '1': 100 }, 'the alias sends nothing to v2');

  const replies: AliasReply[] = [];
  const pending: Array<Promise<void>> = [];
  const t0 = performance.now();
  let promoteSent = 0;
  let promoteAnswered = 0;
  let promote: AdminReply<ModelView> | undefined;
  let slow: Promise<AliasReply> | undefined;
  while (performance.now() - t0 < 3000) {
    pending.push(echo(gw, 'bg').then((r) => void replies.push(r)));
    if (slow === undefined && performance.now() - t0 >= 800) {
      // Started on v1, still running when the promotion lands.
      slow = aliasRequest(gw.url, '/bg/_sim/sleep?ms=1500');
      await sleep(100);
      promoteSent = performance.now();
      void admin.post<ModelView>('/v1/models/bg/promote', { version: '2' }).then((r) => {
        promote = r;
        promoteAnswered = performance.now();
      });
    }
    await sleep(10);
  }
  await Promise.all(pending);
  const slowReply = await slow!;
  t.equal(promote?.status, 200, `promote answered ${promote?.text.slice(0, 200)}`);
  t.ok(promoteAnswered > 0 && promoteAnswered - t0 < 2000, `the promotion answered ${Math.round(promoteAnswered - promoteSent)} ms after it was sent`);
  t.ok(replies.length >= 100, `the client sent ${replies.length} requests in 3 s`);
  const failed = replies.filter((r) => r.status !== 200 || !r.complete);
  t.equal(failed.length, 0, `no failed request across the switch: ${JSON.stringify(countVersions(replies))} ${failed.slice(0, 3).map((r) => r.body.slice(0, 200)).join(' | ')}`);
  const beforeSwitch = replies.filter((r) => r.startedAt < promoteSent);
  t.same(countVersions(beforeSwitch), { '1': beforeSwitch.length }, 'before the promotion: all v1');
  const afterSwitch = replies.filter((r) => r.startedAt >= promoteAnswered + 1000);
  t.ok(afterSwitch.length >= 30, `${afterSwitch.length} requests started more than 1 s after the promotion answered`);
  t.same(countVersions(afterSwitch), { '2': afterSwitch.length }, 'after the switch: all x-sluice-version: 2');
  t.equal(slowReply.status, 200, 'the slow request in flight during the switch succeeded');
  t.ok(slowReply.complete, 'completely');
  t.equal(slowReply.version, '1', 'on the version it started with');
  const after = await view(admin, 'bg');
  sameWeights(t, after.weights, { '2': 100 }, 'bg after promote');
  t.equal(after.stable, '2');
});

// ---------------------------------------------------------------------------------------
// Persistence across restarts, and the config rule

/** `sluice serve --config file` (an existing file), waiting for its deployments. */
async function serveFile(configFile: string): Promise<Gateway> {
  const proc = spawnCli(['serve', '--config', configFile]);
  const line = await waitForLine(proc, (l) => l.includes('sluice is listening'), 60_000).catch(async (err: Error) => {
    await proc.stop('SIGKILL');
    throw err;
  });
  const info = JSON.parse(line) as { gateway: string; admin: string };
  const port = Number(new URL(info.gateway).port);
  const adminPort = Number(new URL(info.admin).port);
  const g: Gateway = { ...proc, port, adminPort, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, configFile };
  gateways.add(g);
  await waitDeploymentsReady(g);
  pids.note(await adminClient(g.adminUrl).list());
  return g;
}

async function stopGateway(g: Gateway): Promise<number | null> {
  const code = await g.stop();
  gateways.delete(g);
  return code;
}

t.test('traffic set through the API survives a restart; a changed config traffic entry wins again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-traffic-'));
  const configFile = join(dir, 'config.json');
  const config = (traffic: Record<string, Record<string, number>>): string => JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    workers: 2,
    state_dir: join(dir, 'state'),
    ports: PERSIST_PORTS,
    log: { level: 'info', access: false },
    shutdown: { drain_delay_ms: 0 },
    deployments: [
      { model: 'p', version: '1', runtime: 'sim' },
      { model: 'p', version: '2', runtime: 'sim' },
      { model: 'q', version: '1', runtime: 'sim' },
      { model: 'q', version: '2', runtime: 'sim' },
    ],
    traffic,
  }, null, 2);
  writeFileSync(configFile, config({ p: { '1': 100 }, q: { '1': 100 } }));

  const g1 = await serveFile(configFile);
  const a1 = adminClient(g1.adminUrl);
  t.equal((await view(a1, 'p')).source, 'config');
  t.equal((await put(a1, 'p', { weights: { '1': 20, '2': 80 } })).status, 200);
  t.equal((await put(a1, 'q', { weights: { '1': 40, '2': 60 }, sticky: { by: 'header', name: 'x-user-id' } })).status, 200);
  const qAt = performance.now();
  const pBefore = await view(a1, 'p');
  const qBefore = await view(a1, 'q');
  const users = Array.from({ length: 200 }, (_, i) => `restart-user-${i}`);
  const usersOf = async (g: Gateway): Promise<string[]> => (await pool(users.length, 10, (i) => echo(g, 'q', { 'x-user-id': users[i]! }))).map((x) => (x.status === 200 ? String(x.version) : `status ${x.status}`));
  await until(qAt, 1500);
  const qUsers1 = await usersOf(g1);
  t.same([...new Set(qUsers1)].sort(), ['1', '2'], 'q: sticky users on both versions');
  t.equal(await stopGateway(g1), 0, 'a clean stop');

  // The same config file, unchanged: the API's traffic stays.
  const g2 = await serveFile(configFile);
  const a2 = adminClient(g2.adminUrl);
  const p2 = await view(a2, 'p');
  t.equal(p2.source, 'api', 'p: source api after the restart');
  t.same(p2.weights, { '1': 20, '2': 80 }, 'p: the API weights came back');
  t.equal(p2.stable, pBefore.stable, 'p: the stable version too');
  const q2 = await view(a2, 'q');
  t.same([q2.source, q2.weights, q2.sticky], ['api', { '1': 40, '2': 60 }, { by: 'header', name: 'x-user-id' }], 'q: weights and sticky came back');
  t.equal(q2.stable, qBefore.stable);
  t.same(await usersOf(g2), qUsers1, 'q: each of 200 sticky users gets the same version as before the restart');
  const N = 500;
  const counts = countVersions(await pool(N, 10, () => echo(g2, 'p')));
  const p2v2 = counts['2'] ?? 0;
  t.equal((counts['1'] ?? 0) + p2v2, N, JSON.stringify(counts));
  // Binomial(500, 0.8): 400, sd 8.9; +-40. The config's 100/0 would give 0.
  t.ok(p2v2 >= 360 && p2v2 <= 440, `the restarted alias follows 20/80: version 2 got ${p2v2} of ${N} (expected 400 +- 40)`);
  t.equal(await stopGateway(g2), 0);

  // The config's traffic for p changes (q's does not): p follows the config again.
  writeFileSync(configFile, config({ p: { '1': 60, '2': 40 }, q: { '1': 100 } }));
  const g3 = await serveFile(configFile);
  const a3 = adminClient(g3.adminUrl);
  const p3 = await view(a3, 'p');
  t.equal(p3.source, 'config', 'p: source config once its config traffic changed');
  t.same(p3.weights, { '1': 60, '2': 40 }, 'p: the new config weights apply');
  const pEv = await events(a3, 'p');
  t.ok(pEv.some((e) => e.who === 'config'), `p: an event by the config: ${JSON.stringify(pEv.slice(-3))}`);
  t.equal(pEv[pEv.length - 1]?.who, 'config', 'p: the newest event is the config\'s');
  const q3 = await view(a3, 'q');
  t.same([q3.source, q3.weights, q3.sticky], ['api', { '1': 40, '2': 60 }, { by: 'header', name: 'x-user-id' }], 'q: its config traffic did not change, the API traffic stays');
  const counts3 = countVersions(await pool(N, 10, () => echo(g3, 'p')));
  const p3v2 = counts3['2'] ?? 0;
  t.equal((counts3['1'] ?? 0) + p3v2, N, JSON.stringify(counts3));
  // Binomial(500, 0.4): 200, sd 11; +-50.
  t.ok(p3v2 >= 150 && p3v2 <= 250, `the alias follows the config's 60/40: version 2 got ${p3v2} of ${N} (expected 200 +- 50)`);

  // API changes win again, and survive a restart with this (now unchanged) config.
  t.equal((await put(a3, 'p', { weights: { '1': 10, '2': 90 } })).status, 200);
  t.equal(await stopGateway(g3), 0);
  const g4 = await serveFile(configFile);
  const p4 = await view(adminClient(g4.adminUrl), 'p');
  t.same([p4.source, p4.weights], ['api', { '1': 10, '2': 90 }], 'p: API traffic set after the config change survives a restart with that config');
  t.equal(await stopGateway(g4), 0);
});

t.test('stopping the gateways stops every model server they started', async (t) => {
  for (const g of [...gateways]) t.equal(await stopGateway(g), 0, 'exits 0');
  await assertNoServersLeft(t, pids.pids, RANGE);
});
