import { Hono } from 'hono';
import { z } from 'zod';
import { CreateOrderRequest } from '../../contracts/orders.ts';
import type { MikroORM } from '../kit/index.ts';
import { notFound } from '../kit/index.ts';
import { idempotency, readJson, validate, type AppEnv } from '../kit/index.ts';
import type { OrdersConfig } from './config.ts';
import { Order } from './entities.ts';
import { createOrderWriter, toOrderView } from './orders.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function orderRoutes({ orm, wakeOutbox, config }: { orm: MikroORM; wakeOutbox: () => void; config: OrdersConfig }) {
  const writer = createOrderWriter(orm, { maxInFlight: config.ORDERS_WRITE_CONCURRENCY, maxBatch: config.ORDERS_WRITE_BATCH, sealer: config.sealer });
  return new Hono<AppEnv>()
    // The key commits with the order (orders.ts), so a retry after a crash gets the first 202.
    .post('/', idempotency(orm, 'POST /api/orders', { commit: 'handler' }), async (c) => {
      const req = await readJson(c, CreateOrderRequest);
      const { event, response } = await writer.create(req, c.get('requestId'), c.get('idempotency'));
      wakeOutbox();
      c.get('log').info({ id: event.id, orderId: event.orderId }, 'order accepted');
      return c.body(response, 202, { 'content-type': 'application/json' });
    })
    .get('/', async (c) => {
      const { orderId } = validate(c.req.query(), z.object({ orderId: z.string().min(1).max(64) }));
      const o = await orm.em.fork().findOne(Order, { orderId });
      if (!o) throw notFound(`order ${orderId}`);
      return c.json(toOrderView(o));
    })
    .get('/:id', async (c) => {
      const id = c.req.param('id');
      // A malformed id cannot name an order: 404 rather than a uuid cast error.
      const o = UUID.test(id) ? await orm.em.fork().findOne(Order, { id }) : null;
      if (!o) throw notFound(`order ${id}`);
      return c.json(toOrderView(o));
    });
}
