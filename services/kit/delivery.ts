// The delivery core: every JetStream consumer in orderflow runs through startConsumer,
// and every failed message through settle(), so the delivery model of BRIEF.md is
// written once:
//  1. success: ack after the handler's writes committed. With guard 'inbox' the writes
//     and the inbox row (consumer, message id) commit together and a redelivery whose
//     row exists commits nothing; with guard 'state' there is no inbox row, because the
//     handler's writes are a compare-and-set on the state it read (a redelivery finds
//     the work done and writes nothing). The inbox costs a BEGIN, an insert and a COMMIT
//     per message (or per batch), which was the largest share of the CPU of the item
//     pump, the status projection and funding's status cache writer;
//  2. a transient error: its message kept for the DLQ mover, nak(backoff(attempt));
//  3. RetryLaterError(ms): nak(ms);
//  4. NonRetryableError or a message failing its schema: DLQ copy, then term(); if the
//     DLQ publish fails, nak(1000) and try again;
//  5. attempts run out: the server's advisory takes it to the DLQ (see dlq.ts);
//  6. while `paused()` (an open breaker) nothing new is pulled; with `hold`, a message
//     in hand waits (with working() heartbeats) instead of burning a delivery.
//
// Two shapes share it: one message at a time (`handle(data, ctx)`, up to `concurrency`
// in hand, per-key order by queueing or deferring), or micro-batches (`batch`: up to
// `size` messages that arrive within `lingerMs` go to one `handle(items, em)`, in one
// transaction with one multi-row inbox insert; batches run one at a time and hold at
// most one message per key, so per-key order holds).
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
import { backoff, type RetryPolicy } from './retry.ts';
import { carryHeaders, failed, SpanKind, SpanStatusCode, traceFrom, traceIds, tracingOff, withTrace, type Span, type Trace, type Tracing } from './tracing.ts';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';

// Re-exported: the relay, worker.ts and services import them from here.
export { backoff, type RetryPolicy };

/** A message's payload checked against `schema`, or the DLQ reason why it is not valid. `const p = parseMessage(m, Job); if (!p.ok) ...` */
export function parseMessage<T>(m: JsMsg, schema: ZodType<T>): { ok: true; data: T } | { ok: false; error: string } {
  let raw: unknown;
  try { raw = m.json(); } catch (err) { return { ok: false, error: `not JSON: ${(err as Error).message}` }; }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return { ok: true, data: parsed.data };
  return { ok: false, error: `schema: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
}

/** The message fails its schema (or is not JSON): settle() dead-letters it as `invalid-message`. `throw new InvalidMessageError('schema: n: expected number')` */
export class InvalidMessageError extends NonRetryableError {
  override name = 'InvalidMessageError';
  constructor(message: string) { super(message, { reason: 'invalid-message' }); }
}

export type SettleContext = {
  js: JetStreamClient;
  stream: string;
  consumer: string;
  retry: RetryPolicy;
  /** The message's logger. */
  log: Logger;
  /** Where the last error waits for the DLQ mover; leave out where max_deliver is unlimited. */
  errors?: KV;
  /** Level of the "retry later" line (a consumer that defers by design logs it at debug). */
  retryLaterLog?: 'info' | 'debug' | 'none';
  /** Level of the "will retry" line (a batch that failed as a whole logged once already). */
  retryLog?: 'warn' | 'debug';
};

/** What settle() did, for the handler-outcome metric; null when the DLQ publish failed (nak'ed, counted nowhere). */
export type Settled = 'dlq' | 'deferred' | 'retry' | null;

/**
 * The one decision for a failed message: InvalidMessageError or NonRetryableError → DLQ
 * copy then term() (a failed DLQ publish → nak(1000)); RetryLaterError(ms) → nak(ms);
 * anything else → nak(backoff(attempt)). Apart from a DLQ, the error is kept in `errors`
 * so the DLQ mover can say why, should this be the last attempt.
 * `const outcome = await settle(m, err, { js, stream, consumer, retry, log, errors })`
 */
export async function settle(m: JsMsg, err: unknown, c: SettleContext): Promise<Settled> {
  // A handler's message may quote its input: secret fields never reach a log line, the
  // errors bucket or a DLQ entry's error.
  const message = redactSecrets((err as Error)?.message ?? String(err), m.data);
  if (err instanceof NonRetryableError) {
    const reason = err instanceof InvalidMessageError ? 'invalid-message' : 'non-retryable';
    try {
      await sendToDlq(c.js, { stream: c.stream, consumer: c.consumer, subject: m.subject, seq: m.seq, deliveries: m.info.deliveryCount, reason, error: message, data: m.data, headers: m.headers });
    } catch (e) {
      c.log.error({ err: String(e) }, 'DLQ publish failed; will retry');
      m.nak(1000);
      return null;
    }
    m.term();
    c.log.warn({ reason, error: message }, 'sent to DLQ');
    return 'dlq';
  }
  if (c.errors) await c.errors.put(errorKey(c.stream, m.seq), message.slice(0, 2000)).catch(() => {});
  if (err instanceof RetryLaterError) {
    m.nak(err.delayMs);
    const level = c.retryLaterLog ?? 'info';
    if (level !== 'none') c.log[level]({ delayMs: err.delayMs, reason: message }, 'retry later');
    return 'deferred';
  }
  const delay = backoff(c.retry, m.info.deliveryCount);
  m.nak(delay);
  c.log[c.retryLog ?? 'warn']({ err: message, delayMs: delay }, 'handler failed; will retry');
  return 'retry';
}

/** One message as a handler sees it. Its `log` (bound to msgId, subject, attempt, requestId, trace_id) is made on first use. */
export type DeliveryContext = {
  msgId: string;
  subject: string;
  attempt: number;
  requestId: string | undefined;
  log: Logger;
  msg: JsMsg;
  /** The message's trace: its delivery span, a child of the span that published it (ROOT while tracing is off). */
  trace: Trace;
  /** Headers for what this message causes (X-Request-Id, traceparent): `enqueue(em, [{ subject, data, headers: item.carry }])`. */
  carry: Record<string, string> | undefined;
};

export type HandlerContext = DeliveryContext & {
  /** A fresh EntityManager for reads outside the final transaction (made on first use). */
  em: EntityManager;
  /** Run the handler's writes in one transaction (with this message's inbox row, under guard 'inbox'). Call it once, last. */
  tx<R>(fn: (em: EntityManager) => Promise<R>): Promise<R>;
};

export type BatchItem<T> = {
  data: T; subject: string; msgId: string; requestId: string | undefined; attempt: number; log: Logger;
  /**
   * The item's trace. A batch of several runs in a span of its own that links the items'
   * traces, so work done for one item (an external call) belongs in `withTrace(item.trace, ...)`,
   * and its outbox rows take `headers: item.carry`.
   */
  trace: Trace;
  /** X-Request-Id and the item's trace, for the outbox rows it causes. */
  carry: Record<string, string> | undefined;
  /** Tell the server this message is still being worked on (a long wait, e.g. an open breaker). */
  working(): void;
};

export type BatchResult = void | { failed: { msgId: string; error: unknown }[] };

type CommonOptions<T> = {
  stream: string;
  consumer: string;
  js: JetStreamClient;
  log: Logger;
  metrics?: Metrics;
  /** The dlq-errors bucket (see settle); leave out where max_deliver is unlimited. */
  errors?: KV;
  schema: ZodType<T>;
  retry?: RetryPolicy;
  /**
   * 'inbox': the handler's writes commit with an inbox row per message, and a message
   * whose row exists is acked without effect. 'state': no inbox row; only for a handler
   * whose writes are a compare-and-set on the state it read, so a redelivery writes nothing.
   */
  guard: 'inbox' | 'state';
  /** While true, pull nothing (e.g. a breaker is open). */
  paused?: () => boolean;
  retryLaterLog?: 'info' | 'debug' | 'none';
  /** A span per delivery, continuing the trace in the message's headers (deps.tracing). */
  tracing?: Tracing;
};

export type EachOptions<T> = CommonOptions<T> & {
  /** Needed for ctx.em and ctx.tx, and for guard 'inbox'. */
  orm?: MikroORM;
  handle: (data: T, ctx: HandlerContext) => Promise<void>;
  /** Most messages in hand; a function is read at every pull (e.g. a client's recommended concurrency). Default 16. */
  concurrency?: number | (() => number);
  /** Pull only once a quarter of the room is free: a pull is a round trip, and a busy consumer frees one slot at a time. */
  pullInChunks?: boolean;
  key?: (data: T) => string;
  /** A second message for a key in hand: 'queue' runs it after the first (default); 'defer' naks it for 1 s. */
  sameKey?: 'queue' | 'defer';
  /** With `paused`: a message in hand waits (working() heartbeats) until it is false, instead of running. Default true. */
  hold?: boolean;
  /** working() at this interval while the handler runs (handlers that wait long on a dependency). */
  heartbeatMs?: number;
};

export type BatchOptions<T> = CommonOptions<T> & {
  orm: MikroORM;
  batch: { size: number; lingerMs: number };
  /** At most one message per key in a batch; the others wait for the next one, in order. */
  key?: (data: T) => string;
  /**
   * Apply every item. Under guard 'inbox' `em` is the batch's transaction; under 'state'
   * it is a plain EntityManager (open a transaction if you need one). Throwing fails the
   * whole batch; returning `{ failed }` commits the rest and settles just those items,
   * whose own writes the handler undid.
   */
  handle: (items: BatchItem<T>[], em: EntityManager) => Promise<BatchResult>;
  /** A failed batch is retried one message at a time, so one bad message never holds back the others. Default true. */
  split?: boolean;
};

export type RunningConsumer = { stop(timeoutMs?: number): Promise<void>; inflight(): number };

class AlreadyProcessed extends Error {}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** `p`, or give up waiting after `ms`, without a timer left behind to hold the process. */
const within = async (p: Promise<unknown>, ms: number) => {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((r) => { t = setTimeout(r, ms); })]);
  clearTimeout(t);
};

/**
 * A message's identity as handlers see it. Every field that costs a header or reply-
 * subject decode, or a child logger, is worked out on first use: the status projection
 * and the item pump never read most of them on their hot path.
 */
function describe(m: JsMsg, stream: string, parent: Logger): DeliveryContext {
  let msgId: string | undefined;
  let requestId: string | undefined | null = null;
  let log: Logger | undefined;
  const id = () => (msgId ??= m.headers?.get(H.logicalId) || m.headers?.get(H.msgId) || `${stream}:${m.seq}`);
  const rid = () => (requestId === null ? (requestId = m.headers?.get(H.requestId) || undefined) : requestId);
  const d: DeliveryContext = {
    subject: m.subject, msg: m, trace: ROOT_CONTEXT,
    get msgId() { return id(); },
    get requestId() { return rid(); },
    get attempt() { return m.info.deliveryCount; },
    get log() {
      const r = rid();
      return (log ??= parent.child({ msgId: id(), subject: m.subject, attempt: m.info.deliveryCount, ...(r ? { requestId: r } : {}), ...traceIds(d.trace) }));
    },
    get carry() { return carryHeaders(rid(), d.trace); },
  };
  return d;
}

/**
 * Start the delivery's CONSUMER span, a child of the publisher's span named in the
 * message's traceparent, and make it the delivery's trace. Nothing while tracing is off.
 */
function openSpan(tracing: Tracing, d: DeliveryContext, stream: string, consumer: string): Span | undefined {
  if (!tracing.on) return undefined;
  const m = d.msg;
  const span = tracing.tracer.startSpan(`process ${m.subject}`, {
    kind: SpanKind.CONSUMER,
    attributes: {
      'messaging.system': 'nats', 'messaging.operation.type': 'process', 'messaging.destination.name': m.subject,
      'messaging.consumer.group.name': consumer, 'messaging.message.id': d.msgId,
      'messaging.nats.stream': stream, 'messaging.nats.deliveries': m.info.deliveryCount,
      ...(d.requestId ? { 'orderflow.request_id': d.requestId } : {}),
    },
  }, traceFrom((k) => m.headers?.get(k)));
  d.trace = trace.setSpan(traceFrom((k) => m.headers?.get(k)), span);
  return span;
}

/** End a delivery's span with what settle() (or the ack) made of it. */
function closeSpan(span: Span | undefined, outcome: string, err?: unknown): void {
  if (!span) return;
  span.setAttribute('orderflow.outcome', outcome);
  if (err !== undefined && (outcome === 'retry' || outcome === 'dlq')) failed(span, err);
  else if (outcome === 'deferred') span.setStatus({ code: SpanStatusCode.UNSET });
  span.end();
}

/**
 * Consume a durable pull consumer with the kit's delivery model.
 * `const c = await startConsumer({ js, orm, log, errors, stream: 'ORDERS', consumer: 'notifications', schema, guard: 'inbox', handle })`
 * `const c = await startConsumer({ ..., guard: 'state', batch: { size: 256, lingerMs: 5 }, handle: async (items, em) => {...} })`
 */
export async function startConsumer<T>(o: BatchOptions<T>): Promise<RunningConsumer>;
export async function startConsumer<T>(o: EachOptions<T>): Promise<RunningConsumer>;
export async function startConsumer<T>(o: EachOptions<T> | BatchOptions<T>): Promise<RunningConsumer> {
  if (o.guard === 'inbox' && !o.orm) throw new Error(`consumer ${o.consumer}: guard 'inbox' needs orm`);
  return 'batch' in o ? await startBatches(o) : await startEach(o);
}

async function startEach<T>(o: EachOptions<T>): Promise<RunningConsumer> {
  const limit = typeof o.concurrency === 'function' ? o.concurrency : (() => (o.concurrency as number | undefined) ?? 16);
  const retry = o.retry ?? { baseMs: 1000, maxMs: 60_000 };
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const log = o.log.child({ consumer: o.consumer });
  const keyTails = new Map<string, Promise<void>>();
  const inflight = new Set<Promise<void>>();
  let running = true;
  // A limit read from a function can grow without a slot freeing: look again sooner.
  const slot = waker(typeof o.concurrency === 'function' ? 250 : 1000);
  const outcome = outcomeRecorder(o.metrics, o.consumer);
  const tracing = o.tracing ?? tracingOff;
  const settleWith = (d: DeliveryContext): SettleContext => ({ js: o.js, stream: o.stream, consumer: o.consumer, retry, log: d.log, errors: o.errors, retryLaterLog: o.retryLaterLog });
  const hold = o.paused && o.hold !== false ? o.paused : undefined;
  const orm = () => {
    if (!o.orm) throw new Error(`consumer ${o.consumer} was started without orm`);
    return o.orm;
  };

  const holdWhilePaused = async (m: JsMsg) => {
    let beat = Date.now();
    while (hold!() && running) {
      if (Date.now() - beat > 5000) { m.working(); beat = Date.now(); }
      await sleep(100);
    }
  };

  const processOne = async (data: T, d: DeliveryContext) => {
    const span = openSpan(tracing, d, o.stream, o.consumer);
    if (!span) return await processIn(data, d);
    let result = 'ok';
    let error: unknown;
    await withTrace(d.trace, () => processIn(data, d, (r, e) => { result = r; error = e; }));
    closeSpan(span, result, error);
  };

  const processIn = async (data: T, d: DeliveryContext, report?: (outcome: string, err?: unknown) => void) => {
    const m = d.msg;
    const started = performance.now();
    const beat = o.heartbeatMs ? setInterval(() => m.working(), o.heartbeatMs) : undefined;
    try {
      if (hold?.()) await holdWhilePaused(m);
      let inboxed = false;
      let em: EntityManager | undefined;
      const tx = async <R>(fn: (em: EntityManager) => Promise<R>): Promise<R> => o.guard === 'state'
        ? await orm().em.fork().transactional(fn)
        : await orm().em.fork().transactional(async (em) => {
          const r = await em.execute('insert into kit.inbox (consumer, msg_id) values (?, ?) on conflict do nothing returning 1', [o.consumer, d.msgId]);
          if (!r.length) throw new AlreadyProcessed();
          const out = await fn(em);
          inboxed = true;
          return out;
        });
      const ctx: HandlerContext = {
        subject: d.subject, msg: m, tx,
        get msgId() { return d.msgId; },
        get requestId() { return d.requestId; },
        get attempt() { return d.attempt; },
        get log() { return d.log; },
        get trace() { return d.trace; },
        get carry() { return d.carry; },
        get em() { return (em ??= orm().em.fork()); },
      };
      await o.handle(data, ctx);
      if (!inboxed && o.guard === 'inbox') await tx(async () => {});
      m.ack();
      outcome('ok', started);
    } catch (err) {
      if (err instanceof AlreadyProcessed) { m.ack(); outcome('duplicate', started); report?.('duplicate'); return; }
      const r = await settle(m, err, settleWith(d));
      if (r) outcome(r, started);
      report?.(r ?? 'retry', err);
    } finally {
      if (beat) clearInterval(beat);
    }
  };

  const track = (p: Promise<void>, key: string | undefined) => {
    const q: Promise<void> = p
      .catch((err) => { log.error({ err: String(err) }, 'unexpected consumer failure'); })
      .finally(() => {
        inflight.delete(q);
        if (key !== undefined && keyTails.get(key) === q) keyTails.delete(key);
        slot.wake();
      });
    if (key !== undefined) keyTails.set(key, q);
    inflight.add(q);
  };

  const dispatch = (m: JsMsg) => {
    if (!running) { m.nak(); return; }
    const d = describe(m, o.stream, log);
    const parsed = parseMessage(m, o.schema);
    if (!parsed.ok) {
      const started = performance.now();
      track(settle(m, new InvalidMessageError(parsed.error), settleWith(d)).then((r) => { if (r) outcome(r, started); }), undefined);
      return;
    }
    const data = parsed.data;
    let key: string | undefined;
    if (o.key) {
      try { key = o.key(data); } catch { key = undefined; }
    }
    const prev = key !== undefined ? keyTails.get(key) : undefined;
    if (prev && o.sameKey === 'defer') {
      // Another message for this key is in hand: this one comes back after it.
      m.nak(1000);
      outcome('deferred', performance.now());
      return;
    }
    track(prev ? prev.then(() => processOne(data, d)) : processOne(data, d), key);
  };

  const stopping = new AbortController();
  const loop = pullLoop({
    consumer, log, signal: stopping.signal,
    room: () => {
      if (o.paused?.()) return 0;
      const max = Math.max(1, Math.floor(limit()));
      const free = max - inflight.size;
      return o.pullInChunks && free < Math.ceil(max / 4) ? 0 : free;
    },
    waitForRoom: () => (o.paused?.() ? sleep(200) : slot.wait()),
    onMessage: dispatch,
  });

  return {
    inflight: () => inflight.size,
    async stop(timeoutMs = 20_000) {
      running = false;
      stopping.abort();
      slot.wake();
      // A pull in flight ends at its expiry (1 s); with NATS unreachable it may not end at all.
      await within(loop, 3000);
      // In-flight work gets time to finish; what does not is redelivered after ack_wait.
      await within(Promise.all(inflight), timeoutMs);
    },
  };
}

type Parsed<T> = { m: JsMsg; item: BatchItem<T>; d: DeliveryContext; key: string | undefined; span?: Span; result?: string; error?: unknown };

async function startBatches<T>(o: BatchOptions<T>): Promise<RunningConsumer> {
  const size = o.batch.size;
  const linger = o.batch.lingerMs;
  const retry = o.retry ?? { baseMs: 500, maxMs: 30_000 };
  const log = o.log.child({ consumer: o.consumer });
  const consumer = await o.js.consumers.get(o.stream, o.consumer);
  const outcome = (result: string, n = 1) => { if (n > 0) o.metrics?.handlerOutcomes.inc({ consumer: o.consumer, outcome: result }, n); };
  const split = o.split !== false;
  const tracing = o.tracing ?? tracingOff;

  let waiting: Parsed<T>[] = [];
  let timer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  let inBatch = 0;

  const fail = async (p: { m: JsMsg; d: DeliveryContext; result?: string; error?: unknown }, err: unknown, quiet = false) => {
    const r = await settle(p.m, err, {
      js: o.js, stream: o.stream, consumer: o.consumer, retry, log: p.d.log, errors: o.errors,
      retryLaterLog: o.retryLaterLog ?? 'none', retryLog: quiet ? 'debug' : 'warn',
    });
    if (r) outcome(r);
    p.result = r ?? 'retry';
    p.error = err;
  };

  const parse = async (m: JsMsg): Promise<Parsed<T> | null> => {
    const d = describe(m, o.stream, log);
    const parsed = parseMessage(m, o.schema);
    if (!parsed.ok) { await fail({ m, d }, new InvalidMessageError(parsed.error)); return null; }
    const item: BatchItem<T> = {
      data: parsed.data, subject: d.subject, working: () => m.working(),
      get msgId() { return d.msgId; },
      get requestId() { return d.requestId; },
      get attempt() { return d.attempt; },
      get log() { return d.log; },
      get trace() { return d.trace; },
      get carry() { return d.carry; },
    };
    return { m, d, item, key: o.key?.(parsed.data) };
  };

  /**
   * The handler runs in the trace of a batch's only item; a batch of several gets a span of
   * its own (its SQL is shared) linking the items' delivery spans.
   */
  const inTraceOf = <R>(group: Parsed<T>[], fn: () => Promise<R>): Promise<R> => {
    if (!tracing.on) return fn();
    if (group.length === 1) return withTrace(group[0]!.d.trace, fn);
    return tracing.span(`process ${o.consumer} batch`, {
      kind: SpanKind.INTERNAL, parent: ROOT_CONTEXT,
      attributes: { 'messaging.system': 'nats', 'messaging.consumer.group.name': o.consumer, 'messaging.nats.stream': o.stream, 'messaging.batch.message_count': group.length },
      links: group.flatMap((g) => (g.span ? [{ context: g.span.spanContext() }] : [])),
    }, fn);
  };

  /** One handler call for the group; returns the error when it failed (nothing committed). */
  const runGroup = (group: Parsed<T>[]): Promise<unknown> => inTraceOf(group, () => runGroupIn(group));
  const runGroupIn = async (group: Parsed<T>[]): Promise<unknown> => {
    let failed: { msgId: string; error: unknown }[] = [];
    try {
      if (o.guard === 'state') {
        failed = (await o.handle(group.map((g) => g.item), o.orm.em.fork()))?.failed ?? [];
      } else {
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
      }
    } catch (err) {
      return err;
    }
    const bad = new Map(failed.map((f) => [f.msgId, f.error]));
    for (const g of group) {
      if (bad.has(g.item.msgId)) await fail(g, bad.get(g.item.msgId));
      else { g.m.ack(); g.result = 'ok'; }
    }
    outcome('ok', group.length - bad.size);
    return null;
  };

  // Each message's delivery span lasts from its batch's start to its ack or settle().
  const runBatch = async (group: Parsed<T>[]) => {
    for (const g of group) g.span = openSpan(tracing, g.d, o.stream, o.consumer);
    try {
      await runBatchIn(group);
    } finally {
      for (const g of group) closeSpan(g.span, g.result ?? 'retry', g.error);
    }
  };

  const runBatchIn = async (group: Parsed<T>[]) => {
    const err = await runGroup(group);
    if (!err) return;
    if (group.length === 1) return await fail(group[0]!, err);
    const message = group.reduce((t, g) => redactSecrets(t, g.m.data), String((err as Error)?.message ?? err));
    if (!split) {
      // One line for the batch; each message is settled quietly.
      log.warn({ err: message, size: group.length }, 'batch failed; will retry');
      for (const g of group) await fail(g, err, true);
      return;
    }
    log.info({ err: message, size: group.length }, 'batch failed; retrying its messages one by one');
    for (const g of group) {
      const e = await runGroup([g]);
      if (e) await fail(g, e);
    }
  };

  /** The next batch: up to `size` waiting messages, at most one per key (the rest keep their order for the one after). */
  const take = (): Parsed<T>[] => {
    if (!o.key) return waiting.splice(0, size);
    const keys = new Set<string | undefined>();
    const later: Parsed<T>[] = [];
    const group: Parsed<T>[] = [];
    for (const p of waiting) {
      if (group.length < size && !keys.has(p.key)) { keys.add(p.key); group.push(p); } else later.push(p);
    }
    waiting = later;
    return group;
  };

  // One batch runs at a time. Its group is taken from `waiting` when it starts, not when it
  // was scheduled: everything that arrived while the one before ran goes together. (Taken at
  // schedule time, each linger window became a batch of its own queued behind the running
  // one, so near capacity batches shrank to a message or two, each paying a whole
  // transaction, and the backlog grew: bench:saga's inventory consumer took 686 ms p50 to
  // pick up a reserve command at 60/s with tracing on.)
  let scheduled = false;
  const flush = () => {
    if (timer) { clearTimeout(timer); timer = undefined; }
    if (scheduled || !waiting.length) return;
    scheduled = true;
    chain = chain.then(async () => {
      scheduled = false;
      const group = take();
      if (!group.length) return;
      inBatch += group.length;
      try {
        await runBatch(group);
      } finally {
        inBatch -= group.length;
      }
    }).catch((err) => log.error({ err: String(err) }, 'batch consumer failure'))
      .then(() => { if (waiting.length) flush(); });
  };

  // Pull only what there is room for (two batches), so under overload messages wait in
  // the stream, not in this process past their ack_wait.
  const stopping = new AbortController();
  const loop = pullLoop({
    consumer, log, signal: stopping.signal,
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
    inflight: () => waiting.length + inBatch,
    async stop() {
      stopping.abort();
      await loop;
      flush();
      await chain;
      // Whatever a flush left waiting goes back to the stream at once.
      for (const p of waiting) p.m.nak();
      waiting = [];
    },
  };
}
