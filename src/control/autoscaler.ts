// Replicas follow the load (scale.target_inflight_per_replica > 0), as Knative's KPA does
// for pods: every second it samples the requests in flight and waiting for each deployment
// (shared counters: what every worker thread sees). One more replica when the load per
// replica averaged above the target over scale_up_window_s, or at once when it reaches
// twice the target (KPA's panic mode, for a sudden burst); one fewer when one fewer
// replica would have stayed under the target through scale_down_window_s, so a dip in a
// steady load does not shed a replica it needs a moment later.

import type { DeploymentCounters } from '../balancer/index.js';
import type { Logger } from '../telemetry/index.js';
import type { Deployment, DeploymentManager } from './deployments.js';
import type { SlotAllocator } from './slots.js';

const REFUSED_BACKOFF_MS = 60_000;

export interface AutoscalerOptions {
  readonly manager: DeploymentManager;
  readonly counters: DeploymentCounters;
  readonly slots: SlotAllocator;
  readonly logger: Logger;
  /** Requests in flight on a replica being removed get this long to finish. */
  readonly graceMs: number;
  readonly intervalMs?: number;
}

export class Autoscaler {
  readonly #o: AutoscalerOptions;
  /** Per deployment: the load of each second since its last scaling (newest last). */
  readonly #samples = new Map<string, number[]>();
  #timer: NodeJS.Timeout | null = null;

  constructor(options: AutoscalerOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.tick(), this.#o.intervalMs ?? 1_000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  tick(): void {
    const seen = new Set<string>();
    for (const d of this.#o.manager.list()) {
      const s = d.spec.scale;
      if (s.target_inflight_per_replica <= 0 || d.state !== 'ready' || d.scaling) continue;
      seen.add(d.id);
      const samples = this.#samples.get(d.id) ?? [];
      this.#samples.set(d.id, samples);
      samples.push(this.#load(d));
      const keep = Math.max(s.scale_up_window_s, s.scale_down_window_s);
      if (samples.length > keep) samples.splice(0, samples.length - keep);
      const target = this.#decide(d, samples);
      if (target === null) continue;
      // Measured afresh with the new capacity.
      this.#samples.delete(d.id);
      this.#o.manager.scaleTo(d.id, target.replicas, target.why, this.#o.graceMs).catch((err: unknown) => {
        this.#o.logger.error({ deployment: d.id, err }, 'scaling failed');
      });
    }
    for (const id of this.#samples.keys()) if (!seen.has(id)) this.#samples.delete(id);
  }

  /** Requests in flight on the deployment's replicas and waiting for one, across workers. */
  #load(d: Deployment): number {
    let n = this.#o.counters.queueLength(d.slot);
    for (const r of d.replicas) n += this.#o.slots.inflight(r.slot);
    return n;
  }

  #decide(d: Deployment, samples: readonly number[]): { replicas: number; why: string } | null {
    const s = d.spec.scale;
    const target = s.target_inflight_per_replica;
    const max = s.max_replicas === 0 ? d.spec.replicas : s.max_replicas;
    const min = Math.max(1, s.min_replicas);
    const n = d.activeReplicas;
    const now = samples[samples.length - 1]!;
    // A refused scale-up (no free port) is not tried again at every window: once a minute.
    const refusedAt = lastRefusal(d);
    const mayGrow = n < max && Date.now() - refusedAt > REFUSED_BACKOFF_MS;
    if (mayGrow && now >= 2 * target * n) {
      return { replicas: Math.min(max, Math.ceil(now / target)), why: `panic: ${now} requests in flight and waiting on ${n} replica(s), target ${target} each` };
    }
    if (mayGrow && samples.length >= s.scale_up_window_s) {
      const avg = mean(samples.slice(-s.scale_up_window_s));
      if (avg > target * n) {
        return { replicas: Math.min(max, Math.max(n + 1, Math.ceil(avg / target))), why: `${avg.toFixed(1)} requests in flight and waiting on average over ${s.scale_up_window_s} s on ${n} replica(s), target ${target} each` };
      }
    }
    if (n > min && samples.length >= s.scale_down_window_s) {
      const peak = Math.max(...samples.slice(-s.scale_down_window_s));
      if (peak <= target * (n - 1)) {
        return { replicas: n - 1, why: `at most ${peak} requests in flight and waiting over ${s.scale_down_window_s} s: ${n - 1} replica(s) suffice at ${target} each` };
      }
    }
    return null;
  }
}

/** When the deployment's last scale-up was refused (ms since the epoch); 0: never. */
function lastRefusal(d: Deployment): number {
  for (let i = d.events.length - 1; i >= 0; i--) if (d.events[i]!.action === 'scale_up_refused') return Date.parse(d.events[i]!.at);
  return 0;
}

function mean(xs: readonly number[]): number {
  let sum = 0;
  for (const x of xs) sum += x;
  return sum / xs.length;
}
