// The worker harness: every JetStream consumer in orderflow runs through here, so the
// delivery model of BRIEF.md holds everywhere:
//  1. success: the handler's DB writes and the inbox row commit together, then ack;
//     a redelivery whose inbox row exists is acked without committing anything (the
//     inbox insert opens ctx.tx). Work a handler does before ctx.tx (an external call)
//     does run again then, so it must be idempotent by itself, as it must be anyway: a
//     crash between the call and the commit repeats it too. There is no inbox read
//     before the handler: it cost one statement per message to save work only on a
//     redelivery after a lost ack;
//  2. a transient error: nak(backoff(attempt)), exponential with jitter;
//  3. NonRetryableError or a message failing its schema: DLQ copy, then term();
//  4. attempts run out: the server's advisory takes it to the DLQ (see dlq.ts);
//  6. while `paused()` (an open breaker) nothing new is pulled, and a message in hand
//     waits (with working() heartbeats) instead of burning a delivery.
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { ZodType } from 'zod';
import type { EntityManager, MikroORM } from './db.ts';
import { errorKey, redactSecrets, sendToDlq } from './dlq.ts';
import { NonRetryableError, RetryLaterError } from './errors.ts';
import type { Logger } from './log.ts';
import { outcomeRecorder, type Metrics } from './metrics.ts';
import { H } from './nats.ts';
import { pullLoop, waker } from './pull.ts';

export type RetryPolicy = { baseMs: number; factor?: number; maxMs?: number; jitter?: number };

/** Delay before attempt `attempt + 1`. `backoff({ baseMs: 1000 }, 3) ≈ 4000` */
export function backoff(p: RetryPolicy, attempt: number, random = Math.random): number {
  const raw = Math.min(p.maxMs ?? 60_000, p.baseMs * (p.factor ?? 2) ** Math.max(0, attempt - 1));
  const j = p.jitter ?? 0.2;
  return Math.max(0, Math.round(raw * (1 - j + 2 * j * random())));
}

/** A message's payload checked against `schema`, or the DLQ reason why it is not valid. */
export function parseMessage<T>(m: JsMsg, schema: ZodType<T>): { ok: true; data: T } | { ok: false; error: string } {
  let raw: unknown;
  try { raw = m.json(); } catch (err) { return { ok: false, error: `not JSON: ${(err as Error).message}` }; }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return { ok: true, data: parsed.data };
  return { ok: false, error: `schema: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
}

export type HandlerContext = {
  msgId: string;
  subject: string;
  attempt: number;
  requestId: string | undefined;
  log: Logger;
  msg: JsMsg;
  /** A fresh EntityManager for reads outside the final transaction. */
  em: EntityManager;
  /** Run the handler's writes in one transaction with this message's inbox row. Call it once, last. */
  tx<R>(fn: (em: EntityManager) => Promise<R>): Promise<R>;
};

/** What every consumer harness (this one, batch-worker.ts) is given: where to pull and what it needs. */
export type ConsumerOptions<T> = {
  stream: string;
  consumer: string;
  js: JetStreamClient;
  orm: MikroORM;
  errors: KV;
  log: Logger;
  metrics?: Metrics;
  schema: ZodType<T>;
  retry?: RetryPolicy;
};

export type WorkerOptions<T> = ConsumerOptions<T> & {
  handle: (data: T, ctx: HandlerContext) => Promise<void>;
  /** Messages with the same key run one at a time, in arrival order. */
  key?: (data: T) => string;
  concurrency?: number;
  /** While true, pull nothing and hold messages in hand (e.g. a breaker is open). */
  paused?: () => boolean;
  /**
   * false: no inbox row per message. Only for a handler that is idempotent by itself,
   * whose writes are a compare-and-set on the state it read, so that a redelivery finds
   * the work done and writes nothing (funding's scoring); it saves three round trips
   * per message. ctx.tx is then a plain transaction. Default true.
   */
  inbox?: boolean;
};

export type Worker = { stop(timeoutMs?: number): Promise<void>; inflight(): number };

class AlreadyProcessed extends Error {}

/** Start consuming a durable pull consumer. `const w = await startWorker({ stream: 'ORDERS', consumer: 'notifications', ... })` */
export async function startWorker<T>(o: WorkerOptions<T>): Promise<Worker> {
  const concurrency = o.concurrency ?? 16;
  const retry = o.retry ?? { baseMs: 1000, maxMs: 60_000 };
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const log = o.log.child({ consumer: o.consumer });
  const keyTails = new Map<string, Promise<void>>();
  const inflight = new Set<Promise<void>>();
  let running = true;
  const slot = waker(1000);

  const outcome = outcomeRecorder(o.metrics, o.consumer);

  const holdWhilePaused = async (m: JsMsg) => {
    let beat = Date.now();
    while (o.paused?.() && running) {
      if (Date.now() - beat > 5000) { m.working(); beat = Date.now(); }
      await sleep(100);
    }
  };

  const processOne = async (m: JsMsg) => {
    const started = performance.now();
    const seq = m.seq;
    const attempt = m.info.deliveryCount;
    const msgId = m.headers?.get(H.logicalId) || m.headers?.get(H.msgId) || `${o.stream}:${seq}`;
    const requestId = m.headers?.get(H.requestId) || undefined;
    const mlog = log.child({ msgId, subject: m.subject, attempt, ...(requestId ? { requestId } : {}) });
    const toDlq = async (reason: 'non-retryable' | 'invalid-message', raw: string) => {
      // A handler's message may quote its input: secret fields never reach a log line.
      const error = redactSecrets(raw, m.data);
      await sendToDlq(o.js, { stream: o.stream, consumer: o.consumer, subject: m.subject, seq, deliveries: attempt, reason, error, data: m.data, headers: m.headers });
      m.term();
      mlog.warn({ reason, error }, 'sent to DLQ');
      outcome('dlq', started);
    };

    const parsed = parseMessage(m, o.schema);
    if (!parsed.ok) return await toDlq('invalid-message', parsed.error);
    const data = parsed.data;

    try {
      await holdWhilePaused(m);
      let inboxed = false;
      const tx = async <R>(fn: (em: EntityManager) => Promise<R>): Promise<R> => o.inbox === false
        ? await o.orm.em.fork().transactional(fn)
        : await o.orm.em.fork().transactional(async (em) => {
          const r = await em.execute('insert into kit.inbox (consumer, msg_id) values (?, ?) on conflict do nothing returning 1', [o.consumer, msgId]);
          if (!r.length) throw new AlreadyProcessed();
          const out = await fn(em);
          inboxed = true;
          return out;
        });
      await o.handle(data, { msgId, subject: m.subject, attempt, requestId, log: mlog, msg: m, em: o.orm.em.fork(), tx });
      if (!inboxed && o.inbox !== false) await tx(async () => {});
      m.ack();
      outcome('ok', started);
    } catch (err) {
      if (err instanceof AlreadyProcessed) { m.ack(); outcome('duplicate', started); return; }
      if (err instanceof NonRetryableError) return await toDlq('non-retryable', err.message).catch((e) => { mlog.error({ err: String(e) }, 'DLQ publish failed'); m.nak(1000); });
      const message = redactSecrets((err as Error)?.message ?? String(err), m.data);
      // Kept so the DLQ mover can say why, if this turns out to be the last attempt.
      await o.errors.put(errorKey(o.stream, seq), message.slice(0, 2000)).catch(() => {});
      if (err instanceof RetryLaterError) {
        m.nak(err.delayMs);
        mlog.info({ delayMs: err.delayMs, reason: message }, 'retry later');
        outcome('deferred', started);
        return;
      }
      const delay = backoff(retry, attempt);
      m.nak(delay);
      mlog.warn({ err: message, delayMs: delay }, 'handler failed; will retry');
      outcome('retry', started);
    }
  };

  const dispatch = (m: JsMsg) => {
    let key: string | undefined;
    if (o.key) {
      try { key = o.key(m.json() as T); } catch { key = undefined; }
    }
    const prev = key !== undefined ? keyTails.get(key) : undefined;
    const p: Promise<void> = (prev ? prev.then(() => processOne(m)) : processOne(m))
      .catch((err) => { log.error({ err: String(err) }, 'unexpected worker failure'); })
      .finally(() => {
        inflight.delete(p);
        if (key !== undefined && keyTails.get(key) === p) keyTails.delete(key);
        slot.wake();
      });
    if (key !== undefined) keyTails.set(key, p);
    inflight.add(p);
  };

  const loop = pullLoop({
    consumer, log, running: () => running,
    room: () => (o.paused?.() ? 0 : concurrency - inflight.size),
    waitForRoom: () => (o.paused?.() ? sleep(200) : slot.wait()),
    onMessage: dispatch,
  });

  return {
    inflight: () => inflight.size,
    async stop(timeoutMs = 20_000) {
      running = false;
      // A pull in flight ends at its expiry (1 s); with NATS unreachable it may not end at all.
      await Promise.race([loop, sleep(3000)]);
      // In-flight work gets time to finish; what does not is redelivered after ack_wait.
      await Promise.race([Promise.all(inflight), sleep(timeoutMs)]);
    },
  };
}
