// Which versions an alias sends requests to (control/traffic.ts resolveAlias): weighted
// versions that can serve, a hibernated one included (its requests wake it), else the
// stable one, else the newest that can.

import t from 'tap';
import { resolveAlias } from '../../src/control/traffic.js';
import type { VersionInfo } from '../../src/control/model-versions.js';

const v = (version: string, state: string, readyReplicas: number): VersionInfo => ({ version, deployment: `m-${version}`, state, readyReplicas, restarts: 0, routable: true, asleep: state === 'hibernated' });

t.test('a hibernated weighted version keeps its share: the alias does not fall back past it', async (t) => {
  const r = resolveAlias([v('1', 'ready', 1), v('2', 'hibernated', 0)], { 1: 90, 2: 10 }, '1');
  t.same(r.targets.map((x) => [x.version, x.weight]), [['1', 90], ['2', 10]]);
  t.equal(r.fallback, null);
});

t.test('a hibernated version alone behind the alias takes its requests (and wakes)', async (t) => {
  const r = resolveAlias([v('1', 'hibernated', 0), v('2', 'ready', 1)], { 1: 100 }, '1');
  t.same(r.targets.map((x) => x.version), ['1']);
  t.equal(r.fallback, null);
});

t.test('a failed weighted version still gives way to a ready one', async (t) => {
  const r = resolveAlias([v('1', 'failed', 0), v('2', 'ready', 1)], { 1: 100 }, '1');
  t.same(r.targets.map((x) => x.version), ['2']);
  t.equal(r.fallback, 'any_ready');
});

// At every gateway start the weighted version is still starting when the first requests
// come: they fell back to a hibernated weight-0 version and woke it (a cold start of a model
// put to sleep) and stored a fallback event (U5). They wait for the starting one now.
t.test('a weighted version starting is waited for rather than a hibernated one woken', async (t) => {
  for (const state of ['starting', 'pending']) {
    const r = resolveAlias([v('1', state, 0), v('2', 'hibernated', 0)], { 1: 100, 2: 0 }, '2');
    t.same(r.targets.map((x) => [x.version, x.weight]), [['1', 100]], `${state}: the weighted version's requests wait for it`);
    t.equal(r.fallback, null);
  }
  const awake = resolveAlias([v('1', 'starting', 0), v('2', 'hibernated', 0), v('3', 'ready', 1)], { 1: 100 }, '2');
  t.same(awake.targets.map((x) => x.version), ['3'], 'an awake version still takes them at once');
  t.equal(awake.fallback, 'any_ready');
  const failed = resolveAlias([v('1', 'failed', 0), v('2', 'hibernated', 0)], { 1: 100 }, '2');
  t.same(failed.targets.map((x) => x.version), ['2'], 'with no weighted version on its way, the hibernated stable one wakes');
  t.equal(failed.fallback, 'stable');
});
