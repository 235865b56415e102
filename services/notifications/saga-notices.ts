// What the customer hears as the saga moves: mail on SHIPPED (with the tracking
// number) and on FAILED (with the reason), and an SMS for received, shipped and
// failed when the order has a phone. Each (order, kind, channel) at most once.
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import type { Deps } from '../kit/index.ts';
import { MAIL_RETRY, sendNotices, type Channels, type MailToSend } from './consumers.ts';
import { smsBody } from './sms.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';

const REASONS: Record<string, string> = {
  UNKNOWN_SKU: 'an item in it is not in our catalogue',
  OUT_OF_STOCK: 'an item in it is out of stock',
  PAYMENT_DECLINED: 'the card was declined',
  PAYMENT_FAILED: 'the payment could not be taken',
  SHIPPING_FAILED: 'the carrier could not take it',
};

/** Mails and SMS on SHIPPED and FAILED (`saga.done.*`), up to `batch` messages in flight (consumers.ts). */
export async function startSagaNotices(deps: Deps, ch: Channels, batch: number): Promise<BatchWorker> {
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
          text: `We could not complete your order ${e.orderId}: ${REASONS[e.failureReason ?? ''] ?? 'it failed'} (${e.failureReason}).\n\nNothing was charged and no stock is held for it.\nReference: ${e.id}\n`,
        }));
      const texts = done.filter((i) => i.data.phone).map(({ data: e, msgId }) => {
        const kind = e.status === 'SHIPPED' ? 'shipped' as const : 'failed' as const;
        return { msgId, orderUuid: e.id, kind, to: e.phone!, body: smsBody(kind, e) };
      });
      return await sendNotices(ch, em, mails, texts, deps.log);
    },
  });
}
