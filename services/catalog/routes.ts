// /api/products. Creating a product first asks inventory (core NATS request) to create the
// SKU's stock row. Reading the catalog is public (CONTRACTS.md).
import { CreateProductRequest, INVENTORY_INIT_SUBJECT, ListProductsQuery, sku as skuSchema } from '../../contracts/commerce.ts';
import { ProductCreated, ProductPage, ProductView } from '../../contracts/http.ts';
import type { MikroORM, Routes } from '../kit/index.ts';
import { HttpError, notFound } from '../kit/index.ts';
import type { Nats } from '../kit/index.ts';
import { getProduct, insertProduct, listProducts } from './catalog.ts';

export function catalogRoutes(routes: Routes, { orm, nats }: { orm: MikroORM; nats: Nats }) {
  const tags = ['catalog'];
  routes.add({
    method: 'POST', path: '/api/products', tags, summary: 'Create a product and its stock', access: { roles: ['admin'], scopes: ['catalog:write', 'admin'] },
    idempotency: {}, body: CreateProductRequest,
    responses: { 201: { description: 'created', schema: ProductCreated } },
    errors: [409],
    handler: async (c, { body: req }) => {
      const em = orm.em.fork();
      if (await getProduct(em, req.sku)) throw new HttpError(409, 'DUPLICATE_SKU', `product ${req.sku} already exists`);
      // Stock row first: creating it is a no-op for an existing SKU, so a retry after a crash between
      // the two steps completes the product, and a product never exists without its stock row.
      let answer: { ok: boolean; error?: string };
      try {
        const res = await nats.nc.request(INVENTORY_INIT_SUBJECT, JSON.stringify({ sku: req.sku, stock: req.stock, priceCents: req.priceCents, currency: req.currency }), { timeout: 5000 });
        answer = res.json();
      } catch (err) {
        throw new HttpError(503, 'UNAVAILABLE', `inventory did not answer: ${(err as Error).message}`);
      }
      if (!answer.ok) throw new HttpError(503, 'UNAVAILABLE', 'inventory could not create the stock row');
      const created = await insertProduct(em, req);
      if (!created) throw new HttpError(409, 'DUPLICATE_SKU', `product ${req.sku} already exists`);
      c.get('log').info({ sku: req.sku, stock: req.stock }, 'product created');
      return c.json({ ...created, stock: req.stock }, 201);
    },
  });
  routes.add({
    method: 'GET', path: '/api/products', tags, summary: 'Search and page the catalog', access: 'public',
    query: ListProductsQuery,
    responses: { 200: { description: 'a page of products', schema: ProductPage } },
    handler: async (c, { query }) => c.json(await listProducts(orm.em.fork(), query)),
  });
  routes.add({
    method: 'GET', path: '/api/products/{sku}', tags, summary: 'Read a product', access: 'public',
    params: { sku: {} },
    responses: { 200: { description: 'the product', schema: ProductView } },
    errors: [404],
    handler: async (c) => {
      const sku = c.req.param('sku')!;
      const p = skuSchema.safeParse(sku).success ? await getProduct(orm.em.fork(), sku) : null;
      if (!p) throw notFound(`product ${sku}`);
      return c.json(p);
    },
  });
}
