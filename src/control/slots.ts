// Slots in the SharedArrayBuffer of per-replica in-flight counters. A replica keeps its
// slot for its whole life, across route tables, so every worker counts in the same place.

export const MAX_REPLICA_SLOTS = 4096;

export class SlotAllocator {
  readonly buffer = new SharedArrayBuffer(MAX_REPLICA_SLOTS * Int32Array.BYTES_PER_ELEMENT);
  readonly #counters = new Int32Array(this.buffer);
  readonly #free: number[] = [];
  #next = 0;

  acquire(): number {
    const slot = this.#free.pop() ?? this.#next++;
    if (slot >= MAX_REPLICA_SLOTS) throw new Error(`more than ${MAX_REPLICA_SLOTS} replicas`);
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
  #next = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  acquire(): number {
    const i = this.#free.pop() ?? this.#next++;
    if (i >= this.#capacity) throw new Error(`more than ${this.#capacity} entries`);
    return i;
  }

  release(i: number): void {
    this.#free.push(i);
  }
}
