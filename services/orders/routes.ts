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
  const writer = createOrderWriter(orm, { maxInFlight: config.ORDERS_WRITE_CONCURRENCY, maxBatch: config.ORDERS_WRITE_BATCH });
  return new Hono<AppEnv>()
    .post('/', idempotency(orm, 'POST /api/orders'), async (c) => {
      const req = await readJson(c, CreateOrderRequest);
      const o = await writer.create(req, c.get('requestId'));
      wakeOutbox();
      c.get('log').info({ id: o.id, orderId: o.orderId }, 'order accepted');
      return c.json({ id: o.id, orderId: o.orderId, status: 'PENDING', items: o.items, createdAt: o.createdAt }, 202);
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
