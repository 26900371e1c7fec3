// A gateway port that is taken stops the start with `cannot listen on HOST:PORT`, exit 1
// (README "Known limits"). With redis.url the error was printed and the process never
// exited: the Redis client kept reconnecting and the process alive, so a supervisor never
// saw it fail (and never restarted it).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { occupy, startRedis } from '../helpers/control.js';
import { serveUntilExit } from '../helpers/procs.js';

// Ports 24390-24399 belong to this file: 24390 Redis, 24391 the taken gateway port, 24392 the
// admin API, 24393-24399 model-server ports.
t.test('with redis.url, a gateway port that is taken still ends the process with exit 1', async (t) => {
  const redis = await startRedis(24390);
  t.teardown(() => redis.stop());
  const taken = await occupy(24391);
  t.teardown(() => taken.close());
  const dir = mkdtempSync(join(tmpdir(), 'sluice-listen-fail-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, JSON.stringify({
    listen: { host: '127.0.0.1', port: 24391 },
    admin: { host: '127.0.0.1', port: 24392 },
    ports: { from: 24393, to: 24399 },
    state_dir: join(dir, 'state'),
    redis: { url: redis.url },
  }));
  const { code, proc } = await serveUntilExit(configFile);
  t.equal(code, 1, 'exits 1 (-999: still running after 20 s)');
  t.match(proc.stderr.join('\n'), /cannot listen on 127\.0\.0\.1:24391 \(.*EADDRINUSE/);
});
