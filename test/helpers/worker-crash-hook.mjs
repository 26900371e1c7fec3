// Preloaded into a test gateway (NODE_OPTIONS=--import=<this file>), which runs it in every
// thread: in a data-plane worker it waits for the file SLUICE_TEST_WORKER_CRASH_FILE names,
// and the first worker to take it away dies of an uncaught error, as a bug would kill it.
// Nothing in sluice knows of it: the worker dies as any worker would.

import { unlinkSync } from 'node:fs';
import { isMainThread, threadId } from 'node:worker_threads';

const trigger = process.env.SLUICE_TEST_WORKER_CRASH_FILE;
if (!isMainThread && trigger !== undefined) {
  setInterval(() => {
    try {
      unlinkSync(trigger);
    } catch {
      return;
    }
    throw new Error(`worker thread ${threadId} crashed on purpose (test/helpers/worker-crash-hook.mjs)`);
  }, 50).unref();
}
