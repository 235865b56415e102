// Funding's tables, in schema `funding`. Reads go through these entities; every
// write is SQL with an explicit version check (see applications.ts), because the
// status machine's transitions must fail loudly when another replica got there first.
import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

export type HistoryEntry = { status: string; at: string; reason?: string | null };
export type Review = { decision: 'approved' | 'rejected'; reviewer: string; note: string | null; at: string };

export const Application = defineEntity({
  name: 'FundingApplication',
  schema: 'funding',
  tableName: 'applications',
  properties: {
    id: p.uuid().primary(),
    businessId: p.string(),
    businessName: p.string(),
    contactEmail: p.string(),
    amountMinor: p.bigint('number'),
    currency: p.string(),
    termMonths: p.integer(),
    purpose: p.string(),
    financials: p.json<{ annualRevenue: number; yearsTrading: number; existingDebt: number }>(),
    bankAccount: p.json<{ iban: string; holderName: string }>(),
    status: p.string(),
    riskScore: p.integer().nullable(),
    probabilityOfDefault: p.double().nullable(),
    riskDecision: p.string().nullable(),
    riskReasons: p.json<string[]>().nullable(),
    modelVersion: p.string().nullable(),
    scoringError: p.string().nullable(),
    review: p.json<Review>().nullable(),
    history: p.json<HistoryEntry[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    reconciledAt: p.datetime().nullable(),
    version: p.integer().version(),
  },
});

/** One row per application ever sent to the gateway: the primary key makes a second payout record impossible. */
export const Payout = defineEntity({
  name: 'FundingPayout',
  schema: 'funding',
  tableName: 'payouts',
  properties: {
    applicationId: p.uuid().primary(),
    amountMinor: p.bigint('number'),
    currency: p.string(),
    state: p.string(),
    gatewayPayoutId: p.string().nullable(),
    failureReason: p.string().nullable(),
    attempts: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});

export const entities = [Application, Payout];

export const migrations = [
  sqlMigration('funding-0001-init', [
    'create schema if not exists funding',
    `create table funding.applications (
       id uuid primary key,
       business_id text not null,
       business_name text not null,
       contact_email text not null,
       amount_minor bigint not null check (amount_minor > 0),
       currency char(3) not null,
       term_months int not null check (term_months between 1 and 360),
       purpose text not null,
       financials jsonb not null,
       bank_account jsonb not null,
       status text not null check (status in ('processing', 'risk_scoring', 'approved', 'rejected', 'pending_review', 'disbursing', 'disbursed', 'disbursement_failed')),
       risk_score int,
       probability_of_default double precision,
       risk_decision text,
       risk_reasons jsonb,
       model_version text,
       scoring_error text,
       review jsonb,
       history jsonb not null,
       created_at timestamptz not null,
       updated_at timestamptz not null,
       reconciled_at timestamptz,
       version int not null default 1)`,
    // The reconciler's scan: only non-final rows, oldest change first.
    `create index applications_unsettled on funding.applications (updated_at)
       where status in ('processing', 'risk_scoring', 'approved', 'disbursing')`,
    `create table funding.payouts (
       application_id uuid primary key references funding.applications (id),
       amount_minor bigint not null check (amount_minor > 0),
       currency char(3) not null,
       state text not null check (state in ('pending', 'paid', 'failed')),
       gateway_payout_id text unique,
       failure_reason text,
       attempts int not null default 0,
       created_at timestamptz not null,
       updated_at timestamptz not null)`,
  ]),
];
