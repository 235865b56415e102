import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

/** One row per (order, kind) mail the SMTP server accepted: the "never twice" record. */
export const SentEmail = defineEntity({
  name: 'SentEmail',
  schema: 'notifications',
  tableName: 'emails',
  properties: {
    orderId: p.uuid().primary(),
    kind: p.string().primary(),
    recipient: p.string(),
    subject: p.string(),
    messageId: p.string(),
    sentAt: p.datetime(),
  },
});

export const entities = [SentEmail];

export const migrations = [
  sqlMigration('notifications-0001-init', [
    'create schema if not exists notifications',
    `create table notifications.emails (
       order_id uuid not null,
       kind text not null,
       recipient text not null,
       subject text not null,
       message_id text not null,
       sent_at timestamptz not null,
       primary key (order_id, kind))`,
  ]),
  sqlMigration('notifications-0002-sms', [
    `create table notifications.sms (
       order_id uuid not null,
       kind text not null,
       recipient text not null,
       body text not null,
       provider_id text,
       sent_at timestamptz not null,
       primary key (order_id, kind))`,
  ]),
];
