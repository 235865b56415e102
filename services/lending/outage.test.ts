import { describe, expect, it } from 'vitest';
import { createOutageWindow, looksLikeOutage } from './outage.ts';
import { nextItemRetry } from './retry-policy.ts';

const policy = { minCalls: 10, minFailedTargets: 25, errorPct: 50 };

describe('outage judge', () => {
  it('a few targets failing again and again are not an outage; many distinct ones are', () => {
    let t = 0;
    const w = createOutageWindow({ size: 50, maxAgeMs: 10_000, now: () => t });
    for (let round = 0; round < 40; round++) for (let l = 0; l < 10; l++) { t += 10; w.record(`/loans/BAD-${l}/reserve`, false); }
    expect(w.sample()).toEqual({ calls: 50, failedCalls: 50, failedTargets: 10 });
    expect(looksLikeOutage(w.sample(), policy)).toBe(false);
    for (let l = 0; l < 15; l++) { t += 10; w.record(`/loans/L-${l}/reserve`, false); }
    expect(w.sample().failedTargets).toBe(25);
    expect(looksLikeOutage(w.sample(), policy)).toBe(true);
  });

  it('scattered failures among successes are not an outage, and old calls age out', () => {
    let t = 0;
    const w = createOutageWindow({ size: 50, maxAgeMs: 1000, now: () => t });
    for (let n = 0; n < 200; n++) { t += 1; w.record(`/loans/L-${n}/invest`, n % 3 !== 0); }
    const s = w.sample();
    expect(s.calls).toBe(50);
    expect(s.failedTargets).toBe(s.failedCalls);
    expect(looksLikeOutage(s, { ...policy, minFailedTargets: 5 })).toBe(false);
    t += 1001;
    expect(w.sample()).toEqual({ calls: 0, failedCalls: 0, failedTargets: 0 });
  });
});

describe('item retry budget', () => {
  it('follows the seed: 1 s, 2 s, 4 s, 8 s, then spent', () => {
    const budget = { maxFailures: 5, baseMs: 1000, maxMs: 8000, jitter: 0 };
    expect([1, 2, 3, 4, 5].map((f) => nextItemRetry(f, budget))).toEqual([1000, 2000, 4000, 8000, null]);
  });
});
