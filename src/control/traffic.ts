// Each model's alias traffic: the weights across its versions, the stable version, sticky
// assignment and the history of changes. The config's `traffic` is the initial state;
// changes through the admin API are stored (file or Redis) and win until the config's entry
// for that model changes. From these and the versions' readiness it resolves what the
// alias route gets: never a version with no ready replica while another version is ready.

import { deploymentId, type Config } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import type { AliasSnapshot } from '../proxy/index.js';
import type { DesiredStateStore, RolloutView, StickySpec, StoredTraffic, TrafficEvent, TrafficWeights } from '../state/index.js';
import type { Logger } from '../telemetry/index.js';
import type { VersionInfo } from './model-versions.js';
import { isOver, Rollout, rolloutSpec, type RolloutHost, type WindowCounts } from './rollout.js';

export type TrafficSource = 'default' | 'config' | 'api';
export type Fallback = 'stable' | 'any_ready';

/** What the alias route gets now. */
export interface AliasResolution {
  readonly targets: ReadonlyArray<{ readonly deployment: string; readonly version: string; readonly weight: number }>;
  /** Why the targets are not the weights: none of the weighted versions is ready. */
  readonly fallback: Fallback | null;
}

interface ModelTraffic {
  weights: TrafficWeights | null;
  sticky: StickySpec | null;
  stable: string | null;
  source: TrafficSource;
  configDigest: string;
  events: TrafficEvent[];
  /** The last rollout, as stored: every instance shows it, the one holding its lease runs it. */
  rollout: RolloutView | null;
  updatedAt: string;
}

export interface TrafficRegistryOptions {
  readonly config: Config['traffic'];
  readonly store: DesiredStateStore;
  readonly logger: Logger;
  /** The model's deployed versions, oldest first. */
  readonly versionsOf: (model: string) => VersionInfo[];
  /** Every model with a deployed version. */
  readonly deployedModels: () => string[];
  /**
   * Ids of the deployments meant to run, read when called: the config file's and the stored
   * ones (what every instance sharing the store deploys), not those this instance runs.
   */
  readonly desired: () => Promise<ReadonlySet<string>>;
  /** Something routing depends on changed: publish a route table. */
  readonly onChange: () => void;
  /** Request counts of the model's deployments over every worker and instance: what rollouts analyse. */
  readonly stats: (model: string) => Promise<Map<string, WindowCounts>>;
  /** This instance, as the holder of rollout leases. */
  readonly instance: string;
  /** A rollout ended (for sluice_rollouts_total). */
  readonly onRolloutFinished: (model: string, result: 'promoted' | 'rolled_back' | 'aborted') => void;
}

const MAX_EVENTS = 200;
// An admin change made on a record another instance replaced meanwhile is made again on the
// new one; this many tries, then it is refused (409).
const STALE_TRIES = 3;
/** A rollout's lease is renewed this often and lapses after three missed renewals: another instance takes over within seconds. */
const LEASE_RENEW_MS = 1_000;
const LEASE_TTL_MS = 3 * LEASE_RENEW_MS;
const COUNTS_AFTER_END_MS = 10_000;

export class TrafficRegistry {
  readonly #o: TrafficRegistryOptions;
  readonly #models = new Map<string, ModelTraffic>();
  /** The fallback each model's alias was last published with (events on changes only). */
  readonly #fallbacks = new Map<string, Fallback | null>();
  /** The rollouts this instance runs (holds the lease of), by model. */
  readonly #drivers = new Map<string, Rollout>();
  /** Per model, the admin change in progress (#serial). */
  readonly #changing = new Map<string, Promise<unknown>>();
  #leaseTimer: NodeJS.Timeout | null = null;

  constructor(options: TrafficRegistryOptions) {
    this.#o = options;
  }

  /**
   * At start-up: the stored records against the config's entries. A stored API change wins
   * while the config's entry for its model is the one it was made under; a changed (or
   * removed) entry wins over it, and says so in an event.
   */
  async load(): Promise<void> {
    const stored = new Map((await this.#o.store.loadTraffic()).map((t) => [t.model, t]));
    const models = new Set([...Object.keys(this.#o.config), ...stored.keys()]);
    for (const model of models) {
      const digest = configDigest(this.#o.config[model]);
      const record = stored.get(model);
      if (record !== undefined && record.config_digest === digest) {
        this.#models.set(model, fromStored(record));
        continue;
      }
      const entry = this.#fromConfig(model, digest, record?.events ?? []);
      if (record !== undefined) {
        // A rollout in progress ends as any change by someone else ends it: aborted, counted,
        // and shown so (it vanished, leaving `rollout: null` and no sign of its end).
        entry.rollout = this.#rolloutAfter(model, record.rollout, 'config', 'the config\'s traffic for this model changed while the gateway was stopped');
        this.#event(entry, { who: 'config', action: 'config', from: record.weights, to: entry.weights, why: 'the config\'s traffic for this model changed since the API set it: the config wins' });
        await this.#save(model, entry);
      }
      this.#models.set(model, entry);
    }
  }

  /** Instances sharing Redis: takes the records another instance wrote, and carries on rollouts whose instance stopped. */
  async follow(): Promise<void> {
    if (await this.#refresh()) this.#o.onChange();
    await this.#carryOn();
  }

  /** Takes the stored records newer than this instance's; true when one was. */
  async #refresh(): Promise<boolean> {
    let changed = false;
    for (const record of await this.#o.store.loadTraffic()) {
      const mine = this.#models.get(record.model);
      if (mine !== undefined && mine.updatedAt >= record.updated_at) continue;
      this.#models.set(record.model, fromStored(record));
      changed = true;
    }
    return changed;
  }

  /**
   * The shared store lost its data (StateLostError): the models' API traffic is stored
   * again, each unless a newer record is stored meanwhile. Returns how many this instance stored.
   */
  async storeAgain(): Promise<number> {
    let stored = 0;
    for (const [model, t] of this.#models) if (t.source === 'api' && await this.#save(model, t, t.updatedAt)) stored++;
    return stored;
  }

  /**
   * Every deployment the gateway had is back: weighted versions that left the desired state
   * while it was down (a config file without them) are dropped, and a rollout that was
   * running when the gateway (or the instance driving it) stopped goes on from its last step.
   */
  async restored(): Promise<void> {
    await this.pruneUndeployed().catch((err: unknown) => this.#o.logger.error({ err }, 'could not drop the weights of undeployed versions'));
    await this.#carryOn().catch((err: unknown) => this.#o.logger.warn({ err }, 'could not carry on the rollouts in progress'));
  }

  /**
   * Drops from the weights (and as the stable version) the versions that left the desired
   * state, of `model` or of every model: the records are read first, then the desired
   * state. A version was deployed when it was weighted, so one missing from a desired state
   * read after the record was undeployed since; a version this instance has not started yet
   * (another instance deployed it a moment ago) is still there, and keeps its weight.
   * A model none of whose versions is left loses its record, events included: each model
   * name ever weighted would otherwise stay stored (and read by every instance) for good.
   * API records only: the config's entry is declarative.
   */
  async pruneUndeployed(model?: string): Promise<void> {
    let changed = await this.#refresh();
    try {
      const desired = await this.#o.desired();
      const models = new Set([...desired].map((id) => id.slice(0, id.lastIndexOf('-'))));
      for (const [m, t] of [...this.#models]) {
        if ((model !== undefined && m !== model) || t.source !== 'api') continue;
        if (!models.has(m) && (t.rollout === null || isOver(t.rollout.status))) {
          // A record stored meanwhile (another instance deployed and weighted the model again) stays.
          if (await this.#o.store.removeTraffic(m, t.updatedAt)) {
            this.#models.delete(m);
            this.#o.logger.info({ model: m }, 'no version of the model is left: its traffic and events are dropped');
            changed = true;
          }
          continue;
        }
        if (t.weights === null) continue;
        const gone = Object.keys(t.weights).filter((v) => !desired.has(deploymentId(m, v)));
        const stableGone = t.stable !== null && !desired.has(deploymentId(m, t.stable));
        if (gone.length === 0 && !stableGone) continue;
        const weights = Object.fromEntries(Object.entries(t.weights).filter(([v]) => !gone.includes(v)));
        // A rollout whose stable version is gone has nothing to compare its canary with, nor
        // to roll back to: it ends here, rather than send all traffic back to a version that
        // is no longer there (the alias would then fall back to the newest: the canary).
        const running = stableGone && t.rollout !== null && !isOver(t.rollout.status) ? t.rollout : null;
        const rollout = running === null ? t.rollout : this.#rolloutAfter(m, running, 'gateway', `its stable version ${m}-${t.stable!} was undeployed`);
        const updated: ModelTraffic = { ...t, weights, stable: stableGone ? null : t.stable, rollout, updatedAt: laterThan(t.updatedAt) };
        const why = `${[...gone, ...(stableGone && !gone.includes(t.stable!) ? [t.stable!] : [])].map((v) => `${m}-${v}`).join(', ')} undeployed: removed from the traffic${stableGone ? ' (it was the stable version)' : ''}`
          + (running === null ? '' : `; the rollout of ${m}-${running.canary} is aborted: nothing left to compare it with, nor to roll back to`);
        this.#event(updated, { who: 'gateway', action: 'version_removed', from: t.weights, to: weights, why });
        // Stored first, as every change: one that could not be kept is tried again at the model's next undeploy, or the next start.
        await this.#save(m, updated);
        this.#models.set(m, updated);
        this.#o.logger.warn({ model: m, removed: gone }, why);
        changed = true;
      }
    } finally {
      if (changed) this.#o.onChange();
    }
  }

  /** Models with a rollout in progress. */
  #activeRollouts(): string[] {
    return [...this.#models].filter(([, t]) => t.rollout !== null && !isOver(t.rollout.status)).map(([m]) => m);
  }

  /**
   * Models whose counts the instances share: a rollout in progress, or one that ended a
   * moment ago, so that the last requests an instance sent under it are published before a
   * next rollout takes its counts as the start of its window.
   */
  countedRollouts(): string[] {
    const recent = Date.now() - COUNTS_AFTER_END_MS;
    return [...this.#models].filter(([, t]) => {
      const r = t.rollout;
      return r !== null && (!isOver(r.status) || (r.finished_at !== null && Date.parse(r.finished_at) > recent));
    }).map(([m]) => m);
  }

  /** Takes the lease of every running rollout nobody drives, and drives it. */
  async #carryOn(): Promise<void> {
    for (const model of this.#activeRollouts()) {
      const view = this.#models.get(model)!.rollout!;
      const mine = this.#drivers.get(model);
      if (mine !== undefined && mine.startedAt === view.started_at) continue;
      if (!(await this.#o.store.lease(`rollout:${model}`, this.#o.instance, LEASE_TTL_MS))) continue;
      mine?.detach();
      const rollout = new Rollout(model, view.spec, view.stable, this.#rolloutHost(model, view.stable), view);
      this.#drive(model, rollout);
      this.#o.logger.info({ model, canary: view.spec.canary, step: view.step }, 'carrying on a rollout');
      await rollout.resume();
    }
  }

  #drive(model: string, rollout: Rollout): void {
    this.#drivers.set(model, rollout);
    if (this.#leaseTimer === null) {
      this.#leaseTimer = setInterval(() => void this.#renewLeases(), LEASE_RENEW_MS);
      this.#leaseTimer.unref();
    }
  }

  async #renewLeases(): Promise<void> {
    for (const [model, rollout] of this.#drivers) {
      if (rollout.done) {
        this.#drivers.delete(model);
        await this.#o.store.releaseLease(`rollout:${model}`, this.#o.instance).catch(() => undefined);
        continue;
      }
      const held = await this.#o.store.lease(`rollout:${model}`, this.#o.instance, LEASE_TTL_MS).catch(() => false);
      if (!held) {
        rollout.detach();
        this.#drivers.delete(model);
        this.#o.logger.warn({ model }, 'lost the lease of a rollout: another instance carries it on');
      }
    }
    if (this.#drivers.size === 0 && this.#leaseTimer !== null) {
      clearInterval(this.#leaseTimer);
      this.#leaseTimer = null;
    }
  }

  /** The alias route of `model` for the route table; records fallback changes as events. */
  aliasFor(model: string): AliasSnapshot {
    const versions = this.#o.versionsOf(model);
    const t = this.#models.get(model);
    const resolution = resolveAlias(versions, t?.weights ?? null, t?.stable ?? null);
    const before = this.#fallbacks.get(model) ?? null;
    if (resolution.fallback !== before) {
      this.#fallbacks.set(model, resolution.fallback);
      if (resolution.fallback !== null) {
        const to = Object.fromEntries(resolution.targets.map((x) => [x.version, x.weight]));
        const why = resolution.fallback === 'stable'
          ? 'no weighted version is ready: the alias falls back to the stable version'
          : 'no weighted version (nor the stable one) is ready: the alias falls back to the newest ready version';
        this.#o.logger.warn({ model, to }, why);
        this.#event(this.#entry(model), { who: 'gateway', action: 'fallback', from: t?.weights ?? null, to, why });
      }
    }
    const sticky = t?.sticky ?? null;
    return {
      model,
      targets: resolution.targets.map(({ deployment, weight }) => ({ deployment, weight })),
      stickyHeader: sticky === null ? null : sticky.by === 'header' ? sticky.name.toLowerCase() : '',
    };
  }

  /**
   * Runs the admin API's changes of one model one after another: each reads the model's
   * entry, awaits the store, then writes; run side by side, the later write dropped the
   * earlier change and its event, and two rollouts both found none running.
   */
  #serial(model: string, change: () => Promise<void>): Promise<void> {
    const attempt = async (): Promise<void> => {
      for (let tries = 1; ; tries++) {
        try {
          return await change();
        } catch (err) {
          // Another instance stored a change of the model since this one read it: read that
          // one and make this change on it, so that neither change nor its event is lost.
          if (!(err instanceof StaleTrafficError) || tries === STALE_TRIES) throw err;
          if (await this.#refresh()) this.#o.onChange();
        }
      }
    };
    const run = (this.#changing.get(model) ?? Promise.resolve()).then(attempt);
    const settled = run.catch(() => undefined);
    this.#changing.set(model, settled);
    void settled.then(() => {
      if (this.#changing.get(model) === settled) this.#changing.delete(model);
    });
    return run;
  }

  /** Replaces the weights (and sticky rule) of `model`: validated, stored, then published. */
  setWeights(model: string, weights: TrafficWeights, sticky: StickySpec | null, who: TrafficEvent['who'], why: string): Promise<void> {
    return this.#serial(model, async () => {
      const versions = await this.#knownWith(model, Object.keys(weights));
      for (const v of Object.keys(weights)) {
        const version = versions.find((x) => x.version === v);
        if (version === undefined) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `weights.${v}: ${model} has no version ${v}`, { field: `weights.${v}` });
        if (!version.routable) throw beingUndeployed(version, `weights.${v}`);
      }
      const entry = this.#entry(model);
      // The version that had the traffic so far is the one to roll back to.
      const stable = entry.stable ?? heaviest(resolveAlias(versions, entry.weights, null).targets);
      await this.#change(model, entry, { weights: { ...weights }, sticky, stable }, { who, action: 'traffic', why }, true);
    });
  }

  /** All traffic to `version`, which becomes the stable version. */
  promote(model: string, version: string, who: TrafficEvent['who'], why: string): Promise<void> {
    return this.#serial(model, async () => {
      const versions = await this.#knownWith(model, [version]);
      const target = versions.find((x) => x.version === version);
      if (target === undefined) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `version: ${model} has no version ${version}`, { field: 'version' });
      // A stable version that cannot serve would send the alias's traffic elsewhere and leave
      // rollback nothing to return to; one starting or hibernated may (blue-green).
      if (target.state === 'failed' || target.state === 'unhealthy') {
        throw new SluiceError('SLUICE_ERR_CONFLICT', `${target.deployment} is ${target.state}: only a version that can serve (ready, starting or hibernated) can be promoted`, { field: 'version' });
      }
      if (!target.routable) throw beingUndeployed(target, 'version');
      const entry = this.#entry(model);
      await this.#change(model, entry, { weights: { [version]: 100 }, sticky: entry.sticky, stable: version }, { who, action: 'promote', why }, true);
    });
  }

  /** All traffic back to the stable version. */
  rollback(model: string, who: TrafficEvent['who'], why: string): Promise<void> {
    return this.#serial(model, async () => {
      this.#known(model);
      const entry = this.#entry(model);
      const stable = entry.stable;
      if (stable === null) throw new SluiceError('SLUICE_ERR_CONFLICT', `${model} has no stable version to roll back to (promote one first)`);
      await this.#change(model, entry, { weights: { [stable]: 100 }, sticky: entry.sticky, stable }, { who, action: 'rollback', why }, true);
    });
  }

  /** Starts a rollout of `spec.canary` against the stable version; one at a time per model. */
  startRollout(model: string, body: Record<string, unknown>): Promise<void> {
    return this.#serial(model, async () => {
      const spec = rolloutSpec(body);
      const stored = this.#models.get(model)?.stable;
      const versions = await this.#knownWith(model, stored == null ? [spec.canary] : [spec.canary, stored]);
      const running = this.#models.get(model)?.rollout;
      if (running != null && !isOver(running.status)) {
        throw new SluiceError('SLUICE_ERR_CONFLICT', `a rollout of ${model}-${running.canary} is in progress: abort it first (DELETE /v1/models/${model}/rollout)`);
      }
      const canary = versions.find((v) => v.version === spec.canary);
      if (canary === undefined) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `canary: ${model} has no version ${spec.canary}`, { field: 'canary' });
      if (!canary.routable) throw beingUndeployed(canary, 'canary');
      const entry = this.#entry(model);
      const stable = entry.stable ?? heaviest(resolveAlias(versions, entry.weights, null).targets);
      const stableVersion = versions.find((v) => v.version === stable);
      if (stableVersion === undefined) throw new SluiceError('SLUICE_ERR_CONFLICT', `${model} has no stable version to compare the canary with (promote one first)`);
      if (!stableVersion.routable) throw beingUndeployed(stableVersion, 'stable');
      if (stable === spec.canary) throw new SluiceError('SLUICE_ERR_INVALID_FIELD', `canary: ${spec.canary} is the stable version already`, { field: 'canary' });
      if (!(await this.#o.store.lease(`rollout:${model}`, this.#o.instance, LEASE_TTL_MS))) {
        throw new SluiceError('SLUICE_ERR_CONFLICT', `another instance is running a rollout of ${model}`);
      }
      this.#drivers.get(model)?.detach();
      const rollout = new Rollout(model, spec, stableVersion.version, this.#rolloutHost(model, stableVersion.version));
      this.#drive(model, rollout);
      try {
        await rollout.start();
      } catch (err) {
        // Its first step was not stored: no rollout runs, and no other instance is kept from starting one.
        rollout.detach();
        if (this.#drivers.get(model) === rollout) this.#drivers.delete(model);
        await this.#o.store.releaseLease(`rollout:${model}`, this.#o.instance).catch(() => undefined);
        throw err;
      }
    });
  }

  /** Stops a running rollout where it is: its traffic goes back to the stable version. */
  abortRollout(model: string): Promise<void> {
    return this.#serial(model, async () => {
      this.#known(model);
      const running = this.#models.get(model)?.rollout;
      if (running == null || isOver(running.status)) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no rollout of ${model} is in progress`);
      await this.#changeBy(model, 'rollback', { weights: { [running.stable]: 100 }, stable: running.stable }, `rollout of ${model}-${running.canary} aborted through the admin API`, 'api');
    });
  }

  /** The gateway stops: the rollouts it runs stay as they are, for it or another instance to carry on. */
  async stop(): Promise<void> {
    if (this.#leaseTimer !== null) clearInterval(this.#leaseTimer);
    this.#leaseTimer = null;
    for (const [model, r] of this.#drivers) {
      r.detach();
      await this.#o.store.releaseLease(`rollout:${model}`, this.#o.instance).catch(() => undefined);
    }
    this.#drivers.clear();
  }

  #rolloutHost(model: string, stable: string): RolloutHost {
    return {
      logger: this.#o.logger,
      versionsOf: this.#o.versionsOf,
      stats: this.#o.stats,
      stillDriving: async (r) => {
        const stored = this.#models.get(model)?.rollout;
        if (this.#drivers.get(model) !== r || stored == null || stored.started_at !== r.startedAt || isOver(stored.status)) return false;
        return this.#o.store.lease(`rollout:${model}`, this.#o.instance, LEASE_TTL_MS).catch(() => false);
      },
      save: async (r) => {
        const entry = this.#entry(model);
        entry.rollout = r.view();
        entry.updatedAt = laterThan(entry.updatedAt);
        await this.#save(model, entry);
      },
      setWeights: (m, weights, why) => this.#changeBy(m, 'traffic', { weights, stable }, why),
      promote: (m, version, why) => this.#changeBy(m, 'promote', { weights: { [version]: 100 }, stable: version }, why),
      rollback: (m, why) => this.#changeBy(m, 'rollback', { weights: { [stable]: 100 }, stable }, why),
      finished: (m, result) => this.#o.onRolloutFinished(m, result),
    };
  }

  #changeBy(model: string, action: TrafficEvent['action'], next: Pick<ModelTraffic, 'weights' | 'stable'>, why: string, who: TrafficEvent['who'] = 'rollout'): Promise<void> {
    const entry = this.#entry(model);
    return this.#change(model, entry, { ...next, sticky: entry.sticky }, { who, action, why });
  }

  /** GET /v1/models/{model}: versions with their weights, what is routed now, the history's size. */
  view(model: string): Record<string, unknown> {
    const versions = this.#known(model);
    const t = this.#models.get(model);
    const weights = t?.weights ?? null;
    const resolution = resolveAlias(versions, weights, t?.stable ?? null);
    const total = resolution.targets.reduce((sum, x) => sum + x.weight, 0);
    const effective: Record<string, number> = {};
    if (versions.some(isReady)) for (const x of resolution.targets) effective[x.version] = total > 0 ? x.weight / total : 0;
    return {
      model,
      versions: versions.map((v) => ({
        version: v.version, deployment: v.deployment, state: v.state, ready_replicas: v.readyReplicas,
        weight: weights === null ? null : weights[v.version] ?? 0, share: effective[v.version] ?? 0,
      })),
      weights,
      effective,
      stable: t?.stable ?? null,
      sticky: t?.sticky ?? null,
      source: t?.source ?? 'default',
      fallback: resolution.fallback,
      rollout: t?.rollout ?? null,
    };
  }

  events(model: string): TrafficEvent[] {
    this.#known(model);
    return this.#models.get(model)?.events ?? [];
  }

  /** Models with at least one deployed version, by name. */
  models(): string[] {
    return [...new Set(this.#o.deployedModels())].sort();
  }

  /** The model's versions; 404 when it has none. */
  #known(model: string): VersionInfo[] {
    const versions = this.#o.versionsOf(model);
    if (versions.length === 0) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment of model '${model}'`);
    return versions;
  }

  /**
   * #known, and those of `wanted` this instance has not read yet but the desired state holds:
   * another instance sharing the store deployed them a moment ago, and a change made through
   * this one (behind a load balancer, the next call may land on any) is not refused for them.
   * Those are `starting` here, as they soon are.
   */
  async #knownWith(model: string, wanted: readonly string[]): Promise<VersionInfo[]> {
    const versions = this.#o.versionsOf(model);
    const unread = wanted.filter((v) => !versions.some((x) => x.version === v));
    if (unread.length === 0) return this.#known(model);
    const desired = await this.#o.desired();
    const stored = unread.filter((v) => desired.has(deploymentId(model, v)))
      .map((version): VersionInfo => ({ version, deployment: deploymentId(model, version), state: 'starting', readyReplicas: 0, restarts: 0, asleep: false, routable: true }));
    if (versions.length + stored.length === 0) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment of model '${model}'`);
    return [...versions, ...stored];
  }

  #entry(model: string): ModelTraffic {
    let entry = this.#models.get(model);
    if (entry === undefined) {
      entry = this.#fromConfig(model, configDigest(this.#o.config[model]), []);
      this.#models.set(model, entry);
    }
    return entry;
  }

  #fromConfig(model: string, digest: string, events: readonly TrafficEvent[]): ModelTraffic {
    const weights = this.#o.config[model] ?? null;
    return {
      weights, sticky: null, stable: weights === null ? null : heaviestOf(weights), source: weights === null ? 'default' : 'config',
      configDigest: digest, events: [...events], rollout: null, updatedAt: new Date(0).toISOString(),
    };
  }

  /** `guarded`: an admin change, refused (StaleTrafficError) if another instance stored one since `entry` was read. */
  async #change(
    model: string, entry: ModelTraffic, next: Pick<ModelTraffic, 'weights' | 'sticky' | 'stable'>,
    what: Pick<TrafficEvent, 'who' | 'action' | 'why'>, guarded = false,
  ): Promise<void> {
    const updated: ModelTraffic = {
      ...next, source: 'api', configDigest: configDigest(this.#o.config[model]), events: entry.events,
      rollout: this.#rolloutAfter(model, entry.rollout, what.who), updatedAt: laterThan(entry.updatedAt),
    };
    this.#event(updated, { ...what, from: entry.weights, to: next.weights });
    // Stored first: a change that could not be kept is not applied (and the caller gets the error).
    if (!(await this.#save(model, updated, guarded ? entry.updatedAt : null))) throw new StaleTrafficError(model);
    this.#models.set(model, updated);
    this.#o.logger.info({ model, who: what.who, action: what.action, from: entry.weights, to: next.weights }, 'traffic changed');
    this.#o.onChange();
  }

  /**
   * The rollout state a change leaves: the rollout's own changes carry its state; anyone
   * else's change of the traffic ends a running rollout (the operator has taken over).
   */
  #rolloutAfter(model: string, current: RolloutView | null, who: TrafficEvent['who'], why = `the traffic was changed by ${who}`): RolloutView | null {
    const driver = this.#drivers.get(model);
    if (who === 'rollout') return driver?.view() ?? current;
    if (current === null || isOver(current.status)) return current;
    if (driver !== undefined && driver.startedAt === current.started_at) {
      driver.abort(why);
      return driver.view();
    }
    // Run by another instance: it sees the record end and stops.
    this.#o.onRolloutFinished(model, 'aborted');
    return { ...current, status: 'aborted', finished_at: new Date().toISOString() };
  }

  #event(entry: ModelTraffic, e: Omit<TrafficEvent, 'at'>): void {
    entry.events = [...entry.events, { at: new Date().toISOString(), ...e }].slice(-MAX_EVENTS);
  }

  #save(model: string, t: ModelTraffic, over: string | null = null): Promise<boolean> {
    return this.#o.store.putTraffic({
      model, weights: t.weights, sticky: t.sticky, stable: t.stable, config_digest: t.configDigest, events: t.events, rollout: t.rollout,
      updated_at: t.updatedAt,
    }, over);
  }
}

/**
 * The alias's targets: the weighted versions that have a ready replica. When none has, the
 * stable version, else the newest ready one (a fallback); when nothing is ready at all, the
 * weighted versions (their requests wait for one, or get 503). A hibernated version is a
 * fallback only while no weighted version is starting: waking it would be a cold start of a
 * model the operator put to sleep, at every gateway start, for requests that the starting
 * one serves in a moment. Without weights the newest ready version takes everything.
 */
export function resolveAlias(versions: readonly VersionInfo[], weights: TrafficWeights | null, stable: string | null): AliasResolution {
  const routable = versions.filter((v) => v.routable);
  const ready = routable.filter(isReady);
  const target = (v: VersionInfo, weight: number): AliasResolution['targets'][number] => ({ deployment: v.deployment, version: v.version, weight });
  if (weights === null) {
    const newest = ready[ready.length - 1] ?? routable[routable.length - 1];
    return { targets: newest === undefined ? [] : [target(newest, 1)], fallback: null };
  }
  const weighted = routable.filter((v) => (weights[v.version] ?? 0) > 0);
  const live = weighted.filter(isReady);
  if (live.length > 0) return { targets: live.map((v) => target(v, weights[v.version]!)), fallback: null };
  const comingUp = weighted.some((v) => v.state === 'starting' || v.state === 'pending');
  const fallbacks = comingUp ? ready.filter((v) => v.readyReplicas > 0) : ready;
  const stableReady = fallbacks.find((v) => v.version === stable);
  if (stableReady !== undefined) return { targets: [target(stableReady, 1)], fallback: 'stable' };
  const newest = fallbacks[fallbacks.length - 1];
  if (newest !== undefined) return { targets: [target(newest, 1)], fallback: 'any_ready' };
  return { targets: weighted.map((v) => target(v, weights[v.version]!)), fallback: null };
}

/** Can serve now, or once woken: a hibernated version keeps its share (its requests wake it). */
function isReady(v: VersionInfo): boolean {
  return v.routable && (v.readyReplicas > 0 || v.state === 'hibernated');
}

function fromStored(t: StoredTraffic): ModelTraffic {
  return {
    weights: t.weights, sticky: t.sticky, stable: t.stable, source: 'api', configDigest: t.config_digest, events: [...t.events], rollout: t.rollout,
    updatedAt: t.updated_at,
  };
}

/** The config's entry as canonical JSON (keys sorted), '' when the config has none. */
function configDigest(entry: TrafficWeights | undefined): string {
  return entry === undefined ? '' : JSON.stringify(Object.keys(entry).sort().map((k) => [k, entry[k]]));
}

function heaviest(targets: AliasResolution['targets']): string | null {
  let best: AliasResolution['targets'][number] | null = null;
  for (const t of targets) if (best === null || t.weight > best.weight) best = t;
  return best?.version ?? null;
}

function heaviestOf(weights: TrafficWeights): string | null {
  let best: string | null = null;
  for (const [v, w] of Object.entries(weights)) if (w > 0 && (best === null || w > weights[best]!)) best = v;
  return best;
}

/** Now, or just after `previous` when the clock has not moved past it: records order by it across instances. */
function laterThan(previous: string): string {
  const now = new Date();
  const prev = Date.parse(previous);
  return (now.getTime() > prev ? now : new Date(prev + 1)).toISOString();
}

/**
 * A version being undeployed takes no new request, and its weight is dropped when the
 * undeploy begins (pruneUndeployed): weighted or promoted after that, it would stay in the
 * weights, and as the stable version, once gone.
 */
function beingUndeployed(v: VersionInfo, field: string): SluiceError {
  return new SluiceError('SLUICE_ERR_CONFLICT', `${v.deployment} is being undeployed (${v.state}): it takes no new request`, { field });
}

/** An admin change of `model` was made on a record another instance has replaced since. */
class StaleTrafficError extends SluiceError {
  constructor(model: string) {
    super('SLUICE_ERR_CONFLICT', `${model}'s traffic was changed through another instance at the same time: try again`);
  }
}
