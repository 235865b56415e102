// The kit's tables, in schema `kit`: the outbox, the consumers' inbox and the HTTP
// Idempotency-Key store. Their hot statements stay SQL (outbox.ts, worker.ts,
// batch-worker.ts, http.ts); the entities are what the schema and its migrations come from.
import { defineEntity, p } from '@mikro-orm/core';

export const OutboxRow = defineEntity({
  name: 'KitOutbox',
  schema: 'kit',
  tableName: 'outbox',
  properties: {
    id: p.uuid().primary(),
    subject: p.text(),
    payload: p.text(),
    headers: p.json<Record<string, string>>().defaultRaw(`'{}'::jsonb`),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  indexes: [{ name: 'outbox_created_at', properties: ['createdAt'] }],
});

export const InboxRow = defineEntity({
  name: 'KitInbox',
  schema: 'kit',
  tableName: 'inbox',
  properties: {
    consumer: p.text().primary(),
    msgId: p.text().primary(),
    processedAt: p.datetime().defaultRaw('now()'),
  },
  // The retention pruner's range (kit/retention.ts): without it every batch would scan the table.
  indexes: [{ name: 'inbox_processed_at', properties: ['processedAt'] }],
});

export const IdempotencyKey = defineEntity({
  name: 'KitIdempotencyKey',
  schema: 'kit',
  tableName: 'idempotency_keys',
  properties: {
    scope: p.text().primary(),
    // Whose key (http/idempotency.ts principalKey; '' for anonymous): keys are per principal.
    principal: p.text().primary(),
    key: p.text().primary(),
    requestHash: p.text(),
    state: p.text(),
    responseStatus: p.integer().nullable(),
    responseBody: p.text().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'idempotency_keys_state_check', expression: "state in ('running', 'done')" }],
  // The retention pruner's range (kit/retention.ts); the state filter is applied to the few rows it finds.
  indexes: [{ name: 'idempotency_keys_created_at', properties: ['createdAt'] }],
});

export const entities = [OutboxRow, InboxRow, IdempotencyKey];

export { migrations } from './migrations/index.ts';
