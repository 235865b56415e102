// The seed 003 table, part 1: happy path, stock unavailable, unknown SKU, declined,
// shipping failure, gateway faults, duplicate requests, load spike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startCommerce, uid, type Commerce } from '../testing/index.ts';

let k: Commerce;
// Short payment retries: without the breaker's pause, a 4 s gateway outage would exhaust max_deliver.
beforeAll(async () => { k = await startCommerce({ PAYMENTS_RETRY_MAX_MS: '200' }); });
afterAll(async () => { await k?.close(); });

const mails = (id: string, kind: string) => k.c.sink.messages().filter((m) => m.messageId === `<${id}.${kind}@orderflow>`);
const texts = (orderId: string, kind: string) => k.sms.sim.messages().filter((m) => m.body.includes(`order ${orderId} ${kind}`));

describe('the happy path', () => {
  it('reserves, charges once, ships with a tracking number, deducts, and tells the customer by mail and SMS', async () => {
    const sku = uid('HAPPY');
    await k.product(sku, 10, 1999);
    const r = await k.order([{ sku, quantity: 3 }]);
    expect(r.status).toBe(202);
    const o = await k.final(r.body.id);
    expect(o).toMatchObject({ status: 'SHIPPED', totalCents: 3 * 1999, currency: 'USD', failureReason: null });
    expect(o.trackingNumber).toMatch(/^OF[0-9A-F]{14}$/);
    expect(o.history.map((h: any) => h.status)).toEqual(['PENDING', 'STOCK_RESERVED', 'PAID', 'SHIPPED']);
    expect(k.gw.sim.chargesFor(o.id)).toHaveLength(1);
    expect(k.gw.sim.netCharged(o.id)).toBe(3 * 1999);
    await eventually(async () => (await k.c.get(`/api/inventory/${sku}`)).body.onHand === 7, { what: 'deducted' });
    expect((await k.c.get(`/api/inventory/${sku}`)).body).toEqual({ sku, onHand: 7, reserved: 0, available: 7 });
    await eventually(() => mails(o.id, 'shipped').length === 1 && texts(o.orderId, 'shipped').length === 1, { what: 'shipped mail and SMS' });
    expect(mails(o.id, 'shipped')[0]!.text).toContain(o.trackingNumber);
    expect(texts(o.orderId, 'shipped')[0]!.body).toContain(o.trackingNumber);
    await eventually(() => mails(o.id, 'received').length === 1 && texts(o.orderId, 'received').length === 1, { what: 'received mail and SMS' });
    const b = await k.books();
    expect(b.problems).toEqual([]);
  });

  it('sends no SMS for an order without a phone', async () => {
    const sku = uid('NOPHONE');
    await k.product(sku, 5);
    const r = await k.order([{ sku, quantity: 1 }], { phone: undefined });
    const o = await k.final(r.body.id);
    expect(o.status).toBe('SHIPPED');
    await eventually(() => mails(o.id, 'shipped').length === 1, { what: 'mail' });
    expect(k.sms.sim.messages().filter((m) => m.body.includes(o.orderId))).toHaveLength(0);
  });
});

describe('failures and compensations', () => {
  it('stock unavailable: FAILED OUT_OF_STOCK, no charge, nothing held', async () => {
    const sku = uid('SCARCE');
    await k.product(sku, 2);
    const r = await k.order([{ sku, quantity: 3 }]);
    const o = await k.final(r.body.id);
    expect(o).toMatchObject({ status: 'FAILED', failureReason: 'OUT_OF_STOCK' });
    expect(o.history.at(-1)).toMatchObject({ status: 'FAILED', reason: 'OUT_OF_STOCK' });
    expect(k.gw.sim.chargesFor(o.id)).toHaveLength(0);
    expect((await k.c.get(`/api/inventory/${sku}`)).body).toMatchObject({ onHand: 2, reserved: 0 });
    await eventually(() => mails(o.id, 'failed').length === 1 && texts(o.orderId, 'failed').length === 1, { what: 'failed mail and SMS' });
    expect(mails(o.id, 'failed')[0]!.text).toContain('OUT_OF_STOCK');
  });

  it('all or nothing: one short line reserves none of the others', async () => {
    const a = uid('AON-A');
    const b = uid('AON-B');
    await k.product(a, 5);
    await k.product(b, 1);
    const o = await k.final((await k.order([{ sku: a, quantity: 2 }, { sku: b, quantity: 2 }])).body.id);
    expect(o.failureReason).toBe('OUT_OF_STOCK');
    expect((await k.c.get(`/api/inventory/${a}`)).body).toMatchObject({ onHand: 5, reserved: 0 });
  });

  it('unknown SKU: FAILED UNKNOWN_SKU, no charge', async () => {
    const sku = uid('KNOWN');
    await k.product(sku, 5);
    const o = await k.final((await k.order([{ sku, quantity: 1 }, { sku: uid('NOPE'), quantity: 1 }])).body.id);
    expect(o).toMatchObject({ status: 'FAILED', failureReason: 'UNKNOWN_SKU' });
    expect(k.gw.sim.chargesFor(o.id)).toHaveLength(0);
    expect((await k.c.get(`/api/inventory/${sku}`)).body).toMatchObject({ onHand: 5, reserved: 0 });
  });

  it('payment declined: FAILED PAYMENT_DECLINED, stock released', async () => {
    const sku = uid('DECL');
    await k.product(sku, 4);
    const r = await k.order([{ sku, quantity: 2 }], { paymentToken: 'tok_declined' });
    const o = await k.final(r.body.id);
    expect(o).toMatchObject({ status: 'FAILED', failureReason: 'PAYMENT_DECLINED' });
    expect(o.history.map((h: any) => h.status)).toEqual(['PENDING', 'STOCK_RESERVED', 'FAILED']);
    expect(k.gw.sim.netCharged(o.id)).toBe(0);
    expect((await k.c.get(`/api/inventory/${sku}`)).body).toMatchObject({ onHand: 4, reserved: 0, available: 4 });
    await eventually(() => mails(o.id, 'failed').length === 1, { what: 'failed mail' });
    expect(mails(o.id, 'failed')[0]!.text).toContain('Nothing was charged');
  });

  it('shipping failure: FAILED SHIPPING_FAILED, charge refunded, stock released', async () => {
    const sku = uid('NOSHIP-X');
    await k.product(sku, 3, 500);
    const o = await k.final((await k.order([{ sku, quantity: 1 }])).body.id);
    expect(o).toMatchObject({ status: 'FAILED', failureReason: 'SHIPPING_FAILED', trackingNumber: null });
    expect(o.history.map((h: any) => h.status)).toEqual(['PENDING', 'STOCK_RESERVED', 'PAID', 'FAILED']);
    expect(k.gw.sim.chargesFor(o.id)).toHaveLength(1);
    expect(k.gw.sim.refundsFor(o.id)).toHaveLength(1);
    expect(k.gw.sim.netCharged(o.id)).toBe(0);
    expect((await k.c.get(`/api/inventory/${sku}`)).body).toMatchObject({ onHand: 3, reserved: 0 });
    // The customer hears that the charge was refunded, not that nothing was charged.
    await eventually(() => mails(o.id, 'failed').length === 1 && texts(o.orderId, 'failed').length === 1, { what: 'failed mail and SMS' });
    expect(mails(o.id, 'failed')[0]!.text).toContain('The 5.00 USD we charged for it has been refunded in full');
    expect(mails(o.id, 'failed')[0]!.text).not.toContain('Nothing was charged');
    expect(texts(o.orderId, 'failed')[0]!.body).toContain('The 5.00 USD charged was refunded');
  });
});

describe('gateway faults', () => {
  it('503s and apply-then-500s: every shipped order is charged exactly once', async () => {
    const sku = uid('FLAKY');
    await k.product(sku, 1000, 700);
    k.gw.sim.setKnobs({ fail503Rate: 0.3, fail500AfterApplyRate: 0.3, dropAfterApplyRate: 0.1 });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push((await k.order([{ sku, quantity: 1 }])).body.id);
      const finals = await Promise.all(ids.map((id) => k.final(id, 90_000)));
      expect(k.gw.sim.stats().errors5xx + k.gw.sim.stats().drops).toBeGreaterThan(0);
      for (const o of finals) {
        expect(o.status).toBe('SHIPPED');
        expect(k.gw.sim.chargesFor(o.id).filter((c) => c.status === 'succeeded')).toHaveLength(1);
        expect(k.gw.sim.netCharged(o.id)).toBe(700);
      }
    } finally {
      k.gw.sim.setKnobs({ fail503Rate: 0, fail500AfterApplyRate: 0, dropAfterApplyRate: 0 });
    }
  });
});

describe('gateway outage', () => {
  it('the breaker opens and payment workers pause: nothing reaches the DLQ, every order ships once the gateway is back', async () => {
    const sku = uid('OUTAGE');
    await k.product(sku, 100, 450);
    k.gw.sim.setKnobs({ outageForMs: 4000 });
    const before = k.gw.sim.stats().statuses['503'] ?? 0;
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) ids.push((await k.order([{ sku, quantity: 1 }])).body.id);
    const finals = await Promise.all(ids.map((id) => k.final(id, 60_000)));
    expect((k.gw.sim.stats().statuses['503'] ?? 0) - before).toBeGreaterThan(0);
    for (const o of finals) {
      expect(o.status).toBe('SHIPPED');
      expect(k.gw.sim.netCharged(o.id)).toBe(450);
    }
    expect((await k.c.get('/api/admin/dlq?stream=PAYMENTS')).body.items).toEqual([]);
  });
});

describe('SMS provider faults', () => {
  it('503s and 429s: every text arrives once, and none that was accepted is sent again', async () => {
    const sku = uid('SMSF');
    await k.product(sku, 100, 100);
    k.sms.sim.setKnobs({ fail503Rate: 0.3, rate429: 0.2 });
    const before = k.sms.sim.stats();
    try {
      const rs = await Promise.all(Array.from({ length: 20 }, () => k.order([{ sku, quantity: 1 }])));
      const finals = await Promise.all(rs.map((r) => k.final(r.body.id, 60_000)));
      await eventually(() => finals.every((o) => texts(o.orderId, 'received').length === 1 && texts(o.orderId, 'shipped').length === 1), { what: 'every text', timeoutMs: 60_000 });
      const after = k.sms.sim.stats();
      expect(after.failed503 + after.rateLimited - before.failed503 - before.rateLimited).toBeGreaterThan(0);
      expect(after.replayed - before.replayed).toBe(0);
    } finally {
      k.sms.sim.setKnobs({ fail503Rate: 0, rate429: 0 });
    }
  });
});

describe('a bounced mail beside its text', () => {
  it('the text of the same event goes out once; the mails wait in the DLQ, and a redrive sends only them', async () => {
    const sku = uid('BNC');
    await k.product(sku, 10, 100);
    const email = `${uid('bounce').toLowerCase()}@example.com`;
    k.c.sink.setFaults({ permFailTo: [email] });
    try {
      const r = await k.order([{ sku, quantity: 1 }], { email });
      const o = await k.final(r.body.id, 60_000);
      expect(o.status).toBe('SHIPPED');
      await eventually(() => texts(o.orderId, 'received').length === 1 && texts(o.orderId, 'shipped').length === 1, { what: 'both texts' });
      const entries = await eventually(async () => {
        const { body } = await k.c.get('/api/admin/dlq?consumer=notifications&limit=500');
        const mine = body.items.filter((e: any) => e.data.id === o.id);
        return mine.length === 2 ? mine : undefined;
      }, { what: 'both mails in the DLQ' });
      expect(entries.every((e: any) => e.error.includes('550'))).toBe(true);
      expect(mails(o.id, 'received')).toHaveLength(0);
      k.c.sink.setFaults({ permFailTo: [] });
      for (const e of entries) expect((await k.c.post(`/api/admin/dlq/${e.id}/redrive`, undefined)).status).toBe(200);
      await eventually(() => mails(o.id, 'received').length === 1 && mails(o.id, 'shipped').length === 1, { what: 'mails after the redrive' });
      await new Promise((res) => setTimeout(res, 500));
      expect(texts(o.orderId, 'received')).toHaveLength(1);
      expect(texts(o.orderId, 'shipped')).toHaveLength(1);
    } finally {
      k.c.sink.setFaults({ permFailTo: [] });
    }
  });
});

describe('duplicate requests', () => {
  it('the same Idempotency-Key gives one order and one charge, even when sent at once', async () => {
    const sku = uid('DUP');
    await k.product(sku, 10, 300);
    const orderId = uid('DUPO');
    const body = { orderId, email: 'ana@example.com', paymentToken: 'tok_visa', items: [{ sku, quantity: 1 }] };
    const key = { 'idempotency-key': uid('key') };
    const first = await k.c.post('/api/orders', body, key);
    const again = await Promise.all([k.c.post('/api/orders', body, key), k.c.post('/api/orders', body, key), k.c.post('/api/orders', body)]);
    expect(first.status).toBe(202);
    expect(again[0]).toEqual(first);
    expect(again[1]).toEqual(first);
    expect(again[2].status).toBe(409);
    k.accepted.push(first.body.id);
    const o = await k.final(first.body.id);
    expect(o.status).toBe('SHIPPED');
    expect(k.gw.sim.chargesFor(o.id)).toHaveLength(1);
    expect((await k.c.get(`/api/inventory/${sku}`)).body.onHand).toBe(9);
  });
});

describe('load spike', () => {
  it('a burst of orders at once: every one ends SHIPPED or FAILED, and the books balance', async () => {
    const skus = [uid('SPIKE-A'), uid('SPIKE-B')];
    await k.product(skus[0]!, 150, 100);
    await k.product(skus[1]!, 40, 250);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      k.order([{ sku: skus[i % 2]!, quantity: 1 + (i % 3) }], i % 10 === 0 ? { paymentToken: 'tok_declined' } : {})));
    expect(results.every((r) => r.status === 202)).toBe(true);
    await Promise.all(results.map((r) => k.final(r.body.id, 90_000)));
    await eventually(async () => (await k.books()).ok, { timeoutMs: 30_000, what: 'books balanced' }).catch(() => false);
    const b = await k.books();
    expect(b.problems).toEqual([]);
    expect(b.counts.unfinished).toBe(0);
    expect(b.counts.byReason.OUT_OF_STOCK).toBeGreaterThan(0);
  });
});
