// The notifications mailboxes: one consumer per stream, each carrying both channels
// (a text never waits for another delivery).
//  - ORDERS, consumer `notifications`: the "order received" mail and SMS;
//  - SAGA, consumer `notifications`: mail and SMS on SHIPPED and FAILED (saga-notices.ts).
// Claims, locks and sends are notices.ts; messages that arrive together share one
// transaction (kit/batch-worker.ts).
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/index.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import { createClaimWriters, MAIL_RETRY, sendNotices, type Channels, type MailToSend } from './notices.ts';
import { failedMailText, money, refundedCents } from './saga-notices.ts';
import { smsBody } from './sms.ts';

/** The "order received" mail and SMS, from `orders.created`. `batch` is the number of messages in flight. */
export async function startReceivedNotices(deps: Deps, ch: Channels, batch: number): Promise<BatchWorker> {
  const claims = createClaimWriters(deps.orm.em);
  return await startBatchWorker({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    stream: ORDERS_STREAM, consumer: 'notifications', schema: OrderCreated, key: (o) => o.id, batch, retry: MAIL_RETRY,
    handle: async (items, em) => {
      const created = items.filter((i) => i.subject === OrderSubjects.created);
      const mails = created.map(({ data: o, msgId, requestId, trace }): MailToSend => ({
        msgId, requestId, trace, orderUuid: o.id, kind: 'received', to: o.email,
        subject: `Order ${o.orderId} received`,
        text: `Thank you for your order ${o.orderId}.\n\nItems:\n${o.items.map((i) => `  ${i.quantity} × ${i.sku}`).join('\n')}\n\nWe will write again when it ships.\nReference: ${o.id}\n`,
      }));
      const texts = created.filter((i) => i.data.phone).map(({ data: o, msgId, trace }) => ({ msgId, trace, orderUuid: o.id, kind: 'received' as const, to: o.phone!, body: smsBody('received', o) }));
      return await sendNotices(ch, claims, em, mails, texts, deps.log);
    },
  });
}

/** Mails and SMS on SHIPPED and FAILED (`saga.done.*`), up to `batch` messages in flight (notices.ts). */
export async function startSagaNotices(deps: Deps, ch: Channels, batch: number): Promise<BatchWorker> {
  const claims = createClaimWriters(deps.orm.em);
  return await startBatchWorker({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    stream: SAGA_STREAM, consumer: 'notifications', schema: SagaStatusEvent, key: (e) => e.id, batch, retry: MAIL_RETRY,
    handle: async (items, em) => {
      const done = items.filter((i) => i.data.status === 'SHIPPED' || i.data.status === 'FAILED');
      const mails = done.map(({ data: e, msgId, requestId, trace }): MailToSend => (e.status === 'SHIPPED'
        ? {
          msgId, requestId, trace, orderUuid: e.id, kind: 'shipped', to: e.email, subject: `Order ${e.orderId} shipped`,
          text: `Your order ${e.orderId} is on its way.\n\nTracking number: ${e.trackingNumber}\n\nReference: ${e.id}\n`,
        }
        : {
          msgId, requestId, trace, orderUuid: e.id, kind: 'failed', to: e.email, subject: `Order ${e.orderId} could not be completed`,
          text: failedMailText(e),
        }));
      const texts = done.filter((i) => i.data.phone).map(({ data: e, msgId, trace }) => {
        const kind = e.status === 'SHIPPED' ? 'shipped' as const : 'failed' as const;
        const refunded = kind === 'failed' ? refundedCents(e) : 0;
        return { msgId, trace, orderUuid: e.id, kind, to: e.phone!, body: smsBody(kind, { ...e, refunded: refunded > 0 ? money(refunded, e.currency) : null }) };
      });
      return await sendNotices(ch, claims, em, mails, texts, deps.log);
    },
  });
}
