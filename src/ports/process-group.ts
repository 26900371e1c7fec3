// Process groups seen through Linux /proc. A model server forks (uvicorn workers, Ollama
// runners, `bash -c` wrappers), and the leader may exit while its children still hold
// the port, so "stopped" is decided by scanning /proc for the group, never by the
// leader's exit alone. A helper started in a session of its own (`setsid`,
// `start_new_session`) leaves the group: a stop finds such descendants by their parent
// links while their ancestors in the group still run, and stops them with the group.
// Linux only, like the rest of the gateway's process handling.

import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../errors/index.js';

const POLL_MS = 50;
const KILL_POLL_MS = 1000;
/** Stat files of /proc read at once by a scan. */
const SCAN_READS = 16;

export interface ProcStat {
  readonly pid: number;
  /** One letter from /proc/<pid>/stat: R, S, D, Z, T, ... */
  readonly state: string;
  readonly ppid: number;
  readonly pgid: number;
  /** When it started, in clock ticks since boot (field 22): with the pid, it names one process even once the pid is reused. */
  readonly startTicks: number;
}

export interface KillResult {
  /** True when the grace period ran out and SIGKILL was needed. */
  readonly forced: boolean;
}

function parseStat(pid: number, text: string): ProcStat | null {
  // comm (field 2) may hold spaces and parentheses: the fields we need follow the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const fields = text.slice(close + 2).split(' ');
  const state = fields[0];
  const ppid = Number(fields[1]);
  const pgid = Number(fields[2]);
  const startTicks = Number(fields[19]);
  if (state === undefined || !Number.isInteger(ppid) || !Number.isInteger(pgid) || !Number.isInteger(startTicks)) return null;
  return { pid, state, ppid, pgid, startTicks };
}

/**
 * What runs under a pid a previous gateway run recorded, with the start time it recorded
 * (none in records older than that field: taken as its own). `other`: the pid was reused,
 * by a process that must be left alone (a container restart starts pids over).
 */
export function recordedProcess(pid: number, startTicks: number | undefined): 'gone' | 'ours' | 'other' {
  const stat = readStatSync(pid);
  if (!isLive(stat)) return 'gone';
  return startTicks === undefined || stat.startTicks === startTicks ? 'ours' : 'other';
}

/** Zombies are dead: they hold no port and no memory, only a slot waiting to be reaped. */
function isLive(stat: ProcStat | null): stat is ProcStat {
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

/**
 * Whether a failed read of /proc says only that this process is short of file descriptors
 * (or the kernel of memory) right now: the process read about may well be running, so such
 * a read is tried again, never taken for "gone" (a stop would report a running server
 * stopped and forget it; a watch would restart a server over its own port).
 */
export function isScarce(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE' || code === 'ENOMEM' || code === 'EAGAIN';
}

/**
 * Synchronous on purpose: one small file, used where a caller needs an answer at once.
 * null: no such process; throws what `isScarce` names.
 */
export function readStatSync(pid: number): ProcStat | null {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch (err) {
    if (isScarce(err)) throw err;
    return null;
  }
}

/**
 * When `pid` started (clock ticks since boot), for its record; undefined when it cannot be
 * told now (short of descriptors), and the record names the server by its pid alone.
 */
export function startTicksOf(pid: number): number | undefined {
  try {
    return readStatSync(pid)?.startTicks;
  } catch {
    return undefined;
  }
}

/** null: no such process; throws what `isScarce` names. */
export async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    return parseStat(pid, await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch (err) {
    if (isScarce(err)) throw err;
    return null;
  }
}

/** True while `pid` runs (not a zombie) and still leads or belongs to `pgid`. */
export function isAliveInGroup(stat: ProcStat | null, pgid: number): stat is ProcStat {
  return isLive(stat) && stat.pgid === pgid;
}

/**
 * Every live process, in /proc order. The stat files are read a few at a time, each read
 * holding a descriptor: all at once, a few stops together needed more than a low
 * `ulimit -n` allows. A scan that runs short of descriptors starts again after POLL_MS,
 * for as long as it takes: a scan cut short cannot tell which processes run.
 */
async function liveProcesses(): Promise<ProcStat[]> {
  for (;;) {
    try {
      const pids = (await readdir('/proc')).filter((name) => name.charCodeAt(0) >= 48 && name.charCodeAt(0) <= 57).map(Number);
      const live: ProcStat[] = [];
      for (let i = 0; i < pids.length; i += SCAN_READS) {
        for (const stat of await Promise.all(pids.slice(i, i + SCAN_READS).map(readStat))) {
          if (isLive(stat)) live.push(stat);
        }
      }
      return live;
    } catch (err) {
      if (!isScarce(err)) throw err;
      await sleep(POLL_MS);
    }
  }
}

/** Live (non-zombie) members of the process group, in /proc order. */
export async function groupMembers(pgid: number): Promise<number[]> {
  return (await liveProcesses()).filter((stat) => stat.pgid === pgid).map((stat) => stat.pid);
}

/** Live descendants of the group's members that are in another process group (a session of their own). */
export async function escapedDescendants(pgid: number): Promise<ProcStat[]> {
  const all = await liveProcesses();
  const children = new Map<number, ProcStat[]>();
  for (const stat of all) {
    const siblings = children.get(stat.ppid);
    if (siblings === undefined) children.set(stat.ppid, [stat]);
    else siblings.push(stat);
  }
  const escaped: ProcStat[] = [];
  const seen = new Set<number>();
  const pending = all.filter((stat) => stat.pgid === pgid);
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    for (const child of children.get(next.pid) ?? []) {
      if (seen.has(child.pid)) continue;
      seen.add(child.pid);
      if (child.pgid !== pgid) escaped.push(child);
      pending.push(child);
    }
  }
  return escaped;
}

/** Whether `p` still runs as the same process; one that cannot be looked at now is taken to. */
function stillRecorded(p: ProcStat): boolean {
  try {
    return recordedProcess(p.pid, p.startTicks) === 'ours';
  } catch (err) {
    if (!isScarce(err)) throw err;
    return true;
  }
}

/** Sends `signal` to those of `processes` still running as the same process (a reused pid is left alone); the ones signalled. */
function signalEach(processes: readonly ProcStat[], signal: NodeJS.Signals): ProcStat[] {
  const live: ProcStat[] = [];
  for (const p of processes) {
    if (!stillRecorded(p)) continue;
    try {
      process.kill(p.pid, signal);
      live.push(p);
    } catch {
      // gone meanwhile
    }
  }
  return live;
}

// Read once, when the module loads (descriptors are not short then): a stop made while
// they are must not fail on this check.
const ownPgid = readStatSync(process.pid)?.pgid;

/** Refuses pgids whose signalling would hit init, the kernel or the gateway itself. */
export function assertForeignGroup(pgid: number): void {
  if (!Number.isInteger(pgid) || pgid <= 1 || pgid === ownPgid) {
    throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `refusing to signal process group ${pgid}`, { field: 'pgid' });
  }
}

/** Sends `signal` to every process of the group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  assertForeignGroup(pgid);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Checks `done` every POLL_MS until it holds or `timeoutMs` passes; true when it held. A
 * check that could not look (`isScarce`) has not seen it hold.
 */
async function pollUntil(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let held = false;
    try {
      held = await done();
    } catch (err) {
      if (!isScarce(err)) throw err;
    }
    if (held) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await sleep(Math.min(POLL_MS, left));
  }
}

/** True when the group has no live member. */
async function groupGone(pgid: number): Promise<boolean> {
  // Signal 0 is a cheap "anyone there?"; only when someone is (maybe just zombies) is
  // the /proc scan needed.
  return !signalGroup(pgid, 0) || (await groupMembers(pgid)).length === 0;
}

/** Polls /proc until the group has no live member or `timeoutMs` passes; true when gone. */
export function waitGroupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  return pollUntil(() => groupGone(pgid), timeoutMs);
}

/**
 * Stops a whole process group: SIGTERM, up to `graceMs` for it to go, then SIGKILL.
 * Resolves only once no live process of the group remains. Also the tool for a group
 * left behind by a previous gateway run that should not be adopted.
 */
export async function killGroup(pgid: number, graceMs = 10_000): Promise<KillResult> {
  assertForeignGroup(pgid);
  if ((await groupMembers(pgid)).length === 0) return { forced: false };
  // Found before the group goes: once their parents exit, nothing links them to it.
  let escaped = await escapedDescendants(pgid);
  if (signalGroup(pgid, 'SIGTERM')) {
    // A stopped (SIGSTOP, ptrace) member would hold SIGTERM pending forever.
    signalGroup(pgid, 'SIGCONT');
  }
  escaped = signalEach(escaped, 'SIGTERM');
  signalEach(escaped, 'SIGCONT');
  const allGone = async (): Promise<boolean> => (await groupGone(pgid)) && escaped.every((p) => !stillRecorded(p));
  if (await pollUntil(allGone, graceMs)) return { forced: false };
  // Repeated because a member may have forked between the scan and the signal.
  do {
    signalGroup(pgid, 'SIGKILL');
    signalEach(escaped, 'SIGKILL');
  } while (!(await pollUntil(allGone, KILL_POLL_MS)));
  return { forced: true };
}
