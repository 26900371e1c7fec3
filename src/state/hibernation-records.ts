import { join } from 'node:path';
import { readJsonIfExists, WriteQueue } from './atomic-file.js';
import { StateError } from './types.js';

/**
 * The deployments this host has hibernated, and since when: a gateway restart keeps them
 * asleep instead of starting their servers. A local file, as the servers it stands for are
 * this host's (replicas.json's reasoning).
 *
 * Beside it, `hibernated-ms.json` keeps the time each deployment spent hibernated before
 * its last wake: GET /v1/costs counts hibernated hours (and what they saved) across
 * restarts, not only those of the hibernation under way.
 */
export class HibernationRecords {
  readonly path: string;
  readonly pastPath: string;
  #since = new Map<string, string>();
  readonly #past = new Map<string, number>();
  readonly #writes = new WriteQueue();

  constructor(stateDir: string) {
    this.path = join(stateDir, 'hibernated.json');
    this.pastPath = join(stateDir, 'hibernated-ms.json');
  }

  /** Deployment id -> when it was hibernated (ISO time). */
  async load(): Promise<ReadonlyMap<string, string>> {
    const doc = await readJsonIfExists(this.path);
    if (doc !== undefined) {
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new StateError(`${this.path}: expected an object of deployment id -> time`);
      for (const [id, since] of Object.entries(doc)) if (typeof since === 'string') this.#since.set(id, since);
    }
    const past = await readJsonIfExists(this.pastPath);
    if (past !== undefined) {
      if (typeof past !== 'object' || past === null || Array.isArray(past)) throw new StateError(`${this.pastPath}: expected an object of deployment id -> milliseconds`);
      for (const [id, ms] of Object.entries(past)) if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) this.#past.set(id, ms);
    }
    return this.#since;
  }

  /** Time `id` spent hibernated before its current hibernation or run, ms (0: none recorded). */
  pastMs(id: string): number {
    return this.#past.get(id) ?? 0;
  }

  /** Every deployment with a record (asleep, or hibernated once). */
  ids(): string[] {
    return [...new Set([...this.#since.keys(), ...this.#past.keys()])];
  }

  set(id: string, since: string): Promise<void> {
    this.#since.set(id, since);
    return this.#flush();
  }

  /** `id` woke, having spent `pastMs` hibernated in all so far. */
  woke(id: string, pastMs: number): Promise<void> {
    this.#since.delete(id);
    this.#past.set(id, pastMs);
    return this.#flush(true);
  }

  /** Forgets `id` altogether (undeployed, or no longer desired). */
  delete(id: string): Promise<void> {
    const past = this.#past.delete(id);
    if (!this.#since.delete(id) && !past) return this.#writes.last;
    return this.#flush(past);
  }

  #flush(past = false): Promise<void> {
    const content = JSON.stringify(Object.fromEntries(this.#since), null, 2) + '\n';
    const write = this.#writes.write(this.path, content);
    if (!past) return write;
    const pastWrite = this.#writes.write(this.pastPath, JSON.stringify(Object.fromEntries(this.#past), null, 2) + '\n');
    return Promise.all([write, pastWrite]).then(() => undefined);
  }
}
