// What the customer hears as the saga moves: mail on SHIPPED (with the tracking
// number) and on FAILED (with the reason, and what happened to the money), and an
// SMS for shipped and failed when the order has a phone. The texts live here;
// consumers.ts sends them, each (order, kind, channel) at most once.
import type { SagaStatusEvent } from '../../contracts/commerce.ts';

const REASONS: Record<string, string> = {
  UNKNOWN_SKU: 'an item in it is not in our catalogue',
  OUT_OF_STOCK: 'an item in it is out of stock',
  PAYMENT_DECLINED: 'the card was declined',
  PAYMENT_FAILED: 'the payment could not be taken',
  SHIPPING_FAILED: 'the carrier could not take it',
};

/**
 * What a FAILED order's charge came to, in minor units: the refund's own amount when the
 * event carries it, else (events from before `refundedCents`) the total when the order
 * was PAID, since a FAILED order holds no un-refunded charge; 0 when nothing was charged.
 */
export function refundedCents(e: Pick<SagaStatusEvent, 'refundedCents' | 'totalCents' | 'history'>): number {
  if (e.refundedCents !== undefined && e.refundedCents !== null) return e.refundedCents;
  return e.history.some((h) => h.status === 'PAID') ? e.totalCents ?? 0 : 0;
}

/** `money(1250, 'EUR')` is "12.50 EUR". */
export const money = (cents: number, currency: string | null) => `${(cents / 100).toFixed(2)}${currency ? ` ${currency}` : ''}`;

/** The failed-order mail: the reason, and whether a charge was taken and refunded or nothing was charged. */
export function failedMailText(e: SagaStatusEvent): string {
  const refunded = refundedCents(e);
  const moneyLine = refunded > 0
    ? `The ${money(refunded, e.currency)} we charged for it has been refunded in full, and no stock is held for it.`
    : 'Nothing was charged and no stock is held for it.';
  return `We could not complete your order ${e.orderId}: ${REASONS[e.failureReason ?? ''] ?? 'it failed'} (${e.failureReason}).\n\n${moneyLine}\nReference: ${e.id}\n`;
}
