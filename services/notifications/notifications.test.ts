import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';

let c: TestCluster;
// Short backoff so the retry tests do not wait the seed's 1 s, 2 s, 4 s ...
beforeAll(async () => { c = await startTestCluster({ TARGET: 'orders,notifications,admin' }); });
afterAll(async () => { await c?.close(); });
beforeEach(() => { c.sink.clear(); c.sink.setFaults({ tempFailFirst: 0, tempFailRate: 0, permFailTo: [], permFailAll: false }); });

const newOrder = async (email = 'ana@example.com') => {
  const orderId = `N-${Math.random().toString(36).slice(2, 10)}`;
  const res = await c.post('/api/orders', { orderId, email, paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] });
  expect(res.status).toBe(202);
  return { orderId, id: res.body.id as string };
};
const mailsFor = (id: string) => c.sink.messages().filter((m) => m.messageId === `<${id}.received@orderflow>`);

describe('order received mail', () => {
  it('arrives once, with the orderId in the subject and a Message-ID derived from (order, kind)', async () => {
    const { orderId, id } = await newOrder();
    await eventually(() => mailsFor(id).length === 1, { what: 'mail' });
    const [m] = mailsFor(id);
    expect(m!.subject).toContain(orderId);
    expect(m!.to).toEqual(['ana@example.com']);
    await new Promise((r) => setTimeout(r, 500));
    expect(mailsFor(id)).toHaveLength(1);
  });

  it('carries the request id from the HTTP request through NATS into the mail', async () => {
    const orderId = `R-${Math.random().toString(36).slice(2, 10)}`;
    const res = await c.post('/api/orders', { orderId, email: 'rid@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] }, { 'x-request-id': 'trace-me-42' });
    await eventually(() => mailsFor(res.body.id).length === 1, { what: 'mail' });
    expect(mailsFor(res.body.id)[0]!.headers['x-request-id']).toBe('trace-me-42');
  });

  it('sends nothing for an event delivered again, or an order whose mail is already recorded', async () => {
    const { id } = await newOrder();
    await eventually(() => mailsFor(id).length === 1, { what: 'first mail' });
    // The same event published again (another Nats-Msg-Id, same logical id): the inbox stops it.
    const [event] = await c.deps.orm.em.fork().execute<{ payload: string }[]>(
      "select jsonb_build_object('id', id, 'orderId', order_id, 'email', email, 'items', items, 'createdAt', created_at)::text as payload from orders.orders where id = ?", [id]);
    const { headers } = await import('@nats-io/transport-node');
    const logical = (await c.deps.nats.jsm.streams.getMessage('ORDERS', { last_by_subj: 'orders.created' }))!.header.get('Orderflow-Msg-Id');
    const h = headers();
    h.set('Orderflow-Msg-Id', logical);
    // A second event for the order under a new logical id: the (order, kind) claim stops it.
    await c.deps.nats.js.publish('orders.created', event!.payload, { headers: h });
    await c.deps.nats.js.publish('orders.created', event!.payload);
    await new Promise((r) => setTimeout(r, 1500));
    expect(mailsFor(id)).toHaveLength(1);
  });

  it('is retried after 451 replies and still arrives once', async () => {
    c.sink.setFaults({ tempFailFirst: 2 });
    const { id } = await newOrder();
    await eventually(() => mailsFor(id).length === 1, { what: 'mail after 451s', timeoutMs: 20_000 });
    expect(c.sink.stats().tempFailed).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 1000));
    expect(mailsFor(id)).toHaveLength(1);
  });

  it('goes to the DLQ with the reply text on 550, and a redrive after the fix sends it once', async () => {
    c.sink.setFaults({ permFailTo: ['bounce@example.com'] });
    const { id } = await newOrder('bounce@example.com');
    const entry = await eventually(async () => {
      const { body } = await c.get('/api/admin/dlq?stream=ORDERS&consumer=notifications');
      return body.items.find((e: any) => e.data.id === id);
    }, { what: 'DLQ entry' });
    expect(entry).toMatchObject({ stream: 'ORDERS', consumer: 'notifications', subject: 'orders.created', reason: 'non-retryable', deliveries: 1 });
    expect(entry.error).toContain('550');
    expect(entry.error).toContain('Mailbox unavailable');
    expect((await c.get(`/api/admin/dlq/${entry.id}`)).body.data.id).toBe(id);
    expect(mailsFor(id)).toHaveLength(0);

    c.sink.setFaults({ permFailTo: [] });
    const r = await c.post(`/api/admin/dlq/${entry.id}/redrive`, undefined);
    expect(r.status).toBe(200);
    await eventually(() => mailsFor(id).length === 1, { what: 'mail after redrive' });
    expect((await c.get(`/api/admin/dlq/${entry.id}`)).status).toBe(404);
    // A second redrive of the same entry finds nothing to redrive.
    expect((await c.post(`/api/admin/dlq/${entry.id}/redrive`, undefined)).status).toBe(404);
    await new Promise((r) => setTimeout(r, 500));
    expect(mailsFor(id)).toHaveLength(1);
  });

  it('redrives in bulk by filter, and deletes entries', async () => {
    c.sink.setFaults({ permFailAll: true });
    const a = await newOrder('x1@example.com');
    const b = await newOrder('x2@example.com');
    await eventually(async () => (await c.get('/api/admin/dlq?consumer=notifications')).body.items.filter((e: any) => [a.id, b.id].includes(e.data.id)).length === 2, { what: 'two DLQ entries' });
    const third = await newOrder('x3@example.com');
    const e3 = await eventually(async () => (await c.get('/api/admin/dlq')).body.items.find((e: any) => e.data.id === third.id), { what: 'third entry' });
    expect((await c.fetch(`/api/admin/dlq/${e3.id}`, { method: 'DELETE' })).status).toBe(204);
    c.sink.setFaults({ permFailAll: false });
    const res = await c.post('/api/admin/dlq/redrive', { stream: 'ORDERS', consumer: 'notifications' });
    expect(res.status).toBe(200);
    expect(res.body.redriven).toBeGreaterThanOrEqual(2);
    await eventually(() => mailsFor(a.id).length === 1 && mailsFor(b.id).length === 1, { what: 'bulk-redriven mails' });
    expect(mailsFor(third.id)).toHaveLength(0);
  });

  it('rejects bad admin input with 4xx', async () => {
    expect((await c.get('/api/admin/dlq?limit=abc')).status).toBe(400);
    expect((await c.get('/api/admin/dlq/999999')).status).toBe(404);
    expect((await c.get('/api/admin/dlq/not-a-number')).status).toBe(404);
    expect((await c.post('/api/admin/dlq/redrive', { stream: 'bad stream!' })).status).toBe(400);
  });
});
