// What the traffic registry and rollouts know of a model's deployed versions.

/** A deployed version of a model, oldest first, as traffic and rollouts see it. */
export interface VersionInfo {
  readonly version: string;
  readonly deployment: string;
  readonly state: string;
  readonly readyReplicas: number;
  /** Restarts of its replicas' processes so far: a rise during a rollout window is a crash loop. */
  readonly restarts: number;
  /** Hibernated, or waking from it: no ready replica for want of requests, which wake it (not a failure). */
  readonly asleep: boolean;
  /** False while draining or stopped: it takes no new requests. */
  readonly routable: boolean;
}
