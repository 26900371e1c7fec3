// What each replica's own server says about its load (queue_aware), in shared memory: the
// control plane scrapes it (health/load-scrape.ts) and writes here, every worker reads.
// Per replica slot: requests waiting in the server's queue, requests it is running, and
// KV-cache use in thousandths; -1 while unknown (never scraped, or the last scrape failed).

const FIELDS = 3;
const WAITING = 0;
const RUNNING = 1;
const KV_PERMILLE = 2;

export interface ReportedLoad {
  readonly waiting: number;
  readonly running: number;
  /** 0..1; null when the server does not say. */
  readonly kvCacheUsage: number | null;
}

export class ReplicaLoadBoard {
  readonly #ints: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.#ints = new Int32Array(buffer);
  }

  static allocate(slots: number): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(slots * FIELDS * Int32Array.BYTES_PER_ELEMENT);
    new Int32Array(buffer).fill(-1);
    return buffer;
  }

  set(slot: number, load: ReportedLoad): void {
    const i = slot * FIELDS;
    Atomics.store(this.#ints, i + WAITING, Math.min(load.waiting, 0x3fffffff));
    Atomics.store(this.#ints, i + RUNNING, Math.min(load.running, 0x3fffffff));
    Atomics.store(this.#ints, i + KV_PERMILLE, load.kvCacheUsage === null ? -1 : Math.round(load.kvCacheUsage * 1000));
  }

  /** Unknown again: a failed scrape, or a slot given to a new replica. */
  clear(slot: number): void {
    const i = slot * FIELDS;
    Atomics.store(this.#ints, i + WAITING, -1);
    Atomics.store(this.#ints, i + RUNNING, -1);
    Atomics.store(this.#ints, i + KV_PERMILLE, -1);
  }

  /** Requests queued in the server; -1: unknown. */
  waiting(slot: number): number {
    return Atomics.load(this.#ints, slot * FIELDS + WAITING);
  }

  /** Requests the server is running; -1: unknown. */
  running(slot: number): number {
    return Atomics.load(this.#ints, slot * FIELDS + RUNNING);
  }

  /** KV-cache use in thousandths; -1: unknown. */
  kvPermille(slot: number): number {
    return Atomics.load(this.#ints, slot * FIELDS + KV_PERMILLE);
  }

  view(slot: number): ReportedLoad | null {
    const waiting = this.waiting(slot);
    if (waiting < 0) return null;
    const kv = this.kvPermille(slot);
    return { waiting, running: this.running(slot), kvCacheUsage: kv < 0 ? null : kv / 1000 };
  }
}
