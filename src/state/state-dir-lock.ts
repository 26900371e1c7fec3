// One gateway per state_dir. Its replica records, hibernation records, instance id and file
// state belong to one process: a second gateway started from the same directory (another
// config, another port) would adopt the first one's running model servers as leftovers of
// "a previous run", and stop them when it stops. The lock is a pid file taken with O_EXCL;
// one left by a gateway that died (kill -9, a crash) names a process that is gone, or that
// is no sluice serve any more (its pid reused), and is taken over.

import { readFileSync, unlinkSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SluiceError } from '../errors/index.js';

const LOCK_FILE = 'gateway.pid';

export class StateDirLock {
  readonly #path: string;

  private constructor(path: string) {
    this.#path = path;
  }

  /** Takes `stateDir` for this process; throws SLUICE_ERR_CONFIG (field state_dir) while another gateway holds it. */
  static async take(stateDir: string): Promise<StateDirLock> {
    await mkdir(stateDir, { recursive: true }).catch((err: unknown) => {
      throw unusable(stateDir, err);
    });
    const path = join(stateDir, LOCK_FILE);
    for (let attempt = 0; ; attempt++) {
      try {
        await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        return new StateDirLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw unusable(stateDir, err);
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder !== process.pid && isGateway(holder)) {
        throw new SluiceError('SLUICE_ERR_CONFIG', `state_dir ${stateDir} is in use by another gateway (pid ${holder}): give each gateway its own state_dir (config state_dir or SLUICE_STATE_DIR)`, { field: 'state_dir' });
      }
      await unlink(path).catch(() => undefined);
    }
  }

  /** Gives the directory up (the last step of a stop, or a start that failed), unless another process took it meanwhile. */
  release(): void {
    try {
      if (Number.parseInt(readFileSync(this.#path, 'utf8'), 10) === process.pid) unlinkSync(this.#path);
    } catch {
      // Gone already: nothing to give up.
    }
  }
}

/** A state_dir that cannot be made or written (a file, read-only, not ours), named as a bad config value is. */
function unusable(stateDir: string, err: unknown): SluiceError {
  return new SluiceError('SLUICE_ERR_CONFIG', `state_dir ${stateDir} cannot be used: ${(err as Error).message} (config state_dir or SLUICE_STATE_DIR)`, { field: 'state_dir' });
}

/** Whether `pid` is a live `sluice serve` (or a process this one may not inspect, which is taken to be one). */
export function isGateway(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').includes('serve');
  } catch {
    return true;
  }
}
