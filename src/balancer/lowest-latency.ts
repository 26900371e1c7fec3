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

/** Each replica's average, by replica id, kept by the route-table compiler across tables. */
export class LatencyMemory {
  readonly #ewma = new Map<string, { ms: number; at: number }>();

  observe(id: string, ms: number, at: number): void {
    const e = this.#ewma.get(id);
    if (e === undefined) this.#ewma.set(id, { ms, at });
    else {
      e.ms += ALPHA * (ms - e.ms);
      e.at = at;
    }
  }

  /** A probe is on its way: the replica counts as measured now. */
  touch(id: string, at: number): void {
    const e = this.#ewma.get(id);
    if (e !== undefined) e.at = at;
  }

  get(id: string): { readonly ms: number; readonly at: number } | undefined {
    return this.#ewma.get(id);
  }

  /** Forgets replicas no longer routed. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.#ewma.keys()) if (!ids.has(id)) this.#ewma.delete(id);
  }
}

export class LowestLatency<R extends Balanced & { readonly id: string }> implements Balancer<R> {
  readonly #gate: ReplicaGate<R>;
  readonly #memory: LatencyMemory;
  readonly #buffer: number;
  readonly #probeMs: number;
  readonly #candidates: R[] = [];
  readonly #order = (a: R, b: R): number => this.#gate.load(a) - this.#gate.load(b) || this.#average(a) - this.#average(b);

  constructor(gate: ReplicaGate<R>, memory: LatencyMemory, buffer: number, probeMs: number) {
    this.#gate = gate;
    this.#memory = memory;
    this.#buffer = buffer;
    this.#probeMs = probeMs;
  }

  pick(ctx: PickContext, now: number, exclude: R | null): R | NoReplica {
    const gate = this.#gate;
    const t = Date.now();
    let best = Infinity;
    for (const r of gate.replicas) {
      const e = this.#memory.get(r.id);
      if (e !== undefined && e.ms < best) best = e.ms;
    }
    const candidates = this.#candidates;
    candidates.length = 0;
    for (const r of gate.replicas) {
      if (r === exclude) continue;
      const e = this.#memory.get(r.id);
      // Not measured for probeMs: this request is its probe, whatever its average says.
      if (e !== undefined && t - e.at >= this.#probeMs && gate.take(ctx, r, now)) {
        // One probe per interval, not one per request until its answer comes.
        this.#memory.touch(r.id, t);
        return r;
      }
      if (e === undefined || e.ms <= best * (1 + this.#buffer)) candidates.push(r);
    }
    // Least loaded first, then the fastest (one never measured first of all: it gets its
    // first sample); a replica that does not admit gives way to the next.
    candidates.sort(this.#order);
    for (const r of candidates) if (gate.take(ctx, r, now)) return r;
    return gate.takeAny(ctx, now, exclude);
  }

  #average(r: R): number {
    return this.#memory.get(r.id)?.ms ?? 0;
  }

  observe(replica: R, ttfbMs: number): void {
    this.#memory.observe(replica.id, ttfbMs, Date.now());
  }

  retryAfterMs(now: number): number {
    return this.#gate.retryAfterMs(now);
  }
}
