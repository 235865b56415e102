import { Hono } from 'hono';
import { ReleaseRequest, ReserveRequest, RestockRequest, sku as skuSchema } from '../../contracts/commerce.ts';
import type { MikroORM } from '../kit/index.ts';
import { HttpError, notFound } from '../kit/index.ts';
import { idempotency, readJson, validate, type AppEnv } from '../kit/index.ts';
import { getItem, MAX_ON_HAND, release, reserve, restock } from './inventory.ts';

/** /api/inventory: stock views, restock, and the reserve/release pair (idempotent per orderId). */
export function inventoryRoutes({ orm }: { orm: MikroORM }) {
  return new Hono<AppEnv>()
    .post('/reserve', async (c) => {
      const req = await readJson(c, ReserveRequest);
      const r = await orm.em.fork().transactional((em) => reserve(em, req.orderId, req.items));
      if (!r.ok) {
        if (r.reason === 'CANCELLED') throw new HttpError(409, 'RESERVATION_RELEASED', `order ${req.orderId} was released; use another orderId`);
        throw new HttpError(409, r.reason, r.reason === 'UNKNOWN_SKU' ? `unknown SKU: ${r.skus.join(', ')}` : `not enough stock: ${r.skus.join(', ')}`,
          r.skus.map((s) => ({ field: 'items', message: `${s}: ${r.reason}` })));
      }
      return c.json({ orderId: req.orderId, status: 'RESERVED', items: r.lines }, 200);
    })
    .post('/release', async (c) => {
      const req = await readJson(c, ReleaseRequest);
      const r = await orm.em.fork().transactional((em) => release(em, req.orderId));
      if (r === 'deducted') throw new HttpError(409, 'RESERVATION_DEDUCTED', `order ${req.orderId} has shipped; its stock is no longer reserved`);
      return c.json({ orderId: req.orderId, status: 'RELEASED' }, 200);
    })
    .get('/:sku', async (c) => {
      const sku = c.req.param('sku');
      const item = skuSchema.safeParse(sku).success ? await getItem(orm.em.fork(), sku) : null;
      if (!item) throw notFound(`SKU ${sku}`);
      return c.json(item);
    })
    .post('/:sku/restock', idempotency(orm, 'POST /api/inventory/restock'), async (c) => {
      const sku = validate(c.req.param('sku'), skuSchema);
      const { quantity } = await readJson(c, RestockRequest);
      const item = await orm.em.fork().transactional((em) => restock(em, sku, quantity));
      if (item === 'UNKNOWN_SKU') throw notFound(`SKU ${sku}`);
      if (item === 'STOCK_LIMIT') throw new HttpError(409, 'STOCK_LIMIT', `SKU ${sku} cannot hold more than ${MAX_ON_HAND} units`);
      c.get('log').info({ sku, quantity }, 'restocked');
      return c.json(item, 200);
    });
}
