import { join } from 'node:path';
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from './atomic-file.js';
import { StateError, type ReplicaRecord } from './types.js';

/**
 * Pids and ports of the model servers this host started, so that a gateway restarted
 * after a SIGKILL finds them: it adopts or stops them, and never starts a second server
 * for one replica nor leaks a port. Always a local file: pids mean nothing on another host.
 */
export class ReplicaRecords {
  readonly path: string;
  #records = new Map<string, ReplicaRecord>();
  #chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'replicas.json');
  }

  async load(): Promise<ReplicaRecord[]> {
    await removeStaleTemps(this.path);
    const text = await readFileIfExists(this.path);
    if (text === null) return [];
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new StateError(`${this.path}: not valid JSON (${(err as Error).message}); fix or remove it`);
    }
    if (!Array.isArray(doc)) throw new StateError(`${this.path}: expected a list of replica records`);
    const out: ReplicaRecord[] = [];
    for (const r of doc as Array<Partial<ReplicaRecord>>) {
      if (typeof r?.replica === 'string' && Number.isInteger(r.port) && Number.isInteger(r.pid) && Number.isInteger(r.pgid)) {
        out.push(r as ReplicaRecord);
        this.#records.set(r.replica, r as ReplicaRecord);
      }
    }
    return out;
  }

  set(record: ReplicaRecord): Promise<void> {
    this.#records.set(record.replica, record);
    return this.#flush();
  }

  delete(replica: string): Promise<void> {
    if (!this.#records.delete(replica)) return this.#chain;
    return this.#flush();
  }

  #flush(): Promise<void> {
    const content = JSON.stringify([...this.#records.values()], null, 2) + '\n';
    this.#chain = this.#chain.catch(() => undefined).then(() => writeFileAtomic(this.path, content));
    return this.#chain;
  }
}
