// Shared by funding's tests and bench: request bodies whose decision CONTRACTS.md's
// bounds (or the model, for pending_review) fix, and a wait for a status.
import { eventually } from '../testing/index.ts';

export const VALID_IBAN = 'DE89370400440532013000';
/** The right shape and length, but the mod-97 check fails. */
export const BAD_CHECKSUM_IBAN = 'DE89370400440532013001';

let n = 0;

/** A valid application body; the contract's example numbers make it `approved`. `applicationBody({ amount: 10 })` */
export function applicationBody(over: Record<string, unknown> = {}) {
  n++;
  return {
    businessId: `biz-${process.pid}-${n}`,
    businessName: 'Acme Ltd',
    contactEmail: 'cfo@acme.test',
    // Distinct amounts keep each application's score out of the others' cache entries.
    amount: 50_000 + n,
    currency: 'EUR',
    termMonths: 24,
    purpose: 'working capital',
    financials: { annualRevenue: 1_200_000, yearsTrading: 6, existingDebt: 0 },
    bankAccount: { iban: VALID_IBAN, holderName: 'Acme Ltd' },
    ...over,
  };
}

/** Rejected by the contract's hard bounds (trading under a year). */
export const rejectedBody = (over: Record<string, unknown> = {}) =>
  applicationBody({ financials: { annualRevenue: 1_200_000, yearsTrading: 0.5, existingDebt: 0 }, ...over });

/** Between the bounds, with a simulated PD in the review band (see risk-model.test.ts). */
export const pendingReviewBody = (over: Record<string, unknown> = {}) =>
  applicationBody({ amount: 120_000, termMonths: 24, financials: { annualRevenue: 1_000_000, yearsTrading: 4, existingDebt: 200_000 }, ...over });

type Get = (path: string) => Promise<{ status: number; body: any }>;

/** Poll GET /api/funding/applications/{id} until its status is one of `want`. */
export async function waitForStatus(get: Get, id: string, want: string | string[], timeoutMs = 60_000): Promise<any> {
  const wanted = Array.isArray(want) ? want : [want];
  let last = '';
  try {
    return await eventually(async () => {
      const r = await get(`/api/funding/applications/${id}`);
      last = r.body?.status;
      return wanted.includes(r.body?.status) ? r.body : undefined;
    }, { timeoutMs, intervalMs: 100, what: `application ${id} ${wanted.join('|')}` });
  } catch (err) {
    throw new Error(`${(err as Error).message} (last status ${last})`);
  }
}
