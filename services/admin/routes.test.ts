import { randomUUID } from 'node:crypto';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { sendToDlq, type DlqReason } from '../kit/dlq.ts';
import { NonRetryableError } from '../kit/index.ts';
import { startWorker, type Worker } from '../kit/index.ts';

let c: TestCluster;
const workers: Worker[] = [];
beforeAll(async () => { c = await startTestCluster({ TARGET: 'admin' }); });
afterAll(async () => { for (const w of workers) await w.stop(1000); await c?.close(); });

// Every request gives up after 2 s: an endpoint that hangs fails the test by aborting.
async function call(method: string, path: string, body?: unknown, auth?: Record<string, string>): Promise<{ status: number; body: any }> {
  const headers = auth ?? await c.authHeaders();
  const res = await fetch(c.url + path, {
    method, signal: AbortSignal.timeout(2000),
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let seqNo = 0;
/** A DLQ entry as a worker would leave it. */
async function dead(stream: string, subject: string, data: unknown, reason: DlqReason = 'non-retryable') {
  await sendToDlq(c.deps.nats.js, {
    stream, consumer: 'c', subject, seq: ++seqNo, deliveries: 1, reason, error: 'boom',
    data: new TextEncoder().encode(JSON.stringify(data)),
  });
}

const orderCreated = (id: string, orderId: string) => ({ id, orderId, email: 'a@example.com', phone: null, items: [{ sku: 'S1', quantity: 1 }], createdAt: new Date().toISOString() });

describe('DLQ admin: paging', () => {
  it('pages with cursor/nextCursor over every entry exactly once and reports the total, by subject alone and by content', async () => {
    for (let i = 0; i < 23; i++) {
      await dead('PAGED', `paged.${i}`, { n: i }, i % 2 ? 'max-deliveries' : 'non-retryable');
      if (i % 5 === 0) await dead('NOISE', 'noise.x', { n: i });
    }
    for (const [query, expected] of [['stream=PAGED', 23], ['stream=PAGED&reason=non-retryable', 12], ['subject=paged.*', 23]] as const) {
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const r = await call('GET', `/api/admin/dlq?${query}&limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(r.status).toBe(200);
        expect(r.body.total).toBe(expected);
        seen.push(...r.body.items.map((e: any) => e.data.n));
        cursor = r.body.nextCursor;
        pages++;
      } while (cursor && pages < 20);
      expect(cursor).toBeNull();
      expect(pages).toBe(Math.ceil(expected / 5));
      const want = [...Array(23).keys()].filter((n) => !query.includes('reason') || n % 2 === 0);
      expect(seen).toEqual(want);
    }
  });

  it('refuses a cursor it did not issue', async () => {
    const r = await call('GET', '/api/admin/dlq?cursor=bm9wZQ');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('VALIDATION_FAILED');
  });
});

describe('DLQ admin: key filter', () => {
  it('finds entries by orderId, order id, loanId, lending order id and application id', async () => {
    const order = randomUUID();
    const lendingOrder = randomUUID();
    const application = randomUUID();
    await dead('ORDERS', 'orders.created', orderCreated(order, 'ORD-KEY-1'));
    await dead('PAYMENTS', 'payments.cmd.charge', { orderUuid: order, amount: 100, currency: 'USD', source: null });
    await dead('LENDING_ITEMS', 'lending.items.reserve', { orderId: lendingOrder, loanId: 'LOAN-KEY-7' });
    await dead('LENDING_ITEMS', 'lending.items.reserve', { orderId: lendingOrder, loanId: 'LOAN-KEY-8' });
    await dead('FUNDING', 'funding.applications.created', { applicationId: application, businessId: 'b', amount: 1, currency: 'EUR', termMonths: 12, timestamp: 'now' });
    await dead('SAGA', 'saga.step.paid', { id: order, orderId: 'ORD-KEY-1' });
    const subjects = async (key: string) => {
      const r = await call('GET', `/api/admin/dlq?key=${key}`);
      expect(r.status).toBe(200);
      expect(r.body.total).toBe(r.body.items.length);
      return r.body.items.map((e: any) => e.subject);
    };
    expect(await subjects('ORD-KEY-1')).toEqual(['orders.created', 'saga.step.paid']);
    expect(await subjects(order)).toEqual(['orders.created', 'payments.cmd.charge', 'saga.step.paid']);
    expect(await subjects('LOAN-KEY-7')).toEqual(['lending.items.reserve']);
    expect(await subjects(lendingOrder)).toEqual(['lending.items.reserve', 'lending.items.reserve']);
    expect(await subjects(application)).toEqual(['funding.applications.created']);
    expect(await subjects('no-such-key')).toEqual([]);
    // Bulk redrive takes the key too.
    expect((await call('POST', '/api/admin/dlq/redrive', { key: 'LOAN-KEY-8', dryRun: true })).body).toEqual({ matched: 1, redriven: 0 });
  });
});

describe('DLQ admin: bulk redrive', () => {
  let streamNo = 0;
  /** A work queue whose handler always fails for good, and its N messages already in the DLQ. */
  async function failingQueue(N: number) {
    const stream = `BULKTEST${++streamNo}`;
    await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`bulktest${streamNo}.>`], retention: 'workqueue' as never, allow_direct: true });
    await c.deps.nats.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: 5, ack_wait: 30e9 });
    const q = { stream, calls: 0, entries: async () => (await call('GET', `/api/admin/dlq?stream=${stream}&limit=1000`)).body.items as any[] };
    workers.push(await startWorker({
      stream, consumer: 'w', schema: z.object({ n: z.number() }), inbox: false,
      js: c.deps.nats.js, orm: c.deps.orm, errors: c.deps.errors, log: c.deps.log, metrics: c.deps.metrics,
      handle: async () => { q.calls++; throw new NonRetryableError('still broken'); },
    }));
    for (let n = 0; n < N; n++) await c.deps.nats.js.publish(`bulktest${streamNo}.job`, JSON.stringify({ n }));
    await eventually(async () => (await q.entries()).length === N, { what: `${N} DLQ entries` });
    return q;
  }

  it('redrives a snapshot once: N entries that all fail again are redriven exactly N times and come back as N new entries', async () => {
    const N = 60;
    const q = await failingQueue(N);
    const before = (await q.entries()).map((e) => Number(e.id));
    const r = await call('POST', '/api/admin/dlq/redrive', { stream: q.stream });
    expect(r).toEqual({ status: 200, body: { matched: N, redriven: N } });
    const after = (await eventually(async () => { const l = await q.entries(); return l.length === N && q.calls === 2 * N ? l : undefined; }, { what: 'every redriven message back in the DLQ' }))!;
    expect(Math.min(...after.map((e) => Number(e.id)))).toBeGreaterThan(Math.max(...before));
    expect(new Set(after.map((e) => e.data.n)).size).toBe(N);
  });

  it('dryRun counts the matching entries and redrives none', async () => {
    const N = 7;
    const q = await failingQueue(N);
    const before = (await q.entries()).map((e) => e.id);
    expect(await call('POST', '/api/admin/dlq/redrive', { stream: q.stream, dryRun: true })).toEqual({ status: 200, body: { matched: N, redriven: 0 } });
    expect((await q.entries()).map((e) => e.id)).toEqual(before);
    expect(q.calls).toBe(N);
  });
});

describe('DLQ admin: replacement payloads', () => {
  it('checks a replacement against its subject schema: 400 and the entry stays; a valid one redrives', async () => {
    const id = randomUUID();
    await dead('ORDERS', 'orders.created', { id, orderId: 'REPL-1', email: 'a@example.com' });
    const entry = (await call('GET', '/api/admin/dlq?stream=ORDERS&limit=1000')).body.items.find((e: any) => e.data.orderId === 'REPL-1');
    expect(entry.subject).toBe('orders.created');

    const bad = await call('POST', `/api/admin/dlq/${entry.id}/redrive`, { data: { id: 'not-a-uuid', orderId: 'REPL-1', email: 'a@example.com', items: [] } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_FAILED');
    expect(bad.body.error.details.map((d: any) => d.field)).toEqual(expect.arrayContaining(['data.id', 'data.createdAt']));
    expect((await call('GET', `/api/admin/dlq/${entry.id}`)).status).toBe(200);

    const fixed = orderCreated(id, 'REPL-1');
    const ok = await call('POST', `/api/admin/dlq/${entry.id}/redrive`, { data: fixed });
    expect(ok).toEqual({ status: 200, body: { redriven: 1, id: entry.id, subject: 'orders.created' } });
    expect((await call('GET', `/api/admin/dlq/${entry.id}`)).status).toBe(404);
    const published = await c.deps.nats.jsm.streams.getMessage('ORDERS', { last_by_subj: 'orders.created' });
    expect(published!.json()).toEqual(fixed);
  });
});

// Last: it takes NATS away from the cluster.
describe('DLQ admin: NATS unreachable', () => {
  it('answers 503 UNAVAILABLE on every endpoint, within 2 s, never an empty list or a false 404', async () => {
    await dead('DOWNTEST', 'down.x', { n: 1 });
    const id = (await call('GET', '/api/admin/dlq?stream=DOWNTEST')).body.items[0].id;
    await c.nats.kill();
    try {
      const requests: [string, string, unknown?][] = [
        ['GET', '/api/admin/dlq'],
        ['GET', '/api/admin/dlq?key=x&limit=5'],
        ['GET', `/api/admin/dlq/${id}`],
        ['DELETE', `/api/admin/dlq/${id}`],
        ['POST', `/api/admin/dlq/${id}/redrive`],
        ['POST', `/api/admin/dlq/${id}/redrive`, { data: { n: 2 } }],
        ['POST', '/api/admin/dlq/redrive', { stream: 'DOWNTEST' }],
        ['POST', '/api/admin/dlq/redrive', { dryRun: true }],
      ];
      for (const [method, path, body] of requests) {
        const r = await call(method, path, body);
        expect({ method, path, status: r.status, code: r.body?.error?.code }).toEqual({ method, path, status: 503, code: 'UNAVAILABLE' });
      }
    } finally {
      await c.nats.restart();
    }
    // Back up, the entry is still there.
    await eventually(async () => (await call('GET', `/api/admin/dlq/${id}`)).status === 200, { what: 'DLQ readable again' });
  });
});
