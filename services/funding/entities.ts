// Funding's tables, in schema `funding`. Reads go through these entities; every
// write is SQL with an explicit version check (see applications.ts), because the
// status machine's transitions must fail loudly when another replica got there first.
import { defineEntity, p } from '@mikro-orm/core';

export type HistoryEntry = { status: string; at: string; reason?: string | null };
export type Review = { decision: 'approved' | 'rejected'; reviewer: string; note: string | null; at: string };

export const Application = defineEntity({
  name: 'FundingApplication',
  schema: 'funding',
  tableName: 'applications',
  properties: {
    id: p.uuid().primary(),
    businessId: p.text(),
    businessName: p.text(),
    contactEmail: p.text(),
    amountMinor: p.bigint('number'),
    currency: p.character().length(3),
    termMonths: p.integer(),
    purpose: p.text(),
    /** Scoring lane (CONTRACTS.md): normal or high; the reconciler re-requests scoring on the same lane. */
    priority: p.text().default('normal'),
    financials: p.json<{ annualRevenue: number; yearsTrading: number; existingDebt: number }>(),
    bankAccount: p.json<{ iban: string; holderName: string }>(),
    status: p.text(),
    riskScore: p.integer().nullable(),
    probabilityOfDefault: p.double().nullable(),
    riskDecision: p.text().nullable(),
    riskReasons: p.json<string[]>().nullable(),
    modelVersion: p.text().nullable(),
    scoringError: p.text().nullable(),
    review: p.json<Review>().nullable(),
    history: p.json<HistoryEntry[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    reconciledAt: p.datetime().nullable(),
    version: p.integer().version().default(1),
    // The principal (token `sub`) that applied: a customer reads only its own. Null for applications from before access control.
    owner: p.text().nullable(),
  },
  indexes: [
    // The operator console's lists by status (the pending_review queue oldest first, the rest newest first).
    { name: 'applications_status_created_at', properties: ['status', 'createdAt', 'id'] },
    // The reconciler's scan: only non-final rows, oldest change first.
    { name: 'applications_unsettled', properties: ['updatedAt'], where: "status in ('processing', 'risk_scoring', 'approved', 'disbursing')" },
  ],
  checks: [
    { name: 'applications_amount_minor_check', expression: 'amount_minor > 0' },
    { name: 'applications_term_months_check', expression: 'term_months >= 1 and term_months <= 360' },
    { name: 'applications_priority_check', expression: "priority in ('normal', 'high')" },
    { name: 'applications_status_check', expression: "status in ('processing', 'risk_scoring', 'approved', 'rejected', 'pending_review', 'disbursing', 'disbursed', 'disbursement_failed')" },
  ],
});

/** One row per application ever sent to the gateway: the primary key makes a second payout record impossible. */
export const Payout = defineEntity({
  name: 'FundingPayout',
  schema: 'funding',
  tableName: 'payouts',
  properties: {
    applicationId: p.manyToOne(Application).mapToPk().primary().fieldName('application_id').deleteRule('no action').updateRule('no action').foreignKeyName('payouts_application_id_fkey'),
    amountMinor: p.bigint('number'),
    currency: p.character().length(3),
    state: p.text(),
    gatewayPayoutId: p.text().nullable().unique('payouts_gateway_payout_id_key'),
    failureReason: p.text().nullable(),
    attempts: p.integer().default(0),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  checks: [
    { name: 'payouts_amount_minor_check', expression: 'amount_minor > 0' },
    { name: 'payouts_state_check', expression: "state in ('pending', 'paid', 'failed')" },
  ],
});

export const entities = [Application, Payout];

export { migrations } from './migrations/index.ts';
