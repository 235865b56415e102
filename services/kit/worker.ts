// The worker: one message at a time through the delivery core (delivery.ts), with the
// inbox by default. Kept as the shape most services start their consumers with; the
// delivery model itself (inbox, backoff, DLQ, holding while paused) lives in delivery.ts.
import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { ZodType } from 'zod';
import type { MikroORM } from './db.ts';
import { startConsumer, type HandlerContext, type RetryPolicy, type RunningConsumer } from './delivery.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Tracing } from './tracing.ts';

export { backoff, parseMessage, type HandlerContext, type RetryPolicy } from './delivery.ts';

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
  /** A span per delivery in the trace the message carries (deps.tracing). */
  tracing?: Tracing;
};

export type WorkerOptions<T> = ConsumerOptions<T> & {
  handle: (data: T, ctx: HandlerContext) => Promise<void>;
  /** Messages with the same key run one at a time, in arrival order. */
  key?: (data: T) => string;
  concurrency?: number;
  /** While true, pull nothing and hold messages in hand (e.g. a breaker is open). */
  paused?: () => boolean;
  /**
   * false: no inbox row per message (guard 'state'). Only for a handler that is
   * idempotent by itself, whose writes are a compare-and-set on the state it read, so
   * that a redelivery finds the work done and writes nothing (funding's scoring); it
   * saves three round trips per message. ctx.tx is then a plain transaction. Default true.
   */
  inbox?: boolean;
};

export type Worker = RunningConsumer;

/** Start consuming a durable pull consumer. `const w = await startWorker({ stream: 'ORDERS', consumer: 'notifications', ... })` */
export async function startWorker<T>(o: WorkerOptions<T>): Promise<Worker> {
  const { inbox, ...rest } = o;
  return await startConsumer<T>({ ...rest, guard: inbox === false ? 'state' : 'inbox' });
}
