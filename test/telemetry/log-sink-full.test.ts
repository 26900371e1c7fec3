// The gateway's stdout on a file that cannot grow past `ulimit -f` (RLIMIT_FSIZE): lines are
// dropped and counted while it cannot, the gateway serves on, and logging comes back once the
// file can grow again. A write past the limit raised SIGXFSZ, whose default ended the gateway
// on the spot, its model servers left running; and one failed write (there, or on a full
// disk) ended logging for good: every later line was dropped, the shutdown's included.
//
// The room comes back by truncating the file (logrotate's copytruncate); it is opened for
// appending, as `>>` does, so that the next write lands at its new end.
// Ports 26890-26899 belong to this file: 26890 the gateway, 26891 its admin API, 26892-26899
// model servers.

import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CLI } from '../helpers/procs.js';
import { assertNoServersLeft, reapServers, waitFor } from '../helpers/control.js';

t.setTimeout(120_000);

const RANGE = { from: 26892, to: 26899 };
const GATEWAY = 'http://127.0.0.1:26890';
const ADMIN = 'http://127.0.0.1:26891';

t.teardown(() => reapServers([], RANGE));

async function dropped(): Promise<number> {
  const line = (await (await fetch(`${ADMIN}/metrics`)).text()).split('\n').find((l) => l.startsWith('sluice_log_dropped_total '));
  return Number(line?.split(' ')[1] ?? 0);
}

t.test('a log file at its size limit: lines dropped and counted, the gateway serves on, lines again once it can grow', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-log-full-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify({
    listen: { host: '127.0.0.1', port: 26890 },
    admin: { host: '127.0.0.1', port: 26891 },
    workers: 1,
    ports: RANGE,
    state_dir: join(dir, 'state'),
    log: { level: 'info', access: true },
    shutdown: { drain_delay_ms: 0 },
    deployments: [{ model: 'lw', version: '1', runtime: 'sim' }],
  }));
  const logFile = join(dir, 'gateway.log');
  const fd = openSync(logFile, 'a');
  // ulimit -f counts blocks of 512 or 1024 bytes, as the shell has it: 64 to 128 KiB.
  const gw = spawn('sh', ['-c', 'ulimit -f 128 && exec "$@"', 'sh', process.execPath, CLI, 'serve', '--config', configFile], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => gw.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (gw.exitCode === null && gw.signalCode === null) gw.kill('SIGKILL');
  });
  await waitFor(async () => (await fetch(`${ADMIN}/readyz`).catch(() => null))?.status === 200, 30_000, 'the gateway ready');

  // Access lines until the file is at its limit and lines are being dropped.
  await waitFor(async () => {
    if (gw.exitCode !== null || gw.signalCode !== null) throw new Error(`the gateway ended (${gw.signalCode ?? gw.exitCode})`);
    await Promise.all(Array.from({ length: 20 }, () => fetch(`${GATEWAY}/lw-1/api/tags`).then((r) => r.arrayBuffer())));
    return (await dropped()) > 0;
  }, 60_000, 'lines dropped at the file size limit');
  t.ok(statSync(logFile).size > 32 * 1024, 'the file reached its limit');
  t.equal((await fetch(`${GATEWAY}/lw-1/api/tags`)).status, 200, 'the gateway serves on');
  t.equal(gw.signalCode, null, 'not ended by SIGXFSZ');

  truncateSync(logFile, 0);
  await waitFor(async () => {
    await fetch(`${GATEWAY}/lw-1/api/version`).then((r) => r.arrayBuffer());
    return readFileSync(logFile, 'utf8').includes('"path":"/lw-1/api/version"');
  }, 10_000, 'an access line written after the file was truncated');
  gw.kill('SIGTERM');
  t.equal(await exited, 0, 'and stops cleanly');
  await assertNoServersLeft(t, [], RANGE);
  const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '');
  t.ok(lines.some((l) => l.includes('"msg":"stopped"')), 'its last line, "stopped", is in the file');
  t.same(lines.filter((l) => !isJson(l)), [], 'every line whole (one a write cut is ended before the next)');
});

function isJson(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}
