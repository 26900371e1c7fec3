import { join } from 'node:path';
import { readJsonIfExists, WriteQueue } from './atomic-file.js';
import { StateError } from './types.js';

/**
 * The deployments this host has hibernated, and since when: a gateway restart keeps them
 * asleep instead of starting their servers. A local file, as the servers it stands for are
 * this host's (replicas.json's reasoning).
 */
export class HibernationRecords {
  readonly path: string;
  #since = new Map<string, string>();
  readonly #writes = new WriteQueue();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'hibernated.json');
  }

  /** Deployment id -> when it was hibernated (ISO time). */
  async load(): Promise<ReadonlyMap<string, string>> {
    const doc = await readJsonIfExists(this.path);
    if (doc === undefined) return this.#since;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new StateError(`${this.path}: expected an object of deployment id -> time`);
    for (const [id, since] of Object.entries(doc)) if (typeof since === 'string') this.#since.set(id, since);
    return this.#since;
  }

  set(id: string, since: string): Promise<void> {
    this.#since.set(id, since);
    return this.#flush();
  }

  delete(id: string): Promise<void> {
    if (!this.#since.delete(id)) return this.#writes.last;
    return this.#flush();
  }

  #flush(): Promise<void> {
    const content = JSON.stringify(Object.fromEntries(this.#since), null, 2) + '\n';
    return this.#writes.write(this.path, content);
  }
}
