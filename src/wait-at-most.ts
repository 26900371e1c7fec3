// Waiting for something that may never come, as the control plane's stops do (streams to
// end, workers to apply a route table, an exporter to flush): bounded, and without a timer
// left behind to hold the process open once the wait is over.

/** Resolves when `promise` settles or `ms` have passed, whichever is first (rejects if it rejects first). */
export async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
