// The application router and the status cache writer.
//  - funding-router (FUNDING, `funding.applications.created`): the seed's "event
//    router": processing → risk_scoring, and the `risk.scoring.requested` command, in
//    one transaction.
//  - funding-status (FUNDING, `funding.status.updated`): keeps the KV status cache
//    current (newest version wins), the read side of GET .../status and SSE.
import { ApplicationCreated, FUNDING_EVENTS_STREAM, FundingConsumers, StatusUpdated } from '../../contracts/funding.ts';
import { NonRetryableError } from '../kit/errors.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';
import { loadWorkRow, scoringRequest, transition } from './applications.ts';
import type { StatusCache } from './status-cache.ts';

/** Start the router and the status consumer. `const ws = await startFundingConsumers(deps, cache, { router: 32, status: 64 })` */
export async function startFundingConsumers(deps: Deps, cache: StatusCache, concurrency: { router: number; status: number }): Promise<Worker[]> {
  const common = { js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics };
  const router = await startWorker({
    ...common,
    stream: FUNDING_EVENTS_STREAM,
    consumer: FundingConsumers.router,
    schema: ApplicationCreated,
    key: (e) => e.applicationId,
    concurrency: concurrency.router,
    retry: { baseMs: 500, factor: 2, maxMs: 10_000 },
    handle: async (e, ctx) => {
      const app = await loadWorkRow(ctx.em, e.applicationId);
      if (!app) throw new NonRetryableError(`application ${e.applicationId} does not exist`);
      if (app.status !== 'processing') return;
      await ctx.tx((em) => transition(em, {
        id: app.id, from: 'processing', to: 'risk_scoring', version: app.version, requestId: ctx.requestId,
        events: [scoringRequest(app.id, 'new')],
      }));
    },
  });
  const status = await startWorker({
    ...common,
    stream: FUNDING_EVENTS_STREAM,
    consumer: FundingConsumers.status,
    schema: StatusUpdated,
    key: (e) => e.applicationId,
    concurrency: concurrency.status,
    retry: { baseMs: 200, factor: 2, maxMs: 5000 },
    handle: async (e, ctx) => {
      const r = await cache.apply(e);
      if (r === 'stale') ctx.log.debug({ applicationId: e.applicationId, version: e.version }, 'older status event; cache already newer');
    },
  });
  return [router, status];
}
