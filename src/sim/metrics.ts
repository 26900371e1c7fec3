// `GET /metrics` as vLLM or llama.cpp serves it, cut down to the load gauges a queue-aware
// balancer reads. Built at scrape time from the live `active` gauge and two tunables, so
// requests pay nothing for it. Names, help texts and label sets follow the servers' sources:
// vllm/v1/metrics/loggers.py (PrometheusStatLogger) and llama.cpp's server `/metrics`
// handler (examples/server/server.cpp, later tools/server/server.cpp).

import type { ServerResponse } from 'node:http';
import type { SimContext } from './context.js';
import { send } from './http.js';
import type { MetricsFormat } from './options.js';

export const METRICS_PATH = '/metrics';
// prometheus_client's CONTENT_TYPE_LATEST; llama.cpp sends the same without the charset.
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

interface Load {
  readonly running: number;
  readonly waiting: number;
  readonly kvUsage: number;
}

interface Gauge {
  readonly name: string;
  readonly help: string;
  readonly value: (load: Load) => number;
}

interface Exporter {
  readonly gauges: readonly Gauge[];
  readonly labels: (model: string) => string;
  readonly format: (value: number) => string;
}

const VLLM: Exporter = {
  gauges: [
    { name: 'vllm:num_requests_running', help: 'Number of requests in model execution batches.', value: (l) => l.running },
    { name: 'vllm:num_requests_waiting', help: 'Number of requests waiting to be processed.', value: (l) => l.waiting },
    { name: 'vllm:kv_cache_usage_perc', help: 'KV-cache usage. 1 means 100 percent usage.', value: (l) => l.kvUsage },
  ],
  // vLLM labels every series with the served model name and the engine index; prometheus_client
  // sorts label names. MODEL_NAME in options.ts admits nothing that needs escaping.
  labels: (model) => `{engine="0",model_name="${model}"}`,
  // prometheus_client prints Python floats: 2 is `2.0`.
  format: (v) => (Number.isInteger(v) ? v.toFixed(1) : String(v)),
};

const LLAMACPP: Exporter = {
  // kv_cache_usage_ratio is the pre-2025 server's; newer llama.cpp builds dropped it, so a
  // balancer must also cope with its absence.
  gauges: [
    { name: 'llamacpp:kv_cache_usage_ratio', help: 'KV-cache usage. 1 means 100 percent usage.', value: (l) => l.kvUsage },
    { name: 'llamacpp:requests_processing', help: 'Number of requests processing.', value: (l) => l.running },
    { name: 'llamacpp:requests_deferred', help: 'Number of requests deferred.', value: (l) => l.waiting },
  ],
  labels: () => '',
  format: String,
};

function render(exporter: Exporter, load: Load, model: string): string {
  const labels = exporter.labels(model);
  let out = '';
  for (const g of exporter.gauges) {
    out += `# HELP ${g.name} ${g.help}\n# TYPE ${g.name} gauge\n${g.name}${labels} ${exporter.format(g.value(load))}\n`;
  }
  return out;
}

export function sendMetrics(sim: SimContext, res: ServerResponse, format: Exclude<MetricsFormat, 'none'>): void {
  const t = sim.tunables;
  const load: Load = { running: sim.stats.active, waiting: t.metricsWaiting, kvUsage: t.metricsKvUsage };
  // A real vLLM names the first of its served model names; a `sim` deployment's comes first.
  const model = sim.options.models[0]!;
  send(res, 200, PROMETHEUS_TEXT, render(format === 'vllm' ? VLLM : LLAMACPP, load, model));
}
