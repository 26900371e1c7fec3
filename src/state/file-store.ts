import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from './atomic-file.js';
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
  // Saves are serialised so that an older snapshot never lands after a newer one.
  #chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'desired.json');
    this.keysPath = join(stateDir, 'api-keys.json');
    this.trafficPath = join(stateDir, 'traffic.json');
  }

  async load(): Promise<DesiredDeployment[]> {
    await removeStaleTemps(this.path);
    const text = await readFileIfExists(this.path);
    const list = text === null ? [] : decodeDesired(text, this.path);
    this.#entries = new Map(list.map((d) => [desiredId(d.spec), d]));
    return list;
  }

  put(deployment: DesiredDeployment): Promise<void> {
    this.#entries.set(desiredId(deployment.spec), deployment);
    return this.#write();
  }

  remove(id: string): Promise<void> {
    if (!this.#entries.delete(id)) return this.#chain;
    return this.#write();
  }

  async loadKeys(): Promise<StoredApiKey[]> {
    await removeStaleTemps(this.keysPath);
    const text = await readFileIfExists(this.keysPath);
    const list = text === null ? [] : decodeKeys(text, this.keysPath);
    this.#keys = new Map(list.map((k) => [k.name, k]));
    return list;
  }

  putKey(key: StoredApiKey): Promise<void> {
    this.#keys.set(key.name, key);
    return this.#save(this.keysPath, encodeKeys([...this.#keys.values()]));
  }

  removeKey(name: string): Promise<void> {
    if (!this.#keys.delete(name)) return this.#chain;
    return this.#save(this.keysPath, encodeKeys([...this.#keys.values()]));
  }

  async loadTraffic(): Promise<StoredTraffic[]> {
    await removeStaleTemps(this.trafficPath);
    const text = await readFileIfExists(this.trafficPath);
    const list = text === null ? [] : decodeTraffic(text, this.trafficPath);
    this.#traffic = new Map(list.map((t) => [t.model, t]));
    return list;
  }

  putTraffic(traffic: StoredTraffic): Promise<void> {
    this.#traffic.set(traffic.model, traffic);
    return this.#save(this.trafficPath, encodeTraffic([...this.#traffic.values()]));
  }

  // One instance owns a state directory: every lease is its own, and there are no other
  // instances' counts to share.
  async lease(): Promise<boolean> {
    return true;
  }

  async releaseLease(): Promise<void> {}

  async putStats(): Promise<void> {}

  async loadStats(): Promise<Record<string, string>> {
    return {};
  }

  #write(): Promise<void> {
    return this.#save(this.path, encodeDesired([...this.#entries.values()]));
  }

  #save(path: string, content: string): Promise<void> {
    this.#chain = this.#chain.catch(() => undefined).then(() => writeFileAtomic(path, content));
    return this.#chain;
  }

  async close(): Promise<void> {
    await this.#chain.catch(() => undefined);
  }
}
