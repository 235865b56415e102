import { defineEntity, p } from '@mikro-orm/core';

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
    status: p.text(),
    amount: p.integer().nullable(),
    currency: p.text().nullable(),
    chargeId: p.text().nullable(),
    leaseUntil: p.datetime().nullable(),
    refundedAmount: p.integer().default(0),
    detail: p.text().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  checks: [{ name: 'payments_status_check', expression: "status in ('CHARGING', 'CHARGED', 'DECLINED', 'FAILED', 'CANCELLED')" }],
});

/** Charges we refunded, so a compensation retried never refunds one twice, whatever the gateway remembers. */
export const PaymentRefund = defineEntity({
  name: 'PaymentRefund',
  schema: 'payments',
  tableName: 'refunds',
  properties: {
    chargeId: p.text().primary(),
    orderId: p.uuid(),
    refundId: p.text().nullable(),
    amount: p.integer(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  // An order's refunds, for the operator console's order page.
  indexes: [{ name: 'refunds_order_id', properties: ['orderId'] }],
});

export const entities = [Payment, PaymentRefund];

export { migrations } from './migrations/index.ts';
