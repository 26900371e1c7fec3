import { fileURLToPath } from 'node:url';
import t from 'tap';
import { launchPlan, type ProcessPlan, type ReplicaSpec } from '../../src/ports/index.js';

t.test('mlflow serves models:/<name>/<version> on loopback with the tracking URI', async (t) => {
  const plan = launchPlan(
    { runtime: 'mlflow', model: 'iris', version: '3', trackingUri: 'http://127.0.0.1:5000', mlflowBin: '/venv/bin/mlflow' },
    { port: 8005 },
  );
  t.same(plan, {
    kind: 'process',
    argv: ['/venv/bin/mlflow', 'models', 'serve', '-m', 'models:/iris/3', '-h', '127.0.0.1', '-p', '8005', '--env-manager', 'local'],
    // uvicorn is exec'd by name: the venv's bin leads PATH. MLflow's telemetry is off.
    env: { MLFLOW_TRACKING_URI: 'http://127.0.0.1:5000', PATH: `/venv/bin:${process.env.PATH}`, MLFLOW_DISABLE_TELEMETRY: 'true', DO_NOT_TRACK: 'true' },
    readinessPath: '/ping',
    url: 'http://127.0.0.1:8005',
  });
  t.ok(Object.isFrozen(plan) && Object.isFrozen(plan.kind === 'process' ? plan.argv : null));
  t.throws(() => launchPlan({ runtime: 'mlflow', model: 'iris', version: '3' } as ReplicaSpec, { port: 8005 }), {
    code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'trackingUri' },
  });
});

t.test('ollama: serve with OLLAMA_HOST and OLLAMA_KEEP_ALIVE, readiness on /', async (t) => {
  const plan = launchPlan({ runtime: 'ollama', model: 'llama3', version: '8b', keepAlive: '10m', env: { OLLAMA_HOST: 'ignored', OLLAMA_DEBUG: '1' } }, { port: 8010 });
  t.same(plan, {
    kind: 'process',
    argv: ['ollama', 'serve'],
    env: { OLLAMA_HOST: '127.0.0.1:8010', OLLAMA_DEBUG: '1', OLLAMA_KEEP_ALIVE: '10m' },
    readinessPath: '/',
    url: 'http://127.0.0.1:8010',
  });
  for (const ok of ['-1', '0', '3600', '1h2m3s', '1.5h', -1]) {
    t.doesNotThrow(() => launchPlan({ runtime: 'ollama', model: 'm', version: '1', keepAlive: ok }, { port: 8010 }), String(ok));
  }
  for (const bad of ['1d', '???', '', '5 m', 1.5]) {
    t.throws(() => launchPlan({ runtime: 'ollama', model: 'm', version: '1', keepAlive: bad }, { port: 8010 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'keepAlive' } }, String(bad));
  }
  t.notOk('OLLAMA_KEEP_ALIVE' in (launchPlan({ runtime: 'ollama', model: 'm', version: '1' }, { port: 1 }) as { env: object }).env);
});

t.test('command: placeholders substituted per element, never a shell string', async (t) => {
  const plan = launchPlan(
    {
      runtime: 'command', model: 'qwen2.5:0.5b', version: 'q4',
      command: ['python', '-m', 'llama_cpp.server', '--port={port}', '--host', '{host}', '--model', '/m/{model}-{version}.gguf', '$(rm -rf /) {x} {port}{port}'],
      readinessPath: '/v1/models',
    },
    { port: 8020 },
  );
  t.match(plan, {
    kind: 'process',
    argv: ['python', '-m', 'llama_cpp.server', '--port=8020', '--host', '127.0.0.1', '--model', '/m/qwen2.5:0.5b-q4.gguf', '$(rm -rf /) {x} 80208020'],
    env: {},
    readinessPath: '/v1/models',
    url: 'http://127.0.0.1:8020',
  });
  t.throws(() => launchPlan({ runtime: 'command', model: 'm', version: '1', command: [], readinessPath: '/' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'command' } });
  t.throws(() => launchPlan({ runtime: 'command', model: 'm', version: '1', command: ['x'], readinessPath: 'health' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'readinessPath' } });
  t.throws(() => launchPlan({ runtime: 'command', model: 'm', version: '1', command: 'python -m x' as unknown as string[], readinessPath: '/' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'command' } });
  t.throws(() => launchPlan({ runtime: 'command', model: 'm', version: '1', command: ['serve', '--port', '8000'], readinessPath: '/' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'command' } }, 'no {port} and no portEnv');
  t.throws(() => launchPlan({ runtime: 'command', model: 'm', version: '1', command: ['serve'], readinessPath: '/', portEnv: 'A-B' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'portEnv' } });
  t.match(launchPlan({ runtime: 'command', model: 'm', version: '1', command: ['serve'], readinessPath: '/', portEnv: 'PORT', env: { PORT: '1', X: 'y' } }, { port: 8021 }), {
    argv: ['serve'], env: { PORT: '8021', X: 'y' },
  }, 'portEnv: the port in that variable, over the same name in env');
});

t.test('llamacpp: python -m llama_cpp.server on the GGUF, sluice\'s options first, readiness /v1/models', async (t) => {
  const plan = launchPlan(
    { runtime: 'llamacpp', model: 'tiny', version: '1', modelPath: '/models/tiny.gguf', python: '/venv/bin/python', serverArgs: ['--n_ctx', '4096', '--model_alias', 'tiny'], env: { PYTHONUNBUFFERED: '0', X: 'y' } },
    { port: 8040 },
  );
  t.same(plan, {
    kind: 'process',
    // --interrupt_requests False: a stream is not cut short by the next request (llama-cpp-python's default).
    argv: ['/venv/bin/python', '-m', 'llama_cpp.server', '--model', '/models/tiny.gguf', '--host', '127.0.0.1', '--port', '8040', '--interrupt_requests', 'False', '--n_ctx', '4096', '--model_alias', 'tiny'],
    // Its stdout goes to a file: unbuffered, or lines would wait for 8 KiB.
    env: { PYTHONUNBUFFERED: '1', X: 'y' },
    readinessPath: '/v1/models',
    url: 'http://127.0.0.1:8040',
    listsModel: true,
  });
  t.ok(Object.isFrozen(plan));
  t.match(launchPlan({ runtime: 'llamacpp', model: 'm', version: '1', modelPath: '/m.gguf' }, { port: 8041, host: '::1' }), {
    argv: ['python3', '-m', 'llama_cpp.server', '--model', '/m.gguf', '--host', '::1', '--port', '8041', '--interrupt_requests', 'False'], url: 'http://[::1]:8041',
  }, 'python3 from PATH when no interpreter is given');
  t.throws(() => launchPlan({ runtime: 'llamacpp', model: 'm', version: '1' } as ReplicaSpec, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'modelPath' } });
  t.throws(() => launchPlan({ runtime: 'llamacpp', model: 'm', version: '1', modelPath: '/m.gguf', python: '' }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'python' } });
  t.throws(() => launchPlan({ runtime: 'llamacpp', model: 'm', version: '1', modelPath: '/m.gguf', serverArgs: '--n_ctx 4096' as unknown as string[] }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'serverArgs' } });
  t.throws(() => launchPlan({ runtime: 'llamacpp', model: 'm', version: '1', modelPath: '/m.gguf', serverArgs: ['--n_ctx', 4096 as unknown as string] }, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'serverArgs[1]' } });
  t.notOk('listsModel' in (launchPlan({ runtime: 'sim', model: 'm', version: '1' }, { port: 1 }) as ProcessPlan), 'only llamacpp says it lists its model');
});

t.test('sim: the gateway CLI under node, readiness /_sim/stats', async (t) => {
  const plan = launchPlan({ runtime: 'sim', model: 'demo', version: '1', simArgs: ['--protocol', 'ollama'] }, { port: 8030 });
  const cli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
  t.same(plan, {
    kind: 'process',
    argv: [process.execPath, cli, 'sim', '--port', '8030', '--models', 'demo', '--protocol', 'ollama'],
    env: {},
    readinessPath: '/_sim/stats',
    url: 'http://127.0.0.1:8030',
  });
  const custom = launchPlan({ runtime: 'sim', model: 'demo', version: '1' }, { port: 8030, cliPath: '/opt/sluice/cli.js' });
  t.match(custom, { argv: [process.execPath, '/opt/sluice/cli.js', 'sim', '--port', '8030', '--models', 'demo'] });
  const named = launchPlan({ runtime: 'sim', model: 'chat', version: '2', simArgs: ['--token-ms', '1'] }, { port: 8030 }) as ProcessPlan;
  t.same(named.argv.slice(3), ['--port', '8030', '--models', 'chat,demo', '--token-ms', '1'], 'the deployment\'s model is served, and demo');
  for (const own of [['--models', 'a,b'], ['--models=a,b']]) {
    const p = launchPlan({ runtime: 'sim', model: 'chat', version: '2', simArgs: own }, { port: 8030 }) as ProcessPlan;
    t.same(p.argv.slice(3), ['--port', '8030', ...own], `${own.join(' ')} in the args: exactly those models`);
  }
});

t.test('remote: no process, just the URL', async (t) => {
  t.same(launchPlan({ runtime: 'remote', model: 'gpt', version: '4o', url: 'https://models.internal:8443/' }), {
    kind: 'remote', url: 'https://models.internal:8443', readinessPath: '/',
  });
  t.throws(() => launchPlan({ runtime: 'remote', model: 'gpt', version: '4o', url: 'ftp://x' }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'url' } });
  t.throws(() => launchPlan({ runtime: 'remote', model: 'gpt', version: '4o', url: 'not a url' }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'url' } });
});

t.test('model and version names follow the vocabulary', async (t) => {
  const spec = (model: string, version: string): ReplicaSpec => ({ runtime: 'ollama', model, version });
  for (const [model, version] of [['iris', '1'], ['llama-3', '8b'], ['qwen2.5:0.5b', 'latest'], ['a_b.c', 'v1_2.3'], ['x'.repeat(128), 'y'.repeat(128)]] as const) {
    t.doesNotThrow(() => launchPlan(spec(model, version), { port: 1 }), `${model} ${version}`);
  }
  for (const model of ['', '-x', '.x', 'a/b', 'a b', 'ü', 'x'.repeat(129), '../etc']) {
    t.throws(() => launchPlan(spec(model, '1'), { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', status: 400, details: { field: 'model' } }, JSON.stringify(model));
  }
  for (const version of ['', '8-b', '.1', 'a:b', 'v/1', 'y'.repeat(129)]) {
    t.throws(() => launchPlan(spec('m', version), { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'version' } }, JSON.stringify(version));
  }
  t.throws(() => launchPlan(spec('m', '1')), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'port' } }, 'a local runtime needs a port');
  t.throws(() => launchPlan({ runtime: 'docker', model: 'm', version: '1' } as unknown as ReplicaSpec, { port: 1 }), { code: 'SLUICE_ERR_INVALID_FIELD', details: { field: 'runtime' } });
});
