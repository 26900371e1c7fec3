// The data plane's shared clock reading (src/proxy/clock.ts): a reading held for one event
// serves everything that event runs, and never outlives it. A stale reading would skew
// rate limits, breakers and retry budgets, which compare times across threads.

import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { holdClock, monoNow, releaseClock, resyncWallClock, wallNow } from '../../src/proxy/clock.js';

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

t.test('a held reading is shared until released, then the clock is read live again', async (t) => {
  holdClock();
  const mono = monoNow();
  const wall = wallNow();
  spin(5);
  t.equal(monoNow(), mono, 'monotonic time is the held reading');
  t.equal(wallNow(), wall, 'wall time is the held reading');
  releaseClock();
  t.ok(monoNow() >= mono + 5, 'after release: read live');
  t.ok(wallNow() >= wall + 4, 'wall time after release: read live');
});

t.test('wall time derived from a held reading agrees with Date.now()', async (t) => {
  await sleep(50);
  resyncWallClock();
  holdClock();
  const derived = wallNow();
  releaseClock();
  t.ok(Math.abs(derived - Date.now()) < 3, `derived ${derived} vs Date.now() ${Date.now()}`);
});
