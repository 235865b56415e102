import { defineEntity, p } from '@mikro-orm/core';
import type { Saga } from './saga.ts';

/** One row per order: the saga's step, its order-facing status, and the rest as a document. */
export const SagaRow = defineEntity({
  name: 'SagaRow',
  schema: 'saga',
  tableName: 'sagas',
  properties: {
    id: p.uuid().primary(),
    step: p.text(),
    status: p.text(),
    version: p.integer(),
    deadline: p.datetime().nullable(),
    doc: p.json<Saga>(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  indexes: [
    // The sweeper's scan: only sagas waiting on a forward step have a deadline.
    { name: 'sagas_deadline', properties: ['deadline'], where: 'deadline is not null' },
    { name: 'sagas_step', properties: ['step'], where: "step = 'COMPENSATING'" },
  ],
});

export const entities = [SagaRow];

export { migrations } from './migrations/index.ts';
