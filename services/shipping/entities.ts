import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

/** One row per order: SCHEDULED, FAILED, or CANCELLED (also a tombstone against a late schedule). */
export const Shipment = defineEntity({
  name: 'Shipment',
  schema: 'shipping',
  tableName: 'shipments',
  properties: {
    orderId: p.uuid().primary(),
    status: p.string(),
    trackingNumber: p.string().nullable(),
    pickupAt: p.datetime().nullable(),
    detail: p.string().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

export const entities = [Shipment];

export const migrations = [
  sqlMigration('shipping-0001-init', [
    'create schema if not exists shipping',
    `create table shipping.shipments (
       order_id uuid primary key,
       status text not null check (status in ('SCHEDULED', 'FAILED', 'CANCELLED')),
       tracking_number text,
       pickup_at timestamptz,
       detail text,
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now())`,
  ]),
];
