// /api/orders: intake, and reads by id or business id.
import { z } from 'zod';
import { OrderAccepted, OrderView } from '../../contracts/http.ts';
import { CreateOrderRequest } from '../../contracts/orders.ts';
import type { MikroORM, Routes } from '../kit/index.ts';
import { notFound, ownerFilter } from '../kit/index.ts';
import type { OrdersConfig } from './config.ts';
import { Order } from './entities.ts';
import { createOrderWriter, toOrderView } from './orders.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FindQuery = z.object({ orderId: z.string().min(1).max(64) });

/** Who may place and read orders; admins, `admin` and `orders:read` clients read every order. */
const WRITE = { roles: ['customer', 'admin'], scopes: ['orders:write', 'admin'] } as const;
const READ = { roles: ['customer', 'admin'], scopes: ['orders:read', 'orders:write', 'admin'] } as const;
/** Who reads every order; anyone else reads the orders it placed, and another's is a 404 (CONTRACTS.md). */
const SEES_ALL = { roles: ['admin'], scopes: ['orders:read', 'admin'] } as const;

export function orderRoutes(routes: Routes, { orm, wakeOutbox, config }: { orm: MikroORM; wakeOutbox: () => void; config: OrdersConfig }) {
  const writer = createOrderWriter(orm, { maxInFlight: config.ORDERS_WRITE_CONCURRENCY, maxBatch: config.ORDERS_WRITE_BATCH, sealer: config.sealer });
  const tags = ['orders'];
  routes.add({
    method: 'POST', path: '/api/orders', tags, summary: 'Place an order', access: WRITE,
    // The key commits with the order (orders.ts), so a retry after a crash gets the first 202.
    idempotency: { scope: 'POST /api/orders', commit: 'handler' },
    body: CreateOrderRequest,
    responses: { 202: { description: 'accepted: the order and its orders.created event are stored', schema: OrderAccepted } },
    errors: [409],
    handler: async (c, { body, principal }) => {
      const { event, response } = await writer.create(body, c.get('requestId'), c.get('idempotency'), principal!.sub);
      wakeOutbox();
      c.get('log').info({ id: event.id, orderId: event.orderId }, 'order accepted');
      return c.body(response, 202, { 'content-type': 'application/json' });
    },
  });
  routes.add({
    method: 'GET', path: '/api/orders', tags, summary: 'Find an order by its business id (orderId)', access: READ,
    query: FindQuery,
    responses: { 200: { description: 'the order', schema: OrderView } },
    errors: [404],
    handler: async (c, { query, principal }) => {
      const owner = ownerFilter(principal!, SEES_ALL);
      const o = await orm.em.fork().findOne(Order, owner === undefined ? { orderId: query.orderId } : { orderId: query.orderId, owner });
      if (!o) throw notFound(`order ${query.orderId}`);
      return c.json(toOrderView(o));
    },
  });
  routes.add({
    method: 'GET', path: '/api/orders/{id}', tags, summary: 'Read an order', access: READ,
    params: { id: { description: 'the order uuid' } },
    responses: { 200: { description: 'the order', schema: OrderView } },
    errors: [404],
    handler: async (c, { principal }) => {
      const id = c.req.param('id')!;
      const owner = ownerFilter(principal!, SEES_ALL);
      // A malformed id cannot name an order: 404 rather than a uuid cast error.
      const o = UUID.test(id) ? await orm.em.fork().findOne(Order, owner === undefined ? { id } : { id, owner }) : null;
      if (!o) throw notFound(`order ${id}`);
      return c.json(toOrderView(o));
    },
  });
}
