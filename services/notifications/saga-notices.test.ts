// The failed-order mail says what happened to the money, from the facts in the event.
import { describe, expect, it } from 'vitest';
import type { SagaStatusEvent } from '../../contracts/commerce.ts';
import { failedMailText } from './saga-notices.ts';
import { smsBody } from './sms.ts';

const at = '2026-01-01T00:00:00.000Z';
const event = (over: Partial<SagaStatusEvent>): SagaStatusEvent => ({
  id: '11111111-2222-4333-8444-555555555555', orderId: 'A-1', email: 'a@b.co', phone: null, status: 'FAILED',
  failureReason: 'SHIPPING_FAILED', trackingNumber: null, totalCents: 1250, currency: 'EUR', refundedCents: 1250,
  history: [{ status: 'PENDING', at, reason: null }, { status: 'STOCK_RESERVED', at, reason: null }, { status: 'PAID', at, reason: null }, { status: 'FAILED', at, reason: 'SHIPPING_FAILED' }],
  version: 6, at, ...over,
});

describe('failed-order mail', () => {
  it('says the charge was refunded when the order was charged and refunded', () => {
    const text = failedMailText(event({}));
    expect(text).toContain('could not complete your order A-1: the carrier could not take it (SHIPPING_FAILED)');
    expect(text).toContain('The 12.50 EUR we charged for it has been refunded in full');
    expect(text).not.toContain('Nothing was charged');
  });

  it('says a charge that landed while compensating was refunded, though the order never showed PAID', () => {
    const text = failedMailText(event({ failureReason: 'PAYMENT_FAILED', refundedCents: 1250, history: [{ status: 'PENDING', at, reason: null }, { status: 'FAILED', at, reason: 'PAYMENT_FAILED' }] }));
    expect(text).toContain('The 12.50 EUR we charged for it has been refunded in full');
  });

  it('reads an event from before refundedCents: PAID in the history means charged and refunded', () => {
    const { refundedCents: _, ...old } = event({});
    expect(failedMailText(old as SagaStatusEvent)).toContain('The 12.50 EUR we charged for it has been refunded in full');
  });

  it('says nothing was charged when nothing was', () => {
    const declined = event({ failureReason: 'PAYMENT_DECLINED', refundedCents: null, history: [{ status: 'PENDING', at, reason: null }, { status: 'STOCK_RESERVED', at, reason: null }, { status: 'FAILED', at, reason: 'PAYMENT_DECLINED' }] });
    expect(failedMailText(declined)).toContain('Nothing was charged and no stock is held for it.');
    // A refund that found no charge gave back 0.
    expect(failedMailText(event({ failureReason: 'PAYMENT_FAILED', refundedCents: 0, history: [] }))).toContain('Nothing was charged');
  });

  it('the SMS says the same', () => {
    expect(smsBody('failed', { orderId: 'A-1', failureReason: 'SHIPPING_FAILED', refunded: '12.50 EUR' })).toBe('orderflow: order A-1 failed (SHIPPING_FAILED). The 12.50 EUR charged was refunded and no stock is held.');
    expect(smsBody('failed', { orderId: 'A-1', failureReason: 'OUT_OF_STOCK', refunded: null })).toContain('Nothing was charged');
  });
});
