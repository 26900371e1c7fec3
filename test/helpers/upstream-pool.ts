// A stand-in for the pool an UpstreamConnection reports to, for tests that drive one
// connection by hand: it counts the connection's releases and removals.

import type { PoolLike } from '../../src/proxy/upstream/connection.js';

export class CountingPool implements PoolLike {
  readonly host = '127.0.0.1';
  readonly idleMs = 60_000;
  released = 0;
  removed = 0;
  constructor(readonly port: number) {}
  release(): void {
    this.released++;
  }
  remove(): void {
    this.removed++;
  }
}
