// SMS through the provider of CONTRACTS.md (`POST /v1/messages` with Idempotency-Key).
// 400 is permanent (DLQ); 429 comes back after Retry-After; 5xx, timeouts and
// dropped connections are transient, and safe to retry under the same key.
import { setTimeout as sleep } from 'node:timers/promises';
import { backoff, NonRetryableError, parseRetryAfter, RetryLaterError, tracedFetch, withTrace, type Trace, type Tracing } from '../kit/index.ts';
import type { EntityManager } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';

export type SmsClient = { send(m: { to: string; body: string; key: string }): Promise<string> };

export class SmsTransientError extends Error {
  override name = 'SmsTransientError';
}

// A flaky provider is tried again after 100-300 ms, not longer: the whole send stays within
// one delivery of the notifications consumer.
const AGAIN_SOON = { baseMs: 200, factor: 1, jitter: 0.5 } as const;

/**
 * `const sms = createSmsClient({ url: 'http://127.0.0.1:8026' }); await sms.send({ to, body, key })`
 *
 * A send tries up to `attempts` times before it fails the delivery: a 5xx or a dropped
 * connection again after 100-300 ms, a 429 after its Retry-After when that is at most
 * `maxInlineWaitMs` (a longer one defers the message at once). One delivery of the
 * notifications consumer (`max_deliver` 6) would otherwise be one attempt: a provider
 * failing 44% of the time (the saga test's 30% 503s and 20% 429s) would dead-letter
 * about one text in 140. The Idempotency-Key makes every repeat safe.
 */
export function createSmsClient({ url, timeoutMs = 10_000, attempts = 3, maxInlineWaitMs = 2000, tracing }: { url: string; timeoutMs?: number; attempts?: number; maxInlineWaitMs?: number; tracing?: Tracing }): SmsClient {
  const base = url.replace(/\/+$/, '');
  // A CLIENT span per attempt, with the trace in its headers, while tracing is on.
  const fetch = tracedFetch(tracing, globalThis.fetch, 'sms');
  const once = async ({ to, body, key }: { to: string; body: string; key: string }): Promise<string> => {
    let res: Response;
    try {
      res = await fetch(`${base}/v1/messages`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ to, body }), signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new SmsTransientError(`SMS provider unreachable: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    if (res.status === 202 || res.status === 200 || res.status === 201) {
      try { return String(JSON.parse(text).id ?? ''); } catch { return ''; }
    }
    if (res.status === 429) {
      // 'Retry-After: 0' (or none, or garbage) still waits a second: the provider is pacing us.
      throw new RetryLaterError(parseRetryAfter(res.headers.get('retry-after')) || 1000, 'SMS provider rate limited');
    }
    if (res.status >= 500) throw new SmsTransientError(`SMS provider answered ${res.status}`);
    throw new NonRetryableError(`SMS provider refused (${res.status}): ${text.slice(0, 300)}`, { reason: 'sms-rejected' });
  };
  return {
    async send(m) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await once(m);
        } catch (err) {
          if (attempt >= attempts) throw err;
          let wait: number;
          if (err instanceof SmsTransientError) wait = backoff(AGAIN_SOON, attempt);
          else if (err instanceof RetryLaterError && err.delayMs <= maxInlineWaitMs) wait = err.delayMs + Math.random() * 100;
          else throw err;
          await sleep(wait);
        }
      }
    },
  };
}

export type SmsKind = 'received' | 'shipped' | 'failed';

export type SmsToSend = { orderUuid: string; kind: SmsKind; to: string; body: string; trace?: Trace };

/**
 * Send the texts of a batch whose (order, kind) has no claim yet, under the batch's locks
 * (consumers.ts, sendNotices), in parallel; each claim commits through `claim` as soon as
 * the provider accepts the text. A send that fails leaves no claim and is returned, to be
 * retried on its own; the others are recorded, so a retry never sends them again
 * (whether or not the provider honours the key).
 */
export async function sendSmsBatch(sms: SmsClient, claim: (m: SmsToSend & { providerId: string }) => Promise<void>, em: EntityManager, batch: (SmsToSend & { msgId: string })[], log: Logger): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  if (!batch.length) return { failed: [] };
  const done = await em.execute<{ order_id: string; kind: string }[]>(
    `select order_id, kind from notifications.sms where (order_id, kind) in (${batch.map(() => '(?::uuid, ?)').join(', ')})`,
    batch.flatMap((m) => [m.orderUuid, m.kind]));
  const todo = batch.filter((m) => !done.some((c) => c.order_id === m.orderUuid && c.kind === m.kind));
  const sent = await Promise.allSettled(todo.map(async (m) => {
    const send = () => sms.send({ to: m.to, body: m.body, key: `sms:${m.orderUuid}:${m.kind}` });
    // In the trace of the message that asked for it (a batch runs in a span of its own).
    const providerId = m.trace ? await withTrace(m.trace, send) : await send();
    // A failure here retries the text under the same Idempotency-Key.
    await claim({ orderUuid: m.orderUuid, kind: m.kind, to: m.to, body: m.body, providerId });
  }));
  const failed = todo.flatMap((m, i) => { const r = sent[i]!; return r.status === 'rejected' ? [{ msgId: m.msgId, error: r.reason as unknown }] : []; });
  if (todo.length > failed.length) log.info({ sent: todo.length - failed.length }, 'SMS accepted by the provider');
  return { failed };
}

/** The text of each SMS; the checker in testing/books.ts parses "order <orderId> <kind>". `refunded`: the amount a failed order was charged and refunded. */
export function smsBody(kind: SmsKind, o: { orderId: string; trackingNumber?: string | null; failureReason?: string | null; refunded?: string | null }): string {
  if (kind === 'received') return `orderflow: order ${o.orderId} received. We will text you when it ships.`;
  if (kind === 'shipped') return `orderflow: order ${o.orderId} shipped. Tracking number ${o.trackingNumber}.`;
  if (o.refunded) return `orderflow: order ${o.orderId} failed (${o.failureReason}). The ${o.refunded} charged was refunded and no stock is held.`;
  return `orderflow: order ${o.orderId} failed (${o.failureReason}). Nothing was charged and no stock is held.`;
}
