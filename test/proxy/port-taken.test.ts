// A second gateway on a port a first one listens on must not start: the workers' sockets
// share the port through SO_REUSEPORT, which would let it join the first one's group and
// take part of its connections. It fails as when any other socket holds the port: exit 1,
// "cannot listen on ...", nothing left listening. Through the real CLI, both front ends,
// and a wildcard or dual-stack host over a specific one.
// Ports 19240-19243 belong to this file.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { spawnCli, startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(240_000);

const PORT = 19240;
const V6_PORT = 19241;
let first: Gateway | undefined;

t.teardown(async () => {
  await first?.stop();
});

/** Runs `sluice serve` on `listen` to its exit: its status and its lines. */
async function serveExpectingExit(listen: Record<string, unknown>): Promise<{ code: number | null; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify({ listen, admin: { host: '127.0.0.1', port: 0 }, workers: 2, state_dir: join(dir, 'state'), shutdown: { drain_delay_ms: 0 } }));
  const proc = spawnCli(['serve', '--config', configFile]);
  const timer = setTimeout(() => proc.child.kill('SIGTERM'), 30_000);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, lines: proc.lines };
}

t.test('a second gateway on 127.0.0.1:port, on 0.0.0.0 and on :: is refused, with either front end', async (t) => {
  first = await startGateway({ listen: { host: '127.0.0.1', port: PORT }, workers: 2 });
  const cases: Array<[string, string]> = [['127.0.0.1', 'node'], ['127.0.0.1', 'uws'], ['0.0.0.0', 'node'], ['0.0.0.0', 'uws'], ['::', 'node'], ['::', 'uws']];
  for (const [host, frontEnd] of cases) {
    const { code, lines } = await serveExpectingExit({ host, port: PORT, front_end: frontEnd });
    t.equal(code, 1, `${host} ${frontEnd}: exit 1`, { lines });
    t.ok(lines.some((l) => l.startsWith('sluice: cannot listen on ') && /address already in use/i.test(l)), `${host} ${frontEnd}: says the address is in use`, { lines });
    t.notOk(lines.some((l) => l.includes('sluice is listening')), `${host} ${frontEnd}: never says it listens`);
  }
  // The first one still takes every connection: nobody else listens on its port.
  for (let i = 0; i < 4; i++) t.equal((await fetch(`${first.url}/nope-1/x`)).status, 404);
  t.equal(first.child.exitCode, null, 'the first gateway runs on');
  await first.stop();
  first = undefined;
});

t.test('a gateway on dual-stack :: (uws) keeps a second one off 127.0.0.1; its start-up line writes IPv6 in brackets', async (t) => {
  first = await startGateway({ listen: { host: '::', port: V6_PORT, front_end: 'uws' }, admin: { host: '::1', port: 0 }, workers: 2 }, {}, false);
  const started = JSON.parse(first.lines.find((l) => l.includes('sluice is listening'))!) as { gateway: string; admin: string };
  t.equal(started.gateway, `http://[::]:${V6_PORT}`);
  t.match(started.admin, /^http:\/\/\[::1\]:\d+$/);
  const { code, lines } = await serveExpectingExit({ host: '127.0.0.1', port: V6_PORT });
  t.equal(code, 1, 'exit 1', { lines });
  t.ok(lines.some((l) => /cannot listen on 127\.0\.0\.1:19241 .*address already in use/i.test(l)), 'says the address is in use', { lines });
  await first.stop();
  first = undefined;
});
