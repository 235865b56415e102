// Reconciliation (the seed's "periodic check for stuck states"). Messages are
// durable and the outbox is transactional, so an application should never stall;
// this job is the belt to those braces: a purged stream, a message that ran out of
// deliveries while a dependency was down, an operator's manual edit. Every pass
// claims applications unchanged in a non-final status for FUNDING_STUCK_AFTER_MS
// (FOR UPDATE SKIP LOCKED + reconciled_at, so replicas split the work and a row is
// looked at once per threshold) and repairs each:
//   processing   → route it (risk_scoring + a scoring request)
//   risk_scoring → request scoring again (a cached score makes a duplicate cheap);
//                  not when scoring failed permanently (it waits in the DLQ)
//   approved     → request the disbursement again
//   disbursing   → ask the gateway by reference: paid → settle as disbursed; not
//                  paid → request the disbursement again (the worker looks up first)
// pending_review waits for a person and is never "stuck".
import { Counter } from 'prom-client';
import type { Priority } from '../../contracts/funding.ts';
import type { EntityManager, MikroORM } from '../kit/index.ts';
import type { GatewayClient } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { Metrics } from '../kit/index.ts';
import { enqueue } from '../kit/index.ts';
import { disbursementRequest, scoringRequest, StaleApplicationError, transition } from './applications.ts';
import { findPayout, settlePaid } from './disbursement.ts';

export type RepairAction = 'routed' | 'scoring_requested' | 'disbursement_requested' | 'payout_found' | 'skipped';
export type Repair = { id: string; status: string; action: RepairAction; error?: string };

export type Reconciler = { runOnce(): Promise<Repair[]>; stop(): Promise<void> };

type Claimed = { id: string; status: string; version: number; amount_minor: string | number; currency: string; priority: Priority };

/** Start the periodic job (intervalMs 0: runOnce only). `const r = startReconciler({ orm, gateway, log, metrics, intervalMs: 30000, stuckAfterMs: 300000 })` */
export function startReconciler(o: {
  orm: MikroORM; gateway: GatewayClient; log: Logger; metrics: Metrics; intervalMs: number; stuckAfterMs: number; batchSize?: number;
}): Reconciler {
  const log = o.log.child({ job: 'funding-reconcile' });
  const repairs = new Counter({
    name: 'orderflow_funding_reconcile_repairs_total', help: 'Stuck funding applications repaired by the reconciler, by status found and action taken',
    labelNames: ['status', 'action'] as const, registers: [o.metrics.registry],
  });
  const secs = o.stuckAfterMs / 1000;

  const repairOne = async (row: Claimed): Promise<Repair> => {
    const id = row.id;
    const app = { id, version: Number(row.version), amountMinor: Number(row.amount_minor), currency: row.currency.trim() };
    const tx = <R>(fn: (em: EntityManager) => Promise<R>): Promise<R> => o.orm.em.fork().transactional(fn);
    switch (row.status) {
      case 'processing':
        await tx(async (em) => transition(em, { ...app, from: 'processing', to: 'risk_scoring', reason: 'reconciled', events: [scoringRequest(id, 'reconcile', row.priority)] }));
        return { id, status: row.status, action: 'routed' };
      case 'risk_scoring':
        await tx(async (em) => enqueue(em, [scoringRequest(id, 'reconcile', row.priority)]));
        return { id, status: row.status, action: 'scoring_requested' };
      case 'approved':
        await tx(async (em) => enqueue(em, [disbursementRequest(app, 'reconcile')]));
        return { id, status: row.status, action: 'disbursement_requested' };
      case 'disbursing': {
        if (o.gateway.isOpen()) return { id, status: row.status, action: 'skipped', error: 'payment gateway breaker open' };
        const found = await findPayout(o.gateway, id);
        if (found) {
          await tx(async (em) => settlePaid(em, app, found, 'reconciled: payout found by reference'));
          return { id, status: row.status, action: 'payout_found' };
        }
        await tx(async (em) => enqueue(em, [disbursementRequest(app, 'reconcile')]));
        return { id, status: row.status, action: 'disbursement_requested' };
      }
      default:
        return { id, status: row.status, action: 'skipped' };
    }
  };

  const runOnce = async (): Promise<Repair[]> => {
    const claimed = await o.orm.em.fork().execute<Claimed[]>(
      `update funding.applications a set reconciled_at = now()
         from (select id from funding.applications
                where status in ('processing', 'risk_scoring', 'approved', 'disbursing')
                  and scoring_error is null
                  and updated_at < now() - make_interval(secs => ?)
                  and (reconciled_at is null or reconciled_at < now() - make_interval(secs => ?))
                order by updated_at limit ? for update skip locked) s
        where a.id = s.id
        returning a.id, a.status, a.version, a.amount_minor, a.currency, a.priority`,
      [secs, secs, o.batchSize ?? 200]);
    const done: Repair[] = [];
    for (const row of claimed) {
      try {
        const r = await repairOne(row);
        done.push(r);
        if (r.action !== 'skipped') {
          repairs.inc({ status: r.status, action: r.action });
          log.warn({ applicationId: r.id, status: r.status, action: r.action }, 'stuck application repaired');
        }
      } catch (err) {
        // Stale: a worker moved it meanwhile, which is the best repair of all.
        const stale = err instanceof StaleApplicationError;
        done.push({ id: row.id, status: row.status, action: 'skipped', error: String((err as Error)?.message ?? err) });
        if (!stale) log.warn({ applicationId: row.id, status: row.status, err: String(err) }, 'reconciliation of an application failed; next pass retries');
      }
    }
    return done;
  };

  let running = o.intervalMs > 0;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();
  const schedule = () => {
    if (!running) return;
    timer = setTimeout(() => {
      current = runOnce().catch((err) => log.warn({ err: String(err) }, 'reconciliation pass failed')).finally(schedule);
    }, o.intervalMs);
    timer.unref();
  };
  schedule();
  if (running) log.info({ intervalMs: o.intervalMs, stuckAfterMs: o.stuckAfterMs }, 'funding reconciler started');

  return {
    runOnce,
    async stop() {
      running = false;
      clearTimeout(timer);
      await current;
    },
  };
}
