// What the bench needs from the machine: nginx and wrk (installed from Debian when
// missing), the CPU layout for pinning, and the facts printed with every result.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, getPriority, hostname, loadavg, release, setPriority } from 'node:os';
import { log } from './log.js';
import { hasTaskset } from './procs.js';

export interface Tools {
  readonly nginx: string;
  /** null: wrk could not be installed; autocannon stands in. */
  readonly wrk: string | null;
}

function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    const p = `${dir}/${cmd}`;
    if (dir !== '' && existsSync(p)) return p;
  }
  return null;
}

function run(cmd: string, args: string[]): boolean {
  log(`$ ${cmd} ${args.join(' ')}`);
  // Output goes to stderr: stdout is reserved for results.
  return spawnSync(cmd, args, { stdio: ['ignore', 2, 2], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status === 0;
}

function systemNginxRunning(): boolean {
  try {
    const pid = Number(readFileSync('/run/nginx.pid', 'utf8').trim());
    process.kill(pid, 0);
    return pid > 0;
  } catch {
    return false;
  }
}

/** Installs what is missing (`apt-get install -y nginx-light wrk`, after `apt-get update` if needed). */
export function ensureTools(): Tools {
  const missing: string[] = [];
  if (which('nginx') === null) missing.push('nginx-light');
  if (which('wrk') === null) missing.push('wrk');
  if (missing.length > 0) {
    const root = process.getuid?.() === 0;
    const apt = root ? ['apt-get'] : ['sudo', '-n', 'apt-get'];
    const install = (): boolean => run(apt[0]!, [...apt.slice(1), 'install', '-y', '--no-install-recommends', ...missing]);
    const wasRunning = systemNginxRunning();
    log(`missing ${missing.join(', ')}: installing from Debian`);
    if (!install()) {
      run(apt[0]!, [...apt.slice(1), 'update']);
      install();
    }
    // Debian's postinst may start the system nginx on port 80 where no policy-rc.d forbids
    // it: that daemon is ours to stop, the bench leaves nothing running.
    if (!wasRunning && systemNginxRunning()) run(which('nginx') ?? 'nginx', ['-s', 'quit']);
  }
  const nginx = which('nginx');
  if (nginx === null) throw new Error('nginx is not installed and could not be installed (apt-get install -y nginx-light)');
  const wrk = which('wrk');
  if (wrk === null) log('wrk could not be installed: falling back to autocannon (a Node generator: it needs more CPU per request than wrk, so absolute figures drop)');
  return { nginx, wrk };
}

/** Where each party runs. */
export interface Pinning {
  /** The proxy under test, alone. */
  readonly proxy: string | null;
  /** Load generator, upstream and the bench driver. */
  readonly rest: string | null;
  readonly restCount: number;
  /** CPU numbers, for the per-core accounting; both hold every CPU when not pinned. */
  readonly proxyCpus: readonly number[];
  readonly restCpus: readonly number[];
  readonly description: string;
}

function allowedCpus(): number[] {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (m === null) return cpus().map((_, i) => i);
  const out: number[] = [];
  for (const part of m[1]!.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let i = a!; i <= (b ?? a!); i++) out.push(i);
  }
  return out;
}

export function planPinning(): Pinning {
  const list = allowedCpus();
  if (!hasTaskset() || list.length < 2) {
    return { proxy: null, rest: null, restCount: Math.max(1, list.length), proxyCpus: list, restCpus: list, description: `not pinned (${hasTaskset() ? `only ${list.length} CPU` : 'taskset missing'}): proxy, load and upstream compete for the same CPUs` };
  }
  const proxy = String(list[1]);
  const restList = list.filter((c) => c !== list[1]);
  const rest = restList.join(',');
  // The driver itself moves to the shared CPU too, so that children inherit it by default.
  spawnSync('taskset', ['-a', '-p', '-c', rest, String(process.pid)], { stdio: 'ignore' });
  return {
    proxy,
    rest,
    restCount: restList.length,
    proxyCpus: [list[1]!],
    restCpus: restList,
    description: `taskset: proxy under test (nginx master+worker, or the whole sluice process with all its threads) alone on CPU ${proxy}; load generator, upstream servers and the bench driver share CPU ${rest}`,
  };
}

export interface Machine {
  readonly hostname: string;
  readonly cpu: string;
  readonly cores: number;
  readonly kernel: string;
  readonly node: string;
  readonly nginx: string;
  readonly load_tool: string;
  readonly loadavg_at_start: number[];
}

export function describeMachine(tools: Tools): Machine {
  const nginxV = spawnSync(tools.nginx, ['-v'], { encoding: 'utf8' });
  const wrkV = tools.wrk === null ? null : spawnSync(tools.wrk, ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0]!.replace(/ Copyright.*/, '');
  return {
    hostname: hostname(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    kernel: `${process.platform} ${release()}`,
    node: process.version,
    nginx: (nginxV.stderr || nginxV.stdout).trim().replace(/^nginx version: /, ''),
    load_tool: wrkV ?? 'autocannon',
    loadavg_at_start: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/**
 * Raises the bench's scheduling weight (children inherit it) so that unrelated jobs on a
 * shared machine perturb the figures less; every target gets the same priority, so the
 * comparison stays fair. Returns what was done, for the report.
 */
export function raisePriority(nice: number): string {
  try {
    setPriority(nice);
    return `nice ${getPriority()} for the bench and every process it starts`;
  } catch {
    return `normal priority (nice ${getPriority()}): raising it needs root`;
  }
}
