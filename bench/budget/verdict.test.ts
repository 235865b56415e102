// The budgets' rules, figures in, verdicts out: no measurement here.
import { describe, expect, it } from 'vitest';
import type { LoadRow } from '../orders-load.ts';
import { intakeRatio, judge, sagaP95Limit, sagaRateFor, table, THRESHOLDS, type Figures } from './verdict.ts';

const row = (rps: number, more: Partial<LoadRow> = {}): LoadRow => ({ rps, p50: 5, p99: 20, errors: 0, non2xx: 0, cpuUs: NaN, ...more });
const saga = (more: Partial<Figures['saga']> = {}): Figures['saga'] => ({
  rate: 60, seconds: 15, sentPerSecond: 59.9, offered: 900, accepted: 900, finished: 900, errors: 0, p50Ms: 300, p95Ms: 900, p99Ms: 1200, aloneP95Ms: 150, ...more,
});
const figures = (bare: number[], orders: number[], s: Partial<Figures['saga']> = {}): Figures => ({ intake: { bare: bare.map((r) => row(r)), orders: orders.map((r) => row(r)) }, saga: saga(s) });
const byName = (f: Figures) => { const [intake, sagaV] = judge(f); return { intake: intake!, saga: sagaV! }; };

describe('budget verdicts', () => {
  it('pass when intake keeps 60% of the reference and the saga p95 stays under 2 s', () => {
    const v = judge(figures([1000, 1000], [700, 500]));
    expect(v.map((x) => x.pass)).toEqual([true, true]);
    expect(v.every((x) => x.problems.length === 0)).toBe(true);
  });

  it('intake: the ratio is of the sums over the rounds, and below the threshold fails', () => {
    expect(intakeRatio(figures([300, 700], [400, 400]).intake)).toBeCloseTo(0.8);
    expect(byName(figures([1000, 1000], [600, 600])).intake.pass).toBe(true); // exactly 60%
    const low = byName(figures([1000, 1000], [600, 590])).intake;
    expect(low.pass).toBe(false);
    expect(low.problems).toEqual(["intake at 59.5% of the reference, below 60%"]);
    expect(byName(figures([1000, 1000], [600, 590])).saga.pass).toBe(true);
  });

  it('intake: non-2xx answers or errors on either side void the figure, however fast', () => {
    const f = figures([1000], [5000]);
    f.intake.orders[0] = row(5000, { non2xx: 12 });
    expect(byName(f).intake).toMatchObject({ pass: false, problems: ['intake: 12 non-2xx answers'] });
    const g = figures([1000], [900]);
    g.intake.bare[0] = row(1000, { errors: 3 });
    expect(byName(g).intake).toMatchObject({ pass: false, problems: ['reference: 3 errors or timeouts'] });
  });

  it('intake: no reference, or rounds that do not pair, fail rather than pass', () => {
    expect(byName(figures([0], [500])).intake.problems).toContain('no ratio: the reference measured nothing');
    expect(byName(figures([], [])).intake.pass).toBe(false);
    expect(byName(figures([1000, 1000], [900])).intake.pass).toBe(false);
  });

  it('saga: p95 at or over 2 s fails, and so does one unfinished or refused order', () => {
    expect(byName(figures([1], [1], { p95Ms: 1999 })).saga.pass).toBe(true);
    expect(byName(figures([1], [1], { p95Ms: 2000 })).saga.problems).toEqual(['p95 2000 ms, not under 2000 ms']);
    expect(byName(figures([1], [1], { p95Ms: NaN, finished: 0 })).saga.pass).toBe(false);
    expect(byName(figures([1], [1], { finished: 899 })).saga.problems).toEqual(['1 accepted orders never finished their saga']);
    expect(byName(figures([1], [1], { accepted: 899, finished: 899, errors: 1 })).saga.problems).toEqual(['1 of 900 orders not accepted (1 errors)']);
    expect(byName(figures([1], [1], { accepted: 0, finished: 0, errors: 900, p95Ms: NaN })).saga.pass).toBe(false);
  });

  it('saga: on a machine so slow that sagas alone take over 500 ms, the limit is 4 × their p95 in the same run', () => {
    expect(sagaP95Limit({ aloneP95Ms: 150 })).toBe(2000);
    expect(sagaP95Limit({ aloneP95Ms: 2100 })).toBe(8400);
    expect(sagaP95Limit({ aloneP95Ms: NaN })).toBe(2000);
    expect(byName(figures([1], [1], { aloneP95Ms: 2100, p95Ms: 3468 })).saga.pass).toBe(true);
    expect(byName(figures([1], [1], { aloneP95Ms: 2100, p95Ms: 8400 })).saga.problems).toEqual(['p95 8400 ms, not under 8400 ms']);
    // The floor raises the limit, never lowers it below 2 s.
    expect(byName(figures([1], [1], { aloneP95Ms: 10, p95Ms: 1999 })).saga.pass).toBe(true);
  });

  it('saga: a generator that lagged behind the offered rate fails the run (it measured a lighter load)', () => {
    expect(byName(figures([1], [1], { sentPerSecond: 53 })).saga.problems).toEqual(['the generator sent 53.0/s of the 60/s offered']);
    expect(byName(figures([1], [1], { sentPerSecond: 54 })).saga.pass).toBe(true);
  });

  it("saga: the rate is 60/s scaled by this run's reference against the quiet box's, never above 60/s", () => {
    expect(sagaRateFor([row(THRESHOLDS.referenceQuietRps)])).toBe(60);
    expect(sagaRateFor([row(9000), row(12000)])).toBe(60);
    expect(sagaRateFor([row(300), row(777)])).toBeCloseTo((60 * 538.5) / THRESHOLDS.referenceQuietRps, 1);
    expect(sagaRateFor([row(0)])).toBe(0.1);
    expect(sagaRateFor([row(THRESHOLDS.referenceQuietRps / 2)], { ...THRESHOLDS, sagaRate: 100 })).toBe(50);
  });

  it('the table shows each figure, its threshold and verdict, and why a budget failed', () => {
    const t = table(judge(figures([1000, 1000], [300, 300], { p95Ms: 2500 })));
    expect(t.split('\n')[0]).toMatch(/^budget\s+measured\s+threshold\s+verdict$/);
    expect(t).toContain('300+300 / 1000+1000 = 30%');
    expect(t).toContain('≥ 60%');
    expect(t).toContain('2500 ms');
    expect(t.match(/FAIL/g)).toHaveLength(2);
    expect(t).toContain('  - p95 2500 ms, not under 2000 ms');
    expect(t).toContain('< 2000 ms = max(2000, 4 × alone)');
  });
});
