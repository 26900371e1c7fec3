// The gateway's own dependencies behind circuit breakers (src/dependencies), through real
// gateways, a real redis-server and a registry stand-in: a Redis that hangs (SIGSTOP) or is
// gone (killed) opens the breakers, requests are then answered as the config says (rate
// limits fail open or closed, the shared cache misses) without the calls being made, the
// state store's writes and the registry's admin calls fail at once with a named 503, and
// when the dependency is back a probe closes each breaker and everything works again.

import t from 'tap';
import { reapServers, redisCommand, startRedis, type RedisServer } from '../helpers/control.js';
import { httpRequest, type Reply } from '../helpers/http.js';
import { errorOf, gwMetric } from '../helpers/policy.js';
import { eventually, jsonLogs, startGateway, type Gateway } from '../helpers/procs.js';
import { startRegistryStandIn, type RegistryStandIn } from '../fixtures/registry-stand-in.js';

// Ports 19060-19079 belong to this file: Redis 19060, the registry stand-in 19061, the
// fail-open gateway's replicas 19062-19066, the fail-closed gateway's 19067-19071.
const RANGE = { from: 19060, to: 19079 };
const REDIS_PORT = 19060;
const REGISTRY_PORT = 19061;
// Small thresholds so that a few requests open a breaker, and a short reset for the probes.
const BREAKER = { volume_threshold: 3, reset_timeout_ms: 2_000 };
const DEPLOYMENTS = [
  // Every request checks a bucket in Redis; rs: 2 a minute, to see a limit apply.
  { model: 'rp', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 1_000_000 }, cache: { enabled: false } } },
  { model: 'rs', version: '1', runtime: 'sim', policies: { rate_limit: { requests_per_minute: 2 }, cache: { enabled: false } } },
  // Cached, in memory and in Redis (the shared tier).
  { model: 'ca', version: '1', runtime: 'sim', args: ['--protocol', 'mlflow'] },
];
const OPEN = 1;
const CLOSED = 0;

let redis: RedisServer | undefined;
let stopped = false;
let registry: RegistryStandIn | undefined;
let open: Gateway;
let closed: Gateway;

t.before(async () => {
  redis = await startRedis(REDIS_PORT);
  registry = await startRegistryStandIn(REGISTRY_PORT);
  const config = (onRedisError: string, from: number, to: number): Record<string, unknown> => ({
    ports: { from, to }, redis: { url: redis!.url }, mlflow: { tracking_uri: registry!.trackingUri },
    rate_limit: { on_redis_error: onRedisError, redis_timeout_ms: 200 }, cache: { redis_timeout_ms: 200 },
    dependencies: {
      redis: { rate_limit: BREAKER, cache: BREAKER, state: { ...BREAKER, timeout_ms: 300 } },
      mlflow: { registry: { ...BREAKER, volume_threshold: 2, timeout_ms: 1_000 } },
    },
    log: { level: 'info', access: false }, deployments: DEPLOYMENTS,
  });
  [open, closed] = await Promise.all([startGateway(config('open', 19062, 19066)), startGateway(config('closed', 19067, 19071))]);
});

t.teardown(async () => {
  if (stopped && redis !== undefined) process.kill(redis.pid, 'SIGCONT');
  await Promise.all([open?.stop(), closed?.stop()]);
  await redis?.stop();
  await registry?.close();
  await reapServers([], RANGE);
});

const echo = (gw: Gateway, deployment: string): Promise<Reply> => httpRequest(`${gw.url}/${deployment}/_sim/echo`, { timeoutMs: 5_000 });

let unique = 0;
const invoke = (gw: Gateway, body: string): Promise<Reply> =>
  httpRequest(`${gw.url}/ca-1/invocations`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, timeoutMs: 5_000 });
/** A cacheable request whose body no earlier request had: never a memory hit. */
const invokeNew = (gw: Gateway): Promise<Reply> => invoke(gw, JSON.stringify({ inputs: [unique++] }));

const adminCall = (gw: Gateway, method: string, path: string, body?: unknown): Promise<Reply> =>
  httpRequest(`${gw.adminUrl}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }), timeoutMs: 10_000 });

const createKey = (gw: Gateway, name: string): Promise<Reply> => adminCall(gw, 'POST', '/v1/keys', { name });

const breakerState = (gw: Gateway, dependency: string, use: string): Promise<number> => gwMetric(gw, 'sluice_dependency_breaker_state', { dependency, use });
const calls = (gw: Gateway, dependency: string, use: string, result: string): Promise<number> => gwMetric(gw, 'sluice_dependency_calls_total', { dependency, use, result });

/** Sends `send()` until `gw`'s breaker for `use` reports `state`; every reply sent meanwhile. */
async function untilState(gw: Gateway, dependency: string, use: string, state: number, send: () => Promise<Reply>, what: string): Promise<Reply[]> {
  const replies: Reply[] = [];
  await eventually(async () => {
    replies.push(await send());
    return (await breakerState(gw, dependency, use)) === state ? true : undefined;
  }, 20_000, what);
  return replies;
}

t.test('Redis hangs (SIGSTOP): limits fail open or closed without asking it, state writes fail at once; SIGCONT: breakers close, limits apply', async (t) => {
  t.equal(await breakerState(open, 'redis', 'rate_limit'), CLOSED, 'the rate-limit breaker starts closed');
  t.equal((await echo(closed, 'rp-1')).status, 200, 'with Redis up, the limit is checked and passes');
  const deployed = await adminCall(open, 'POST', '/v1/deployments?wait=true', { model: 'un', version: '1', runtime: 'sim' });
  t.equal(deployed.status, 201, 'a deployment made through the admin API, stored in Redis');

  process.kill(redis!.pid, 'SIGSTOP');
  stopped = true;
  const admitted = await untilState(open, 'redis', 'rate_limit', OPEN, () => echo(open, 'rp-1'), 'the fail-open gateway\'s breaker to open');
  t.ok(admitted.every((r) => r.status === 200), `fail-open: every request admitted by the gateway's own buckets while the breaker opened (${admitted.length})`);
  const refused = await untilState(closed, 'redis', 'rate_limit', OPEN, () => echo(closed, 'rp-1'), 'the fail-closed gateway\'s breaker to open');
  t.ok(refused.every((r) => r.status === 503 && errorOf(r)?.code === 'SLUICE_ERR_RATE_LIMIT_UNAVAILABLE'), `fail-closed: every request refused with SLUICE_ERR_RATE_LIMIT_UNAVAILABLE (${refused.length})`);

  // Open: the checks are not made (rejected), the answers are what each mode says.
  for (const [gw, status] of [[open, 200], [closed, 503]] as const) {
    const before = await calls(gw, 'redis', 'rate_limit', 'rejected');
    const replies: Reply[] = [];
    for (let i = 0; i < 6; i++) replies.push(await echo(gw, 'rp-1'));
    t.same(replies.map((r) => r.status), Array(6).fill(status), `breaker open: every request answered ${status}`);
    const rejected = (await calls(gw, 'redis', 'rate_limit', 'rejected')) - before;
    // A half-open probe (every reset_timeout_ms) may have taken one or two of them.
    t.ok(rejected >= 4, `and ${rejected} of the 6 checks were refused by the breaker, Redis not asked`);
  }
  t.ok(await gwMetric(open, 'sluice_rate_limit_store_errors_total', { deployment: 'rp-1' }) >= admitted.length + 6, 'each request Redis did not check is still counted as a store error');
  t.ok(await gwMetric(open, 'sluice_dependency_breaker_transitions_total', { dependency: 'redis', use: 'rate_limit', to: 'open' }) >= 1, 'the transition to open is counted');

  // The desired state in Redis: the traffic polls fail and open its breaker; an admin write
  // then fails at once with a named 503 (unless it is the probe: then it fails as a timeout).
  await eventually(async () => ((await breakerState(open, 'redis', 'state')) === OPEN ? true : undefined), 20_000, 'the state store breaker to open');
  const write = await eventually(async () => {
    const r = await createKey(open, `k${unique++}`);
    return errorOf(r)?.code === 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN' ? r : undefined;
  }, 20_000, 'an admin write refused by the open state breaker');
  t.equal(write.status, 503, 'a key write while the state store breaker is open: 503 SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN');
  t.match(JSON.parse(write.body), { error: { dependency: 'redis', use: 'state' } }, 'naming the dependency and its use');
  const undeploy = await adminCall(open, 'DELETE', '/v1/deployments/un-1');
  t.equal(errorOf(undeploy)?.code, 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN', 'an undeploy that cannot be stored is refused with the same 503');
  t.equal((await echo(open, 'un-1')).status, 200, 'and the deployment still runs: nothing was stopped');

  process.kill(redis!.pid, 'SIGCONT');
  stopped = false;
  const back = await untilState(closed, 'redis', 'rate_limit', CLOSED, () => echo(closed, 'rp-1'), 'the fail-closed gateway\'s breaker to close');
  t.equal(back.at(-1)!.status, 200, 'Redis answers: the fail-closed gateway admits again');
  await untilState(open, 'redis', 'rate_limit', CLOSED, () => echo(open, 'rp-1'), 'the fail-open gateway\'s breaker to close');
  const limited: Reply[] = [];
  for (let i = 0; i < 3; i++) limited.push(await echo(i % 2 === 0 ? closed : open, 'rs-1'));
  t.same(limited.map((r) => r.status), [200, 200, 429], 'limits apply again, shared by both gateways: 2 admitted, then 429');
  await eventually(async () => ((await breakerState(open, 'redis', 'state')) === CLOSED ? true : undefined), 20_000, 'the state store breaker to close');
  t.equal((await createKey(open, 'after')).status, 201, 'and admin writes are stored again');
  t.equal((await adminCall(open, 'DELETE', '/v1/deployments/un-1')).status, 200, 'and the undeploy goes through');
  t.ok(await gwMetric(open, 'sluice_dependency_breaker_transitions_total', { dependency: 'redis', use: 'rate_limit', to: 'closed' }) >= 1, 'the transition to closed is counted');
  // The failed probes reopened it every reset_timeout_ms: the log says it once each way.
  // A worker's lines reach stdout within log.access_flush_ms (buffered): wait for the second.
  const saidOf = (): string[] => jsonLogs(open).filter((l) => l.dependency === 'redis' && l.use === 'rate_limit').map((l) => `${String(l.level)} ${String(l.msg)}`);
  const said = await eventually(() => (saidOf().length >= 2 ? saidOf() : undefined), 5_000, 'both log lines').catch(() => saidOf());
  t.same(said, [
    'warn dependency failing: circuit breaker open, its calls fail at once until a probe succeeds',
    'info dependency answers again: circuit breaker closed',
  ], 'the outage is logged once when it begins and once when it ends');
});

t.test('Redis is killed: the shared cache misses without asking it; restarted: the breaker closes and entries are shared again', async (t) => {
  const cacheKeys = async (): Promise<number> => ((await redisCommand(REDIS_PORT, 'KEYS', 'sluice:cache:*')) as unknown[]).length;
  const before = await cacheKeys();
  t.equal((await invokeNew(open)).status, 200, 'a cacheable request with Redis up');
  await eventually(async () => ((await cacheKeys()) > before ? true : undefined), 5_000, 'its response stored in Redis');

  await redis!.stop();
  redis = undefined;
  const misses = await untilState(open, 'redis', 'cache', OPEN, () => invokeNew(open), 'the cache breaker to open');
  t.ok(misses.every((r) => r.status === 200), `every request answered (as a miss) while the breaker opened (${misses.length})`);
  const rejectedBefore = await calls(open, 'redis', 'cache', 'rejected');
  const replies: Reply[] = [];
  for (let i = 0; i < 6; i++) replies.push(await invokeNew(open));
  t.same(replies.map((r) => r.status), Array(6).fill(200), 'breaker open: every request answered');
  t.ok((await calls(open, 'redis', 'cache', 'rejected')) - rejectedBefore >= 4, 'and their lookups (and stores) were refused by the breaker, Redis not asked');

  redis = await startRedis(REDIS_PORT);
  await untilState(open, 'redis', 'cache', CLOSED, () => invokeNew(open), 'the cache breaker to close');
  // Stored by one gateway, a hit from Redis on the other.
  const hits = await eventually(async () => {
    const body = JSON.stringify({ inputs: [`shared ${unique++}`] });
    const stored = await cacheKeys();
    if ((await invoke(open, body)).status !== 200) return undefined;
    await eventually(async () => ((await cacheKeys()) > stored ? true : undefined), 5_000, 'the entry in Redis');
    const hitsBefore = await gwMetric(closed, 'sluice_cache_hits_total', { deployment: 'ca-1', tier: 'redis' });
    await invoke(closed, body);
    const hitsAfter = await gwMetric(closed, 'sluice_cache_hits_total', { deployment: 'ca-1', tier: 'redis' });
    return hitsAfter > hitsBefore ? hitsAfter : undefined;
  }, 20_000, 'a response cached by one gateway to be a Redis hit on the other');
  t.ok(hits >= 1, 'the shared tier works again: a hit from Redis');
});

t.test('the registry goes away: its admin calls fail at once with a named 503 while the breaker is open; back: they answer again', async (t) => {
  const list = (): Promise<Reply> => httpRequest(`${open.adminUrl}/get_model_list`, { timeoutMs: 5_000 });
  t.equal((await list()).status, 200, 'the registry answers');

  await registry!.close();
  registry = undefined;
  const failing = await untilState(open, 'mlflow', 'registry', OPEN, list, 'the registry breaker to open');
  t.ok(failing.every((r) => r.status === 503), `every call answered 503 while it opened (${failing.length})`);
  t.same([...new Set(failing.map((r) => errorOf(r)?.code))], ['SLUICE_ERR_REGISTRY_UNAVAILABLE'], 'as the registry being unavailable');
  // Open (a call may be its probe now and then: that one fails as unavailable).
  const refused = await eventually(async () => {
    const r = await list();
    return r.status === 503 && errorOf(r)?.code === 'SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN' ? r : undefined;
  }, 10_000, 'a call refused by the open breaker');
  t.match(JSON.parse(refused.body), { error: { dependency: 'mlflow', use: 'registry', message: /circuit breaker is open/ } }, 'breaker open: 503 SLUICE_ERR_DEPENDENCY_CIRCUIT_OPEN, naming the registry');
  t.ok(await calls(open, 'mlflow', 'registry', 'rejected') >= 1, 'counted as a call not made');
  const deploy = await httpRequest(`${open.adminUrl}/deploy/iris/1`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, timeoutMs: 5_000 });
  t.equal(deploy.status, 503, 'a deploy from the registry is refused too, before anything starts');

  registry = await startRegistryStandIn(REGISTRY_PORT);
  const back = await untilState(open, 'mlflow', 'registry', CLOSED, list, 'the registry breaker to close');
  t.equal(back.at(-1)!.status, 200, 'the registry answers again');
  t.equal((await httpRequest(`${open.adminUrl}/get_model_version_list/iris`, { timeoutMs: 5_000 })).status, 200, 'and the calls that need it work');
});
