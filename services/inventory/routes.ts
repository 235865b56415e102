// /api/inventory: stock views, restock, and the reserve/release pair (idempotent per orderId).
// Admin territory (CONTRACTS.md): the admin role, or a client with inventory:write.
import { ReleaseRequest, ReserveRequest, RestockRequest, sku as skuSchema } from '../../contracts/commerce.ts';
import { ReleaseAnswer, ReserveAnswer, StockView } from '../../contracts/http.ts';
import type { MikroORM, Routes } from '../kit/index.ts';
import { HttpError, notFound, validate } from '../kit/index.ts';
import { getItem, MAX_ON_HAND, release, reserve, restock } from './inventory.ts';

const ACCESS = { roles: ['admin'], scopes: ['inventory:write', 'admin'] } as const;

export function inventoryRoutes(routes: Routes, { orm }: { orm: MikroORM }) {
  const tags = ['inventory'];
  routes.add({
    method: 'POST', path: '/api/inventory/reserve', tags, summary: 'Reserve stock for an order (idempotent per orderId)', access: ACCESS,
    body: ReserveRequest,
    responses: { 200: { description: 'reserved', schema: ReserveAnswer } },
    errors: [409],
    handler: async (c, { body: req }) => {
      const r = await orm.em.fork().transactional((em) => reserve(em, req.orderId, req.items));
      if (!r.ok) {
        if (r.reason === 'CANCELLED') throw new HttpError(409, 'RESERVATION_RELEASED', `order ${req.orderId} was released; use another orderId`);
        throw new HttpError(409, r.reason, r.reason === 'UNKNOWN_SKU' ? `unknown SKU: ${r.skus.join(', ')}` : `not enough stock: ${r.skus.join(', ')}`,
          r.skus.map((s) => ({ field: 'items', message: `${s}: ${r.reason}` })));
      }
      return c.json({ orderId: req.orderId, status: 'RESERVED', items: r.lines }, 200);
    },
  });
  routes.add({
    method: 'POST', path: '/api/inventory/release', tags, summary: "Release an order's reservation (idempotent per orderId)", access: ACCESS,
    body: ReleaseRequest,
    responses: { 200: { description: 'released', schema: ReleaseAnswer } },
    errors: [409],
    handler: async (c, { body: req }) => {
      const r = await orm.em.fork().transactional((em) => release(em, req.orderId));
      if (r === 'deducted') throw new HttpError(409, 'RESERVATION_DEDUCTED', `order ${req.orderId} has shipped; its stock is no longer reserved`);
      return c.json({ orderId: req.orderId, status: 'RELEASED' }, 200);
    },
  });
  routes.add({
    method: 'GET', path: '/api/inventory/{sku}', tags, summary: "A SKU's stock", access: ACCESS,
    params: { sku: {} },
    responses: { 200: { description: 'on hand, reserved, available', schema: StockView } },
    errors: [404],
    handler: async (c) => {
      const sku = c.req.param('sku')!;
      const item = skuSchema.safeParse(sku).success ? await getItem(orm.em.fork(), sku) : null;
      if (!item) throw notFound(`SKU ${sku}`);
      return c.json(item);
    },
  });
  routes.add({
    method: 'POST', path: '/api/inventory/{sku}/restock', tags, summary: 'Add stock', access: ACCESS,
    params: { sku: {} },
    idempotency: { scope: 'POST /api/inventory/restock' }, body: RestockRequest,
    responses: { 200: { description: 'the stock after the restock', schema: StockView } },
    errors: [404, 409],
    handler: async (c, { body: { quantity } }) => {
      const sku = validate(c.req.param('sku'), skuSchema);
      const item = await orm.em.fork().transactional((em) => restock(em, sku, quantity));
      if (item === 'UNKNOWN_SKU') throw notFound(`SKU ${sku}`);
      if (item === 'STOCK_LIMIT') throw new HttpError(409, 'STOCK_LIMIT', `SKU ${sku} cannot hold more than ${MAX_ON_HAND} units`);
      c.get('log').info({ sku, quantity }, 'restocked');
      return c.json(item, 200);
    },
  });
}
