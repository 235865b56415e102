// The saga state machine (saga.ts) on its own: no servers, just decisions.
import { describe, expect, it } from 'vitest';
import { onReply, onTimeout, startSaga, type Saga } from './saga.ts';

const cfg = { stepTimeoutMs: 1000, maxStepAttempts: 3, maxStepTimeoutMs: 10_000 };
const T = 1_700_000_000_000;
const id = '11111111-2222-4333-8444-555555555555';
const order = { id, orderId: 'A-1', email: 'a@b.co', phone: null, paymentToken: 'tok_visa', items: [{ sku: 'S', quantity: 2 }], createdAt: new Date(T).toISOString() };
const subjects = (d: { out: { subject: string }[] } | null) => d?.out.map((m) => m.subject);

function walk(...steps: ((s: Saga) => ReturnType<typeof onReply>)[]): Saga {
  let s = startSaga(order, T, cfg).saga;
  for (const f of steps) s = f(s)!.saga;
  return s;
}
const reserved = (s: Saga) => onReply(s, { type: 'reserved', orderUuid: id, lines: [{ sku: 'S', quantity: 2, priceCents: 500, currency: 'EUR' }] }, T, cfg);
const charged = (s: Saga) => onReply(s, { type: 'charged', orderUuid: id, chargeId: 'ch_1', amount: 1000 }, T, cfg);

describe('saga state machine', () => {
  it('walks the happy path with one command per step and a status event per status', () => {
    const start = startSaga(order, T, cfg);
    expect(start.saga).toMatchObject({ step: 'RESERVING', status: 'PENDING', version: 1, deadline: T + 1000 });
    expect(subjects(start)).toEqual(['inventory.cmd.reserve']);
    const r = reserved(start.saga)!;
    expect(r.saga).toMatchObject({ step: 'CHARGING', status: 'STOCK_RESERVED', totalCents: 1000, currency: 'EUR', version: 2 });
    expect(subjects(r)).toEqual(['payments.cmd.charge', 'saga.step.stock_reserved']);
    expect(r.out[0]!.data).toEqual({ orderUuid: id, amount: 1000, currency: 'EUR', source: 'tok_visa' });
    const c = charged(r.saga)!;
    expect(subjects(c)).toEqual(['shipping.cmd.schedule', 'saga.step.paid']);
    const s = onReply(c.saga, { type: 'scheduled', orderUuid: id, trackingNumber: 'OF1', pickupAt: '' }, T, cfg)!;
    expect(s.saga).toMatchObject({ step: 'DONE', status: 'SHIPPED', trackingNumber: 'OF1', deadline: null });
    expect(subjects(s)).toEqual(['inventory.cmd.deduct', 'saga.done.shipped']);
    expect(s.saga.history.map((h) => h.status)).toEqual(['PENDING', 'STOCK_RESERVED', 'PAID', 'SHIPPED']);
  });

  it('carries the sealed payment token to the charge as it is, and keeps it out of every status event', () => {
    const sealedOrder = { ...order, paymentToken: undefined, paymentTokenSealed: 'v1.kid.iv.ct.tag' };
    const start = startSaga(sealedOrder, T, cfg);
    expect(start.saga).not.toHaveProperty('paymentToken');
    const r = reserved(start.saga)!;
    expect(r.out[0]!.data).toEqual({ orderUuid: id, amount: 1000, currency: 'EUR', sealedSource: 'v1.kid.iv.ct.tag' });
    expect(JSON.stringify(r.out.slice(1))).not.toContain('v1.kid');
  });

  it('drops a clear token of a saga from before sealing once the charge is past', () => {
    const r = reserved(startSaga(order, T, cfg).saga)!;
    expect(r.saga.paymentToken).toBe('tok_visa');
    // A charge sent again on timeout still has it.
    expect(onTimeout(r.saga, T + 5000, cfg)!.out[0]!.data).toMatchObject({ source: 'tok_visa' });
    expect(charged(r.saga)!.saga).not.toHaveProperty('paymentToken');
    const declined = onReply(r.saga, { type: 'payment-failed', orderUuid: id, reason: 'PAYMENT_DECLINED', detail: 'card_declined' }, T, cfg)!;
    expect(declined.saga).not.toHaveProperty('paymentToken');
  });

  it('ignores duplicate replies', () => {
    const s = walk(reserved);
    expect(reserved(s)).toBeNull();
    expect(onReply(s, { type: 'rejected', orderUuid: id, reason: 'OUT_OF_STOCK', skus: ['S'] }, T, cfg)).toBeNull();
  });

  it('declined: compensates by release, and is FAILED only once the stock is back', () => {
    const d = onReply(walk(reserved), { type: 'payment-failed', orderUuid: id, reason: 'PAYMENT_DECLINED', detail: 'card_declined' }, T, cfg)!;
    expect(d.saga).toMatchObject({ step: 'COMPENSATING', status: 'STOCK_RESERVED', failureReason: 'PAYMENT_DECLINED', pending: ['release'] });
    expect(subjects(d)).toEqual(['inventory.cmd.release']);
    const f = onReply(d.saga, { type: 'released', orderUuid: id }, T, cfg)!;
    expect(f.saga).toMatchObject({ step: 'FAILED', status: 'FAILED' });
    expect(subjects(f)).toEqual(['saga.done.failed']);
    expect(f.out[0]!.data).toMatchObject({ status: 'FAILED', failureReason: 'PAYMENT_DECLINED' });
  });

  it('shipping failure: refund and release, FAILED after both', () => {
    const d = onReply(walk(reserved, charged), { type: 'shipping-failed', orderUuid: id, detail: 'no carrier' }, T, cfg)!;
    expect(subjects(d)).toEqual(['payments.cmd.refund', 'inventory.cmd.release']);
    const one = onReply(d.saga, { type: 'refunded', orderUuid: id, amount: 1000 }, T, cfg)!;
    expect(one.saga.step).toBe('COMPENSATING');
    expect(onReply(one.saga, { type: 'refunded', orderUuid: id, amount: 1000 }, T, cfg)).toBeNull();
    expect(onReply(one.saga, { type: 'released', orderUuid: id }, T, cfg)!.saga).toMatchObject({ status: 'FAILED', failureReason: 'SHIPPING_FAILED' });
  });

  it('the FAILED event carries what the refund gave back, and null when nothing was refunded', () => {
    const d = onReply(walk(reserved, charged), { type: 'shipping-failed', orderUuid: id, detail: 'no carrier' }, T, cfg)!;
    const refunded = onReply(d.saga, { type: 'refunded', orderUuid: id, amount: 1000 }, T, cfg)!;
    const f = onReply(refunded.saga, { type: 'released', orderUuid: id }, T, cfg)!;
    expect(subjects(f)).toEqual(['saga.done.failed']);
    expect(f.out[0]!.data).toMatchObject({ status: 'FAILED', failureReason: 'SHIPPING_FAILED', totalCents: 1000, currency: 'EUR', refundedCents: 1000 });
    const declined = onReply(walk(reserved), { type: 'payment-failed', orderUuid: id, reason: 'PAYMENT_DECLINED', detail: 'card_declined' }, T, cfg)!;
    expect(onReply(declined.saga, { type: 'released', orderUuid: id }, T, cfg)!.out[0]!.data).toMatchObject({ status: 'FAILED', refundedCents: null });
  });

  it('rejections fail at once with the contract reason', () => {
    const s = startSaga(order, T, cfg).saga;
    expect(onReply(s, { type: 'rejected', orderUuid: id, reason: 'UNKNOWN_SKU', skus: ['S'] }, T, cfg)!.saga).toMatchObject({ status: 'FAILED', failureReason: 'UNKNOWN_SKU' });
    expect(onReply(s, { type: 'rejected', orderUuid: id, reason: 'OUT_OF_STOCK', skus: ['S'] }, T, cfg)!.saga).toMatchObject({ status: 'FAILED', failureReason: 'OUT_OF_STOCK' });
  });

  it('a step timeout resends with a growing deadline, then gives up and compensates', () => {
    const s = walk(reserved);
    expect(onTimeout(s, T + 999, cfg)).toBeNull();
    const a = onTimeout(s, T + 1000, cfg)!;
    expect(subjects(a)).toEqual(['payments.cmd.charge']);
    expect(a.saga).toMatchObject({ attempts: 1, deadline: T + 1000 + 2000 });
    const b = onTimeout(a.saga, T + 3000, cfg)!;
    expect(b.saga.attempts).toBe(2);
    const c = onTimeout(b.saga, T + 10_000, cfg)!;
    expect(c.saga).toMatchObject({ step: 'COMPENSATING', failureReason: 'PAYMENT_FAILED', pending: ['refund', 'release'] });
  });

  it('late replies after a failure are compensated too', () => {
    const failed = onReply(startSaga(order, T, cfg).saga, { type: 'rejected', orderUuid: id, reason: 'OUT_OF_STOCK', skus: ['S'] }, T, cfg)!.saga;
    // A resent reserve that went through after all: give the stock back.
    expect(subjects(reserved(failed))).toEqual(['inventory.cmd.release']);
    // A charge that landed after the order failed: refund it.
    expect(subjects(charged(failed))).toEqual(['payments.cmd.refund']);
    // While compensating without a pending refund, a late charge adds one.
    const comp = onReply(walk(reserved), { type: 'payment-failed', orderUuid: id, reason: 'PAYMENT_FAILED', detail: 'x' }, T, cfg)!.saga;
    const late = charged(comp)!;
    expect(late.saga.pending).toEqual(['release', 'refund']);
    expect(subjects(late)).toEqual(['payments.cmd.refund']);
  });

  it('refuses to charge items of several currencies together', () => {
    const d = onReply(startSaga(order, T, cfg).saga, { type: 'reserved', orderUuid: id, lines: [{ sku: 'S', quantity: 1, priceCents: 1, currency: 'EUR' }, { sku: 'T', quantity: 1, priceCents: 1, currency: 'USD' }] }, T, cfg)!;
    expect(d.saga).toMatchObject({ step: 'COMPENSATING', failureReason: 'PAYMENT_FAILED', pending: ['release'] });
  });
});
