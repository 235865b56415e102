// The loan workers: one actor for batches, one for items.
//
// Batches (LENDING_BATCHES, consumer lending-batches, through kit/worker.ts):
// `reserve` claims the batch's loans in our ledger in one statement and fans out
// one item command per loan; `invest` fans out one invest command per reserved
// item; each in the same transaction as the inbox row.
//
// Items (LENDING_ITEMS, consumer lending-items, keyed by loanId, through the kit's
// delivery core with the options below): one T24 reserve or invest each. Retry and DLQ granularity is the
// item. Its state commits right after the T24 call succeeds (group-committed with
// its neighbours, before the ack), so a crash redoes at most the calls in flight,
// whose repeat T24 answers with a same-investor 409, which counts as success.
//  - breaker open: nothing is pulled; an item in hand comes back later
//    (RetryLaterError), and this never counts against its retry budget;
//  - 429: back after Retry-After, not counted either;
//  - a 5xx, timeout or dropped connection the breaker judged an outage: as an
//    open breaker, not counted;
//  - any other 5xx, timeout, dropped connection: the item's own failure,
//    counted in the item row (`failures`) and retried after the seed's backoff
//    (retry-policy.ts: 1 s, 2 s, 4 s, 8 s); the next attempt sends the same move
//    again (T24_AFTER_AMBIGUOUS=resend: a move that had landed answers a
//    same-investor 409), or with `ambiguous` set reads the loan back first
//    (=readback); at LENDING_ITEM_MAX_FAILURES the item fails with
//    T24_UNAVAILABLE;
//  - 404 / 422 / a foreign 409: the item fails with that reason (counts follow)
//    and its command goes to the DLQ (NonRetryableError). A redrive resumes it.
// The consumer's max_deliver is unlimited (-1): the only ways to the DLQ are the
// decisions above, each of which marks the item failed first, in its own
// transaction (no inbox row), so the DLQ copy stays redrivable.
import {
  BatchCommand, ItemCommand, LENDING_BATCH_CONSUMER, LENDING_BATCHES_STREAM, LENDING_ITEM_CONSUMER, LENDING_ITEMS_STREAM,
  LendingFailureReasons, LendingSubjects,
} from '../../contracts/lending.ts';
import { NonRetryableError, RetryLaterError } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startWorker, type Worker } from '../kit/index.ts';
import { startConsumer, type DeliveryContext, type RunningConsumer } from '../kit/index.ts';
import { createBatcher } from '../kit/index.ts';
import { createLatencyEstimate } from './latency.ts';
import type { LendingConfig } from './config.ts';
import {
  claimBatch, commitSuccesses, investBatch, itemKey, markAmbiguous, markFailed, readItems, readOrder, reclaimLoan, recordFailure,
  type ItemKey, type ItemRow, type Phase, type Success,
} from './ledger.ts';
import type { LendingMetrics } from './metrics.ts';
import { chargesItem, nextItemRetry } from './retry-policy.ts';
import { T24TransientError, type T24Client } from './t24-client.ts';

/** Whether a command for `phase` has work to do on the item as it stands; anything else is a stale or repeated command. */
export function hasWork(item: Pick<ItemRow, 'state' | 'failed_phase'>, phase: Phase): boolean {
  if (phase === 'reserve') return item.state === 'PENDING' || (item.state === 'FAILED' && item.failed_phase !== 'invest');
  return item.state === 'RESERVED' || (item.state === 'FAILED' && item.failed_phase === 'invest');
}

const phaseOf = (subject: string): Phase | null =>
  subject === LendingSubjects.itemReserve ? 'reserve' : subject === LendingSubjects.itemInvest ? 'invest' : null;

export type LendingConsumers = { workers: (Worker | RunningConsumer)[]; itemLimit(): number; stop(): Promise<void> };

export async function startLendingConsumers(deps: Deps, o: { t24: T24Client; config: LendingConfig; metrics: LendingMetrics }): Promise<LendingConsumers> {
  const { orm, log } = deps;
  const { t24, config, metrics } = o;
  const common = { js: deps.nats.js, orm, errors: deps.errors, log, metrics: deps.metrics, tracing: deps.tracing };
  const stopping = new AbortController();
  const retry = { baseMs: config.LENDING_RETRY_BASE_MS, maxMs: config.LENDING_RETRY_MAX_MS, factor: 2, jitter: 0.3 };
  const budget = { maxFailures: config.LENDING_ITEM_MAX_FAILURES, baseMs: config.LENDING_RETRY_BASE_MS, maxMs: config.LENDING_RETRY_MAX_MS };

  const batches = await startWorker({
    ...common,
    stream: LENDING_BATCHES_STREAM,
    consumer: LENDING_BATCH_CONSUMER,
    schema: BatchCommand,
    // Batches of one order hold disjoint loans: they may run side by side.
    key: (b) => `${b.orderId}/${b.batch}`,
    concurrency: 4,
    retry: { baseMs: 500, maxMs: 10_000 },
    handle: async (b, ctx) => {
      if (!(await readOrder(ctx.em, b.orderId))) throw new NonRetryableError(`no lending order ${b.orderId}`);
      if (ctx.subject === LendingSubjects.batchInvest) {
        const n = await ctx.tx((em) => investBatch(em, b.orderId, b.batch, ctx.requestId));
        ctx.log.info({ orderId: b.orderId, batch: b.batch, items: n }, 'lending batch fanned out for investing');
        return;
      }
      const r = await ctx.tx((em) => claimBatch(em, b.orderId, b.batch, ctx.requestId));
      ctx.log.info({ orderId: b.orderId, batch: b.batch, ...r }, 'lending batch claimed and fanned out');
    },
  });

  const fail = async (item: ItemRow, phase: Phase, reason: string, detail: string, requestId: string | undefined): Promise<never> => {
    await orm.em.fork().transactional((em) => markFailed(em, item, phase, reason, requestId));
    metrics.items.inc({ phase, outcome: 'failed' });
    throw new NonRetryableError(`${reason}: ${phase} of loan ${item.loan_id} in order ${item.order_id}${detail ? ` (${detail})` : ''}`, { reason });
  };

  // Reads and successes of concurrent items share round trips and transactions.
  const read = createBatcher((keys: ItemKey[]) => readItems(orm.em.fork(), keys).then((m) => keys.map((k) => m.get(itemKey(k)) ?? null)), { maxSize: 500, maxWaitMs: 5 });
  const commit = createBatcher(
    async (list: Success[]) => {
      const t0 = performance.now();
      const moved = await orm.em.fork().transactional((em) => commitSuccesses(em, list, log));
      log.debug({ items: list.length, ms: Math.round(performance.now() - t0) }, 'lending item successes committed');
      return list.map((s) => moved.has(itemKey(s)));
    },
    { maxSize: 500, maxWaitMs: 5 });

  const onItemCommand = async (cmd: ItemCommand, ctx: DeliveryContext) => {
    const started = performance.now();
    const phase = phaseOf(ctx.subject);
    if (!phase) throw new NonRetryableError(`unexpected subject ${ctx.subject}`);
    const item = await read(cmd);
    if (!item) throw new NonRetryableError(`no item ${cmd.loanId} in lending order ${cmd.orderId}`);
    if (!hasWork(item, phase)) return;
    if (item.state === 'FAILED') {
      // A redrive: take the loan back in our ledger unless another order has it by now.
      const taken = await reclaimLoan(orm.em.fork(), item);
      if (taken) await fail(item, phase, taken, '', ctx.requestId);
      ctx.log.info({ loanId: item.loan_id, phase }, 'resuming a failed lending item');
    }
    const body = { investorId: item.investor_id, orderId: item.order_id, amount: Number(item.amount) };
    let outcome;
    const callStarted = performance.now();
    try {
      outcome = await t24.applyWithReadback(item.loan_id, phase, body, { ambiguousBefore: item.ambiguous, signal: stopping.signal });
    } catch (err) {
      if (!(err instanceof T24TransientError)) {
        if (stopping.signal.aborted) throw new RetryLaterError(250, 'lending worker stopping');
        throw err;
      }
      if (!chargesItem(err) || stopping.signal.aborted) {
        if (err.readBackFirst && !item.ambiguous) await markAmbiguous(orm.em.fork(), item);
        metrics.items.inc({ phase, outcome: 'deferred' });
        throw new RetryLaterError(Math.max(250, err.retryAfterMs ?? 1000), err.message);
      }
      const failures = await recordFailure(orm.em.fork(), item, err.readBackFirst, err.message);
      const next = nextItemRetry(failures, budget);
      if (next === null) return await fail(item, phase, LendingFailureReasons.t24Unavailable, `${failures} failures, last: ${err.message}`, ctx.requestId);
      metrics.items.inc({ phase, outcome: 'retry' });
      throw new RetryLaterError(next, `${err.message} (failure ${failures} of ${config.LENDING_ITEM_MAX_FAILURES})`);
    }
    const callEnded = performance.now();
    if (outcome.kind === 'permanent') return await fail(item, phase, outcome.reason, '', ctx.requestId);
    await commit({
      orderId: item.order_id, loanId: item.loan_id, from: item.state, to: phase === 'reserve' ? 'RESERVED' : 'INVESTED',
      transactionCode: outcome.transactionCode, requestId: ctx.requestId, trace: ctx.trace,
    });
    metrics.items.inc({ phase, outcome: phase === 'reserve' ? 'reserved' : 'invested' });
    own.observe(callStarted - started + (performance.now() - callEnded));
  };

  // Little's law twice: the T24 client's recommendation covers its calls (rate ×
  // p90 latency × 1.5); an item is also in hand for our own work around the call
  // (batched read and commit, ack), so add rate × p90 of that × 1.5. Time spent
  // waiting for a rate token is left out on purpose: counting it would make the
  // limit feed on its own queue.
  const own = createLatencyEstimate({ alpha: 0.05, beforeAnyMs: 50 });
  const limit = () => {
    const forOwn = Math.ceil(t24.stats().share * (own.p90Ms() / 1000) * 1.5);
    return Math.min(config.LENDING_ITEM_PREFETCH, 2 * t24.recommendedConcurrency() + forOwn + 8);
  };
  // Not the kit's default worker: the inbox costs database round trips per message
  // (BEGIN, insert, COMMIT) on top of the handler's own, and a fixed concurrency cannot
  // follow T24. At T24 rates of 1000/s on two cores that overhead, not T24, was the
  // limit (measured: ~2 ms of CPU per item, 440 items/s). So:
  //  - guard 'state': item commands need no inbox; every effect is guarded by the item's
  //    state in Postgres (a repeated command finds the item already moved and does
  //    nothing), so at-least-once delivery is enough;
  //  - concurrency is `limit()`, read at every pull, and pulls come in chunks (a quarter
  //    of the limit at least): a pull is a round trip;
  //  - one message per key at a time; a second one is deferred by nak(1000);
  //  - working() heartbeats while an item is in hand;
  //  - while the breaker is open nothing is pulled; an item in hand still runs, and
  //    onItemCommand defers it (RetryLaterError) when the breaker refuses the call;
  //  - no dlq-errors bucket: max_deliver is unlimited, so the DLQ mover never needs it.
  // Success, DLQ and retry are the kit's (settle()).
  const items = await startConsumer<ItemCommand>({
    js: deps.nats.js, log, metrics: deps.metrics, tracing: deps.tracing,
    stream: LENDING_ITEMS_STREAM,
    consumer: LENDING_ITEM_CONSUMER,
    schema: ItemCommand,
    retry,
    guard: 'state',
    key: (c) => c.loanId, sameKey: 'defer',
    concurrency: limit, pullInChunks: true,
    paused: () => t24.isOpen(), hold: false,
    heartbeatMs: 5000,
    retryLaterLog: 'debug',
    handle: onItemCommand,
  });

  return {
    workers: [batches, items],
    itemLimit: limit,
    async stop() {
      // Items waiting for a rate token give up now and come back to the queue.
      stopping.abort(new Error('lending worker stopping'));
      await Promise.all([batches.stop(), items.stop()]);
      await commit.drain();
    },
  };
}
