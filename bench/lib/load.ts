// The one way the bench drives closed-loop load: wrk (C, so the generator costs far less
// CPU than the proxies it measures), or autocannon when wrk cannot be installed. wrk's
// figures come from a Lua `done()` hook that prints one JSON line, not from scraping its
// human-readable summary.

import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ProcessGroup } from './procs.js';

export type LoadTool = 'wrk' | 'autocannon';

export interface LoadSpec {
  readonly url: string;
  readonly seconds: number;
  readonly connections: number;
  readonly method?: 'GET' | 'POST';
  readonly body?: string;
  readonly contentType?: string;
  /** More request headers (an SDK's set, a credential). */
  readonly headers?: Readonly<Record<string, string>>;
  /** More environment for wrk (OPENSSL_CONF: the TLS versions and suites it offers). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface LoadResult {
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly bytes_per_s: number;
  readonly requests: number;
  /** Socket errors and timeouts. */
  readonly errors: number;
  /** Responses that were not 2xx/3xx. */
  readonly non2xx: number;
}

const WRK_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,"errors":%d,"status":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
`;

/** The Lua lines that make wrk send `spec`'s method, body and headers. */
export function wrkRequestLua(spec: Pick<LoadSpec, 'method' | 'body' | 'contentType' | 'headers'>): string {
  let lua = '';
  if (spec.method !== undefined) lua += `wrk.method = "${spec.method}"\n`;
  if (spec.body !== undefined) {
    lua += `wrk.body = [==[${spec.body}]==]\n`;
    lua += `wrk.headers["Content-Type"] = "${spec.contentType ?? 'application/json'}"\n`;
  }
  for (const [name, value] of Object.entries(spec.headers ?? {})) lua += `wrk.headers["${name}"] = [==[${value}]==]\n`;
  return lua;
}

export class LoadGenerator {
  readonly tool: LoadTool;
  readonly #group: ProcessGroup;
  readonly #cpus: string | null;
  readonly #threads: number;

  /** `cpus`: where the generator runs; `threads`: wrk threads (one per core it may use). */
  constructor(group: ProcessGroup, tool: LoadTool, cpus: string | null, threads: number) {
    this.#group = group;
    this.tool = tool;
    this.#cpus = cpus;
    this.#threads = threads;
  }

  describe(): string {
    return this.tool === 'wrk' ? `wrk -t${this.#threads}` : 'autocannon (wrk unavailable)';
  }

  async run(spec: LoadSpec): Promise<LoadResult> {
    const limitMs = (spec.seconds + 15) * 1000;
    if (this.tool === 'wrk') {
      const script = this.#wrkScript(spec);
      const out = await this.#group.run({
        name: 'wrk',
        command: 'wrk',
        args: [`-t${this.#threads}`, `-c${spec.connections}`, `-d${spec.seconds}s`, '--timeout', '5s', '-s', script, spec.url],
        cpus: this.#cpus,
        ...(spec.env === undefined ? {} : { env: { ...process.env, ...spec.env } }),
      }, limitMs);
      const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
      if (line === undefined) throw new Error(`wrk printed no summary:\n${out}`);
      const w = JSON.parse(line.slice(8)) as { duration_us: number; requests: number; bytes: number; errors: number; status: number; p50_us: number; p99_us: number };
      const seconds = w.duration_us / 1e6;
      return {
        rps: w.requests / seconds,
        p50_ms: w.p50_us / 1000,
        p99_ms: w.p99_us / 1000,
        bytes_per_s: w.bytes / seconds,
        requests: w.requests,
        errors: w.errors,
        non2xx: w.status,
      };
    }
    const bin = join(createRequire(import.meta.url).resolve('autocannon/package.json'), '..', 'autocannon.js');
    const args = [bin, '-c', String(spec.connections), '-d', String(spec.seconds), '-j'];
    if (spec.method === 'POST') args.push('-m', 'POST');
    if (spec.body !== undefined) args.push('-b', spec.body, '-H', `content-type=${spec.contentType ?? 'application/json'}`);
    for (const [name, value] of Object.entries(spec.headers ?? {})) args.push('-H', `${name}=${value}`);
    args.push(spec.url);
    const out = await this.#group.run({ name: 'autocannon', command: process.execPath, args, cpus: this.#cpus }, limitMs);
    const a = JSON.parse(out.slice(out.indexOf('{'))) as {
      duration: number; requests: { total: number }; latency: { p50: number; p99: number };
      throughput: { total: number }; errors: number; timeouts: number; non2xx: number;
    };
    return {
      rps: a.requests.total / a.duration,
      p50_ms: a.latency.p50,
      p99_ms: a.latency.p99,
      bytes_per_s: a.throughput.total / a.duration,
      requests: a.requests.total,
      errors: a.errors + a.timeouts,
      non2xx: a.non2xx,
    };
  }

  #wrkScript(spec: LoadSpec): string {
    const lua = wrkRequestLua(spec) + WRK_DONE;
    const file = join(this.#group.dir, `wrk-${createHash('sha1').update(lua).digest('hex').slice(0, 8)}.lua`);
    writeFileSync(file, lua);
    return file;
  }
}
