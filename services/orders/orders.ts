// Order intake with group commit. Every order row and its `orders.created` outbox row are
// written by one data-modifying CTE (atomic: both or neither). Requests that arrive while
// a statement is in flight wait for the next one and go in together, so under load one
// round trip and one WAL flush serve a whole batch; at low load a batch is one order and
// nothing waits. The 202 is sent only after the batch committed.
import { randomUUID } from 'node:crypto';
import { OrderSubjects, type CreateOrderRequest, type OrderCreated } from '../../contracts/orders.ts';
import type { MikroORM } from '../kit/index.ts';
import { HttpError } from '../kit/index.ts';
import { H } from '../kit/index.ts';
import type { InferEntity } from '@mikro-orm/core';
import type { Order } from './entities.ts';

type OrderRow = InferEntity<typeof Order>;

type Pending = { row: Record<string, unknown>; event: OrderCreated; resolve: (e: OrderCreated) => void; reject: (err: unknown) => void };

const INSERT_BATCH = `
  with input as (
    select * from jsonb_to_recordset(?::jsonb) as t(
      id uuid, order_id text, email text, phone text, payment_token text, items jsonb, history jsonb,
      created_at timestamptz, outbox_id uuid, payload text, headers jsonb)
  ), o as (
    insert into orders.orders (id, order_id, email, phone, payment_token, items, status, history, created_at, updated_at)
    select id, order_id, email, phone, payment_token, items, 'PENDING', history, created_at, created_at from input
    on conflict (order_id) do nothing
    returning id)
  insert into kit.outbox (id, subject, payload, headers)
  select i.outbox_id, '${OrderSubjects.created}', i.payload, i.headers from input i join o on o.id = i.id
  returning id`;

export type OrderWriter = { create(req: CreateOrderRequest, requestId: string): Promise<OrderCreated> };

/** `const writer = createOrderWriter(orm, { maxBatch: 256, maxInFlight: 1 })` */
export function createOrderWriter(orm: MikroORM, opts: { maxBatch?: number; maxInFlight?: number } = {}): OrderWriter {
  const maxBatch = opts.maxBatch ?? 256;
  const maxInFlight = opts.maxInFlight ?? 1;
  const queue: Pending[] = [];
  let inFlight = 0;

  const write = async (batch: Pending[]) => {
    const rows = await orm.em.fork().execute<{ id: string }[]>(INSERT_BATCH, [JSON.stringify(batch.map((p) => p.row))]);
    const written = new Set(rows.map((r) => r.id));
    for (const p of batch) {
      if (written.has(p.row.outbox_id as string)) p.resolve(p.event);
      else p.reject(new HttpError(409, 'DUPLICATE_ORDER', `order ${p.event.orderId} already exists`));
    }
  };

  const flush = () => {
    while (inFlight < maxInFlight && queue.length) {
      const batch = queue.splice(0, maxBatch);
      inFlight++;
      void write(batch)
        .catch(async (err) => {
          // One bad row must not fail its neighbours: retry them one by one.
          if (batch.length === 1) return batch[0]!.reject(err);
          await Promise.all(batch.map((p) => write([p]).catch((e) => p.reject(e))));
        })
        .finally(() => { inFlight--; flush(); });
    }
  };

  return {
    create(req, requestId) {
      const id = randomUUID();
      const createdAt = new Date().toISOString();
      const event: OrderCreated = {
        id, orderId: req.orderId, email: req.email, phone: req.phone ?? null,
        paymentToken: req.paymentToken ?? null, items: req.items, createdAt,
      };
      const row = {
        id, order_id: req.orderId, email: req.email, phone: event.phone, payment_token: event.paymentToken,
        items: req.items, history: [{ status: 'PENDING', at: createdAt, reason: null }], created_at: createdAt,
        outbox_id: randomUUID(), payload: JSON.stringify(event), headers: { [H.requestId]: requestId },
      };
      return new Promise<OrderCreated>((resolve, reject) => {
        queue.push({ row, event, resolve, reject });
        flush();
      });
    },
  };
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
