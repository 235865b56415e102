import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../testing/index.ts';

let c: TestCluster;
beforeAll(async () => { c = await startTestCluster({ TARGET: 'catalog,inventory' }); });
afterAll(async () => { await c?.close(); });

const run = `r${Math.random().toString(36).slice(2, 7)}`;
const product = (sku: string, over: Record<string, unknown> = {}) => ({ sku, name: `Thing ${sku}`, description: 'plain', priceCents: 1000, currency: 'EUR', stock: 5, ...over });

describe('POST /api/products', () => {
  it('creates the product and its stock row', async () => {
    const sku = `P-${run}-1`;
    const r = await c.post('/api/products', product(sku, { stock: 12 }));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ sku, name: `Thing ${sku}`, priceCents: 1000, currency: 'EUR', stock: 12 });
    expect((await c.get(`/api/products/${sku}`)).body).toMatchObject({ sku, priceCents: 1000, currency: 'EUR' });
    // The stock row exists when the 201 is out.
    expect((await c.get(`/api/inventory/${sku}`)).body).toEqual({ sku, onHand: 12, reserved: 0, available: 12 });
  });

  it('answers 409 DUPLICATE_SKU and leaves the first stock alone', async () => {
    const sku = `P-${run}-dup`;
    expect((await c.post('/api/products', product(sku, { stock: 3 }))).status).toBe(201);
    const again = await c.post('/api/products', product(sku, { stock: 99 }));
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('DUPLICATE_SKU');
    expect((await c.get(`/api/inventory/${sku}`)).body.onHand).toBe(3);
  });

  it('validates the body', async () => {
    for (const bad of [product('bad sku!'), product(`P-${run}-x`, { priceCents: -1 }), product(`P-${run}-y`, { priceCents: 1.5 }), product(`P-${run}-z`, { name: '' }), product(`P-${run}-w`, { currency: 'euro' })]) {
      const r = await c.post('/api/products', bad);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('VALIDATION_FAILED');
    }
  });

  it('replays a repeated Idempotency-Key', async () => {
    const h = { 'idempotency-key': `k-${run}` };
    const body = product(`P-${run}-idem`);
    const a = await c.post('/api/products', body, h);
    const b = await c.post('/api/products', body, h);
    expect(a.status).toBe(201);
    expect(b).toEqual(a);
  });

  it('404s unknown products', async () => {
    expect((await c.get(`/api/products/none-${run}`)).status).toBe(404);
  });
});

describe('GET /api/products search and pages', () => {
  beforeAll(async () => {
    const rows = [
      ['S1', 'Blue widget', 'A small blue widget for the kitchen'],
      ['S2', 'Red widget', 'Widgets of every colour'],
      ['S3', 'Garden hose', 'Twenty metres of green rubber'],
      ['S4', 'Blue paint', 'Paint for widgets and walls'],
      ['S5', 'Teapot', 'Porcelain, holds one litre'],
    ];
    for (const [s, name, description] of rows) expect((await c.post('/api/products', { sku: `Q-${run}-${s}`, name, description, priceCents: 100, currency: 'USD', stock: 1 })).status).toBe(201);
  });

  const skus = (r: { body: { items: { sku: string }[] } }) => r.body.items.filter((i) => i.sku.startsWith('Q-')).map((i) => i.sku.split('-').at(-1)).sort();

  it('finds by words of name and description, stemmed and as prefixes', async () => {
    expect(skus(await c.get(`/api/products?q=widget&limit=100`))).toEqual(['S1', 'S2', 'S4']);
    expect(skus(await c.get(`/api/products?q=blue%20wid&limit=100`))).toEqual(['S1', 'S4']);
    expect(skus(await c.get(`/api/products?q=porcel&limit=100`))).toEqual(['S5']);
    expect(skus(await c.get(`/api/products?q=${run}&limit=100`))).toEqual(['S1', 'S2', 'S3', 'S4', 'S5']);
    expect((await c.get(`/api/products?q=nothing-like-this-${run}`)).body).toEqual({ items: [], nextCursor: null });
  });

  it('finds a SKU by an all-digit part (the parser reads "-12345" as a signed integer)', async () => {
    const digits = String(Date.now()).slice(-9);
    expect((await c.post('/api/products', { sku: `NUM-${digits}-7`, name: 'Numbered', description: 'x', priceCents: 1, currency: 'EUR', stock: 1 })).status).toBe(201);
    expect((await c.get(`/api/products?q=${digits}`)).body.items.map((i: { sku: string }) => i.sku)).toEqual([`NUM-${digits}-7`]);
    expect((await c.get(`/api/products?q=NUM-${digits}-7`)).body.items.map((i: { sku: string }) => i.sku)).toEqual([`NUM-${digits}-7`]);
    expect((await c.get(`/api/products?q=nothing-like-this-${run}`)).body).toEqual({ items: [], nextCursor: null });
    expect((await c.get(`/api/products?q=${encodeURIComponent("'); drop table catalog.products; --")}`)).status).toBe(200);
  });

  it('pages with an opaque cursor, no item twice, none missed', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r = await c.get(`/api/products?q=${run}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((i: { sku: string }) => i.sku));
      cursor = r.body.nextCursor;
    } while (cursor);
    expect(seen.filter((s) => s.startsWith('Q-'))).toHaveLength(5);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('400s a bad cursor or limit', async () => {
    expect((await c.get('/api/products?cursor=garbage')).status).toBe(400);
    // A forged cursor carrying a NUL (Postgres refuses it in a parameter: a 500 before).
    expect((await c.get(`/api/products?cursor=${Buffer.from(JSON.stringify({ s: 'a\u0000b' })).toString('base64url')}`)).status).toBe(400);
    expect((await c.get('/api/products?limit=0')).status).toBe(400);
    expect((await c.get('/api/products?limit=abc')).status).toBe(400);
    const big = await c.get('/api/products?limit=1000');
    expect(big.status).toBe(200);
    expect(big.body.items.length).toBeLessThanOrEqual(100);
  });
});
