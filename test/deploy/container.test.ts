// The image's contract, without a container engine: the app laid out as the Dockerfile's
// COPY lines lay it out (from this checkout's build), started with the final stage's
// ENTRYPOINT, CMD, ENV, USER and WORKDIR as written, in a mount namespace whose every file
// system is read-only but the state volume at its path (Kubernetes' readOnlyRootFilesystem
// with the state volume), as the image's unprivileged user with no capability and no_new_privs
// (capabilities drop ALL, allowPrivilegeEscalation false). It must serve the demo
// deployment, pass its HEALTHCHECK, and on SIGTERM drain, stop its model servers and exit 0.

import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, resolve } from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config/index.js';
import { adminClient, assertNoServersLeft, gwRequest, listenAddresses, PidLog, processesMatching, reapServers, waitFor } from '../helpers/control.js';
import { readImage, type Image } from '../helpers/dockerfile.js';
import { spawnProc, waitForLine, type Proc } from '../helpers/procs.js';

t.setTimeout(60_000);

const REPO = resolve(import.meta.dirname, '..', '..');
// Ports 18830-18839 belong to this file: the gateway's two, then its model servers'.
const PORT = 18830;
const ADMIN_PORT = 18831;
const RANGE = { from: 18832, to: 18839 };
const TOKEN = 'container-test-token';

const image = readImage();
const root = mkdtempSync(join(tmpdir(), 'sluice-container-'));
// mkdtemp makes it 0700: the image's user must be able to walk into it.
chmodSync(root, 0o755);
const app = join(root, 'app');
const state = join(root, 'state');
const pids = new PidLog();
let gateway: Proc | undefined;

/** This test's gateway processes, found by their working directory (their argv is relative). */
function gatewaysInApp(): number[] {
  return processesMatching(/dist\/cli\.js serve/).filter((p) => {
    try {
      return readlinkSync(`/proc/${p.pid}/cwd`) === app;
    } catch {
      return false;
    }
  }).map((p) => p.pid);
}

t.teardown(async () => {
  await gateway?.stop();
  // A SIGKILLed tini (stop's last resort) would leave node running.
  for (const pid of gatewaysInApp()) process.kill(pid, 'SIGKILL');
  await reapServers(pids.pids, RANGE);
  rmSync(root, { recursive: true, force: true });
});

/** Lays the app out under `app` as the final stage's COPY lines do, from this checkout. */
function layOut(img: Image): void {
  for (const copy of img.copies) {
    for (const source of copy.sources) {
      // A stage's output is where that stage made it: the build stage works in the repo's layout.
      const fromRepo = copy.from === null ? source : posix.relative(img.stageWorkdirs.get(copy.from)!, source);
      const src = join(REPO, fromRepo);
      const isDir = statSync(src).isDirectory();
      const inApp = posix.relative(img.workdir, posix.resolve(img.workdir, copy.dest));
      if (inApp.startsWith('..')) throw new Error(`COPY to ${copy.dest}: outside WORKDIR ${img.workdir}, which this test lays out`);
      // COPY puts a file into a destination ending in '/', and a directory's contents into the destination.
      const dest = join(app, inApp, isDir || !copy.dest.endsWith('/') ? '' : basename(src));
      mkdirSync(dirname(dest), { recursive: true });
      // The image holds the production subset of node_modules; the checkout's whole set is a superset.
      if (basename(src) === 'node_modules') symlinkSync(src, dest);
      else cpSync(src, dest, { recursive: true });
    }
  }
}

// Run as root: the mount namespace and the switch of user need it (tests run as root here,
// as in CI). unshare makes the namespace's mounts private: nothing done in it reaches the
// machine. setpriv drops every capability with the uid, as a container runtime does.
const IDS = [`--reuid=${image.user.uid}`, `--regid=${image.user.gid}`, '--clear-groups'];
const CONFINE = [...IDS, '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all'];
const READ_ONLY_EXCEPT_STATE = [
  'set -e',
  'state=$1 volume=$2 app=$3; shift 3',
  // The volume at the image's own path (SLUICE_STATE_DIR as written): a tmpfs over its
  // parent, seen by this namespace only, holds the mount point.
  'mount -t tmpfs -o mode=0755 sluice-test "$(dirname "$volume")"',
  'mkdir "$volume"',
  // Its own mount, made before the others turn read-only, so it stays writable.
  'mount --bind "$state" "$volume"',
  'for m in / "$(findmnt -no TARGET -T "$app")" "$(dirname "$volume")"; do mount -o remount,bind,ro "$m"; done',
  'exec "$@"',
].join('\n');

/**
 * argv that runs `command` as the image's user with exactly `env`: tap's process-info hook
 * adds NODE_OPTIONS (its loaders, which write under .tap/) to whatever a test spawns.
 */
function asImageUser(setprivArgs: string[], env: Record<string, string>, command: readonly string[]): string[] {
  return ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'setpriv', ...setprivArgs, '--', ...command];
}

t.test('the image as written: non-root, read-only but its state dir, serves, healthy, stops cleanly on SIGTERM', async (t) => {
  layOut(image);
  // The one change to what the image ships: its model servers stay in this file's ports
  // (a container has a network of its own; this test shares the machine's).
  const config = image.cmd[image.cmd.indexOf('--config') + 1]!;
  appendFileSync(join(app, config), `ports: { from: ${RANGE.from}, to: ${RANGE.to} }\n`);
  // The volume, owned by the image's user as its `install -d` in the Dockerfile makes it.
  mkdirSync(state, { mode: 0o750 });
  chownSync(state, image.user.uid, image.user.gid);

  // The image's ENV; then what `docker run -e` would add: this file's ports, and the admin
  // token that exposes the admin API.
  // TINI_SUBREAPER: tini is not PID 1 here (no PID namespace, so that model servers that
  // outlive the gateway stay visible); as a subreaper it reaps orphans as PID 1 would.
  const env: Record<string, string> = {
    PATH: process.env.PATH!, ...image.env,
    SLUICE_PORT: String(PORT), SLUICE_ADMIN_PORT: String(ADMIN_PORT), SLUICE_ADMIN_TOKEN: TOKEN,
    TINI_SUBREAPER: '1',
  };
  gateway = spawnProc('unshare', ['--mount', '--', 'sh', '-c', READ_ONLY_EXCEPT_STATE, 'sh', state, image.env.SLUICE_STATE_DIR!, app,
    ...asImageUser(CONFINE, env, [...image.entrypoint, ...image.cmd])], { env: {}, cwd: app });
  const healthcheck = (): number | null => {
    const [command, ...args] = asImageUser(IDS, env, image.healthcheck);
    return spawnSync(command!, args, { env: {}, cwd: app, timeout: 10_000 }).status;
  };

  const listening = JSON.parse(await waitForLine(gateway, (l) => l.includes('sluice is listening'), 30_000)) as { gateway: string; admin: string };
  t.equal(listening.gateway, `http://0.0.0.0:${PORT}`, 'the data plane listens on every interface');
  t.equal(listening.admin, `http://0.0.0.0:${ADMIN_PORT}`, 'with a token, so does the admin API');
  t.same(listenAddresses(ADMIN_PORT), ['0.0.0.0'], 'bound there');
  const admin = adminClient(`http://127.0.0.1:${ADMIN_PORT}`, TOKEN);
  await waitFor(async () => (await admin.get('/readyz')).status === 200, 30_000, '/readyz 200');
  pids.note(await admin.list());
  t.equal(pids.pids.size, 1, 'the demo deployment runs one model server');
  t.equal(healthcheck(), 0, 'HEALTHCHECK passes');

  const chat = { method: 'POST', body: { model: 'demo', messages: [{ role: 'user', content: 'hi' }] } };
  const reply = await gwRequest(`http://127.0.0.1:${PORT}/v1/chat/completions`, chat);
  t.equal(reply.status, 200, 'POST /v1/chat/completions for model demo');
  t.equal(reply.json?.object, 'chat.completion', 'answered by the simulator');
  t.same(readdirSync(join(state, 'logs')).sort(), ['demo-1_0.err', 'demo-1_0.out'], 'model server logs are in the state dir');

  const started = Date.now();
  gateway.child.kill('SIGTERM');
  await waitForLine(gateway, (l) => l.includes('"draining"'));
  t.equal((await admin.get('/readyz')).status, 503, 'draining: /readyz 503');
  t.equal(healthcheck(), 1, 'and HEALTHCHECK fails');
  t.equal((await gwRequest(`http://127.0.0.1:${PORT}/v1/chat/completions`, chat)).status, 200, 'while requests are still served');
  // One signal, as `docker stop` and the kubelet send (a second one would cut the drain delay short).
  const code = await gateway.exited;
  const { drain_delay_ms: drainDelayMs } = loadConfig(join(app, config), env).shutdown;
  t.ok(Date.now() - started >= drainDelayMs, `exit after the drain delay (${Date.now() - started} ms >= ${drainDelayMs} ms)`);
  t.equal(code, 0, "tini exits with sluice's 0");
  const lines = gateway.lines;
  gateway = undefined;
  t.ok(lines.some((l) => l.includes('"model servers stopped"')), 'sluice stopped its model servers');
  await assertNoServersLeft(t, pids.pids, RANGE, 2_000);
  t.same(gatewaysInApp(), [], 'no gateway process left');
  t.same(lines.filter((l) => /started without the recommended Node flags|EACCES|EROFS|"level":"(error|fatal)"/.test(l)), [],
    'no missing Node flag, no write refused, no error logged');
});
