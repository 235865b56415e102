// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('funding-0001-baseline', [
  `create schema if not exists "funding"`,
  `create table "funding"."applications" ("id" uuid not null, "business_id" text not null, "business_name" text not null, "contact_email" text not null, "amount_minor" bigint not null, "currency" char(3) not null, "term_months" int not null, "purpose" text not null, "financials" jsonb not null, "bank_account" jsonb not null, "status" text not null, "risk_score" int null, "probability_of_default" double precision null, "risk_decision" text null, "risk_reasons" jsonb null, "model_version" text null, "scoring_error" text null, "review" jsonb null, "history" jsonb not null, "created_at" timestamptz not null, "updated_at" timestamptz not null, "reconciled_at" timestamptz null, "version" int not null default 1, primary key ("id"))`,
  `create index "applications_unsettled" on "funding"."applications" ("updated_at") where status in ('processing', 'risk_scoring', 'approved', 'disbursing')`,
  `create table "funding"."payouts" ("application_id" uuid not null, "amount_minor" bigint not null, "currency" char(3) not null, "state" text not null, "gateway_payout_id" text null, "failure_reason" text null, "attempts" int not null default 0, "created_at" timestamptz not null, "updated_at" timestamptz not null, primary key ("application_id"))`,
  `alter table "funding"."payouts" add constraint "payouts_gateway_payout_id_key" unique ("gateway_payout_id")`,
  `alter table "funding"."applications" add constraint "applications_amount_minor_check" check (amount_minor > 0)`,
  `alter table "funding"."applications" add constraint "applications_term_months_check" check (term_months >= 1 and term_months <= 360)`,
  `alter table "funding"."applications" add constraint "applications_status_check" check (status in ('processing', 'risk_scoring', 'approved', 'rejected', 'pending_review', 'disbursing', 'disbursed', 'disbursement_failed'))`,
  `alter table "funding"."payouts" add constraint "payouts_application_id_fkey" foreign key ("application_id") references "funding"."applications" ("id") on update no action on delete no action`,
  `alter table "funding"."payouts" add constraint "payouts_amount_minor_check" check (amount_minor > 0)`,
  `alter table "funding"."payouts" add constraint "payouts_state_check" check (state in ('pending', 'paid', 'failed'))`,
], {
  down: [
    `alter table "funding"."payouts" drop constraint "payouts_application_id_fkey"`,
    `drop table if exists "funding"."applications" cascade`,
    `drop table if exists "funding"."payouts" cascade`,
    `drop schema if exists "funding"`,
  ],
  replaces: ['funding-0001-init'],
});
