// Values the admin API refuses for its own fixed bounds were sent all the same: exit 1 after
// a round trip, where README promises exit 2 for a bad value "found before any request".
// With the admin URL pointing where nothing listens, exit 2 (not 3) proves no request went.

import t from 'tap';
import { runCli } from '../helpers/cli.js';

// Port 24389 belongs to this file: nothing listens there.
const NOWHERE = { SLUICE_ADMIN_URL: 'http://127.0.0.1:24389' };

t.test('out-of-bounds values are usage errors, before any request', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['logs', 'demo-1', '-n', '200000'], /--tail must be an integer >= 1, at most 100000/],
    [['undeploy', 'x-1', '--grace', '700000'], /--grace must be an integer >= 0, at most 600000/],
    [['deploy', 'big', '1', '--replicas', '101'], /--replicas must be an integer >= 1, at most 100/],
    [['deploy', 'big', '1', '--start-timeout', '86400001'], /--start-timeout must be an integer >= 1, at most 86400000/],
    [['rollout', 'demo', 'start', '--canary', '2', '--steps', '5,500'], /--steps: each percentage above 0/],
    [['rollout', 'demo', 'start', '--canary', '2', '--steps', '50,50'], /--steps: each percentage above 0 and above the one before it/],
    [['rollout', 'demo', 'start', '--canary', '2', '--steps', '0,50'], /--steps: each percentage above 0/],
    [['traffic', 'demo', '1=90', '1=10'], /traffic: version 1 is given more than once/],
    [['rollout', 'demo', 'start', '--canary', '2', '--interval', '100000'], /--interval must be a number 0.2..86400/],
    [['rollout', 'demo', 'start', '--canary', '2', '--min-requests', '1000000001'], /--min-requests must be an integer >= 1, at most 1000000000/],
    [['rollout', 'demo', 'start', '--canary', '2', '--max-latency-ratio', '1001'], /--max-latency-ratio must be a number 1..1000/],
    [['rollout', 'demo', 'start', '--canary', '2', '--failed-checks', '1001'], /--failed-checks must be an integer >= 1, at most 1000/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args, NOWHERE);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, message);
  }
  const inBounds = await runCli(['logs', 'demo-1', '-n', '100000'], NOWHERE);
  t.equal(inBounds.code, 3, 'a value within the bounds goes to the admin API (nothing there: exit 3)');
});
