// What `sluice serve` refuses in a config file, through the real CLI, naming the field:
// one key under two API key names (only one of them could ever match a request), and a
// credential written as a `${VAR}` placeholder, which sluice does not expand (it would be
// the credential as written).
// Ports 19700-19705 belong to this file: the gateway 19700 (admin 19701), replicas 19702-19705.

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnCli } from '../helpers/procs.js';

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
  const [code] = (await once(proc.child, 'exit')) as [number | null];
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
