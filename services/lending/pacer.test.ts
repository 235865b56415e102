import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createPacer, PacerStoppedError } from './pacer.ts';

beforeEach(() => { vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); });

// Grants of `n` concurrent callers while the clock moves in steps of `stepMs` (a late, coarse timer).
async function run(o: { share: () => number; margin: number; ms: number; stepMs: number; callers?: number }) {
  const pacer = createPacer({ share: o.share, margin: o.margin, now: () => Date.now() });
  const grants: number[] = [];
  let running = true;
  const loops = Array.from({ length: o.callers ?? 64 }, async () => {
    while (running) {
      try { await pacer.acquire(); } catch { return; }
      grants.push(Date.now());
    }
  });
  for (let t = 0; t < o.ms; t += o.stepMs) await vi.advanceTimersByTimeAsync(o.stepMs);
  running = false;
  pacer.stop();
  await Promise.all(loops);
  return grants;
}

const maxInWindow = (grants: number[]) => {
  let max = 0;
  for (let i = 0, j = 0; i < grants.length; i++) {
    while (grants[i]! - grants[j]! >= 1000) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
};

describe('pacer', () => {
  for (const share of [200, 1000]) {
    it(`never grants more than the share (${share}) in any 1000 ms, even when timers fire 7 ms late`, async () => {
      const grants = await run({ share: () => share, margin: 0.05, ms: 10_000, stepMs: 7 });
      expect(maxInWindow(grants)).toBeLessThanOrEqual(share);
      // And late timers cost nothing: the long-run rate is the share less the margin.
      expect(grants.length).toBeGreaterThanOrEqual(Math.floor((share / 1.05) * 10) - share * 0.03);
    });
  }

  it('keeps jitter headroom: at most share × (1 + m/4)/(1 + m) + 1 per window', async () => {
    const grants = await run({ share: () => 1000, margin: 0.05, ms: 5000, stepMs: 3 });
    expect(maxInWindow(grants)).toBeLessThanOrEqual(Math.floor((1000 * 1.0125) / 1.05) + 1);
  });

  it('follows a shrinking share at once and grants nothing at share 0', async () => {
    let share = 1000;
    const pacer = createPacer({ share: () => share, margin: 0.05, now: () => Date.now() });
    let n = 0;
    let running = true;
    const loop = (async () => { while (running) { try { await pacer.acquire(); } catch { return; } n++; } })();
    await vi.advanceTimersByTimeAsync(2000);
    share = 0;
    const at = n;
    await vi.advanceTimersByTimeAsync(2000);
    // At most the grant already due when the share dropped.
    expect(n - at).toBeLessThanOrEqual(1);
    share = 10;
    await vi.advanceTimersByTimeAsync(3000);
    expect(n - at).toBeGreaterThan(20);
    expect(n - at).toBeLessThanOrEqual(31);
    running = false;
    pacer.stop();
    await loop;
  });

  it('rejects waiting callers on stop and on abort', async () => {
    const pacer = createPacer({ share: () => 0, margin: 0.05 });
    const ac = new AbortController();
    const a = pacer.acquire(ac.signal);
    const b = pacer.acquire();
    ac.abort(new Error('gone'));
    await expect(a).rejects.toThrow('gone');
    pacer.stop();
    await expect(b).rejects.toBeInstanceOf(PacerStoppedError);
    await expect(pacer.acquire()).rejects.toBeInstanceOf(PacerStoppedError);
  });
});
