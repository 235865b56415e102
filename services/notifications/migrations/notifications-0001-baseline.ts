// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('notifications-0001-baseline', [
  `create schema if not exists "notifications"`,
  `create table "notifications"."emails" ("order_id" uuid not null, "kind" text not null, "recipient" text not null, "subject" text not null, "message_id" text not null, "sent_at" timestamptz not null, primary key ("order_id", "kind"))`,
  `create table "notifications"."sms" ("order_id" uuid not null, "kind" text not null, "recipient" text not null, "body" text not null, "provider_id" text null, "sent_at" timestamptz not null, primary key ("order_id", "kind"))`,
], {
  down: [
    `drop table if exists "notifications"."emails" cascade`,
    `drop table if exists "notifications"."sms" cascade`,
    `drop schema if exists "notifications"`,
  ],
  replaces: ['notifications-0001-init', 'notifications-0002-sms'],
});
