// Model servers inherit the gateway's environment less sluice's own settings and secrets:
// no SLUICE_* variable (the admin token, the Redis URL with its password), no OTLP exporter
// headers, no provider key a deployment names in `auth.env` (whichever deployment), nor the
// same secret under another name (Kubernetes' REDIS_PASSWORD). What a server needs (PATH,
// HOME, HF_*, CUDA_*, anything else) and its deployment's own `env` still reach it. The
// MLflow tracking credentials reach only the servers that may call MLflow (mlflow, command).

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { startGateway, type Gateway } from '../helpers/procs.js';
import { adminClient, PidLog, reapServers, serverCommand, waitFor, waitState, writeServerScript, type AdminClient } from '../helpers/control.js';

t.setTimeout(120_000);

// Ports 19220-19222 (replicas), 19236-19238 (gateway, admin, Redis) belong to this file.
const RANGE = { from: 19220, to: 19222 };
const REDIS_PORT = 19238;
const REDIS_PASSWORD = 'redis-pw-3f9c1a7e5d2b';
const SECRETS: Record<string, string> = {
  SLUICE_ADMIN_TOKEN: 'admin-token-8d1e6b0c4a97',
  SLUICE_REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${REDIS_PORT}`,
  REDIS_PASSWORD,
  HUNT_PROVIDER_KEY: 'provider-key-51c0e2d9b8a4',
  OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20otlp-secret-2b6d',
};
// Named by a deployment made once servers already run: those have it, later ones must not.
const LATER_KEY = 'provider-key-later-77a2f0';
const KEPT = { HF_HOME: '/tmp/hf-home-for-test', CUDA_VISIBLE_DEVICES: '0', SOME_SETTING: 'kept' };
const MLFLOW = { MLFLOW_TRACKING_USERNAME: 'mlflow-user-0c4e', MLFLOW_TRACKING_PASSWORD: 'mlflow-pw-6a1f93', MLFLOW_TRACKING_TOKEN: 'mlflow-token-e27b58' };

const dir = t.testdir();
const script = writeServerScript(dir);
const pids = new PidLog();
let gw: Gateway | undefined;
let admin: AdminClient;
let redis: ReturnType<typeof spawn> | undefined;

function environ(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) out.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return out;
}

function checkEnviron(t: Test, pid: number, own: Record<string, string>, secrets = SECRETS): void {
  const env = environ(pid);
  for (const name of Object.keys(secrets)) t.notOk(env.has(name), `${name} is not passed`);
  const leaked = [...env].filter(([, v]) => ['otlp-secret-2b6d', ...Object.values(secrets)].some((s) => v.includes(s)));
  t.same(leaked, [], 'no variable holds a secret');
  t.same([...env.keys()].filter((n) => n.startsWith('SLUICE_')), [], 'no SLUICE_ variable at all');
  t.equal(env.get('PATH'), process.env.PATH, 'PATH is inherited');
  t.equal(env.get('HOME'), process.env.HOME, 'HOME is inherited');
  for (const [name, value] of Object.entries({ ...KEPT, ...own })) t.equal(env.get(name), value, `${name} is passed`);
}

t.before(async () => {
  redis = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--requirepass', REDIS_PASSWORD, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await waitFor(() => new Promise<boolean>((resolve) => {
    const c = connect(REDIS_PORT, '127.0.0.1', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  }), 10_000, 'redis-server');
  gw = await startGateway({
    listen: { host: '127.0.0.1', port: 19236 }, admin: { host: '127.0.0.1', port: 19237 },
    ports: RANGE, state_dir: join(dir, 'state'),
    deployments: [
      { model: 'demo', version: '1', runtime: 'sim', env: { OWN: 'sim' } },
      { model: 'cmd', version: '1', runtime: 'command', command: serverCommand(script, 'ok'), readiness_path: '/ping', env: { OWN: 'cmd' } },
      { model: 'hunt', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:19239'], health_check: { enabled: false }, auth: { env: 'HUNT_PROVIDER_KEY' } },
    ],
  }, { ...SECRETS, LATER_PROVIDER_KEY: LATER_KEY, ...KEPT, ...MLFLOW }, false);
  admin = adminClient(gw.adminUrl, SECRETS.SLUICE_ADMIN_TOKEN);
});

t.teardown(async () => {
  await gw?.stop();
  await reapServers(pids.pids, RANGE);
  redis?.kill('SIGKILL');
});

t.test('a sim server gets no secret of the gateway', async (t) => {
  const v = await waitState(admin, 'demo-1', 'ready');
  pids.note(v);
  checkEnviron(t, v.replicas[0]!.pid!, { OWN: 'sim' }, { ...SECRETS, ...MLFLOW });
});

t.test('a command server gets no secret of the gateway', async (t) => {
  const v = await waitState(admin, 'cmd-1', 'ready');
  pids.note(v);
  checkEnviron(t, v.replicas[0]!.pid!, { OWN: 'cmd', ...MLFLOW });
});

t.test('a key named by a deployment made later through the admin API is withheld from servers started after it', async (t) => {
  const remote = await admin.post('/v1/deployments', {
    model: 'later', version: '1', runtime: 'remote', urls: ['http://127.0.0.1:19239'], health_check: { enabled: false }, auth: { env: 'LATER_PROVIDER_KEY' },
  });
  t.equal(remote.status, 201, remote.text);
  const sim = await admin.post('/v1/deployments?wait=true', { model: 'after', version: '1', runtime: 'sim', env: { OWN: 'after' } });
  pids.note(sim.body);
  t.equal(sim.status, 201, sim.text);
  checkEnviron(t, sim.body.replicas[0].pid as number, { OWN: 'after' }, { ...SECRETS, LATER_PROVIDER_KEY: LATER_KEY });
});
