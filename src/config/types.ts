// The validated, frozen shape of the configuration (see schema.ts for defaults).

export type Runtime = 'sim' | 'remote' | 'command' | 'mlflow' | 'ollama';

export interface UpstreamOptions {
  readonly connect_timeout_ms: number;
  readonly headers_timeout_ms: number;
  readonly idle_timeout_ms: number;
  readonly max_connections: number;
  readonly keepalive_idle_ms: number;
}

export interface DeploymentConfig {
  readonly model: string;
  readonly version: string;
  readonly runtime: Runtime;
  readonly replicas: number;
  readonly urls: readonly string[];
  /** Extra arguments for the `sim` runtime (e.g. `--token-ms 5`). */
  readonly args: readonly string[];
  /** argv template for the `command` runtime; `{port}` etc. are substituted per element. */
  readonly command: readonly string[];
  readonly readiness_path: string | null;
  readonly env: Readonly<Record<string, string>>;
  readonly start_timeout_ms: number;
  readonly upstream?: Partial<UpstreamOptions>;
}

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number; readonly token: string | null };
  readonly workers: number;
  readonly ports: { readonly from: number; readonly to: number };
  readonly state_dir: string;
  readonly redis: { readonly url: string | null };
  readonly mlflow: { readonly tracking_uri: string | null; readonly bin: string | null };
  readonly limits: { readonly max_body_bytes: number };
  readonly upstream: UpstreamOptions;
  readonly log: { readonly level: string; readonly access: boolean };
  readonly deployments: readonly DeploymentConfig[];
  readonly traffic: Readonly<Record<string, Readonly<Record<string, number>>>>;
}
