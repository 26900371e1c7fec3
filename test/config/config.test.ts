// Configuration loading: defaults, validation errors that name the field, cross-field
// checks, environment overrides, YAML errors, and what `sluice serve` does with a bad file.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig, resolvePolicies } from '../../src/config/index.js';
import { CLI } from '../helpers/procs.js';

/** The assertions a helper needs, satisfied by the root test and by subtests alike. */
type Assert = Pick<typeof t, 'ok' | 'equal' | 'match' | 'fail'>;

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-test-'));
/** A file for a llamacpp deployment's model_path (only its existence is checked). */
const gguf = join(dir, 'model.gguf');
writeFileSync(gguf, '');
let fileSeq = 0;

/** Writes `text` to a fresh file and returns its path. */
function file(text: string): string {
  const path = join(dir, `config-${++fileSeq}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** Loads YAML text with a controlled environment (never the test runner's). */
function load(text: string, env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadConfig> {
  return loadConfig(file(text), env);
}

/** Asserts that loading fails with a ConfigError naming `field`, and returns its message. */
function rejects(t: Assert, text: string, field: string, env: NodeJS.ProcessEnv = {}): string {
  try {
    load(text, env);
  } catch (err) {
    t.ok(err instanceof ConfigError, `ConfigError for ${field}`);
    t.equal((err as ConfigError).field, field, `names ${field}`);
    t.match((err as Error).message, field, 'the message names the field too');
    t.equal((err as ConfigError).code, 'SLUICE_ERR_CONFIG');
    return (err as Error).message;
  }
  t.fail(`expected a ConfigError naming ${field}`);
  return '';
}

t.test('defaults are filled in and the result is frozen', async (t) => {
  const c = load('');
  const { cors_origins: cors, ...listen } = c.listen;
  t.same(listen, { host: '0.0.0.0', port: 8080, forwarded_for: false, front_end: 'auto', client_idle_timeout_ms: 10_000, client_header_timeout_ms: 60_000, allowed_hosts: [] });
  // Ollama's own (protocols.md, OLLAMA_ORIGINS) and browser extensions.
  for (const o of ['http://localhost:*', 'http://127.0.0.1:*', 'app://*', 'vscode-webview://*', 'chrome-extension://*']) t.ok(cors.includes(o), `cors_origins: ${o}`);
  t.notOk(cors.includes('*'), 'not every origin');
  t.same(c.admin, { host: '127.0.0.1', port: 8081, token: null });
  t.equal(c.workers, availableParallelism(), 'workers: 0 means one per core');
  t.same(c.ports, { from: 8001, to: 8100 });
  t.equal(c.state_dir, './.sluice');
  t.equal(c.limits.max_body_bytes, 64 * 1024 * 1024);
  t.same(c.upstream, { connect_timeout_ms: 5_000, headers_timeout_ms: 300_000, idle_timeout_ms: 60_000, max_connections: 512, keepalive_idle_ms: 4_000 });
  t.same(c.log, { level: 'info', access: true, access_buffer_bytes: 65536, access_flush_ms: 1000, access_max_buffer_bytes: 16 * 1024 * 1024, access_sample: 1 });
  t.same(c.deployments, []);
  t.same(c.traffic, {});
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.listen) && Object.isFrozen(c.upstream), 'deeply frozen');

  const d = load('deployments:\n  - model: llama-3\n    version: 8b\n').deployments[0]!;
  t.equal(d.model, 'llama-3');
  t.equal(d.version, '8b');
  t.equal(d.runtime, 'sim', 'runtime defaults to the simulator');
  t.equal(d.replicas, 1);
  t.same(d.urls, []);
  const tuned = load('policies:\n  balancer: {strategy: round_robin}\ndeployments:\n  - {model: t, version: "1", policies: {balancer: {latency_buffer: 0.5}}}\n');
  t.same(
    resolvePolicies(tuned.policies, tuned.deployments[0]!.policies).balancer,
    { ...tuned.policies.balancer, latency_buffer: 0.5 },
    'a deployment naming one field of a policy keeps the others from the defaults (a text field too)',
  );
  t.equal(tuned.policies.balancer.strategy, 'round_robin');
  const remote = load('deployments:\n  - {model: r, version: "1", runtime: remote, urls: ["http://a:1", {url: "http://b:2/v1", priority: 1, cost: 0.5}]}\n').deployments[0]!;
  t.same(remote.urls, [
    { url: 'http://a:1', weight: 1, priority: 0, cost: 0 },
    { url: 'http://b:2/v1', weight: 1, priority: 1, cost: 0.5 },
  ], 'a bare URL and an object both give an endpoint with the defaults filled in');
  t.same(d.args, []);
  t.same(d.command, []);
  t.equal(d.readiness_path, null);
  t.equal(d.model_path, null);
  t.equal(d.python, null);
  t.same(d.env, {});
  t.equal(d.start_timeout_ms, 120_000);
  t.equal(d.upstream, undefined, 'no per-deployment upstream overrides unless given');

  t.equal(load('deployments:\n  - {model: m, version: 1}\n').deployments[0]!.version, '1', 'a numeric YAML version is read as a string');
  const partial = load('deployments:\n  - model: m\n    version: "1"\n    upstream: { idle_timeout_ms: 300 }\n').deployments[0]!;
  t.same(partial.upstream, { idle_timeout_ms: 300 }, 'per-deployment upstream holds only what was given');
  t.same({ ...loadConfig(null, {}).listen, cors_origins: [] }, { host: '0.0.0.0', port: 8080, forwarded_for: false, front_end: 'auto', client_idle_timeout_ms: 10_000, client_header_timeout_ms: 60_000, allowed_hosts: [], cors_origins: [] }, 'no file at all');
});

t.test('unknown keys are rejected with their full path', async (t) => {
  rejects(t, 'listne:\n  port: 1\n', 'listne');
  rejects(t, 'listen:\n  prot: 1\n', 'listen.prot');
  const msg = rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    replica: 2\n', 'deployments[0].replica');
  t.match(msg, /unknown option/);
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n  - model: n\n    version: "1"\n    upstream: { idle_timeout: 5 }\n', 'deployments[1].upstream.idle_timeout');
});

t.test('bad types and ranges name the field', async (t) => {
  t.match(rejects(t, 'listen:\n  port: http\n', 'listen.port'), /expected a number/);
  t.match(rejects(t, 'listen:\n  port: 70000\n', 'listen.port'), /<= 65535/);
  t.match(rejects(t, 'workers: -1\n', 'workers'), />= 0/);
  t.match(rejects(t, 'workers: 1.5\n', 'workers'), /integer/);
  t.match(rejects(t, 'limits:\n  max_body_bytes: 1.5\n', 'limits.max_body_bytes'), /integer/);
  t.match(rejects(t, 'limits:\n  max_body_bytes: -1\n', 'limits.max_body_bytes'), />= 0/);
  t.match(rejects(t, 'upstream:\n  idle_timeout_ms: 0\n', 'upstream.idle_timeout_ms'), />= 1/);
  t.match(rejects(t, 'log:\n  level: loud\n', 'log.level'), /one of/);
  t.match(rejects(t, 'log:\n  access: maybe\n', 'log.access'), /true or false/);
  t.match(rejects(t, 'listen: 8080\n', 'listen'), /expected an object/);
  t.match(rejects(t, 'deployments:\n  model: m\n', 'deployments'), /expected a list/);
  t.match(rejects(t, 'deployments:\n  - version: "1"\n', 'deployments[0].model'), /required/);
  rejects(t, 'deployments:\n  - model: "-bad name"\n    version: "1"\n', 'deployments[0].model');
  t.match(rejects(t, 'deployments:\n  - model: m\n    version: 1-2\n', 'deployments[0].version'), /does not match/, 'a version cannot hold a hyphen');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    runtime: docker\n', 'deployments[0].runtime');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    replicas: 0\n', 'deployments[0].replicas');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    runtime: remote\n    urls: [ftp://x]\n', 'deployments[0].urls[0]');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    runtime: remote\n    urls: [{url: "http://x", weight: -1}]\n', 'deployments[0].urls[0].weight');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    runtime: remote\n    urls: [{url: "http://x", tier: 1}]\n', 'deployments[0].urls[0].tier');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    runtime: remote\n    urls: [{weight: 2}]\n', 'deployments[0].urls[0].url');
  rejects(t, 'deployments:\n  - model: m\n    version: "1"\n    args: [1, {a: 1}]\n', 'deployments[0].args[1]');
  rejects(t, 'deployments:\n  - {model: m, version: "1", replicas: 4, scale: {max_replicas: 3, target_inflight_per_replica: 2}}\n', 'deployments[0].replicas');
  rejects(t, 'deployments:\n  - {model: m, version: "1", scale: {min_replicas: 3, max_replicas: 2, target_inflight_per_replica: 2}}\n', 'deployments[0].scale.max_replicas');
  rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: remote, urls: ["http://x"], scale: {min_replicas: 0}}\n', 'deployments[0].scale.min_replicas');
  rejects(t, 'traffic:\n  m: { "1": -5 }\ndeployments:\n  - {model: m, version: "1"}\n', 'traffic.m.1');
});

t.test('listen.front_end and listen.client_idle_timeout_ms are checked, naming the field', async (t) => {
  t.equal(load('listen: { front_end: node }').listen.front_end, 'node');
  t.match(rejects(t, 'listen: { front_end: nginx }', 'listen.front_end'), /auto, node, uws/);
  rejects(t, 'listen: { client_idle_timeout_ms: 10 }', 'listen.client_idle_timeout_ms');
  rejects(t, 'listen: { cors_origins: ["https://app.example.com", "not an origin"] }', 'listen.cors_origins[1]');
  t.same(load('listen: { cors_origins: ["https://app.example.com"] }').listen.cors_origins, ['https://app.example.com'], 'a list of its own replaces the default');
  // Each worker binds its socket by address: a name is refused at load, naming the field.
  t.match(rejects(t, 'listen: { host: gateway.internal }', 'listen.host'), /IP address/);
  t.equal(load('listen: { host: localhost }').listen.host, 'localhost');
  t.equal(load('listen: { host: "::" }').listen.host, '::');
  t.equal(load('listen: { host: gateway.internal, front_end: uws }').listen.host, 'gateway.internal', 'uws resolves names itself');
});

t.test('cross-field checks', async (t) => {
  t.match(rejects(t, 'deployments:\n  - {model: m, version: "1"}\n  - {model: n, version: "1"}\n  - {model: m, version: "1"}\n', 'deployments[2]'), /duplicate deployment m-1/);
  t.match(rejects(t, 'deployments:\n  - {model: m, version: "1"}\ntraffic:\n  m: { "1": 80, "2": 20 }\n', 'traffic.m.2'), /no such deployment/);
  rejects(t, 'traffic:\n  ghost: { "1": 100 }\n', 'traffic.ghost.1');
  rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: remote}\n', 'deployments[0].urls');
  rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: command}\n', 'deployments[0].command');
  t.match(rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: llamacpp}\n', 'deployments[0].model_path'), /GGUF/);
  t.match(rejects(t, `deployments:\n  - {model: m, version: "1", runtime: llamacpp, model_path: ${join(dir, 'absent.gguf')}}\n`, 'deployments[0].model_path'), /not a file/);
  rejects(t, `deployments:\n  - {model: m, version: "1", runtime: llamacpp, model_path: ${dir}}\n`, 'deployments[0].model_path');
  t.match(rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: llamacpp, model_path: models/m.gguf}\n', 'deployments[0].model_path'), /does not match/, 'a relative path');
  t.match(rejects(t, `deployments:\n  - {model: m, version: "1", runtime: sim, model_path: ${gguf}}\n`, 'deployments[0].model_path'), /only for the llamacpp runtime/);
  rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: command, command: [x, "{port}"], python: /usr/bin/python3}\n', 'deployments[0].python');
  const llama = load(`deployments:\n  - {model: m, version: "1", runtime: llamacpp, model_path: ${gguf}, args: [--n_ctx, "4096"]}\n`).deployments[0]!;
  t.match(llama, { runtime: 'llamacpp', model_path: gguf, python: null, args: ['--n_ctx', '4096'] }, 'a llamacpp deployment on a file that exists');
  t.match(rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: sim, health_check: {path: /h}}\n', 'deployments[0].health_check'), /only for the remote runtime/);
  rejects(t, 'deployments:\n  - {model: m, version: "1", runtime: remote, urls: [http://h], health_check: {unhealthy_threshold: 0}}\n', 'deployments[0].health_check.unhealthy_threshold');
  rejects(t, 'ports:\n  from: 9000\n  to: 8000\n', 'ports.from');
});

t.test('environment variables override the file', async (t) => {
  const text = 'listen:\n  port: 8080\nadmin:\n  port: 8081\nworkers: 1\n';
  const c = load(text, {
    SLUICE_PORT: '9999', SLUICE_HOST: '127.0.0.2', SLUICE_ADMIN_PORT: '9998', SLUICE_ADMIN_HOST: '127.0.0.3',
    SLUICE_ADMIN_TOKEN: 's3cret', SLUICE_WORKERS: '3', SLUICE_STATE_DIR: '/tmp/x', SLUICE_LOG_LEVEL: 'warn',
    SLUICE_MAX_BODY_BYTES: '1024',
  });
  t.same({ ...c.listen, cors_origins: [] }, { host: '127.0.0.2', port: 9999, forwarded_for: false, front_end: 'auto', client_idle_timeout_ms: 10_000, client_header_timeout_ms: 60_000, allowed_hosts: [], cors_origins: [] });
  t.same(c.admin, { host: '127.0.0.3', port: 9998, token: 's3cret' });
  t.equal(c.workers, 3);
  t.equal(c.state_dir, '/tmp/x');
  t.equal(c.log.level, 'warn');
  t.equal(c.limits.max_body_bytes, 1024);
  t.equal(load(text, { SLUICE_PORT: '' }).listen.port, 8080, 'an empty variable is ignored');
  t.equal(load(text, { SLUICE_UNRELATED: '1' }).listen.port, 8080);
  const bad = rejects(t, text, 'listen.port', { SLUICE_PORT: 'abc' });
  t.match(bad, /expected a number/, 'a bad override names the field it sets');
  t.match(bad, /SLUICE_PORT/, '...and the variable it came from');
  t.match(rejects(t, text, 'log.level', { SLUICE_LOG_LEVEL: 'chatty' }), /SLUICE_LOG_LEVEL/);
  t.notMatch(rejects(t, 'listen:\n  port: abc\n', 'listen.port', { SLUICE_ADMIN_PORT: '1' }), /SLUICE_/, 'a bad file value does not blame the environment');
  t.equal(loadConfig(null, { SLUICE_PORT: '1234' }).listen.port, 1234, 'overrides apply without a file');
});

t.test('tracing: off by default; the standard OTEL_* variables override the file', async (t) => {
  t.same(load('').tracing, {
    enabled: false, endpoint: 'http://localhost:4318/v1/traces', headers: {}, service_name: 'sluice', sample_ratio: 1, parent_based: true,
  });
  const text = 'tracing:\n  enabled: true\n  endpoint: http://collector:4318/v1/traces\n  sample_ratio: 0.5\n  headers: { x-token: from-file }\n';
  t.match(load(text).tracing, { enabled: true, endpoint: 'http://collector:4318/v1/traces', sample_ratio: 0.5, headers: { 'x-token': 'from-file' } });
  const env = load(text, {
    OTEL_SERVICE_NAME: 'gw-eu', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4318/', OTEL_EXPORTER_OTLP_HEADERS: 'x-token=a%20b,x-other=1',
    OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25',
  }).tracing;
  t.same(env, { enabled: true, endpoint: 'http://otel:4318/v1/traces', headers: { 'x-token': 'a b', 'x-other': '1' }, service_name: 'gw-eu', sample_ratio: 0.25, parent_based: false });
  t.equal(load(text, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:2/traces' }).tracing.endpoint, 'http://b:2/traces', 'the signal\'s own URL, as given, wins');
  t.equal(load(text, { OTEL_SDK_DISABLED: 'true' }).tracing.enabled, false, 'OTEL_SDK_DISABLED=true turns it off');
  t.equal(load('', { OTEL_SDK_DISABLED: 'false' }).tracing.enabled, true, 'OTEL_SDK_DISABLED=false turns it on without a file');
  t.equal(load(text, { OTEL_TRACES_EXPORTER: 'none' }).tracing.enabled, false);
  t.match(load(text, { OTEL_TRACES_SAMPLER: 'parentbased_always_off' }).tracing, { sample_ratio: 0, parent_based: true });
  t.match(rejects(t, text, 'tracing.sample_ratio', { OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG/, 'a bad ratio names the variable');
  t.match(rejects(t, text, 'tracing.sample_ratio', { OTEL_TRACES_SAMPLER: 'xray' }), /OTEL_TRACES_SAMPLER/);
  t.match(rejects(t, text, 'tracing', { OTEL_TRACES_EXPORTER: 'zipkin' }), /only otlp/);
  rejects(t, text, 'tracing.headers', { OTEL_EXPORTER_OTLP_HEADERS: 'novalue' });
});

t.test('invalid YAML gives a clear error naming the file and the place', async (t) => {
  const path = file('listen:\n  port: 8080\n  host: [unclosed\n');
  const err = t.throws(() => loadConfig(path, {})) as Error;
  t.ok(err instanceof ConfigError);
  t.match(err.message, path);
  t.match(err.message, /invalid YAML/);
  t.match(err.message, /line \d+/, 'the YAML parser says where');

  const list = file('- a\n- b\n');
  t.throws(() => loadConfig(list, {}), { message: /top level must be a map/ });
  t.throws(() => loadConfig(join(dir, 'missing.yaml'), {}), { message: /cannot read/ });
});

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SLUICE_PORT: '', SLUICE_ADMIN_PORT: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    // 'close', not 'exit': the output is read to its end first.
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('sluice serve --config bad.yaml exits non-zero naming the field', async (t) => {
  const bad = file('listen:\n  port: 0\n  host: 127.0.0.1\nadmin:\n  port: 0\ndeployments:\n  - model: demo\n    version: "1"\n    replica: 2\n');
  const r = await runCli(['serve', '--config', bad]);
  t.not(r.code, 0, 'exit code is non-zero');
  t.not(r.code, null, 'it exits by itself, not by our kill');
  t.match(r.stderr, 'deployments[0].replica');
  t.match(r.stderr, /unknown option/);
  t.notMatch(r.stdout, /sluice is listening/, 'it never started');

  const yaml = file('listen: [\n');
  const r2 = await runCli(['serve', '--config', yaml]);
  t.not(r2.code, 0);
  t.match(r2.stderr, /invalid YAML/);

  const r3 = await runCli(['serve', '--config', join(dir, 'nope.yaml')]);
  t.not(r3.code, 0);
  t.match(r3.stderr, /cannot read/);
});

t.test('dependencies: a breaker per dependency and use, defaults filled in, bad values named', async (t) => {
  const c = load('dependencies:\n  redis:\n    cache: {volume_threshold: 40}\n');
  t.same(c.dependencies.redis.cache, { error_threshold_percentage: 50, volume_threshold: 40, reset_timeout_ms: 2_000, rolling_window_ms: 10_000 }, 'a field set, the others from the defaults');
  t.same(c.dependencies.redis.rate_limit, { error_threshold_percentage: 50, volume_threshold: 10, reset_timeout_ms: 2_000, rolling_window_ms: 10_000 });
  t.equal(c.dependencies.redis.state.timeout_ms, 2_000, 'the state store\'s call timeout');
  t.same(c.dependencies.mlflow.registry, { error_threshold_percentage: 50, volume_threshold: 3, reset_timeout_ms: 5_000, rolling_window_ms: 10_000, timeout_ms: 10_000 });
  rejects(t, 'dependencies:\n  redis:\n    rate_limit: {error_threshold_percentage: 150}\n', 'dependencies.redis.rate_limit.error_threshold_percentage');
  rejects(t, 'dependencies:\n  mlflow:\n    registry: {reset_timeout_ms: 0}\n', 'dependencies.mlflow.registry.reset_timeout_ms');
  rejects(t, 'dependencies:\n  redis:\n    cache: {timeout_ms: 5}\n', 'dependencies.redis.cache.timeout_ms');
  t.same(c.dependencies.otlp.export, { error_threshold_percentage: 50, volume_threshold: 3, reset_timeout_ms: 10_000, rolling_window_ms: 10_000 }, 'the OTLP collector\'s');
  rejects(t, 'dependencies:\n  otlp: {export: {volume_threshold: 0}}\n', 'dependencies.otlp.export.volume_threshold');
  rejects(t, 'dependencies:\n  jaeger: {}\n', 'dependencies.jaeger');
});
