import { randomUUID } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';

/**
 * The id of the gateway that keeps its state in `stateDir`, the same across its restarts
 * (`state_dir/instance-id`): a gateway killed and started again is still the owner of the
 * servers it shared with the other instances of its host (its lease and record name it),
 * and adopts them rather than leaving them to expire.
 *
 * The file names the directory it was made in (its second line): a copy of the state dir
 * (a backup restored beside the original, a second instance of the host set up from the
 * first one's) gets an id of its own, since two running instances with one id would each
 * take the other's lease as its own and both run the servers meant to be shared.
 * `onCopied` hears of that, with the directory the copied id belonged to.
 */
export async function loadInstanceId(stateDir: string, onCopied?: (madeIn: string) => void): Promise<string> {
  const path = join(stateDir, 'instance-id');
  const dir = await realpath(stateDir);
  const [stored = '', madeIn] = (await readFile(path, 'utf8').catch(() => '')).split('\n').map((s) => s.trim());
  if (/^[0-9a-f-]{36}$/.test(stored)) {
    if (madeIn === dir) return stored;
    // Written by a sluice that did not record the directory: it is taken to be this one's
    // (recorded when it can be: a full disk must not stop a start that needs no new id).
    if (madeIn === undefined || madeIn === '') {
      await writeFileAtomic(path, `${stored}\n${dir}\n`).catch(() => undefined);
      return stored;
    }
    onCopied?.(madeIn);
  }
  const id = randomUUID();
  await writeFileAtomic(path, `${id}\n${dir}\n`);
  return id;
}
