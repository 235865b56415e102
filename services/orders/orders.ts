// Order intake with group commit (kit/batcher.ts). Every order row and its `orders.created`
// outbox row are written by one data-modifying CTE (atomic: both or neither). Requests that
// arrive while a statement is in flight wait for the next one and go in together, so under
// load one round trip and one WAL flush serve a whole batch; at low load a batch is one
// order and nothing waits. The 202 is sent only after the batch committed; an order's
// Idempotency-Key and the 202 it answers commit in the same statement.
import { randomUUID } from 'node:crypto';
import { OrderSubjects, type CreateOrderRequest, type OrderCreated } from '../../contracts/orders.ts';
import { createBatcher, rawQuery } from '../kit/index.ts';
import type { MikroORM } from '../kit/index.ts';
import type { Sealer } from '../kit/index.ts';
import { HttpError } from '../kit/index.ts';
import { IdempotencyKeyTaken, type IdempotencyClaim } from '../kit/index.ts';
import { carryHeaders } from '../kit/index.ts';
import type { InferEntity } from '@mikro-orm/core';
import type { Order } from './entities.ts';

type OrderRow = InferEntity<typeof Order>;

/** The order as accepted, and the exact 202 body; a retry with the order's Idempotency-Key replays `response`. */
export type AcceptedOrder = { event: OrderCreated; response: string };

// An order carrying an Idempotency-Key is inserted only if the key is not stored yet, and its
// key row (with the 202 it answers) goes in with it, so the order, its event and its key commit
// together or not at all. The key row has no `on conflict`: a concurrent request that stored
// the key since this statement's snapshot makes the statement fail rather than leave an
// order without its key; the batch is then retried row by row.
const INSERT_BATCH = `
  with input as (
    select * from jsonb_to_recordset($1::jsonb) as t(
      id uuid, order_id text, email text, phone text, payment_token text, items jsonb, history jsonb,
      created_at timestamptz, outbox_id uuid, payload text, headers jsonb,
      idem_scope text, idem_principal text, idem_key text, idem_hash text, response text, owner text)
  ), o as (
    insert into orders.orders (id, order_id, email, phone, payment_token, items, status, history, created_at, updated_at, owner)
    select id, order_id, email, phone, payment_token, items, 'PENDING', history, created_at, created_at, owner from input i
    where i.idem_key is null
       or not exists (select 1 from kit.idempotency_keys k where k.scope = i.idem_scope and k.principal = i.idem_principal and k.key = i.idem_key)
    on conflict (order_id) do nothing
    returning id
  ), k as (
    insert into kit.idempotency_keys (scope, principal, key, request_hash, state, response_status, response_body)
    select i.idem_scope, i.idem_principal, i.idem_key, i.idem_hash, 'done', 202, i.response from input i join o on o.id = i.id
    where i.idem_key is not null
  ), e as (
    insert into kit.outbox (id, subject, payload, headers)
    select i.outbox_id, '${OrderSubjects.created}', i.payload, i.headers from input i join o on o.id = i.id
  )
  select id from o`;

const keyTaken = (err: unknown) => /idempotency_keys_pkey/.test(String((err as Error)?.message));

export type OrderWriter = {
  /** Resolves once the order (and the key's row, with a claim) committed; marks the claim committed. `owner`: the placing principal's sub. */
  create(req: CreateOrderRequest, requestId: string, claim?: IdempotencyClaim, owner?: string): Promise<AcceptedOrder>;
};

/** `const writer = createOrderWriter(orm, { sealer, maxBatch: 256, maxInFlight: 1 })` */
export function createOrderWriter(orm: MikroORM, opts: { sealer: Sealer; maxBatch?: number; maxInFlight?: number }): OrderWriter {
  // One statement a batch; a statement that fails (a key stored meanwhile) is retried row
  // by row, all at once: rows of different orders cannot conflict with each other. The rows
  // go as a bind parameter (kit/db.ts `rawQuery`), not inlined into the SQL by the ORM.
  const write = createBatcher(async (rows: Record<string, unknown>[]) => {
    const written = new Set((await rawQuery<{ id: string }>(orm, INSERT_BATCH, [JSON.stringify(rows)])).map((r) => r.id));
    return rows.map((r) => written.has(r.id as string));
  }, { maxSize: opts.maxBatch ?? 256, maxConcurrent: opts.maxInFlight ?? 1, isolate: 'parallel' });

  return {
    async create(req, requestId, claim, owner) {
      const id = randomUUID();
      const createdAt = new Date().toISOString();
      // Sealed before anything is written: the row, the outbox payload, the event in the
      // ORDERS stream and every copy of it (DLQ, `nats stream view`) hold only this form.
      const sealed = req.paymentToken ? opts.sealer.seal(req.paymentToken) : null;
      const event: OrderCreated = {
        id, orderId: req.orderId, email: req.email, phone: req.phone ?? null,
        paymentTokenSealed: sealed, items: req.items, createdAt,
      };
      const response = JSON.stringify({ id, orderId: req.orderId, status: 'PENDING', items: req.items, createdAt });
      const row = {
        id, order_id: req.orderId, email: req.email, phone: event.phone, payment_token: sealed,
        items: req.items, history: [{ status: 'PENDING', at: createdAt, reason: null }], created_at: createdAt,
        outbox_id: randomUUID(), payload: JSON.stringify(event), headers: carryHeaders(requestId) ?? {}, owner: owner ?? null,
        ...(claim ? { idem_scope: claim.scope, idem_principal: claim.principal, idem_key: claim.key, idem_hash: claim.requestHash, response } : {}),
      };
      let inserted: boolean;
      try {
        inserted = await write(row);
      } catch (err) {
        throw keyTaken(err) ? new IdempotencyKeyTaken({ cause: err }) : err;
      }
      // With a key, the idempotency middleware answers from the key's row if one is stored.
      if (!inserted) throw new HttpError(409, 'DUPLICATE_ORDER', `order ${req.orderId} already exists`);
      if (claim) claim.committed = true;
      return { event, response };
    },
  };
}

/**
 * Seal the payment tokens that rows from before sealing still hold in clear; returns how
 * many. Idempotent, and safe on every replica at once (each seals the same plaintext).
 * Only sealed values go into the statements, so not even a failing one shows a token.
 * `await sealClearTokens(orm, sealer)`
 */
export async function sealClearTokens(orm: MikroORM, sealer: Sealer, batch = 500): Promise<number> {
  let total = 0;
  for (;;) {
    const rows = await orm.em.fork().execute<{ id: string; payment_token: string }[]>(
      `select id, payment_token from orders.orders where payment_token is not null and payment_token not like 'v1.%' limit ?`, [batch]);
    if (!rows.length) return total;
    const sealed = rows.map((r) => ({ id: r.id, sealed: sealer.seal(r.payment_token) }));
    const done = await orm.em.fork().execute<{ id: string }[]>(
      `update orders.orders o set payment_token = v.sealed
         from jsonb_to_recordset(?::jsonb) as v(id uuid, sealed text)
        where o.id = v.id and o.payment_token not like 'v1.%'
        returning o.id`, [JSON.stringify(sealed)]);
    total += done.length;
  }
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
