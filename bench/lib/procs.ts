// The one place that starts and stops processes. Every child runs in its own process group
// (detached) so that stopping it also stops what it forked (nginx's worker, sluice's
// threads are in-process but a sim deployment would not be), and so that a Ctrl-C in the
// terminal reaches the bench first and the bench decides the order of shutdown.
//
// Three layers make sure nothing outlives the bench: stop()/stopAll() on the normal path,
// a synchronous SIGKILL of every group on process 'exit' (failures, signals), and a tiny
// shell watchdog that kills the recorded groups if the bench itself is SIGKILLed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { log, sleep } from './log.js';

export interface ProcSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** CPU list for `taskset -c`; null runs unpinned. */
  readonly cpus?: string | null;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /**
   * stdout to this file instead of the bench's pipe: a proxy that logs every request writes
   * its access log there, as nginx writes its own to a file (the bench must not read it).
   */
  readonly stdoutFile?: string;
}

export interface Readiness {
  /** Ready once a stdout line matches. */
  readonly line?: RegExp;
  /** Ready once this URL answers 2xx. */
  readonly url?: string;
  /** Ready once this TCP port accepts. */
  readonly port?: number;
  readonly timeoutMs?: number;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<number | null>;
  /** Everything written to stdout so far (kept for run-to-completion tools). */
  stdout(): string;
  running(): boolean;
}

interface Entry extends Proc {
  readonly child: ChildProcess;
  exitCode: number | null | undefined;
}

let tasksetAvailable: boolean | null = null;

export function hasTaskset(): boolean {
  tasksetAvailable ??= spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  return tasksetAvailable;
}

export class ProcessGroup {
  readonly dir: string;
  readonly #live = new Map<number, Entry>();
  readonly #pgidFile: string;
  #watchdog: ChildProcess | null = null;
  #seq = 0;

  constructor(dir: string) {
    this.dir = dir;
    this.#pgidFile = join(dir, 'pgids');
    writeFileSync(this.#pgidFile, '');
    // dash's kill takes no `--`: `kill -9 -PGID` is the portable spelling.
    const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ` +
      `for g in $(cat '${this.#pgidFile}' 2>/dev/null); do kill -9 -$g 2>/dev/null; done; rm -rf '${dir}'`;
    this.#watchdog = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' });
    this.#watchdog.unref();
    process.on('exit', () => this.killAllSync());
  }

  /** Starts a long-running child and waits until it is ready. */
  async start(spec: ProcSpec, ready: Readiness): Promise<Proc> {
    const entry = this.#spawn(spec);
    try {
      await waitReady(entry, ready);
    } catch (err) {
      await this.stop(entry);
      throw new Error(`${spec.name} did not become ready: ${(err as Error).message}\n${tail(entry)}`);
    }
    return entry;
  }

  /** Runs a child to completion (a load generator) and returns its stdout. */
  async run(spec: ProcSpec, timeoutMs: number): Promise<string> {
    const entry = this.#spawn(spec);
    const timer = setTimeout(() => void this.stop(entry, 500), timeoutMs);
    const code = await entry.exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`${spec.name} exited with ${code}\n${tail(entry)}`);
    return entry.stdout();
  }

  /** SIGTERM to the process (so sluice can flush a CPU profile), SIGKILL to its group after the grace. */
  async stop(proc: Proc, graceMs = 5000): Promise<void> {
    const entry = this.#live.get(proc.pid);
    if (entry === undefined) return;
    signal(entry.pid, 'SIGTERM', false);
    const timeout = sleep(graceMs).then(() => 'timeout' as const);
    if ((await Promise.race([entry.exited, timeout])) === 'timeout') log(`${entry.name} ignored SIGTERM for ${graceMs} ms; killing its group`);
    signal(entry.pid, 'SIGKILL', true);
    this.#forget(entry);
  }

  /** Process groups alive now (each child leads its own). */
  pgids(): number[] {
    return [...this.#live.keys()];
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#live.values()].reverse().map((e) => this.stop(e, 3000)));
  }

  /** Last resort on 'exit': nothing async can run any more. */
  killAllSync(): void {
    for (const e of this.#live.values()) signal(e.pid, 'SIGKILL', true);
    this.#live.clear();
    this.#recordGroups();
    if (this.#watchdog?.pid !== undefined) signal(this.#watchdog.pid, 'SIGKILL', false);
    this.#watchdog = null;
  }

  #spawn(spec: ProcSpec): Entry {
    const pinned = spec.cpus != null && hasTaskset();
    const command = pinned ? 'taskset' : spec.command;
    const args = pinned ? ['-c', spec.cpus!, spec.command, ...spec.args] : [...spec.args];
    const logFile = join(this.dir, `${++this.#seq}-${spec.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
    const logStream = createWriteStream(logFile);
    const stdoutFd = spec.stdoutFile === undefined ? null : openSync(spec.stdoutFile, 'a');
    const child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'],
      env: spec.env ?? process.env,
      ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
    });
    if (stdoutFd !== null) closeSync(stdoutFd);
    if (child.pid === undefined) throw new Error(`cannot spawn ${spec.command}`);
    let out = '';
    const entry: Entry = {
      name: spec.name,
      pid: child.pid,
      logFile,
      child,
      exitCode: undefined,
      exited: new Promise((resolve) => {
        child.on('exit', (code, sig) => {
          entry.exitCode = code ?? (sig === null ? null : 128);
          resolve(entry.exitCode);
        });
        child.on('error', (err) => {
          logStream.write(`spawn error: ${err.message}\n`);
          entry.exitCode = 127;
          resolve(127);
        });
      }),
      stdout: () => out,
      running: () => entry.exitCode === undefined,
    };
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      logStream.write(d);
    });
    child.stderr!.on('data', (d: Buffer) => logStream.write(d));
    void entry.exited.then(() => {
      this.#forget(entry);
      logStream.end();
    });
    this.#live.set(entry.pid, entry);
    this.#recordGroups();
    return entry;
  }

  #forget(entry: Entry): void {
    if (this.#live.delete(entry.pid)) this.#recordGroups();
  }

  #recordGroups(): void {
    try {
      writeFileSync(this.#pgidFile, [...this.#live.keys()].join('\n'));
    } catch {
      // The temp dir is already gone (disposed): nothing left to record.
    }
  }

  /** Removes the temp dir; the caller has stopped everything. */
  dispose(): void {
    this.killAllSync();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // Already gone.
  }
}

function tail(entry: Entry): string {
  let text = '';
  try {
    text = readFileSync(entry.logFile, 'utf8').split('\n').slice(-21).join('\n');
  } catch {
    // Not written yet.
  }
  return text.trim() === '' ? `(no output; log ${entry.logFile})` : `--- last lines of ${entry.logFile} ---\n${text}`;
}

async function waitReady(entry: Entry, ready: Readiness): Promise<void> {
  const deadline = Date.now() + (ready.timeoutMs ?? 20_000);
  for (;;) {
    if (!entry.running()) throw new Error(`exited with ${entry.exitCode}`);
    if (await isReady(entry, ready)) return;
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(50);
  }
}

async function isReady(entry: Entry, ready: Readiness): Promise<boolean> {
  if (ready.line !== undefined && !entry.stdout().split('\n').some((l) => ready.line!.test(l))) return false;
  if (ready.port !== undefined && !(await portOpen(ready.port))) return false;
  if (ready.url !== undefined) {
    try {
      const res = await fetch(ready.url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (!res.ok) return false;
    } catch {
      return false;
    }
  }
  return true;
}

export function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Stops everything on Ctrl-C / SIGTERM / SIGHUP and on an unexpected failure, then exits;
 * `cleanup` is the caller's own async tidy-up (stop children, remove the temp dir).
 */
export function onInterrupt(cleanup: () => Promise<void>): void {
  let exiting = false;
  const bail = (code: number, why: string): void => {
    if (exiting) return;
    exiting = true;
    log(`${why}: stopping every process the bench started`);
    void cleanup().finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail(130, 'interrupted'));
  process.on('SIGTERM', () => bail(143, 'terminated'));
  process.on('SIGHUP', () => bail(129, 'hang-up'));
  process.on('uncaughtException', (err) => {
    log(`uncaught: ${err.stack ?? err.message}`);
    bail(1, 'failure');
  });
}
