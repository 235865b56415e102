// Disbursement: the `funding-disbursement` consumer of `funding.disbursement.requested`.
// One application is never paid out twice, by three independent guards:
//  1. our own record: `funding.payouts` has the application id as primary key, and
//     the row is written (with approved → disbursing) before the first POST;
//  2. the gateway: every POST carries Idempotency-Key = application id, and the
//     payout's reference is the application id;
//  3. after anything ambiguous (5xx, timeout, dropped connection, or a crash that
//     left the row `pending` with attempts > 0) we ask the gateway by reference
//     (`GET /v1/payouts?reference=`) before sending anything again.
// While the breaker is open the worker pulls nothing, and a message in hand waits
// for it (heartbeating) instead of burning deliveries: an open breaker never sends a
// payout to the DLQ.
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter } from 'prom-client';
import {
  DisbursementRequested, FUNDING_WORK_STREAM, FundingConsumers, FundingSubjects, isFinalStatus, type DisbursementCompleted,
} from '../../contracts/funding.ts';
import type { EntityManager, MikroORM } from '../kit/index.ts';
import { NonRetryableError, RetryLaterError } from '../kit/index.ts';
import {
  GatewayAmbiguousError, GatewayError, GatewayRateLimitedError, GatewayRejectedError, GatewayTransientError, GatewayUnavailableError, type GatewayClient, type GatewayPayout,
} from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startWorker, type HandlerContext, type Worker } from '../kit/index.ts';
import { loadWorkRow, transition, type WorkRow } from './applications.ts';

type PayoutRecord = { state: 'pending' | 'paid' | 'failed'; attempts: number; gatewayPayoutId: string | null; lastAttemptAt: number };

async function loadPayout(em: EntityManager, id: string): Promise<PayoutRecord | null> {
  const [r] = await em.execute<{ state: PayoutRecord['state']; attempts: number; gateway_payout_id: string | null; updated_at: Date }[]>(
    'select state, attempts, gateway_payout_id, updated_at from funding.payouts where application_id = ?', [id]);
  return r ? { state: r.state, attempts: Number(r.attempts), gatewayPayoutId: r.gateway_payout_id, lastAttemptAt: new Date(r.updated_at).getTime() } : null;
}

const FAILED_PAYOUT = new Set(['failed', 'canceled', 'cancelled', 'returned', 'reversed']);

/** The gateway's record of this application's payout, if it made one. */
export async function findPayout(gateway: GatewayClient, applicationId: string): Promise<GatewayPayout | null> {
  const found = await gateway.findPayouts(applicationId);
  // The contract's payouts are `paid`; a gateway that lists other states must not make
  // us pay again for a payout it still holds, so only a clear failure does not count.
  return found.find((p) => p.reference === applicationId && !FAILED_PAYOUT.has(String(p.status ?? '').toLowerCase())) ?? null;
}

/** Record a payout the gateway made: payout row paid, application disbursed, events out; one statement. */
export async function settlePaid(em: EntityManager, app: { id: string; version: number }, payout: GatewayPayout, how: string, requestId?: string): Promise<void> {
  const completed: DisbursementCompleted = { applicationId: app.id, status: 'completed', transactionId: payout.id, timestamp: new Date().toISOString(), error: null };
  await transition(em, {
    id: app.id, from: 'disbursing', to: 'disbursed', version: app.version, requestId, reason: how,
    metadata: { payoutId: payout.id }, events: [{ subject: FundingSubjects.disbursementCompleted, data: completed }],
    also: [{
      sql: `update funding.payouts p set state = 'paid', gateway_payout_id = ?, failure_reason = null, updated_at = now() from u where p.application_id = ?`,
      params: [payout.id, app.id],
    }],
  });
}

async function settleFailed(em: EntityManager, app: { id: string; version: number }, reason: string, requestId?: string): Promise<void> {
  const completed: DisbursementCompleted = { applicationId: app.id, status: 'failed', transactionId: null, timestamp: new Date().toISOString(), error: reason };
  await transition(em, {
    id: app.id, from: 'disbursing', to: 'disbursement_failed', version: app.version, requestId, reason,
    events: [{ subject: FundingSubjects.disbursementCompleted, data: completed }],
    also: [{ sql: `update funding.payouts p set state = 'failed', failure_reason = ?, updated_at = now() from u where p.application_id = ?`, params: [reason, app.id] }],
  });
}

/**
 * approved → disbursing, with the payout record, in one statement; the record counts
 * the POST about to be sent (attempts = 1), so a crash after it means "look up first".
 * The record and the status commit together, so an approved application has none yet.
 */
async function beginDisbursing(orm: MikroORM, app: WorkRow, wakeOutbox: () => void, requestId?: string): Promise<number> {
  const { version } = await transition(orm.em.fork(), {
    id: app.id, from: 'approved', to: 'disbursing', version: app.version, requestId,
    also: [{
      sql: `insert into funding.payouts (application_id, amount_minor, currency, state, attempts, created_at, updated_at)
            select ?, ?, ?, 'pending', 1, now(), now() from u on conflict (application_id) do nothing`,
      params: [app.id, app.amountMinor, app.currency],
    }],
  });
  wakeOutbox();
  return version;
}

/** Start the disbursement consumer. `const w = await startDisbursement(deps, gateway, { concurrency: 16 })` */
export async function startDisbursement(deps: Deps, gateway: GatewayClient, opts: { concurrency: number; resendAfterMs?: number }): Promise<Worker> {
  // A gateway's look-up may lag its POST: after an attempt whose fate is unknown, only
  // send again once a look-up this long after it still finds nothing.
  const resendAfterMs = opts.resendAfterMs ?? 5000;
  const { orm, log, metrics } = deps;
  let running = true;
  const outcomes = new Counter({
    name: 'orderflow_funding_disbursements_total', help: 'Disbursements by outcome (paid, paid_found_by_reference, invalid_destination)',
    labelNames: ['outcome'] as const, registers: [metrics.registry],
  });

  // A message in hand while the breaker is open waits here rather than failing a delivery.
  const waitForBreaker = async (ctx: HandlerContext) => {
    let beat = Date.now();
    do {
      if (!running) throw new RetryLaterError(1000, 'stopping while the payment gateway breaker is open');
      if (Date.now() - beat > 5000) { ctx.msg.working(); beat = Date.now(); }
      await sleep(200);
    } while (gateway.isOpen());
  };

  const disburse = async (req: DisbursementRequested, ctx: HandlerContext, plog: Logger) => {
    const app = await loadWorkRow(ctx.em, req.applicationId);
    if (!app) throw new NonRetryableError(`application ${req.applicationId} does not exist`);
    if (isFinalStatus(app.status)) return;
    if (app.status !== 'approved' && app.status !== 'disbursing') {
      plog.warn({ status: app.status }, 'disbursement requested for an application that is not approved; ignored');
      return;
    }
    const current = { id: app.id, version: app.version };
    const paid = async (p: GatewayPayout, how: string, outcome: string) => {
      await ctx.tx((em) => settlePaid(em, current, p, how, ctx.requestId));
      outcomes.inc({ outcome });
      plog.info({ payoutId: p.id, how }, 'application disbursed');
    };
    // Any earlier attempt may have reached the gateway: ask before sending.
    let mustLookUp: boolean;
    let counted = false;
    let lastAttemptAt = 0;
    if (app.status === 'approved') {
      current.version = await beginDisbursing(orm, app, deps.wakeOutbox, ctx.requestId);
      mustLookUp = false;
      counted = true;
    } else {
      const record = await loadPayout(ctx.em, app.id);
      if (!record) throw new Error(`payout record of ${app.id} missing while disbursing`);
      if (record.state === 'paid' && record.gatewayPayoutId) {
        return await paid({ id: record.gatewayPayoutId, status: 'paid', amount: app.amountMinor, currency: app.currency, reference: app.id }, 'payout already recorded', 'paid');
      }
      mustLookUp = record.attempts > 0;
      lastAttemptAt = record.lastAttemptAt;
    }
    for (;;) {
      try {
        if (mustLookUp) {
          const found = await findPayout(gateway, app.id);
          if (found) return await paid(found, 'found by reference after an earlier attempt', 'paid_found_by_reference');
          const wait = lastAttemptAt + resendAfterMs - Date.now();
          if (wait > 0) throw new RetryLaterError(wait, `no payout found by reference yet; looking again before sending (last attempt ${Math.round(resendAfterMs - wait)} ms ago)`);
        }
        mustLookUp = true;
        if (!counted) await orm.em.fork().execute('update funding.payouts set attempts = attempts + 1, updated_at = now() where application_id = ?', [app.id]);
        counted = false;
        lastAttemptAt = Date.now();
        const res = await gateway.payout({
          amount: app.amountMinor, currency: app.currency, reference: app.id,
          destination: { iban: app.bankAccount.iban, holderName: app.bankAccount.holderName },
        }, app.id);
        if (res.outcome === 'ok') return await paid(res.payout, res.replayed ? 'gateway replayed the first answer' : 'paid', 'paid');
        await ctx.tx((em) => settleFailed(em, current, `invalid_destination: ${res.message}`, ctx.requestId));
        outcomes.inc({ outcome: 'invalid_destination' });
        plog.warn({ reason: res.message }, 'payout refused: invalid destination');
        return;
      } catch (err) {
        if (!(err instanceof GatewayError)) throw err;
        if (err instanceof GatewayUnavailableError) { await waitForBreaker(ctx); continue; }
        if (err instanceof GatewayRateLimitedError) throw new RetryLaterError(err.retryAfterMs, err.message);
        if (err instanceof GatewayRejectedError) throw new NonRetryableError(err.message, { cause: err });
        // Transient: an ambiguous POST, or a look-up that failed.
        let failure: Error = err;
        if (err instanceof GatewayAmbiguousError) {
          plog.warn({ err: err.message }, 'payout outcome unknown; looking it up by reference');
          const found = await findPayout(gateway, app.id).catch((lookupErr) => {
            if (lookupErr instanceof GatewayTransientError) return null;
            throw lookupErr;
          });
          if (found) return await paid(found, `found by reference after: ${err.message}`, 'paid_found_by_reference');
          failure = new Error(`${err.message}; no payout found by reference yet`, { cause: err });
        }
        // This failure tripped the breaker (or a half-open trial failed): the gateway is
        // down, not this payout. Hold the message rather than spend a delivery on it.
        if (gateway.isOpen()) { await waitForBreaker(ctx); continue; }
        // Back off; the next attempt looks up again before any POST.
        throw failure;
      }
    }
  };

  const worker = await startWorker({
    stream: FUNDING_WORK_STREAM,
    consumer: FundingConsumers.disbursement,
    js: deps.nats.js, orm, errors: deps.errors, log, metrics,
    schema: DisbursementRequested,
    key: (r) => r.applicationId,
    concurrency: opts.concurrency,
    retry: { baseMs: 1000, factor: 2, maxMs: 30_000 },
    paused: () => gateway.isOpen(),
    handle: (req, ctx) => disburse(req, ctx, ctx.log.child({ applicationId: req.applicationId })),
  });
  return {
    inflight: () => worker.inflight(),
    async stop(timeoutMs?: number) {
      running = false;
      await worker.stop(timeoutMs);
    },
  };
}
