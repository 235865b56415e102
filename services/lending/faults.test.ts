// Lending under T24 faults: flaky answers, an outage the breaker rides out, and a
// retry budget that runs out.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';

let c: TestCluster;
let t24: RunningT24Simulator;

beforeAll(async () => {
  t24 = await startT24Simulator({ port: 0, maxRps: 300, seed: 11 });
  c = await startTestCluster({
    TARGET: 'lending,admin', T24_URL: t24.url, T24_MAX_RPS: '300', LENDING_BATCH_SIZE: '100',
    T24_HEARTBEAT_MS: '200', T24_BREAKER_RESET_MS: '1000', T24_TIMEOUT_MS: '2000', LENDING_RETRY_BASE_MS: '200',
  });
});
afterAll(async () => {
  await c?.close();
  await t24?.close();
});
afterEach(() => {
  t24.sim.setKnobs({ fail503Rate: 0, fail500AfterApplyRate: 0, dropAfterApplyRate: 0, outage: false });
});

let seq = 0;
const loans = (n: number) => { seq++; return Array.from({ length: n }, (_, i) => `F${seq}-${String(i).padStart(5, '0')}`); };
const post = async (ids: string[], investorId: string) => {
  const r = await c.post('/api/lending/orders', { investorId, items: ids.map((loanId) => ({ loanId, amount: 100 })) });
  expect(r.status).toBe(202);
  return r.body.id as string;
};
const finished = (cl: TestCluster, id: string, timeoutMs = 90_000) =>
  eventually(async () => { const r = await cl.get(`/api/lending/orders/${id}`); return r.status === 200 && r.body.status !== 'IN_PROGRESS' ? r.body : null; }, { timeoutMs, what: `order ${id} to finish` });
const metric = async (cl: TestCluster, name: string) => {
  const text = await (await fetch(`${cl.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
};
const dlqDepth = async (cl: TestCluster) => (await cl.get('/api/admin/dlq?stream=LENDING_ITEMS&limit=1000')).body.items.length;

describe('T24 faults', () => {
  it('5% 503, 2% apply-then-500, 1% apply-then-drop: every item invested, each change applied once', async () => {
    t24.sim.reset('stats');
    t24.sim.setKnobs({ fail503Rate: 0.05, fail500AfterApplyRate: 0.02, dropAfterApplyRate: 0.01 });
    const ids = loans(400);
    const done = await finished(c, await post(ids, 'inv-flaky'));
    expect(done).toMatchObject({ status: 'SUCCESS', counts: { pending: 0, reserved: 0, invested: 400, failed: 0 } });
    const stats = t24.sim.stats();
    // The faults did happen, and after-apply faults were resolved by resending (a same-investor 409) rather than re-applying.
    expect(stats.errors5xx).toBeGreaterThan(20);
    expect(stats.drops).toBeGreaterThan(0);
    expect(stats.statuses['500']).toBeGreaterThan(0);
    for (const id of ids) expect(stats.appliedPerLoan![id], id).toEqual({ reserve: 1, invest: 1 });
    expect(stats.rateLimited).toBe(0);
    expect(await dlqDepth(c)).toBe(0);
  });

  it('after apply-then-500s and drops the move is sent again, not read back: one call per fault, each change applied once', async () => {
    t24.sim.reset('stats');
    t24.sim.setKnobs({ fail500AfterApplyRate: 0.2, dropAfterApplyRate: 0.1 });
    const ids = loans(150);
    const done = await finished(c, await post(ids, 'inv-resend'));
    expect(done).toMatchObject({ status: 'SUCCESS', counts: { invested: 150, failed: 0 } });
    const stats = t24.sim.stats();
    expect(stats.statuses['500']).toBeGreaterThan(10);
    expect(stats.drops).toBeGreaterThan(5);
    // The resend answers 409 with this investor: no read-back, and nothing beyond one call per fault.
    expect(stats.requests.get).toBe(0);
    expect(stats.requests.total).toBe(2 * ids.length + stats.errors5xx + stats.drops);
    for (const id of ids) expect(stats.appliedPerLoan![id], id).toEqual({ reserve: 1, invest: 1 });
  });

  it('calls that hang past T24_TIMEOUT_MS and land later: read back, applied once', async () => {
    t24.sim.reset('stats');
    t24.sim.setKnobs({ timeoutRate: 0.05, timeoutMs: 2500, latencyMs: { min: 0, max: 20 } });
    try {
      const ids = loans(150);
      const done = await finished(c, await post(ids, 'inv-slow'));
      expect(done).toMatchObject({ status: 'SUCCESS', counts: { invested: 150 } });
      const stats = t24.sim.stats();
      expect(stats.timeouts).toBeGreaterThan(0);
      for (const id of ids) expect(stats.appliedPerLoan![id], id).toEqual({ reserve: 1, invest: 1 });
    } finally {
      t24.sim.setKnobs({ timeoutRate: 0, latencyMs: 0 });
    }
  });

  it('an outage shorter than the retry budget: the breaker holds the items, none reaches the DLQ', async () => {
    t24.sim.reset('stats');
    const outageMs = 8000;
    const from = Date.now();
    t24.sim.setKnobs({ outageForMs: outageMs });
    const ids = loans(300);
    const id = await post(ids, 'inv-outage');
    const done = await finished(c, id);
    expect(done).toMatchObject({ status: 'SUCCESS', counts: { invested: 300, failed: 0 }, failedItems: [] });
    expect(await dlqDepth(c)).toBe(0);
    const stats = t24.sim.stats();
    for (const l of ids) expect(stats.appliedPerLoan![l]).toEqual({ reserve: 1, invest: 1 });
    expect(stats.errors5xx).toBeGreaterThan(0);
    // The breaker opened and the workers stopped pulling: some second of the outage saw (next to) no calls.
    expect(await metric(c, 'orderflow_t24_breaker_opened')).toBeGreaterThanOrEqual(1);
    const during = stats.perSecond.filter((s) => s.second * 1000 >= from + 1000 && (s.second + 1) * 1000 <= from + outageMs);
    expect(Math.min(...during.map((s) => s.requests))).toBeLessThanOrEqual(5);
    // No item spent its budget: open-breaker waits do not count.
    const [worst] = await c.deps.orm.em.fork().execute<{ max: number }[]>('select max(failures) as max from lending.items where order_id = ?', [id]);
    expect(worst!.max).toBeLessThan(12);
  });
});

describe('loans that always fail', () => {
  it('a few always-503 loans among many good ones: the breaker stays closed, they reach the DLQ after the seed\'s short budget, the rest invest', async () => {
    const sim = await startT24Simulator({ port: 0, maxRps: 300, seed: 5 });
    // Defaults otherwise: the breaker rules and the item budget (1 s, 2 s, 4 s, 8 s) are what is under test.
    const own = await startTestCluster({ TARGET: 'lending,admin', T24_URL: sim.url, T24_MAX_RPS: '300', T24_HEARTBEAT_MS: '200', LENDING_BATCH_SIZE: '100' });
    try {
      const ids = Array.from({ length: 300 }, (_, i) => `B-${String(i).padStart(4, '0')}`);
      // Spread through the order, the last one near its end: once the good items are done, only they are left failing.
      const bad = [ids[40]!, ids[110]!, ids[170]!, ids[230]!, ids[290]!, ids[299]!];
      sim.sim.setKnobs({ failing: bad });
      const r = await own.post('/api/lending/orders', { investorId: 'inv-bad-loans', items: ids.map((loanId) => ({ loanId, amount: 10 })) });
      expect(r.status).toBe(202);
      const done = await finished(own, r.body.id, 60_000);
      expect(done).toMatchObject({ status: 'PARTIALLY_INVESTED', counts: { pending: 0, reserved: 0, invested: 294, failed: 6 } });
      expect(done.failedItems).toEqual(bad.map((loanId) => ({ loanId, reason: 'T24_UNAVAILABLE' })));
      const dlq = await eventually(async () => { const d = (await own.get('/api/admin/dlq?stream=LENDING_ITEMS&limit=100')).body.items; return d.length === 6 ? d : null; }, { what: '6 DLQ entries' });
      for (const e of dlq) expect(e.error).toMatch(/^T24_UNAVAILABLE: reserve of loan B-\d+ .*\(5 failures, /);
      // A handful of bad loans is not an outage.
      expect(await metric(own, 'orderflow_t24_breaker_opened')).toBe(0);
      // Each bad item spent exactly the seed's budget: five tries, four waits.
      const rows = await own.deps.orm.em.fork().execute<{ loan_id: string; failures: number }[]>(
        'select loan_id, failures from lending.items where order_id = ? and failures > 0 order by loan_id', [r.body.id]);
      expect(rows).toEqual(bad.map((loan_id) => ({ loan_id, failures: 5 })));
      const stats = sim.sim.stats();
      for (const id of ids) expect(stats.appliedPerLoan![id], id).toEqual(bad.includes(id) ? undefined : { reserve: 1, invest: 1 });
      expect(stats.rateLimited).toBe(0);
    } finally {
      await own.close();
      await sim.close();
    }
  });
});

describe('an exhausted retry budget', () => {
  it('fails the item with T24_UNAVAILABLE into the DLQ, and a redrive after T24 recovers invests it', async () => {
    const sim = await startT24Simulator({ port: 0, maxRps: 200, outage: true });
    const small = await startTestCluster({
      TARGET: 'lending,admin', T24_URL: sim.url, T24_MAX_RPS: '200', T24_HEARTBEAT_MS: '200',
      T24_BREAKER_RESET_MS: '200', T24_TIMEOUT_MS: '1000', LENDING_ITEM_MAX_FAILURES: '2', LENDING_RETRY_BASE_MS: '50',
      // An open breaker never spends the budget, so keep it closed to let T24's 503s count.
      T24_BREAKER_VOLUME: '1000000000',
    });
    try {
      const ids = ['X-1', 'X-2', 'X-3'];
      const r = await small.post('/api/lending/orders', { investorId: 'inv-budget', items: ids.map((loanId) => ({ loanId, amount: 5 })) });
      const done = await finished(small, r.body.id);
      expect(done).toMatchObject({ status: 'FAILED', counts: { failed: 3 } });
      expect(done.failedItems).toEqual(ids.map((loanId) => ({ loanId, reason: 'T24_UNAVAILABLE' })));
      const dlq = await eventually(async () => { const d = (await small.get('/api/admin/dlq?stream=LENDING_ITEMS')).body.items; return d.length === 3 ? d : null; }, { what: '3 DLQ entries' });
      for (const e of dlq) expect(e.error).toMatch(/^T24_UNAVAILABLE: reserve of loan X-\d/);

      sim.sim.setKnobs({ outage: false });
      expect((await small.post('/api/admin/dlq/redrive', { stream: 'LENDING_ITEMS' })).body).toEqual({ matched: 3, redriven: 3 });
      const after = await eventually(async () => { const o = (await small.get(`/api/lending/orders/${r.body.id}`)).body; return o.status === 'SUCCESS' ? o : null; }, { timeoutMs: 30_000, what: 'SUCCESS after redrive' });
      expect(after.counts).toEqual({ pending: 0, reserved: 0, invested: 3, failed: 0 });
      for (const l of ids) expect(sim.sim.loan(l)!.applied).toEqual({ reserve: 1, invest: 1 });
    } finally {
      await small.close();
      await sim.close();
    }
  });
});
