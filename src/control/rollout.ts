// Progressive delivery inside the gateway (Flagger / Argo Rollouts without Prometheus): a
// canary version takes growing shares of a model's alias traffic, step by step; every
// interval its requests are compared with the stable version's over the same window, from
// the counts of every worker. A healthy interval moves to the next step, the last one
// promotes the canary; failed checks reaching the limit send all traffic back to the
// stable version at once, and that rollback is final (a new rollout is one explicit call).

import { ROLLOUT_BOUNDS } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import { FINE_BUCKETS, fineQuantile, type Logger, type StatsSnapshot } from '../telemetry/index.js';
import type { RolloutCheck, RolloutSpec, RolloutStatus, RolloutView, WindowFigures } from '../state/index.js';
import type { VersionInfo } from './model-versions.js';

export type { RolloutSpec, RolloutView } from '../state/index.js';

export const ROLLOUT_DEFAULTS = Object.freeze({
  steps: [5, 25, 50, 100], interval_s: 60, min_requests: 100, max_error_rate: 0.05, error_margin: 0.01,
  max_latency_ratio: 2, latency: 'p99_ttfb' as const, failed_checks: 2,
});

/** What an analysis window reads of a deployment's request stats, and when they were counted (ms since the epoch). */
export type WindowCounts = Pick<StatsSnapshot, 'codes' | 'failedAfterHead' | 'cacheHits' | 'fineBuckets' | 'fineTtfbBuckets'> & { readonly at: number };

/**
 * Counts older than this at a window's start (another instance's, published a while ago, or
 * no more since its rollouts ended) would put requests of before the window into it: that
 * instance joins at the next analysis instead.
 */
const FRESH_MS = 1_500;

/** What a rollout drives: the model's traffic and its deployments' request counts. */
export interface RolloutHost {
  versionsOf(model: string): VersionInfo[];
  /** Cumulative request counts of the model's deployments, summed over this instance's workers, by `<deployment>@<instance>` for every instance sharing the state. */
  stats(model: string): Promise<Map<string, WindowCounts>>;
  /**
   * Before each analysis: is this instance still the one that analyses this rollout (the
   * lease, and the shared record still naming this rollout as running)? False: another
   * instance took over, or someone ended it; this one stops quietly.
   */
  stillDriving(rollout: Rollout): Promise<boolean>;
  /** A check was recorded: the rollout's state goes to the shared record. */
  save(rollout: Rollout): Promise<void>;
  setWeights(model: string, weights: Record<string, number>, why: string): Promise<void>;
  promote(model: string, version: string, why: string): Promise<void>;
  /** All traffic back to the stable version. */
  rollback(model: string, why: string): Promise<void>;
  /** A rollout ended: `sluice_rollouts_total{result}`. */
  finished(model: string, result: 'promoted' | 'rolled_back' | 'aborted'): void;
  readonly logger: Logger;
}

const MAX_CHECKS = 50;

/** One model's rollout, from start to its end; a timer drives it. */
export class Rollout {
  readonly model: string;
  readonly spec: RolloutSpec;
  readonly stable: string;
  readonly #host: RolloutHost;
  #status: RolloutStatus = 'progressing';
  #step = 0;
  #failed = 0;
  readonly #startedAt: string;
  #finishedAt: string | null = null;
  readonly #checks: RolloutCheck[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** Counts at the start of the current window (a window grows while it waits for traffic). */
  #baseline: Map<string, WindowCounts> = new Map();
  #baselineRestarts = 0;
  #analysing = false;

  /** `resume`: the shared state of a rollout another instance drove until it stopped. */
  constructor(model: string, spec: RolloutSpec, stable: string, host: RolloutHost, resume?: RolloutView) {
    this.model = model;
    this.spec = spec;
    this.stable = stable;
    this.#host = host;
    this.#startedAt = resume?.started_at ?? new Date().toISOString();
    if (resume !== undefined) {
      this.#status = resume.status;
      this.#step = resume.step;
      this.#failed = resume.failed_checks;
      this.#checks.push(...resume.checks);
    }
  }

  get done(): boolean {
    return isOver(this.#status);
  }

  get startedAt(): string {
    return this.#startedAt;
  }

  /** Sends the first step's share to the canary and starts the analysis timer. */
  async start(): Promise<void> {
    await this.#applyStep(`rollout of ${this.model}-${this.spec.canary} started`);
    await this.resume();
  }

  /** Analyses from now on (a new window), at the step it is at. */
  async resume(): Promise<void> {
    await this.#newWindow();
    this.#timer = setInterval(() => void this.#analyse(), this.spec.interval_s * 1000);
    this.#timer.unref();
  }

  /** Ends it where it is (the traffic was changed by someone else). */
  abort(why: string): void {
    if (this.done) return;
    this.#end('aborted');
    this.#host.logger.info({ model: this.model, canary: this.spec.canary }, `rollout aborted: ${why}`);
  }

  /** Stops analysing here without ending it: the gateway stops, or another instance drives it now. */
  detach(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  view(): RolloutView {
    return {
      canary: this.spec.canary, stable: this.stable, status: this.#status, step: this.#step, weight: this.#weight(),
      failed_checks: this.#failed, started_at: this.#startedAt, finished_at: this.#finishedAt, spec: this.spec, checks: [...this.#checks],
    };
  }

  #weight(): number {
    return this.spec.steps[Math.min(this.#step, this.spec.steps.length - 1)]!;
  }

  async #applyStep(why: string): Promise<void> {
    const w = this.#weight();
    const weights = w >= 100 ? { [this.spec.canary]: 100, [this.stable]: 0 } : { [this.stable]: 100 - w, [this.spec.canary]: w };
    await this.#host.setWeights(this.model, weights, why);
  }

  async #newWindow(): Promise<void> {
    const now = Date.now();
    this.#baseline = new Map([...(await this.#host.stats(this.model))].filter(([, c]) => now - c.at <= FRESH_MS));
    this.#baselineRestarts = this.#canaryVersion()?.restarts ?? 0;
  }

  #canaryVersion(): VersionInfo | undefined {
    return this.#host.versionsOf(this.model).find((v) => v.version === this.spec.canary);
  }

  async #analyse(): Promise<void> {
    if (this.done || this.#analysing) return;
    this.#analysing = true;
    try {
      if (!(await this.#host.stillDriving(this))) {
        this.detach();
        return;
      }
      const now = await this.#host.stats(this.model);
      if (this.done) return;
      const canary = figures(this.#baseline, now, `${this.model}-${this.spec.canary}`, this.spec.latency);
      const stable = figures(this.#baseline, now, `${this.model}-${this.stable}`, this.spec.latency);
      const version = this.#canaryVersion();
      // A canary asleep (scale to zero) has no ready replica for want of requests, which wake
      // it: like one short of traffic, it is judged on the requests it gets.
      const crashing = version === undefined || (version.readyReplicas === 0 && !version.asleep) || version.restarts > this.#baselineRestarts;
      let verdict: RolloutCheck['verdict'];
      let why: string;
      if (crashing) {
        verdict = 'failed';
        why = version === undefined ? 'the canary is no longer deployed' : version.readyReplicas === 0 ? 'the canary has no ready replica' : 'a canary replica restarted (crash loop)';
      } else if (canary.requests < this.spec.min_requests) {
        verdict = 'waiting';
        why = `waiting for traffic: ${canary.requests} of ${this.spec.min_requests} canary requests in the window`;
      } else {
        const errorLimit = Math.max(this.spec.max_error_rate, stable.requests > 0 ? stable.error_rate + this.spec.error_margin : 0);
        // The stable's time to first byte is a baseline only while it answers: a version that
        // fails beyond the error limit answers its errors fast, and a healthy canary beside it
        // would be "slower" and rolled back to it.
        const latencyLimit = stable.latency_s === null || stable.error_rate > this.spec.max_error_rate ? null : this.spec.max_latency_ratio * stable.latency_s;
        if (canary.error_rate > errorLimit) {
          verdict = 'failed';
          why = `canary error rate ${round(canary.error_rate)} above ${round(errorLimit)}`;
        } else if (latencyLimit !== null && canary.latency_s !== null && canary.latency_s > latencyLimit) {
          verdict = 'failed';
          why = `canary ${this.spec.latency} ${round(canary.latency_s)} s above ${this.spec.max_latency_ratio} x stable (${round(stable.latency_s!)} s)`;
        } else {
          verdict = 'healthy';
          why = `error rate ${round(canary.error_rate)} (limit ${round(errorLimit)}), ${this.spec.latency} ${canary.latency_s === null ? '-' : round(canary.latency_s)} s`;
        }
      }
      this.#record({ at: new Date().toISOString(), step: this.#step, weight: this.#weight(), canary, stable, verdict, why });
      if (verdict === 'waiting') {
        // The window grows until the canary has had enough requests to judge; instances
        // first heard of now count from here on.
        const t = Date.now();
        for (const [key, counts] of now) if (!this.#baseline.has(key) && t - counts.at <= FRESH_MS) this.#baseline.set(key, counts);
        this.#status = 'waiting for traffic';
        await this.#host.save(this);
        return;
      }
      this.#status = 'progressing';
      if (verdict === 'failed') {
        this.#failed++;
        this.#host.logger.warn({ model: this.model, canary: this.spec.canary, failed_checks: this.#failed, why }, 'rollout check failed');
        if (this.#failed < this.spec.failed_checks) await this.#host.save(this);
        else {
          this.#end('rolled_back');
          await this.#host.rollback(this.model, `rollout rolled back after ${this.#failed} failed checks: ${why}`);
          this.#host.logger.warn({ model: this.model, canary: this.spec.canary, stable: this.stable, why }, 'rollout rolled back');
          return;
        }
      } else if (this.#step + 1 >= this.spec.steps.length) {
        this.#end('promoted');
        await this.#host.promote(this.model, this.spec.canary, `rollout promoted ${this.model}-${this.spec.canary} after ${this.spec.steps.length} healthy steps`);
        this.#host.logger.info({ model: this.model, canary: this.spec.canary }, 'rollout promoted the canary');
        return;
      } else {
        this.#step++;
        await this.#applyStep(`rollout step ${this.#step + 1} of ${this.spec.steps.length}: ${why}`);
      }
      await this.#newWindow();
    } catch (err) {
      this.#host.logger.error({ err, model: this.model }, 'rollout analysis failed');
    } finally {
      this.#analysing = false;
    }
  }

  #record(check: RolloutCheck): void {
    this.#checks.push(check);
    if (this.#checks.length > MAX_CHECKS) this.#checks.shift();
  }

  #end(status: 'promoted' | 'rolled_back' | 'aborted'): void {
    this.#status = status;
    this.#finishedAt = new Date().toISOString();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#host.finished(this.model, status);
  }
}

/** Validates a rollout request body over the defaults; errors name the field. */
export function rolloutSpec(body: Record<string, unknown>): RolloutSpec {
  const invalid = (field: string, reason: string): SluiceError => new SluiceError('SLUICE_ERR_INVALID_FIELD', `${field}: ${reason}`, { field });
  const known = new Set(['canary', ...Object.keys(ROLLOUT_DEFAULTS)]);
  for (const k of Object.keys(body)) if (!known.has(k)) throw invalid(k, 'unknown field');
  const canary = body['canary'];
  if (typeof canary !== 'string' || canary === '') throw invalid('canary', 'must be the version to roll out, a string');
  const num = (field: keyof typeof ROLLOUT_BOUNDS, integer = false): number => {
    const { min, max } = ROLLOUT_BOUNDS[field];
    const v = body[field] === undefined ? ROLLOUT_DEFAULTS[field] : body[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) throw invalid(field, `must be ${integer ? 'an integer' : 'a number'} ${min}..${max}`);
    return v;
  };
  // Only an absent field takes the default: null is a value, and not one of these.
  const steps = body['steps'] === undefined ? ROLLOUT_DEFAULTS.steps : body['steps'];
  if (!Array.isArray(steps) || steps.length === 0 || steps.length > 100) throw invalid('steps', 'must be a list of 1 to 100 canary weights in percent');
  let previous = 0;
  steps.forEach((s: unknown, i: number) => {
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= previous || s > 100) throw invalid(`steps[${i}]`, 'must be a percentage above the step before it, at most 100');
    previous = s;
  });
  const latency = body['latency'] === undefined ? ROLLOUT_DEFAULTS.latency : body['latency'];
  if (latency !== 'p99_ttfb' && latency !== 'p99_total') throw invalid('latency', 'must be "p99_ttfb" or "p99_total"');
  return {
    canary, steps: steps as number[], interval_s: num('interval_s'), min_requests: num('min_requests', true),
    max_error_rate: num('max_error_rate'), error_margin: num('error_margin'), max_latency_ratio: num('max_latency_ratio'),
    latency, failed_checks: num('failed_checks', true),
  };
}

/**
 * A deployment's requests between two sets of cumulative counts, keyed
 * `<deployment>@<instance>` (every instance sharing the state counts its own). An instance
 * that was not counted at the window's start joins at the next window: its counts so far
 * are not this window's. Errors are 5xx answers (from the replica, or the gateway's own
 * 502/503/504 for it) and answers that failed after their head (a stream cut by a reset:
 * counted under its 200); 4xx count as requests, client aborts (499) as neither. Cache hits
 * (200s the cache answered) are not the deployment's answers: left out, or repeated requests
 * would dilute its errors to nothing.
 */
export function figures(
  before: ReadonlyMap<string, WindowCounts>, after: ReadonlyMap<string, WindowCounts>, deployment: string, latency: RolloutSpec['latency'],
): WindowFigures {
  const prefix = `${deployment}@`;
  const buckets = latency === 'p99_ttfb' ? 'fineTtfbBuckets' : 'fineBuckets';
  const window = new Array<number>(FINE_BUCKETS).fill(0);
  let requests = 0;
  let errors = 0;
  for (const [key, now] of after) {
    const then = before.get(key);
    if (!key.startsWith(prefix) || then === undefined) continue;
    for (const [code, n] of Object.entries(now.codes)) {
      const c = Number(code);
      if (c === 499) continue;
      // Counts that went down: that instance restarted; its counts since are this window's.
      const was = then.codes[code] ?? 0;
      const d = n >= was ? n - was : n;
      requests += d;
      if (c >= 500) errors += d;
    }
    // Absent from the counts of an instance older than the field.
    const failed = now.failedAfterHead ?? 0;
    const failedBefore = then.failedAfterHead ?? 0;
    errors += failed >= failedBefore ? failed - failedBefore : failed;
    const hits = now.cacheHits ?? 0;
    const hitsBefore = then.cacheHits ?? 0;
    // A hit whose client left counts under 499, not 200: never more than the requests counted.
    requests = Math.max(0, requests - (hits >= hitsBefore ? hits - hitsBefore : hits));
    const a = now[buckets];
    const b = then[buckets];
    for (let i = 0; i < FINE_BUCKETS; i++) window[i]! += Math.max(0, (a[i] ?? 0) - (b[i] ?? 0));
  }
  return { requests, errors, error_rate: requests === 0 ? 0 : errors / requests, latency_s: fineQuantile(window, 0.99) };
}

/** Promoted, rolled back or aborted: nothing more happens to it. */
export function isOver(status: RolloutStatus): boolean {
  return status === 'promoted' || status === 'rolled_back' || status === 'aborted';
}

function round(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}
