// What `sluice serve` says about a value it refuses, through the real CLI: a URL's password
// is never echoed (redis.url, tracing.endpoint, mlflow.tracking_uri, a remote deployment's
// urls), nor its query, which may hold a key (there and in the tracing start-up line), and
// a YAML decimal where a name is expected (version: 1.10, which YAML reads as 1.1) is
// refused, naming the field, rather than becoming another deployment id. The admin API's
// JSON deploy refuses a number for a version too, and hides a URL's password.
// Replica ports 19248-19249 belong to this file.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnCli, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(180_000);

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-echo-'));
let seq = 0;
let gw: Gateway | undefined;

t.teardown(async () => {
  await gw?.stop();
});

/** `sluice serve` on YAML `text` with `env`, to its exit: its status and stderr. */
async function serve(text: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  const file = join(dir, `config-${++seq}.yaml`);
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nworkers: 1\nports: { from: 19248, to: 19249 }\nstate_dir: ${join(dir, `state-${seq}`)}\n${text}`);
  const proc = spawnCli(['serve', '--config', file], env);
  const timer = setTimeout(() => proc.child.kill('SIGTERM'), 30_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stderr: proc.stderr.join('\n') };
}

t.test('a refused URL is echoed with its password as ***', async (t) => {
  const cases: Array<[string, string, NodeJS.ProcessEnv, string]> = [
    ['redis.url', '', { SLUICE_REDIS_URL: 'http://:SuperSecretPw123@localhost:18850' }, "'http://:***@localhost:18850'"],
    ['redis.url', 'redis: { url: "http://admin:SuperSecretPw123@localhost:6379" }\n', {}, "'http://admin:***@localhost:6379'"],
    ['tracing.endpoint', '', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'ftp://user:SuperSecretPw123@x' }, "'ftp://user:***@x'"],
    ['tracing.endpoint', 'tracing: { endpoint: "ftp://SuperSecretPw123@x/v1/traces" }\n', {}, "'ftp://***@x/v1/traces'"],
    ['mlflow.tracking_uri', '', { MLFLOW_TRACKING_URI: 'ftp://u:SuperSecretPw123@mlflow' }, "'ftp://u:***@mlflow'"],
    ['deployments[0].urls[0]', 'deployments:\n  - { model: r, version: "1", runtime: remote, urls: ["ftp://u:SuperSecretPw123@h"] }\n', {}, "'ftp://u:***@h'"],
    ['tracing.endpoint', 'tracing: { endpoint: "ftp://x/v1/traces?api_key=SuperSecretPw123" }\n', {}, "'ftp://x/v1/traces?***'"],
  ];
  for (const [field, text, env, shown] of cases) {
    const { code, stderr } = await serve(text, env);
    t.equal(code, 1, `${field}: exit 1`);
    t.match(stderr, `config: ${field}: ${shown} does not match`, `${field}: the URL without its password`);
    t.notMatch(stderr, 'SuperSecretPw123', `${field}: the password is not echoed`);
  }
});

t.test('a URL that matches its field\'s pattern but does not parse is refused, naming the field, without its password', async (t) => {
  const cases: Array<[string, string, NodeJS.ProcessEnv, string]> = [
    // ioredis printed this one whole in a deprecation warning and connected to 127.0.0.1:6379 instead.
    ['redis.url', 'redis: { url: "redis://:SuperSecretPw123@127.0.0.1:notaport" }\n', {}, "'redis://:***@127.0.0.1:notaport'"],
    ['redis.url', '', { SLUICE_REDIS_URL: 'redis://:SuperSecretPw123%zz@127.0.0.1:18850' }, "'redis://:***@127.0.0.1:18850'"],
    ['deployments[0].urls[0]', 'deployments:\n  - { model: r, version: "1", runtime: remote, urls: ["http://x:99999"] }\n', {}, "'http://x:99999'"],
    ['deployments[0].urls[0]', 'deployments:\n  - { model: r, version: "1", runtime: remote, urls: ["http://[::1/v1"] }\n', {}, "'http://[::1/v1'"],
  ];
  for (const [field, text, env, shown] of cases) {
    const { code, stderr } = await serve(text, env);
    t.equal(code, 1, `${field}: exit 1`);
    t.match(stderr, `config: ${field}: ${shown} is not a valid URL`, `${field}: refused, naming the field`);
    t.notMatch(stderr, 'SuperSecretPw123', `${field}: the password is not echoed`);
    t.notMatch(stderr, 'ECONNREFUSED', `${field}: nothing was connected to`);
  }
  // Every registry call was a 500 showing this URI whole.
  {
    const { code, stderr } = await serve('mlflow: { tracking_uri: "http://ml:SuperSecretPw123@127.0.0.1:19249/?token=SuperSecretPw123" }\n');
    t.equal(code, 1);
    t.match(stderr, "config: mlflow.tracking_uri: 'http://ml:***@127.0.0.1:19249/?***' must not have a query or fragment");
    t.notMatch(stderr, 'SuperSecretPw123');
  }
  // The admin API: 400 naming the field, where an unparsable remote URL was a 500.
  const admin = await startGateway({ ports: { from: 19248, to: 19249 } });
  t.teardown(() => admin.stop());
  const r = await fetch(`${admin.adminUrl}/v1/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'bad', version: '1', runtime: 'remote', urls: ['http://x:99999'] }) });
  t.equal(r.status, 400);
  t.match(await r.text(), /urls\[0\].*not a valid URL/);
});

t.test('the tracing start-up line shows the collector without its password or query', async (t) => {
  const traced = await startGateway({
    ports: { from: 19248, to: 19249 },
    tracing: { enabled: true, endpoint: 'http://u:SuperSecretPw123@127.0.0.1:19249/v1/traces?api_key=SuperSecretPw456' },
  });
  t.teardown(() => traced.stop());
  const line = traced.lines.find((l) => l.includes('every worker exports its spans'));
  t.match(line, '"endpoint":"http://u:***@127.0.0.1:19249/v1/traces?***"', 'the endpoint, its secrets as ***');
  t.notMatch(traced.lines.join('\n'), /SuperSecretPw(123|456)/, 'no secret in any line');
});

t.test('a decimal version is refused with the field named, an integer one still works', async (t) => {
  for (const version of ['1.10', '3.50', '2.5']) {
    const { code, stderr } = await serve(`deployments:\n  - { model: x, version: ${version} }\n`);
    t.equal(code, 1, `version: ${version}: exit 1`);
    t.match(stderr, /config: deployments\[0\]\.version: expected a string, got the number [\d.]+ .*quote it/, `version: ${version}: named, and told to quote it`);
  }
  // Quoted, 1.10 is the id written; an integer is still taken as its text.
  gw = await startGateway({ ports: { from: 19248, to: 19249 }, deployments: [{ model: 'x', version: '1.10' }, { model: 'y', version: 2 }] });
  const list = (await (await fetch(`${gw.adminUrl}/v1/deployments`)).json()) as { deployments: Array<{ id: string }> };
  t.same(list.deployments.map((d) => d.id).sort(), ['x-1.10', 'y-2']);
  t.equal((await fetch(`${gw.url}/x-1.10/_sim/stats`)).status, 200, '/x-1.10/ routes');
});

t.test('the admin API: a number version refused (400, field named), a URL password hidden', async (t) => {
  const post = async (body: Record<string, unknown>): Promise<{ status: number; text: string }> => {
    const r = await fetch(`${gw!.adminUrl}/v1/deployments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, text: await r.text() };
  };
  const decimal = await post({ model: 'x', version: 1.1 });
  t.equal(decimal.status, 400);
  t.match(decimal.text, /version: expected a string/);
  const remote = await post({ model: 'r', version: '1', runtime: 'remote', urls: ['ftp://u:SuperSecretPw123@h'] });
  t.equal(remote.status, 400);
  t.match(remote.text, "'ftp://u:***@h'");
  t.notMatch(remote.text, 'SuperSecretPw123');
  const list = (await (await fetch(`${gw!.adminUrl}/v1/deployments`)).json()) as { deployments: Array<{ id: string }> };
  t.same(list.deployments.map((d) => d.id).sort(), ['x-1.10', 'y-2'], 'nothing more deployed');
});
