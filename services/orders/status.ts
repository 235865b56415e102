// The order's status follows the saga: saga.step.* and saga.done.* events carry the
// saga's view (status, history, totals, tracking number, failure reason) and its
// version; an event older than what the row holds changes nothing, so redeliveries
// and out-of-order arrivals are harmless.
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';

export async function startStatusProjection(deps: Deps, concurrency = 32): Promise<Worker> {
  return await startWorker({
    stream: SAGA_STREAM, consumer: 'orders',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    schema: SagaStatusEvent, key: (e) => e.id, concurrency, retry: { baseMs: 200, maxMs: 10_000 },
    handle: async (e, ctx) => {
      await ctx.tx(async (em) => {
        await em.execute(
          `update orders.orders set status = ?, history = ?::jsonb, total_cents = ?, currency = ?, tracking_number = ?,
             failure_reason = ?, saga_version = ?, updated_at = ?
           where id = ? and saga_version < ?`,
          [e.status, JSON.stringify(e.history), e.totalCents, e.currency, e.trackingNumber, e.failureReason, e.version, e.at, e.id, e.version]);
      });
    },
  });
}
