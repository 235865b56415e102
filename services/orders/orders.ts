// Order intake: the order row and its `orders.created` outbox row commit in one
// statement (a data-modifying CTE is atomic), which is one round trip to Postgres
// instead of BEGIN/INSERT/INSERT/COMMIT on the hottest path of the system.
import { randomUUID } from 'node:crypto';
import { OrderSubjects, type CreateOrderRequest, type OrderCreated } from '../../contracts/orders.ts';
import type { MikroORM } from '../kit/db.ts';
import { HttpError } from '../kit/errors.ts';
import { H } from '../kit/nats.ts';
import type { InferEntity } from '@mikro-orm/core';
import type { Order } from './entities.ts';

type OrderRow = InferEntity<typeof Order>;

/** Persist a new order and its event; 409 DUPLICATE_ORDER when orderId exists. */
export async function createOrder(orm: MikroORM, req: CreateOrderRequest, requestId: string): Promise<OrderCreated> {
  const id = randomUUID();
  const createdAt = new Date().toISOString();
  const event: OrderCreated = {
    id, orderId: req.orderId, email: req.email, phone: req.phone ?? null,
    paymentToken: req.paymentToken ?? null, items: req.items, createdAt,
  };
  const history = JSON.stringify([{ status: 'PENDING', at: createdAt, reason: null }]);
  const rows = await orm.em.fork().execute(
    `with o as (
       insert into orders.orders (id, order_id, email, phone, payment_token, items, status, history, created_at, updated_at)
       values (?, ?, ?, ?, ?, ?::jsonb, 'PENDING', ?::jsonb, ?, ?)
       on conflict (order_id) do nothing
       returning id)
     insert into kit.outbox (id, subject, payload, headers)
     select ?, ?, ?, ?::jsonb from o
     returning 1`,
    [id, req.orderId, req.email, event.phone, event.paymentToken, JSON.stringify(req.items), history, createdAt, createdAt,
      randomUUID(), OrderSubjects.created, JSON.stringify(event), JSON.stringify({ [H.requestId]: requestId })]);
  if (!rows.length) throw new HttpError(409, 'DUPLICATE_ORDER', `order ${req.orderId} already exists`);
  return event;
}

/** The contract's view of an order. */
export function toOrderView(o: OrderRow) {
  return {
    id: o.id, orderId: o.orderId, email: o.email, phone: o.phone ?? null, status: o.status, items: o.items,
    totalCents: o.totalCents ?? null, currency: o.currency ?? null, trackingNumber: o.trackingNumber ?? null,
    failureReason: o.failureReason ?? null,
    history: o.history.map((h) => ({ status: h.status, at: h.at, reason: h.reason ?? null })),
    createdAt: o.createdAt.toISOString(), updatedAt: o.updatedAt.toISOString(),
  };
}
