// Lending orders end to end: the real runtime in-process, a private nats-server and
// database, and a T24 simulator this file controls.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';

let c: TestCluster;
let t24: RunningT24Simulator;

beforeAll(async () => {
  t24 = await startT24Simulator({ port: 0, maxRps: 400, seed: 7 });
  c = await startTestCluster({ TARGET: 'lending,admin', T24_URL: t24.url, T24_MAX_RPS: '400', LENDING_BATCH_SIZE: '50', T24_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await c?.close();
  await t24?.close();
});

let seq = 0;
const loans = (n: number, prefix = `L${++seq}`) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(6, '0')}`);
const order = (ids: string[], investorId = 'inv-7', amount = 250) => ({ investorId, items: ids.map((loanId) => ({ loanId, amount })) });

async function finished(id: string, timeoutMs = 60_000) {
  return await eventually(async () => {
    const r = await c.get(`/api/lending/orders/${id}`);
    return r.status === 200 && r.body.status !== 'IN_PROGRESS' ? r.body : null;
  }, { timeoutMs, what: `order ${id} to finish` });
}

const dlqFor = async (loanIds: string[]) =>
  (await c.get('/api/admin/dlq?stream=LENDING_ITEMS&limit=1000')).body.items.filter((e: { data: { loanId: string } }) => loanIds.includes(e.data.loanId));

describe('POST /api/lending/orders', () => {
  it('replays the first answer for the same Idempotency-Key', async () => {
    const body = order(loans(3));
    const h = { 'idempotency-key': `k-${Math.random()}` };
    const a = await c.post('/api/lending/orders', body, h);
    const b = await c.post('/api/lending/orders', body, h);
    expect(a.status).toBe(202);
    expect(b.body).toEqual(a.body);
    await finished(a.body.id);
    expect(t24.sim.loan(body.items[0]!.loanId)!.applied).toEqual({ reserve: 1, invest: 1 });
  });
});

describe('an order', () => {
  it('reserves then invests every item, once each in T24, and ends SUCCESS', async () => {
    const ids = loans(300);
    const res = await c.post('/api/lending/orders', order(ids, 'inv-ok', 120.5));
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'IN_PROGRESS', totalItems: 300, batches: 6 });
    const done = await finished(res.body.id);
    expect(done).toMatchObject({
      id: res.body.id, investorId: 'inv-ok', status: 'SUCCESS', totalItems: 300,
      counts: { pending: 0, reserved: 0, invested: 300, failed: 0 }, failedItems: [],
    });
    expect(new Date(done.completedAt).getTime()).toBeGreaterThanOrEqual(new Date(done.createdAt).getTime());
    for (const id of ids) {
      const loan = t24.sim.loan(id)!;
      expect(loan).toMatchObject({ status: 'INVESTED', investorId: 'inv-ok', orderId: res.body.id, amount: 120.5, applied: { reserve: 1, invest: 1 } });
      // Invest came after reserve for every loan: the phases do not overlap.
      expect(loan.transactions.map((t) => t.kind)).toEqual(['reserve', 'invest']);
    }
    const lastReserve = Math.max(...ids.map((id) => t24.sim.loan(id)!.transactions[0]!.at));
    const firstInvest = Math.min(...ids.map((id) => t24.sim.loan(id)!.transactions[1]!.at));
    expect(firstInvest).toBeGreaterThanOrEqual(lastReserve);
  });

  it('streams its counts as Server-Sent Events until a final status', async () => {
    const res = await c.post('/api/lending/orders', order(loans(120), 'inv-sse'));
    const events: { status: string; counts: Record<string, number> }[] = [];
    const stream = await fetch(`${c.url}/api/lending/orders/${res.body.id}/events`, { headers: await c.authHeaders() });
    expect(stream.headers.get('content-type')).toContain('text/event-stream');
    const text = await stream.text(); // ends when the order does
    for (const block of text.split('\n\n')) {
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) events.push(JSON.parse(data));
    }
    expect(events.length).toBeGreaterThan(1);
    expect(events[0]!.status).toBe('IN_PROGRESS');
    expect(events.at(-1)).toMatchObject({ status: 'SUCCESS', counts: { pending: 0, reserved: 0, invested: 120, failed: 0 } });
    for (const e of events) expect(e.counts.pending + e.counts.reserved + e.counts.invested + e.counts.failed).toBe(120);
    // Progress is monotone: invested never goes down.
    for (let i = 1; i < events.length; i++) expect(events[i]!.counts.invested).toBeGreaterThanOrEqual(events[i - 1]!.counts.invested);
  });

  it('fails missing and taken loans with their reasons, sends them to the DLQ, and ends PARTIALLY_INVESTED', async () => {
    const ids = loans(200);
    const missing = ids.slice(0, 3);
    const taken = ids.slice(3, 5);
    t24.sim.setKnobs({ missing: [...t24.sim.knobs().missing, ...missing], taken: [...t24.sim.knobs().taken, ...taken] });
    const res = await c.post('/api/lending/orders', order(ids, 'inv-partial'));
    const done = await finished(res.body.id);
    expect(done.status).toBe('PARTIALLY_INVESTED');
    expect(done.counts).toEqual({ pending: 0, reserved: 0, invested: 195, failed: 5 });
    expect(done.failedItems).toEqual([
      ...missing.map((loanId) => ({ loanId, reason: 'LOAN_NOT_FOUND' })),
      ...taken.map((loanId) => ({ loanId, reason: 'CONFLICT:RESERVED:another-investor' })),
    ]);
    const dlq = await eventually(async () => { const d = await dlqFor([...missing, ...taken]); return d.length === 5 ? d : null; }, { what: '5 DLQ entries' });
    for (const e of dlq) {
      expect(e).toMatchObject({ stream: 'LENDING_ITEMS', consumer: 'lending-items', subject: 'lending.items.reserve', reason: 'non-retryable' });
      expect(e.error).toMatch(missing.includes(e.data.loanId) ? /^LOAN_NOT_FOUND/ : /^CONFLICT:RESERVED:another-investor/);
    }
    for (const id of ids.slice(5)) expect(t24.sim.loan(id)!.applied).toEqual({ reserve: 1, invest: 1 });
  });

  it('ends FAILED when no item can be invested', async () => {
    const ids = loans(4);
    t24.sim.setKnobs({ missing: [...t24.sim.knobs().missing, ...ids] });
    const res = await c.post('/api/lending/orders', order(ids, 'inv-none'));
    const done = await finished(res.body.id);
    expect(done).toMatchObject({ status: 'FAILED', counts: { pending: 0, reserved: 0, invested: 0, failed: 4 } });
    expect(done.failedItems.map((f: { reason: string }) => f.reason)).toEqual(Array(4).fill('LOAN_NOT_FOUND'));
  });

  it('resumes a redriven DLQ item once the loan is fixed: invested on its own, counts and status follow', async () => {
    const ids = loans(60);
    const broken = ids[7]!;
    t24.sim.setKnobs({ missing: [...t24.sim.knobs().missing, broken] });
    const res = await c.post('/api/lending/orders', order(ids, 'inv-redrive'));
    const first = await finished(res.body.id);
    expect(first).toMatchObject({ status: 'PARTIALLY_INVESTED', counts: { invested: 59, failed: 1 }, failedItems: [{ loanId: broken, reason: 'LOAN_NOT_FOUND' }] });
    const [entry] = await eventually(async () => { const d = await dlqFor([broken]); return d.length ? d : null; }, { what: 'DLQ entry' });

    t24.sim.seedLoans([broken]); // someone fixed the loan in T24
    const r = await c.post(`/api/admin/dlq/${entry.id}/redrive`, undefined);
    expect(r.status).toBe(200);
    const after = await eventually(async () => {
      const o = (await c.get(`/api/lending/orders/${res.body.id}`)).body;
      return o.status === 'SUCCESS' ? o : null;
    }, { what: 'order to become SUCCESS' });
    expect(after).toMatchObject({ counts: { pending: 0, reserved: 0, invested: 60, failed: 0 }, failedItems: [] });
    expect(after.completedAt).not.toBeNull();
    expect(t24.sim.loan(broken)).toMatchObject({ status: 'INVESTED', investorId: 'inv-redrive', applied: { reserve: 1, invest: 1 } });
    expect(await dlqFor([broken])).toEqual([]);
  });

  it('keeps a loan in one active order: a second order holding it fails that item', async () => {
    const shared = loans(1, 'SHARED')[0]!;
    const a = await c.post('/api/lending/orders', order([shared, ...loans(30)], 'inv-a'));
    const doneA = await finished(a.body.id);
    expect(doneA.status).toBe('SUCCESS');
    const b = await c.post('/api/lending/orders', order([shared, ...loans(5)], 'inv-b'));
    const doneB = await finished(b.body.id);
    expect(doneB).toMatchObject({ status: 'PARTIALLY_INVESTED', counts: { invested: 5, failed: 1 }, failedItems: [{ loanId: shared, reason: 'LOAN_ALREADY_INVESTED' }] });
    // T24 saw no call for the second order's claim on it.
    expect(t24.sim.loan(shared)).toMatchObject({ investorId: 'inv-a', applied: { reserve: 1, invest: 1 } });
  });

  it('fails the loan of a concurrent order in our ledger before T24 is asked', async () => {
    t24.sim.setKnobs({ latencyMs: 30 });
    try {
      const ids = loans(40);
      const a = await c.post('/api/lending/orders', order(ids, 'inv-first'));
      await eventually(async () => (await c.deps.orm.em.fork().execute('select 1 from lending.loans where order_id = ?', [a.body.id])).length > 0, { what: 'first order claimed' });
      const b = await c.post('/api/lending/orders', order([ids[0]!], 'inv-second'));
      const doneB = await finished(b.body.id);
      expect(doneB).toMatchObject({ status: 'FAILED', failedItems: [{ loanId: ids[0], reason: expect.stringMatching(/^LOAN_(IN_ANOTHER_ORDER|ALREADY_INVESTED)$/) }] });
      expect((await finished(a.body.id)).status).toBe('SUCCESS');
    } finally {
      t24.sim.setKnobs({ latencyMs: 0 });
    }
  });
});
