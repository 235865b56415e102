import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../testing/index.ts';

let c: TestCluster;
beforeAll(async () => { c = await startTestCluster({ TARGET: 'catalog,inventory', DB_POOL_MAX: '20' }); });
afterAll(async () => { await c?.close(); });

const run = Math.random().toString(36).slice(2, 7);
let n = 0;
const newSku = async (stock: number) => {
  const sku = `I-${run}-${++n}`;
  expect((await c.post('/api/products', { sku, name: sku, priceCents: 250, currency: 'USD', stock })).status).toBe(201);
  return sku;
};
const inv = async (sku: string) => (await c.get(`/api/inventory/${sku}`)).body;

describe('reserve and release over HTTP', () => {
  it('reserves all lines or none, and is idempotent per orderId', async () => {
    const a = await newSku(5);
    const b = await newSku(1);
    const short = await c.post('/api/inventory/reserve', { orderId: `o-${run}-1`, items: [{ sku: a, quantity: 2 }, { sku: b, quantity: 2 }] });
    expect(short.status).toBe(409);
    expect(short.body.error.code).toBe('OUT_OF_STOCK');
    expect(await inv(a)).toMatchObject({ onHand: 5, reserved: 0, available: 5 });

    const ok = await c.post('/api/inventory/reserve', { orderId: `o-${run}-2`, items: [{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }, { sku: a, quantity: 1 }] });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ orderId: `o-${run}-2`, status: 'RESERVED' });
    expect(ok.body.items).toEqual([{ sku: a, quantity: 3, priceCents: 250, currency: 'USD' }, { sku: b, quantity: 1, priceCents: 250, currency: 'USD' }]);
    const again = await c.post('/api/inventory/reserve', { orderId: `o-${run}-2`, items: [{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }, { sku: a, quantity: 1 }] });
    expect(again.body).toEqual(ok.body);
    expect(await inv(a)).toEqual({ sku: a, onHand: 5, reserved: 3, available: 2 });

    for (let i = 0; i < 2; i++) expect((await c.post('/api/inventory/release', { orderId: `o-${run}-2` })).status).toBe(200);
    expect(await inv(a)).toMatchObject({ onHand: 5, reserved: 0 });
    expect(await inv(b)).toMatchObject({ onHand: 1, reserved: 0 });
  });

  it('a release before its reserve leaves a tombstone: the late reserve holds nothing', async () => {
    const a = await newSku(5);
    expect((await c.post('/api/inventory/release', { orderId: `o-${run}-late` })).status).toBe(200);
    const r = await c.post('/api/inventory/reserve', { orderId: `o-${run}-late`, items: [{ sku: a, quantity: 1 }] });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('RESERVATION_RELEASED');
    expect(await inv(a)).toMatchObject({ reserved: 0 });
  });

  it('UNKNOWN_SKU for a SKU that does not exist', async () => {
    const r = await c.post('/api/inventory/reserve', { orderId: `o-${run}-u`, items: [{ sku: `missing-${run}`, quantity: 1 }] });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('UNKNOWN_SKU');
  });

  it('never oversells: 60 concurrent orders of 1-2 units for 25 units, over two SKUs in both orders', async () => {
    const a = await newSku(25);
    const b = await newSku(25);
    const res = await Promise.all(Array.from({ length: 60 }, (_, i) => c.post('/api/inventory/reserve', {
      orderId: `race-${run}-${i}`,
      // Half list the SKUs A,B and half B,A: lock ordering must keep them from deadlocking.
      items: i % 2 ? [{ sku: a, quantity: 1 + (i % 3 === 0 ? 1 : 0) }, { sku: b, quantity: 1 }] : [{ sku: b, quantity: 1 }, { sku: a, quantity: 1 }],
    })));
    expect(res.filter((r) => !(r.status === 200 || (r.status === 409 && r.body.error.code === 'OUT_OF_STOCK')))).toEqual([]);
    const won = res.filter((r) => r.status === 200).map((r) => r.body.items as { sku: string; quantity: number }[]);
    const reservedA = won.flat().filter((l) => l.sku === a).reduce((s, l) => s + l.quantity, 0);
    const reservedB = won.flat().filter((l) => l.sku === b).reduce((s, l) => s + l.quantity, 0);
    expect(reservedA).toBeLessThanOrEqual(25);
    expect(reservedB).toBeLessThanOrEqual(25);
    expect(await inv(a)).toMatchObject({ onHand: 25, reserved: reservedA, available: 25 - reservedA });
    expect(await inv(b)).toMatchObject({ onHand: 25, reserved: reservedB });
    // The race ran one SKU dry.
    expect(reservedA >= 24 || reservedB === 25).toBe(true);
  });
});

describe('restock and views', () => {
  it('adds units, replays an Idempotency-Key, and 404s unknown SKUs', async () => {
    const a = await newSku(2);
    const h = { 'idempotency-key': `rs-${run}` };
    const r1 = await c.post(`/api/inventory/${a}/restock`, { quantity: 8 }, h);
    const r2 = await c.post(`/api/inventory/${a}/restock`, { quantity: 8 }, h);
    expect(r1.status).toBe(200);
    expect(r2).toEqual(r1);
    expect(await inv(a)).toEqual({ sku: a, onHand: 10, reserved: 0, available: 10 });
    expect((await c.post(`/api/inventory/nope-${run}/restock`, { quantity: 1 })).status).toBe(404);
    expect((await c.post(`/api/inventory/${a}/restock`, { quantity: 0 })).status).toBe(400);
    expect((await c.get(`/api/inventory/nope-${run}`)).status).toBe(404);
  });

  it('answers 409 STOCK_LIMIT when a restock would overflow on-hand, and keeps the stock', async () => {
    const a = await newSku(1_000_000_000);
    // A SKU restocked for years: set near the limit directly rather than by 1,147 restocks.
    await c.deps.orm.em.fork().execute('update inventory.items set on_hand = 2147000000 where sku = ?', [a]);
    const res = await c.post(`/api/inventory/${a}/restock`, { quantity: 1_000_000 });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('STOCK_LIMIT');
    expect((await inv(a)).onHand).toBe(2_147_000_000);
    expect((await c.post(`/api/inventory/${a}/restock`, { quantity: 483_647 })).body.onHand).toBe(2_147_483_647);
  });

  it('400s a reserve whose orderId holds a lone surrogate (stored as U+FFFD it would no longer match)', async () => {
    const a = await newSku(5);
    const res = await c.post('/api/inventory/reserve', { orderId: `S\ud800-${run}`, items: [{ sku: a, quantity: 1 }] });
    expect(res.status).toBe(400);
    expect((await inv(a)).available).toBe(5);
  });
});
