// The orchestrator: one actor per order. Its mailboxes are orders.created (ORDERS,
// durable "saga") and the replies of inventory, payments and shipping (SAGA_REPLIES,
// a work queue); both are keyed by order, so one replica handles one order's
// messages one at a time, and the version check covers two replicas. Messages that
// arrive together share a transaction (batch-worker.ts).
// The sweeper wakes sagas whose step deadline passed (FOR UPDATE SKIP LOCKED, so
// replicas share the work).
import { SAGA_REPLIES_STREAM, SagaReply } from '../../contracts/commerce.ts';
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import { enqueue, type OutboxMessage } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import { onReply, onTimeout, startSaga, type Saga, type SagaConfig } from './saga.ts';
import { insertSagas, lockSagas, saveDecision, updateSagas } from './store.ts';

export type SagaConsumerOptions = SagaConfig & { batch: number; retryBaseMs: number; sweepMs: number };

/** Start the orchestrator's two mailboxes and its timeout sweeper. `const s = await startSagaConsumers(deps, { batch: 64, ... }); await s.stop()` */
export async function startSagaConsumers(deps: Deps, o: SagaConsumerOptions): Promise<{ workers: BatchWorker[]; stop(): Promise<void> }> {
  const common = {
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    batch: o.batch, retry: { baseMs: o.retryBaseMs, maxMs: 10_000 },
  };

  const created = await startBatchWorker({
    ...common, stream: ORDERS_STREAM, consumer: 'saga', schema: OrderCreated, key: (e) => e.id,
    handle: async (items, em) => {
      const starts = items.filter((i) => i.subject === OrderSubjects.created).map((i) => ({ i, d: startSaga(i.data, Date.now(), o) }));
      const fresh = await insertSagas(em, starts.map((s) => s.d.saga));
      await enqueue(em, starts.filter((s) => fresh.has(s.d.saga.id)).flatMap((s) => s.d.out.map((m) => ({ ...m, headers: s.i.carry }))));
    },
  });

  const replies = await startBatchWorker({
    ...common, stream: SAGA_REPLIES_STREAM, consumer: 'saga', schema: SagaReply, key: (r) => r.orderUuid,
    handle: async (items, em) => {
      const sagas = await lockSagas(em, items.map((i) => i.data.orderUuid));
      const changes: { saga: Saga; prevVersion: number }[] = [];
      const out: OutboxMessage[] = [];
      for (const i of items) {
        const s = sagas.get(i.data.orderUuid);
        // A reply before its saga exists cannot happen in order; if it does, the retry finds the saga.
        if (!s) throw new Error(`no saga for order ${i.data.orderUuid}`);
        const d = onReply(s, i.data, Date.now(), o);
        if (!d) continue;
        changes.push({ saga: d.saga, prevVersion: s.version });
        out.push(...d.out.map((m) => ({ ...m, headers: i.carry })));
        if (d.saga.step !== s.step) deps.metrics.sagaStepSeconds.observe({ step: s.step, next: d.saga.step }, Math.max(0, Date.now() - Date.parse(s.history.at(-1)!.at)) / 1000);
        if (d.saga.step !== s.step) i.log.info({ orderUuid: s.id, from: s.step, to: d.saga.step, reply: i.data.type, reason: d.saga.failureReason ?? undefined }, 'saga step');
      }
      await updateSagas(em, changes);
      await enqueue(em, out);
    },
  });

  let running = true;
  let timer: NodeJS.Timeout | undefined;
  const sweepOnce = async (): Promise<number> => {
    return await deps.orm.em.fork().transactional(async (em) => {
      const due = await em.execute<{ doc: Saga }[]>(
        'select doc from saga.sagas where deadline < now() order by deadline limit 200 for update skip locked');
      const now = Date.now();
      for (const { doc } of due) {
        const d = onTimeout(doc, now, o);
        if (!d) continue;
        await saveDecision(em, doc.version, d);
        deps.log.warn({ orderUuid: doc.id, step: doc.step, attempts: d.saga.attempts, next: d.saga.step }, 'saga step timed out');
      }
      return due.length;
    });
  };
  const loop = async () => {
    if (!running) return;
    await sweepOnce().catch((err) => deps.log.warn({ err: String(err) }, 'saga sweep failed'));
    if (running) timer = setTimeout(loop, o.sweepMs);
  };
  timer = setTimeout(loop, o.sweepMs);

  return {
    workers: [created, replies],
    async stop() {
      running = false;
      clearTimeout(timer);
      await Promise.all([created.stop(), replies.stop()]);
    },
  };
}
