// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../db.ts';

export default sqlMigration('0000-kit-0001-baseline', [
  `create schema if not exists "kit"`,
  `create table "kit"."idempotency_keys" ("scope" text not null, "key" text not null, "request_hash" text not null, "state" text not null, "response_status" int null, "response_body" text null, "created_at" timestamptz not null default now(), primary key ("scope", "key"))`,
  `create table "kit"."inbox" ("consumer" text not null, "msg_id" text not null, "processed_at" timestamptz not null default now(), primary key ("consumer", "msg_id"))`,
  `create table "kit"."outbox" ("id" uuid not null, "subject" text not null, "payload" text not null, "headers" jsonb not null default '{}', "created_at" timestamptz not null default now(), primary key ("id"))`,
  `create index "outbox_created_at" on "kit"."outbox" ("created_at")`,
  `alter table "kit"."idempotency_keys" add constraint "idempotency_keys_state_check" check (state in ('running', 'done'))`,
], {
  down: [
    `drop table if exists "kit"."idempotency_keys" cascade`,
    `drop table if exists "kit"."inbox" cascade`,
    `drop table if exists "kit"."outbox" cascade`,
    `drop schema if exists "kit"`,
  ],
  replaces: ['0000-kit-0001-init', '0000-kit-0002-no-notify-trigger'],
});
