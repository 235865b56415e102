// The orders mailbox (SAGA, consumer `orders`): the status projection.
// The order's status follows the saga: saga.step.* and saga.done.* events carry the
// saga's view (status, history, totals, tracking number, failure reason) and its
// version; an event older than what the row holds changes nothing.
//
// This is a projection, not an effect: applying an event twice or out of order is
// harmless by the version check, so it needs no inbox row (the delivery core's guard
// 'state'). It applies events in micro-batches (up to 256, or whatever arrived within a
// few ms) with one UPDATE each, outside a transaction, then acks them: one statement
// where an inbox harness would spend a transaction per event, on the busiest consumer
// of the saga (three events per order). A failed batch is settled as a whole (no
// one-by-one retry: every event of it failed on the same statement).
import { SAGA_STREAM, SagaStatusEvent } from '../../contracts/commerce.ts';
import { startConsumer, type RunningConsumer } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';

export type Projection = { stop(): Promise<void> };

/** `const p = await startStatusProjection(deps); ...; await p.stop()` */
export async function startStatusProjection(deps: Deps, o: { batch?: number; lingerMs?: number } = {}): Promise<Projection & RunningConsumer> {
  return await startConsumer<SagaStatusEvent>({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    stream: SAGA_STREAM, consumer: 'orders', schema: SagaStatusEvent,
    guard: 'state',
    batch: { size: o.batch ?? 256, lingerMs: o.lingerMs ?? 5 },
    split: false,
    retry: { baseMs: 1000, maxMs: 30_000 },
    handle: async (items, em) => {
      const latest = new Map<string, SagaStatusEvent>();
      for (const { data: e } of items) {
        const prev = latest.get(e.id);
        if (!prev || prev.version < e.version) latest.set(e.id, e);
      }
      // Rows in id order, so two batches could never lock in opposite orders.
      const events = [...latest.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
      await em.execute(
        `update orders.orders o set status = v.status, history = v.history, total_cents = v.total, currency = v.currency,
           tracking_number = v.tracking, failure_reason = v.reason, saga_version = v.version, updated_at = v.at
         from (values ${events.map(() => '(?::uuid, ?::text, ?::jsonb, ?::bigint, ?::text, ?::text, ?::text, ?::int, ?::timestamptz)').join(', ')})
           as v(id, status, history, total, currency, tracking, reason, version, at)
         where o.id = v.id and o.saga_version < v.version`,
        events.flatMap((e) => [e.id, e.status, JSON.stringify(e.history), e.totalCents, e.currency, e.trackingNumber, e.failureReason, e.version, e.at]));
    },
  });
}
