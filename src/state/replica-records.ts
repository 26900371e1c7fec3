import { join } from 'node:path';
import { readJsonIfExists, WriteQueue } from './atomic-file.js';
import { StateError, type ReplicaRecord } from './types.js';

/**
 * Pids and ports of the model servers this host started, so that a gateway restarted
 * after a SIGKILL finds them: it adopts or stops them, and never starts a second server
 * for one replica nor leaks a port. Always a local file: pids mean nothing on another host.
 */
export class ReplicaRecords {
  readonly path: string;
  #records = new Map<string, ReplicaRecord>();
  readonly #writes = new WriteQueue();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'replicas.json');
  }

  async load(): Promise<ReplicaRecord[]> {
    const doc = await readJsonIfExists(this.path);
    if (doc === undefined) return [];
    if (!Array.isArray(doc)) throw new StateError(`${this.path}: expected a list of replica records`);
    const out: ReplicaRecord[] = [];
    for (const r of doc as Array<Partial<ReplicaRecord>>) {
      if (typeof r?.replica === 'string' && Number.isInteger(r.port) && Number.isInteger(r.pid) && Number.isInteger(r.pgid) && (r.started === undefined || Number.isInteger(r.started))) {
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
    if (!this.#records.delete(replica)) return this.#writes.last;
    return this.#flush();
  }

  #flush(): Promise<void> {
    const content = JSON.stringify([...this.#records.values()], null, 2) + '\n';
    return this.#writes.write(this.path, content);
  }
}
