// Replicas follow the load, as Knative's KPA does for pods, down to zero. Every second it
// reads, for each deployment that scales, the requests in flight and waiting (shared
// counters: what every worker thread sees) and, for one that may hibernate, the requests
// that arrived (DeploymentCounters.arrive: the workers count them, so nothing is sent or
// asked of them).
// - target_inflight_per_replica > 0: one more replica when the load per replica averaged
//   above the target over scale_up_window_s, or at once when it reaches twice the target
//   (KPA's panic mode, for a sudden burst); one fewer when one fewer replica would have
//   stayed under the target through scale_down_window_s, so that a dip in a steady load
//   does not shed a replica it needs a moment later.
// - min_replicas 0: hibernated after idle_timeout_s without an arrival, a request in
//   flight or one waiting, here or on another instance of this host that routes to the
//   servers this one runs (ReplicaSharing). Such an instance neither scales nor hibernates
//   the deployment: it reports to the owner when it served it and its load, which the
//   owner's scaling counts with its own.

import type { DeploymentCounters } from '../balancer/index.js';
import type { Logger } from '../telemetry/index.js';
import type { Deployment, DeploymentManager } from './deployments.js';
import { REPORT_SLACK_MS } from './shared-replicas.js';
import type { SlotAllocator } from './slots.js';

/** A scale-up refused (no free port) is tried again after this long, not at every window. */
const REFUSED_BACKOFF_MS = 60_000;

export interface AutoscalerOptions {
  readonly manager: DeploymentManager;
  readonly counters: DeploymentCounters;
  readonly slots: SlotAllocator;
  readonly logger: Logger;
  /** Requests in flight on a replica being removed (or hibernated) get this long to finish. */
  readonly graceMs: number;
  readonly intervalMs?: number;
}

/** What is remembered of one deployment between ticks. */
interface Watched {
  /** The load of each second since its last scaling (newest last). */
  readonly samples: number[];
  /** The arrivals count last seen, and when it last showed activity. */
  arrivals: number;
  activeAt: number;
  /** An owner's question to the shared state (has another instance served it?) is under way. */
  askingShared: boolean;
}

export class Autoscaler {
  readonly #o: AutoscalerOptions;
  readonly #watched = new Map<string, Watched>();
  #timer: NodeJS.Timeout | null = null;

  constructor(options: AutoscalerOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.tick(Date.now()), this.#o.intervalMs ?? 1_000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  tick(now: number): void {
    const seen = new Set<string>();
    for (const d of this.#o.manager.list()) {
      const s = d.spec.scale;
      const scales = s.target_inflight_per_replica > 0;
      const sleeps = s.min_replicas === 0;
      // Asleep, its forecast is spent: once woken, /api/ps must not show it until this sets it anew.
      if (sleeps && d.state === 'hibernated') this.#o.counters.setSleepsAt(d.slot, 0);
      if ((!scales && !sleeps) || d.state !== 'ready' || d.scaling) continue;
      seen.add(d.id);
      const load = this.#load(d);
      const arrivals = this.#o.counters.arrivals(d.slot);
      let w = this.#watched.get(d.id);
      // Watched from the moment it is ready: a deployment that just woke has its full idle time.
      if (w === undefined) {
        w = { samples: [], arrivals, activeAt: now, askingShared: false };
        this.#watched.set(d.id, w);
      }
      if (d.share === 'borrower') {
        if (arrivals !== w.arrivals || load > 0) this.#o.manager.touchShared(d, load);
        w.arrivals = arrivals;
        continue;
      }
      if (sleeps && this.#hibernatesIdle(d, w, load, arrivals, now)) continue;
      if (scales) this.#scale(d, w, load, now);
    }
    for (const id of this.#watched.keys()) if (!seen.has(id)) this.#watched.delete(id);
  }

  /** Requests in flight on the deployment's replicas and waiting for one, across workers (and, for shared servers, the other instances). */
  #load(d: Deployment): number {
    let n = this.#o.counters.queueLength(d.slot) + (d.share === 'owner' ? d.sharedLoad : 0);
    for (const r of d.replicas) n += this.#o.slots.inflight(r.slot);
    return n;
  }

  /** Starts its hibernation when nothing has happened on it for idle_timeout_s. */
  #hibernatesIdle(d: Deployment, w: Watched, load: number, arrivals: number, now: number): boolean {
    const timeoutMs = d.spec.scale.idle_timeout_s * 1000;
    const active = arrivals !== w.arrivals || load > 0;
    if (active) {
      w.arrivals = arrivals;
      w.activeAt = now;
    }
    // Ollama's /api/ps reports it (expires_at): with no request from now on, it sleeps then.
    this.#o.counters.setSleepsAt(d.slot, Math.ceil((w.activeAt + timeoutMs) / 1000));
    if (active) return false;
    const idleMs = now - w.activeAt;
    if (idleMs < timeoutMs) return false;
    if (d.share === 'owner') {
      // Idle here; asked afresh whether the instances routing to its servers are too.
      if (w.askingShared) return true;
      w.askingShared = true;
      void this.#o.manager.sharedLastActive(d).then((at) => {
        w.askingShared = false;
        // Unknown (Redis out of reach): the others may still use the servers, and could not
        // be told that they stop; asked again at the next tick.
        if (at === null) return;
        if (now - at < timeoutMs + REPORT_SLACK_MS) w.activeAt = Math.max(w.activeAt, at);
        else this.#hibernate(d, now - Math.max(w.activeAt, at));
      });
      return true;
    }
    this.#hibernate(d, idleMs);
    return true;
  }

  #hibernate(d: Deployment, idleMs: number): void {
    this.#watched.delete(d.id);
    this.#o.counters.setSleepsAt(d.slot, 0);
    this.#o.manager.hibernate(d.id, `no request for ${Math.round(idleMs / 1000)} s`, this.#o.graceMs).catch((err: unknown) => {
      this.#o.logger.error({ deployment: d.id, err }, 'hibernation failed');
    });
  }

  #scale(d: Deployment, w: Watched, load: number, now: number): void {
    const s = d.spec.scale;
    const samples = w.samples;
    samples.push(load);
    const keep = Math.max(s.scale_up_window_s, s.scale_down_window_s);
    if (samples.length > keep) samples.splice(0, samples.length - keep);
    const target = this.#decide(d, samples, now);
    if (target === null) return;
    // Measured afresh with the new capacity.
    samples.length = 0;
    this.#o.manager.scaleTo(d.id, target.replicas, target.why).catch((err: unknown) => {
      this.#o.logger.error({ deployment: d.id, err }, 'scaling failed');
    });
  }

  #decide(d: Deployment, samples: readonly number[], now: number): { replicas: number; why: string } | null {
    const s = d.spec.scale;
    const target = s.target_inflight_per_replica;
    const max = s.max_replicas === 0 ? d.spec.replicas : s.max_replicas;
    const min = Math.max(1, s.min_replicas);
    const n = d.activeReplicas;
    const latest = samples[samples.length - 1]!;
    const mayGrow = n < max && now - lastRefusal(d) > REFUSED_BACKOFF_MS;
    if (mayGrow && latest >= 2 * target * n) {
      return { replicas: Math.min(max, Math.ceil(latest / target)), why: `panic: ${latest} requests in flight and waiting on ${n} replica(s), target ${target} each` };
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
