// sluice_cost_usd_total{kind="replica_hours"} is a counter: it never goes down. A deployment
// that hibernates stops its replicas one by one, and a stopped replica's time was charged
// while it was still listed as running, until the last one stopped: the counter rose by
// the replicas stopped so far, then fell back (a reset, to Prometheus). Through the real
// gateway: /metrics read every 20 ms while a deployment of three replicas wakes and
// hibernates (servers that take 0, 0.4 and 0.8 s to stop, by their port, so that they stop
// one by one); GET /v1/costs agrees with it at the end.

import t from 'tap';
import { httpRequest, json } from '../helpers/http.js';
import { metricsText, sample, sleep, startGateway, type Gateway } from '../helpers/procs.js';

// Ports 27770-27779 belong to this file: the model servers.
let gw: Gateway;

// Answers every request; on SIGTERM exits after (port % 3) * 400 ms.
const SERVER = `
const port = Number(process.argv[1]);
require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => res.end('{}')); }).listen(port, '127.0.0.1');
process.on('SIGTERM', () => setTimeout(() => process.exit(0), (port % 3) * 400));
`;

t.before(async () => {
  gw = await startGateway({
    ports: { from: 27770, to: 27779 },
    deployments: [{
      model: 'h', version: '1', runtime: 'command', command: [process.execPath, '-e', SERVER, '{port}'], readiness_path: '/',
      replicas: 3, scale: { min_replicas: 0, idle_timeout_s: 1 }, cost: { per_replica_hour: 3600 },
    }],
  });
});

t.teardown(async () => {
  await gw?.stop();
});

async function replicaCost(): Promise<number> {
  return sample(await metricsText(gw), 'sluice_cost_usd_total', { deployment: 'h-1', kind: 'replica_hours' }) ?? 0;
}

/** Hibernated, and its servers all stopped (the state says hibernated from the start of the stop). */
async function asleep(): Promise<boolean> {
  const view = json<{ state: string; replicas: unknown[] }>(await httpRequest(`${gw.adminUrl}/v1/deployments/h-1`));
  return view.state === 'hibernated' && view.replicas.length === 0;
}

t.test('the replicas\' cost only grows, through a hibernation', async (t) => {
  const seen: number[] = [];
  // Asleep after its first idle second, then woken by a request, then asleep again.
  for (let round = 0; round < 2; round++) {
    while (!(await asleep())) {
      seen.push(await replicaCost());
      await sleep(20);
    }
    seen.push(await replicaCost());
    if (round === 0) t.equal((await httpRequest(`${gw.url}/h-1/`, { method: 'POST', body: '{}' })).status, 200);
  }
  const falls = seen.flatMap((v, i) => (i > 0 && v < seen[i - 1]! ? [`${seen[i - 1]} -> ${v}`] : []));
  t.same(falls, [], `never down (${seen.length} reads)`);
  const costs = json<{ deployments: Array<{ cost_usd: { replica_hours: number } }> }>(await httpRequest(`${gw.adminUrl}/v1/costs`));
  t.equal(costs.deployments[0]!.cost_usd.replica_hours.toFixed(6), seen[seen.length - 1]!.toFixed(6), 'GET /v1/costs says the same');
});
