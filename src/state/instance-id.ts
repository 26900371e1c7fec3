import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';

/**
 * The id of the gateway that keeps its state in `stateDir`, the same across its restarts
 * (`state_dir/instance-id`): a gateway killed and started again is still the owner of the
 * servers it shared with the other instances of its host (its lease and record name it),
 * and adopts them rather than leaving them to expire.
 */
export async function loadInstanceId(stateDir: string): Promise<string> {
  const path = join(stateDir, 'instance-id');
  const stored = await readFile(path, 'utf8').then((s) => s.trim(), () => '');
  if (/^[0-9a-f-]{36}$/.test(stored)) return stored;
  const id = randomUUID();
  await writeFileAtomic(path, id + '\n');
  return id;
}
