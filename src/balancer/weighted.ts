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

/** FNV-1a over a string's UTF-16 code units, then mixed: a sticky key's hash. */
export function stickyHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/** murmur3's finaliser: every input bit moves every output bit. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Weighted rendezvous hashing: each item scores -ln(u) / weight, u a uniform number drawn
 * from the key and the item's seed, and the lowest score wins. An item wins a share of
 * keys equal to its share of the weight, and a weight change moves only the keys that must
 * move (from 90/10 to 70/30: a fifth of them), where a weighted modulo would reshuffle most.
 * Seeds come from deployment ids, so every instance and every restart agree.
 */
export function pickSticky<T>(items: readonly T[], weights: readonly number[], seeds: Uint32Array, key: number): T | undefined {
  let best = -1;
  let bestScore = Infinity;
  for (let i = 0; i < items.length; i++) {
    const w = weights[i]!;
    if (!(w > 0)) continue;
    const u = (mix32((key ^ seeds[i]!) >>> 0) + 0.5) / 4294967296;
    const score = -Math.log(u) / w;
    if (score < bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return best < 0 ? undefined : items[best];
}
