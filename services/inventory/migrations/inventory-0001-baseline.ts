// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('inventory-0001-baseline', [
  `create schema if not exists "inventory"`,
  `create table "inventory"."reservations" ("order_id" text not null, "status" text not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("order_id"))`,
  `create table "inventory"."reservation_lines" ("order_id" text not null, "sku" text not null, "quantity" int not null, "price_cents" int not null, "currency" text not null, primary key ("order_id", "sku"))`,
  `create table "inventory"."items" ("sku" text not null, "on_hand" int not null, "reserved" int not null default 0, "price_cents" int not null, "currency" text not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("sku"))`,
  `alter table "inventory"."reservations" add constraint "reservations_status_check" check (status in ('RESERVED', 'RELEASED', 'DEDUCTED'))`,
  `alter table "inventory"."reservation_lines" add constraint "reservation_lines_order_id_fkey" foreign key ("order_id") references "inventory"."reservations" ("order_id") on delete cascade`,
  `alter table "inventory"."reservation_lines" add constraint "reservation_lines_quantity_check" check (quantity > 0)`,
  `alter table "inventory"."items" add constraint "items_on_hand_check" check (on_hand >= 0)`,
  `alter table "inventory"."items" add constraint "items_check" check (reserved >= 0 and reserved <= on_hand)`,
], {
  down: [
    `alter table "inventory"."reservation_lines" drop constraint "reservation_lines_order_id_fkey"`,
    `drop table if exists "inventory"."reservations" cascade`,
    `drop table if exists "inventory"."reservation_lines" cascade`,
    `drop table if exists "inventory"."items" cascade`,
    `drop schema if exists "inventory"`,
  ],
  replaces: ['inventory-0001-init'],
});
