// The application router and the status cache writer.
//  - funding-router (FUNDING, `funding.applications.created`): the seed's "event
//    router": processing → risk_scoring, and the `risk.scoring.requested` command, in
//    one transaction. Runs through the kit's batch worker (inbox, DLQ, backoff): the
//    applications of a burst move in one statement per batch, not one transaction each.
//  - funding-status (FUNDING, `funding.status.updated`): keeps the KV status cache
//    current (newest version wins), the read side of GET .../status and SSE. See
//    startStatusConsumer for why it has no inbox.
import { ApplicationCreated, FUNDING_EVENTS_STREAM, FundingConsumers, StatusUpdated } from '../../contracts/funding.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import { startConsumer, type RunningConsumer } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
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
 * The status cache writer: the delivery core with guard 'state', no Postgres inbox on
 * purpose. A KV write guarded by the row version is idempotent by itself (a redelivery
 * finds the same or a newer version and writes nothing), and at five status events per
 * application the inbox's round trips per event were the largest share of funding's
 * database work. The rest of the delivery model is the kit's: a message failing its
 * schema goes to the DLQ, a failure is nak'ed with backoff and its error kept for the
 * DLQ mover, and max_deliver exhaustion takes the advisory path.
 * `const w = await startStatusConsumer(deps, cache, 64)`
 */
export async function startStatusConsumer(deps: Deps, cache: StatusCache, concurrency: number): Promise<RunningConsumer> {
  return await startConsumer<StatusUpdated>({
    js: deps.nats.js, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    stream: FUNDING_EVENTS_STREAM, consumer: FundingConsumers.status, schema: StatusUpdated,
    guard: 'state',
    concurrency,
    retry: { baseMs: 200, factor: 2, maxMs: 5000 },
    handle: async (event) => { await cache.apply(event); },
  });
}
