// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('payments-0001-baseline', [
  `create schema if not exists "payments"`,
  `create table "payments"."payments" ("order_id" uuid not null, "status" text not null, "amount" int null, "currency" text null, "charge_id" text null, "lease_until" timestamptz null, "refunded_amount" int not null default 0, "detail" text null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("order_id"))`,
  `create table "payments"."refunds" ("charge_id" text not null, "order_id" uuid not null, "refund_id" text null, "amount" int not null, "created_at" timestamptz not null default now(), primary key ("charge_id"))`,
  `alter table "payments"."payments" add constraint "payments_status_check" check (status in ('CHARGING', 'CHARGED', 'DECLINED', 'FAILED', 'CANCELLED'))`,
], {
  down: [
    `drop table if exists "payments"."payments" cascade`,
    `drop table if exists "payments"."refunds" cascade`,
    `drop schema if exists "payments"`,
  ],
  replaces: ['payments-0001-init'],
});
