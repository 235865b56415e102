// The consumer loop of LENDING_ITEMS: the kit's delivery model (BRIEF "The delivery
// model") without the per-message inbox.
//
// Why not kit/worker.ts: its inbox costs four database round trips per message
// (lookup, BEGIN, insert, COMMIT) on top of the handler's own, and its concurrency
// is fixed at start. At T24 rates of 1000/s on two cores that overhead, not T24,
// was the limit (measured: ~2 ms of CPU per item, 440 items/s). Item commands need
// no inbox: every effect is guarded by the item's state in Postgres (a repeated
// command finds the item already moved and does nothing), so at-least-once
// delivery is enough. What stays the same:
//  - success: ack after the handler's writes committed;
//  - NonRetryableError or a bad message: DLQ copy (kit/dlq.ts), then term();
//  - RetryLaterError(ms): nak(ms); anything else: nak(backoff(attempt));
//  - while `paused()` (breaker open) nothing is pulled;
//  - one message per key at a time (a second one waits its turn by nak);
//  - in-flight messages are kept alive with working() while they wait.
// What differs: the number of messages in hand follows `limit()` (the T24
// client's recommended concurrency) at every pull.
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { ZodType } from 'zod';
import { sendToDlq } from '../kit/dlq.ts';
import { NonRetryableError, RetryLaterError } from '../kit/errors.ts';
import type { Logger } from '../kit/log.ts';
import { outcomeRecorder, type Metrics } from '../kit/metrics.ts';
import { H } from '../kit/nats.ts';
import { pullLoop, waker } from '../kit/pull.ts';
import { backoff, parseMessage, type RetryPolicy } from '../kit/worker.ts';

export type PumpContext = { subject: string; attempt: number; requestId: string | undefined; log: Logger; msg: JsMsg };

export type ItemPump = { stop(timeoutMs?: number): Promise<void>; inflight(): number };

/** `const pump = await startItemPump({ js, stream: 'LENDING_ITEMS', consumer: 'lending-items', schema, key, limit, paused, handle, ... })` */
export async function startItemPump<T>(o: {
  js: JetStreamClient; stream: string; consumer: string; log: Logger; metrics?: Metrics;
  schema: ZodType<T>;
  key: (data: T) => string;
  /** Most messages in hand; read at every pull. */
  limit: () => number;
  paused: () => boolean;
  retry: RetryPolicy;
  handle: (data: T, ctx: PumpContext) => Promise<void>;
}): Promise<ItemPump> {
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const log = o.log.child({ consumer: o.consumer });
  const inflight = new Set<Promise<void>>();
  const keys = new Set<string>();
  let running = true;
  const slot = waker(250);

  const outcome = outcomeRecorder(o.metrics, o.consumer);

  const processOne = async (m: JsMsg) => {
    const started = performance.now();
    const attempt = m.info.deliveryCount;
    const requestId = m.headers?.get(H.requestId) || undefined;
    const mlog = log.child({ subject: m.subject, seq: m.seq, attempt, ...(requestId ? { requestId } : {}) });
    const toDlq = async (reason: 'non-retryable' | 'invalid-message', error: string) => {
      try {
        await sendToDlq(o.js, { stream: o.stream, consumer: o.consumer, subject: m.subject, seq: m.seq, deliveries: attempt, reason, error, data: m.data, headers: m.headers });
        m.term();
        mlog.warn({ reason, error }, 'sent to DLQ');
        outcome('dlq', started);
      } catch (err) {
        mlog.error({ err: String(err) }, 'DLQ publish failed; will retry');
        m.nak(1000);
      }
    };

    const parsed = parseMessage(m, o.schema);
    if (!parsed.ok) return await toDlq('invalid-message', parsed.error);
    const data = parsed.data;
    const key = o.key(data);
    if (keys.has(key)) {
      // Another command for this loan is in hand: this one comes back after it.
      m.nak(1000);
      outcome('deferred', started);
      return;
    }
    keys.add(key);
    const beat = setInterval(() => m.working(), 5000);
    try {
      await o.handle(data, { subject: m.subject, attempt, requestId, log: mlog, msg: m });
      m.ack();
      outcome('ok', started);
    } catch (err) {
      if (err instanceof NonRetryableError) return await toDlq('non-retryable', err.message);
      const message = (err as Error)?.message ?? String(err);
      if (err instanceof RetryLaterError) {
        m.nak(err.delayMs);
        mlog.debug({ delayMs: err.delayMs, reason: message }, 'retry later');
        outcome('deferred', started);
        return;
      }
      const delay = backoff(o.retry, attempt);
      m.nak(delay);
      mlog.warn({ err: message, delayMs: delay }, 'handler failed; will retry');
      outcome('retry', started);
    } finally {
      clearInterval(beat);
      keys.delete(key);
    }
  };

  const dispatch = (m: JsMsg) => {
    const p: Promise<void> = processOne(m)
      .catch((err) => { log.error({ err: String(err) }, 'unexpected pump failure'); })
      .finally(() => { inflight.delete(p); slot.wake(); });
    inflight.add(p);
  };

  const loop = pullLoop({
    consumer, log, running: () => running,
    // Pull in chunks, not one message per freed slot: a pull is a round trip.
    room: () => {
      if (o.paused()) return 0;
      const limit = Math.max(1, Math.floor(o.limit()));
      const free = limit - inflight.size;
      return free < Math.max(1, Math.ceil(limit / 4)) ? 0 : free;
    },
    waitForRoom: () => (o.paused() ? sleep(200) : slot.wait()),
    onMessage: (m) => { if (!running) m.nak(); else dispatch(m); },
  });

  return {
    inflight: () => inflight.size,
    async stop(timeoutMs = 20_000) {
      running = false;
      slot.wake();
      await loop;
      await Promise.race([Promise.all(inflight), sleep(timeoutMs)]);
    },
  };
}
