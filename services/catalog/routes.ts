import { Hono } from 'hono';
import { CreateProductRequest, INVENTORY_INIT_SUBJECT, ListProductsQuery, sku as skuSchema } from '../../contracts/commerce.ts';
import type { MikroORM } from '../kit/index.ts';
import { HttpError, notFound } from '../kit/index.ts';
import { idempotency, readJson, validate, type AppEnv } from '../kit/index.ts';
import type { Nats } from '../kit/index.ts';
import { getProduct, insertProduct, listProducts } from './catalog.ts';

/** /api/products. Creating a product first asks inventory (core NATS request) to create the SKU's stock row. */
export function catalogRoutes({ orm, nats }: { orm: MikroORM; nats: Nats }) {
  return new Hono<AppEnv>()
    .post('/', idempotency(orm, 'POST /api/products'), async (c) => {
      const req = await readJson(c, CreateProductRequest);
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
    })
    .get('/', async (c) => {
      const q = validate(c.req.query(), ListProductsQuery);
      return c.json(await listProducts(orm.em.fork(), q));
    })
    .get('/:sku', async (c) => {
      const sku = c.req.param('sku');
      const p = skuSchema.safeParse(sku).success ? await getProduct(orm.em.fork(), sku) : null;
      if (!p) throw notFound(`product ${sku}`);
      return c.json(p);
    });
}
