// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('lending-0001-baseline', [
  `create schema if not exists "lending"`,
  `create table "lending"."orders" ("id" uuid not null, "investor_id" text not null, "status" text not null, "phase" text not null, "total_items" int not null, "batches" int not null, "pending" int not null, "reserved" int not null, "invested" int not null, "failed" int not null, "request_id" text null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), "completed_at" timestamptz null, primary key ("id"))`,
  `create table "lending"."items" ("order_id" uuid not null, "loan_id" text not null, "amount" numeric not null, "batch_no" int not null, "state" text not null, "failed_phase" text null, "reason" text null, "ambiguous" boolean not null default false, "failures" int not null default 0, "last_error" text null, "reserve_tx" text null, "invest_tx" text null, "updated_at" timestamptz not null default now(), primary key ("order_id", "loan_id"))`,
  `create index "items_by_batch" on "lending"."items" ("order_id", "batch_no")`,
  `create index "items_by_state" on "lending"."items" ("order_id", "state")`,
  `create table "lending"."loans" ("loan_id" text not null, "order_id" uuid not null, "investor_id" text not null, "status" text not null, "updated_at" timestamptz not null default now(), primary key ("loan_id"))`,
  `alter table "lending"."orders" add constraint "orders_status_check" check (status in ('IN_PROGRESS', 'SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'))`,
  `alter table "lending"."orders" add constraint "orders_phase_check" check (phase in ('reserve', 'invest'))`,
  `alter table "lending"."orders" add constraint "orders_check" check (pending >= 0 and reserved >= 0 and invested >= 0 and failed >= 0)`,
  `alter table "lending"."orders" add constraint "orders_check1" check (pending + reserved + invested + failed = total_items)`,
  `alter table "lending"."items" add constraint "items_order_id_fkey" foreign key ("order_id") references "lending"."orders" ("id")`,
  `alter table "lending"."items" add constraint "items_amount_check" check (amount > 0)`,
  `alter table "lending"."items" add constraint "items_state_check" check (state in ('PENDING', 'RESERVED', 'INVESTED', 'FAILED'))`,
  `alter table "lending"."items" add constraint "items_failed_phase_check" check (failed_phase in ('reserve', 'invest'))`,
  `alter table "lending"."loans" add constraint "loans_order_id_fkey" foreign key ("order_id") references "lending"."orders" ("id")`,
  `alter table "lending"."loans" add constraint "loans_status_check" check (status in ('RESERVED', 'INVESTED'))`,
], {
  down: [
    `alter table "lending"."items" drop constraint "items_order_id_fkey"`,
    `alter table "lending"."loans" drop constraint "loans_order_id_fkey"`,
    `drop table if exists "lending"."orders" cascade`,
    `drop table if exists "lending"."items" cascade`,
    `drop table if exists "lending"."loans" cascade`,
    `drop schema if exists "lending"`,
  ],
  replaces: ['lending-0001-init'],
});
