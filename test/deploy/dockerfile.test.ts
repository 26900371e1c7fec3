// The Dockerfile passes hadolint (warnings and errors fail; an ignore needs its reason on
// the line above it), and its final stage keeps the contract the other deploy tests and
// the Kubernetes manifests rely on. Its behaviour is run by container.test.ts.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { NODE_FLAGS } from '../../src/node-flags.js';
import { DOCKERFILE, readImage } from '../helpers/dockerfile.js';

const HADOLINT = join(import.meta.dirname, '..', '..', '.venv-tools', 'bin', 'hadolint');

t.test('hadolint finds nothing at warning level or above', async (t) => {
  // A hadolint.yaml in HOME or XDG_CONFIG_HOME could silence rules: neither is looked at.
  const home = mkdtempSync(join(tmpdir(), 'sluice-hadolint-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const out = spawnSync(HADOLINT, ['--no-color', '--failure-threshold', 'warning', '--format', 'json', DOCKERFILE], {
    encoding: 'utf8', env: { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: home }, timeout: 20_000,
  });
  t.equal(out.error, undefined, `${HADOLINT} runs (bash scripts/setup-tools.sh installs it)`);
  const findings = JSON.parse(out.stdout) as Array<{ line: number; code: string; level: string; message: string }>;
  t.same(findings.filter((f) => f.level === 'error' || f.level === 'warning'), [], 'no warning or error');
  t.equal(out.status, 0, `hadolint exits 0 ${out.stderr}`);
});

t.test('the final stage: tini as PID 1, the Node flags, a non-root user, the state dir a volume', async (t) => {
  const image = readImage();
  t.same(image.entrypoint.slice(0, 3), ['/usr/bin/tini', '--', 'node'], 'tini runs node (exec form: no shell in between)');
  const nodeArgs = image.entrypoint.slice(3);
  for (const flag of NODE_FLAGS) t.ok(nodeArgs.includes(flag), `node gets ${flag} (src/node-flags.ts)`);
  t.equal(nodeArgs[nodeArgs.length - 1], 'dist/cli.js', 'then sluice, whose command is the CMD');
  t.equal(image.cmd[0], 'serve', 'CMD serves');
  t.not(image.user.uid, 0, 'USER is not root');
  const stateDir = image.env.SLUICE_STATE_DIR!;
  t.ok(image.volumes.includes(stateDir), `SLUICE_STATE_DIR (${stateDir}) is a VOLUME`);
  // A new named volume takes the ownership of the image's directory: the user must own it.
  const { uid, gid } = image.user;
  t.ok(image.runs.some((r) => new RegExp(`install -d -o ${uid} -g ${gid} (-m \\d+ )?${stateDir}(\\s|$)`).test(r)), `a RUN makes ${stateDir} owned by ${uid}:${gid}`);
  t.equal(image.env.SLUICE_HOST, '0.0.0.0', 'the data plane listens on every interface');
  t.match(image.env.SLUICE_ADMIN_PORT, /^\d+$/, 'the admin port HEALTHCHECK asks is set');
});
