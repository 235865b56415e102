// SMS through the provider of CONTRACTS.md (`POST /v1/messages` with Idempotency-Key).
// 400 is permanent (DLQ); 429 comes back after Retry-After; 5xx, timeouts and
// dropped connections are transient, and safe to retry under the same key.
import { NonRetryableError, RetryLaterError } from '../kit/errors.ts';
import type { HandlerContext } from '../kit/worker.ts';

export type SmsClient = { send(m: { to: string; body: string; key: string }): Promise<string> };

export class SmsTransientError extends Error {
  override name = 'SmsTransientError';
}

/** `const sms = createSmsClient({ url: 'http://127.0.0.1:8026' }); await sms.send({ to, body, key })` */
export function createSmsClient({ url, timeoutMs = 10_000 }: { url: string; timeoutMs?: number }): SmsClient {
  const base = url.replace(/\/+$/, '');
  return {
    async send({ to, body, key }) {
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
        const after = Number(res.headers.get('retry-after'));
        throw new RetryLaterError(Number.isFinite(after) && after > 0 ? after * 1000 : 1000, 'SMS provider rate limited');
      }
      if (res.status >= 500) throw new SmsTransientError(`SMS provider answered ${res.status}`);
      throw new NonRetryableError(`SMS provider refused (${res.status}): ${text.slice(0, 300)}`, { reason: 'sms-rejected' });
    },
  };
}

export type SmsKind = 'received' | 'shipped' | 'failed';

/**
 * Send one (order, kind) SMS at most once: the claim row, the send and the commit
 * share the handler's transaction, as for mail (consumers.ts); a failed send rolls
 * the claim back, and a resend after a crash reuses the Idempotency-Key.
 */
export async function sendSmsOnce(sms: SmsClient, ctx: HandlerContext, m: { orderUuid: string; kind: SmsKind; to: string; body: string }): Promise<boolean> {
  return await ctx.tx(async (em) => {
    // As for mail: the COMMIT after the provider's 202 is the in-doubt window, so it does
    // not wait for the WAL flush; a Postgres crash could only lose the record, and the
    // resend reuses the Idempotency-Key.
    await em.execute('set local synchronous_commit = off');
    const claimed = await em.execute(
      'insert into notifications.sms (order_id, kind, recipient, body, sent_at) values (?, ?, ?, ?, now()) on conflict do nothing returning 1',
      [m.orderUuid, m.kind, m.to, m.body]);
    if (!claimed.length) return false;
    const id = await sms.send({ to: m.to, body: m.body, key: `sms:${m.orderUuid}:${m.kind}` });
    await em.execute('update notifications.sms set provider_id = ? where order_id = ? and kind = ?', [id, m.orderUuid, m.kind]);
    ctx.log.info({ orderUuid: m.orderUuid, kind: m.kind }, 'SMS accepted by the provider');
    return true;
  });
}

/** The text of each SMS; the checker in saga/books.ts parses "order <orderId> <kind>". */
export function smsBody(kind: SmsKind, o: { orderId: string; trackingNumber?: string | null; failureReason?: string | null }): string {
  if (kind === 'received') return `orderflow: order ${o.orderId} received. We will text you when it ships.`;
  if (kind === 'shipped') return `orderflow: order ${o.orderId} shipped. Tracking number ${o.trackingNumber}.`;
  return `orderflow: order ${o.orderId} failed (${o.failureReason}). Nothing was charged and no stock is held.`;
}
