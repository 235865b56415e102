import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';
import type { Saga } from './saga.ts';

/** One row per order: the saga's step, its order-facing status, and the rest as a document. */
export const SagaRow = defineEntity({
  name: 'SagaRow',
  schema: 'saga',
  tableName: 'sagas',
  properties: {
    id: p.uuid().primary(),
    step: p.string(),
    status: p.string(),
    version: p.integer(),
    deadline: p.datetime().nullable(),
    doc: p.json<Saga>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

export const entities = [SagaRow];

export const migrations = [
  sqlMigration('saga-0001-init', [
    'create schema if not exists saga',
    `create table saga.sagas (
       id uuid primary key,
       step text not null,
       status text not null,
       version int not null,
       deadline timestamptz,
       doc jsonb not null,
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now())`,
    // The sweeper's scan: only sagas waiting on a forward step have a deadline.
    'create index sagas_deadline on saga.sagas (deadline) where deadline is not null',
    'create index sagas_step on saga.sagas (step) where step = \'COMPENSATING\'',
  ]),
];
