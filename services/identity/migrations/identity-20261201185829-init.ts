// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('identity-20261201185829-init', [
  `create schema if not exists "identity"`,
  `create table "identity"."clients" ("client_id" text not null, "secret_hash" text not null, "name" text not null, "scopes" jsonb not null, "created_at" timestamptz not null default now(), primary key ("client_id"))`,
  `create table "identity"."login_attempts" ("email" text not null, "window_start" timestamptz not null, "failures" int not null, primary key ("email"))`,
  `create table "identity"."refresh_families" ("id" uuid not null, "user_id" uuid not null, "created_at" timestamptz not null default now(), "revoked_at" timestamptz null, "revoked_reason" text null, primary key ("id"))`,
  `create index "refresh_families_user_id" on "identity"."refresh_families" ("user_id")`,
  `create table "identity"."refresh_tokens" ("token_hash" text not null, "family_id" uuid not null, "created_at" timestamptz not null default now(), "expires_at" timestamptz not null, "used_at" timestamptz null, primary key ("token_hash"))`,
  `create index "refresh_tokens_family_id" on "identity"."refresh_tokens" ("family_id")`,
  `create table "identity"."signing_keys" ("kid" text not null, "alg" text not null, "public_jwk" jsonb not null, "private_key_enc" text not null, "created_at" timestamptz not null default now(), "retired_at" timestamptz null, primary key ("kid"))`,
  `create table "identity"."users" ("id" uuid not null, "email" text not null, "name" text not null, "password_hash" text not null, "roles" jsonb not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("id"))`,
  `alter table "identity"."users" add constraint "users_email_key" unique ("email")`,
], {
  down: [
    `drop table if exists "identity"."clients" cascade`,
    `drop table if exists "identity"."login_attempts" cascade`,
    `drop table if exists "identity"."refresh_families" cascade`,
    `drop table if exists "identity"."refresh_tokens" cascade`,
    `drop table if exists "identity"."signing_keys" cascade`,
    `drop table if exists "identity"."users" cascade`,
    `drop schema if exists "identity"`,
  ],
});
