import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

export type HistoryEntry = { status: string; at: string; reason?: string | null };

export const Order = defineEntity({
  name: 'Order',
  schema: 'orders',
  tableName: 'orders',
  properties: {
    id: p.uuid().primary(),
    orderId: p.string().unique(),
    email: p.string(),
    phone: p.string().nullable(),
    paymentToken: p.string().nullable(),
    items: p.json<{ sku: string; quantity: number }[]>(),
    status: p.string(),
    totalCents: p.bigint('number').nullable(),
    currency: p.string().nullable(),
    trackingNumber: p.string().nullable(),
    failureReason: p.string().nullable(),
    history: p.json<HistoryEntry[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    version: p.integer().version(),
  },
});

export const entities = [Order];

export const migrations = [
  sqlMigration('orders-0001-init', [
    'create schema if not exists orders',
    `create table orders.orders (
       id uuid primary key,
       order_id text not null unique,
       email text not null,
       phone text,
       payment_token text,
       items jsonb not null,
       status text not null,
       total_cents bigint,
       currency text,
       tracking_number text,
       failure_reason text,
       history jsonb not null,
       created_at timestamptz not null,
       updated_at timestamptz not null,
       version int not null default 1)`,
  ]),
  // The saga's version of the status last applied (see status.ts).
  sqlMigration('orders-0002-saga-status', [
    'alter table orders.orders add column saga_version int not null default 0',
  ]),
];
