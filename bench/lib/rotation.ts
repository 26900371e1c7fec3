// Alternating rounds: every target gets a warm-up (JIT, connection pools, TCP windows),
// then each round visits every target once, starting one further along the list each
// round, so that neither machine drift nor position in the round favours one target.
// The median over rounds is what the report shows.

import { busyPercent, coreTimes, groupCpuSeconds } from './cpu.js';
import type { Guard } from './guard.js';
import type { LoadGenerator, LoadResult, LoadSpec } from './load.js';
import { log } from './log.js';
import { median } from './stats.js';

export interface Target {
  readonly key: string;
  readonly label: string;
  readonly spec: Omit<LoadSpec, 'seconds'>;
  /** Process group of the proxy under test, for its own CPU use; absent for direct runs. */
  readonly pgid?: number;
}

export interface Cores {
  readonly proxy: readonly number[];
  readonly rest: readonly number[];
}

export interface Round extends LoadResult {
  /** CPU used by the proxy's processes, % of one core. */
  readonly proxy_process_cpu_pct: number;
  /** How busy the proxy's core(s) and the load generator's core(s) were, %. */
  readonly proxy_core_busy_pct: number;
  readonly load_core_busy_pct: number;
  /** CPU time of the proxy's processes per request: its cost, whether or not it was the bottleneck. */
  readonly proxy_cpu_us_per_req: number;
  /** CPU other processes on the machine used during the round, % of one core. */
  readonly foreign_cpu_pct: number;
  readonly disturbed: boolean;
}

export interface Schedule {
  readonly rounds: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

export interface Measured {
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly bytes_per_s: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly proxy_process_cpu_pct: number;
  readonly proxy_core_busy_pct: number;
  readonly load_core_busy_pct: number;
  readonly proxy_cpu_us_per_req: number;
  readonly foreign_cpu_pct: number;
  /** Rounds that other processes disturbed and that could not be repeated. */
  readonly disturbed_rounds: number;
  readonly rounds: readonly Round[];
}

async function measure(gen: LoadGenerator, t: Target, seconds: number, cores: Cores): Promise<Omit<Round, 'foreign_cpu_pct' | 'disturbed'>> {
  const cpu0 = t.pgid === undefined ? NaN : groupCpuSeconds(t.pgid);
  const p0 = coreTimes(cores.proxy);
  const l0 = coreTimes(cores.rest);
  const started = performance.now();
  const res = await gen.run({ ...t.spec, seconds });
  const wall = (performance.now() - started) / 1000;
  const cpu = t.pgid === undefined ? NaN : groupCpuSeconds(t.pgid) - cpu0;
  return {
    ...res,
    proxy_process_cpu_pct: (100 * cpu) / wall,
    proxy_core_busy_pct: busyPercent(p0, coreTimes(cores.proxy)),
    load_core_busy_pct: busyPercent(l0, coreTimes(cores.rest)),
    proxy_cpu_us_per_req: (cpu * 1e6) / res.requests,
  };
}

export async function rotate(gen: LoadGenerator, targets: readonly Target[], s: Schedule, cores: Cores, guard: Guard): Promise<Map<string, Measured>> {
  for (const t of targets) {
    log(`warm-up ${t.label} (${s.warmupSeconds} s)`);
    await gen.run({ ...t.spec, seconds: s.warmupSeconds });
  }
  const results = new Map<string, Round[]>(targets.map((t) => [t.key, []]));
  for (let r = 0; r < s.rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + r) % targets.length]!;
      const g = await guard.run(`round ${r + 1}/${s.rounds} ${t.label}`, s.seconds, () => measure(gen, t, s.seconds, cores));
      const res: Round = { ...g.value, foreign_cpu_pct: g.foreign_cpu_pct, disturbed: g.disturbed };
      log(`round ${r + 1}/${s.rounds} ${t.label}: ${Math.round(res.rps)} req/s, p50 ${res.p50_ms.toFixed(2)} ms, p99 ${res.p99_ms.toFixed(2)} ms, ` +
        `proxy process ${Math.round(res.proxy_process_cpu_pct)}% CPU, cores busy ${Math.round(res.proxy_core_busy_pct)}% (proxy) / ${Math.round(res.load_core_busy_pct)}% (load), others ${Math.round(res.foreign_cpu_pct)}%` +
        `${res.errors + res.non2xx > 0 ? `, ${res.errors} errors, ${res.non2xx} non-2xx` : ''}`);
      results.get(t.key)!.push(res);
    }
  }
  const out = new Map<string, Measured>();
  for (const [key, rs] of results) {
    out.set(key, {
      rps: median(rs.map((x) => x.rps)),
      p50_ms: median(rs.map((x) => x.p50_ms)),
      p99_ms: median(rs.map((x) => x.p99_ms)),
      bytes_per_s: median(rs.map((x) => x.bytes_per_s)),
      errors: rs.reduce((a, x) => a + x.errors, 0),
      non2xx: rs.reduce((a, x) => a + x.non2xx, 0),
      proxy_process_cpu_pct: median(rs.map((x) => x.proxy_process_cpu_pct)),
      proxy_core_busy_pct: median(rs.map((x) => x.proxy_core_busy_pct)),
      load_core_busy_pct: median(rs.map((x) => x.load_core_busy_pct)),
      proxy_cpu_us_per_req: median(rs.map((x) => x.proxy_cpu_us_per_req)),
      foreign_cpu_pct: median(rs.map((x) => x.foreign_cpu_pct)),
      disturbed_rounds: rs.filter((x) => x.disturbed).length,
      rounds: rs,
    });
  }
  return out;
}
