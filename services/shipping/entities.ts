import { defineEntity, p } from '@mikro-orm/core';

/** One row per order: SCHEDULED, FAILED, or CANCELLED (also a tombstone against a late schedule). */
export const Shipment = defineEntity({
  name: 'Shipment',
  schema: 'shipping',
  tableName: 'shipments',
  properties: {
    orderId: p.uuid().primary(),
    status: p.text(),
    trackingNumber: p.text().nullable(),
    pickupAt: p.datetime().nullable(),
    detail: p.text().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'shipments_status_check', expression: "status in ('SCHEDULED', 'FAILED', 'CANCELLED')" }],
});

export const entities = [Shipment];

export { migrations } from './migrations/index.ts';
