// Slots in the SharedArrayBuffer of per-replica in-flight counters. A replica keeps its
// slot for its whole life, across route tables, so every worker counts in the same place.

import { SluiceError } from '../errors/index.js';

export const MAX_REPLICA_SLOTS = 4096;

export class SlotAllocator {
  readonly buffer = new SharedArrayBuffer(MAX_REPLICA_SLOTS * Int32Array.BYTES_PER_ELEMENT);
  readonly #counters = new Int32Array(this.buffer);
  readonly #free: number[] = [];
  #next = 0;

  acquire(): number {
    const slot = this.#free.pop() ?? this.#next;
    if (slot >= MAX_REPLICA_SLOTS) throw new SluiceError('SLUICE_ERR_LIMIT_REACHED', `at most ${MAX_REPLICA_SLOTS} replicas in all (a remote deployment has one per URL; stopping ones included): remove some first`);
    if (slot === this.#next) this.#next++;
    Atomics.store(this.#counters, slot, 0);
    return slot;
  }

  release(slot: number): void {
    this.#free.push(slot);
  }

  inflight(slot: number): number {
    return Atomics.load(this.#counters, slot);
  }
}

/** Indices into a fixed-size shared array, reused after release. */
export class IndexAllocator {
  readonly #free: number[] = [];
  readonly #capacity: number;
  /** What an index stands for, in the refusal when none is left ("deployments (draining ones included)"). */
  readonly #what: string;
  #next = 0;

  constructor(capacity: number, what: string) {
    this.#capacity = capacity;
    this.#what = what;
  }

  acquire(): number {
    const i = this.#free.pop() ?? this.#next;
    if (i >= this.#capacity) throw new SluiceError('SLUICE_ERR_LIMIT_REACHED', `at most ${this.#capacity} ${this.#what}: remove some first`);
    if (i === this.#next) this.#next++;
    return i;
  }

  release(i: number): void {
    this.#free.push(i);
  }
}
