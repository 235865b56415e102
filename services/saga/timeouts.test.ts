// The seed 003 table, part 2: a step that times out is compensated, and a
// compensation that exhausts its retries waits in the DLQ until a redrive finishes it.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster, startCommerce, uid, type Commerce } from '../testing/index.ts';

let k: Commerce;
let shipping: TestCluster | undefined;
beforeAll(async () => {
  // No shipping service: the SHIPPING step can only time out.
  k = await startCommerce({
    TARGET: 'orders,catalog,inventory,payments,saga,notifications,admin',
    SAGA_STEP_TIMEOUT_MS: '400', SAGA_MAX_STEP_ATTEMPTS: '2', SAGA_SWEEP_MS: '100',
    // The breaker would hold the refund rather than fail it; this test wants it to fail.
    PAYMENTS_BREAKER_VOLUME: '1000000', PAYMENTS_RETRY_BASE_MS: '20', PAYMENTS_RETRY_MAX_MS: '80',
  });
});
afterAll(async () => { await shipping?.close(); await k?.close(); });

it('a shipping step that times out is compensated; a refund that exhausts its retries waits in the DLQ and a redrive finishes it', async () => {
  const sku = uid('TIMEOUT');
  await k.product(sku, 5, 900);
  const { body } = await k.order([{ sku, quantity: 2 }]);
  await eventually(async () => (await k.c.get(`/api/orders/${body.id}`)).body.status === 'PAID', { what: 'PAID' });
  expect(k.gw.sim.netCharged(body.id)).toBe(1800);

  // The gateway fails every call from now on: the refund the timeout starts cannot succeed.
  k.gw.sim.setKnobs({ fail503Rate: 1 });
  const entry = await eventually(async () => {
    const r = await k.c.get('/api/admin/dlq?stream=PAYMENTS');
    return r.body.items.find((e: any) => e.data.orderUuid === body.id);
  }, { what: 'refund in the DLQ', timeoutMs: 30_000 });
  expect(entry).toMatchObject({ stream: 'PAYMENTS', consumer: 'payments', subject: 'payments.cmd.refund', reason: 'max-deliveries' });
  expect(entry.error).toMatch(/503|unavailable/i);
  // The release compensation went through; the order is not FAILED while its charge stands.
  await eventually(async () => (await k.c.get(`/api/inventory/${sku}`)).body.reserved === 0, { what: 'stock released' });
  expect((await k.c.get(`/api/inventory/${sku}`)).body).toMatchObject({ onHand: 5, reserved: 0 });
  expect((await k.c.get(`/api/orders/${body.id}`)).body.status).toBe('PAID');
  expect(k.gw.sim.netCharged(body.id)).toBe(1800);

  // Shipping comes back (it answers the cancel), the gateway heals, an operator redrives the refund.
  shipping = await startTestCluster({ TARGET: 'shipping' }, { nats: k.c.nats, databaseUrl: k.c.databaseUrl, sink: k.c.sink });
  k.gw.sim.setKnobs({ fail503Rate: 0 });
  const r = await k.c.post(`/api/admin/dlq/${entry.id}/redrive`, undefined);
  expect(r.status).toBe(200);
  const o = await k.final(body.id);
  expect(o).toMatchObject({ status: 'FAILED', failureReason: 'SHIPPING_FAILED', trackingNumber: null });
  expect(o.history.map((h: any) => h.status)).toEqual(['PENDING', 'STOCK_RESERVED', 'PAID', 'FAILED']);
  expect(k.gw.sim.netCharged(body.id)).toBe(0);
  expect(k.gw.sim.refundsFor(body.id)).toHaveLength(1);
  const books = await k.books();
  expect(books.problems).toEqual([]);
});
