// One run of a model server: either a process we spawned, or one a previous gateway run
// spawned and we adopted. Both expose the same thing to the supervisor: who leads the
// group, and a promise that settles when the leader is gone.

import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LogBuffer } from './log-buffer.js';
import { LogFileTail, logFilePaths, openLogFiles } from './log-files.js';
import { isAliveInGroup, isScarce, readStat } from './process-group.js';

export interface ExitInfo {
  /** null when killed by a signal, or when the exit status is unknown (adopted). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the executable could not be started at all (ENOENT, EACCES, ...). */
  readonly spawnError?: Error;
}

export interface Attempt {
  readonly pid: number | undefined;
  /** Equal to pid for a spawned leader: `detached: true` makes it call setsid(). */
  readonly pgid: number | undefined;
  readonly exited: Promise<ExitInfo>;
  /** Set once `exited` has settled, for synchronous checks. */
  exit: ExitInfo | undefined;
}

export interface SpawnSpec {
  readonly id: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** What `env` is layered over. */
  readonly baseEnv: Readonly<NodeJS.ProcessEnv>;
  readonly cwd: string | undefined;
  /** Output to files in this directory (see log-files.ts); pipes when undefined. */
  readonly logDir: string | undefined;
}

// After the leader exits, its last words may still sit in the pipes; wait for them a
// little, but not for grandchildren that keep the pipes open for good.
const DRAIN_MS = 200;

export function spawnAttempt(spec: SpawnSpec, logs: LogBuffer): Attempt {
  const [file, ...args] = spec.argv as [string, ...string[]];
  const paths = spec.logDir === undefined ? null : logFilePaths(spec.logDir, spec.id);
  let fds: [number, number] | null;
  try {
    fds = paths === null ? null : openLogFiles(spec.logDir!, paths);
  } catch (err) {
    // No output files (descriptors short for a moment, the log directory gone): a server
    // that could not be started, as a missing executable is, so that a restart counts it as
    // one more crash, with its backoff, instead of giving the replica up at once.
    return unstarted(err as Error);
  }
  const tail = paths === null ? null : new LogFileTail(paths, logs);
  const child = spawn(file, args, {
    detached: true,
    env: { ...spec.baseEnv, ...spec.env },
    cwd: spec.cwd,
    stdio: fds === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', fds[0], fds[1]],
    shell: false,
  });
  if (fds !== null) {
    for (const fd of fds) closeSync(fd);
  } else {
    logs.capture(child.stdout!, 'stdout');
    logs.capture(child.stderr!, 'stderr');
  }
  const attempt: Attempt = {
    pid: child.pid,
    pgid: child.pid,
    exit: undefined,
    exited: new Promise<ExitInfo>((resolve) => {
      const settle = (info: ExitInfo): void => {
        attempt.exit ??= info;
        resolve(attempt.exit);
      };
      child.on('error', (err) => {
        if (child.pid === undefined) settle({ code: null, signal: null, spawnError: err });
      });
      child.on('exit', (code, signal) => {
        const drained = new Promise<void>((done) => child.once('close', () => done()));
        void Promise.race([drained, sleep(DRAIN_MS)]).then(() => {
          tail?.stop();
          settle({ code, signal });
        });
      });
    }),
  };
  return attempt;
}

function unstarted(spawnError: Error): Attempt {
  const exit: ExitInfo = { code: null, signal: null, spawnError };
  return { pid: undefined, pgid: undefined, exit, exited: Promise.resolve(exit) };
}

/**
 * Watches a process we are not the parent of: no exit event, so poll /proc. Its output is
 * followed through its log files when it was started with them.
 */
export function adoptAttempt(pid: number, pgid: number, pollMs: number, logs: LogBuffer, logDir: string | undefined, id: string): Attempt {
  const tail = logDir === undefined ? null : new LogFileTail(logFilePaths(logDir, id), logs);
  const attempt: Attempt = {
    pid,
    pgid,
    exit: undefined,
    exited: watchExit(pid, pgid, pollMs).then((info) => {
      tail?.stop();
      return (attempt.exit = info);
    }),
  };
  return attempt;
}

async function watchExit(pid: number, pgid: number, pollMs: number): Promise<ExitInfo> {
  for (;;) {
    try {
      if (!isAliveInGroup(await readStat(pid), pgid)) return { code: null, signal: null };
    } catch (err) {
      // Short of descriptors: the server may well run; look again at the next poll.
      if (!isScarce(err)) throw err;
    }
    await sleep(pollMs);
  }
}
