// The batching worker, for high-volume consumers: the orchestrator, inventory and
// shipping (Postgres only), payments and the mail and SMS senders (whose external calls
// run inside the batch's transaction). It is the delivery core's batch mode
// (delivery.ts) with the inbox: messages that arrive together (up to `batch`, within
// `lingerMs`) share ONE transaction and one multi-row inbox insert, instead of BEGIN, an
// inbox insert and COMMIT each. On this machine a query costs mostly its socket write,
// and the harness overhead was half of the saga's queries.
// A batch holds at most one message per key (later ones wait for the next batch),
// batches run one at a time, so per-key order holds. If a batch fails, each of its
// messages is retried alone, so one bad message never holds back the others.
import type { EntityManager } from './db.ts';
import { startConsumer, type BatchItem, type BatchResult, type RunningConsumer } from './delivery.ts';
import type { ConsumerOptions } from './worker.ts';

export type { BatchItem } from './delivery.ts';

export type BatchWorkerOptions<T> = ConsumerOptions<T> & {
  key: (data: T) => string;
  /**
   * Apply every item inside the one transaction `em`. Throwing fails the whole batch
   * (then each item is retried alone). Returning `{ failed }` commits the rest and
   * retries (or dead-letters) just those items, whose own writes the handler undid.
   */
  handle: (items: BatchItem<T>[], em: EntityManager) => Promise<BatchResult>;
  batch?: number;
  lingerMs?: number;
  /** While true, pull nothing new (e.g. a breaker is open); messages in hand are the handler's to hold. */
  paused?: () => boolean;
};

export type BatchWorker = { stop(): Promise<void> };

/** `const w = await startBatchWorker({ stream: 'SAGA_REPLIES', consumer: 'saga', schema, key, handle })` */
export async function startBatchWorker<T>(o: BatchWorkerOptions<T>): Promise<BatchWorker> {
  const { batch, lingerMs, ...rest } = o;
  return await startConsumer<T>({ ...rest, guard: 'inbox', batch: { size: batch ?? 64, lingerMs: lingerMs ?? 2 } });
}
