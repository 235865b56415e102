// The orchestrator: one actor per order. Its mailboxes are orders.created (ORDERS,
// durable "saga") and the replies of inventory, payments and shipping (SAGA_REPLIES,
// a work queue); both are keyed by order, so one replica handles one order's
// messages one at a time, and the version check covers two replicas.
// The sweeper wakes sagas whose step deadline passed (FOR UPDATE SKIP LOCKED, so
// replicas share the work).
import { SAGA_REPLIES_STREAM, SagaReply } from '../../contracts/commerce.ts';
import { OrderCreated, OrderSubjects, ORDERS_STREAM } from '../../contracts/orders.ts';
import type { Deps } from '../kit/service.ts';
import { startWorker, type Worker } from '../kit/worker.ts';
import { onReply, onTimeout, startSaga, type Saga, type SagaConfig } from './saga.ts';
import { insertSaga, loadSaga, saveDecision } from './store.ts';

export type OrchestratorOptions = SagaConfig & { concurrency: number; retryBaseMs: number; sweepMs: number };

export async function startOrchestrator(deps: Deps, o: OrchestratorOptions): Promise<{ workers: Worker[]; stop(): Promise<void> }> {
  const common = {
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    concurrency: o.concurrency, retry: { baseMs: o.retryBaseMs, maxMs: 10_000 },
  };
  const headersOf = (requestId: string | undefined) => (requestId ? { 'X-Request-Id': requestId } : undefined);

  const created = await startWorker({
    ...common, stream: ORDERS_STREAM, consumer: 'saga', schema: OrderCreated, key: (e) => e.id,
    handle: async (e, ctx) => {
      if (ctx.subject !== OrderSubjects.created) return;
      await ctx.tx(async (em) => {
        const fresh = await insertSaga(em, startSaga(e, Date.now(), o), headersOf(ctx.requestId));
        if (fresh) ctx.log.debug({ orderUuid: e.id }, 'saga started');
      });
    },
  });

  const replies = await startWorker({
    ...common, stream: SAGA_REPLIES_STREAM, consumer: 'saga', schema: SagaReply, key: (r) => r.orderUuid,
    handle: async (r, ctx) => {
      await ctx.tx(async (em) => {
        const s = await loadSaga(em, r.orderUuid, true);
        // A reply before its saga exists cannot happen in order; if it does, the retry finds the saga.
        if (!s) throw new Error(`no saga for order ${r.orderUuid}`);
        const d = onReply(s, r, Date.now(), o);
        if (!d) return;
        await saveDecision(em, s.version, d, headersOf(ctx.requestId));
        if (d.saga.step !== s.step) ctx.log.info({ orderUuid: s.id, from: s.step, to: d.saga.step, reply: r.type, reason: d.saga.failureReason ?? undefined }, 'saga step');
      });
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
