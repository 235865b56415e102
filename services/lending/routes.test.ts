// Request validation and the bulk insert. T24 is down for this file's whole run, so
// nothing accepted here reaches it (the breaker holds the items).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';
import { startTestCluster, type TestCluster } from '../testing/index.ts';
import { parseOrderRequest } from './routes.ts';

let c: TestCluster;
let t24: RunningT24Simulator;

beforeAll(async () => {
  t24 = await startT24Simulator({ port: 0, outage: true });
  c = await startTestCluster({ TARGET: 'lending', T24_URL: t24.url, T24_MAX_RPS: '20' });
});
afterAll(async () => {
  await c?.close();
  await t24?.close();
});

const post = (body: unknown) => c.post('/api/lending/orders', body);
const items = (n: number, amount = 1) => Array.from({ length: n }, (_, i) => ({ loanId: `B${i}`, amount }));

describe('POST /api/lending/orders validation', () => {
  const bad: [string, unknown][] = [
    ['empty items', { investorId: 'inv-7', items: [] }],
    ['a negative amount', { investorId: 'inv-7', items: [{ loanId: 'N-1', amount: -5 }] }],
    ['a zero amount', { investorId: 'inv-7', items: [{ loanId: 'N-1', amount: 0 }] }],
    ['an amount as a string', { investorId: 'inv-7', items: [{ loanId: 'N-1', amount: '250.00' }] }],
    ['a missing amount', { investorId: 'inv-7', items: [{ loanId: 'N-1' }] }],
    ['repeated loan ids', { investorId: 'inv-7', items: [{ loanId: 'N-1', amount: 1 }, { loanId: 'N-2', amount: 1 }, { loanId: 'N-1', amount: 2 }] }],
    ['no investorId', { items: [{ loanId: 'N-1', amount: 1 }] }],
    ['an empty loanId', { investorId: 'inv-7', items: [{ loanId: '', amount: 1 }] }],
    ['items not an array', { investorId: 'inv-7', items: 'N-1' }],
    ['a loanId with a slash', { investorId: 'inv-7', items: [{ loanId: '../N-1', amount: 1 }] }],
    ['null', null],
  ];
  for (const [what, body] of bad) {
    it(`answers ${what} with 400 VALIDATION_FAILED`, async () => {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.details.length).toBeGreaterThan(0);
    });
  }

  it('answers malformed JSON with 400', async () => {
    const res = await fetch(`${c.url}/api/lending/orders`, { method: 'POST', headers: { 'content-type': 'application/json', ...await c.authHeaders() }, body: '{"investorId": ' });
    expect(res.status).toBe(400);
  });

  it('names the repeated loan id in details', async () => {
    const res = await post({ investorId: 'inv-7', items: [{ loanId: 'N-1', amount: 1 }, { loanId: 'N-1', amount: 2 }] });
    expect(res.body.error.details).toEqual([expect.objectContaining({ field: 'items.1.loanId' })]);
  });

  it('caps details at 100 when every item is bad', () => {
    try {
      parseOrderRequest({ investorId: 'i', items: items(5000, -1) });
      expect.unreachable();
    } catch (err) {
      expect((err as { details: unknown[] }).details).toHaveLength(100);
    }
  });

  it('answers 50,001 items with 400, not 413', async () => {
    const res = await post({ investorId: 'inv-big', items: items(50_001) });
    expect(res.status).toBe(400);
    expect(res.body.error.details[0].field).toBe('items');
  });

  it('accepts 50,000 items: one order, 50,000 rows, 50 batch commands of 1000', async () => {
    const res = await post({ investorId: 'inv-big', items: items(50_000, 12.34) });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ id: expect.any(String), status: 'IN_PROGRESS', totalItems: 50_000, batches: 50 });
    const em = c.deps.orm.em.fork();
    const [row] = await em.execute<{ n: string; batches: string; sum: string }[]>(
      'select count(*) as n, count(distinct batch_no) as batches, sum(amount)::text as sum from lending.items where order_id = ?', [res.body.id]);
    expect(row).toEqual({ n: '50000', batches: '50', sum: '617000.00' });
    const got = await c.get(`/api/lending/orders/${res.body.id}`);
    expect(got.body).toMatchObject({ status: 'IN_PROGRESS', investorId: 'inv-big', totalItems: 50_000, completedAt: null });
    const { pending, reserved, invested, failed } = got.body.counts;
    expect(pending + reserved + invested + failed).toBe(50_000);
  });

  it('404s unknown and malformed ids', async () => {
    for (const id of ['00000000-0000-0000-0000-000000000000', 'nope']) {
      expect((await c.get(`/api/lending/orders/${id}`)).status).toBe(404);
      expect((await c.get(`/api/lending/orders/${id}/events`)).status).toBe(404);
    }
  });
});
