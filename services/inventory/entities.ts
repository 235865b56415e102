import { defineEntity, p } from '@mikro-orm/core';

/** Stock of one SKU. available = onHand - reserved; the checks make an oversell impossible even for a buggy writer. */
export const StockItem = defineEntity({
  name: 'StockItem',
  schema: 'inventory',
  tableName: 'items',
  properties: {
    sku: p.text().primary(),
    onHand: p.integer(),
    reserved: p.integer().default(0),
    priceCents: p.integer(),
    currency: p.text(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  checks: [
    { name: 'items_on_hand_check', expression: 'on_hand >= 0' },
    { name: 'items_check', expression: 'reserved >= 0 and reserved <= on_hand' },
  ],
});

/** One row per order that ever reserved or released: RESERVED, RELEASED (also a tombstone) or DEDUCTED. */
export const Reservation = defineEntity({
  name: 'Reservation',
  schema: 'inventory',
  tableName: 'reservations',
  properties: {
    orderId: p.text().primary(),
    status: p.text(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'reservations_status_check', expression: "status in ('RESERVED', 'RELEASED', 'DEDUCTED')" }],
});

/** The lines of a reservation, keyed (order, sku), with the price the catalog gave the SKU. */
export const ReservationLine = defineEntity({
  name: 'ReservationLine',
  schema: 'inventory',
  tableName: 'reservation_lines',
  properties: {
    orderId: p.manyToOne(Reservation).mapToPk().primary().fieldName('order_id').deleteRule('cascade').foreignKeyName('reservation_lines_order_id_fkey'),
    sku: p.text().primary(),
    quantity: p.integer(),
    priceCents: p.integer(),
    currency: p.text(),
  },
  checks: [{ name: 'reservation_lines_quantity_check', expression: 'quantity > 0' }],
});

export const entities = [StockItem, Reservation, ReservationLine];

export { migrations } from './migrations/index.ts';
