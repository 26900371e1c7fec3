// What `sluice serve` refuses in a config file, through the real CLI, naming the field:
// one key under two API key names (only one of them could ever match a request), and a
// credential written as a `${VAR}` placeholder, which sluice does not expand (it would be
// the credential as written), and a deployment field the servers' launcher would refuse,
// named as the file or the admin API's body has it and refused before any server starts; an
// integer whose YAML text is not its value (version: 02) is kept as written.
// Ports 19700-19709 belong to this file: the gateway 19700 (admin 19701), replicas 19702-19705;
// one more gateway 19706 (admin 19707), replicas 19708-19709.

import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { adminClient } from '../helpers/control.js';
import { spawnCli, startGateway, waitForLine } from '../helpers/procs.js';

t.setTimeout(180_000);

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-fields-'));
let seq = 0;

/** `sluice serve` on YAML `text` with `env`, to its exit: its status and output. */
async function serve(text: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string; lines: string[] }> {
  const file = join(dir, `config-${++seq}.yaml`);
  const admin = text.startsWith('admin:') ? '' : 'admin: { host: 127.0.0.1, port: 19701 }\n';
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 19700 }\n${admin}workers: 1\nports: { from: 19702, to: 19705 }\nstate_dir: ${join(dir, `state-${seq}`)}\n${text}`);
  const proc = spawnCli(['serve', '--config', file], env);
  const timer = setTimeout(() => proc.child.kill('SIGTERM'), 30_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, stderr: proc.stderr.join('\n'), lines: proc.lines };
}

t.test('one key under two API key names is refused, naming the second', async (t) => {
  const digest = createHash('sha256').update('same-key-0123456789').digest('hex');
  const cases: Array<[string, string]> = [
    ['api_keys[1].key', 'api_keys:\n  - { name: ka, key: same-key-0123456789, deployments: [a] }\n  - { name: kb, key: same-key-0123456789, deployments: [b] }\n'],
    ['api_keys[1].key_sha256', `api_keys:\n  - { name: ka, key_sha256: ${digest} }\n  - { name: kb, key_sha256: ${digest} }\n`],
    ['api_keys[2].key', `api_keys:\n  - { name: ka, key_sha256: ${digest} }\n  - { name: other, key: another-0123456789 }\n  - { name: kb, key: same-key-0123456789 }\n`],
  ];
  for (const [field, text] of cases) {
    const { code, stderr } = await serve(text);
    t.equal(code, 1, `${field}: exit 1`);
    t.match(stderr, `config: ${field}: the same key as API key ka`, `${field}: named, with the first key's name`);
    t.notMatch(stderr, 'same-key-0123456789', `${field}: the key is not echoed`);
  }
});

t.test('a credential written as a variable placeholder is refused, naming the field and what sets it', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['admin.token', 'admin: { host: 127.0.0.1, port: 19701, token: "${ADMIN_TOKEN}" }\n', 'set SLUICE_ADMIN_TOKEN instead'],
    ['api_keys[0].key', 'api_keys:\n  - { name: ka, key: "${TEAM_A_API_KEY}" }\n', 'give key_sha256'],
    ['api_keys[1].key', 'api_keys:\n  - { name: ok, key: fine-key-0123456789 }\n  - { name: kb, key: "$(TEAM_B_API_KEY)" }\n', 'give key_sha256'],
    ['redis.url', 'redis: { url: "redis://:${REDIS_PASSWORD}@127.0.0.1:19706" }\n', 'set SLUICE_REDIS_URL instead'],
    ['tracing.headers.x-api-key', 'tracing: { headers: { x-api-key: "${OTLP_KEY}" } }\n', 'set OTEL_EXPORTER_OTLP_HEADERS instead'],
  ];
  for (const [field, text, instead] of cases) {
    const { code, stderr } = await serve(text, { ADMIN_TOKEN: 'real-admin-token', TEAM_A_API_KEY: 'real-key-0123456789' });
    t.equal(code, 1, `${field}: exit 1`);
    t.match(stderr, `config: ${field}: holds a variable placeholder, which sluice does not expand`, `${field}: named`);
    t.match(stderr, instead, `${field}: says what sets it instead`);
  }
});

t.test("a deployment field the servers' launcher would refuse is refused at load, named as written, before any server starts", async (t) => {
  const ok = '  - { model: ok, version: "1", runtime: sim }\n';
  const cases: Array<[string, string]> = [
    ['deployments[1].readiness_path', '  - { model: d, version: "1", runtime: command, command: ["x", "{port}"], readiness_path: "/é" }\n'],
    ['deployments[1].args[1]', '  - { model: d, version: "1", runtime: sim, args: ["--tokens", "a\\0"] }\n'],
    ['deployments[1].command[0]', '  - { model: d, version: "1", runtime: command, command: ["", "{port}"] }\n'],
    ['deployments[1].env.A=B', '  - { model: d, version: "1", runtime: sim, env: { "A=B": x } }\n'],
    ['deployments[1].env.A', '  - { model: d, version: "1", runtime: sim, env: { A: "s3cr\\0t" } }\n'],
    ['deployments[1].keep_alive', '  - { model: d, version: "1", runtime: ollama, keep_alive: "10x" }\n'],
  ];
  for (const [field, deployment] of cases) {
    const { code, stderr, lines } = await serve(`deployments:\n${ok}${deployment}`);
    t.equal(code, 1, `${field}: exit 1`);
    t.match(stderr, `config: ${field}: `, `${field}: named as in the file`);
    t.notOk(lines.some((l) => l.includes('"replica state"')), `${field}: no server was started`);
  }
  t.notMatch((await serve(`deployments:\n${ok}${cases[4]![1]}`)).stderr, 's3cr', 'an environment value is not echoed');
});

t.test("the admin API names a deployment's fields as the body has them", async (t) => {
  // Ports 19706-19709: this gateway 19706 (admin 19707), its replicas 19708-19709.
  const gw = await startGateway({ listen: { host: '127.0.0.1', port: 19706 }, admin: { host: '127.0.0.1', port: 19707 }, ports: { from: 19708, to: 19709 }, state_dir: join(dir, 'state-api') }, {}, false);
  t.teardown(() => gw.stop());
  const admin = adminClient(gw.adminUrl);
  const cases: Array<[string, Record<string, unknown>]> = [
    ['readiness_path', { runtime: 'command', command: ['x', '{port}'], readiness_path: '/é' }],
    ['args[1]', { runtime: 'sim', args: ['--tokens', 'a\u0000'] }],
    ['command[0]', { runtime: 'command', command: ['', '{port}'] }],
    ['env.A=B', { runtime: 'sim', env: { 'A=B': 'x' } }],
    ['keep_alive', { runtime: 'ollama', keep_alive: '10x' }],
  ];
  for (const [field, spec] of cases) {
    const r = await admin.post('/v1/deployments', { model: 'd', version: '1', ...spec });
    t.equal(r.status, 400, `${field}: 400`);
    t.equal(r.body?.error?.field, field, `${field}: the field as the body has it (${r.text.slice(0, 160)})`);
  }
  t.same(await admin.list(), [], 'nothing was deployed');
});

t.test('an integer written with other text than its value (02, 007, 1e3) is kept as written where a name is expected', async (t) => {
  const file = join(dir, 'integers.yaml');
  writeFileSync(file, [
    'listen: { host: 127.0.0.1, port: 19700 }', 'admin: { host: 127.0.0.1, port: 19701 }', 'workers: 1', 'ports: { from: 19702, to: 19705 }',
    `state_dir: ${join(dir, 'state-integers')}`,
    // Where a number is expected, the text is still read as one.
    'limits: { max_body_bytes: 1e6 }',
    'deployments:', '  - { model: v, version: 02, runtime: sim }', '  - { model: w, version: 1e3, runtime: sim }', '  - { model: x, version: 2, runtime: sim }',
    'traffic: { v: { 02: 100 } }', '',
  ].join('\n'));
  const proc = spawnCli(['serve', '--config', file]);
  t.teardown(() => proc.stop());
  const ready = await waitForLine(proc, (l) => l.includes('"msg":"ready"') || l.startsWith('sluice: '), 60_000);
  t.match(ready, '"msg":"ready"', `it starts (${ready.slice(0, 200)})`);
  const ids = (JSON.parse(ready) as { deployments: string[] }).deployments.map((d) => d.split(':')[0]).sort();
  t.same(ids, ['v-02', 'w-1e3', 'x-2'], 'the versions as written: v-02, w-1e3; x-2 as ever');
  t.equal(await proc.stop(), 0, 'stops cleanly');
});
