// Mails and texts (sms.ts), once per (order, kind, channel). Messages that arrive
// together share one transaction (kit/batch-worker.ts): the claim rows are inserted, the
// mails and texts sent in parallel, and the claims committed with the inbox rows. A send
// that fails has its claim removed and is retried on its own (4xx, a dropped connection)
// or dead-lettered (5xx), while the others commit; a second replica blocks on the claims
// and then finds them, and a redelivery finds them and sends nothing.
// What no SMTP client can close is a crash between the server's 250 and our COMMIT
// (a loopback round trip, since the connection is held and the commit does not wait for
// the WAL flush): the mails of that batch, at most NOTIFY_CONCURRENCY, are then sent
// again on redelivery with the same Message-ID, which lets mailbox providers collapse them.
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import type { EntityManager } from '../kit/index.ts';
import { NonRetryableError } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import type { RetryPolicy } from '../kit/index.ts';
import { messageIdFor, type Mailer } from './mailer.ts';
import { sendSmsBatch, smsBody, type SmsClient, type SmsToSend } from './sms.ts';

export type EmailKind = 'received' | 'shipped' | 'failed';

export type MailToSend = { msgId: string; orderUuid: string; kind: EmailKind; to: string; subject: string; text: string; requestId?: string };

// Seed 004: 1 s, 2 s, 4 s, ... at most 5 retries (max_deliver 6 in streams/).
export const MAIL_RETRY: RetryPolicy = { baseMs: 1000, factor: 2, maxMs: 16_000, jitter: 0.1 };

/** Send a batch of mails, each (order, kind) at most once; returns the ones to retry or dead-letter. */
export async function sendMailBatch(mailer: Mailer, em: EntityManager, batch: MailToSend[], log: Logger): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  if (!batch.length) return { failed: [] };
  const claimed = await em.execute<{ order_id: string; kind: string }[]>(
    `insert into notifications.emails (order_id, kind, recipient, subject, message_id, sent_at) values ${batch.map(() => '(?, ?, ?, ?, ?, now())').join(', ')}
     on conflict do nothing returning order_id, kind`,
    batch.flatMap((m) => [m.orderUuid, m.kind, m.to, m.subject, messageIdFor(m.orderUuid, m.kind)]));
  const fresh = new Set(claimed.map((c) => `${c.order_id}/${c.kind}`));
  const todo = batch.filter((m) => fresh.has(`${m.orderUuid}/${m.kind}`));
  const sent = await Promise.allSettled(todo.map((m) =>
    mailer.send({ to: m.to, subject: m.subject, text: m.text, messageId: messageIdFor(m.orderUuid, m.kind), requestId: m.requestId })));
  const failed = todo.flatMap((m, i) => { const r = sent[i]!; return r.status === 'rejected' ? [{ m, error: r.reason as unknown }] : []; });
  if (failed.length) {
    await em.execute(`delete from notifications.emails where (order_id, kind) in (${failed.map(() => '(?, ?)').join(', ')})`, failed.flatMap(({ m }) => [m.orderUuid, m.kind]));
  }
  for (const [i, m] of todo.entries()) {
    if (sent[i]!.status === 'fulfilled') log.info({ orderUuid: m.orderUuid, kind: m.kind, messageId: messageIdFor(m.orderUuid, m.kind), ...(m.requestId ? { requestId: m.requestId } : {}) }, 'mail accepted by SMTP');
  }
  return { failed: failed.map(({ m, error }) => ({ msgId: m.msgId, error })) };
}

export type Channels = { mailer: Mailer; sms: SmsClient | null };

/**
 * The mails and texts of one batch, in its transaction: both channels' claims and sends,
 * side by side. An item that failed on a channel is handed back once (a retryable error
 * wins over a permanent one, so the channel that can still succeed is retried); the
 * claim of a channel that did send stays, so its retry sends only what is missing.
 */
export async function sendNotices(ch: Channels, em: EntityManager, mails: MailToSend[], texts: (SmsToSend & { msgId: string })[], log: Logger): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  if (!mails.length && !texts.length) return { failed: [] };
  // The COMMIT after the sends is the in-doubt window: don't make it wait for the WAL
  // flush. Only a Postgres crash could lose this commit, and then the messages were sent
  // once and merely not recorded.
  await em.execute('set local synchronous_commit = off');
  const [m, t] = await Promise.all([sendMailBatch(ch.mailer, em, mails, log), ch.sms ? sendSmsBatch(ch.sms, em, texts, log) : { failed: [] }]);
  const failed = new Map<string, unknown>();
  for (const f of [...m.failed, ...t.failed]) {
    const prev = failed.get(f.msgId);
    if (prev === undefined || prev instanceof NonRetryableError) failed.set(f.msgId, f.error);
  }
  return { failed: [...failed].map(([msgId, error]) => ({ msgId, error })) };
}

/** The "order received" mail and SMS, from `orders.created`. `batch` is the number of messages in flight. */
export async function startReceivedNotices(deps: Deps, ch: Channels, batch: number): Promise<BatchWorker> {
  return await startBatchWorker({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    stream: ORDERS_STREAM, consumer: 'notifications', schema: OrderCreated, key: (o) => o.id, batch, retry: MAIL_RETRY,
    handle: async (items, em) => {
      const created = items.filter((i) => i.subject === OrderSubjects.created);
      const mails = created.map(({ data: o, msgId, requestId }): MailToSend => ({
        msgId, requestId, orderUuid: o.id, kind: 'received', to: o.email,
        subject: `Order ${o.orderId} received`,
        text: `Thank you for your order ${o.orderId}.\n\nItems:\n${o.items.map((i) => `  ${i.quantity} × ${i.sku}`).join('\n')}\n\nWe will write again when it ships.\nReference: ${o.id}\n`,
      }));
      const texts = created.filter((i) => i.data.phone).map(({ data: o, msgId }) => ({ msgId, orderUuid: o.id, kind: 'received' as const, to: o.phone!, body: smsBody('received', o) }));
      return await sendNotices(ch, em, mails, texts, deps.log);
    },
  });
}
