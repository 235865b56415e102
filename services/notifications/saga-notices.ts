// What the customer hears as the saga moves: mail on SHIPPED (with the tracking
// number) and on FAILED (with the reason, and what happened to the money), and an
// SMS for received, shipped and failed when the order has a phone. Each (order,
// kind, channel) at most once.
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import type { Deps } from '../kit/index.ts';
import { createClaimWriters, MAIL_RETRY, sendNotices, type Channels, type MailToSend } from './consumers.ts';
import { smsBody } from './sms.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';

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

/** Mails and SMS on SHIPPED and FAILED (`saga.done.*`), up to `batch` messages in flight (consumers.ts). */
export async function startSagaNotices(deps: Deps, ch: Channels, batch: number): Promise<BatchWorker> {
  const claims = createClaimWriters(deps.orm.em);
  return await startBatchWorker({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    stream: SAGA_STREAM, consumer: 'notifications', schema: SagaStatusEvent, key: (e) => e.id, batch, retry: MAIL_RETRY,
    handle: async (items, em) => {
      const done = items.filter((i) => i.data.status === 'SHIPPED' || i.data.status === 'FAILED');
      const mails = done.map(({ data: e, msgId, requestId }): MailToSend => (e.status === 'SHIPPED'
        ? {
          msgId, requestId, orderUuid: e.id, kind: 'shipped', to: e.email, subject: `Order ${e.orderId} shipped`,
          text: `Your order ${e.orderId} is on its way.\n\nTracking number: ${e.trackingNumber}\n\nReference: ${e.id}\n`,
        }
        : {
          msgId, requestId, orderUuid: e.id, kind: 'failed', to: e.email, subject: `Order ${e.orderId} could not be completed`,
          text: failedMailText(e),
        }));
      const texts = done.filter((i) => i.data.phone).map(({ data: e, msgId }) => {
        const kind = e.status === 'SHIPPED' ? 'shipped' as const : 'failed' as const;
        const refunded = kind === 'failed' ? refundedCents(e) : 0;
        return { msgId, orderUuid: e.id, kind, to: e.phone!, body: smsBody(kind, { ...e, refunded: refunded > 0 ? money(refunded, e.currency) : null }) };
      });
      return await sendNotices(ch, claims, em, mails, texts, deps.log);
    },
  });
}
