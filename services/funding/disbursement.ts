// Disbursement: the payout records and their transitions, for the `funding-disbursement`
// consumer of `funding.disbursement.requested` (consumers.ts). One application is never paid out twice, by three independent guards:
//  1. our own record: `funding.payouts` has the application id as primary key, and
//     the row is written (with approved → disbursing) before the first POST;
//  2. the gateway: every POST carries Idempotency-Key = application id, and the
//     payout's reference is the application id;
//  3. after anything ambiguous (5xx, timeout, dropped connection, or a crash that
//     left the row `pending` with attempts > 0) we ask the gateway by reference
//     (`GET /v1/payouts?reference=`) before sending anything again.
import { FundingSubjects, type DisbursementCompleted } from '../../contracts/funding.ts';
import type { CommittedOutboxRow, EntityManager } from '../kit/index.ts';
import type { GatewayClient, GatewayPayout } from '../kit/index.ts';
import { StaleApplicationError, transition, type WorkRow } from './applications.ts';

export type PayoutRecord = { state: 'pending' | 'paid' | 'failed'; attempts: number; gatewayPayoutId: string | null; lastAttemptAt: number };

export async function loadPayout(em: EntityManager, id: string): Promise<PayoutRecord | null> {
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
export async function settlePaid(em: EntityManager, app: { id: string; version: number }, payout: GatewayPayout, how: string, requestId?: string): Promise<CommittedOutboxRow[]> {
  const completed: DisbursementCompleted = { applicationId: app.id, status: 'completed', transactionId: payout.id, timestamp: new Date().toISOString(), error: null };
  return (await transition(em, {
    id: app.id, from: 'disbursing', to: 'disbursed', version: app.version, requestId, reason: how,
    metadata: { payoutId: payout.id }, events: [{ subject: FundingSubjects.disbursementCompleted, data: completed }],
    also: [{
      sql: `update funding.payouts p set state = 'paid', gateway_payout_id = ?, failure_reason = null, updated_at = now() from u where p.application_id = ?`,
      params: [payout.id, app.id],
    }],
  })).outbox;
}

export async function settleFailed(em: EntityManager, app: { id: string; version: number }, reason: string, requestId?: string): Promise<CommittedOutboxRow[]> {
  const completed: DisbursementCompleted = { applicationId: app.id, status: 'failed', transactionId: null, timestamp: new Date().toISOString(), error: reason };
  return (await transition(em, {
    id: app.id, from: 'disbursing', to: 'disbursement_failed', version: app.version, requestId, reason,
    events: [{ subject: FundingSubjects.disbursementCompleted, data: completed }],
    also: [{ sql: `update funding.payouts p set state = 'failed', failure_reason = ?, updated_at = now() from u where p.application_id = ?`, params: [reason, app.id] }],
  })).outbox;
}

/**
 * approved → disbursing, with the payout record, in one statement that also returns the
 * row the payout is sent from, so the common case (a fresh disbursement request) reads
 * nothing first; null when the application is not `approved` (already disbursing,
 * final, or never approved: the caller reads it and decides). The record counts the
 * POST about to be sent (attempts = 1), so a crash after it means "look up first". The
 * record and the status commit together, so an approved application has none yet.
 * `const begun = await beginDisbursing(orm.em.fork(), id, deps.wakeOutbox)`
 */
export async function beginDisbursing(em: EntityManager, id: string, wakeOutbox: (committed: CommittedOutboxRow[]) => void, requestId?: string): Promise<WorkRow | null> {
  try {
    const { row, outbox } = await transition(em, {
      id, from: 'approved', to: 'disbursing', requestId, row: true,
      also: [{
        sql: `insert into funding.payouts (application_id, amount_minor, currency, state, attempts, created_at, updated_at)
              select u.id, u.amount_minor, u.currency, 'pending', 1, now(), now() from u on conflict (application_id) do nothing`,
        params: [],
      }],
    });
    wakeOutbox(outbox);
    return row!;
  } catch (err) {
    if (err instanceof StaleApplicationError) return null;
    throw err;
  }
}
