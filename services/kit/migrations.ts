// Tables the kit owns, in schema `kit`: the outbox, the consumers' inbox, and the
// HTTP Idempotency-Key store. Services never touch them except through the kit.
import { sqlMigration } from './db.ts';

export const kitMigrations = [
  sqlMigration('0000-kit-0001-init', [
    'create schema if not exists kit',
    `create table kit.outbox (
       id uuid primary key,
       subject text not null,
       payload text not null,
       headers jsonb not null default '{}'::jsonb,
       created_at timestamptz not null default now())`,
    'create index outbox_created_at on kit.outbox (created_at)',
    `create table kit.inbox (
       consumer text not null,
       msg_id text not null,
       processed_at timestamptz not null default now(),
       primary key (consumer, msg_id))`,
    `create table kit.idempotency_keys (
       scope text not null,
       key text not null,
       request_hash text not null,
       state text not null check (state in ('running', 'done')),
       response_status int,
       response_body text,
       created_at timestamptz not null default now(),
       primary key (scope, key))`,
  ]),
  // Relays are woken by a debounced NOTIFY from writers instead (see outbox.ts).
  sqlMigration('0000-kit-0002-no-notify-trigger', [
    'drop trigger if exists outbox_notify on kit.outbox',
    'drop function if exists kit.notify_outbox()',
  ]),
];
