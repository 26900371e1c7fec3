// A dependency breaker that closed again judges the dependency on calls made since: the
// failures that opened it do not stay in its rolling window, where one more failure right
// after the recovery would open it again at once (what opossum does on its own).

import t from 'tap';
import { BreakerState, DependencyBreaker } from '../../src/dependencies/breaker.js';

const settings = { enabled: true, timeout_ms: 1_000, error_threshold_percentage: 50, volume_threshold: 4, reset_timeout_ms: 100, rolling_window_ms: 60_000 };

t.test('after a recovery, one failure does not open the breaker again', async (t) => {
  let failing = true;
  const breaker = new DependencyBreaker('redis', 'test', settings, async () => {
    if (failing) throw new Error('down');
    return 'ok';
  });
  for (let i = 0; i < 4; i++) await breaker.fire().catch(() => undefined);
  t.equal(breaker.state, BreakerState.Open, '4 failures of 4 calls open it');
  await new Promise((r) => setTimeout(r, 150));
  failing = false;
  t.equal(await breaker.fire(), 'ok', 'the probe after reset_timeout_ms succeeds');
  t.equal(breaker.state, BreakerState.Closed, 'and closes it');
  failing = true;
  await breaker.fire().catch(() => undefined);
  t.equal(breaker.state, BreakerState.Closed, 'one failure among the calls since the recovery leaves it closed');
  failing = false;
  for (let i = 0; i < 3; i++) await breaker.fire();
  failing = true;
  for (let i = 0; i < 4; i++) await breaker.fire().catch(() => undefined);
  t.equal(breaker.state, BreakerState.Open, 'a failing majority of the calls since then opens it again');
});
