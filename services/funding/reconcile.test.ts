import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayClient } from '../kit/index.ts';
import { createLogger } from '../kit/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startTestCluster, type TestCluster } from '../testing/index.ts';
import { VALID_IBAN, waitForStatus } from './test-fixtures.ts';

let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 9 });
  c = await startTestCluster({
    TARGET: 'funding,funding-scoring,admin', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0',
    FUNDING_RECONCILE_INTERVAL_MS: '300', FUNDING_STUCK_AFTER_MS: '1500',
  });
});
afterAll(async () => { await c?.close(); await gw?.close(); });

/**
 * An application whose message was lost: the row is in `status`, unchanged for an hour,
 * and nothing is queued for it (as after a purged stream or an operator's edit).
 */
async function insertStuck(status: string, opts: { payout?: { attempts: number }; amountMinor?: number } = {}) {
  const id = randomUUID();
  const amountMinor = opts.amountMinor ?? 5_000_000 + Math.floor(Math.random() * 1000);
  const em = c.deps.orm.em.fork();
  await em.execute(
    `insert into funding.applications (id, business_id, business_name, contact_email, amount_minor, currency, term_months, purpose,
       financials, bank_account, status, risk_decision, history, created_at, updated_at, version)
     values (?, 'biz-stuck', 'Stuck Ltd', 'cfo@stuck.test', ?, 'EUR', 24, 'working capital', ?::jsonb, ?::jsonb, ?, ?, ?::jsonb,
       now() - interval '1 hour', now() - interval '1 hour', 3)`,
    [id, amountMinor, JSON.stringify({ annualRevenue: 1_200_000, yearsTrading: 6, existingDebt: 0 }), JSON.stringify({ iban: VALID_IBAN, holderName: 'Stuck Ltd' }),
      status, ['approved', 'disbursing'].includes(status) ? 'approved' : null, JSON.stringify([{ status, at: new Date(Date.now() - 3_600_000).toISOString() }])]);
  if (opts.payout) {
    await em.execute(`insert into funding.payouts (application_id, amount_minor, currency, state, attempts, created_at, updated_at)
      values (?, ?, 'EUR', 'pending', ?, now() - interval '1 hour', now() - interval '1 hour')`, [id, amountMinor, opts.payout.attempts]);
  }
  return { id, amountMinor };
}

const repairs = async (status: string, action: string) => {
  const m = (await c.get('/metrics')).body as string;
  return Number(new RegExp(`orderflow_funding_reconcile_repairs_total\\{status="${status}",action="${action}"\\} (\\d+)`).exec(m)?.[1] ?? 0);
};

describe('reconciliation', () => {
  it('routes an application stuck in processing and it completes', async () => {
    const { id } = await insertStuck('processing');
    await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(await repairs('processing', 'routed')).toBeGreaterThanOrEqual(1);
  });

  it('re-requests scoring for an application stuck in risk_scoring', async () => {
    const { id } = await insertStuck('risk_scoring');
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(done.riskScore).toEqual(expect.any(Number));
    expect(await repairs('risk_scoring', 'scoring_requested')).toBeGreaterThanOrEqual(1);
  });

  it('re-requests the disbursement of an application stuck in approved', async () => {
    const { id } = await insertStuck('approved');
    await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(await repairs('approved', 'disbursement_requested')).toBeGreaterThanOrEqual(1);
  });

  it('re-checks a payout by reference: paid at the gateway → disbursed without paying again', async () => {
    const { id, amountMinor } = await insertStuck('disbursing', { payout: { attempts: 1 } });
    // The payout went through before the crash that lost our record of it.
    const client = createGatewayClient({ baseUrl: gw.url, log: createLogger({ level: 'silent' }) });
    await client.payout({ amount: amountMinor, currency: 'EUR', destination: { iban: VALID_IBAN, holderName: 'Stuck Ltd' }, reference: id }, id);
    client.close();
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(done.disbursement).toMatchObject({ status: 'paid', payoutId: gw.sim.payoutsFor(id)[0]!.id });
    expect(done.history.at(-1).reason).toMatch(/reconciled/);
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(await repairs('disbursing', 'payout_found')).toBe(1);
  });

  it('re-checks a payout by reference: not paid → disbursement requested again, paid once', async () => {
    const { id } = await insertStuck('disbursing', { payout: { attempts: 0 } });
    await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(await repairs('disbursing', 'disbursement_requested')).toBeGreaterThanOrEqual(1);
  });

  it('leaves pending_review and final applications alone', async () => {
    const { id: pending } = await insertStuck('pending_review');
    const { id: rejected } = await insertStuck('rejected');
    await new Promise((r) => setTimeout(r, 1500));
    expect((await c.get(`/api/funding/applications/${pending}`)).body.status).toBe('pending_review');
    expect((await c.get(`/api/funding/applications/${rejected}`)).body.status).toBe('rejected');
    const [row] = await c.deps.orm.em.fork().execute<{ reconciled_at: Date | null }[]>('select reconciled_at from funding.applications where id = ?', [pending]);
    expect(row!.reconciled_at).toBeNull();
  });

  it('does not touch an application that is merely busy (changed within the threshold)', async () => {
    const { id } = await insertStuck('risk_scoring');
    await c.deps.orm.em.fork().execute(`update funding.applications set updated_at = now() + interval '1 hour' where id = ?`, [id]);
    await new Promise((r) => setTimeout(r, 1200));
    const [row] = await c.deps.orm.em.fork().execute<{ status: string; reconciled_at: Date | null }[]>('select status, reconciled_at from funding.applications where id = ?', [id]);
    expect(row).toMatchObject({ status: 'risk_scoring', reconciled_at: null });
  });
});
