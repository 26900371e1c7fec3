// Requests waiting for a replica (max_inflight_per_replica, or held while a hibernated
// deployment wakes) go out oldest first across worker threads, not per worker: the worker
// where a request ends used to hand the freed replica to its own next waiter at once, every
// time, so the other worker's waiters (older ones included) went last, or timed out
// (max_wait_ms) behind requests that came seconds after them.

import t from 'tap';
import { adminClient, gwRequest, reapServers, sleep, waitFor, type AdminClient } from '../helpers/control.js';
import { startGateway, type Gateway } from '../helpers/procs.js';

t.setTimeout(120_000);

// Replica ports 24850-24853 belong to this file.
const RANGE = { from: 24850, to: 24853 };
let gw: Gateway;
let admin: AdminClient;

t.before(async () => {
  gw = await startGateway({
    workers: 2,
    ports: RANGE,
    log: { level: 'info', access: false },
    deployments: [
      // One request at a time, 100 ms each: 40 requests 10 ms apart queue up to 4 s.
      { model: 'busy', version: '1', runtime: 'sim', args: ['--ttft-ms', '100', '--tokens', '1'], policies: { queue: { max_inflight_per_replica: 1, max_wait_ms: 2_500 } } },
      { model: 'sleepy', version: '1', runtime: 'sim', args: ['--ttft-ms', '100', '--tokens', '1', '--start-delay-ms', '1000'], policies: { queue: { max_inflight_per_replica: 1 } }, scale: { min_replicas: 0, idle_timeout_s: 600 } },
    ],
  });
  admin = adminClient(gw.adminUrl);
});
t.teardown(async () => {
  await gw?.stop();
  await reapServers([], RANGE);
});

/** `n` requests, one every `gapMs`, each on a connection of its own (so both workers get some): index -> status, and the indexes in the order they ended. */
async function burst(deployment: string, n: number, gapMs: number): Promise<{ statuses: number[]; ended: number[] }> {
  const statuses: number[] = [];
  const ended: number[] = [];
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    await sleep(i * gapMs);
    const r = await gwRequest(`${gw.url}/${deployment}/v1/chat/completions`, { body: { model: deployment.replace(/-1$/, ''), messages: [{ role: 'user', content: `hi ${i}` }] } });
    statuses[i] = r.status;
    ended.push(i);
  }));
  return { statuses, ended };
}

t.test('a queue longer than max_wait_ms times out its newest requests, not the older ones of one worker', async (t) => {
  const { statuses } = await burst('busy-1', 40, 10);
  const shown = statuses.map((s) => (s === 200 ? '.' : 'X')).join('');
  // Served one by one in ~105 ms, the first 15 are out within 1.6 s of the first: well inside 2.5 s.
  t.same(statuses.slice(0, 15).filter((s) => s !== 200), [], `the 15 oldest were served (${shown})`);
  t.ok(statuses.slice(20).some((s) => s === 503), `the newest timed out (${shown})`);
});

t.test('requests held while a deployment wakes go out in arrival order, whichever worker holds them', async (t) => {
  await admin.post('/v1/deployments/sleepy-1/hibernate');
  await waitFor(async () => ((await admin.deployment('sleepy-1'))!.state === 'hibernated' ? true : undefined), 10_000, 'hibernated');
  const { statuses, ended } = await burst('sleepy-1', 16, 50);
  t.same(statuses.filter((s) => s !== 200), [], 'all served');
  t.same(ended, [...ended].sort((a, b) => a - b), `in arrival order: ${ended.join(' ')}`);
});
