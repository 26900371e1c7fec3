import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { StateError } from './types.js';

/**
 * The deployments this host has hibernated, and since when: a gateway restart keeps them
 * asleep instead of starting their servers. A local file, as the servers it stands for are
 * this host's (replicas.json's reasoning).
 */
export class HibernationRecords {
  readonly path: string;
  #since = new Map<string, string>();
  #chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'hibernated.json');
  }

  /** Deployment id -> when it was hibernated (ISO time). */
  async load(): Promise<ReadonlyMap<string, string>> {
    await removeStaleTemps(this.path);
    const text = await readFileIfExists(this.path);
    if (text === null) return this.#since;
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new StateError(`${this.path}: not valid JSON (${(err as Error).message}); fix or remove it`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new StateError(`${this.path}: expected an object of deployment id -> time`);
    for (const [id, since] of Object.entries(doc)) if (typeof since === 'string') this.#since.set(id, since);
    return this.#since;
  }

  set(id: string, since: string): Promise<void> {
    this.#since.set(id, since);
    return this.#flush();
  }

  delete(id: string): Promise<void> {
    if (!this.#since.delete(id)) return this.#chain;
    return this.#flush();
  }

  #flush(): Promise<void> {
    const content = JSON.stringify(Object.fromEntries(this.#since), null, 2) + '\n';
    this.#chain = this.#chain.catch(() => undefined).then(() => writeFileAtomic(this.path, content));
    return this.#chain;
  }
}
