// Access orders for the benchmarks: Zipf and uniform samplers over n items
// and a fixed-seed permutation, all driven by a PRNG from lib.mjs, so every
// sequence repeats exactly. test/bench-sample.test.ts checks them.

/** P(rank r) for r = 1..n under Zipf(s): r^-s / H(n, s). Index 0 is rank 1. */
export function zipfProbabilities(n, s) {
  const p = new Float64Array(n);
  let h = 0;
  for (let r = 1; r <= n; r++) h += (p[r - 1] = r ** -s);
  for (let i = 0; i < n; i++) p[i] /= h;
  return p;
}

/**
 * A sampler of ranks 0..n-1 (0 the most frequent) under Zipf(s): inverse
 * transform over the cumulative weights, a binary search per draw (8 bytes
 * a rank: 8 MB for a million).
 */
export function zipfSampler(n, s, rand) {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let r = 1; r <= n; r++) cdf[r - 1] = acc += r ** -s;
  return () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

export function uniformSampler(n, rand) {
  return () => Math.floor(rand() * n);
}

/** A permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n, rand) {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
