// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('orders-0001-baseline', [
  `create schema if not exists "orders"`,
  `create table "orders"."orders" ("id" uuid not null, "order_id" text not null, "email" text not null, "phone" text null, "payment_token" text null, "items" jsonb not null, "status" text not null, "total_cents" bigint null, "currency" text null, "tracking_number" text null, "failure_reason" text null, "history" jsonb not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "version" int not null default 1, "saga_version" int not null default 0, primary key ("id"))`,
  `alter table "orders"."orders" add constraint "orders_order_id_key" unique ("order_id")`,
], {
  down: [
    `drop table if exists "orders"."orders" cascade`,
    `drop schema if exists "orders"`,
  ],
  replaces: ['orders-0001-init', 'orders-0002-saga-status'],
});
