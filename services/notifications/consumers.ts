// The "order received" mail. Acked only after the SMTP server accepted the mail and
// the (order, kind) row committed with the inbox row; a redelivery finds the row and
// sends nothing. The one window left, a crash between SMTP's 250 and the commit, is
// milliseconds wide, and the resent mail carries the same Message-ID.
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type HandlerContext, type Worker } from '../kit/worker.ts';
import { SentEmail } from './entities.ts';
import { messageIdFor, type Mailer } from './mailer.ts';

export type EmailKind = 'received' | 'shipped' | 'failed';

/** Send one (order, kind) mail at most once. */
export async function sendOnce(mailer: Mailer, ctx: HandlerContext, m: { orderUuid: string; kind: EmailKind; to: string; subject: string; text: string }) {
  const sent = await ctx.em.findOne(SentEmail, { orderId: m.orderUuid, kind: m.kind });
  if (sent) return;
  const messageId = messageIdFor(m.orderUuid, m.kind);
  await mailer.send({ to: m.to, subject: m.subject, text: m.text, messageId, requestId: ctx.requestId });
  ctx.log.info({ orderUuid: m.orderUuid, kind: m.kind, messageId }, 'mail accepted by SMTP');
  await ctx.tx(async (em) => {
    await em.insert(SentEmail, { orderId: m.orderUuid, kind: m.kind, recipient: m.to, subject: m.subject, messageId, sentAt: new Date() });
  });
}

export async function startConsumers(deps: Deps, mailer: Mailer, concurrency: number): Promise<Worker[]> {
  const common = { js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, concurrency };
  const received = await startWorker({
    ...common,
    stream: ORDERS_STREAM,
    consumer: 'notifications',
    schema: OrderCreated,
    key: (o) => o.id,
    // Seed 004: 1 s, 2 s, 4 s, ... at most 5 retries (max_deliver 6 in streams/).
    retry: { baseMs: 1000, factor: 2, maxMs: 16_000, jitter: 0.1 },
    handle: async (o, ctx) => {
      if (ctx.subject !== OrderSubjects.created) return;
      const lines = o.items.map((i) => `  ${i.quantity} × ${i.sku}`).join('\n');
      await sendOnce(mailer, ctx, {
        orderUuid: o.id, kind: 'received', to: o.email,
        subject: `Order ${o.orderId} received`,
        text: `Thank you for your order ${o.orderId}.\n\nItems:\n${lines}\n\nWe will write again when it ships.\nReference: ${o.id}\n`,
      });
    },
  });
  return [received];
}
