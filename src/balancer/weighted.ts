// Weighted choice for alias routes (canary splits across a model's versions).

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
