// Transactional outbox. A service writes its event rows in the same transaction as
// its state change (`enqueue`); the relay publishes them with Nats-Msg-Id = row id,
// so a crash between publish and delete republishes an id the stream has already
// seen inside its duplicate window, and no consumer sees the event twice.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { EntityManager, MikroORM } from './db.ts';
import { createBatcher } from './batcher.ts';
import { backoff } from './delivery.ts';
import type { Logger } from './log.ts';
import { H } from './nats.ts';
import { trace } from '@opentelemetry/api';
import { activeTrace, failed, injectTrace, SpanKind, traceFrom, tracingOff, withTrace, type Tracing } from './tracing.ts';

// While NATS refuses publishes: 200 ms, doubling, at most 5 s (no jitter: one relay per process).
const RELAY_RETRY = { baseMs: 200, maxMs: 5000, jitter: 0 };

export type OutboxMessage = { subject: string; data: unknown; headers?: Record<string, string>; id?: string };

/** Marks a transaction that wrote outbox rows, so its commit wakes the relays (see runtime.ts). */
export const OUTBOX_ROWS = Symbol('orderflow.outboxRows');

/** Did this committed transaction write outbox rows? */
export const wroteOutbox = (transaction: unknown) => Boolean(transaction && (transaction as Record<symbol, unknown>)[OUTBOX_ROWS]);

/**
 * Add events to the caller's transaction. `await enqueue(em, [{ subject: 'orders.created', data: order }])`
 * A row carries the caller's trace (traceparent, tracestate) unless its headers name one
 * already (a batch handler's item: `headers: item.carry`), so the trace follows the work
 * through the relay and NATS to the consumers (tracing.ts). This is the one place rows get
 * it: the statements that write kit.outbox themselves (orders' and funding's intake) take
 * their headers from carryHeaders().
 */
export async function enqueue(em: EntityManager, messages: OutboxMessage[]): Promise<string[]> {
  if (!messages.length) return [];
  const ids = messages.map((m) => m.id ?? randomUUID());
  const params: unknown[] = [];
  const t = activeTrace();
  const rows = messages.map((m, i) => {
    const headers = m.headers?.traceparent ? m.headers : injectTrace({ ...m.headers }, t);
    params.push(ids[i], m.subject, JSON.stringify(m.data), JSON.stringify(headers));
    return '(?, ?, ?, ?)';
  });
  await em.execute(`insert into kit.outbox (id, subject, payload, headers) values ${rows.join(', ')}`, params);
  const trx = em.getTransactionContext();
  if (trx) (trx as Record<symbol, unknown>)[OUTBOX_ROWS] = true;
  return ids;
}

/** A relay hook (Deps.onRelay): the payloads (JSON text) of one drain's rows of its subject, in outbox order. */
export type RelayHook = (payloads: string[]) => Promise<void>;

/** An outbox row as its inserting statement returned it (`returning id, subject, payload, headers`). */
export type CommittedOutboxRow = { id: string; subject: string; payload: string; headers: Record<string, string> | null };

export type OutboxRelay = {
  stop(): Promise<void>;
  drainOnce(): Promise<number>;
  /** Rows were committed: publish them now when given (see publishCommitted), else drain soon. */
  wake(committed?: CommittedOutboxRow[]): void;
};

/**
 * Publish outbox rows until stopped. Several relays (replicas) share the table through
 * `FOR UPDATE SKIP LOCKED`. Every process whose targets write the outbox runs one (kit/modules.ts), woken by its own commits that wrote
 * rows (runtime.ts), and polls every `pollMs` for the rest: rows left by a process that
 * stopped or whose relay is backing off. A NOTIFY to wake the other processes' relays
 * was dropped: it cost a statement per wake and an empty drain (three statements) in
 * every other process, to save at most one poll interval in those rare cases.
 * `const relay = startOutboxRelay({ orm, js, log })`
 */
export function startOutboxRelay(opts: {
  orm: MikroORM; js: JetStreamClient; log: Logger; tracing?: Tracing;
  batchSize?: number; pollMs?: number; lingerMs?: number; publishTimeoutMs?: number;
  onPublished?: (n: number) => void;
  /**
   * Per subject: run with that subject's payloads while they are published, before the drain
   * commits (a throw rolls the drain back, as a failed publish does). Alongside, not after:
   * a hook's first request then leaves in the same socket write as the publishes, and the
   * drain waits for one round trip, not two.
   */
  hooks?: Map<string, RelayHook>;
  /** Subjects this relay leaves alone (another process's relay has their hook). */
  skipSubjects?: string[];
  /** How long a published hand-over's delete waits for others to share its statement (default 200 ms). */
  forgetMs?: number;
}): OutboxRelay {
  const { orm, js, log } = opts;
  const batchSize = opts.batchSize ?? 500;
  const pollMs = opts.pollMs ?? 1000;
  const lingerMs = opts.lingerMs ?? 5;
  let running = true;
  let wake: (() => void) | undefined;
  let failures = 0;

  // Rows are deleted inside the transaction that publishes them: if any publish fails the
  // transaction rolls back and every row comes back; the ones that did reach the stream are
  // then republished under the same Nats-Msg-Id, which the stream drops as duplicates.
  const tracing = opts.tracing ?? tracingOff;
  const hooks = opts.hooks ?? new Map<string, RelayHook>();
  const skip = opts.skipSubjects ?? [];
  // Rows of a hand-over (publishCommitted below) from the moment it starts until their
  // delete ran: a drain leaves them alone rather than publish them again.
  const forgetting = new Set<string>();
  // The skip lists are bind parameters: one prepared text whatever they hold.
  const DRAIN = `delete from kit.outbox where id in (
           select id from kit.outbox where subject <> all(?::text[]) and id <> all(?::uuid[]) order by created_at limit ? for update skip locked)
         returning id, subject, payload, headers, created_at`;
  const skipped = `{${skip.map((x) => JSON.stringify(x)).join(',')}}`;
  const drainParams = (n: number) => [skipped, `{${[...forgetting].join(',')}}`, n];
  const runHooks = async (rows: Row[]) => {
    if (!hooks.size) return;
    const bySubject = new Map<string, string[]>();
    for (const r of rows) if (hooks.has(r.subject)) (bySubject.get(r.subject) ?? bySubject.set(r.subject, []).get(r.subject)!).push(r.payload);
    await Promise.all([...bySubject].map(([subject, payloads]) => hooks.get(subject)!(payloads)));
  };
  type Row = { id: string; subject: string; payload: string; headers: Record<string, string> };
  const publish = (r: Row) => {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(r.headers ?? {})) h.set(k, v);
    h.set(H.logicalId, r.id);
    return js.publish(r.subject, r.payload, { msgID: r.id, headers: h, timeout: opts.publishTimeoutMs ?? 3000 });
  };
  // A PRODUCER span per row, in the trace the row carries (the request's or the consumer's
  // that wrote it); the message carries that span on, so its consumer is its child.
  const publishTraced = (r: Row) => withTrace(traceFrom((k) => r.headers?.[k]), () => tracing.span(`publish ${r.subject}`, {
    kind: SpanKind.PRODUCER,
    attributes: { 'messaging.system': 'nats', 'messaging.operation.type': 'send', 'messaging.destination.name': r.subject, 'messaging.message.id': r.id },
  }, async () => {
    r.headers = injectTrace({ ...r.headers });
    return await publish(r);
  }));

  const drainOnce = async (): Promise<number> => {
    if (tracing.on) return await drainTraced();
    return await orm.em.fork().transactional(async (em) => {
      const rows = await em.execute<Row[]>(DRAIN, drainParams(batchSize));
      if (!rows.length) return 0;
      await Promise.all([...rows.map(publish), runHooks(rows)]);
      opts.onPublished?.(rows.length);
      return rows.length;
    });
  };

  // The same drain with tracing on. An idle drain (every pollMs) makes no span: the drain's
  // span starts back at BEGIN only once the DELETE found rows, so it covers the publishes
  // and the COMMIT, and links every row's trace. Hence begin/commit by hand.
  const drainTraced = async (): Promise<number> => {
    const em = orm.em.fork();
    const started = performance.now() + performance.timeOrigin;
    await em.begin();
    try {
      const rows = await em.execute<Row[]>(DRAIN, drainParams(batchSize));
      if (!rows.length) { await em.commit(); return 0; }
      const span = tracing.tracer.startSpan('outbox relay', {
        startTime: started, attributes: { 'orderflow.outbox.rows': rows.length },
        links: rows.slice(0, 128).flatMap((r) => {
          const sc = traceFrom((k) => r.headers?.[k]);
          const ctx = trace.getSpanContext(sc);
          return ctx ? [{ context: ctx }] : [];
        }),
      });
      try {
        await Promise.all([...rows.map(publishTraced), runHooks(rows)]);
        await withTrace(trace.setSpan(activeTrace(), span), () => em.commit());
      } catch (err) {
        failed(span, err);
        throw err;
      } finally {
        span.end();
      }
      opts.onPublished?.(rows.length);
      return rows.length;
    } catch (err) {
      await em.rollback().catch(() => {});
      throw err;
    }
  };

  let woken = false;
  const wakeLocal = () => { woken = true; wake?.(); };

  // Rows a statement of this process just committed, as it returned them: published at once
  // and deleted by id, one statement, instead of a drain's three (BEGIN, DELETE … RETURNING,
  // COMMIT) after the linger. Nothing locks them: this relay's drains skip them from the
  // hand-over to their delete (`forgetting`), another replica's poll may publish them too
  // (the stream drops the second copy by its Nats-Msg-Id, and hooks are idempotent:
  // funding's is guarded by the row version). A failure leaves them to the drain.
  const inflight = new Set<Promise<void>>();
  // The deletes of hand-overs share a statement (group commit, kit/batcher.ts). Nothing
  // waits on a delete but the table's size, so each waits up to forgetMs for company: at
  // 10 ms a delete served about one application's hand-over, a statement (and a Postgres
  // wake-up, dear on a VM) for each of funding's five status changes per application.
  // A crash before the delete republishes those rows under their Nats-Msg-Id, which the
  // stream's duplicate window (2 min) drops.
  const forget = createBatcher(async (batches: string[][]) => {
    await orm.em.fork().execute('delete from kit.outbox where id = any(?::uuid[])', [`{${batches.flat().join(',')}}`]);
    return batches.map(() => undefined);
  }, { maxSize: 500, maxWaitMs: opts.forgetMs ?? 200, isolate: 'parallel' });
  const publishCommitted = (committed: CommittedOutboxRow[]) => {
    const rows = committed.filter((r) => !skip.includes(r.subject)).map((r) => ({ ...r, headers: r.headers ?? {} }));
    if (!rows.length) return;
    for (const r of rows) forgetting.add(r.id);
    const p: Promise<void> = (async () => {
      try {
        await Promise.all([...rows.map(publish), runHooks(rows)]);
        opts.onPublished?.(rows.length);
        await forget(rows.map((r) => r.id));
      } finally {
        for (const r of rows) forgetting.delete(r.id);
      }
    })().catch((err) => {
      log.debug({ err: String(err) }, 'publishing committed outbox rows failed; the relay drains them');
      wakeLocal();
    }).finally(() => inflight.delete(p));
    inflight.add(p);
  };

  const loop = (async () => {
    while (running) {
      let n = 0;
      try {
        n = await drainOnce();
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 20 === 0) log.warn({ err: String(err), failures }, 'outbox relay cannot publish; will retry');
      }
      if (n >= batchSize) continue;
      // A wake that came while draining may be for rows committed after our SELECT. Under
      // steady load every commit wakes us: linger a few ms so one drain (three statements
      // and a burst of publishes) carries many rows instead of one.
      if (woken && !failures) { woken = false; await sleep(lingerMs); continue; }
      const wait = failures ? backoff(RELAY_RETRY, failures) : pollMs;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        // While NATS is failing, commits must not cut the backoff short.
        if (!failures) wake = () => { clearTimeout(t); resolve(); };
      });
      wake = undefined;
      if (woken && running) await sleep(lingerMs);
      woken = false;
    }
  })();

  return {
    drainOnce,
    // Traced, every publish is a span of the drain: those rows take the drain's path.
    wake: (committed) => (committed?.length && !tracing.on && running ? publishCommitted(committed) : wakeLocal()),
    async stop() {
      running = false;
      wake?.();
      await loop;
      await Promise.all(inflight);
    },
  };
}
