// Alternating rounds: every target gets a warm-up (JIT, connection pools, TCP windows),
// then each round visits every target once, starting one further along the list each
// round, so that neither machine drift nor position in the round favours one target.
// The median over rounds is what the report shows.
//
// A target compared with a reference (sluice with nginx) is measured right next to a
// measurement of that reference made for it, alternately after and before it (ABBA over
// rounds): on a machine whose speed drifts within seconds, a ratio of two neighbouring
// measurements is far steadier than one of measurements a whole round apart.

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
  /** Key of the reference target measured next to this one in every round (see above). */
  readonly pairedWith?: string;
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
  /** The round (0-based) this measurement belongs to. */
  readonly round: number;
  /** req/s of the paired reference, measured next to this one; null when unpaired. */
  readonly reference_rps: number | null;
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

async function measure(gen: LoadGenerator, t: Target, seconds: number, cores: Cores): Promise<Omit<Round, 'foreign_cpu_pct' | 'disturbed' | 'round' | 'reference_rps'>> {
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
  const byKey = new Map(targets.map((t) => [t.key, t]));
  const referenced = new Set(targets.map((t) => t.pairedWith).filter((k) => k !== undefined));
  // A paired target and its reference are one unit; a reference is only measured in its pairs.
  const units: Target[][] = targets.filter((t) => !referenced.has(t.key) || t.pairedWith !== undefined).map((t) => {
    if (t.pairedWith === undefined) return [t];
    const ref = byKey.get(t.pairedWith);
    if (ref === undefined) throw new Error(`${t.key} is paired with unknown target ${t.pairedWith}`);
    return [ref, t];
  });
  const one = async (r: number, t: Target, referenceRps: number | null): Promise<Round> => {
    const g = await guard.run(`round ${r + 1}/${s.rounds} ${t.label}`, s.seconds, () => measure(gen, t, s.seconds, cores));
    const res: Round = { ...g.value, foreign_cpu_pct: g.foreign_cpu_pct, disturbed: g.disturbed, round: r, reference_rps: referenceRps };
    log(`round ${r + 1}/${s.rounds} ${t.label}: ${Math.round(res.rps)} req/s, p50 ${res.p50_ms.toFixed(2)} ms, p99 ${res.p99_ms.toFixed(2)} ms, ` +
      `proxy process ${Math.round(res.proxy_process_cpu_pct)}% CPU, cores busy ${Math.round(res.proxy_core_busy_pct)}% (proxy) / ${Math.round(res.load_core_busy_pct)}% (load), others ${Math.round(res.foreign_cpu_pct)}%` +
      `${res.errors + res.non2xx > 0 ? `, ${res.errors} errors, ${res.non2xx} non-2xx` : ''}`);
    results.get(t.key)!.push(res);
    return res;
  };
  for (let r = 0; r < s.rounds; r++) {
    for (let i = 0; i < units.length; i++) {
      const unit = units[(i + r) % units.length]!;
      if (unit.length === 1) {
        await one(r, unit[0]!, null);
        continue;
      }
      const [ref, t] = unit as [Target, Target];
      if (r % 2 === 0) {
        const refRound = await one(r, ref, null);
        await one(r, t, refRound.rps);
      } else {
        // The target's round is recorded with its reference's req/s once that is measured.
        const list = results.get(t.key)!;
        const at = list.length;
        await one(r, t, null);
        const refRound = await one(r, ref, null);
        list[at] = { ...list[at]!, reference_rps: refRound.rps };
      }
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
