// What the customer hears as the saga moves: mail on SHIPPED (with the tracking
// number) and on FAILED (with the reason), and an SMS for received, shipped and
// failed when the order has a phone. Each (order, kind, channel) at most once.
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';
import { sendOnce } from './consumers.ts';
import type { Mailer } from './mailer.ts';
import { sendSmsOnce, smsBody, type SmsClient } from './sms.ts';

const REASONS: Record<string, string> = {
  UNKNOWN_SKU: 'an item in it is not in our catalogue',
  OUT_OF_STOCK: 'an item in it is out of stock',
  PAYMENT_DECLINED: 'the card was declined',
  PAYMENT_FAILED: 'the payment could not be taken',
  SHIPPING_FAILED: 'the carrier could not take it',
};

export async function startSagaNotices(deps: Deps, o: { mailer: Mailer; sms: SmsClient | null; concurrency: number }): Promise<Worker[]> {
  const common = {
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, concurrency: o.concurrency,
    retry: { baseMs: 1000, factor: 2, maxMs: 16_000, jitter: 0.1 },
  };
  const workers: Worker[] = [];
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
  workers.push(await startWorker({
    ...common, stream: ORDERS_STREAM, consumer: 'notifications-sms', schema: OrderCreated, key: (e) => e.id,
    handle: async (e, ctx) => {
      if (ctx.subject !== OrderSubjects.created || !e.phone) return;
      await sendSmsOnce(sms, ctx, { orderUuid: e.id, kind: 'received', to: e.phone, body: smsBody('received', e) });
    },
  }));
  workers.push(await startWorker({
    ...common, stream: SAGA_STREAM, consumer: 'notifications-sms', schema: SagaStatusEvent, key: (e) => e.id,
    handle: async (e, ctx) => {
      if (!e.phone || (e.status !== 'SHIPPED' && e.status !== 'FAILED')) return;
      const kind = e.status === 'SHIPPED' ? 'shipped' : 'failed';
      await sendSmsOnce(sms, ctx, { orderUuid: e.id, kind, to: e.phone, body: smsBody(kind, e) });
    },
  }));
  return workers;
}
