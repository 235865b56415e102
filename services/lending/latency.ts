// A running latency estimate for Little's law sizing (the T24 client's recommended
// concurrency, the item pump's limit): an EWMA of the mean and of the variance, and
// p90 ≈ mean + 1.2816 σ (normal approximation). Constant memory and time per sample,
// and it forgets: a T24 that slows down shows within ~1/alpha samples.

export type LatencyEstimate = {
  observe(ms: number): void;
  /** The estimated p90 in ms; `beforeAnyMs` until the first sample. */
  p90Ms(): number;
  meanMs(): number;
  samples(): number;
};

/** `const lat = createLatencyEstimate({ alpha: 0.1, beforeAnyMs: 1000 }); lat.observe(12); lat.p90Ms() === 12` */
export function createLatencyEstimate(o: { alpha: number; beforeAnyMs: number }): LatencyEstimate {
  let mean = 0;
  let variance = 0;
  let n = 0;
  return {
    observe(ms) {
      if (n++ === 0) {
        mean = ms;
        return;
      }
      const diff = ms - mean;
      mean += o.alpha * diff;
      variance = (1 - o.alpha) * (variance + o.alpha * diff * diff);
    },
    p90Ms: () => (n === 0 ? o.beforeAnyMs : mean + 1.2816 * Math.sqrt(variance)),
    meanMs: () => mean,
    samples: () => n,
  };
}
