// Running the built `sluice` CLI as a user would: as a child process (exit status, stdout,
// stderr), or in a tmux session for the live views (top, logs -f), on a tmux server of its
// own so that no other tmux on the machine is touched.

import { execFile, spawnSync } from 'node:child_process';
import { CLI, sleep } from './procs.js';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node dist/cli.js ...args` with `env` over this process's (SLUICE_ADMIN_* cleared unless given); bounded by `timeoutMs`. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 60_000): Promise<CliRun> {
  const full: NodeJS.ProcessEnv = { ...process.env, SLUICE_ADMIN_URL: undefined, SLUICE_ADMIN_TOKEN: undefined, ...env };
  for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: full, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A tmux server on its own socket, for one test file; `kill()` ends it and its sessions. */
export class Tmux {
  readonly socket: string;
  constructor(name: string) {
    this.socket = `${name}-${process.pid}`;
  }

  #tmux(...args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new Error(`tmux ${args[0]} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /**
   * Starts `command` (a shell line) in a detached 160x40 session; after it ends, the pane
   * shows `EXIT=<status>`. `recordTo`: every byte it writes is also kept in that file (util-linux
   * `script`, itself a terminal), for what the screen showed only for a moment.
   */
  start(session: string, command: string, recordTo?: string): void {
    const run = recordTo === undefined ? command : `script -qefc ${sh(command)} ${sh(recordTo)}`;
    // The trap keeps the shell alive when Ctrl-C ends the command, to print its status.
    this.#tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', `trap true INT; ${run}; echo EXIT=$?; sleep 120`);
  }

  /** The pane's text; with `escapes`, with its colour sequences. */
  capture(session: string, escapes = false): string {
    return this.#tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', session);
  }

  keys(session: string, ...keys: string[]): void {
    this.#tmux('send-keys', '-t', session, ...keys);
  }

  /** Waits until the pane's text satisfies `pred`; returns it. */
  async waitFor(session: string, pred: (screen: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let screen = '';
    while (Date.now() < deadline) {
      screen = this.capture(session);
      if (pred(screen)) return screen;
      await sleep(100);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; screen:\n${screen}`);
  }

  kill(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server'], { timeout: 10_000 });
  }
}

/** A shell word: single-quoted. */
export const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
