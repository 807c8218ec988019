// Small statistics helpers for the benchmark: medians and percentiles, no dependencies.

/** Median of a list (mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The p-th percentile (0..100) of values already sorted ascending, interpolating linearly
 * between the two nearest ranks.
 */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  if (n === 1) return sorted[0];
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Sorts a copy of the samples and returns the requested percentiles. */
export function percentiles(samples: Float64Array, ps: readonly number[]): number[] {
  const sorted = Float64Array.from(samples).sort();
  return ps.map((p) => percentileSorted(sorted, p));
}

/** Spread of the runs: (max - min) / median, as a fraction; NaN with fewer than two runs. */
export function relativeSpread(values: readonly number[]): number {
  if (values.length < 2) return NaN;
  const m = median(values);
  return (Math.max(...values) - Math.min(...values)) / m;
}
