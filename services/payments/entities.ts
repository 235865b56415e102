import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

/**
 * One row per order. CHARGING (a call may be out: lease_until says how long it may
 * still land), then CHARGED, DECLINED or FAILED; CANCELLED once a refund was asked
 * for (also a tombstone, so a charge command that arrives late charges nothing).
 */
export const Payment = defineEntity({
  name: 'Payment',
  schema: 'payments',
  tableName: 'payments',
  properties: {
    orderId: p.uuid().primary(),
    status: p.string(),
    amount: p.integer().nullable(),
    currency: p.string().nullable(),
    chargeId: p.string().nullable(),
    leaseUntil: p.datetime().nullable(),
    refundedAmount: p.integer(),
    detail: p.string().nullable(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

/** Charges we refunded, so a compensation retried never refunds one twice, whatever the gateway remembers. */
export const PaymentRefund = defineEntity({
  name: 'PaymentRefund',
  schema: 'payments',
  tableName: 'refunds',
  properties: {
    chargeId: p.string().primary(),
    orderId: p.uuid(),
    refundId: p.string().nullable(),
    amount: p.integer(),
    createdAt: p.datetime(),
  },
});

export const entities = [Payment, PaymentRefund];

export const migrations = [
  sqlMigration('payments-0001-init', [
    'create schema if not exists payments',
    `create table payments.payments (
       order_id uuid primary key,
       status text not null check (status in ('CHARGING', 'CHARGED', 'DECLINED', 'FAILED', 'CANCELLED')),
       amount int,
       currency text,
       charge_id text,
       lease_until timestamptz,
       refunded_amount int not null default 0,
       detail text,
       created_at timestamptz not null default now(),
       updated_at timestamptz not null default now())`,
    `create table payments.refunds (
       charge_id text primary key,
       order_id uuid not null,
       refund_id text,
       amount int not null,
       created_at timestamptz not null default now())`,
  ]),
];
