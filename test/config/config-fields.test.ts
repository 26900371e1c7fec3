// What `sluice serve` refuses in a config file, through the real CLI, naming the field:
// one key under two API key names (only one of them could ever match a request).
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
  writeFileSync(file, `listen: { host: 127.0.0.1, port: 19700 }\nadmin: { host: 127.0.0.1, port: 19701 }\nworkers: 1\nports: { from: 19702, to: 19705 }\nstate_dir: ${join(dir, `state-${seq}`)}\n${text}`);
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
