import type { DeploymentConfig, LimitsConfig } from '../config/index.js';

/** What a deployment was asked to be: enough to bring it back after a restart. */
export interface DesiredDeployment {
  readonly spec: DeploymentConfig;
  readonly created_at: string;
}

/**
 * The deployments a store holds. On Redis, an entry this version cannot read (stored by
 * another version of sluice sharing it, or edited by hand) is reported by the store and
 * listed by id: it is neither started nor removed here, and one already running goes on.
 */
export interface StoredDeployments {
  readonly deployments: DesiredDeployment[];
  readonly unreadable: readonly string[];
}

/** A client API key added through the admin API: its SHA-256 digest, never the key. */
export interface StoredApiKey {
  readonly name: string;
  readonly key_sha256: string;
  readonly deployments: readonly string[];
  readonly limits: LimitsConfig;
  readonly deployment_limits: LimitsConfig;
  readonly created_at: string;
}

/** Where the processes of this gateway host run: for adoption after a crash. Host-local. */
export interface ReplicaRecord {
  readonly replica: string;
  readonly port: number;
  readonly pid: number;
  readonly pgid: number;
  /** The server's start time (clock ticks since boot), so that a reused pid is not taken for it; absent in older records. */
  readonly started?: number;
  /** Digest of what it was started with (ports/fingerprint.ts): adopted only by a deployment that would start the same; absent in older records. */
  readonly fingerprint?: string;
}

/** Requests with the same header value, or the same API key, go to the same version. */
export type StickySpec = { readonly by: 'header'; readonly name: string } | { readonly by: 'api_key' };

/** Version -> weight for a model's alias route. */
export type TrafficWeights = Readonly<Record<string, number>>;

/** One change of a model's traffic, as GET /v1/models/{model}/events shows it. */
export interface TrafficEvent {
  readonly at: string;
  readonly who: 'api' | 'config' | 'gateway' | 'rollout';
  readonly action: 'traffic' | 'promote' | 'rollback' | 'fallback' | 'version_removed' | 'config';
  readonly from: TrafficWeights | null;
  readonly to: TrafficWeights | null;
  readonly why: string;
}

// A rollout's state is part of its model's stored traffic, so that every instance shows it
// and another one can carry it on (control/rollout.ts runs it).

export interface RolloutSpec {
  readonly canary: string;
  /** Canary weights in percent, rising; the last is normally 100. */
  readonly steps: readonly number[];
  readonly interval_s: number;
  /** Fewer canary requests than this in a window: the step neither advances nor fails. */
  readonly min_requests: number;
  readonly max_error_rate: number;
  /** The stable version's own error rate plus this is tolerated too (a shared dependency failing is not the canary's fault). */
  readonly error_margin: number;
  readonly max_latency_ratio: number;
  readonly latency: 'p99_ttfb' | 'p99_total';
  readonly failed_checks: number;
}

export type RolloutStatus = 'progressing' | 'waiting for traffic' | 'promoted' | 'rolled_back' | 'aborted';

/** One version's requests in an analysis window. */
export interface WindowFigures {
  readonly requests: number;
  readonly errors: number;
  readonly error_rate: number;
  /** The chosen latency figure, seconds; null without requests. */
  readonly latency_s: number | null;
}

export interface RolloutCheck {
  readonly at: string;
  readonly step: number;
  readonly weight: number;
  readonly canary: WindowFigures;
  readonly stable: WindowFigures;
  readonly verdict: 'healthy' | 'failed' | 'waiting';
  readonly why: string;
}

export interface RolloutView {
  readonly canary: string;
  readonly stable: string;
  readonly status: RolloutStatus;
  readonly step: number;
  readonly weight: number;
  readonly failed_checks: number;
  readonly started_at: string;
  readonly finished_at: string | null;
  readonly spec: RolloutSpec;
  readonly checks: readonly RolloutCheck[];
}

/** A model's traffic as set through the admin API, with its history: followed by every instance. */
export interface StoredTraffic {
  readonly model: string;
  readonly weights: TrafficWeights | null;
  readonly sticky: StickySpec | null;
  readonly stable: string | null;
  /** The config's `traffic` entry for the model (canonical JSON, '' for none) when this was set: a changed entry wins over it. */
  readonly config_digest: string;
  readonly events: readonly TrafficEvent[];
  /** The model's last rollout, running or ended; null when it never had one. */
  readonly rollout: RolloutView | null;
  readonly updated_at: string;
}

/**
 * Changes are per deployment, never a rewrite of the whole list: several gateway
 * instances share one Redis, and one that does not know a deployment must not drop it.
 */
export interface DesiredStateStore {
  readonly kind: 'file' | 'redis';
  load(): Promise<StoredDeployments>;
  /**
   * Adds one deployment (by `<model>-<version>`); the others stay as stored. Without
   * `replace`, false (nothing written) when the store already holds that id, which another
   * instance may have stored since this one last read the store.
   */
  put(deployment: DesiredDeployment, replace: boolean): Promise<boolean>;
  /** Removes one deployment by id (`<model>-<version>`). */
  remove(id: string): Promise<void>;
  /** API keys added through the admin API, kept apart from deployments and changed one at a time too. */
  loadKeys(): Promise<StoredApiKey[]>;
  /**
   * Adds a key unless the store already holds one of its name or digest, which another
   * instance may have added since this one last read the keys: then nothing is written and
   * the clash is returned.
   */
  addKey(key: StoredApiKey): Promise<KeyClash | null>;
  removeKey(name: string): Promise<void>;
  /** Models' traffic set through the admin API, one record per model. */
  loadTraffic(): Promise<StoredTraffic[]>;
  /**
   * Stores a model's traffic. With `over` (the `updated_at` of the record the change was
   * made on), false (nothing written) when the stored record is newer: another instance
   * changed the model meanwhile.
   */
  putTraffic(traffic: StoredTraffic, over: string | null): Promise<boolean>;
  /**
   * Removes a model's traffic, unless the stored record is newer than `over` (the
   * `updated_at` of the record the removal was decided on): false then, nothing removed.
   */
  removeTraffic(model: string, over: string): Promise<boolean>;
  /**
   * Takes or renews lease `name` for `holder` for `ttlMs`: false while another holder has it.
   * One instance analyses each rollout; a file store has one instance, so it always grants.
   */
  lease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;
  /**
   * Records each instance keeps under `name` (JSON by instance), gone `ttlMs` after the
   * last write unless written again: an instance's request counts for a model under rollout,
   * the servers it runs for others, when it last served a shared deployment. None for a
   * file store (one instance).
   */
  putShared(name: string, holder: string, json: string, ttlMs: number): Promise<void>;
  loadShared(name: string): Promise<Record<string, string>>;
  removeShared(name: string, holder: string): Promise<void>;
  /**
   * The store's clock, ms since the epoch: what instances stamp the records they share by
   * and judge their age by, so that a machine whose clock is off agrees with the others
   * (Redis's TIME). A file store's is this machine's.
   */
  time(): Promise<number>;
  /**
   * What the store's memory settings risk, said at start-up; null: nothing. Redis with
   * maxmemory refuses writes once full (noeviction), or evicts the desired state (allkeys-*).
   */
  memoryRisk(): Promise<string | null>;
  /**
   * After a StateLostError, once this instance stored its state again: its reads take the
   * store as it is from now on. Nothing for a file store, which is never shared.
   */
  restored(): Promise<void>;
  close(): Promise<void>;
}

/** What an added key shares with one already stored. */
export type KeyClash = 'name' | 'digest';

export class StateError extends Error {
  readonly code = 'SLUICE_ERR_STATE';
}

/**
 * The shared store answers, but without the state this instance read from it before (Redis
 * restarted empty): what it holds must not be followed as the desired state (undeploying
 * everything); the instance stores its own state again and then calls `restored`.
 */
export class StateLostError extends Error {
  readonly code = 'SLUICE_ERR_STATE_LOST';
}
