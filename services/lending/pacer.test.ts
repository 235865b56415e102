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
      try { (await pacer.acquire())(); } catch { return; }
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
    const loop = (async () => { while (running) { try { (await pacer.acquire())(); } catch { return; } n++; } })();
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

  // T24 counts a call when it reaches T24, not when we grant it. A T24 that stalls
  // (GC, a busy box) and then reads every request queued meanwhile stamps them all
  // at once; the GCRA's spacing of our grants says nothing about that window.
  it('keeps any window of T24 within the share when T24 stalls and then takes the queued calls at once', async () => {
    const share = 150;
    const pacer = createPacer({ share: () => share, margin: 0.05, now: () => Date.now() });
    // T24 stalls for 150 ms every 2 s (from 1000 ms on); calls arriving meanwhile are
    // stamped when it resumes; each answers 5 ms after it is stamped.
    const stamp = (t: number) => (t >= 1000 && t % 2000 >= 1000 && t % 2000 < 1150 ? t - (t % 2000) + 1150 : t);
    const arrivals: number[] = [];
    let running = true;
    const loops = Array.from({ length: 64 }, async () => {
      while (running) {
        let release;
        try { release = await pacer.acquire(); } catch { return; }
        const at = stamp(Date.now());
        arrivals.push(at);
        await new Promise((r) => setTimeout(r, at + 5 - Date.now()));
        release();
      }
    });
    for (let t = 0; t < 10_000; t += 3) await vi.advanceTimersByTimeAsync(3);
    running = false;
    pacer.stop();
    await vi.advanceTimersByTimeAsync(2000);
    await Promise.all(loops);
    arrivals.sort((a, b) => a - b);
    expect(maxInWindow(arrivals)).toBeLessThanOrEqual(share);
    // And the stalls cost only their own calls: ~share/(1 + m) a second otherwise.
    expect(arrivals.length).toBeGreaterThan(10 * (share / 1.05) * 0.85);
  });

  it('holds a call against the share until windowMs after its release: slow calls slow the grants', async () => {
    const pacer = createPacer({ share: () => 10, margin: 0, now: () => Date.now(), windowMs: 1000 });
    const releases = [];
    // Ten calls in flight use the whole share; none ends.
    for (let i = 0; i < 10; i++) { const p = pacer.acquire(); await vi.advanceTimersByTimeAsync(100); releases.push(await p); }
    let granted = false;
    const next = pacer.acquire().then((r) => { granted = true; return r; });
    await vi.advanceTimersByTimeAsync(5000);
    expect(granted).toBe(false);
    expect(pacer.held()).toBe(10);
    // The first call ends now; its place comes free 1000 ms later, not before.
    releases[0]!();
    await vi.advanceTimersByTimeAsync(999);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    expect(granted).toBe(true);
    releases[0]!(); // twice is once
    expect(pacer.held()).toBe(10);
    for (const r of releases) r();
    (await next)();
    pacer.stop();
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
