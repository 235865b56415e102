// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('shipping-0001-baseline', [
  `create schema if not exists "shipping"`,
  `create table "shipping"."shipments" ("order_id" uuid not null, "status" text not null, "tracking_number" text null, "pickup_at" timestamptz null, "detail" text null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("order_id"))`,
  `alter table "shipping"."shipments" add constraint "shipments_status_check" check (status in ('SCHEDULED', 'FAILED', 'CANCELLED'))`,
], {
  down: [
    `drop table if exists "shipping"."shipments" cascade`,
    `drop schema if exists "shipping"`,
  ],
  replaces: ['shipping-0001-init'],
});
