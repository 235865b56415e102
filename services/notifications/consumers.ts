// Mails, once per (order, kind). The claim row for (order, kind) is inserted, the mail
// sent, and the claim committed, all inside one transaction that also holds the inbox
// row: an SMTP failure rolls the claim back (so the retry sends), a second replica
// blocks on the claim and then finds it, and a redelivery finds it and sends nothing.
// What no SMTP client can close is a crash between the server's 250 and our COMMIT
// (a loopback round trip, since the connection is held and the commit does not wait for
// the WAL flush): the mail is then sent again on redelivery with the same Message-ID,
// which lets mailbox providers collapse it.
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type HandlerContext, type Worker } from '../kit/worker.ts';
import { messageIdFor, type Mailer } from './mailer.ts';

export type EmailKind = 'received' | 'shipped' | 'failed';

/** Send one (order, kind) mail at most once; returns false when it had been sent before. */
export async function sendOnce(mailer: Mailer, ctx: HandlerContext, m: { orderUuid: string; kind: EmailKind; to: string; subject: string; text: string }): Promise<boolean> {
  const messageId = messageIdFor(m.orderUuid, m.kind);
  return await ctx.tx(async (em) => {
    // The COMMIT after SMTP's 250 is the in-doubt window: don't make it wait for the WAL
    // flush. Only a Postgres crash could lose this commit, and then the mail was sent
    // once and merely not recorded.
    await em.execute('set local synchronous_commit = off');
    const claimed = await em.execute(
      `insert into notifications.emails (order_id, kind, recipient, subject, message_id, sent_at) values (?, ?, ?, ?, ?, now())
       on conflict do nothing returning 1`, [m.orderUuid, m.kind, m.to, m.subject, messageId]);
    if (!claimed.length) return false;
    await mailer.send({ to: m.to, subject: m.subject, text: m.text, messageId, requestId: ctx.requestId });
    ctx.log.info({ orderUuid: m.orderUuid, kind: m.kind, messageId }, 'mail accepted by SMTP');
    return true;
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
