import { Redis } from 'ioredis';
import { decodeDesired, encodeDesired } from './codec.js';
import { StateError, type DesiredDeployment, type DesiredStateStore } from './types.js';

const KEY = 'sluice:desired';

/** Desired state shared by every gateway instance on one Redis (SLUICE_REDIS_URL). */
export class RedisStateStore implements DesiredStateStore {
  readonly kind = 'redis';
  readonly #redis: Redis;
  readonly #where: string;

  constructor(url: string) {
    this.#redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2, connectTimeout: 2000, commandTimeout: 2000 });
    this.#where = `redis ${redactUrl(url)} key ${KEY}`;
  }

  async load(): Promise<DesiredDeployment[]> {
    let text: string | null;
    try {
      if (this.#redis.status === 'wait') await this.#redis.connect();
      text = await this.#redis.get(KEY);
    } catch (err) {
      throw new StateError(`${this.#where}: cannot read state (${(err as Error).message})`);
    }
    return text === null ? [] : decodeDesired(text, this.#where);
  }

  async save(deployments: readonly DesiredDeployment[]): Promise<void> {
    if (this.#redis.status === 'wait') await this.#redis.connect();
    await this.#redis.set(KEY, encodeDesired(deployments));
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}

/** Secrets never reach logs: keep scheme, host and port only. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}${u.port ? ':' + u.port : ''}`;
  } catch {
    return '(invalid url)';
  }
}
