// SME funding (seed 001): HTTP DTOs and the events/commands on subjects funding.*.
// Events (several readers) live on the limits stream FUNDING; commands to one
// actor type live on the work-queue stream FUNDING_WORK.
import { z } from 'zod';
import { email } from './orders.ts';

export const FUNDING_EVENTS_STREAM = 'FUNDING';
export const FUNDING_WORK_STREAM = 'FUNDING_WORK';

export const FundingSubjects = {
  applicationCreated: 'funding.applications.created',
  /** The normal lane of scoring requests (its subject from before lanes existed). */
  riskScoringRequested: 'funding.risk.scoring.requested',
  /** The high-priority lane: its own durable consumer, scored ahead of the normal backlog. */
  riskScoringRequestedHigh: 'funding.risk.scoring.requested.high',
  riskScoringCompleted: 'funding.risk.scoring.completed',
  disbursementRequested: 'funding.disbursement.requested',
  disbursementCompleted: 'funding.disbursement.completed',
  statusUpdated: 'funding.status.updated',
} as const;

/** Durable consumer names (streams/<STREAM>.<name>.consumer.json). */
export const FundingConsumers = {
  router: 'funding-router',
  status: 'funding-status',
  scoring: 'funding-scoring',
  scoringHigh: 'funding-scoring-high',
  disbursement: 'funding-disbursement',
} as const;

/** KV buckets: the status cache (the seed's Redis `status:{id}`) and risk scores per model version. */
export const FundingBuckets = {
  status: 'funding-status',
  riskScores: 'funding-risk-scores',
} as const;

export const ApplicationStatuses = [
  'processing', 'risk_scoring', 'approved', 'rejected', 'pending_review', 'disbursing', 'disbursed', 'disbursement_failed',
] as const;
export type ApplicationStatus = (typeof ApplicationStatuses)[number];
/** Nothing happens to an application in these statuses any more. */
export const FinalStatuses: readonly ApplicationStatus[] = ['rejected', 'disbursed', 'disbursement_failed'];
export const isFinalStatus = (s: string) => (FinalStatuses as readonly string[]).includes(s);

/** Scoring lanes: `high` is scored ahead of any backlog of `normal` (CONTRACTS.md "SME funding"). */
export const Priorities = ['normal', 'high'] as const;
export type Priority = (typeof Priorities)[number];
/** The scoring request subject of a lane. `scoringSubject('high') // 'funding.risk.scoring.requested.high'` */
export const scoringSubject = (p: Priority) => (p === 'high' ? FundingSubjects.riskScoringRequestedHigh : FundingSubjects.riskScoringRequested);

// ---------------------------------------------------------------------------
// Validation helpers

/** The IBAN as stored and sent to the gateway: no spaces, upper case. */
export const normalizeIban = (value: string) => value.replace(/\s+/g, '').toUpperCase();

/**
 * IBAN length per country code, from the SWIFT IBAN registry (ISO 13616). Territories
 * that use another country's code (Åland: FI, Jersey: GB, French overseas: FR, …)
 * have no entry of their own. A code missing here has no IBAN.
 */
export const IBAN_LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28,
  CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18,
  FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HN: 28, HR: 21, HU: 28,
  IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20,
  LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28,
  NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24,
  SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};

/**
 * What is wrong with an IBAN (ISO 13616: shape, the country's registry length, check
 * digits 02..98, mod 97 = 1), or null when it is valid. `ibanProblem('DE89 3704 0044 0532 0130 00') // null`
 */
export function ibanProblem(value: string): string | null {
  const iban = normalizeIban(value);
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(iban)) return 'must be an IBAN: a country code, 2 check digits, then letters and digits';
  const country = iban.slice(0, 2);
  const length = IBAN_LENGTHS[country];
  if (length === undefined) return `${country} is not a country with IBANs`;
  if (iban.length !== length) return `a ${country} IBAN has ${length} characters, not ${iban.length}`;
  const checkDigits = Number(iban.slice(2, 4));
  if (checkDigits < 2 || checkDigits > 98) return 'must be a valid IBAN (check digits 02 to 98)';
  const moved = iban.slice(4) + iban.slice(0, 4);
  // Fold the number left to right so it never leaves the safe-integer range.
  let rest = 0;
  for (const ch of moved) {
    const n = ch >= 'A' ? ch.charCodeAt(0) - 55 : ch.charCodeAt(0) - 48;
    rest = (rest * (n >= 10 ? 100 : 10) + n) % 97;
  }
  return rest === 1 ? null : 'must be a valid IBAN (ISO 13616, mod-97 check)';
}

/** `isValidIban('DE89 3704 0044 0532 0130 00') // true` */
export const isValidIban = (value: string): boolean => ibanProblem(value) === null;

const finite = (what: string) => z.number({ error: `${what} must be a number` }).refine(Number.isFinite, `${what} must be finite`);
// At least one cent: 4e-9 would pass the 2-decimal check and round to 0 minor units.
const money = finite('amount').refine((v) => v >= 0.01, 'must be at least 0.01')
  .refine((v) => v <= 1e12, 'must be at most 1,000,000,000,000')
  .refine((v) => Math.abs(Math.round(v * 100) - v * 100) < 1e-6, 'must have at most 2 decimal places');
const nonNegative = (what: string) => finite(what).refine((v) => v >= 0, 'must be 0 or more');

export const Financials = z.object({
  annualRevenue: nonNegative('annualRevenue'),
  yearsTrading: nonNegative('yearsTrading').refine((v) => v <= 500, 'must be at most 500'),
  existingDebt: nonNegative('existingDebt'),
});
export type Financials = z.infer<typeof Financials>;

export const BankAccount = z.object({
  iban: z.string().max(64).superRefine((v, ctx) => {
    const problem = ibanProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  holderName: z.string().trim().min(1).max(140),
});

// ---------------------------------------------------------------------------
// HTTP

/** `POST /api/funding/applications` */
export const CreateApplicationRequest = z.object({
  businessId: z.string().trim().min(1).max(128).regex(/^[^\x00-\x1f\x7f]*$/, 'must not contain control characters'),
  businessName: z.string().trim().min(1).max(200),
  contactEmail: email,
  amount: money,
  currency: z.string().regex(/^[A-Za-z]{3}$/, 'must be an ISO 4217 code like EUR').transform((v) => v.toUpperCase()),
  termMonths: z.number().int('must be an integer').min(1).max(360),
  purpose: z.string().trim().max(500).optional(),
  financials: Financials,
  bankAccount: BankAccount,
  /** Default normal; `high` is scored ahead of any backlog of normal ones and needs the reviewer or admin role or the funding:decide scope (checked by the route). */
  priority: z.enum(Priorities).optional(),
});
export type CreateApplicationRequest = z.infer<typeof CreateApplicationRequest>;

/** `POST /api/funding/applications/{id}/decision`, for pending_review only. */
export const ReviewDecisionRequest = z.object({
  decision: z.enum(['approved', 'rejected']),
  reviewer: z.string().trim().min(1).max(128),
  note: z.string().max(2000).optional(),
});
export type ReviewDecisionRequest = z.infer<typeof ReviewDecisionRequest>;

/** `GET /api/funding/applications/{id}/status` and each SSE `status` event. */
export const StatusView = z.object({ id: z.uuid(), status: z.enum(ApplicationStatuses), updatedAt: z.string() });
export type StatusView = z.infer<typeof StatusView>;

// ---------------------------------------------------------------------------
// Events and commands

/** Event `funding.applications.created`: the application was accepted and stored. */
export const ApplicationCreated = z.object({
  applicationId: z.uuid(),
  businessId: z.string(),
  amount: z.number(),
  currency: z.string(),
  termMonths: z.number().int(),
  /** Absent on events written before lanes existed: normal. */
  priority: z.enum(Priorities).default('normal'),
  /** The model's inputs, passed on in the scoring request (absent on older events). */
  financials: z.object({ annualRevenue: z.number(), yearsTrading: z.number(), existingDebt: z.number() }).optional(),
  timestamp: z.string(),
});
export type ApplicationCreated = z.infer<typeof ApplicationCreated>;

/** What the risk model is given about an application, as stored at intake. */
export const ScoringInputs = z.object({
  businessId: z.string(),
  amountMinor: z.number().int().positive(),
  currency: z.string(),
  termMonths: z.number().int(),
  financials: z.object({ annualRevenue: z.number(), yearsTrading: z.number(), existingDebt: z.number() }),
});
export type ScoringInputs = z.infer<typeof ScoringInputs>;

/**
 * Command `funding.risk.scoring.requested`: score this application. With `inputs` (the
 * router's requests) the scorer reads nothing first; without (the reconciler's, older
 * ones) it reads them from the row.
 */
export const RiskScoringRequested = z.object({
  applicationId: z.uuid(),
  requestedAt: z.string(),
  reason: z.enum(['new', 'reconcile']).default('new'),
  inputs: ScoringInputs.optional(),
});
export type RiskScoringRequested = z.infer<typeof RiskScoringRequested>;

/** Event `funding.risk.scoring.completed`. */
export const RiskScoringCompleted = z.object({
  applicationId: z.uuid(),
  riskScore: z.number(),
  probabilityOfDefault: z.number(),
  status: z.enum(['approved', 'rejected', 'pending_review']),
  reasons: z.array(z.string()),
  modelVersion: z.string(),
  cached: z.boolean(),
  timestamp: z.string(),
});
export type RiskScoringCompleted = z.infer<typeof RiskScoringCompleted>;

/** Command `funding.disbursement.requested`: pay the approved amount out (minor units). */
export const DisbursementRequested = z.object({
  applicationId: z.uuid(),
  amountMinor: z.number().int().positive(),
  currency: z.string(),
  requestedAt: z.string(),
  reason: z.enum(['approved', 'reviewed', 'reconcile']),
});
export type DisbursementRequested = z.infer<typeof DisbursementRequested>;

/** Event `funding.disbursement.completed`. */
export const DisbursementCompleted = z.object({
  applicationId: z.uuid(),
  status: z.enum(['completed', 'failed']),
  transactionId: z.string().nullable(),
  timestamp: z.string(),
  error: z.string().nullable(),
});
export type DisbursementCompleted = z.infer<typeof DisbursementCompleted>;

/** Event `funding.status.updated`: every status change, with the row version so caches keep the newest. */
export const StatusUpdated = z.object({
  applicationId: z.uuid(),
  status: z.enum(ApplicationStatuses),
  previousStatus: z.enum(ApplicationStatuses).nullable(),
  version: z.number().int().positive(),
  timestamp: z.string(),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type StatusUpdated = z.infer<typeof StatusUpdated>;
