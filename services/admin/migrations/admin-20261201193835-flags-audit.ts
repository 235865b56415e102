// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('admin-20261201193835-flags-audit', [
  `create schema if not exists "admin"`,
  `create table "admin"."flag_changes" ("id" uuid not null, "flag_key" text not null, "revision" bigint not null, "actor" text not null, "at" timestamptz not null, "before" jsonb null, "after" jsonb not null, primary key ("id"))`,
  `create index "flag_changes_flag_key_at" on "admin"."flag_changes" ("flag_key", "at")`,
  `alter table "admin"."flag_changes" add constraint "flag_changes_flag_key_revision_key" unique ("flag_key", "revision")`,
], {
  down: [
    `drop table if exists "admin"."flag_changes" cascade`,
    `drop schema if exists "admin"`,
  ],
});
