// `--help` on every command, and usage errors exit 2, for the commands cli.ts runs itself
// (serve and node-flags; sim has its own test): `serve --help` printed "Unknown option" and
// exited 1, `node-flags --help` printed the flags.

import { spawnSync } from 'node:child_process';
import t from 'tap';
import { CLI } from '../helpers/procs.js';

t.setTimeout(120_000);

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('serve --help and -h: the usage on stdout, exit 0, nothing started', async (t) => {
  for (const flag of ['--help', '-h']) {
    const r = run('serve', flag);
    t.equal(r.status, 0, `serve ${flag}: exit 0`, { stderr: r.stderr });
    t.match(r.stdout, /^Usage: sluice serve \[--config FILE\]/, `serve ${flag}: the usage`);
    t.match(r.stdout, /--config FILE/);
    t.equal(r.stderr, '', `serve ${flag}: no error`);
  }
});

t.test('serve usage errors: exit 2, the error and the usage on stderr', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /Unknown option '--bogus'/],
    [['--config'], /argument missing/],
    [['extra'], /Unexpected argument 'extra'/],
  ];
  for (const [args, message] of cases) {
    const r = run('serve', ...args);
    t.equal(r.status, 2, `serve ${args.join(' ')}: exit 2`, { stderr: r.stderr });
    t.match(r.stderr, message);
    t.match(r.stderr, /Usage: sluice serve/);
    t.equal(r.stdout, '');
  }
});

t.test('node-flags --help: the usage, not the flags; an unknown argument: exit 2', async (t) => {
  for (const flag of ['--help', '-h']) {
    const r = run('node-flags', flag);
    t.equal(r.status, 0);
    t.match(r.stdout, /^Usage: sluice node-flags/);
    t.notMatch(r.stdout, /^--no-memory-reducer/m);
  }
  const bad = run('node-flags', '--bogus');
  t.equal(bad.status, 2);
  t.match(bad.stderr, /Usage: sluice node-flags/);
  t.equal(run('node-flags').stdout, '--no-memory-reducer --single-threaded-gc\n', 'without arguments: the flags');
});
