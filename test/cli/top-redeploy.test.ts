// `sluice top` across a deployment undeployed and deployed again under the same id between
// its two polls of GET /v1/stats: the new deployment's counts begin again from zero (README),
// below the old one's. top clamped the difference to 0 and showed RPS 0 and ERR% '-' while
// the new deployment served requests; its rates are now what it counted since.

import t from 'tap';
import { adminClient, gwRequest, reapServers, sleep, type AdminClient } from '../helpers/control.js';
import { runCli } from '../helpers/cli.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(90_000);

// Replica ports 29480-29489 belong to this file.
const RANGE = { from: 29480, to: 29489 };
const SPEC = { model: 'tr', version: '1', runtime: 'sim', args: ['--ttft-ms', '0', '--token-ms', '0', '--tokens', '2'] };

let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  gw = await startGateway({ ports: RANGE, log: { level: 'info', access: false } });
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

async function send(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await gwRequest(`${gw.url}/tr-1/api/tags`, { timeoutMs: 10_000 });
    if (r.status !== 200) throw new Error(`tr-1 answered ${r.status}`);
  }
}

t.test('top counts the requests of a deployment deployed again between its polls', async (t) => {
  t.equal((await admin.post('/v1/deployments?wait=true', SPEC)).status, 201, 'tr-1 deployed');
  await send(60);
  const INTERVAL_S = 6;
  const top = runCli(['top', '--json', '--interval', String(INTERVAL_S)], { SLUICE_ADMIN_URL: gw.adminUrl });
  // Its first poll, of the first deployment's counts (the CLI takes some 0.5 s to start).
  await sleep(2_000);
  t.equal((await admin.del('/v1/deployments/tr-1?grace_ms=0')).status, 200, 'tr-1 undeployed');
  t.equal((await admin.post('/v1/deployments?wait=true', SPEC)).status, 201, 'and deployed again');
  await send(20);
  const run = await top;
  t.equal(run.code, 0, `top exits 0 (${run.stderr})`);
  const row = (JSON.parse(run.stdout) as { deployments: Array<{ deployment: string; rps: number; error_rate: number | null }> }).deployments.find((d) => d.deployment === 'tr-1');
  t.ok(row !== undefined, 'tr-1 has a row');
  t.ok(row!.rps >= 20 / INTERVAL_S * 0.9 && row!.rps <= 20 / INTERVAL_S * 1.5, `its rate is its 20 requests over the interval (${row!.rps.toFixed(2)}/s)`);
  t.equal(row!.error_rate, 0, 'and none failed');
});
