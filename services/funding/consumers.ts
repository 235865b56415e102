// The application router and the status cache writer.
//  - funding-router (FUNDING, `funding.applications.created`): the seed's "event
//    router": processing → risk_scoring, and the `risk.scoring.requested` command, in
//    one transaction. Runs through the kit's batch worker (inbox, DLQ, backoff): the
//    applications of a burst move in one statement per batch, not one transaction each.
//  - funding-status (FUNDING, `funding.status.updated`): keeps the KV status cache
//    current (newest version wins), the read side of GET .../status and SSE. See
//    startStatusConsumer for why it has no inbox.
import { setTimeout as sleep } from 'node:timers/promises';
import type { JsMsg } from '@nats-io/jetstream';
import { ApplicationCreated, FUNDING_EVENTS_STREAM, FundingConsumers, StatusUpdated } from '../../contracts/funding.ts';
import { startBatchWorker, type BatchWorker } from '../kit/batch-worker.ts';
import { errorKey, sendToDlq } from '../kit/dlq.ts';
import { outcomeRecorder } from '../kit/metrics.ts';
import { pullLoop, waker } from '../kit/pull.ts';
import type { Deps } from '../kit/service.ts';
import { backoff, parseMessage, type RetryPolicy, type Worker } from '../kit/worker.ts';
import { scoringRequest, transitionMany } from './applications.ts';
import type { StatusCache } from './status-cache.ts';

/** Start the router and the status consumer. `const ws = await startFundingConsumers(deps, cache, { routerBatch: 64, status: 16 })` */
export async function startFundingConsumers(deps: Deps, cache: StatusCache, opts: { routerBatch: number; status: number }): Promise<BatchWorker[]> {
  const router = await startBatchWorker({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    stream: FUNDING_EVENTS_STREAM,
    consumer: FundingConsumers.router,
    schema: ApplicationCreated,
    key: (e) => e.applicationId,
    batch: opts.routerBatch,
    retry: { baseMs: 500, factor: 2, maxMs: 10_000 },
    // Guarded by status alone (compare-and-set on `processing`, version bumped), so no
    // read first: a redelivery or a reconciler that got there first finds it moved on,
    // and that application gets no events.
    handle: async (items, em) => {
      await transitionMany(em, {
        from: 'processing', to: 'risk_scoring',
        items: items.map((i) => ({ id: i.data.applicationId, requestId: i.requestId, events: [scoringRequest(i.data.applicationId, 'new')] })),
      });
    },
  });
  const status = await startStatusConsumer(deps, cache, opts.status);
  return [router, status];
}

/**
 * The status cache writer. It does without the harness's Postgres inbox on purpose: a
 * KV write guarded by the row version is idempotent by itself (a redelivery finds the
 * same or a newer version and writes nothing), and at five status events per
 * application the inbox's four round trips per event were the largest share of
 * funding's database work. The rest of the delivery model holds: a message failing
 * its schema goes to the DLQ, a failure is nak'ed with backoff and its error kept for
 * the DLQ mover, and max_deliver exhaustion takes the advisory path.
 * `const w = await startStatusConsumer(deps, cache, 64)`
 */
export async function startStatusConsumer(deps: Deps, cache: StatusCache, concurrency: number): Promise<Worker> {
  const stream = FUNDING_EVENTS_STREAM;
  const name = FundingConsumers.status;
  const consumer = await deps.nats.js.consumers.get(stream, name);
  const log = deps.log.child({ consumer: name });
  const retry: RetryPolicy = { baseMs: 200, factor: 2, maxMs: 5000 };
  const inflight = new Set<Promise<void>>();
  let running = true;
  const slot = waker(1000);

  const outcome = outcomeRecorder(deps.metrics, name);

  const handle = async (m: JsMsg) => {
    const started = performance.now();
    const attempt = m.info.deliveryCount;
    const parsed = parseMessage(m, StatusUpdated);
    if (!parsed.ok) {
      const error = parsed.error;
      await sendToDlq(deps.nats.js, { stream, consumer: name, subject: m.subject, seq: m.seq, deliveries: attempt, reason: 'invalid-message', error, data: m.data, headers: m.headers })
        .then(() => { m.term(); outcome('dlq', started); log.warn({ error }, 'sent to DLQ'); }, () => m.nak(1000));
      return;
    }
    const event = parsed.data;
    try {
      await cache.apply(event);
      m.ack();
      outcome('ok', started);
    } catch (err) {
      const message = String((err as Error)?.message ?? err);
      await deps.errors.put(errorKey(stream, m.seq), message.slice(0, 2000)).catch(() => {});
      const delay = backoff(retry, attempt);
      m.nak(delay);
      log.warn({ err: message, applicationId: event.applicationId, delayMs: delay }, 'status cache write failed; will retry');
      outcome('retry', started);
    }
  };

  const loop = pullLoop({
    consumer, log, running: () => running,
    room: () => concurrency - inflight.size,
    waitForRoom: () => slot.wait(),
    onMessage: (m) => {
      const p: Promise<void> = handle(m).catch((err) => log.error({ err: String(err) }, 'unexpected status consumer failure'))
        .finally(() => { inflight.delete(p); slot.wake(); });
      inflight.add(p);
    },
  });

  return {
    inflight: () => inflight.size,
    async stop(timeoutMs = 20_000) {
      running = false;
      await loop;
      await Promise.race([Promise.all(inflight), sleep(timeoutMs)]);
    },
  };
}
