// What the customer hears as the saga moves: mail on SHIPPED (with the tracking
// number) and on FAILED (with the reason), and an SMS for received, shipped and
// failed when the order has a phone. Each (order, kind, channel) at most once.
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';
import { sendOnce } from './consumers.ts';
import type { Mailer } from './mailer.ts';
import { sendSmsBatch, smsBody, type SmsClient, type SmsToSend } from './sms.ts';
import { startBatchWorker, type BatchWorker } from '../kit/batch-worker.ts';

const REASONS: Record<string, string> = {
  UNKNOWN_SKU: 'an item in it is not in our catalogue',
  OUT_OF_STOCK: 'an item in it is out of stock',
  PAYMENT_DECLINED: 'the card was declined',
  PAYMENT_FAILED: 'the payment could not be taken',
  SHIPPING_FAILED: 'the carrier could not take it',
};

export async function startSagaNotices(deps: Deps, o: { mailer: Mailer; sms: SmsClient | null; concurrency: number }): Promise<(Worker | BatchWorker)[]> {
  const common = {
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, concurrency: o.concurrency,
    retry: { baseMs: 1000, factor: 2, maxMs: 16_000, jitter: 0.1 },
  };
  const workers: (Worker | BatchWorker)[] = [];
  workers.push(await startWorker({
    ...common, stream: SAGA_STREAM, consumer: 'notifications', schema: SagaStatusEvent, key: (e) => e.id,
    handle: async (e, ctx) => {
      if (e.status === 'SHIPPED') {
        await sendOnce(o.mailer, ctx, {
          orderUuid: e.id, kind: 'shipped', to: e.email, subject: `Order ${e.orderId} shipped`,
          text: `Your order ${e.orderId} is on its way.\n\nTracking number: ${e.trackingNumber}\n\nReference: ${e.id}\n`,
        });
      } else if (e.status === 'FAILED') {
        await sendOnce(o.mailer, ctx, {
          orderUuid: e.id, kind: 'failed', to: e.email, subject: `Order ${e.orderId} could not be completed`,
          text: `We could not complete your order ${e.orderId}: ${REASONS[e.failureReason ?? ''] ?? 'it failed'} (${e.failureReason}).\n\nNothing was charged and no stock is held for it.\nReference: ${e.id}\n`,
        });
      }
    },
  }));
  const sms = o.sms;
  if (!sms) return workers;
  // SMS go out in batches; a failed send is retried alone (sms.ts).
  const batched = { js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, batch: 32, retry: common.retry };
  workers.push(await startBatchWorker({
    ...batched, stream: ORDERS_STREAM, consumer: 'notifications-sms', schema: OrderCreated, key: (e) => e.id,
    handle: async (items, em) => {
      const todo: (SmsToSend & { msgId: string })[] = items.filter((i) => i.subject === OrderSubjects.created && i.data.phone)
        .map(({ data: e, msgId }) => ({ msgId, orderUuid: e.id, kind: 'received', to: e.phone!, body: smsBody('received', e) }));
      return await sendSmsBatch(sms, em, todo, deps.log);
    },
  }));
  workers.push(await startBatchWorker({
    ...batched, stream: SAGA_STREAM, consumer: 'notifications-sms', schema: SagaStatusEvent, key: (e) => e.id,
    handle: async (items, em) => {
      const todo: (SmsToSend & { msgId: string })[] = items.filter((i) => i.data.phone && (i.data.status === 'SHIPPED' || i.data.status === 'FAILED'))
        .map(({ data: e, msgId }) => {
          const kind = e.status === 'SHIPPED' ? 'shipped' : 'failed';
          return { msgId, orderUuid: e.id, kind, to: e.phone!, body: smsBody(kind, e) };
        });
      return await sendSmsBatch(sms, em, todo, deps.log);
    },
  }));
  return workers;
}
