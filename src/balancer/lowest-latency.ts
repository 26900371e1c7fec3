// Lowest latency: an exponentially weighted moving average of each replica's time to first
// byte, and every replica within `buffer` of the best one stays a candidate (LiteLLM's
// lowest_latency_buffer), so the fastest is not flooded; among candidates the least loaded
// wins. A replica not measured for `probeMs` is a candidate again, so a slow one is still
// probed and found when it recovers. The averages outlive route tables (LatencyMemory).

import type { Balanced, Balancer, PickContext } from './balancer.js';
import type { NoReplica } from './balancer.js';
import type { ReplicaGate } from './replica-gate.js';

/** The weight of a new sample in the average. */
const ALPHA = 0.3;

/**
 * Each replica's average time to first byte and when it was last measured (or probed), by
 * replica slot: one per worker, kept by the route-table compiler across tables and read per
 * pick without a lookup. NaN: never measured.
 */
export class LatencyMemory {
  #ms = new Float64Array(64).fill(NaN);
  #at = new Float64Array(64);
  /** The replica id each slot was measured for: a slot given to a new replica starts afresh. */
  readonly #owner: string[] = [];

  /** Replica `id` holds `slot` in the table being built. */
  claim(slot: number, id: string): void {
    if (slot >= this.#ms.length) this.#grow(slot + 1);
    if (this.#owner[slot] === id) return;
    this.#owner[slot] = id;
    this.#ms[slot] = NaN;
    this.#at[slot] = 0;
  }

  #grow(min: number): void {
    const size = Math.max(min, this.#ms.length * 2);
    const ms = new Float64Array(size).fill(NaN);
    ms.set(this.#ms);
    const at = new Float64Array(size);
    at.set(this.#at);
    this.#ms = ms;
    this.#at = at;
  }

  observe(slot: number, ms: number, at: number): void {
    const prev = this.#ms[slot]!;
    this.#ms[slot] = prev !== prev ? ms : prev + ALPHA * (ms - prev);
    this.#at[slot] = at;
  }

  /** A probe is on its way: the replica counts as measured now. */
  touch(slot: number, at: number): void {
    this.#at[slot] = at;
  }

  /** The average; NaN when never measured. */
  ms(slot: number): number {
    return this.#ms[slot]!;
  }

  at(slot: number): number {
    return this.#at[slot]!;
  }
}

export class LowestLatency<R extends Balanced> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  readonly #memory: LatencyMemory;
  readonly #buffer: number;
  readonly #probeMs: number;

  constructor(gate: ReplicaGate<R>, memory: LatencyMemory, buffer: number, probeMs: number) {
    this.#gate = gate;
    this.#memory = memory;
    this.#buffer = buffer;
    this.#probeMs = probeMs;
  }

  /** `now`: wall-clock ms, as observe's. */
  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    const replicas = gate.replicas;
    const memory = this.#memory;
    const n = replicas.length;
    let best = Infinity;
    for (let i = 0; i < n; i++) {
      const ms = memory.ms(replicas[i]!.slot);
      if (ms < best) best = ms;
    }
    const limit = best * (1 + this.#buffer);
    // One pass: the least loaded candidate, then the fastest (one never measured first of
    // all: it gets its first sample).
    let chosen: R | null = null;
    let chosenLoad = Infinity;
    let chosenMs = Infinity;
    for (let i = 0; i < n; i++) {
      const r = replicas[i]!;
      if (r === exclude) continue;
      let ms = memory.ms(r.slot);
      if (ms === ms) {
        // Not measured for probeMs: this request is its probe, whatever its average says.
        if (now - memory.at(r.slot) >= this.#probeMs && gate.take(ctx, r, now)) {
          // One probe per interval, not one per request until its answer comes.
          memory.touch(r.slot, now);
          return r;
        }
        if (ms > limit) continue;
      } else {
        ms = -1;
      }
      const load = gate.load(r);
      if (load < chosenLoad || (load === chosenLoad && ms < chosenMs)) {
        chosen = r;
        chosenLoad = load;
        chosenMs = ms;
      }
    }
    if (chosen !== null && gate.take(ctx, chosen, now)) return chosen;
    return gate.takeAny(ctx, now, exclude);
  }

  /** `at`: wall-clock ms, as pick's `now`. */
  observe(replica: R, ttfbMs: number, at: number): void {
    this.#memory.observe(replica.slot, ttfbMs, at);
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
