import { defineEntity, p } from '@mikro-orm/core';

export type HistoryEntry = { status: string; at: string; reason?: string | null };

export const Order = defineEntity({
  name: 'Order',
  schema: 'orders',
  tableName: 'orders',
  properties: {
    id: p.uuid().primary(),
    orderId: p.text().unique('orders_order_id_key'),
    email: p.text(),
    phone: p.text().nullable(),
    paymentToken: p.text().nullable(),
    items: p.json<{ sku: string; quantity: number }[]>(),
    status: p.text(),
    totalCents: p.bigint('number').nullable(),
    currency: p.text().nullable(),
    trackingNumber: p.text().nullable(),
    failureReason: p.text().nullable(),
    history: p.json<HistoryEntry[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    version: p.integer().version().default(1),
    // The principal (token `sub`) that placed the order: a customer reads only its own. Null for orders from before access control.
    owner: p.text().nullable(),
    // The saga's version of the status last applied (see status.ts); written by raw SQL only.
    sagaVersion: p.integer().default(0).lazy(),
  },
  indexes: [
    // The operator console's search (admin/console/orders.ts): newest first with keyset paging,
    // narrowed by status or email; and its live view, which reads the rows changed since its last read.
    { name: 'orders_created_at', properties: ['createdAt', 'id'] },
    { name: 'orders_status_created_at', properties: ['status', 'createdAt', 'id'] },
    { name: 'orders_email_created_at', properties: ['email', 'createdAt', 'id'] },
    { name: 'orders_updated_at', properties: ['updatedAt'] },
    // Rows from before intake sealed payment tokens (kit/seal.ts) hold them in clear; this
    // index finds them at once on every start (sealClearTokens), and sealed rows never enter it.
    // Written as Postgres prints it back (!~~ is NOT LIKE), so the schema diff sees no change.
    { name: 'orders_clear_payment_token', properties: ['id'], where: "(payment_token IS NOT NULL) AND (payment_token !~~ 'v1.%'::text)" },
  ],
});

export const entities = [Order];

export { migrations } from './migrations/index.ts';
