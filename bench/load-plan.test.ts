// bench:load's plan: the phases the environment asks for, the mix, and the open-loop
// schedule that keeps a slow server from lowering the offered rate.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MIX, dueBetween, KINDS, mixFrom, percentile, phasesFrom, picker } from './load-plan.ts';
import { createRandom } from '../services/simulators/serve.ts';

describe('bench:load plan', () => {
  it('defaults to issue 15: 10K RPM for 10 minutes, 3x and 10x for a minute each, a 30-minute soak, after a warm-up', () => {
    expect(phasesFrom({})).toEqual([
      { name: 'warm-up', rpm: 10_000, seconds: 60 },
      { name: 'sustained', rpm: 10_000, seconds: 600 },
      { name: 'spike 3x', rpm: 30_000, seconds: 60 },
      { name: 'spike 10x', rpm: 100_000, seconds: 60 },
      { name: 'soak', rpm: 10_000, seconds: 1800 },
    ]);
  });

  it('scales every phase for a quick run and leaves out a phase of 0 minutes', () => {
    const p = phasesFrom({ BENCH_LOAD_MINUTES_SCALE: '0.1', BENCH_LOAD_WARMUP_MIN: '0', BENCH_LOAD_RPM: '600' });
    expect(p.map((x) => [x.name, x.rpm, Math.round(x.seconds)])).toEqual([['sustained', 600, 60], ['spike 3x', 1800, 6], ['spike 10x', 6000, 6], ['soak', 600, 180]]);
  });

  it('refuses a rate or a length that is not a number', () => {
    expect(() => phasesFrom({ BENCH_LOAD_RPM: 'fast' })).toThrow(/BENCH_LOAD_RPM/);
    expect(() => phasesFrom({ BENCH_LOAD_RPM: '0' })).toThrow(/above 0/);
    expect(() => phasesFrom({ BENCH_LOAD_SOAK_MIN: '-1' })).toThrow(/BENCH_LOAD_SOAK_MIN/);
  });

  it('reads a mix, and refuses an unknown kind or an all-zero mix', () => {
    expect(mixFrom({})).toEqual(DEFAULT_MIX);
    const m = mixFrom({ BENCH_LOAD_MIX: 'order create=3, catalog list=1' });
    expect(m['order create']).toBe(3);
    expect(m['order status']).toBe(0);
    expect(() => mixFrom({ BENCH_LOAD_MIX: 'checkout=1' })).toThrow(/BENCH_LOAD_MIX/);
    expect(() => mixFrom({ BENCH_LOAD_MIX: 'order create=0' })).toThrow(/every weight is 0/);
  });

  it('picks kinds in proportion to their weights, and never one weighing 0', () => {
    const pick = picker(mixFrom({ BENCH_LOAD_MIX: 'order create=3,catalog list=1' }));
    const r = createRandom(7);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 40_000; i++) { const k = pick(r()); counts[k] = (counts[k] ?? 0) + 1; }
    expect(Object.keys(counts).sort()).toEqual(['catalog list', 'order create']);
    expect(counts['order create']! / 40_000).toBeGreaterThan(0.73);
    expect(counts['order create']! / 40_000).toBeLessThan(0.77);
    // The default mix sends every kind.
    const all = picker(DEFAULT_MIX);
    const seen = new Set(Array.from({ length: 5000 }, () => all(r())));
    expect([...seen].sort()).toEqual([...KINDS].sort());
  });

  it('is open loop: after a stall every request that fell due is sent at once, none skipped, none beyond the phase', () => {
    // 600 RPM = one every 100 ms, for 10 s: 100 requests.
    expect(dueBetween(0, 600, 10, 0, 0)).toEqual({ from: 0, to: 1 });
    expect(dueBetween(0, 600, 10, 1, 50)).toEqual({ from: 1, to: 1 });
    // The generator (or the box) stalled for 2.5 s: the 25 requests due meanwhile go out now.
    expect(dueBetween(0, 600, 10, 1, 2550)).toEqual({ from: 1, to: 26 });
    expect(dueBetween(0, 600, 10, 26, 60_000)).toEqual({ from: 26, to: 100 });
  });

  it('takes percentiles by nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect([percentile(xs, 50), percentile(xs, 95), percentile(xs, 99), percentile(xs, 100)]).toEqual([50, 95, 99, 100]);
    expect(percentile([], 50)).toBeNaN();
  });
});
