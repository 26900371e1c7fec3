import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StateError } from './types.js';

/**
 * Writes a file so that a crash at any moment leaves either the old or the new content,
 * never a truncated one: temp file in the same directory, fsync, rename, fsync the dir.
 */
export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    // Left behind, it would sit there until the next start's removeStaleTemps.
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Removes temp files a crash left behind mid-write (the real file is intact). */
export async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch {
    return;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp')).map((n) => unlink(join(dirname(path), n)).catch(() => undefined)));
}

/** The file's text, or null when it does not exist. */
export async function readFileIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    // Some fs errors (EISDIR from read) do not say which file: the operator needs it.
    throw new StateError(`${path}: cannot read (${(err as Error).message})`);
  }
}

/** The parsed content of a JSON state file (what a crashed write left removed first); undefined when it does not exist. */
export async function readJsonIfExists(path: string): Promise<unknown> {
  await removeStaleTemps(path);
  const text = await readFileIfExists(path);
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new StateError(`${path}: not valid JSON (${(err as Error).message}); fix or remove it`);
  }
}

/** One owner's writes, one after another: an older snapshot never lands after a newer one. */
export class WriteQueue {
  #chain: Promise<unknown> = Promise.resolve();

  write(path: string, content: string): Promise<void> {
    return this.run(() => writeFileAtomic(path, content));
  }

  /** Runs `task` (a write, or a read no write may overlap) once every earlier one has ended, failed ones included. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const done = this.#chain.catch(() => undefined).then(task);
    this.#chain = done;
    return done;
  }

  /** The latest write, done or under way. */
  get last(): Promise<void> {
    return this.#chain.then(() => undefined);
  }
}
