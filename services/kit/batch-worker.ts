// A batching variant of the worker harness (worker.ts), for high-volume consumers:
// the orchestrator, inventory and shipping (Postgres only), payments and the mail and
// SMS senders (whose external calls run inside the batch's transaction). Same delivery
// model as kit/worker.ts: the handler's writes and the inbox rows commit together,
// then the messages are acked; a redelivered message whose inbox row exists is acked
// without effect; NonRetryableError or a bad schema goes to the DLQ; a transient error
// is nak'ed with backoff; max_deliver exhaustion reaches the DLQ through the advisory
// path.
//
// What differs: messages that arrive together (up to `batch`, within `lingerMs`)
// share ONE transaction and one multi-row inbox insert, instead of BEGIN, an inbox
// insert and COMMIT each. On this machine a query costs mostly its socket write, and
// the harness overhead was half of the saga's queries.
// A batch holds at most one message per key (later ones wait for the next batch),
// batches run one at a time, so per-key order holds. If a batch fails, each of its
// messages is retried alone, so one bad message never holds back the others.
import { setTimeout as sleep } from 'node:timers/promises';
import type { JsMsg } from '@nats-io/jetstream';
import type { EntityManager } from './db.ts';
import { errorKey, redactSecrets, sendToDlq } from './dlq.ts';
import { NonRetryableError, RetryLaterError } from './errors.ts';
import type { Logger } from './log.ts';
import { H } from './nats.ts';
import { pullLoop } from './pull.ts';
import { backoff, parseMessage, type ConsumerOptions } from './worker.ts';

export type BatchItem<T> = {
  data: T; subject: string; msgId: string; requestId: string | undefined; attempt: number; log: Logger;
  /** Tell the server this message is still being worked on (a long wait, e.g. an open breaker). */
  working(): void;
};

export type BatchWorkerOptions<T> = ConsumerOptions<T> & {
  key: (data: T) => string;
  /**
   * Apply every item inside the one transaction `em`. Throwing fails the whole batch
   * (then each item is retried alone). Returning `{ failed }` commits the rest and
   * retries (or dead-letters) just those items, whose own writes the handler undid.
   */
  handle: (items: BatchItem<T>[], em: EntityManager) => Promise<void | { failed: { msgId: string; error: unknown }[] }>;
  batch?: number;
  lingerMs?: number;
  /** While true, pull nothing new (e.g. a breaker is open); messages in hand are the handler's to hold. */
  paused?: () => boolean;
};

export type BatchWorker = { stop(): Promise<void> };

type Parsed<T> = { m: JsMsg; item: BatchItem<T>; key: string };

/** `const w = await startBatchWorker({ stream: 'SAGA_REPLIES', consumer: 'saga', schema, key, handle })` */
export async function startBatchWorker<T>(o: BatchWorkerOptions<T>): Promise<BatchWorker> {
  const size = o.batch ?? 64;
  const linger = o.lingerMs ?? 2;
  const retry = o.retry ?? { baseMs: 500, maxMs: 30_000 };
  const log = o.log.child({ consumer: o.consumer });
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const outcome = (result: string, n = 1) => o.metrics?.handlerOutcomes.inc({ consumer: o.consumer, outcome: result }, n);

  let waiting: Parsed<T>[] = [];
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  let running = true;
  let inBatch = 0;

  const toDlq = async (m: JsMsg, reason: 'non-retryable' | 'invalid-message', raw: string) => {
    // A handler's message may quote its input: secret fields never reach a log line.
    const error = redactSecrets(raw, m.data);
    try {
      await sendToDlq(o.js, { stream: o.stream, consumer: o.consumer, subject: m.subject, seq: m.seq, deliveries: m.info.deliveryCount, reason, error, data: m.data, headers: m.headers });
      m.term();
      outcome('dlq');
      log.warn({ seq: m.seq, subject: m.subject, reason, error }, 'sent to DLQ');
    } catch (err) {
      log.error({ err: String(err) }, 'DLQ publish failed');
      m.nak(1000);
    }
  };

  const parse = async (m: JsMsg): Promise<Parsed<T> | null> => {
    const parsed = parseMessage(m, o.schema);
    if (!parsed.ok) { await toDlq(m, 'invalid-message', parsed.error); return null; }
    const msgId = m.headers?.get(H.logicalId) || m.headers?.get(H.msgId) || `${o.stream}:${m.seq}`;
    const requestId = m.headers?.get(H.requestId) || undefined;
    const attempt = m.info.deliveryCount;
    return {
      m, key: o.key(parsed.data),
      item: { data: parsed.data, subject: m.subject, msgId, requestId, attempt, log: log.child({ msgId, subject: m.subject, attempt, ...(requestId ? { requestId } : {}) }), working: () => m.working() },
    };
  };

  /** One transaction for the whole group; returns the error when it failed (nothing committed). */
  const runGroup = async (group: Parsed<T>[]): Promise<unknown> => {
    let failed: { msgId: string; error: unknown }[] = [];
    try {
      await o.orm.em.fork().transactional(async (em) => {
        const ids = group.map((g) => g.item.msgId);
        const fresh = new Set((await em.execute<{ msg_id: string }[]>(
          `insert into kit.inbox (consumer, msg_id) values ${ids.map(() => '(?, ?)').join(', ')} on conflict do nothing returning msg_id`,
          ids.flatMap((id) => [o.consumer, id]))).map((r) => r.msg_id));
        const todo = group.filter((g) => fresh.has(g.item.msgId));
        const r = todo.length ? await o.handle(todo.map((g) => g.item), em) : undefined;
        failed = r?.failed ?? [];
        // Items that failed on their own leave no inbox row: their redelivery runs them again.
        if (failed.length) await em.execute('delete from kit.inbox where consumer = ? and msg_id in (?)', [o.consumer, failed.map((f) => f.msgId)]);
      });
    } catch (err) {
      return err;
    }
    const bad = new Map(failed.map((f) => [f.msgId, f.error]));
    for (const g of group) {
      if (bad.has(g.item.msgId)) await fail(g, bad.get(g.item.msgId));
      else g.m.ack();
    }
    outcome('ok', group.length - bad.size);
    return null;
  };

  const fail = async (g: Parsed<T>, err: unknown) => {
    if (err instanceof NonRetryableError) return await toDlq(g.m, 'non-retryable', err.message);
    const message = redactSecrets((err as Error)?.message ?? String(err), g.m.data);
    await o.errors.put(errorKey(o.stream, g.m.seq), message.slice(0, 2000)).catch(() => {});
    if (err instanceof RetryLaterError) { g.m.nak(err.delayMs); outcome('deferred'); return; }
    const delay = backoff(retry, g.item.attempt);
    g.m.nak(delay);
    outcome('retry');
    g.item.log.warn({ err: message, delayMs: delay }, 'handler failed; will retry');
  };

  const runBatch = async (group: Parsed<T>[]) => {
    const err = await runGroup(group);
    if (!err) return;
    if (group.length === 1) return await fail(group[0]!, err);
    const text = group.reduce((t, g) => redactSecrets(t, g.m.data), String((err as Error)?.message ?? err));
    log.info({ err: text, size: group.length }, 'batch failed; retrying its messages one by one');
    for (const g of group) {
      const e = await runGroup([g]);
      if (e) await fail(g, e);
    }
  };

  const flush = () => {
    if (timer) { clearTimeout(timer); timer = undefined; }
    if (!waiting.length) return;
    // At most one message per key in a batch; the rest keep their order for the next one.
    const keys = new Set<string>();
    const group: Parsed<T>[] = [];
    const later: Parsed<T>[] = [];
    for (const p of waiting) {
      if (group.length < size && !keys.has(p.key)) { keys.add(p.key); group.push(p); } else later.push(p);
    }
    waiting = later;
    inBatch += group.length;
    chain = chain.then(() => runBatch(group)).finally(() => { inBatch -= group.length; }).catch((err) => log.error({ err: String(err) }, 'batch worker failure'))
      .then(() => { if (waiting.length) flush(); });
  };

  // Pull only what there is room for (two batches), so under overload messages wait in
  // the stream, not in this process past their ack_wait.
  const loop = pullLoop({
    consumer, log, running: () => running,
    room: () => (o.paused?.() ? 0 : size * 2 - waiting.length - inBatch),
    waitForRoom: () => (o.paused?.() ? sleep(200) : Promise.race([chain, sleep(50)])),
    onMessage: async (m) => {
      const p = await parse(m);
      if (!p) return;
      waiting.push(p);
      if (waiting.length >= size) flush();
      else timer ??= setTimeout(flush, linger);
    },
  });

  return {
    async stop() {
      running = false;
      await loop;
      flush();
      await chain;
      // Whatever a flush left waiting goes back to the stream at once.
      for (const p of waiting) p.m.nak();
      waiting = [];
    },
  };
}
