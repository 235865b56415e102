import { describe, expect, it } from 'vitest';
import { backoff, parseRetryAfter } from './retry.ts';

describe('backoff with full jitter', () => {
  it('lands anywhere in [0, step), the step doubling up to the cap (the T24 client in-call retries)', () => {
    const p = { baseMs: 200, maxMs: 2000, jitter: 'full' } as const;
    expect(backoff(p, 1, () => 0)).toBe(0);
    expect(backoff(p, 1, () => 0.5)).toBe(100);
    expect(backoff(p, 2, () => 0.5)).toBe(200);
    expect(backoff(p, 3, () => 0.999)).toBe(799);
    expect(backoff(p, 10, () => 0.5)).toBe(1000);
    for (let attempt = 1; attempt < 8; attempt++) {
      const step = Math.min(2000, 200 * 2 ** (attempt - 1));
      for (let i = 0; i < 50; i++) {
        const d = backoff(p, attempt);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(step);
      }
    }
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-03-01T12:00:00Z');

  it('reads delta-seconds and HTTP dates as ms from now', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(' 1 ')).toBe(1000);
    expect(parseRetryAfter('0')).toBe(0);
    expect(parseRetryAfter('1.5')).toBe(1500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), { now: 5000 })).toBe(5000);
    expect(parseRetryAfter('Sun, 01 Mar 2026 12:00:30 GMT', { now })).toBe(30_000);
    // The two obsolete forms HTTP still allows.
    expect(parseRetryAfter('Sunday, 01-Mar-26 12:00:30 GMT', { now })).toBe(30_000);
    expect(parseRetryAfter('Sun Mar  1 12:00:30 2026', { now: now + new Date(now).getTimezoneOffset() * 60_000 })).toBe(30_000);
  });

  it('clamps: a date in the past is now, a long wait is cut to maxMs', () => {
    expect(parseRetryAfter('Sun, 01 Mar 2026 11:00:00 GMT', { now })).toBe(0);
    expect(parseRetryAfter('86400')).toBe(600_000);
    expect(parseRetryAfter('86400', { maxMs: 30_000 })).toBe(30_000);
    expect(parseRetryAfter('Mon, 02 Mar 2026 12:00:00 GMT', { now, maxMs: 60_000 })).toBe(60_000);
  });

  it('is undefined when absent or not a Retry-After, so the caller picks its default', () => {
    for (const v of [null, undefined, '', '   ', 'soon', '-5', '0x10', '1e3', '12abc', 'Someday, 99 Foo 2026', 'Sun, 99 Zzz 2026 99:99:99 GMT']) {
      expect(parseRetryAfter(v), String(v)).toBeUndefined();
    }
  });
});
