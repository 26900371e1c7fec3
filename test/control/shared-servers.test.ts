// Two gateway instances on one host sharing a redis-server run one `mlflow models serve`
// for a deployment that may hibernate: one instance runs it, the other routes to it. The
// other's traffic keeps it awake; idle on both, it hibernates on both; 50 concurrent
// predictions spread over both wake it with exactly one server started; killed and
// started again, the instance running it adopts it; and when that instance stops, the
// other wakes it on its own on the next request.

import { delimiter, join } from 'node:path';
import t from 'tap';
import { IRIS_EXPECTED_V1, IRIS_REQUEST_BODIES, startMlflow, VENV_BIN, type MlflowServer } from '../fixtures/mlflow.js';
import { adminClient, gwRequest, reapServers, serversInRange, sleep, startRedis, waitFor, waitState, type AdminClient, type DeploymentView, type RedisServer } from '../helpers/control.js';
import { runCli } from '../helpers/cli.js';
import { metricsText, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(600_000);

// Replica ports 19120-19129 belong to this file (both instances allocate from them, as
// instances of one host do).
const RANGE = { from: 19120, to: 19129 };
const dir = t.testdir();
let mlflow: MlflowServer;
let redis: RedisServer;
const gateways: Gateway[] = [];

interface Instance {
  readonly name: string;
  readonly gw: Gateway;
  readonly admin: AdminClient;
}

interface SharedView extends DeploymentView {
  shared: { role: 'owner' | 'borrower'; owner: string | null } | null;
  replicas: Array<DeploymentView['replicas'][number] & { borrowed: boolean }>;
}

async function start(name: string): Promise<Instance> {
  const path = (process.env.PATH ?? '').split(delimiter).filter((p) => p !== VENV_BIN).join(delimiter);
  const gw = await startGateway(
    {
      ports: RANGE, state_dir: join(dir, `state-${name}`), redis: { url: redis.url }, mlflow: { tracking_uri: mlflow.trackingUri }, log: { level: 'info', access: false },
      // No cache: every prediction reaches a server (the shared cache would answer repeats).
      deployments: [{ model: 'iris', version: '1', runtime: 'mlflow', scale: { min_replicas: 0, idle_timeout_s: 4 }, policies: { cache: { enabled: false } } }],
    },
    { PATH: path, VIRTUAL_ENV: '', MLFLOW_TRACKING_URI: mlflow.trackingUri, TMPDIR: mlflow.tmpDir },
    false,
  );
  gateways.push(gw);
  return { name, gw, admin: adminClient(gw.adminUrl) };
}

t.before(async () => {
  [mlflow, redis] = await Promise.all([startMlflow(), startRedis()]);
});
t.teardown(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await reapServers([], RANGE);
  await redis?.stop();
  await mlflow?.stop();
});

const servers = (): number => new Set(serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid)).size;
const view = async (i: Instance): Promise<SharedView> => (await i.admin.deployment('iris-1')) as SharedView;
const body = JSON.stringify(IRIS_REQUEST_BODIES.dataframe_split);
const predict = (i: Instance) => gwRequest(`${i.gw.url}/iris-1/invocations`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, timeoutMs: 180_000 });

t.test('one mlflow models serve for two instances, through idle, wake, a crash and the owner stopping', async (t) => {
  const a = await start('a');
  const b = await start('b');
  await Promise.all([waitState(a.admin, 'iris-1', 'ready', 180_000), waitState(b.admin, 'iris-1', 'ready', 180_000)]);
  t.equal(servers(), 1, 'one mlflow models serve runs for both instances');
  const [va, vb] = [await view(a), await view(b)];
  const [owner, borrower] = va.shared?.role === 'owner' ? [a, b] : [b, a];
  const [vo, vbr] = owner === a ? [va, vb] : [vb, va];
  t.same(vo.shared, { role: 'owner', owner: 'this instance' }, `${owner.name} runs the server`);
  t.equal(vbr.shared?.role, 'borrower', `${borrower.name} routes to it`);
  t.equal(vbr.replicas[0]?.port, vo.replicas[0]?.port, 'on the owner\'s server\'s port');
  t.ok(vbr.replicas[0]?.borrowed && vbr.replicas[0]?.pid === null, 'a replica without a process of its own');
  t.same((await predict(borrower)).json, { predictions: IRIS_EXPECTED_V1 }, 'and it answers through the borrower');

  // 5 s of requests to the borrower only: the owner has seen no request of its own since it
  // was ready, longer than the 4 s idle timeout, and still keeps the server.
  const until = Date.now() + 5_000;
  while (Date.now() < until) {
    t.equal((await predict(borrower)).status, 200);
    await sleep(250);
  }
  t.equal((await view(owner)).state, 'ready', 'the borrower\'s traffic kept the owner from hibernating it');
  t.equal(servers(), 1);
  const status = await runCli(['status', 'iris-1'], { SLUICE_ADMIN_URL: borrower.gw.adminUrl });
  t.match(status.stdout, new RegExp(`servers: +run by instance ${vbr.shared?.owner} of this host`), 'sluice status says whose servers the borrower uses');

  await Promise.all([waitState(a.admin, 'iris-1', 'hibernated', 30_000), waitState(b.admin, 'iris-1', 'hibernated', 30_000)]);
  await waitFor(() => servers() === 0, 30_000, 'mlflow models serve to stop');
  t.pass('idle on both: hibernated on both, no server runs');

  const started = Date.now();
  const replies = await Promise.all(Array.from({ length: 50 }, (_, n) => predict(n % 2 === 0 ? a : b)));
  t.comment(`cold start to 50 answers through two instances: ${Date.now() - started} ms`);
  t.same(replies.map((r) => r.status), new Array(50).fill(200), 'every held request answered 200, on both instances');
  for (const r of replies) t.same(r.json, { predictions: IRIS_EXPECTED_V1 });
  t.equal(servers(), 1, 'exactly one mlflow models serve was started for both');
  for (const i of [a, b]) {
    t.match(await metricsText(i.gw), /^sluice_cold_start_seconds_count\{deployment="iris-1"\} 1$/m, `${i.name}'s cold-start histogram recorded the wait of its requests`);
  }

  // The instance running the server is killed: its server runs on and the other keeps
  // using it; started again (same state_dir, so the same instance id), it takes its lease
  // back and adopts the server instead of starting one.
  const roles = await Promise.all([view(a), view(b)]);
  let running = roles[0]!.shared?.role === 'owner' ? a : b;
  const survivor = running === a ? b : a;
  const serverBefore = serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid);
  await running.gw.stop('SIGKILL');
  gateways.splice(gateways.indexOf(running.gw), 1);
  t.equal((await predict(survivor)).status, 200, 'the other instance still answers through the killed one\'s server');
  running = await start(running.name);
  await waitState(running.admin, 'iris-1', 'ready', 60_000);
  t.same((await view(running)).shared, { role: 'owner', owner: 'this instance' }, `${running.name}, started again, runs the server again`);
  t.same(serversInRange(RANGE.from, RANGE.to).map((p) => p.pgid), serverBefore, 'the same server: adopted, not started anew');
  t.same((await predict(survivor)).json, { predictions: IRIS_EXPECTED_V1 }, 'and the other instance goes on using it');

  // The instance running the server stops: the other goes back to sleep, and its next
  // request wakes the deployment there.
  await running.gw.stop();
  gateways.splice(gateways.indexOf(running.gw), 1);
  await waitFor(() => servers() === 0, 30_000, 'the stopped instance\'s server to stop');
  await waitState(survivor.admin, 'iris-1', 'hibernated', 10_000);
  const reply = await predict(survivor);
  t.equal(reply.status, 200, `${survivor.name} woke it on its own`);
  t.same(reply.json, { predictions: IRIS_EXPECTED_V1 });
  t.same((await view(survivor)).shared, { role: 'owner', owner: 'this instance' }, 'and runs the server now');
  t.equal(servers(), 1);
});
