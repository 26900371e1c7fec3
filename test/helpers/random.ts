// A seeded generator for tests that build many cases: the same cases on every run.

export interface SeededRandom {
  /** An integer in [0, n). */
  below(n: number): number;
  pick<T>(xs: readonly T[]): T;
}

/** xorshift32 from `seed` (non-zero). */
export function seededRandom(seed: number): SeededRandom {
  let state = seed | 0;
  const below = (n: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  return { below, pick: <T>(xs: readonly T[]): T => xs[below(xs.length)]! };
}
