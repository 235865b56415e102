// Schema `lending`. Counts on the order row are kept by atomic SQL on every item
// transition (see ledger.ts); `loans` is our ledger of which order holds which
// loan, and its primary key is what keeps a loan in one order at a time.
import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

export const LendingOrder = defineEntity({
  name: 'LendingOrder',
  schema: 'lending',
  tableName: 'orders',
  properties: {
    id: p.uuid().primary(),
    investorId: p.string(),
    status: p.string(),
    phase: p.string(),
    totalItems: p.integer(),
    batches: p.integer(),
    pending: p.integer(),
    reserved: p.integer(),
    invested: p.integer(),
    failed: p.integer(),
    requestId: p.string().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    completedAt: p.datetime().nullable(),
  },
});

export const LendingItem = defineEntity({
  name: 'LendingItem',
  schema: 'lending',
  tableName: 'items',
  properties: {
    orderId: p.uuid().primary(),
    loanId: p.string().primary(),
    amount: p.decimal('number'),
    batchNo: p.integer(),
    state: p.string(),
    failedPhase: p.string().nullable(),
    reason: p.string().nullable(),
    ambiguous: p.boolean(),
    failures: p.integer(),
    lastError: p.string().nullable(),
    reserveTx: p.string().nullable(),
    investTx: p.string().nullable(),
    updatedAt: p.datetime(),
  },
});

export const LoanLedger = defineEntity({
  name: 'LoanLedger',
  schema: 'lending',
  tableName: 'loans',
  properties: {
    loanId: p.string().primary(),
    orderId: p.uuid(),
    investorId: p.string(),
    status: p.string(),
    updatedAt: p.datetime(),
  },
});

export const entities = [LendingOrder, LendingItem, LoanLedger];

export const migrations = [
  sqlMigration('lending-0001-init', [
    'create schema if not exists lending',
    `create table lending.orders (
       id uuid primary key,
       investor_id text not null,
       status text not null check (status in ('IN_PROGRESS', 'SUCCESS', 'PARTIALLY_INVESTED', 'FAILED')),
       phase text not null check (phase in ('reserve', 'invest')),
       total_items int not null,
       batches int not null,
       pending int not null,
       reserved int not null,
       invested int not null,
       failed int not null,
       request_id text,
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now(),
       completed_at timestamptz,
       check (pending >= 0 and reserved >= 0 and invested >= 0 and failed >= 0),
       check (pending + reserved + invested + failed = total_items))`,
    `create table lending.items (
       order_id uuid not null references lending.orders (id),
       loan_id text not null,
       amount numeric not null check (amount > 0),
       batch_no int not null,
       state text not null check (state in ('PENDING', 'RESERVED', 'INVESTED', 'FAILED')),
       failed_phase text check (failed_phase in ('reserve', 'invest')),
       reason text,
       ambiguous boolean not null default false,
       failures int not null default 0,
       last_error text,
       reserve_tx text,
       invest_tx text,
       updated_at timestamptz not null default now(),
       primary key (order_id, loan_id))`,
    'create index items_by_batch on lending.items (order_id, batch_no)',
    'create index items_by_state on lending.items (order_id, state)',
    `create table lending.loans (
       loan_id text primary key,
       order_id uuid not null references lending.orders (id),
       investor_id text not null,
       status text not null check (status in ('RESERVED', 'INVESTED')),
       updated_at timestamptz not null default now())`,
  ]),
];
