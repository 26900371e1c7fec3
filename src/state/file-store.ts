import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { decodeDesired, desiredId, encodeDesired } from './codec.js';
import type { DesiredDeployment, DesiredStateStore } from './types.js';

export class FileStateStore implements DesiredStateStore {
  readonly kind = 'file';
  readonly path: string;
  #entries = new Map<string, DesiredDeployment>();
  // Saves are serialised so that an older snapshot never lands after a newer one.
  #chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'desired.json');
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

  #write(): Promise<void> {
    const content = encodeDesired([...this.#entries.values()]);
    this.#chain = this.#chain.catch(() => undefined).then(() => writeFileAtomic(this.path, content));
    return this.#chain;
  }

  async close(): Promise<void> {
    await this.#chain.catch(() => undefined);
  }
}
