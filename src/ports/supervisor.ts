// Supervises one model-server process group: start until ready, restart on crash with
// backoff, stop the whole group. One async loop per run owns every transition; stop()
// aborts it and kills the group, so no two paths ever race to spawn.
//
// Lifetime: the owner calls stop() when the gateway shuts down (SIGINT/SIGTERM). If the
// gateway itself is SIGKILLed, the model servers are not killed, on purpose: they lead
// their own process groups, the state module has recorded {pid, pgid, port} and what they
// were started with (fingerprint.ts), and the next run adopts them (ReplicaProcess.adopt)
// or kills them (killGroup). Their stdout/stderr go to files (log-files.ts), not pipes, so
// a dead gateway's servers go on writing; a replica without a log directory gets pipes, and
// a server of such a replica that writes after the gateway died gets EPIPE/SIGPIPE.

import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { SluiceError } from '../errors/index.js';
import { probe } from '../health/index.js';
import { adoptAttempt, spawnAttempt, type Attempt, type ExitInfo } from './attempt.js';
import { firstErrorLine, formatLines, LogBuffer, type LogLine } from './log-buffer.js';
import { assertForeignGroup, isAliveInGroup, killGroup, readStatSync } from './process-group.js';
import { resolveReplicaOptions, type ReplicaProcessOptions, type ResolvedReplicaOptions } from './replica-options.js';
import { checkInt } from './validate.js';

export type ReplicaState = 'starting' | 'ready' | 'restarting' | 'stopping' | 'stopped' | 'failed';

export type FailureReason = 'spawn' | 'exited' | 'start_timeout' | 'crash_loop' | 'stopped' | 'internal';

export interface StateInfo {
  readonly id: string;
  readonly pid: number | undefined;
  readonly pgid: number | undefined;
  readonly restarts: number;
  /** restarting: how the previous process ended. */
  readonly exitCode?: number | null;
  readonly signal?: NodeJS.Signals | null;
  /** restarting: backoff before the next spawn. */
  readonly delayMs?: number;
  /** failed, and stopping on the way to failed. */
  readonly error?: SluiceError;
  /** stopped: the grace period ran out and the group was SIGKILLed. */
  readonly forced?: boolean;
}

export interface ReplicaEvents {
  state: [state: ReplicaState, info: StateInfo];
  /**
   * A process was spawned (the first, or one restarted after a crash): its pid, for the
   * owner to record at once, since a restarted server may take long to become ready.
   */
  spawn: [pid: number];
}

export interface AdoptOptions extends ReplicaProcessOptions {
  readonly pid: number;
  readonly pgid: number;
}

const TAIL_LINES = 20;

type Outcome = 'ready' | 'exited' | 'timeout' | 'aborted';

/**
 * Lifecycle failures carry a reason so that callers can branch without reading text.
 * SLUICE_ERR_INTERNAL until the error table gains a dedicated replica code.
 */
/**
 * `summary`: what happened, in one line; `output`: what the server printed, appended to the
 * message. `details.summary` is what a client refused for it may read: a server's output
 * stays on the admin API.
 */
function replicaError(reason: FailureReason, summary: string, id: string, extra?: Record<string, unknown>, output = ''): SluiceError {
  return new SluiceError('SLUICE_ERR_INTERNAL', summary + output, { reason, replica: id, summary, ...extra });
}

/** Waits `ms` (clearing the timer if aborted, so a long backoff holds nothing); false when aborted. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return ms <= 0 ? Promise.resolve(true) : sleep(ms, true, { signal }).catch(() => false);
}

function describeExit(exit: ExitInfo): string {
  if (exit.spawnError !== undefined) return `could not be started: ${exit.spawnError.message}`;
  if (exit.signal !== null) return `was killed by ${exit.signal}`;
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return 'exited';
}

export class ReplicaProcess extends EventEmitter<ReplicaEvents> {
  readonly #opts: ResolvedReplicaOptions;
  readonly #logs: LogBuffer;
  #state: ReplicaState = 'stopped';
  #pid: number | undefined;
  #pgid: number | undefined;
  #restarts = 0;
  #lastError: SluiceError | undefined;
  #crashes: number[] = [];
  /** When the current attempt began (epoch ms): a failed start's cause is looked for in its output. */
  #attemptAt = 0;
  #loop: Promise<void> | undefined;
  #abort: AbortController | undefined;
  #stopping: Promise<void> | undefined;
  #waiters: { resolve: () => void; reject: (err: SluiceError) => void }[] = [];

  constructor(options: ReplicaProcessOptions) {
    super();
    this.#opts = resolveReplicaOptions(options);
    this.#logs = new LogBuffer(this.#opts.logLines);
  }

  /**
   * A handle on a group that a previous gateway run started, or null when `pid` is gone
   * or no longer leads `pgid` (the pid was reused). Returned already in state
   * `starting` and probing; `start()` awaits readiness. Its output is followed in its log
   * files from their current end (with a log directory; else logs() holds only a note). If it
   * dies later it is restarted from `argv` like any other replica.
   */
  static adopt(options: AdoptOptions): ReplicaProcess | null {
    const { pid, pgid, ...rest } = options;
    checkInt('pid', pid, 2, 2 ** 22);
    checkInt('pgid', pgid, 2, 2 ** 22);
    assertForeignGroup(pgid);
    const replica = new ReplicaProcess(rest);
    if (!isAliveInGroup(readStatSync(pid), pgid)) return null;
    const o = replica.#opts;
    replica.#logs.push('stderr', `[sluice] adopted pid ${pid} (pgid ${pgid}) from a previous gateway run${o.logDir === undefined ? '; its output is not captured' : ''}`);
    replica.#begin(adoptAttempt(pid, pgid, o.readinessIntervalMs, replica.#logs, o.logDir, o.id));
    return replica;
  }

  get id(): string { return this.#opts.id; }
  get port(): number { return this.#opts.port; }
  get host(): string { return this.#opts.host; }
  get state(): ReplicaState { return this.#state; }
  /** Leader of the current process group; undefined when none may be running. */
  get pid(): number | undefined { return this.#pid; }
  get pgid(): number | undefined { return this.#pgid; }
  get restarts(): number { return this.#restarts; }
  get lastError(): SluiceError | undefined { return this.#lastError; }

  /** Captured stdout/stderr lines, oldest first. */
  logs(): LogLine[] {
    return this.#logs.tail();
  }

  /** One readiness probe now, whatever the state. */
  probe(): Promise<boolean> {
    const o = this.#opts;
    return probe(o.host, o.port, o.readinessPath, o.probeTimeoutMs);
  }

  /**
   * Spawns the server unless it is already running, and resolves once it answers its
   * readiness probe. Rejects with lastError when it fails, or when stop() comes first.
   */
  async start(): Promise<void> {
    if (this.#stopping !== undefined) await this.#stopping;
    if (this.#state === 'ready') return;
    const ready = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (this.#loop === undefined) this.#begin(undefined);
    return ready;
  }

  /**
   * Terminates the whole process group (SIGTERM, stopGraceMs, SIGKILL) and resolves once
   * no process of it remains. Safe in any state and idempotent; a no-op when nothing runs.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const loop = this.#loop;
    const pgid = this.#pgid;
    if (loop === undefined && pgid === undefined) return;
    this.#abort?.abort();
    this.#setState('stopping', {});
    const { forced } = pgid === undefined ? { forced: false } : await killGroup(pgid, this.#opts.stopGraceMs);
    await loop;
    this.#pid = undefined;
    this.#pgid = undefined;
    this.#setState('stopped', { forced });
  }

  #begin(adopted: Attempt | undefined): void {
    this.#crashes = [];
    if (adopted !== undefined) {
      this.#pid = adopted.pid;
      this.#pgid = adopted.pgid;
    }
    this.#attemptAt = Date.now();
    const abort = new AbortController();
    this.#abort = abort;
    this.#setState('starting', {});
    this.#loop = this.#supervise(adopted, abort.signal).finally(() => {
      this.#loop = undefined;
    });
  }

  async #supervise(adopted: Attempt | undefined, signal: AbortSignal): Promise<void> {
    const aborted = new Promise<'aborted'>((resolve) => signal.addEventListener('abort', () => resolve('aborted'), { once: true }));
    let attempt = adopted;
    let restarting = false;
    try {
      for (;;) {
        attempt ??= this.#spawn();
        const outcome = await this.#awaitReady(attempt, signal, aborted);
        if (signal.aborted) return;
        if (outcome === 'ready') {
          this.#setState('ready', {});
          if ((await Promise.race([attempt.exited, aborted])) === 'aborted') return;
        } else if (!restarting) {
          await this.#fail(attempt, this.#startError(attempt, outcome), signal);
          return;
        }
        // A crash: after ready, or a restarted process that did not come up.
        const exit = attempt.exit ?? { code: null, signal: null };
        this.#lastError = outcome === 'ready'
          ? replicaError('exited', `replica ${this.id} ${describeExit(exit)}`, this.id, { exitCode: exit.code, signal: exit.signal }, this.#output())
          : this.#startError(attempt, outcome);
        const now = Date.now();
        const { backoffInitialMs, backoffMaxMs, maxCrashes, windowMs } = this.#opts.restart;
        this.#crashes = this.#crashes.filter((at) => now - at < windowMs);
        this.#crashes.push(now);
        if (this.#crashes.length >= maxCrashes) {
          const err = replicaError('crash_loop', `replica ${this.id} crashed ${this.#crashes.length} times within ${windowMs} ms; giving up`, this.id, {
            exitCode: exit.code, signal: exit.signal,
          }, `.\n${this.#lastError.message}`);
          await this.#fail(attempt, err, signal);
          return;
        }
        const delayMs = Math.min(backoffMaxMs, backoffInitialMs * 2 ** (this.#crashes.length - 1));
        this.#setState('restarting', { delayMs, exitCode: exit.code, signal: exit.signal });
        // Forked children of the dead leader may still hold the port.
        await this.#reap(attempt);
        if (!(await pause(now + delayMs - Date.now(), signal))) return;
        this.#restarts++;
        restarting = true;
        attempt = undefined;
      }
    } catch (err) {
      if (signal.aborted) return;
      const cause = err instanceof Error ? err.message : String(err);
      await this.#fail(attempt, replicaError('internal', `replica ${this.id} supervision failed: ${cause}`, this.id), signal);
    }
  }

  #spawn(): Attempt {
    this.#attemptAt = Date.now();
    const attempt = spawnAttempt(this.#opts, this.#logs);
    this.#pid = attempt.pid;
    this.#pgid = attempt.pgid;
    if (attempt.pid !== undefined) this.emit('spawn', attempt.pid);
    return attempt;
  }

  async #awaitReady(attempt: Attempt, signal: AbortSignal, aborted: Promise<'aborted'>): Promise<Outcome> {
    const o = this.#opts;
    const deadline = Date.now() + o.startTimeoutMs;
    const ended = Promise.race([attempt.exited.then(() => 'exited' as const), aborted]);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return 'timeout';
      const probed = await Promise.race([probe(o.host, o.port, o.readinessPath, Math.min(o.probeTimeoutMs, left)), ended]);
      if (probed === 'exited' || probed === 'aborted') return probed;
      // A 200 from a process that has already exited came from someone else on the port.
      if (probed) return attempt.exit === undefined ? 'ready' : 'exited';
      const waited = await Promise.race([pause(Math.min(o.readinessIntervalMs, deadline - Date.now()), signal), ended]);
      if (waited === 'exited' || waited === 'aborted') return waited;
    }
  }

  #startError(attempt: Attempt, outcome: Exclude<Outcome, 'ready'>): SluiceError {
    if (outcome === 'timeout') {
      return replicaError('start_timeout', `replica ${this.id} did not answer GET ${this.#opts.readinessPath} with 200 within ${this.#opts.startTimeoutMs} ms`, this.id, {}, this.#output(true));
    }
    const exit = attempt.exit ?? { code: null, signal: null };
    const reason = exit.spawnError === undefined ? 'exited' : 'spawn';
    return replicaError(reason, `replica ${this.id} ${describeExit(exit)} before becoming ready`, this.id, {
      exitCode: exit.code, signal: exit.signal,
    }, this.#output(true));
  }

  /**
   * The server's last lines, for an error message; for a start that failed (`startFailed`),
   * first the attempt's first exception line: a launcher that re-raises its child's failure
   * (`mlflow models serve` around uvicorn) prints a traceback of its own after the child's,
   * which pushes the cause out of the last lines. After a crash of a server that was ready,
   * earlier exceptions may be requests' errors it logged, not the cause: none is named.
   */
  #output(startFailed = false): string {
    const tail = this.#logs.tail(TAIL_LINES);
    if (tail.length === 0) return ' (no output)';
    const cause = startFailed ? firstErrorLine(this.#logs.tail(), this.#attemptAt) : undefined;
    return `${cause === undefined ? '' : `; first error: ${cause}`}; last output:\n${formatLines(tail)}`;
  }

  /** Gives up: kills what is left of the group, then reports `failed`. */
  async #fail(attempt: Attempt | undefined, err: SluiceError, signal: AbortSignal): Promise<void> {
    this.#lastError = err;
    this.#setState('stopping', { error: err });
    try {
      if (attempt !== undefined) await this.#reap(attempt);
    } catch {
      // The group may have survived (EPERM): #pgid stays set, so a later stop() retries.
    }
    if (signal.aborted) return;
    this.#setState('failed', { error: err });
  }

  async #reap(attempt: Attempt): Promise<void> {
    if (attempt.pgid !== undefined) await killGroup(attempt.pgid, this.#opts.stopGraceMs);
    if (this.#pgid === attempt.pgid) {
      this.#pid = undefined;
      this.#pgid = undefined;
    }
  }

  #setState(state: ReplicaState, extra: Omit<StateInfo, 'id' | 'pid' | 'pgid' | 'restarts'>): void {
    // Each crash is news even while already restarting; other repeats are not.
    if (state === this.#state && state !== 'restarting') return;
    this.#state = state;
    const info: StateInfo = { id: this.id, pid: this.#pid, pgid: this.#pgid, restarts: this.#restarts, ...extra };
    if (state === 'ready') this.#settleWaiters(undefined);
    else if (state === 'failed') this.#settleWaiters(extra.error ?? this.#lastError);
    else if (state === 'stopped') this.#settleWaiters(replicaError('stopped', `replica ${this.id} was stopped before it became ready`, this.id));
    this.emit('state', state, info);
  }

  #settleWaiters(err: SluiceError | undefined): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) return;
    this.#waiters = [];
    for (const w of waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }
}
