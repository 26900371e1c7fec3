// Self-time summary of a V8 .cpuprofile (as written by `node --cpu-prof`): where the CPU
// went, by function and by broad area, so a slow row in the table comes with evidence.
//   node dist-bench/profile.js FILE.cpuprofile [TOP]
// V8 samples a thread by the clock, also while the kernel has it off its CPU inside a
// native call: with sluice pinned to one core, fs.write's hand-off to libuv's thread pool
// lets the pool thread run at once, and that time shows as the write's own (2.6% of the
// worker's samples for the access log, against 1.2% of its CPU time). For CPU time, sample
// with perf instead: `node --perf-basic-prof`, then `perf record -e cpu-clock -g -t <tid>`
// (no PMU needed).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { round } from './lib/stats.js';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  readonly self_ms: number;
  /** Share of the busy (non-idle) time. */
  readonly self_pct: number;
  readonly fn: string;
  readonly where: string;
}

export interface ProfileSummary {
  readonly file: string;
  readonly total_ms: number;
  readonly busy_ms: number;
  readonly top: ProfileRow[];
  readonly areas: Array<{ area: string; self_ms: number; self_pct: number }>;
}

/** Which broad area a frame belongs to. */
function areaOf(f: CallFrame): string {
  const u = f.url;
  if (u === '') {
    // Native frames: (program) is mostly the uWS/libuv C++ and syscalls, GC is GC.
    if (f.functionName === '(garbage collector)') return 'GC';
    if (f.functionName === '(program)') return 'native (uWS, libuv, syscalls)';
    return 'native builtins';
  }
  if (u.includes('/dist/proxy/upstream/')) return 'sluice upstream client';
  if (u.includes('/dist/')) return 'sluice other';
  if (u.includes('node_modules/uWebSockets.js')) return 'uWS JS glue';
  if (u.startsWith('node:net') || u.startsWith('node:internal/stream_base') || u.startsWith('node:internal/streams') || u.startsWith('node:stream')) return 'node net/streams';
  if (u.startsWith('node:')) return 'node other';
  return 'other JS';
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const i = url.lastIndexOf('/dist/');
  if (i !== -1) return url.slice(i + 1);
  const n = url.indexOf('node_modules/');
  if (n !== -1) return url.slice(n + 13);
  return url.replace(/^file:\/\//, '');
}

export function summariseProfile(file: string, topN = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i+1] is the time spent in sample i (the delta precedes the next sample).
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  const byFn = new Map<string, { us: number; fn: string; where: string }>();
  const byArea = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const fn = f.functionName || '(anonymous)';
    const where = f.url === '' ? '' : `${shortUrl(f.url)}:${f.lineNumber + 1}`;
    const key = `${fn}@${where}`;
    const row = byFn.get(key) ?? { us: 0, fn, where };
    row.us += us;
    byFn.set(key, row);
    const area = areaOf(f);
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number): number => round((100 * us) / (busy || 1), 1);
  return {
    file,
    total_ms: round(total / 1000),
    busy_ms: round(busy / 1000),
    top: [...byFn.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((r) => ({ self_ms: round(r.us / 1000, 1), self_pct: pct(r.us), fn: r.fn, where: r.where })),
    areas: [...byArea.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, self_ms: round(us / 1000), self_pct: pct(us) })),
  };
}

/** The busiest profile in a --cpu-prof-dir: the data-plane worker thread, not the idle main thread. */
export function busiestProfile(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
  if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
  let best = files[0]!;
  let bestBusy = -1;
  for (const f of files) {
    if (statSync(f).size === 0) continue;
    const busy = summariseProfile(f, 0).busy_ms;
    if (busy > bestBusy) {
      best = f;
      bestBusy = busy;
    }
  }
  return best;
}

export function renderProfile(title: string, s: ProfileSummary): string {
  const lines = [
    `### ${title}`,
    '',
    `Profile ${s.file}: ${s.total_ms} ms sampled, ${s.busy_ms} ms busy (percentages are of busy time).`,
    '',
    '| area | self ms | % |',
    '|---|---:|---:|',
    ...s.areas.map((a) => `| ${a.area} | ${a.self_ms} | ${a.self_pct} |`),
    '',
    '| self ms | % | function | where |',
    '|---:|---:|---|---|',
    ...s.top.map((r) => `| ${r.self_ms} | ${r.self_pct} | \`${r.fn}\` | ${r.where} |`),
    '',
  ];
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist-bench/profile.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(renderProfile(file, summariseProfile(file, Number(process.argv[3] ?? 25))));
}
