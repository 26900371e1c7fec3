// The control plane's deployments: each one's replicas, their processes and ports, and
// the lifecycle pending -> starting -> ready -> draining -> stopped (or failed; a remote
// one whose every replica fails its health checks is unhealthy). Every change that
// affects routing triggers `onChange`, which publishes a new route table.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deploymentId, deploymentProblem, redactUrlSecrets, resolveHealthCheck, resolvePolicies, type PoliciesConfig, type Config, DeploymentConfig, UpstreamOptions } from '../config/index.js';
import { SluiceError } from '../errors/index.js';
import type { ReplicaLoadBoard } from '../balancer/index.js';
import { canonicalJson } from '../policy/index.js';
import { ActiveHealthCheck, endpointOf, LoadScrape, reportedModel, type HealthStatus } from '../health/index.js';
import { killGroup, launchFingerprint, launchPlan, PortAllocator, readStatSync, recordedProcess, removeDeploymentLogs, removeOtherLogs, removeReplicaLogs, replicaFileName, ReplicaProcess, simServedModel, startTicksOf, type LogLine, type ProcessPlan, type ReplicaProcessOptions, type ReplicaSpec, type ReplicaState } from '../ports/index.js';
import { isGateway, type DesiredStateStore, type HibernationRecords, type ReplicaRecord, type ReplicaRecords } from '../state/index.js';
import { upstreamCredential } from './credentials.js';
import { serverEnvironment } from './server-env.js';
import type { Logger } from '../telemetry/index.js';
import type { RoutableDeployment, RoutableReplica } from './route-snapshot.js';
import { OWNER_RENEW_MS, type ReplicaSharing, type SharedServers } from './shared-replicas.js';
import type { IndexAllocator, SlotAllocator } from './slots.js';
import { waitAtMost } from '../wait-at-most.js';
import { withQuery } from '../target-query.js';

/**
 * The longest a replica a scale-down retired waits for its requests before it stops: a bound
 * for a count that never returns to 0, not for a request (their own timeouts end those).
 */
const SCALE_DOWN_DRAIN_MAX_MS = 3_600_000;

export type DeploymentState = 'pending' | 'starting' | 'ready' | 'unhealthy' | 'draining' | 'stopped' | 'failed' | 'hibernated';
/** A process's states, and `unhealthy`: a remote replica failing its health checks. */
export type ReplicaStatus = ReplicaState | 'unhealthy';

export interface ManagerOptions {
  readonly config: Config;
  readonly ports: PortAllocator;
  readonly slots: SlotAllocator;
  /** Slots of the shared per-deployment counters (queue length, retry budget). */
  readonly deploymentSlots: IndexAllocator;
  /** A deployment slot was (re)assigned: its shared counters start from zero. */
  readonly onDeploymentSlot?: (slot: number) => void;
  /** A replica slot was assigned, or its server was started anew: its breaker starts closed. */
  readonly onReplicaSlot?: (slot: number) => void;
  /** Requests waiting for a replica of the deployment in this deployment slot, across workers. */
  readonly queued?: (deploymentSlot: number) => number;
  /** Where the queue_aware strategy's scrapes of the replicas' own load go; none: no scraping. */
  readonly replicaLoad?: ReplicaLoadBoard;
  /** The breaker state of a replica slot, for the admin view. */
  readonly breakerState?: (slot: number) => string;
  readonly logger: Logger;
  /** Routing-relevant change: publish a new route table. */
  readonly onChange: () => void;
  /** Throws (SLUICE_ERR_LIMIT_REACHED) when a route table with the deployments registered now could not be built. */
  readonly fits?: () => void;
  /** Resolves once every data-plane worker routes by the table onChange last published; none: at once. */
  readonly routesApplied?: () => Promise<void>;
  /**
   * A deployment left the desired state (undeployed here, or elsewhere and followed here):
   * its model's traffic drops the version. Never fails.
   */
  readonly onRemoved?: (model: string) => Promise<void>;
  /** Desired state of deployments made through the admin API (config ones are static). */
  readonly store: DesiredStateStore;
  /** Pids of the servers this host started, for adoption after a gateway crash. */
  readonly records: ReplicaRecords;
  /** Deployments hibernated on this host: a restart keeps them asleep. None: nothing is kept. */
  readonly hibernation?: HibernationRecords;
  /** A woken deployment has a ready replica again, `seconds` after the wake began. */
  readonly onColdStart?: (id: string, seconds: number) => void;
  /**
   * An undeployed deployment has drained and stopped, and is about to be forgotten (its
   * route, and the workers' stats with it, go next): the last moment its final figures can
   * be read. Never fails.
   */
  readonly onRetiring?: (d: Deployment) => Promise<void>;
  /** An undeployed deployment is gone (drained and stopped): what was kept by its id goes too. */
  readonly onForgotten?: (id: string) => void;
  /** Instances sharing a Redis on this host run one set of servers per deployment that may hibernate; none: each runs its own. */
  readonly sharing?: ReplicaSharing;
}

/** How often a deployment another instance runs is looked up, and an owner reads the others' activity. */
const SHARE_POLL_MS = 1_000;
/** An owner that stops its servers waits this long after withdrawing them: every borrower has looked again by then. */
const SHARE_SETTLE_MS = SHARE_POLL_MS + 250;

export class Replica {
  readonly id: string;
  readonly slot: number;
  host = '127.0.0.1';
  port = 0;
  basePath = '';
  /** An `https://` remote. */
  tls = false;
  /** A remote URL's query, without `?`: sent with every request to it. */
  query = '';
  url = '';
  /** Being removed by a scale-down: no new request goes to it; it stops once idle. */
  retiring = false;
  /** Its stop has begun (#stopReplica): a second one (a scale-down's, after a hibernation's) must not release its slot again. */
  stopping = false;
  /** When it was started (ms since the epoch): its running time is what per_replica_hour charges. */
  readonly startedAt = Date.now();
  /** When it failed for good (ms since the epoch): nothing runs from then on; null while it runs or starts. */
  failedAt: number | null = null;
  /**
   * When its server was stopped (ms since the epoch), its time then charged to the
   * deployment's stoppedReplicaMs: it may stay listed a while (a hibernation clears the list
   * once every replica has stopped), and must not count twice meanwhile.
   */
  stoppedAt: number | null = null;
  /** What the balancing strategies read (config `urls` entries; local replicas are alike). */
  weight = 1;
  priority = 0;
  cost = 0;
  process: ReplicaProcess | null = null;
  /** A remote replica's health checks; null for local ones and when disabled. */
  health: ActiveHealthCheck | null = null;
  /** Scrapes of the server's own load metrics (queue_aware); null for other strategies. */
  loadScrape: LoadScrape | null = null;
  state: ReplicaStatus = 'starting';
  /** Port from our allocator, released when the replica stops. */
  ownedPort: number | null = null;
  /** A server another instance on this host runs (ReplicaSharing): routed to, never started, stopped or charged here. */
  borrowed = false;

  constructor(id: string, slot: number) {
    this.id = id;
    this.slot = slot;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Its running time up to `now`, ms: what per_replica_hour charges. */
  runningMs(now: number): number {
    return (this.failedAt ?? now) - this.startedAt;
  }

  /**
   * The server's own TMPDIR, removed when it stops: `mlflow models serve` copies the model
   * into the temp dir on every start and never deletes it.
   */
  tmpDir(stateDir: string): string {
    return join(stateDir, 'tmp', replicaFileName(this.id));
  }

  view(breaker?: (slot: number) => string, load?: ReplicaLoadBoard): Record<string, unknown> {
    const p = this.process;
    return {
      // A remote URL may carry a password or a key in its query: the view shows neither (the spec keeps them).
      id: this.id, url: redactUrlSecrets(this.url), port: this.port, borrowed: this.borrowed, weight: this.weight, priority: this.priority, cost: this.cost, state: this.state, breaker: breaker?.(this.slot) ?? null,
      pid: p?.pid ?? null, restarts: p?.restarts ?? 0, last_error: p?.lastError?.message ?? null, health: this.health?.view() ?? null,
      ...(this.loadScrape === null ? {} : { load: this.#loadView(load) }),
    };
  }

  #loadView(board: ReplicaLoadBoard | undefined): Record<string, unknown> {
    const load = board?.view(this.slot) ?? null;
    return load === null
      ? { waiting: null, running: null, kv_cache_usage: null, error: this.loadScrape?.lastError ?? null }
      : { waiting: load.waiting, running: load.running, kv_cache_usage: load.kvCacheUsage, error: null };
  }
}

/** A change of what runs, as GET /v1/deployments/{id}/events shows it. */
export interface DeploymentEvent {
  readonly at: string;
  readonly action: 'scale_up' | 'scale_down' | 'scale_up_refused' | 'hibernate' | 'wake' | 'wake_failed';
  /** Replicas before and after (for hibernate and wake: running replicas). */
  readonly from: number;
  readonly to: number;
  readonly why: string;
}

/** Events kept per deployment (the oldest go first). */
const MAX_EVENTS = 200;

/** `config`: from the config file, started at every boot. `api`: made through the admin API, persisted. */
export type DeploymentSource = 'config' | 'api';

export class Deployment {
  readonly id: string;
  readonly spec: DeploymentConfig;
  readonly source: DeploymentSource;
  readonly upstream: UpstreamOptions;
  readonly policies: PoliciesConfig;
  readonly slot: number;
  readonly replicas: Replica[] = [];
  readonly createdAt: string;
  /**
   * Of its spec (key order aside), the same on every instance that runs it: the shared
   * cache's entries are its own, not those of what ran under its id before (undeployed,
   * then deployed anew with another model or command).
   */
  readonly specDigest: string;
  #state: DeploymentState = 'pending';
  lastError: string | null = null;
  /** Known to be in the desired-state store (written by us, or read from it). */
  persisted = false;
  /**
   * A config deployment whose id is also stored from the admin API: the config one runs,
   * the stored one is kept and runs again once the config file drops this id.
   */
  shadows: { readonly source: 'api'; readonly created_at: string } | null = null;
  /** When it was hibernated (ISO time); null while it runs. */
  hibernatedSince: string | null = null;
  /** Its replicas are being stopped for hibernation. */
  hibernating = false;
  /** A request came while it was being hibernated: wake it once that is done. */
  wakeAfterHibernation = false;
  /** performance.now() when a wake began, until a replica is ready; null otherwise. */
  wakeStartedAt: number | null = null;
  /** Wakes that could not start its servers: the requests held for one are answered when it fails. */
  wakeFailures = 0;
  /** Why the last of those failed; null: none did. */
  wakeError: string | null = null;
  /** Why its last replica failed, in one line without the server's output: what its clients are told. */
  failure: string | null = null;
  /** A scale-up or scale-down is under way: the autoscaler waits for it. */
  scaling = false;
  /** The index the next replica's id gets (`<id>/<index>`): ids are never reused while it runs. */
  nextReplicaIndex = 0;
  /**
   * How many times its servers were stopped (undeploy, hibernation, the gateway's stop): a
   * start of several replicas that began before a stop starts no more of them after it.
   */
  stops = 0;
  /** Replica starts under way: a stop waits for them, so that it stops what they started. */
  readonly starting = new Set<Promise<void>>();
  readonly events: DeploymentEvent[] = [];
  /** Running time of replicas already stopped, ms. */
  stoppedReplicaMs = 0;
  /** Time spent hibernated before the current hibernation, ms. */
  pastHibernationMs = 0;
  /** The model name its server lists at GET /v1/models, learnt when a replica becomes ready (runtimes whose plan `listsModel`). */
  reportedModel: string | null = null;
  /** Events by action since the deployment was made (the list keeps only the latest). */
  readonly eventCounts = new Map<DeploymentEvent['action'], number>();
  /**
   * ReplicaSharing: `owner` runs the servers other instances use, `borrower` uses another
   * instance's (`borrowedFrom`, null until its record is read); null: not shared.
   */
  share: 'owner' | 'borrower' | null = null;
  borrowedFrom: string | null = null;
  /** A look at the owner's record is under way: a second one (the next tick, a wake) waits for the next turn. */
  following = false;
  /** An owner's: the requests in flight and waiting on the instances that route to its servers, as they last reported. */
  sharedLoad = 0;

  /** Replicas that run or start and are not being removed. */
  get activeReplicas(): number {
    let n = 0;
    for (const r of this.replicas) if (!r.retiring) n++;
    return n;
  }

  /** Replica running time so far, ms: stopped replicas' and running ones'. */
  replicaMs(now: number): number {
    let ms = this.stoppedReplicaMs;
    for (const r of this.replicas) if (!r.borrowed && r.stoppedAt === null) ms += r.runningMs(now);
    return ms;
  }

  /** What its replicas' running time has cost so far (cost.per_replica_hour). */
  replicaCostUsd(now: number): number {
    return (this.replicaMs(now) / 3_600_000) * this.spec.cost.per_replica_hour;
  }

  /** Time spent hibernated so far, ms (the current hibernation included). */
  hibernatedMs(now: number): number {
    const since = this.hibernatedSince === null ? NaN : Date.parse(this.hibernatedSince);
    return this.pastHibernationMs + (Number.isNaN(since) ? 0 : now - since);
  }

  event(action: DeploymentEvent['action'], from: number, to: number, why: string): void {
    this.events.push({ at: new Date().toISOString(), action, from, to, why });
    this.eventCounts.set(action, (this.eventCounts.get(action) ?? 0) + 1);
    if (this.events.length > MAX_EVENTS) this.events.shift();
  }

  constructor(spec: DeploymentConfig, config: Config, source: DeploymentSource, createdAt: string, slot: number) {
    this.id = deploymentId(spec.model, spec.version);
    this.spec = spec;
    this.source = source;
    this.createdAt = createdAt;
    this.specDigest = createHash('sha256').update(canonicalJson(spec)).digest('base64url').slice(0, 16);
    this.upstream = Object.freeze({ ...config.upstream, ...spec.upstream });
    this.policies = resolvePolicies(config.policies, spec.policies);
    this.slot = slot;
  }

  get state(): DeploymentState {
    const s = this.#state;
    if (s === 'draining' || s === 'stopped' || s === 'pending' || s === 'hibernated') return s;
    // Restored from the store but not started (DeploymentManager.restore): nothing runs.
    if (s === 'failed' && this.replicas.length === 0) return s;
    if (this.replicas.some((r) => r.ready)) return 'ready';
    if (this.replicas.length > 0 && this.replicas.every((r) => r.state === 'failed')) return 'failed';
    if (this.replicas.length > 0 && this.replicas.every((r) => r.state === 'failed' || r.state === 'unhealthy')) return 'unhealthy';
    return 'starting';
  }

  set state(s: DeploymentState) {
    this.#state = s;
  }

  /** No ready replica, but one is on its way (or can be woken): requests for it are held, not refused. */
  get holds(): boolean {
    const s = this.state;
    if (s === 'hibernated' || s === 'starting' || s === 'pending') return true;
    return this.replicas.some((r) => r.state === 'starting' || r.state === 'restarting');
  }

  /** False while draining or stopped: the route disappears for new requests at once. */
  get routable(): boolean {
    const s = this.#state;
    return s !== 'draining' && s !== 'stopped';
  }

  view(breaker?: (slot: number) => string, replicaLoad?: ReplicaLoadBoard): Record<string, unknown> {
    const s = this.spec;
    return {
      id: this.id, model: s.model, version: s.version, runtime: s.runtime, state: this.state, source: this.source, shadows: this.shadows,
      // Where the upstream credential comes from; its value never leaves the process.
      auth: s.auth ?? null,
      route: `/${this.id}/`, created_at: this.createdAt, last_error: this.lastError, policies: this.policies, scale: s.scale,
      hibernated_since: this.hibernatedSince,
      served_model: servedModel(this),
      shared: this.share === null ? null : { role: this.share, owner: this.share === 'owner' ? 'this instance' : this.borrowedFrom },
      replicas: this.replicas.map((r) => r.view(breaker, replicaLoad)),
    };
  }
}

/** The project's own virtualenv (scripts/setup-python.sh) when present, else PATH. */
function defaultMlflowBin(): string {
  const venv = fileURLToPath(new URL('../../.venv/bin/mlflow', import.meta.url));
  return existsSync(venv) ? venv : 'mlflow';
}

/** The project's llama-cpp-python virtualenv (scripts/setup-llama.sh) when present, else PATH. */
function defaultLlamaPython(): string {
  const venv = fileURLToPath(new URL('../../.venv-llama/bin/python', import.meta.url));
  return existsSync(venv) ? venv : 'python3';
}

export class DeploymentManager {
  readonly #o: ManagerOptions;
  readonly #deployments = new Map<string, Deployment>();
  /** Records of servers left by a previous run, by replica id, consumed at restore. */
  #leftovers = new Map<string, ReplicaRecord>();
  /** Deployments hibernated before this run (id -> since): restored asleep. */
  #asleep: ReadonlyMap<string, string> = new Map();
  /** Stored deployments that failed to start here: a deploy of the id may replace them. */
  readonly #unstarted = new Set<string>();
  #shareTimer: NodeJS.Timeout | null = null;
  #shareTicks = 0;
  /**
   * Every variable a deployment names as its credential (auth.env), withheld from every
   * model server. Only grows: a key once named stays out of servers started later.
   */
  readonly #credentialVars = new Set<string>();
  /** A tick still waiting for Redis when the next is due: that one is skipped. */
  #shareTicking = false;
  /** The gateway is stopping (stopAll): no server starts any more, whoever asks (an admin call in flight, a wake). */
  #closed = false;
  /** The last tick could not reach Redis (logged once until it can again). */
  #shareUnreachable = false;

  constructor(options: ManagerOptions) {
    this.#o = options;
    for (const spec of options.config.deployments) this.#noteCredential(spec);
    if (options.sharing !== undefined) {
      this.#shareTimer = setInterval(() => void this.#shareTick(), SHARE_POLL_MS);
      this.#shareTimer.unref();
    }
  }

  /** A deployment as the admin API shows it, with its replicas' breaker states. */
  view(d: Deployment): Record<string, unknown> {
    return d.view(this.#o.breakerState, this.#o.replicaLoad);
  }

  get(id: string): Deployment | undefined {
    return this.#deployments.get(id);
  }

  list(): Deployment[] {
    return [...this.#deployments.values()];
  }

  /** The deployments of each model, in list order, from one pass (a route table asks for every model's). */
  byModel(): Map<string, Deployment[]> {
    const out = new Map<string, Deployment[]>();
    for (const d of this.#deployments.values()) {
      const same = out.get(d.spec.model);
      if (same === undefined) out.set(d.spec.model, [d]);
      else same.push(d);
    }
    return out;
  }

  routable(): RoutableDeployment[] {
    const maxBody = this.#o.config.limits.max_body_bytes;
    return this.list().map((d) => ({
      id: d.id, model: d.spec.model, version: d.spec.version, slot: d.slot, upstream: d.upstream, policies: d.policies, maxBodyBytes: maxBody,
      routable: d.routable, credential: upstreamCredential(d.spec.auth), fallbacks: d.spec.fallbacks,
      holds: d.holds, hibernated: d.state === 'hibernated', wakeFailures: d.wakeFailures, wakeError: d.wakeError,
      failure: d.state === 'failed' ? d.failure : null, countsArrivals: d.spec.scale.min_replicas === 0, uuidRequestIds: d.spec.runtime === 'llamacpp', cost: d.spec.cost,
      servedModel: servedModel(d), servedModelOnPaths: servedModelOnPaths(d.spec), created: Math.floor(Date.parse(d.createdAt) / 1000),
      specDigest: d.specDigest,
      // Hibernating: no new request may reach a replica that is about to stop.
      replicas: d.state === 'hibernated' ? [] : d.replicas.map((r): RoutableReplica => ({
        id: r.id, host: r.host, port: r.port, basePath: r.basePath, query: r.query, tls: r.tls, slot: r.slot, weight: r.weight, priority: r.priority, cost: r.cost, ready: r.ready && !r.retiring,
      })),
    }));
  }

  /**
   * Brings back what should run: config deployments, then those persisted from the admin
   * API. Servers a previous run left behind are adopted when healthy, else stopped; any
   * left over that no deployment claims are stopped too.
   */
  async restore(): Promise<void> {
    for (const r of await this.#o.records.load()) this.#leftovers.set(r.replica, r);
    this.#refuseLiveOwner();
    this.#asleep = (await this.#o.hibernation?.load()) ?? new Map();
    // Read before the config's servers start: a stored deployment's key must not reach them.
    // Entries this version cannot read were said by the store: nothing to start for them.
    const { deployments: stored, unreadable } = await this.#o.store.load();
    for (const desired of stored) this.#noteCredential(desired.spec);
    for (const spec of this.#o.config.deployments) {
      try {
        await this.deploy(spec, 'config');
      } catch (err) {
        // It stops the start: the message names the deployment, not only what went wrong ("no free port left").
        if (!(err instanceof SluiceError) || err.message.includes(deploymentId(spec.model, spec.version))) throw err;
        throw new SluiceError(err.code, `deployment ${deploymentId(spec.model, spec.version)} (config file): ${err.message}`, err.details, { cause: err });
      }
    }
    for (const desired of stored) {
      const id = deploymentId(desired.spec.model, desired.spec.version);
      const existing = this.#deployments.get(id);
      if (existing !== undefined) {
        this.#noteShadowed(existing, desired.created_at);
        continue;
      }
      try {
        await this.#deploy(desired.spec, 'api', desired.created_at, true, true);
      } catch (err) {
        this.#o.logger.error({ deployment: id, err }, 'could not restore deployment: it is listed as failed');
      }
    }
    for (const r of this.#leftovers.values()) await this.#stopLeftover(r, 'stopping a server left by a previous run that no deployment claims');
    this.#leftovers.clear();
    await this.#forgetGone(new Set(unreadable));
  }

  /**
   * Deployments that left the desired state while no gateway ran (dropped from the config
   * file, or undeployed by a run killed before its drain ended) leave nothing behind, as an
   * undeploy does (#retire): a deployment made later under the same id is a new one, not
   * asleep since the old one's hibernation (its hibernated hours counted from then), and
   * their servers' log files and temp dirs do not stay in the state directory for good.
   * One the store holds but this version cannot read is still desired.
   */
  async #forgetGone(unreadable: ReadonlySet<string>): Promise<void> {
    const desired = (id: string): boolean => this.#deployments.has(id) || unreadable.has(id);
    for (const id of this.#o.hibernation?.ids() ?? []) {
      if (desired(id)) continue;
      await this.#o.hibernation?.delete(id).catch((err: unknown) => this.#o.logger.warn({ deployment: id, err }, 'could not drop the hibernation record of a deployment no longer desired'));
    }
    const kept = new Set([...this.#deployments.keys(), ...unreadable].map(replicaFileName));
    await removeOtherLogs(this.#logDir, kept).catch((err: unknown) => this.#o.logger.warn({ err }, 'could not remove the log files of deployments no longer desired'));
    // Their servers' TMPDIRs too (#stopReplica removes a stopped server's; a leftover's stays):
    // `mlflow models serve` leaves a copy of its model there on every start.
    const tmp = join(this.#o.config.state_dir, 'tmp');
    for (const name of await readdir(tmp).catch(() => [] as string[])) {
      const m = /^(.+)_\d+$/.exec(name);
      if (m === null || kept.has(m[1]!)) continue;
      await rm(join(tmp, name), { recursive: true, force: true }).catch((err: unknown) => this.#o.logger.warn({ dir: join(tmp, name), err }, 'could not remove the temp dir of a deployment no longer desired'));
    }
  }

  /**
   * A recorded server whose parent is a live gateway is no leftover of a killed run (whose
   * servers belong to init by now, or to the subreaper this process runs under): that
   * gateway still runs it, an older sluice that takes no state_dir lock. Adopting or
   * stopping its servers would take them from under it, so the start stops here, before
   * either.
   */
  #refuseLiveOwner(): void {
    for (const r of this.#leftovers.values()) {
      if (recordedProcess(r.pid, r.started) !== 'ours') continue;
      const parent = readStatSync(r.pid)?.ppid;
      if (parent === undefined || parent === 1 || parent === process.ppid || !isGateway(parent)) continue;
      throw new SluiceError('SLUICE_ERR_CONFIG', `state_dir ${this.#o.config.state_dir} is in use by another gateway (pid ${parent}, which runs the model server of ${r.replica}): give each gateway its own state_dir (config state_dir or SLUICE_STATE_DIR), or stop that one first`, { field: 'state_dir' });
    }
  }

  /**
   * Brings this instance in line with a desired-state store that other instances share
   * (Redis): deploys what appeared there, undeploys what was removed. Only deployments
   * already seen in the store are removed, so one being deployed here right now is safe.
   */
  async reconcile(graceMs: number): Promise<void> {
    const { deployments: desired, unreadable } = await this.#o.store.load();
    // One this version cannot read (stored by another version) is not removed: whatever of
    // it runs here goes on, and nothing is started for it.
    const wanted = new Set<string>(unreadable);
    for (const entry of desired) {
      const id = deploymentId(entry.spec.model, entry.spec.version);
      wanted.add(id);
      const existing = this.#deployments.get(id);
      if (existing !== undefined) {
        // Undeployed and deployed anew through another instance between two reads: the
        // stored one, not this one, is what should run.
        const remade = existing.source === 'api' && existing.persisted && existing.createdAt !== entry.created_at;
        if (!remade) {
          existing.persisted = true;
          this.#noteShadowed(existing, entry.created_at);
          continue;
        }
        this.#o.logger.info({ deployment: id, created_at: entry.created_at }, 'made anew in the shared desired state: replaced');
        if (!(await this.#retire(existing, graceMs))) continue;
      }
      try {
        await this.#deploy(entry.spec, 'api', entry.created_at, true);
        this.#unstarted.delete(id);
        this.#o.logger.info({ deployment: id }, 'deployed from the shared desired state');
      } catch (err) {
        this.#unstarted.add(id);
        this.#o.logger.error({ deployment: id, err }, 'could not deploy from the shared desired state');
      }
    }
    for (const id of this.#unstarted) if (!wanted.has(id)) this.#unstarted.delete(id);
    for (const d of this.list()) {
      if (d.source === 'config' && !wanted.has(d.id)) d.shadows = null;
      if (d.source === 'api' && d.persisted && !wanted.has(d.id) && d.state !== 'draining') {
        this.#o.logger.info({ deployment: d.id }, 'undeployed: removed from the shared desired state');
        // Not removed from the store again: the instance that undeployed it did, and it may
        // have been deployed anew since this read.
        await this.#retire(d, graceMs);
      }
    }
  }

  /**
   * The shared store lost its data (StateLostError): this instance's API deployments are
   * stored again, each only if absent, so that instances doing this at once store each once.
   * Returns how many this instance stored.
   */
  async storeAgain(): Promise<number> {
    let stored = 0;
    for (const d of this.list()) {
      if (d.source === 'api' && d.persisted && d.state !== 'draining' && await this.#o.store.put({ spec: d.spec, created_at: d.createdAt }, false)) stored++;
    }
    return stored;
  }

  #noteCredential(spec: DeploymentConfig): void {
    if (spec.auth !== undefined) this.#credentialVars.add(spec.auth.env);
  }

  /** A stored API deployment has the id of config deployment `d`: the config file wins, visibly. */
  #noteShadowed(d: Deployment, createdAt: string): void {
    if (d.source !== 'config' || d.shadows?.created_at === createdAt) return;
    d.shadows = { source: 'api', created_at: createdAt };
    this.#o.logger.warn({ deployment: d.id, stored_created_at: createdAt },
      'a deployment made through the admin API has the id of one in the config file: the config file\'s is used; the stored one is kept and returns when the config file no longer has this id');
  }

  /**
   * Registers the deployment and starts its replicas; resolves once all have been launched.
   * One from the admin API is stored first: a store that cannot be written (Redis away)
   * refuses the deploy before anything starts.
   */
  async deploy(spec: DeploymentConfig, source: DeploymentSource = 'api'): Promise<Deployment> {
    const existing = this.#deployments.get(deploymentId(spec.model, spec.version));
    // Undeployed through another instance since this one last read the store (its next
    // read would stop it): stopped now, so that undeploying and deploying anew through
    // two instances behind a load balancer is not a conflict.
    if (existing !== undefined && source === 'api' && await this.#removedElsewhere(existing)) {
      this.#o.logger.info({ deployment: existing.id }, 'undeployed through another instance: stopped here, to deploy it anew');
      await this.#retire(existing, this.#o.config.shutdown.grace_ms);
    }
    const d = await this.#deploy(spec, source, new Date().toISOString(), false);
    // An operator's change is in the log as a key's or a weight's is (`API key added`,
    // `traffic changed`); the config file's are in `ready`. Never the spec itself: its env may hold secrets.
    if (source === 'api') this.#o.logger.info({ deployment: d.id, runtime: spec.runtime, replicas: spec.replicas }, 'deployed through the admin API');
    return d;
  }

  /** `d` was read from (or stored to) the shared desired state, which no longer has it. */
  async #removedElsewhere(d: Deployment): Promise<boolean> {
    if (d.source !== 'api' || !d.persisted || d.state === 'draining' || this.#o.store.kind !== 'redis') return false;
    const { deployments, unreadable } = await this.#o.store.load();
    return !unreadable.includes(d.id) && !deployments.some((e) => deploymentId(e.spec.model, e.spec.version) === d.id);
  }

  /**
   * `stored`: read from the desired state (a restore, a reconcile), not to be written again.
   * `keepFailed`: one whose servers cannot start stays, `failed` with the reason, rather
   * than being dropped: a restore's deployment that vanished could not even be undeployed.
   */
  async #deploy(spec: DeploymentConfig, source: DeploymentSource, createdAt: string, stored: boolean, keepFailed = false): Promise<Deployment> {
    const id = deploymentId(spec.model, spec.version);
    const known = this.#deployments.get(id);
    if (known !== undefined) {
      throw new SluiceError('SLUICE_ERR_CONFLICT', known.state === 'draining' ? `deployment ${id} is being undeployed: deploy it again once it has stopped` : `deployment ${id} already exists`);
    }
    this.#noteCredential(spec);
    const slot = this.#o.deploymentSlots.acquire();
    this.#o.onDeploymentSlot?.(slot);
    const d = new Deployment(spec, this.#o.config, source, createdAt, slot);
    // Registered (pending, nothing to route to) while it is stored: a second deploy of the id is a conflict.
    this.#deployments.set(id, d);
    const write = source === 'api' && !stored;
    try {
      // Its rate-limit buckets (and those of the keys whose scope takes it in) must fit before it is stored.
      if (write) this.#o.fits?.();
      // A stored one that cannot start here may be replaced: it is the way to mend it.
      if (write && !(await this.#o.store.put({ spec, created_at: createdAt }, this.#unstarted.has(id)))) {
        throw new SluiceError('SLUICE_ERR_CONFLICT', `deployment ${id} already exists (made through another instance)`);
      }
      if (write) this.#unstarted.delete(id);
    } catch (err) {
      this.#deployments.delete(id);
      this.#o.deploymentSlots.release(slot);
      // A table published meanwhile may hold requests for it.
      this.#o.onChange();
      throw err;
    }
    // Asleep when it was made: by its idle timeout, or by hand (whatever its min_replicas).
    const since = this.#asleep.get(id);
    d.state = since === undefined ? 'starting' : 'hibernated';
    d.hibernatedSince = since ?? null;
    // Its hibernated hours before this run count in its costs too.
    d.pastHibernationMs = this.#o.hibernation?.pastMs(id) ?? 0;
    try {
      if (since === undefined) await this.#startOrBorrow(d);
    } catch (err) {
      // Nothing half-registered: stop what started, free ports, forget the deployment.
      await this.#stopReplicas(d);
      // One this instance cannot run as specified stays listed, failed and saying why, even
      // when read by a reconcile: dropped, it would be deployed again at every read.
      if (keepFailed || (err instanceof SluiceError && err.code === 'SLUICE_ERR_CONFIG')) {
        d.replicas.length = 0;
        d.state = 'failed';
        d.lastError = err instanceof Error ? err.message : String(err);
        d.persisted = true;
        this.#o.onChange();
        throw err;
      }
      this.#deployments.delete(id);
      this.#o.deploymentSlots.release(slot);
      if (write) await this.#unstore(d);
      this.#o.onChange();
      throw err;
    }
    d.persisted = source === 'api';
    this.#o.onChange();
    return d;
  }

  /** A deploy that could not start takes back what it stored; failing that, it stays desired, and the next reconcile or start tries it again. */
  async #unstore(d: Deployment): Promise<void> {
    await this.#o.store.remove(d.id).catch((err: unknown) => this.#o.logger.error({ deployment: d.id, err }, 'could not remove a deployment that failed to start from the desired state: it is tried again'));
  }

  /**
   * Starts its servers, or, when another instance on this host already runs them
   * (ReplicaSharing), routes to those: a shared deployment's servers start once per host.
   */
  async #startOrBorrow(d: Deployment): Promise<void> {
    // Checked again on this instance: a spec read from the store was checked where it was
    // made, and what held there may not here. A credential variable this process lacks
    // (another instance on the Redis, a restart without it) would send its requests
    // without their key; a name refused since it was stored (readyz) would take a probe.
    const problem = deploymentProblem(d.spec);
    if (problem !== null) throw new SluiceError('SLUICE_ERR_CONFIG', `${problem.field}: ${problem.reason} (on this instance)`, { field: problem.field });
    const sharing = this.#o.sharing;
    if (sharing === undefined || d.spec.scale.min_replicas !== 0 || d.spec.runtime === 'remote') return this.#startReplicas(d);
    // Redis out of reach: this instance runs its own servers rather than hold requests.
    const owns = await sharing.claim(d.id).catch((err: unknown) => {
      this.#o.logger.warn({ deployment: d.id, err }, 'cannot reach the shared state to share servers: starting this instance\'s own');
      return true;
    });
    if (owns) return this.#startOwned(d);
    d.share = 'borrower';
    this.#o.logger.info({ deployment: d.id }, 'another instance on this host runs its servers: routing to them');
    await this.#followShared(d);
  }

  /**
   * Starts the servers of a deployment whose lease this instance holds, published before
   * (borrowers then wait for them rather than take the lease) and once launched.
   */
  async #startOwned(d: Deployment): Promise<void> {
    d.share = 'owner';
    d.borrowedFrom = null;
    await this.#publishShared(d);
    await this.#startReplicas(d);
    await this.#publishShared(d);
  }

  /** Owners renew their lease and record, borrowers follow theirs. */
  async #shareTick(): Promise<void> {
    if (this.#shareTicking) return;
    this.#shareTicking = true;
    try {
      await this.#shareTurn();
    } finally {
      this.#shareTicking = false;
    }
  }

  async #shareTurn(): Promise<void> {
    const sharing = this.#o.sharing!;
    const renew = ++this.#shareTicks % Math.round(OWNER_RENEW_MS / SHARE_POLL_MS) === 0;
    for (const d of this.list()) {
      try {
        if (d.share === 'borrower') await this.#followShared(d);
        if (d.share !== 'owner' || d.hibernating) continue;
        d.sharedLoad = (await sharing.activity(d.id)).load;
        if (!renew) continue;
        if (await sharing.claim(d.id)) await this.#publishShared(d);
        else this.#yieldServers(d);
      } catch (err) {
        // Said once per outage, not every second: borrowers keep the servers they last saw.
        if (!this.#shareUnreachable) this.#o.logger.warn({ deployment: d.id, err }, 'cannot reach the shared state to share servers: routing to the servers last seen');
        this.#shareUnreachable = true;
        return;
      }
    }
    if (this.#shareUnreachable) this.#o.logger.info({}, 'the shared state answers again: sharing servers');
    this.#shareUnreachable = false;
  }

  /**
   * Another instance holds the lease of the servers this one runs: the shared state was out
   * of reach for longer than the lease, or came back without its data, and that instance
   * started its own meanwhile. Left alone, both sets would run for good; this one's stop as
   * a hibernation stops them (requests in flight finish, new ones wait), and the next
   * request wakes the deployment here as a borrower of the other's.
   */
  #yieldServers(d: Deployment): void {
    this.#o.logger.warn({ deployment: d.id }, 'another instance took the lease of the servers this one runs: stopping them, to route to that one\'s');
    this.hibernate(d.id, 'another instance of this host runs its servers', this.#o.config.shutdown.grace_ms).catch((err: unknown) => {
      this.#o.logger.warn({ deployment: d.id, err }, 'could not stop the servers another instance now runs: tried again at the next renewal');
    });
  }

  /** An owner's servers as other instances route to them. */
  async #publishShared(d: Deployment): Promise<void> {
    if (d.share !== 'owner') return;
    const servers = d.replicas.filter((r) => !r.retiring && r.port !== 0).map((r) => (r.state === 'failed' ? { port: r.port, ready: false, failed: true } : { port: r.port, ready: r.ready }));
    await this.#o.sharing!.publish(d.id, servers, d.state === 'failed' ? d.failure : null)
      .catch((err: unknown) => this.#o.logger.warn({ deployment: d.id, err }, 'cannot publish the servers this instance runs for others'));
  }

  /**
   * Stops `d`'s servers (or, for a borrower, its routes to another instance's). An owner's
   * record goes first, SHARE_SETTLE_MS before the servers stop, so that borrowers route
   * elsewhere by then; its lease goes once they have stopped, so that no other instance
   * starts servers while these still run. `queue: 'served'` (an undeploy): the requests
   * waiting for one of its replicas are served before they stop, as those in flight are.
   */
  async #stopServers(d: Deployment, graceMs: number, queue: 'served' | 'left' = 'left'): Promise<void> {
    d.stops++;
    // A start under way finishes first, so that its server is among those stopped below.
    await Promise.allSettled([...d.starting]);
    const owned = d.share === 'owner';
    const sharing = this.#o.sharing;
    const unreachable = (err: unknown): void => this.#o.logger.warn({ deployment: d.id, err }, 'cannot reach the shared state to stop sharing servers');
    if (owned) {
      d.share = null;
      await sharing!.unpublish(d.id).catch(unreachable);
      await new Promise((r) => setTimeout(r, SHARE_SETTLE_MS));
    }
    await this.#drain(d.replicas, graceMs, queue === 'served' ? d.slot : null);
    await this.#stopReplicas(d);
    if (owned) await sharing!.release(d.id).catch(unreachable);
  }

  /**
   * A borrower's replicas follow the owner's record: its servers are added, updated and
   * removed. Without a record, one still waiting for servers takes the lease when it comes
   * free (the owner stopped before it started anything); one that had servers goes back to
   * sleep, as the owner did (or stopped), and its next request wakes it again.
   */
  async #followShared(d: Deployment): Promise<void> {
    if (d.following) return;
    d.following = true;
    try {
      const sharing = this.#o.sharing!;
      const record = await sharing.servers(d.id);
      if (d.share !== 'borrower' || this.#deployments.get(d.id) !== d) return;
      if (record === null && d.replicas.length === 0) {
        if (await sharing.claim(d.id)) await this.#takeOver(d);
        return;
      }
      if (record === null) {
        await this.#sleepBorrowed(d);
        return;
      }
      if (this.#adoptShared(d, record)) this.#o.onChange();
    } finally {
      d.following = false;
    }
  }

  /** A borrower waiting for servers got the lease: it starts them (a failure shows as a wake's would). */
  async #takeOver(d: Deployment): Promise<void> {
    this.#o.logger.info({ deployment: d.id }, 'no instance runs its servers any more: starting them here');
    try {
      await this.#startOwned(d);
    } catch (err) {
      d.lastError = err instanceof Error ? err.message : String(err);
      this.#o.logger.error({ deployment: d.id, err }, 'starting the shared servers failed');
    }
    this.#o.onChange();
  }

  /** Makes `d`'s replicas the owner's servers; true when routing changed. */
  #adoptShared(d: Deployment, record: SharedServers): boolean {
    let changed = d.borrowedFrom !== record.owner;
    d.borrowedFrom = record.owner;
    for (const r of [...d.replicas]) {
      if (record.servers.some((s) => s.port === r.port)) continue;
      this.#o.slots.release(r.slot);
      d.replicas.splice(d.replicas.indexOf(r), 1);
      changed = true;
    }
    for (const s of record.servers) {
      let r = d.replicas.find((x) => x.port === s.port);
      if (r === undefined) {
        r = new Replica(`${d.id}/${d.nextReplicaIndex++}`, this.#o.slots.acquire());
        this.#o.onReplicaSlot?.(r.slot);
        r.borrowed = true;
        r.port = s.port;
        r.url = `http://${r.host}:${s.port}`;
        d.replicas.push(r);
        changed = true;
      }
      // A failed one is failed here too: its requests are refused at once, not held for it.
      const state = s.ready ? 'ready' : s.failed === true ? 'failed' : 'starting';
      if (r.state !== state) {
        r.state = state;
        changed = true;
      }
    }
    const failure = record.failure ?? null;
    if (d.failure !== failure) {
      d.failure = failure;
      if (failure !== null) d.lastError = `${failure} (on instance ${record.owner}, which runs its servers)`;
      changed = true;
    }
    if (changed && d.wakeStartedAt !== null && d.replicas.some((r) => r.ready)) {
      this.#o.onColdStart?.(d.id, (performance.now() - d.wakeStartedAt) / 1000);
      d.wakeStartedAt = null;
    }
    return changed;
  }

  /** The owner stopped its servers: this instance's route to them goes too, and the deployment sleeps here as well. */
  async #sleepBorrowed(d: Deployment): Promise<void> {
    const n = d.replicas.length;
    for (const r of d.replicas) this.#o.slots.release(r.slot);
    d.replicas.length = 0;
    d.share = null;
    d.borrowedFrom = null;
    d.state = 'hibernated';
    d.hibernatedSince = new Date().toISOString();
    d.event('hibernate', n, 0, 'the instance that ran its servers stopped them');
    this.#o.logger.info({ deployment: d.id }, 'hibernated: the instance that ran its servers stopped them');
    this.#o.onChange();
    await this.#o.hibernation?.set(d.id, d.hibernatedSince);
  }

  /** When another instance last served owner `d` (ms since the epoch); 0: never; null: the shared state is out of reach. */
  async sharedLastActive(d: Deployment): Promise<number | null> {
    return this.#o.sharing === undefined ? 0 : (await this.#o.sharing.activity(d.id).catch(() => null))?.lastActive ?? null;
  }

  /** A borrower served `d` just now and has `load` requests in flight or waiting: its owner must not hibernate it, and scales on it. */
  touchShared(d: Deployment, load: number): void {
    if (d.share === 'borrower') this.#o.sharing!.touch(d.id, load).catch(() => undefined);
  }

  async #startReplicas(d: Deployment): Promise<void> {
    const spec = d.spec;
    const count = spec.runtime === 'remote' ? spec.urls.length : spec.replicas;
    const stops = d.stops;
    d.nextReplicaIndex = count;
    for (let i = 0; i < count; i++) if (!(await this.#launch(d, i, stops))) return;
  }

  /**
   * Starts replica `index` of `d`, unless its servers were stopped since `stops` was read (an
   * undeploy or a hibernation that came while earlier replicas started) or the gateway is
   * stopping: false then. The start is in `d.starting` meanwhile, for #stopServers to wait on.
   */
  async #launch(d: Deployment, index: number, stops: number): Promise<boolean> {
    if (this.#closed || d.stops !== stops) return false;
    const started = this.#startReplica(d, index);
    d.starting.add(started);
    try {
      await started;
    } finally {
      d.starting.delete(started);
    }
    return true;
  }

  /**
   * Autoscaling: starts replicas up to `target`, or retires the newest down to it (drained
   * first, in the background: no request fails for a scale-down, a long stream included). A
   * replica that cannot start (no free port) leaves nothing behind and stops the scale-up
   * there, with an event.
   */
  async scaleTo(id: string, target: number, why: string): Promise<void> {
    const d = this.#mustGet(id);
    if (d.scaling || d.hibernating || d.share === 'borrower' || d.state === 'hibernated' || d.state === 'draining') return;
    d.scaling = true;
    try {
      const from = d.activeReplicas;
      if (target > from) {
        let reached = from;
        let refused: string | null = null;
        const stops = d.stops;
        for (; reached < target; reached++) {
          const index = d.nextReplicaIndex++;
          try {
            if (!(await this.#launch(d, index, stops))) break;
          } catch (err) {
            const failed = d.replicas.find((r) => r.id === `${d.id}/${index}`);
            if (failed !== undefined) await this.#removeReplica(d, failed);
            refused = err instanceof Error ? err.message : String(err);
            break;
          }
        }
        if (reached > from) {
          d.event('scale_up', from, reached, why);
          this.#o.logger.info({ deployment: id, from, to: reached, why }, 'scaled up');
        }
        if (refused !== null) {
          d.event('scale_up_refused', reached, target, refused);
          this.#o.logger.warn({ deployment: id, from: reached, to: target, err: refused }, 'scale-up refused');
        }
        this.#o.onChange();
      } else if (target < from) {
        // The newest go first: the oldest have the warmest caches.
        const retiring = d.replicas.filter((r) => !r.retiring).slice(target);
        for (const r of retiring) r.retiring = true;
        this.#o.onChange();
        await this.#publishShared(d);
        d.event('scale_down', from, target, why);
        this.#o.logger.info({ deployment: id, from, to: target, why }, 'scaling down');
        // They stop once their last requests end, however long a stream runs: meanwhile the
        // deployment may scale up again (they no longer count), hibernate or be undeployed.
        void this.#retireWhenIdle(d, retiring);
      }
    } finally {
      d.scaling = false;
      await this.#publishShared(d);
    }
  }

  /** Stops the replicas a scale-down retired once their requests have ended (SCALE_DOWN_DRAIN_MAX_MS at most). */
  async #retireWhenIdle(d: Deployment, retiring: readonly Replica[]): Promise<void> {
    try {
      await this.#drain(retiring, SCALE_DOWN_DRAIN_MAX_MS);
      // A hibernation, an undeploy or the gateway's stop may have stopped them meanwhile.
      if (this.#closed || this.#deployments.get(d.id) !== d) return;
      for (const r of retiring) if (d.replicas.includes(r) && !r.stopping) await this.#removeReplica(d, r);
      this.#o.onChange();
    } catch (err) {
      this.#o.logger.error({ deployment: d.id, err }, 'could not stop the replicas a scale-down retired');
    }
  }

  /**
   * Waits until no request is in flight on `replicas` (across workers), or `graceMs` has
   * passed. The in-flight counts mean nothing before every worker has the route table
   * without these replicas: one that reads it late could pick them after the count was 0.
   */
  /** Waits (up to graceMs) for the replicas' requests in flight, and those waiting in the queue of `queueSlot`'s deployment. */
  async #drain(replicas: readonly Replica[], graceMs: number, queueSlot: number | null = null): Promise<void> {
    const deadline = Date.now() + graceMs;
    if (this.#o.routesApplied !== undefined) await waitAtMost(this.#o.routesApplied(), graceMs);
    const queued = (): boolean => queueSlot !== null && (this.#o.queued?.(queueSlot) ?? 0) > 0;
    while (Date.now() < deadline && (queued() || replicas.some((r) => this.#o.slots.inflight(r.slot) > 0))) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async #removeReplica(d: Deployment, r: Replica): Promise<void> {
    await this.#stopReplica(d, r);
    const i = d.replicas.indexOf(r);
    if (i >= 0) d.replicas.splice(i, 1);
    // Its id is not used again (nextReplicaIndex): its output files would stay for good.
    if (r.process !== null) await removeReplicaLogs(this.#logDir, r.id).catch((err: unknown) => this.#o.logger.warn({ deployment: d.id, replica: r.id, err }, 'could not remove a removed replica\'s log files'));
  }

  get #logDir(): string {
    return join(this.#o.config.state_dir, 'logs');
  }

  /**
   * Stops an idle deployment's replicas and frees their ports: requests for it are held from
   * now on, and the first one wakes it (wake). Requests in flight finish first (up to
   * `graceMs`). Remembered across restarts.
   */
  async hibernate(id: string, why: string, graceMs: number): Promise<Deployment> {
    const d = this.#mustGet(id);
    if (d.spec.runtime === 'remote') throw new SluiceError('SLUICE_ERR_CONFLICT', `${id} is remote: sluice does not run its servers, so it cannot hibernate them`);
    if (d.state === 'hibernated' || d.state === 'draining') return d;
    if (d.scaling) throw new SluiceError('SLUICE_ERR_CONFLICT', `${id} is scaling: hibernate it once that is done`);
    if (d.share === 'borrower') {
      throw new SluiceError('SLUICE_ERR_CONFLICT', `${id}'s servers run on instance ${d.borrowedFrom ?? '(starting)'} of this host: hibernate it there`);
    }
    d.event('hibernate', d.activeReplicas, 0, why);
    d.state = 'hibernated';
    d.hibernating = true;
    d.hibernatedSince = new Date().toISOString();
    this.#o.onChange();
    this.#o.logger.info({ deployment: id, why }, 'hibernating');
    try {
      // Idle on every instance that routes to them, as far as their reports tell: they still
      // get the time to look again before the servers stop.
      await this.#stopServers(d, graceMs);
      d.replicas.length = 0;
      // Undeployed while its servers stopped: no record, or a later deployment of this id
      // would start hibernated, as if hibernated since before it was made.
      if (this.#deployments.get(id) !== d) return d;
      // Not recorded (a full disk): asleep all the same, and a restart starts it awake.
      await this.#o.hibernation?.set(id, d.hibernatedSince).catch((err: unknown) => this.#o.logger.error({ deployment: id, err }, 'could not record the hibernation: a restart will start its servers'));
    } finally {
      // Whatever failed, a wake must be able to start it again.
      d.hibernating = false;
    }
    this.#o.logger.info({ deployment: id }, 'hibernated');
    if (d.wakeAfterHibernation) {
      d.wakeAfterHibernation = false;
      await this.wake(id, 'a request came while it was hibernating');
    }
    this.#o.onChange();
    return d;
  }

  /**
   * Starts a hibernated deployment's replicas again; once per hibernation, however many ask.
   * A failed one is started anew too (through a hibernation, which clears its replicas): the
   * admin's way to retry it once its cause is mended, without an undeploy.
   */
  async wake(id: string, why: string): Promise<Deployment> {
    let d = this.#mustGet(id);
    if (d.state === 'failed' && d.spec.runtime !== 'remote') d = await this.hibernate(id, `${why}: it had failed, so it starts anew`, 0);
    if (d.state !== 'hibernated') return d;
    if (d.hibernating) {
      d.wakeAfterHibernation = true;
      return d;
    }
    // Set before the first await: a second request to wake finds it starting.
    d.state = 'starting';
    d.pastHibernationMs = d.hibernatedMs(Date.now());
    d.hibernatedSince = null;
    d.wakeStartedAt = performance.now();
    d.event('wake', 0, d.spec.replicas, why);
    this.#o.logger.info({ deployment: id, why }, 'waking');
    try {
      await this.#o.hibernation?.woke(id, d.pastHibernationMs);
      await this.#startOrBorrow(d);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      d.lastError = why;
      this.#o.logger.error({ deployment: id, err }, 'wake failed');
      // Asleep again with nothing half-made (a replica without a port would hold requests
      // for good): the requests held for this wake are answered, and the next one tries again.
      await this.#stopReplicas(d);
      d.replicas.length = 0;
      d.wakeStartedAt = null;
      d.state = 'hibernated';
      d.hibernatedSince = new Date().toISOString();
      d.wakeFailures++;
      d.wakeError = why;
      d.event('wake_failed', 0, 0, why);
      await this.#o.hibernation?.set(id, d.hibernatedSince).catch((e: unknown) => this.#o.logger.error({ deployment: id, err: e }, 'could not record the hibernation'));
    }
    this.#o.onChange();
    return d;
  }

  #mustGet(id: string): Deployment {
    const d = this.#deployments.get(id);
    if (d === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment ${id}`);
    return d;
  }

  async #startReplica(d: Deployment, index: number): Promise<void> {
    const spec = d.spec;
    const replica = new Replica(`${d.id}/${index}`, this.#o.slots.acquire());
    this.#o.onReplicaSlot?.(replica.slot);
    d.replicas.push(replica);
    if (spec.runtime === 'remote') {
      const endpoint = spec.urls[index]!;
      const url = new URL(endpoint.url);
      ({ host: replica.host, port: replica.port, tls: replica.tls } = endpointOf(url));
      replica.basePath = url.pathname.replace(/\/+$/, '');
      replica.query = url.search.slice(1);
      replica.url = endpoint.url;
      replica.weight = endpoint.weight;
      replica.priority = endpoint.priority;
      replica.cost = endpoint.cost;
      this.#watchRemote(d, replica);
      this.#scrapeLoad(d, replica);
      return;
    }
    const leftover = this.#leftovers.get(replica.id);
    this.#leftovers.delete(replica.id);
    let port = leftover !== undefined && this.#reservePort(leftover.port) ? leftover.port : await this.#o.ports.acquire();
    replica.ownedPort = port;
    replica.port = port;
    mkdirSync(replica.tmpDir(this.#o.config.state_dir), { recursive: true });
    let launch = this.#processLaunch(spec, replica, port);
    // A server left by a previous run is adopted when it still runs on the port it was
    // given and was started with what the deployment says now; otherwise its group is
    // stopped, so that it can neither hold the port, nor serve twice, nor serve an old spec.
    // A record without a fingerprint (an older sluice's) cannot tell: its server is restarted,
    // once, rather than trusted to match.
    let proc: ReplicaProcess | null = null;
    if (leftover !== undefined) {
      const same = leftover.fingerprint === launch.fingerprint;
      const ours = same && leftover.port === port && recordedProcess(leftover.pid, leftover.started) === 'ours';
      proc = ours ? ReplicaProcess.adopt({ ...launch.options, pid: leftover.pid, pgid: leftover.pgid }) : null;
      if (proc === null) {
        await this.#stopLeftover(leftover, same ? 'stopping a server left by a previous run that cannot be adopted'
          : leftover.fingerprint === undefined ? 'stopping a server left by an older sluice, which did not record what it was started with'
            : 'stopping a server left by a previous run: its deployment now starts another (command, args, env or model changed)');
        // While no gateway held the recorded port, another program may have taken it: a
        // server started there would exit (address in use) while that program answered its
        // readiness checks. Such a port is skipped, as the allocator skips it for a new replica.
        if (port === leftover.port && !(await this.#o.ports.bindable(port))) {
          this.#o.ports.release(port);
          replica.ownedPort = null;
          port = await this.#o.ports.acquire();
          replica.ownedPort = port;
          replica.port = port;
          launch = this.#processLaunch(spec, replica, port);
        }
      } else {
        this.#o.logger.info({ replica: replica.id, server_pid: leftover.pid, port }, 'adopted a running server from a previous gateway run');
      }
    }
    const { plan, options, fingerprint } = launch;
    replica.url = plan.url;
    this.#scrapeLoad(d, replica);
    const adopted = proc !== null;
    proc ??= new ReplicaProcess(options);
    replica.process = proc;
    let recordedPid: number | undefined = adopted ? leftover!.pid : undefined;
    let recorded: Promise<void> = Promise.resolve();
    // The pid is recorded as soon as it is known (each spawn, restarts included), so that a
    // gateway killed a moment later still finds the server on its next start.
    const record = (): Promise<void> => {
      const { pid, pgid } = replica.process!;
      if (pid === undefined || pgid === undefined || pid === recordedPid) return recorded;
      recordedPid = pid;
      recorded = this.#o.records.set({ replica: replica.id, port, pid, pgid, started: startTicksOf(pid), fingerprint });
      return recorded;
    };
    // From an event: a record that cannot be written (a full disk) is logged, and must not end
    // the gateway as an unhandled rejection would.
    const recordOrLog = (): void => {
      record().catch((err: unknown) => this.#o.logger.error({ deployment: d.id, replica: replica.id, server_pid: replica.process?.pid, err }, 'could not record a model server\'s pid: a gateway killed now would not find it'));
    };
    proc.on('spawn', recordOrLog);
    proc.on('state', (state, info) => {
      const wasReady = replica.ready;
      replica.state = state;
      // A server restarted after a crash is a new one: the failures of the one that died
      // (its requests cut, its port refusing) must not keep it out until a probe gets
      // through, which turned every request into a 503 meanwhile (Envoy un-ejects a host
      // that passes a health check for the same reason).
      if (state === 'ready' && !wasReady && info.restarts > 0) this.#o.onReplicaSlot?.(replica.slot);
      if (state === 'failed') {
        d.lastError = info.error?.message ?? 'replica failed';
        const summary = info.error?.details?.['summary'];
        d.failure = typeof summary === 'string' ? summary : null;
        replica.failedAt ??= Date.now();
        // Its server is gone and is not started again on that port (a wake or a deploy of it
        // anew takes one afresh): the port goes back to `ports` for other deployments.
        if (replica.ownedPort !== null) this.#o.ports.release(replica.ownedPort);
        replica.ownedPort = null;
      }
      this.#o.logger.info({
        deployment: d.id, replica: replica.id, state, server_pid: info.pid, restarts: info.restarts, error: info.error?.message,
        // restarting: how the server ended and when the next one starts (undefined, left out, otherwise).
        exit_code: info.exitCode, signal: info.signal, restart_in_ms: info.delayMs,
      }, 'replica state');
      if (state !== 'stopped' && state !== 'failed') recordOrLog();
      if (state === 'ready' && plan.listsModel === true) void this.#learnReportedModel(d, replica);
      if (replica.ready && d.wakeStartedAt !== null) {
        this.#o.onColdStart?.(d.id, (performance.now() - d.wakeStartedAt) / 1000);
        d.wakeStartedAt = null;
      }
      // A failure changes no route but may complete the gateway's readiness (see /readyz).
      if (wasReady !== replica.ready || state === 'failed') {
        this.#o.onChange();
        void this.#publishShared(d);
      }
    });
    // An adopted handle is already probing; a new one must be started.
    if (!adopted) {
      void proc.start().catch((err: unknown) => {
        this.#o.logger.error({ deployment: d.id, replica: replica.id, err }, 'replica start failed');
      });
      // Answered only once the new pid is on disk: a gateway killed right after the deploy
      // call returns must find this server on its next start, not start a second one.
      await record();
    }
  }

  /** queue_aware: the replica's own load figures, into the board every worker reads. */
  #scrapeLoad(d: Deployment, replica: Replica): void {
    const board = this.#o.replicaLoad;
    const choice = d.policies.balancer;
    if (board === undefined || choice.strategy !== 'queue_aware') return;
    const credential = upstreamCredential(d.spec.auth);
    const target = {
      host: replica.host, port: replica.port, tls: replica.tls, path: withQuery(replica.basePath + choice.metrics_path, replica.query),
      headers: credential === null ? undefined : { [credential.name]: credential.value },
    };
    replica.loadScrape = new LoadScrape(target, choice.scrape_interval_ms, (load) => {
      if (load === null) board.clear(replica.slot);
      else board.set(replica.slot, load);
    });
    replica.loadScrape.start();
  }

  /** Routes a remote replica once its health checks pass (or at once when they are off). */
  #watchRemote(d: Deployment, replica: Replica): void {
    const options = resolveHealthCheck(d.spec);
    if (!options.enabled) {
      replica.state = 'ready';
      return;
    }
    // Like every routed path, the check's path is relative to the replica's URL.
    const path = options.path ?? d.spec.readiness_path;
    const credential = upstreamCredential(d.spec.auth);
    const target = {
      host: replica.host, port: replica.port, tls: replica.tls, path: path === null ? null : withQuery(replica.basePath + path, replica.query),
      headers: credential === null ? undefined : { [credential.name]: credential.value },
    };
    replica.state = 'starting';
    replica.health = new ActiveHealthCheck(target, options, (status: HealthStatus) => {
      replica.state = status === 'healthy' ? 'ready' : status;
      const view = replica.health!.view();
      if (status === 'healthy') {
        this.#o.logger.info({ deployment: d.id, replica: replica.id, check: view.check, checks: view.checks }, 'replica healthy');
      } else {
        this.#o.logger.warn({ deployment: d.id, replica: replica.id, check: view.check, consecutive_failures: view.consecutive_failures, error: view.last_error }, 'replica unhealthy');
      }
      this.#o.onChange();
    });
    replica.health.start();
  }

  /** What a local replica runs on `port`, and the digest its record keeps. */
  #processLaunch(spec: DeploymentConfig, replica: Replica, port: number): { plan: ProcessPlan; options: ReplicaProcessOptions; fingerprint: string } {
    const plan = launchPlan(this.#replicaSpec(spec), { port });
    if (plan.kind !== 'process') throw new Error('unreachable: local runtime produced a remote plan');
    const options: ReplicaProcessOptions = {
      id: replica.id, argv: plan.argv, env: { ...plan.env, TMPDIR: replica.tmpDir(this.#o.config.state_dir) },
      baseEnv: serverEnvironment(this.#o.config, this.#credentialVars, spec.runtime), port, logDir: this.#logDir,
      readinessPath: spec.readiness_path ?? plan.readinessPath, startTimeoutMs: spec.start_timeout_ms,
    };
    return { plan, options, fingerprint: launchFingerprint(options) };
  }

  #reservePort(port: number): boolean {
    try {
      this.#o.ports.reserve(port);
      return true;
    } catch {
      return false;
    }
  }

  #replicaSpec(spec: DeploymentConfig): ReplicaSpec {
    const base = { model: spec.model, version: spec.version, env: spec.env };
    switch (spec.runtime) {
      case 'sim':
        return { ...base, runtime: 'sim', simArgs: spec.args };
      case 'command':
        return { ...base, runtime: 'command', command: spec.command, readinessPath: spec.readiness_path ?? '/', ...(spec.port_env === null ? {} : { portEnv: spec.port_env }) };
      case 'mlflow': {
        const mlflow = this.#o.config.mlflow;
        const trackingUri = spec.env.MLFLOW_TRACKING_URI ?? mlflow.tracking_uri;
        if (trackingUri === null || trackingUri === undefined) {
          throw new SluiceError('SLUICE_ERR_INVALID_FIELD', 'an mlflow deployment needs a tracking URI (config mlflow.tracking_uri or MLFLOW_TRACKING_URI)', { field: 'mlflow.tracking_uri' });
        }
        return { ...base, runtime: 'mlflow', trackingUri, mlflowBin: mlflow.bin ?? defaultMlflowBin() };
      }
      case 'ollama':
        return { ...base, runtime: 'ollama', ...(spec.keep_alive === null ? {} : { keepAlive: spec.keep_alive }) };
      case 'llamacpp':
        // deploymentProblem refuses a llamacpp deployment without model_path before it gets here.
        return { ...base, runtime: 'llamacpp', modelPath: spec.model_path!, python: spec.python ?? defaultLlamaPython(), serverArgs: spec.args };
      case 'remote':
        throw new Error('unreachable: remote replicas are not launched');
    }
  }

  /** Asks a ready replica's server which model it serves; a server that does not say leaves the name unknown. */
  async #learnReportedModel(d: Deployment, replica: Replica): Promise<void> {
    const name = await reportedModel(replica.url);
    if (name === null) {
      this.#o.logger.warn({ deployment: d.id, replica: replica.id }, 'the server did not list its model at GET /v1/models');
    } else if (name !== d.reportedModel) {
      d.reportedModel = name;
      this.#o.logger.info({ deployment: d.id, replica: replica.id, model: name }, 'the server reported its model');
      // The front door rewrites requests to it from the next route table on.
      if (d.spec.served_model === null) this.#o.onChange();
    }
  }

  /** Waits until the deployment is ready, failed or unhealthy (or the timeout passes). */
  waitSettled(id: string, timeoutMs: number): Promise<Deployment | undefined> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve) => {
      const tick = (): void => {
        const d = this.#deployments.get(id);
        // Hibernated (min_replicas 0, asleep when it was made) is settled too: it starts on the first request.
        if (d === undefined || d.state === 'ready' || d.state === 'failed' || d.state === 'unhealthy' || (d.state === 'hibernated' && !d.hibernating) || Date.now() > deadline) resolve(d);
        else setTimeout(tick, 50);
      };
      tick();
    });
  }

  /**
   * Drains: the route disappears for new requests at once, requests in flight finish (up to
   * `graceMs`), then the processes stop and their ports are released.
   */
  async undeploy(id: string, graceMs: number): Promise<boolean> {
    const d = this.#deployments.get(id);
    if (d === undefined || d.state === 'draining') return false;
    // Forgotten first: a store that cannot be written (Redis away) refuses the undeploy
    // before anything stops, rather than leaving it stopped here and stored for the next start.
    if (d.source === 'api') await this.#o.store.remove(d.id);
    this.#o.logger.info({ deployment: d.id, grace_ms: graceMs }, 'undeploying: draining, then stopping its servers');
    const retired = await this.#retire(d, graceMs);
    if (retired) this.#o.logger.info({ deployment: d.id }, 'undeployed');
    return retired;
  }

  /** Drains and stops `d`, which the desired state no longer has. */
  async #retire(d: Deployment, graceMs: number): Promise<boolean> {
    // Another call (a reconcile) may have begun while the store was written.
    if ((d.state as DeploymentState) === 'draining' || this.#deployments.get(d.id) !== d) return false;
    d.state = 'draining';
    this.#o.onChange();
    await this.#o.onRemoved?.(d.spec.model);
    // The requests it admitted are served, those waiting for a replica too (a hibernation
    // leaves its queue to the wake that follows; an undeploy has none).
    await this.#stopServers(d, graceMs, 'served');
    // Before the id is free again: a deployment made anew under it starts files of its own.
    if (d.spec.runtime !== 'remote') await removeDeploymentLogs(this.#logDir, d.id).catch((err: unknown) => this.#o.logger.warn({ deployment: d.id, err }, 'could not remove an undeployed deployment\'s log files'));
    await this.#o.onRetiring?.(d);
    d.state = 'stopped';
    this.#deployments.delete(d.id);
    this.#o.deploymentSlots.release(d.slot);
    await this.#o.hibernation?.delete(d.id);
    this.#o.onForgotten?.(d.id);
    this.#o.onChange();
    return true;
  }

  async #stopReplicas(d: Deployment): Promise<void> {
    await Promise.all(d.replicas.map((r) => this.#stopReplica(d, r)));
  }

  /** Stops a server a previous run left (its whole group), unless its pid now belongs to another process. */
  async #stopLeftover(r: ReplicaRecord, why: string): Promise<void> {
    if (recordedProcess(r.pid, r.started) === 'other') {
      this.#o.logger.warn({ replica: r.replica, server_pid: r.pid }, 'a server left by a previous run is gone and its pid is another process now: left alone');
    } else {
      this.#o.logger.warn({ replica: r.replica, server_pid: r.pid }, why);
      await killGroup(r.pgid, 5_000).catch(() => undefined);
    }
    await this.#o.records.delete(r.replica);
  }

  async #stopReplica(d: Deployment, r: Replica): Promise<void> {
    if (r.stopping) return;
    r.stopping = true;
    r.health?.stop();
    if (r.loadScrape !== null) {
      r.loadScrape.stop();
      this.#o.replicaLoad?.clear(r.slot);
    }
    await r.process?.stop();
    if (r.process !== null) {
      // The server is stopped: a record left behind (a full disk) names a process the next start finds gone.
      await this.#o.records.delete(r.id).catch((err: unknown) => this.#o.logger.error({ deployment: d.id, replica: r.id, err }, 'could not remove the stopped server\'s record'));
      await rm(r.tmpDir(this.#o.config.state_dir), { recursive: true, force: true }).catch(() => undefined);
    }
    if (r.ownedPort !== null) this.#o.ports.release(r.ownedPort);
    r.ownedPort = null;
    this.#o.slots.release(r.slot);
    if (r.borrowed || r.stoppedAt !== null) return;
    r.stoppedAt = Date.now();
    d.stoppedReplicaMs += r.runningMs(r.stoppedAt);
  }

  /** Gateway shutdown: stop every server; the desired state stays for the next start. */
  async stopAll(): Promise<void> {
    this.#closed = true;
    if (this.#shareTimer !== null) clearInterval(this.#shareTimer);
    this.#shareTimer = null;
    await Promise.all(this.list().map((d) => this.#stopServers(d, 0)));
    this.#deployments.clear();
  }

  logs(id: string): Array<LogLine & { replica: string }> {
    const d = this.#deployments.get(id);
    if (d === undefined) throw new SluiceError('SLUICE_ERR_NOT_FOUND', `no deployment ${id}`);
    // Each line names its replica; lines of all replicas interleave in time order.
    return d.replicas
      .flatMap((r) => (r.process?.logs() ?? []).map((l) => ({ ...l, replica: r.id })))
      .sort((a, b) => a.at - b.at);
  }
}

/** The model name the deployment's server knows (config `served_model`, or its runtime's default); null: none to rewrite to. */
/**
 * Path routes rewrite the body's model to a configured served_model, and always for
 * `ollama`: every Ollama server of a machine serves every model pulled into its ~/.ollama,
 * so a body passed on as sent would reach any of them, one whose deployment needs a key the
 * caller lacks included.
 */
function servedModelOnPaths(spec: Deployment['spec']): boolean {
  return spec.served_model !== null || spec.runtime === 'ollama';
}

function servedModel(d: Deployment): string | null {
  const spec = d.spec;
  if (spec.served_model !== null) return spec.served_model;
  switch (spec.runtime) {
    case 'sim': return simServedModel(spec.model, spec.args);
    case 'ollama': return `${spec.model}:${spec.version}`;
    case 'llamacpp': return d.reportedModel;
    default: return null;
  }
}
