// queue_aware through the real gateway: the control plane scrapes each replica's own
// Prometheus page (simulators exporting vLLM's or llama.cpp's queue metrics), shares the
// figures with the workers, and requests go to the replica with the shorter line.

import t from 'tap';
import { httpRequest } from '../helpers/http.js';
import { deployments, eventually, replicaPorts, startGateway, startSim, type Gateway, type Sim } from '../helpers/procs.js';

// Replica ports 18340-18369 belong to this file.
let gw: Gateway;
let llama: Sim[];

t.before(async () => {
  llama = await Promise.all([0, 1].map(() => startSim(['--metrics', 'llamacpp', '--ttft-ms', '2', '--tokens', '1'])));
  gw = await startGateway({
    ports: { from: 18340, to: 18369 },
    log: { level: 'info', access: false },
    deployments: [
      {
        model: 'qa', version: '1', runtime: 'sim', replicas: 2, args: ['--metrics', 'vllm', '--ttft-ms', '2', '--tokens', '1'],
        policies: { balancer: { strategy: 'queue_aware', scrape_interval_ms: 100 } },
      },
      {
        model: 'qa', version: '2', runtime: 'remote', urls: llama.map((s) => s.url), health_check: { enabled: false },
        policies: { balancer: { strategy: 'queue_aware', scrape_interval_ms: 100 } },
      },
    ],
  });
});
t.teardown(async () => {
  await gw?.stop();
  await Promise.all((llama ?? []).map((s) => s.stop()));
});

interface LoadView { waiting: number | null; running: number | null; kv_cache_usage: number | null; error: string | null }

async function loads(id: string): Promise<LoadView[]> {
  const d = (await deployments(gw)).find((x) => x.id === id)!;
  return (d.replicas as unknown as Array<{ load: LoadView }>).map((r) => r.load);
}

async function configure(url: string, body: Record<string, unknown>): Promise<void> {
  const r = await fetch(`${url}/_sim/config`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  if (r.status !== 200) throw new Error(`sim config: ${r.status} ${await r.text()}`);
}

/** Sends `n` requests one after another; how many each replica (by URL) received. */
async function spread(path: string, urls: string[], n: number): Promise<number[]> {
  const before = await Promise.all(urls.map(async (u) => ((await (await fetch(`${u}/_sim/stats`)).json()) as { requests: number }).requests));
  for (let i = 0; i < n; i++) {
    const r = await httpRequest(`${gw.url}${path}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'hi', stream: false }), headers: { 'content-type': 'application/json' } });
    if (r.status !== 200) throw new Error(`${r.status} ${r.body}`);
  }
  const after = await Promise.all(urls.map(async (u) => ((await (await fetch(`${u}/_sim/stats`)).json()) as { requests: number }).requests));
  return after.map((a, i) => a - before[i]!);
}

/** Waits until the admin view shows these waiting figures: the scrape has reached the workers' board. */
async function scraped(id: string, waiting: number[]): Promise<void> {
  await eventually(async () => ((await loads(id)).every((l, i) => l.waiting === waiting[i]) ? true : undefined), 5_000, `waiting ${waiting.join(',')} on ${id}`);
}

t.test('vLLM metrics: the replica reporting a long queue is avoided, and again when the queue moves', async (t) => {
  const urls = (await replicaPorts(gw, 'qa-1')).map((p) => `http://127.0.0.1:${p}`);
  await configure(urls[0]!, { metrics_waiting: 20 });
  await scraped('qa-1', [20, 0]);
  t.same(await spread('/qa-1', urls, 40), [0, 40], 'every request went to the replica with no queue');

  await configure(urls[0]!, { metrics_waiting: 0 });
  await configure(urls[1]!, { metrics_waiting: 20 });
  await scraped('qa-1', [0, 20]);
  t.same(await spread('/qa-1', urls, 40), [40, 0], 'and followed the queue when it moved');

  const view = (await loads('qa-1'))[1]!;
  t.equal(view.running, 0, 'the admin view shows what the server reports');
  t.equal(view.error, null);
});

t.test('vLLM metrics: a full KV cache puts a replica behind one with a short queue', async (t) => {
  const urls = (await replicaPorts(gw, 'qa-1')).map((p) => `http://127.0.0.1:${p}`);
  await configure(urls[0]!, { metrics_waiting: 0, metrics_kv_usage: 0.99 });
  await configure(urls[1]!, { metrics_waiting: 3, metrics_kv_usage: 0.5 });
  await scraped('qa-1', [0, 3]);
  await eventually(async () => ((await loads('qa-1'))[0]!.kv_cache_usage === 0.99 ? true : undefined), 5_000, 'kv usage scraped');
  t.same(await spread('/qa-1', urls, 20), [0, 20]);
  await configure(urls[0]!, { metrics_kv_usage: 0 });
  await configure(urls[1]!, { metrics_waiting: 0, metrics_kv_usage: 0 });
});

t.test('llama.cpp metrics on remote replicas: requests_deferred is the queue', async (t) => {
  const urls = llama.map((s) => s.url);
  await configure(urls[1]!, { metrics_waiting: 10 });
  await scraped('qa-2', [0, 10]);
  t.same(await spread('/qa-2', urls, 30), [30, 0]);
});

t.test('a replica that stops reporting is judged by sluice\'s own count again', async (t) => {
  const urls = llama.map((s) => s.url);
  await configure(urls[1]!, { metrics: 'none' });
  const unknown = await eventually(async () => {
    const l = (await loads('qa-2'))[1]!;
    return l.waiting === null ? l : undefined;
  }, 5_000, 'the load to become unknown');
  t.match(unknown.error, /404/, 'the view says why');
  const got = await spread('/qa-2', urls, 40);
  t.ok(got[1]! > 0, `the replica whose queue was long gets requests again (${got.join('/')})`);
  await configure(urls[1]!, { metrics: 'llamacpp', metrics_waiting: 0 });
});
