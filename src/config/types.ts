// The validated, frozen shape of the configuration (see schema.ts for defaults).

export type Runtime = 'sim' | 'remote' | 'command' | 'mlflow' | 'ollama' | 'llamacpp';

export interface UpstreamOptions {
  readonly connect_timeout_ms: number;
  readonly headers_timeout_ms: number;
  readonly idle_timeout_ms: number;
  readonly max_connections: number;
  readonly keepalive_idle_ms: number;
}

export interface LimitsConfig {
  readonly requests_per_second: number;
  readonly requests_per_minute: number;
  readonly tokens_per_minute: number;
}

export interface CacheConfig {
  readonly enabled: boolean;
  /** Also in Redis, when redis.url is set. */
  readonly shared: boolean;
  readonly ttl_ms: number;
  /** Per deployment and per worker thread. */
  readonly max_bytes: number;
  readonly max_entry_bytes: number;
  readonly max_request_bytes: number;
  /** Header names (as configured; compared without case) whose values are part of the key. */
  readonly vary: readonly string[];
  /** Callers with different credentials share entries and in-flight requests. */
  readonly shared_across_callers: boolean;
}

export interface PoliciesConfig {
  readonly auth: { readonly required: boolean };
  readonly breaker: {
    readonly enabled: boolean;
    readonly consecutive_failures: number;
    readonly error_threshold_percentage: number;
    readonly volume_threshold: number;
    readonly window_ms: number;
    readonly reset_timeout_ms: number;
  };
  readonly retry: {
    readonly attempts: number;
    readonly budget_percent: number;
    readonly budget_window_ms: number;
    readonly replay_max_bytes: number;
  };
  readonly queue: { readonly max_inflight_per_replica: number; readonly max_length: number; readonly max_wait_ms: number };
  readonly hold: { readonly max_length: number; readonly max_wait_ms: number; readonly heartbeat_ms: number };
  readonly rate_limit: LimitsConfig;
  readonly balancer: {
    readonly strategy: BalancerStrategy;
    readonly latency_buffer: number;
    readonly probe_interval_ms: number;
    readonly metrics_path: string;
    readonly scrape_interval_ms: number;
    readonly kv_cache_limit: number;
  };
  readonly cache: CacheConfig;
  readonly total_timeout_ms: number;
}

/** A deployment's overrides: any subset of PoliciesConfig. */
export type PoliciesOverride = { readonly [K in keyof PoliciesConfig]?: PoliciesConfig[K] extends object ? Partial<PoliciesConfig[K]> : PoliciesConfig[K] };

export interface ApiKeyConfig {
  readonly name: string;
  readonly key: string | null;
  readonly key_sha256: string | null;
  readonly deployments: readonly string[];
  readonly limits: LimitsConfig;
  readonly deployment_limits: LimitsConfig;
}

export interface HealthCheckConfig {
  readonly enabled: boolean;
  readonly path: string | null;
  readonly interval_ms: number;
  readonly timeout_ms: number;
  readonly healthy_threshold: number;
  readonly unhealthy_threshold: number;
}

export interface UpstreamAuthConfig {
  /** Header name, lower case on the wire. */
  readonly header: string;
  /** The environment variable holding the secret. */
  readonly env: string;
  /** Put before the secret (`Bearer sk-...`); null: the secret alone. */
  readonly scheme: string | null;
}

/** A `remote` replica and what the balancing strategies read of it. */
/** Prices of a deployment (0: not charged). */
export interface CostConfig {
  readonly per_replica_hour: number;
  readonly per_1k_input_tokens: number;
  readonly per_1k_output_tokens: number;
  readonly per_request: number;
}

export interface ScaleConfig {
  /** 0: hibernates after idle_timeout_s without a request. */
  readonly min_replicas: number;
  readonly idle_timeout_s: number;
  /** Autoscaling's ceiling; 0: `replicas`. */
  readonly max_replicas: number;
  /** Autoscaling: requests in flight and waiting per replica to aim at; 0: off. */
  readonly target_inflight_per_replica: number;
  readonly scale_up_window_s: number;
  readonly scale_down_window_s: number;
}

export type BalancerStrategy = 'least_outstanding' | 'round_robin' | 'weighted' | 'lowest_latency' | 'lowest_cost' | 'failover' | 'queue_aware';

export interface ReplicaEndpoint {
  readonly url: string;
  /** Share of a `weighted` deployment's requests. */
  readonly weight: number;
  /** `failover` tier: 0 first. */
  readonly priority: number;
  /** `lowest_cost`: price of a request (or of 1k tokens), in the deployment's own unit. */
  readonly cost: number;
}

export interface DeploymentConfig {
  readonly model: string;
  readonly version: string;
  readonly runtime: Runtime;
  readonly replicas: number;
  readonly urls: readonly ReplicaEndpoint[];
  /** Deployment ids that take what this one cannot, in order. */
  readonly fallbacks: readonly string[];
  /** min_replicas 0: hibernates after idle_timeout_s without a request. */
  readonly scale: ScaleConfig;
  readonly cost: CostConfig;
  /** Extra arguments for the `sim` runtime (e.g. `--token-ms 5`) or the `llamacpp` server (`--n_ctx 4096`). */
  readonly args: readonly string[];
  /** argv template for the `command` runtime; `{port}` etc. are substituted per element. */
  readonly command: readonly string[];
  /** `command` runtime: the environment variable that receives the allocated port. */
  readonly port_env: string | null;
  /** `llamacpp` runtime: the GGUF file the server loads (absolute). */
  readonly model_path: string | null;
  /** `llamacpp` runtime: the Python with llama-cpp-python[server]; null: see the schema. */
  readonly python: string | null;
  readonly readiness_path: string | null;
  readonly env: Readonly<Record<string, string>>;
  readonly start_timeout_ms: number;
  readonly keep_alive: string | null;
  /** The model name the server knows; null: the runtime's default (see the schema). */
  readonly served_model: string | null;
  /** A credential added to every upstream request, from an environment variable. */
  readonly auth?: UpstreamAuthConfig;
  /** `remote` only; absent: every default. */
  readonly health_check?: HealthCheckConfig;
  readonly upstream?: Partial<UpstreamOptions>;
  readonly policies?: PoliciesOverride;
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** listen.tls, admin.tls: PEM files, re-read on SIGHUP and when they change. */
export interface TlsConfig {
  readonly cert_file: string;
  readonly key_file: string;
  readonly min_version: TlsVersion;
}

/** listen.hsts: the Strict-Transport-Security header of every response over TLS. */
export interface HstsConfig {
  readonly max_age_s: number;
  readonly include_subdomains: boolean;
  readonly preload: boolean;
}

/** Config `tracing`, with the OTEL_* variables applied (config/otel-env.ts). */
export interface TracingConfig {
  readonly enabled: boolean;
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly service_name: string;
  readonly sample_ratio: number;
  readonly parent_based: boolean;
}

export interface Config {
  readonly listen: { readonly host: string; readonly port: number; readonly forwarded_for: boolean; readonly front_end: 'auto' | 'node' | 'uws'; readonly client_idle_timeout_ms: number; readonly client_header_timeout_ms: number; readonly cors_origins: readonly string[]; readonly allowed_hosts: readonly string[]; readonly tls?: TlsConfig; readonly hsts?: HstsConfig };
  readonly admin: { readonly host: string; readonly port: number; readonly token: string | null; readonly tls?: TlsConfig };
  readonly workers: number;
  readonly ports: { readonly from: number; readonly to: number };
  readonly state_dir: string;
  readonly redis: { readonly url: string | null };
  readonly mlflow: { readonly tracking_uri: string | null; readonly bin: string | null };
  readonly limits: { readonly max_body_bytes: number; readonly max_buffered_body_bytes: number; readonly max_buffered_bytes: number };
  readonly upstream: UpstreamOptions;
  readonly metrics: { readonly tokens: boolean; readonly retired_series_ms: number };
  readonly log: {
    readonly level: string;
    readonly access: boolean;
    readonly access_buffer_bytes: number;
    readonly access_flush_ms: number;
    readonly access_max_buffer_bytes: number;
    readonly access_sample: number;
  };
  readonly policies: PoliciesConfig;
  readonly api_keys: readonly ApiKeyConfig[];
  readonly rate_limit: { readonly on_redis_error: 'open' | 'closed'; readonly redis_timeout_ms: number };
  readonly cache: { readonly redis_timeout_ms: number };
  readonly dependencies: DependenciesConfig;
  readonly shutdown: { readonly drain_delay_ms: number; readonly grace_ms: number };
  readonly tracing: TracingConfig;
  readonly deployments: readonly DeploymentConfig[];
  readonly traffic: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Config `dependencies`: a breaker per dependency and use (src/dependencies, BreakerSettings). */
export interface DependencyBreakerConfig {
  /** Opens when more than this share of the calls in the window failed (percent)... */
  readonly error_threshold_percentage: number;
  /** ...and the window holds at least this many calls. */
  readonly volume_threshold: number;
  /** Open this long, then one call goes through as a probe. */
  readonly reset_timeout_ms: number;
  /** The window the failures are counted over (ten buckets). */
  readonly rolling_window_ms: number;
}

export interface DependenciesConfig {
  readonly redis: {
    readonly rate_limit: DependencyBreakerConfig;
    readonly cache: DependencyBreakerConfig;
    readonly state: DependencyBreakerConfig & { readonly timeout_ms: number };
  };
  readonly mlflow: { readonly registry: DependencyBreakerConfig & { readonly timeout_ms: number } };
  readonly otlp: { readonly export: DependencyBreakerConfig };
}
