// CPU accounting around each measurement, so every row says whether the proxy really was
// the bottleneck (its own process near 100% of its core) and how busy each core was
// (the proxy's core also carries kernel network work and, on a shared machine, neighbours).

import { readdirSync, readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ: clock ticks per second on Linux

/** user+system seconds of every process in a process group (all threads included). */
export function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue;
    }
    // Fields after the parenthesised command: state ppid pgrp ... utime(14) stime(15).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) === pgid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / TICK;
}

export interface CoreTimes {
  readonly busy: number;
  readonly total: number;
}

/** Busy and total jiffies summed over the given CPUs (idle and iowait are not busy). */
export function coreTimes(cpus: readonly number[]): CoreTimes {
  let busy = 0;
  let total = 0;
  for (const line of readFileSync('/proc/stat', 'latin1').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (m === null || !cpus.includes(Number(m[1]))) continue;
    const v = m[2]!.trim().split(/\s+/).slice(0, 8).map(Number);
    const t = v.reduce((a, x) => a + x, 0);
    total += t;
    busy += t - v[3]! - v[4]!;
  }
  return { busy, total };
}

export function busyPercent(before: CoreTimes, after: CoreTimes): number {
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.busy - before.busy)) / total : NaN;
}

/**
 * user+nice+system seconds of the whole machine (all CPUs), from /proc/stat, plus steal:
 * time the hypervisor gave to other guests is as lost to the bench as a neighbour's.
 */
function machineCpuSeconds(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  return (v[0]! + v[1]! + v[2]! + (v[7] ?? 0)) / TICK;
}

/** CPU seconds of the bench itself: this process, its reaped children, and live groups. */
function ourCpuSeconds(pgids: readonly number[]): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime stime cutime cstime: a run-to-completion child (wrk) lands in cutime once reaped.
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const g of pgids) ticks += groupCpuSeconds(g) * TICK;
  return ticks / TICK;
}

/**
 * CPU used by processes that are not the bench's (other jobs on a shared machine) over an
 * interval, in % of one core. Kernel softirq work (the loopback TCP path) is not counted:
 * it is ours, and /proc/stat books it apart from user and system time.
 */
export class ForeignCpu {
  readonly #pgids: () => readonly number[];
  #machine = 0;
  #ours = 0;
  #started = 0;

  constructor(pgids: () => readonly number[]) {
    this.#pgids = pgids;
  }

  start(): void {
    this.#machine = machineCpuSeconds();
    this.#ours = ourCpuSeconds(this.#pgids());
    this.#started = performance.now();
  }

  /** % of one core used by others since start(). */
  percent(): number {
    const wall = (performance.now() - this.#started) / 1000;
    const foreign = machineCpuSeconds() - this.#machine - (ourCpuSeconds(this.#pgids()) - this.#ours);
    return Math.max(0, (100 * foreign) / wall);
  }
}
