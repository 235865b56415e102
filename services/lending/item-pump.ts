// The consumer of LENDING_ITEMS: the kit's delivery core (kit/delivery.ts) with the
// options the item commands need.
//
// Why these options and not the kit's default worker: the inbox costs database round
// trips per message (BEGIN, insert, COMMIT) on top of the handler's own, and a fixed
// concurrency cannot follow T24. At T24 rates of 1000/s on two cores that overhead, not
// T24, was the limit (measured: ~2 ms of CPU per item, 440 items/s). So:
//  - guard 'state': item commands need no inbox; every effect is guarded by the item's
//    state in Postgres (a repeated command finds the item already moved and does
//    nothing), so at-least-once delivery is enough;
//  - concurrency is `limit()` (the T24 client's recommended concurrency), read at every
//    pull, and pulls come in chunks (a quarter of the limit at least): a pull is a round
//    trip;
//  - one message per key at a time; a second one is deferred by nak(1000);
//  - working() heartbeats while an item is in hand;
//  - while `paused()` (breaker open) nothing is pulled; an item in hand still runs, and
//    the handler defers it (RetryLaterError) when the breaker refuses the call;
//  - no dlq-errors bucket: max_deliver is unlimited, so the DLQ mover never needs it.
// Success, DLQ and retry are the kit's (settle()).
import type { JetStreamClient } from '@nats-io/jetstream';
import type { ZodType } from 'zod';
import { startConsumer, type DeliveryContext, type RetryPolicy, type RunningConsumer } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { Metrics } from '../kit/index.ts';

export type PumpContext = DeliveryContext;

export type ItemPump = RunningConsumer;

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
  return await startConsumer<T>({
    js: o.js, stream: o.stream, consumer: o.consumer, log: o.log, metrics: o.metrics, schema: o.schema, retry: o.retry,
    guard: 'state',
    key: o.key, sameKey: 'defer',
    concurrency: o.limit, pullInChunks: true,
    paused: o.paused, hold: false,
    heartbeatMs: 5000,
    retryLaterLog: 'debug',
    handle: o.handle,
  });
}
