import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { decodeDesired, encodeDesired } from './codec.js';
import type { DesiredDeployment, DesiredStateStore } from './types.js';

export class FileStateStore implements DesiredStateStore {
  readonly kind = 'file';
  readonly path: string;
  // Saves are serialised so that an older snapshot never lands after a newer one.
  #chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'desired.json');
  }

  async load(): Promise<DesiredDeployment[]> {
    await removeStaleTemps(this.path);
    const text = await readFileIfExists(this.path);
    return text === null ? [] : decodeDesired(text, this.path);
  }

  save(deployments: readonly DesiredDeployment[]): Promise<void> {
    const content = encodeDesired(deployments);
    this.#chain = this.#chain.catch(() => undefined).then(() => writeFileAtomic(this.path, content));
    return this.#chain;
  }

  async close(): Promise<void> {
    await this.#chain.catch(() => undefined);
  }
}
