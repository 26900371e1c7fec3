// Many client sockets opened at once, in batches, so that the listen backlogs of the
// processes they reach keep up (a SYN dropped there costs a second's retransmit).

import { sleep } from './log.js';

const BATCH = 250;
const BATCH_PAUSE_MS = 50;

/** Calls `open` `n` times, pausing briefly after every batch. */
export async function openInBatches(n: number, open: () => void): Promise<void> {
  for (let i = 0; i < n; i += BATCH) {
    for (let j = i; j < Math.min(n, i + BATCH); j++) open();
    await sleep(BATCH_PAUSE_MS);
  }
}
