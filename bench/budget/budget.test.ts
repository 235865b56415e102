// The budgets can fail: the same measurement as `npm run budget`, shortened, with two real
// settings turned to their slowest, must come back failed on both budgets. The settings
// make the failure arithmetic rather than a matter of machine speed:
//  - ORDERS_WRITE_BATCH=1: intake's group commit takes one order per statement, one
//    statement in flight (ORDERS_WRITE_CONCURRENCY's default), while the reference writes
//    on 20 pooled connections at once;
//  - PAYMENTS_CONCURRENCY=1 with a gateway answering in 300 ms: one charge at a time, so
//    at most 3.3 sagas/s finish while 10/s are offered for 6 s; order i waits at least
//    0.3 (i + 1) - 0.1 i s, the 57th (the p95) over 11.6 s, whatever the machine. Alone, a
//    saga waits the floor + 0.3 s, so even at load 35 (floor ~2.5 s) the limit, 4 × that,
//    stays under it.
// Nothing here asserts the time of a normal run: that is `npm run budget`, in .ci/run.
import { describe, expect, it } from 'vitest';
import { DEFAULTS, measureBudgets } from './measure.ts';
import { judge } from './verdict.ts';

describe('performance budgets', () => {
  it('fail when intake commits one order per statement and payments charge one at a time', async () => {
    const figures = await measureBudgets({
      ...DEFAULTS, intakeRounds: 2, intakeSeconds: 3, warmSeconds: 1,
      sagaRate: 10, sagaSeconds: 6, sagaFinishWithinMs: 60_000, sagaAlone: 5,
      intakeEnv: { ORDERS_WRITE_BATCH: '1' },
      sagaEnv: { PAYMENTS_CONCURRENCY: '1' },
      gateway: { latencyMs: 300 },
      log: (line) => console.error(line),
    });
    const [intake, saga] = judge(figures);
    expect(intake).toMatchObject({ pass: false, problems: [expect.stringMatching(/^intake at [\d.]+% of the reference, below 60%$/)] });
    // Every order got through: the budget failed on latency, not on a broken run.
    expect(figures.saga).toMatchObject({ offered: 60, accepted: 60, finished: 60 });
    expect(saga).toMatchObject({ pass: false, problems: [expect.stringMatching(/^p95 \d+ ms, not under \d+ ms$/)] });
    expect(figures.saga.p95Ms).toBeGreaterThan(10_000);
  }, 300_000);
});
