// Schema `lending`. Counts on the order row are kept by atomic SQL on every item
// transition (see ledger.ts); `loans` is our ledger of which order holds which
// loan, and its primary key is what keeps a loan in one order at a time.
import { defineEntity, p } from '@mikro-orm/core';

export const LendingOrder = defineEntity({
  name: 'LendingOrder',
  schema: 'lending',
  tableName: 'orders',
  properties: {
    id: p.uuid().primary(),
    investorId: p.text(),
    status: p.text(),
    phase: p.text(),
    totalItems: p.integer(),
    batches: p.integer(),
    pending: p.integer(),
    reserved: p.integer(),
    invested: p.integer(),
    failed: p.integer(),
    requestId: p.text().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
    completedAt: p.datetime().nullable(),
  },
  // The operator console's list, newest first with keyset paging.
  indexes: [{ name: 'orders_created_at', properties: ['createdAt', 'id'] }],
  checks: [
    { name: 'orders_status_check', expression: "status in ('IN_PROGRESS', 'SUCCESS', 'PARTIALLY_INVESTED', 'FAILED')" },
    { name: 'orders_phase_check', expression: "phase in ('reserve', 'invest')" },
    { name: 'orders_check', expression: 'pending >= 0 and reserved >= 0 and invested >= 0 and failed >= 0' },
    { name: 'orders_check1', expression: 'pending + reserved + invested + failed = total_items' },
  ],
});

export const LendingItem = defineEntity({
  name: 'LendingItem',
  schema: 'lending',
  tableName: 'items',
  properties: {
    orderId: p.manyToOne(LendingOrder).mapToPk().primary().fieldName('order_id').foreignKeyName('items_order_id_fkey'),
    loanId: p.text().primary(),
    amount: p.decimal('number').columnType('numeric'),
    batchNo: p.integer(),
    state: p.text(),
    failedPhase: p.text().nullable(),
    reason: p.text().nullable(),
    ambiguous: p.boolean().default(false),
    failures: p.integer().default(0),
    lastError: p.text().nullable(),
    reserveTx: p.text().nullable(),
    investTx: p.text().nullable(),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  indexes: [
    { name: 'items_by_batch', properties: ['orderId', 'batchNo'] },
    { name: 'items_by_state', properties: ['orderId', 'state'] },
  ],
  checks: [
    { name: 'items_amount_check', expression: 'amount > 0' },
    { name: 'items_state_check', expression: "state in ('PENDING', 'RESERVED', 'INVESTED', 'FAILED')" },
    { name: 'items_failed_phase_check', expression: "failed_phase in ('reserve', 'invest')" },
  ],
});

export const LoanLedger = defineEntity({
  name: 'LoanLedger',
  schema: 'lending',
  tableName: 'loans',
  properties: {
    loanId: p.text().primary(),
    orderId: p.manyToOne(LendingOrder).mapToPk().fieldName('order_id').foreignKeyName('loans_order_id_fkey'),
    investorId: p.text(),
    status: p.text(),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'loans_status_check', expression: "status in ('RESERVED', 'INVESTED')" }],
});

export const entities = [LendingOrder, LendingItem, LoanLedger];

export { migrations } from './migrations/index.ts';
