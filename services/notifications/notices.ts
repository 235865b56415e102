// Mails and texts (sms.ts), once per (order, kind, channel). Messages that arrive
// together share one transaction (kit/batch-worker.ts, started in consumers.ts), which holds an advisory lock per
// (order, kind, channel) for as long as the batch runs: a second replica handed the same
// order blocks there and then finds the claims. The claim row of a mail (or text) is not
// part of that transaction: it commits on its own, group-committed with whatever else was
// accepted meanwhile, as soon as the server's 250 (the provider's 2xx) arrives, and the
// batch's inbox rows and acks come only after every claim of the batch is committed. A
// send that fails leaves no claim and is retried on its own (4xx, a dropped connection)
// or dead-lettered (5xx); a redelivery finds the claims and sends nothing.
// So a crash repeats only the sends whose answer was in flight (at most
// NOTIFY_CONCURRENCY per consumer, usually far fewer), and a repeated mail carries the
// Message-ID of the first, which lets mailbox providers collapse them.
import { createBatcher, type Batcher } from '../kit/index.ts';
import type { EntityManager } from '../kit/index.ts';
import { NonRetryableError } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { RetryPolicy } from '../kit/index.ts';
import { withTrace, type Trace } from '../kit/index.ts';
import { messageIdFor, type Mailer } from './mailer.ts';
import { sendSmsBatch, type SmsClient, type SmsToSend } from './sms.ts';

export type EmailKind = 'received' | 'shipped' | 'failed';

export type MailToSend = { msgId: string; orderUuid: string; kind: EmailKind; to: string; subject: string; text: string; requestId?: string; trace?: Trace };

// Seed 004: 1 s, 2 s, 4 s, ... at most 5 retries (max_deliver 6 in streams/).
export const MAIL_RETRY: RetryPolicy = { baseMs: 1000, factor: 2, maxMs: 16_000, jitter: 0.1 };

/** Records sends the moment they are accepted, each in a short transaction of its own (grouped with its neighbours). */
export type ClaimWriters = {
  mail: Batcher<MailToSend, void>;
  sms: Batcher<SmsToSend & { providerId: string }, void>;
};

/** `const claims = createClaimWriters(deps.orm.em)`: writes through `db` outside any batch transaction. */
export function createClaimWriters(db: EntityManager): ClaimWriters {
  // Committed, and visible to every replica, when claim() resolves, so a crash of this
  // process cannot lose it. Without waiting for the WAL flush (~5 ms a group here, on the
  // path of every batch): only a Postgres crash could lose the last claims, and those mails
  // would then go out again under their Message-ID, as the ones in flight do anyway.
  const write = (sql: string, params: unknown[]) => db.fork().transactional(async (tx) => {
    await tx.execute('set local synchronous_commit = off');
    await tx.execute(sql, params);
  });
  const mail = createBatcher<MailToSend, void>(async (rows) => {
    await write(
      `insert into notifications.emails (order_id, kind, recipient, subject, message_id, sent_at) values ${rows.map(() => '(?, ?, ?, ?, ?, now())').join(', ')}
       on conflict do nothing`,
      rows.flatMap((m) => [m.orderUuid, m.kind, m.to, m.subject, messageIdFor(m.orderUuid, m.kind)]));
    return rows.map(() => undefined);
  }, { maxSize: 500, maxWaitMs: 0 });
  const sms = createBatcher<SmsToSend & { providerId: string }, void>(async (rows) => {
    await write(
      `insert into notifications.sms (order_id, kind, recipient, body, provider_id, sent_at) values ${rows.map(() => '(?, ?, ?, ?, ?, now())').join(', ')}
       on conflict do nothing`,
      rows.flatMap((m) => [m.orderUuid, m.kind, m.to, m.body, m.providerId || null]));
    return rows.map(() => undefined);
  }, { maxSize: 500, maxWaitMs: 0 });
  return { mail, sms };
}

export class ClaimNotRecordedError extends Error {
  override name = 'ClaimNotRecordedError';
}

/**
 * Send the mails of a batch whose (order, kind) has no claim yet, under the batch's
 * locks (sendNotices); each claim commits right after its 250. Returns the ones to
 * retry or dead-letter.
 */
export async function sendMailBatch(mailer: Mailer, claim: ClaimWriters['mail'], em: EntityManager, batch: MailToSend[], log: Logger): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  if (!batch.length) return { failed: [] };
  const done = await em.execute<{ order_id: string; kind: string }[]>(
    `select order_id, kind from notifications.emails where (order_id, kind) in (${batch.map(() => '(?::uuid, ?)').join(', ')})`,
    batch.flatMap((m) => [m.orderUuid, m.kind]));
  const claimed = new Set(done.map((c) => `${c.order_id}/${c.kind}`));
  const todo = batch.filter((m) => !claimed.has(`${m.orderUuid}/${m.kind}`));
  const sent = await Promise.allSettled(todo.map(async (m) => {
    const messageId = messageIdFor(m.orderUuid, m.kind);
    const send = () => mailer.send({ to: m.to, subject: m.subject, text: m.text, messageId, requestId: m.requestId });
    // In the trace of the message that asked for it (a batch runs in a span of its own).
    await (m.trace ? withTrace(m.trace, send) : send());
    try {
      await claim(m);
    } catch (err) {
      // Sent but not recorded: the retry sends it again, under the same Message-ID.
      throw new ClaimNotRecordedError(`mail ${messageId} accepted by SMTP but not recorded: ${(err as Error).message}`, { cause: err });
    }
    log.info({ orderUuid: m.orderUuid, kind: m.kind, messageId, ...(m.requestId ? { requestId: m.requestId } : {}) }, 'mail accepted by SMTP');
  }));
  return { failed: todo.flatMap((m, i) => { const r = sent[i]!; return r.status === 'rejected' ? [{ msgId: m.msgId, error: r.reason as unknown }] : []; }) };
}

/**
 * Take the batch's per-(order, kind, channel) advisory locks, in one statement and in key
 * order, so two replicas' batches queue rather than deadlock (should one happen, Postgres
 * aborts a batch and its messages are retried one by one); they last until it commits.
 */
async function lockClaims(em: EntityManager, keys: string[]): Promise<void> {
  if (!keys.length) return;
  await em.execute(
    `select count(pg_advisory_xact_lock(hashtextextended(k, 0))) from (select k from unnest(array[${keys.map(() => '?').join(', ')}]::text[]) k order by k) s`,
    keys);
}

export type Channels = { mailer: Mailer; sms: SmsClient | null };

/**
 * The mails and texts of one batch, in its transaction: both channels' locks, then their
 * sends side by side, each claim committed as its send is accepted. An item that failed on
 * a channel is handed back once (a retryable error wins over a permanent one, so the
 * channel that can still succeed is retried); the claim of a channel that did send stays,
 * so its retry sends only what is missing.
 */
export async function sendNotices(ch: Channels, claims: ClaimWriters, em: EntityManager, mails: MailToSend[], texts: (SmsToSend & { msgId: string })[], log: Logger): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  if (!ch.sms) texts = [];
  if (!mails.length && !texts.length) return { failed: [] };
  // The batch's own COMMIT records only inbox rows (the claims are committed by then), so
  // losing it in a Postgres crash costs a redelivery that finds the claims: no WAL wait.
  await em.execute('set local synchronous_commit = off');
  await lockClaims(em, [...mails.map((m) => `mail/${m.orderUuid}/${m.kind}`), ...texts.map((t) => `sms/${t.orderUuid}/${t.kind}`)]);
  const [m, t] = await Promise.all([sendMailBatch(ch.mailer, claims.mail, em, mails, log), ch.sms ? sendSmsBatch(ch.sms, claims.sms, em, texts, log) : { failed: [] }]);
  const failed = new Map<string, unknown>();
  for (const f of [...m.failed, ...t.failed]) {
    const prev = failed.get(f.msgId);
    if (prev === undefined || prev instanceof NonRetryableError) failed.set(f.msgId, f.error);
  }
  return { failed: [...failed].map(([msgId, error]) => ({ msgId, error })) };
}
