// The performance budgets' verdict: figures measured in one run in, pass or fail per
// budget out. Pure, so the rules are tested without a measurement (verdict.test.ts).
//
// Each budget is a ratio to something measured in the same run, or a latency at a rate
// far below the ceiling, so a slower or busier machine moves both sides and does not fail
// the build; a regression in our code moves only one.
import type { LoadRow } from '../orders-load.ts';

export type SagaFigures = {
  /** Orders offered per second and for how long. */
  rate: number; seconds: number;
  /** The rate the generator managed (a lagging generator would measure a lighter load). */
  sentPerSecond: number;
  offered: number; accepted: number; finished: number; errors: number;
  p50Ms: number; p95Ms: number; p99Ms: number;
  /** p95 of sagas sent one at a time (each after the last finished), in the same run: the machine's latency floor. */
  aloneP95Ms: number;
};
export type Figures = {
  /** Alternating rounds of equal length: the bare-insert reference, and orders intake. */
  intake: { bare: LoadRow[]; orders: LoadRow[] };
  saga: SagaFigures;
};
export type Thresholds = { intakeMinRatio: number; sagaP95MaxMs: number; sagaP95OverAlone: number; sagaMinSentShare: number; sagaRate: number; referenceQuietRps: number };

export const THRESHOLDS: Thresholds = {
  intakeMinRatio: 0.6,
  sagaP95MaxMs: 2000,
  // A saga is a dozen hops, each waiting for a core: on a busy box even one saga alone takes
  // seconds (p95 2.1-3.5 s seen at load 35 on 2 cores). The latency budget is then a ratio to
  // that floor, measured in the same run: p95 under load within 4 × the p95 alone. On a quiet
  // box (one saga alone well under 500 ms) the 2 s holds as written.
  sagaP95OverAlone: 4,
  // The saga's budget is "60/s with p95 under 2 s" on the quiet 2-core box, where this check's
  // bare-insert reference rounds do ~4,300/s (3,917-4,623 in a CI run on the quiet box,
  // 2026-12-02; an earlier 6,900 was not this check's measure and ran the saga at 38/s there):
  // 60/s is under half the saga's ceiling there. A busier or slower machine gets the same share
  // of its own speed, read from the reference in this run; a faster one still gets 60/s.
  sagaRate: 60,
  referenceQuietRps: 4300,
  // Below this share of the offered rate the generator itself lagged: the run measured a lighter load than it claims.
  sagaMinSentShare: 0.9,
};

export type Verdict = { name: string; measured: string; threshold: string; pass: boolean; problems: string[] };

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : String(n));

/** Intake's throughput over the reference's, both summed over their rounds (of equal length). */
export function intakeRatio(f: Figures['intake']): number {
  const bare = sum(f.bare.map((r) => r.rps));
  return bare > 0 ? sum(f.orders.map((r) => r.rps)) / bare : NaN;
}

/** The saga's offered rate for a run whose reference did `bare` (rounds, per second): 60/s scaled by the machine's speed, never above 60/s. */
export function sagaRateFor(bare: LoadRow[], t: Thresholds = THRESHOLDS): number {
  const rps = bare.length ? sum(bare.map((r) => r.rps)) / bare.length : 0;
  // Whole tenths: the rate is printed, and 0 would measure nothing (judgeSaga fails a run with no order).
  return Math.max(0.1, Math.round(Math.min(t.sagaRate, (t.sagaRate * rps) / t.referenceQuietRps) * 10) / 10);
}

/** The saga's p95 limit: 2 s, or 4 × the p95 of sagas alone in the same run when the machine is that slow. A missing floor (NaN) leaves 2 s. */
export function sagaP95Limit(s: Pick<SagaFigures, 'aloneP95Ms'>, t: Thresholds = THRESHOLDS): number {
  return Number.isFinite(s.aloneP95Ms) ? Math.max(t.sagaP95MaxMs, t.sagaP95OverAlone * s.aloneP95Ms) : t.sagaP95MaxMs;
}

/** `judge(figures)`: one verdict per budget, failing with its reasons. */
export function judge(f: Figures, t: Thresholds = THRESHOLDS): Verdict[] {
  return [judgeIntake(f.intake, t), judgeSaga(f.saga, t)];
}

function judgeIntake(f: Figures['intake'], t: Thresholds): Verdict {
  const problems: string[] = [];
  const ratio = intakeRatio(f);
  if (!f.bare.length || !f.orders.length || f.bare.length !== f.orders.length) problems.push(`rounds: ${f.bare.length} of the reference, ${f.orders.length} of intake (need the same number, at least one)`);
  if (!Number.isFinite(ratio)) problems.push('no ratio: the reference measured nothing');
  else if (ratio < t.intakeMinRatio) problems.push(`intake at ${(ratio * 100).toFixed(1)}% of the reference, below ${(t.intakeMinRatio * 100).toFixed(0)}%`);
  // A fast stream of 401s or 500s is not intake: any answer but 2xx voids the figure.
  for (const [who, rows] of [['intake', f.orders], ['reference', f.bare]] as const) {
    const non2xx = sum(rows.map((r) => r.non2xx));
    const errors = sum(rows.map((r) => r.errors));
    if (non2xx) problems.push(`${who}: ${non2xx} non-2xx answers`);
    if (errors) problems.push(`${who}: ${errors} errors or timeouts`);
  }
  return {
    name: 'intake / bare-insert reference (POST /api/orders/s)',
    measured: `${f.orders.map((r) => f0(r.rps)).join('+')} / ${f.bare.map((r) => f0(r.rps)).join('+')} = ${Number.isFinite(ratio) ? `${(ratio * 100).toFixed(0)}%` : '–'}`,
    threshold: `≥ ${(t.intakeMinRatio * 100).toFixed(0)}%`,
    pass: !problems.length, problems,
  };
}

function judgeSaga(s: SagaFigures, t: Thresholds): Verdict {
  const problems: string[] = [];
  if (!s.accepted) problems.push('no order accepted');
  if (s.errors || s.accepted < s.offered) problems.push(`${s.offered - s.accepted} of ${s.offered} orders not accepted (${s.errors} errors)`);
  if (s.finished < s.accepted) problems.push(`${s.accepted - s.finished} accepted orders never finished their saga`);
  const limit = sagaP95Limit(s, t);
  if (!(s.p95Ms < limit)) problems.push(`p95 ${f0(s.p95Ms)} ms, not under ${f0(limit)} ms`);
  if (!(s.sentPerSecond >= s.rate * t.sagaMinSentShare)) problems.push(`the generator sent ${s.sentPerSecond.toFixed(1)}/s of the ${s.rate}/s offered`);
  return {
    name: `saga at ${s.rate}/s for ${s.seconds} s, 202 → saga.done p95`,
    measured: `${f0(s.p95Ms)} ms (p50 ${f0(s.p50Ms)}, p99 ${f0(s.p99Ms)}; ${s.finished}/${s.offered} done; alone p95 ${f0(s.aloneP95Ms)})`,
    threshold: `< ${f0(limit)} ms = max(${t.sagaP95MaxMs}, ${t.sagaP95OverAlone} × alone), all done`,
    pass: !problems.length, problems,
  };
}

/** The verdicts as a small aligned table, with each failure's reasons under it. */
export function table(verdicts: Verdict[]): string {
  const head = ['budget', 'measured', 'threshold', 'verdict'];
  const rows = verdicts.map((v) => [v.name, v.measured, v.threshold, v.pass ? 'pass' : 'FAIL']);
  const width = head.map((_, i) => Math.max(head[i]!.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i]!)).join('  ').trimEnd();
  return [line(head), ...verdicts.flatMap((v, i) => [line(rows[i]!), ...v.problems.map((p) => `  - ${p}`)])].join('\n');
}
