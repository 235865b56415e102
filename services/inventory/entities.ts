import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

/** Stock of one SKU. available = onHand - reserved; the checks make an oversell impossible even for a buggy writer. */
export const StockItem = defineEntity({
  name: 'StockItem',
  schema: 'inventory',
  tableName: 'items',
  properties: {
    sku: p.string().primary(),
    onHand: p.integer(),
    reserved: p.integer(),
    priceCents: p.integer(),
    currency: p.string(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** One row per order that ever reserved or released: RESERVED, RELEASED (also a tombstone) or DEDUCTED. */
export const Reservation = defineEntity({
  name: 'Reservation',
  schema: 'inventory',
  tableName: 'reservations',
  properties: {
    orderId: p.string().primary(),
    status: p.string(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** The lines of a reservation, keyed (order, sku), with the price the catalog gave the SKU. */
export const ReservationLine = defineEntity({
  name: 'ReservationLine',
  schema: 'inventory',
  tableName: 'reservation_lines',
  properties: {
    orderId: p.string().primary(),
    sku: p.string().primary(),
    quantity: p.integer(),
    priceCents: p.integer(),
    currency: p.string(),
  },
});

export const entities = [StockItem, Reservation, ReservationLine];

export const migrations = [
  sqlMigration('inventory-0001-init', [
    'create schema if not exists inventory',
    `create table inventory.items (
       sku text primary key,
       on_hand int not null check (on_hand >= 0),
       reserved int not null default 0 check (reserved >= 0 and reserved <= on_hand),
       price_cents int not null,
       currency text not null,
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now())`,
    `create table inventory.reservations (
       order_id text primary key,
       status text not null check (status in ('RESERVED', 'RELEASED', 'DEDUCTED')),
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now())`,
    `create table inventory.reservation_lines (
       order_id text not null references inventory.reservations (order_id) on delete cascade,
       sku text not null,
       quantity int not null check (quantity > 0),
       price_cents int not null,
       currency text not null,
       primary key (order_id, sku))`,
  ]),
];
