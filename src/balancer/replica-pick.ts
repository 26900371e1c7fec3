// Replica choice: power of two random choices over least outstanding requests. The
// in-flight counts live in a SharedArrayBuffer so that every worker thread sees the same
// load on a replica (DESIGN.md: N workers must not mean N separate views of a replica).

export interface Balanced {
  /** Index of this replica's slot in the shared in-flight counter array. */
  readonly slot: number;
}

export function pickReplica<T extends Balanced>(replicas: readonly T[], inflight: Int32Array): T | undefined {
  const n = replicas.length;
  if (n <= 1) return replicas[0];
  const a = (Math.random() * n) | 0;
  let b = (Math.random() * (n - 1)) | 0;
  if (b >= a) b++;
  const ra = replicas[a]!;
  const rb = replicas[b]!;
  return Atomics.load(inflight, ra.slot) <= Atomics.load(inflight, rb.slot) ? ra : rb;
}

/** Weighted choice over precomputed cumulative weights (alias routes, canary splits). */
export function pickWeighted<T>(items: readonly T[], cumulative: Float64Array): T | undefined {
  const n = items.length;
  if (n <= 1) return items[0];
  const total = cumulative[n - 1]!;
  if (total <= 0) return undefined;
  const x = Math.random() * total;
  for (let i = 0; i < n; i++) if (x < cumulative[i]!) return items[i];
  return items[n - 1];
}

export function cumulativeWeights(weights: readonly number[]): Float64Array {
  const out = new Float64Array(weights.length);
  let sum = 0;
  for (let i = 0; i < weights.length; i++) out[i] = sum += weights[i]!;
  return out;
}
