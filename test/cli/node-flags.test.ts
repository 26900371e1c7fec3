// The Node flags sluice runs with (src/node-flags.ts): `sluice node-flags` prints them for
// launch scripts, and `serve` started without them says so in its log.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli.js');
// Listen and admin ports 18840-18843 belong to this file.

t.test('node-flags prints the flags, space-separated, for $(...)', async (t) => {
  const out = spawnSync(process.execPath, [CLI, 'node-flags'], { encoding: 'utf8' });
  t.equal(out.status, 0);
  t.equal(out.stdout, '--no-memory-reducer --single-threaded-gc\n');
});

/** Starts serve with `nodeFlags`, returns its log lines up to "sluice is listening", then stops it. */
async function startupLog(nodeFlags: string[], port: number): Promise<Array<Record<string, unknown>>> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-flags-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `listen: { host: 127.0.0.1, port: ${port} }\nadmin: { port: ${port + 1} }\nworkers: 1\nstate_dir: ${join(dir, 'state')}\nshutdown: { drain_delay_ms: 0 }\ndeployments: []\n`);
  const child = spawn(process.execPath, [...nodeFlags, CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<Record<string, unknown>> = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('serve did not log "sluice is listening" within 20 s')), 20_000);
      createInterface({ input: child.stdout! }).on('line', (l) => {
        const line = JSON.parse(l) as Record<string, unknown>;
        lines.push(line);
        if (line.msg === 'sluice is listening') {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
  return lines;
}

const WARNING = /started without the recommended Node flags/;

t.test('serve started without them warns, naming the missing flags', async (t) => {
  const warning = (await startupLog(['--single-threaded-gc'], 18840)).find((l) => WARNING.test(String(l.msg)));
  t.ok(warning, 'a warning at start-up');
  t.equal(warning?.level, 'warn');
  t.same(warning?.missing, ['--no-memory-reducer'], 'the one it lacks, not the one it has');
});

t.test('serve started with them does not', async (t) => {
  const lines = await startupLog(['--no-memory-reducer', '--single-threaded-gc'], 18842);
  t.notOk(lines.some((l) => WARNING.test(String(l.msg))), 'no warning');
});
