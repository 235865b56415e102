import { defineEntity, p } from '@mikro-orm/core';

/** One row per (order, kind) mail the SMTP server accepted: the "never twice" record. */
export const SentEmail = defineEntity({
  name: 'SentEmail',
  schema: 'notifications',
  tableName: 'emails',
  properties: {
    orderId: p.uuid().primary(),
    kind: p.text().primary(),
    recipient: p.text(),
    subject: p.text(),
    messageId: p.text(),
    sentAt: p.datetime(),
  },
});

/** One row per (order, kind) text the SMS provider accepted (or claimed before the send: provider_id still null). */
export const SentSms = defineEntity({
  name: 'SentSms',
  schema: 'notifications',
  tableName: 'sms',
  properties: {
    orderId: p.uuid().primary(),
    kind: p.text().primary(),
    recipient: p.text(),
    body: p.text(),
    providerId: p.text().nullable(),
    sentAt: p.datetime(),
  },
});

export const entities = [SentEmail, SentSms];

export { migrations } from './migrations/index.ts';
