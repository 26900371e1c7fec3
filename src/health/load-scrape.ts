// Scrapes one replica's own load metrics for the queue_aware strategy: GET its Prometheus
// endpoint every interval and keep the queue figures its server exports. Names as the
// servers export them: vLLM (vllm/v1/metrics/loggers.py), llama.cpp's server with
// --metrics (tools/server/server.cpp). A failed or empty scrape makes the load unknown
// again, so a replica never keeps an old short queue.

import type { ReportedLoad } from '../balancer/index.js';
import { getText, type Endpoint } from './readiness.js';
import { shownTarget } from '../target-query.js';

/** Metric name -> what it measures. Several series of one name (labels) add up. */
const LOAD_METRICS: ReadonlyMap<string, keyof ReportedLoad> = new Map([
  ['vllm:num_requests_waiting', 'waiting'],
  ['vllm:num_requests_running', 'running'],
  ['vllm:kv_cache_usage_perc', 'kvCacheUsage'],
  // vLLM before 0.10 (V0 engine).
  ['vllm:gpu_cache_usage_perc', 'kvCacheUsage'],
  ['llamacpp:requests_deferred', 'waiting'],
  ['llamacpp:requests_processing', 'running'],
  ['llamacpp:kv_cache_usage_ratio', 'kvCacheUsage'],
]);

/** A metrics page far larger than this is not a model server's. */
const MAX_BYTES = 1 << 20;

/** The load figures in a Prometheus text page; null when it has no queue figure at all. */
export function parseLoadMetrics(text: string): ReportedLoad | null {
  let waiting = -1;
  let running = -1;
  let kv: number | null = null;
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    const nameEnd = brace >= 0 && (space < 0 || brace < space) ? brace : space;
    if (nameEnd <= 0) continue;
    const what = LOAD_METRICS.get(line.slice(0, nameEnd));
    if (what === undefined) continue;
    // After the labels (whose values may hold spaces): the value, then maybe a timestamp.
    const rest = (brace === nameEnd ? line.slice(line.lastIndexOf('}') + 1) : line.slice(nameEnd)).trim();
    const value = Number(rest.split(' ', 1)[0]);
    if (!Number.isFinite(value) || value < 0) continue;
    if (what === 'waiting') waiting = Math.max(waiting, 0) + value;
    else if (what === 'running') running = Math.max(running, 0) + value;
    else kv = Math.max(kv ?? 0, value);
  }
  if (waiting < 0 && running < 0) return null;
  return { waiting: Math.max(waiting, 0), running: Math.max(running, 0), kvCacheUsage: kv };
}

export interface LoadScrapeTarget extends Endpoint {
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export class LoadScrape {
  readonly #target: LoadScrapeTarget;
  readonly #intervalMs: number;
  readonly #onLoad: (load: ReportedLoad | null) => void;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  #lastError: string | null = null;

  /** `onLoad(null)`: the load is unknown (the scrape failed or found no queue figure). */
  constructor(target: LoadScrapeTarget, intervalMs: number, onLoad: (load: ReportedLoad | null) => void) {
    this.#target = target;
    this.#intervalMs = intervalMs;
    this.#onLoad = onLoad;
  }

  start(): void {
    void this.#scrape();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Why the last scrape gave no load; null when it did. */
  get lastError(): string | null {
    return this.#lastError;
  }

  async #scrape(): Promise<void> {
    const t = this.#target;
    // One deadline under the interval, so that scrapes never pile up.
    const answer = await getText(t, t.path, Math.max(10, this.#intervalMs - 10), MAX_BYTES, t.headers);
    if (this.#stopped) return;
    let load: ReportedLoad | null = null;
    if (typeof answer === 'string') this.#lastError = answer;
    else if (answer.status !== 200) this.#lastError = `GET ${shownTarget(t.path)} answered ${answer.status}`;
    else {
      load = parseLoadMetrics(answer.body);
      this.#lastError = load === null ? `GET ${shownTarget(t.path)}: no vLLM or llama.cpp queue metric` : null;
    }
    this.#onLoad(load);
    this.#timer = setTimeout(() => void this.#scrape(), this.#intervalMs);
  }
}
