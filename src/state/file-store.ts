import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic, WriteQueue } from './atomic-file.js';
import { decodeDesired, decodeKeys, decodeTraffic, desiredId, encodeDesired, encodeKeys, encodeTraffic } from './codec.js';
import { StateError, type DesiredDeployment, type DesiredStateStore, type KeyClash, type StoredApiKey, type StoredDeployments, type StoredTraffic } from './types.js';

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
    this.#entries = new FileEntries(this.path, { encode: encodeDesired, decode: decodeDesired, keyOf: (d) => desiredId(d.spec) }, this.#writes);
    this.#keys = new FileEntries(this.keysPath, { encode: encodeKeys, decode: decodeKeys, keyOf: (k) => k.name }, this.#writes);
    this.#traffic = new FileEntries(this.trafficPath, { encode: encodeTraffic, decode: decodeTraffic, keyOf: (t) => t.model }, this.#writes);
  }

  // An entry the file's decoder refuses stops the start (naming it): one instance owns the
  // file, and its next write would drop an entry it had skipped.
  async load(): Promise<StoredDeployments> {
    return { deployments: await this.#entries.load(), unreadable: [] };
  }

  // One instance owns a state directory, and its manager knows every id it stored.
  async put(deployment: DesiredDeployment): Promise<boolean> {
    await this.#entries.set(desiredId(deployment.spec), deployment);
    return true;
  }

  remove(id: string): Promise<void> {
    return this.#entries.delete(id);
  }

  loadKeys(): Promise<StoredApiKey[]> {
    return this.#keys.load();
  }

  // One instance owns a state directory, and its key registry checked names and digests.
  async addKey(key: StoredApiKey): Promise<KeyClash | null> {
    await this.#keys.set(key.name, key);
    return null;
  }

  removeKey(name: string): Promise<void> {
    return this.#keys.delete(name);
  }

  loadTraffic(): Promise<StoredTraffic[]> {
    return this.#traffic.load();
  }

  // One instance owns a state directory: no other writes its records.
  async putTraffic(traffic: StoredTraffic): Promise<boolean> {
    await this.#traffic.set(traffic.model, traffic);
    return true;
  }

  // One instance owns a state directory: no other writes its records.
  async removeTraffic(model: string): Promise<boolean> {
    await this.#traffic.delete(model);
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

  async time(): Promise<number> {
    return Date.now();
  }

  async memoryRisk(): Promise<string | null> {
    return null;
  }

  async restored(): Promise<void> {}

  async close(): Promise<void> {
    await this.#writes.last.catch(() => undefined);
  }
}

/** How one state file's entries are written, read and keyed. */
interface EntriesCodec<T> {
  readonly encode: (list: readonly T[]) => string;
  readonly decode: (text: string, where: string) => T[];
  readonly keyOf: (entry: T) => string;
}

/**
 * One state file's entries, as the file holds them. A change is made to a copy, written,
 * and only then kept: a write that failed (a full disk, a directory in the file's place)
 * must not leave the refused change in memory, where the next successful write of the
 * file would store it after all.
 */
class FileEntries<T> {
  readonly #path: string;
  readonly #codec: EntriesCodec<T>;
  readonly #writes: WriteQueue;
  #held = new Map<string, T>();

  constructor(path: string, codec: EntriesCodec<T>, writes: WriteQueue) {
    this.#path = path;
    this.#codec = codec;
    this.#writes = writes;
  }

  /**
   * The file's entries, read in the write queue's turn: a read beside a write would remove
   * its temp file as a crash's leftover (its rename then fails), and would put back in
   * memory what the file held before the write, for the next write to store.
   */
  load(): Promise<T[]> {
    return this.#writes.run(async () => {
      const list = await readList(this.#path, this.#codec.decode);
      this.#held = new Map(list.map((entry) => [this.#codec.keyOf(entry), entry]));
      return list;
    });
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
        await writeFileAtomic(this.#path, this.#codec.encode([...next.values()]));
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
