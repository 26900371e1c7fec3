import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic, WriteQueue } from './atomic-file.js';
import { decodeDesired, decodeKeys, decodeTraffic, desiredId, encodeDesired, encodeKeys, encodeTraffic } from './codec.js';
import { StateError, type DesiredDeployment, type DesiredStateStore, type KeyClash, type StoredApiKey, type StoredTraffic } from './types.js';

export class FileStateStore implements DesiredStateStore {
  readonly kind = 'file';
  readonly path: string;
  readonly keysPath: string;
  readonly trafficPath: string;
  readonly #writes = new WriteQueue();
  readonly #entries: FileEntries<DesiredDeployment>;
  readonly #keys: FileEntries<StoredApiKey>;
  readonly #traffic: FileEntries<StoredTraffic>;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'desired.json');
    this.keysPath = join(stateDir, 'api-keys.json');
    this.trafficPath = join(stateDir, 'traffic.json');
    this.#entries = new FileEntries(this.path, encodeDesired, this.#writes);
    this.#keys = new FileEntries(this.keysPath, encodeKeys, this.#writes);
    this.#traffic = new FileEntries(this.trafficPath, encodeTraffic, this.#writes);
  }

  async load(): Promise<DesiredDeployment[]> {
    const list = await readList(this.path, decodeDesired);
    this.#entries.loaded(list.map((d) => [desiredId(d.spec), d]));
    return list;
  }

  // One instance owns a state directory, and its manager knows every id it stored.
  async put(deployment: DesiredDeployment): Promise<boolean> {
    await this.#entries.set(desiredId(deployment.spec), deployment);
    return true;
  }

  remove(id: string): Promise<void> {
    return this.#entries.delete(id);
  }

  async loadKeys(): Promise<StoredApiKey[]> {
    const list = await readList(this.keysPath, decodeKeys);
    this.#keys.loaded(list.map((k) => [k.name, k]));
    return list;
  }

  // One instance owns a state directory, and its key registry checked names and digests.
  async addKey(key: StoredApiKey): Promise<KeyClash | null> {
    await this.#keys.set(key.name, key);
    return null;
  }

  removeKey(name: string): Promise<void> {
    return this.#keys.delete(name);
  }

  async loadTraffic(): Promise<StoredTraffic[]> {
    const list = await readList(this.trafficPath, decodeTraffic);
    this.#traffic.loaded(list.map((t) => [t.model, t]));
    return list;
  }

  // One instance owns a state directory: no other writes its records.
  async putTraffic(traffic: StoredTraffic): Promise<boolean> {
    await this.#traffic.set(traffic.model, traffic);
    return true;
  }

  // One instance owns a state directory: every lease is its own, and there are no other
  // instances' counts to share.
  async lease(): Promise<boolean> {
    return true;
  }

  async releaseLease(): Promise<void> {}

  async putShared(): Promise<void> {}

  async loadShared(): Promise<Record<string, string>> {
    return {};
  }

  async removeShared(): Promise<void> {}

  async restored(): Promise<void> {}

  async close(): Promise<void> {
    await this.#writes.last.catch(() => undefined);
  }
}

/**
 * One state file's entries, as the file holds them. A change is made to a copy, written,
 * and only then kept: a write that failed (a full disk, a directory in the file's place)
 * must not leave the refused change in memory, where the next successful write of the
 * file would store it after all.
 */
class FileEntries<T> {
  readonly #path: string;
  readonly #encode: (list: readonly T[]) => string;
  readonly #writes: WriteQueue;
  #held = new Map<string, T>();

  constructor(path: string, encode: (list: readonly T[]) => string, writes: WriteQueue) {
    this.#path = path;
    this.#encode = encode;
    this.#writes = writes;
  }

  loaded(entries: ReadonlyArray<readonly [string, T]>): void {
    this.#held = new Map(entries);
  }

  set(key: string, value: T): Promise<void> {
    return this.#change((next) => {
      next.set(key, value);
      return true;
    });
  }

  /** Writes nothing when there is no such entry. */
  delete(key: string): Promise<void> {
    return this.#change((next) => next.delete(key));
  }

  /**
   * `edit` changes a copy of the entries, once every earlier write has ended (so that it
   * builds on what they stored), and says whether it changed anything worth writing.
   */
  #change(edit: (next: Map<string, T>) => boolean): Promise<void> {
    return this.#writes.run(async () => {
      const next = new Map(this.#held);
      if (!edit(next)) return;
      try {
        await writeFileAtomic(this.#path, this.#encode([...next.values()]));
      } catch (err) {
        // The fs message names the temp file, or no file at all (EISDIR): name the real one.
        throw new StateError(`${this.#path}: cannot write it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the change was not stored`, { cause: err });
      }
      this.#held = next;
    });
  }
}

/** A document's entries (what a crashed write left removed first); none when it does not exist. */
async function readList<T>(path: string, decode: (text: string, where: string) => T[]): Promise<T[]> {
  await removeStaleTemps(path);
  const text = await readFileIfExists(path);
  return text === null ? [] : decode(text, path);
}
