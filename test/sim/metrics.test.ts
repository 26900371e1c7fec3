// The simulator's `GET /metrics` (--metrics vllm|llamacpp): Prometheus text a queue-aware
// balancer can read, with the real in-flight count and the waiting/KV values set at run time.

import t from 'tap';
import { eventually, spawnCli, type Sim, startSim } from '../helpers/procs.js';
import { ensureBuilt } from './fixtures/sim-process.js';

interface Sample {
  readonly labels: Record<string, string>;
  readonly value: number;
}

interface Family {
  help?: string;
  type?: string;
  readonly samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (m === null) throw new Error(`bad labels {${text}}`);
    labels[m[1]!] = m[2]!;
  }
  return labels;
}

/** Text exposition format 0.0.4, strictly: every line is HELP, TYPE or a sample of a typed family. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) families.set(name, (f = { samples: [] }));
    return f;
  };
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta !== null) {
      if (meta[1] === 'HELP') family(meta[2]!).help = meta[3]!;
      else family(meta[2]!).type = meta[3]!;
      continue;
    }
    const m = SAMPLE.exec(line);
    if (m === null) throw new Error(`unparsable line '${line}'`);
    const f = families.get(m[1]!);
    if (f?.type === undefined) throw new Error(`sample before its TYPE line: '${line}'`);
    const value = Number(m[3]);
    if (Number.isNaN(value)) throw new Error(`bad value in '${line}'`);
    f.samples.push({ labels: parseLabels(m[2] ?? ''), value });
  }
  return families;
}

async function scrape(sim: Sim): Promise<{ status: number; contentType: string | null; families: Map<string, Family>; text: string }> {
  const r = await fetch(`${sim.url}/metrics`);
  const text = await r.text();
  return { status: r.status, contentType: r.headers.get('content-type'), families: r.status === 200 ? parseExposition(text) : new Map(), text };
}

/** The one sample of a gauge family. */
function gauge(families: Map<string, Family>, name: string): Sample {
  const f = families.get(name);
  if (f === undefined || f.type !== 'gauge' || f.samples.length !== 1) throw new Error(`${name}: want one gauge sample, got ${JSON.stringify(f)}`);
  return f.samples[0]!;
}

async function postConfig(sim: Sim, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${sim.url}/_sim/config`, { method: 'POST', body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** Starts `count` streaming generations that stay open (long ttft) until `abort()`. */
function holdGenerations(sim: Sim, count: number): { abort(): void } {
  const ctl = new AbortController();
  for (let i = 0; i < count; i++) {
    fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content: 'x' }] }),
      signal: ctl.signal,
    }).catch(() => {});
  }
  return { abort: () => ctl.abort() };
}

const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';
const VLLM_NAMES = ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc'];
const LLAMACPP_NAMES = ['llamacpp:kv_cache_usage_ratio', 'llamacpp:requests_processing', 'llamacpp:requests_deferred'];

ensureBuilt();

const sims: Sim[] = [];
async function sim(args: string[]): Promise<Sim> {
  const s = await startSim(args);
  sims.push(s);
  return s;
}
t.teardown(async () => {
  await Promise.all(sims.map((s) => s.stop()));
});

t.test('vllm: gauges parse, running follows in-flight requests, waiting and KV usage follow the config', async (t) => {
  const s = await sim(['--metrics', 'vllm', '--models', 'chat,demo', '--ttft-ms', '60000']);
  const first = await scrape(s);
  t.equal(first.status, 200);
  t.equal(first.contentType, PROMETHEUS_TEXT);
  t.same([...first.families.keys()], VLLM_NAMES, 'exactly the three load gauges, in vLLM order');
  for (const name of VLLM_NAMES) t.match(first.families.get(name)!.help, /\S/, `${name} has a HELP line`);
  t.same(gauge(first.families, 'vllm:num_requests_running').labels, { engine: '0', model_name: 'chat' }, 'labelled with the first served model');
  t.match(first.text, /^vllm:num_requests_running\{engine="0",model_name="chat"\} 0\.0$/m, 'values print as prometheus_client floats');
  t.equal(gauge(first.families, 'vllm:num_requests_waiting').value, 0);
  t.equal(gauge(first.families, 'vllm:kv_cache_usage_perc').value, 0);

  const held = holdGenerations(s, 2);
  await eventually(async () => (gauge((await scrape(s)).families, 'vllm:num_requests_running').value === 2 ? true : undefined), 5_000, 'running = 2');
  t.equal((await s.stats()).active, 2, 'the gauge is the stats active count');
  held.abort();
  await eventually(async () => (gauge((await scrape(s)).families, 'vllm:num_requests_running').value === 0 ? true : undefined), 5_000, 'running = 0');
  t.pass('running went 0 -> 2 -> 0 with the requests in flight');

  await s.configure({ metrics_waiting: 7, metrics_kv_usage: 0.25 });
  const configured = (await scrape(s)).families;
  t.equal(gauge(configured, 'vllm:num_requests_waiting').value, 7);
  t.equal(gauge(configured, 'vllm:kv_cache_usage_perc').value, 0.25);
  t.match(await (await fetch(`${s.url}/_sim/config`)).json(), { metrics: 'vllm', metrics_waiting: 7, metrics_kv_usage: 0.25 });
});

t.test('llamacpp: gauges parse, unlabelled, with the CLI-set values', async (t) => {
  const s = await sim(['--metrics', 'llamacpp', '--metrics-waiting', '3', '--metrics-kv-usage', '0.5', '--ttft-ms', '60000']);
  const first = await scrape(s);
  t.equal(first.status, 200);
  t.equal(first.contentType, PROMETHEUS_TEXT);
  t.same([...first.families.keys()], LLAMACPP_NAMES, 'exactly the three load gauges, in llama.cpp order');
  for (const name of LLAMACPP_NAMES) {
    t.match(first.families.get(name)!.help, /\S/, `${name} has a HELP line`);
    t.same(gauge(first.families, name).labels, {}, `${name} has no labels`);
  }
  t.equal(gauge(first.families, 'llamacpp:requests_processing').value, 0);
  t.equal(gauge(first.families, 'llamacpp:requests_deferred').value, 3);
  t.equal(gauge(first.families, 'llamacpp:kv_cache_usage_ratio').value, 0.5);
  t.match(first.text, /^llamacpp:requests_deferred 3$/m, 'integers print as llama.cpp prints doubles');

  const held = holdGenerations(s, 1);
  await eventually(async () => (gauge((await scrape(s)).families, 'llamacpp:requests_processing').value === 1 ? true : undefined), 5_000, 'processing = 1');
  held.abort();
  await eventually(async () => (gauge((await scrape(s)).families, 'llamacpp:requests_processing').value === 0 ? true : undefined), 5_000, 'processing = 0');

  await s.configure({ metrics_waiting: 0 });
  t.equal(gauge((await scrape(s)).families, 'llamacpp:requests_deferred').value, 0, 'deferred follows POST /_sim/config');
});

t.test('scrapes are not counted in /_sim/stats', async (t) => {
  const s = await sim(['--metrics', 'vllm', '--ttft-ms', '0', '--token-ms', '0', '--tokens', '1']);
  await fetch(`${s.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'demo', prompt: 'x', stream: false }) }).then((r) => r.text());
  const before = await s.stats();
  t.equal(before.requests, 1, 'the generation is counted');
  for (let i = 0; i < 5; i++) t.equal((await scrape(s)).status, 200);
  const after = await s.stats();
  t.equal(after.requests, before.requests, 'five scrapes later, still one request');
  t.equal(after.completed, before.completed);
  t.equal(gauge((await scrape(s)).families, 'vllm:num_requests_running').value, 0, 'a scrape does not see itself running');
});

t.test('metrics none: /metrics is an unknown path; the format can be switched at run time', async (t) => {
  const s = await sim(['--ttft-ms', '0']);
  const none = await scrape(s);
  t.equal(none.status, 404, 'default is none');
  t.equal(none.text, '404 page not found', "Ollama's unknown-path answer");

  t.equal((await postConfig(s, { metrics: 'llamacpp' })).status, 200);
  t.same([...(await scrape(s)).families.keys()], LLAMACPP_NAMES, 'switched on at run time');
  t.equal((await postConfig(s, { metrics: 'none' })).status, 200);
  t.equal((await scrape(s)).status, 404, 'switched off again');
});

t.test('bad metrics values: 400 naming the field, nothing applied', async (t) => {
  const s = await sim(['--metrics', 'vllm']);
  const cases: [Record<string, unknown>, string][] = [
    [{ metrics: 'prometheus' }, 'metrics'],
    [{ metrics: true }, 'metrics'],
    [{ metrics_waiting: -1 }, 'metrics_waiting'],
    [{ metrics_waiting: 1.5 }, 'metrics_waiting'],
    [{ metrics_kv_usage: 1.5 }, 'metrics_kv_usage'],
    [{ metrics_kv_usage: '0.5' }, 'metrics_kv_usage'],
    [{ metrics_waiting: 4, metrics_kv_usage: -0.1 }, 'metrics_kv_usage'],
  ];
  for (const [body, field] of cases) {
    const r = await postConfig(s, body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.match(r.body.error, new RegExp(`^${field} must be`), `error names ${field}`);
  }
  t.match(await (await fetch(`${s.url}/_sim/config`)).json(), { metrics: 'vllm', metrics_waiting: 0, metrics_kv_usage: 0 }, 'nothing half-applied');

  const bad = spawnCli(['sim', '--port', '0', '--metrics', 'prometheus']);
  const message = /--metrics must be one of vllm, llamacpp, none/;
  await eventually(() => (bad.child.exitCode !== null && bad.stderr.some((l) => message.test(l)) ? true : undefined), 20_000, 'the flag error');
  t.equal(bad.child.exitCode, 2, 'a bad --metrics flag exits 2');
});
