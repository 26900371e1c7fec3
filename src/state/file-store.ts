import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, WriteQueue } from './atomic-file.js';
import { decodeDesired, decodeKeys, decodeTraffic, desiredId, encodeDesired, encodeKeys, encodeTraffic } from './codec.js';
import type { DesiredDeployment, DesiredStateStore, StoredApiKey, StoredTraffic } from './types.js';

export class FileStateStore implements DesiredStateStore {
  readonly kind = 'file';
  readonly path: string;
  readonly keysPath: string;
  readonly trafficPath: string;
  #traffic = new Map<string, StoredTraffic>();
  #entries = new Map<string, DesiredDeployment>();
  #keys = new Map<string, StoredApiKey>();
  readonly #writes = new WriteQueue();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'desired.json');
    this.keysPath = join(stateDir, 'api-keys.json');
    this.trafficPath = join(stateDir, 'traffic.json');
  }

  async load(): Promise<DesiredDeployment[]> {
    const list = await readList(this.path, decodeDesired);
    this.#entries = new Map(list.map((d) => [desiredId(d.spec), d]));
    return list;
  }

  put(deployment: DesiredDeployment): Promise<void> {
    this.#entries.set(desiredId(deployment.spec), deployment);
    return this.#write();
  }

  remove(id: string): Promise<void> {
    if (!this.#entries.delete(id)) return this.#writes.last;
    return this.#write();
  }

  async loadKeys(): Promise<StoredApiKey[]> {
    const list = await readList(this.keysPath, decodeKeys);
    this.#keys = new Map(list.map((k) => [k.name, k]));
    return list;
  }

  putKey(key: StoredApiKey): Promise<void> {
    this.#keys.set(key.name, key);
    return this.#writes.write(this.keysPath, encodeKeys([...this.#keys.values()]));
  }

  removeKey(name: string): Promise<void> {
    if (!this.#keys.delete(name)) return this.#writes.last;
    return this.#writes.write(this.keysPath, encodeKeys([...this.#keys.values()]));
  }

  async loadTraffic(): Promise<StoredTraffic[]> {
    const list = await readList(this.trafficPath, decodeTraffic);
    this.#traffic = new Map(list.map((t) => [t.model, t]));
    return list;
  }

  putTraffic(traffic: StoredTraffic): Promise<void> {
    this.#traffic.set(traffic.model, traffic);
    return this.#writes.write(this.trafficPath, encodeTraffic([...this.#traffic.values()]));
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

  #write(): Promise<void> {
    return this.#writes.write(this.path, encodeDesired([...this.#entries.values()]));
  }

  async close(): Promise<void> {
    await this.#writes.last.catch(() => undefined);
  }
}

/** A document's entries (what a crashed write left removed first); none when it does not exist. */
async function readList<T>(path: string, decode: (text: string, where: string) => T[]): Promise<T[]> {
  await removeStaleTemps(path);
  const text = await readFileIfExists(path);
  return text === null ? [] : decode(text, path);
}
