// The application's status machine and its persistence. Every change of status is
// one UPDATE guarded by the row's version (optimistic locking: two replicas acting on
// one application cannot both win) and its `funding.status.updated` event in the same
// transaction, so the status cache and SSE can never miss a change that committed.
//
//   processing → risk_scoring → approved | rejected | pending_review
//   pending_review → approved | rejected            (a reviewer's decision)
//   approved → disbursing → disbursed | disbursement_failed
import { randomUUID } from 'node:crypto';
import type { InferEntity } from '@mikro-orm/core';
import {
  FundingSubjects, normalizeIban, scoringSubject, type ApplicationCreated, type Priority, type ApplicationStatus, type CreateApplicationRequest,
  type DisbursementRequested, type RiskScoringRequested, type ScoringInputs, type StatusUpdated,
} from '../../contracts/funding.ts';
import { createBatcher } from '../kit/index.ts';
import type { EntityManager, MikroORM } from '../kit/index.ts';
import { carryHeaders, type Trace } from '../kit/index.ts';
import { OUTBOX_ROWS, type CommittedOutboxRow, type OutboxMessage } from '../kit/index.ts';
import type { Application, Payout, Review } from './entities.ts';

export type ApplicationRow = InferEntity<typeof Application>;
export type PayoutRow = InferEntity<typeof Payout>;

/** Another writer changed the application first: re-read and decide again (the worker retries). */
export class StaleApplicationError extends Error {
  override name = 'StaleApplicationError';
}

// X-Request-Id and the trace (`t`, or the caller's): see carryHeaders in kit/tracing.ts.
const headersFor = (requestId: string | undefined, t?: Trace) => carryHeaders(requestId, t);

const INSERT_BATCH = `
  with input as (
    select * from jsonb_to_recordset(?::jsonb) as t(
      id uuid, business_id text, business_name text, contact_email text, amount_minor bigint, currency text,
      term_months int, purpose text, priority text, financials jsonb, bank_account jsonb, history jsonb, created_at timestamptz, owner text)
  ), a as (
    insert into funding.applications (id, business_id, business_name, contact_email, amount_minor, currency, term_months, purpose, priority,
      financials, bank_account, status, history, created_at, updated_at, version, owner)
    select id, business_id, business_name, contact_email, amount_minor, currency, term_months, purpose, priority,
      financials, bank_account, 'processing', history, created_at, created_at, 1, owner from input
    returning id
  ), events as (
    select * from jsonb_to_recordset(?::jsonb) as e(id uuid, application_id uuid, subject text, payload text, headers jsonb)
  )
  insert into kit.outbox (id, subject, payload, headers)
  select e.id, e.subject, e.payload, e.headers from events e join a on a.id = e.application_id
  returning id, subject, payload, headers`;

type Row = Record<string, unknown>;

/** `owner`: the applying principal's sub (a customer reads only its own applications). */
export type ApplicationWriter = { create(req: CreateApplicationRequest, requestId: string, owner?: string): Promise<{ id: string; createdAt: string }> };

/**
 * The POST's write, with group commit (kit/batcher.ts): each application row and its two events
 * (`applications.created`, the first `status.updated`) go in one data-modifying CTE,
 * atomic, and requests arriving while a statement is in flight share the next one, so a
 * burst costs one round trip (and one WAL flush, one relay wake) per batch rather than
 * per application. At low load a batch is one application and nothing waits. The 202
 * leaves only after its batch committed.
 * `const writer = createApplicationWriter(orm, deps.wakeOutbox); const { id } = await writer.create(req, requestId)`
 */
export function createApplicationWriter(orm: MikroORM, wakeOutbox: (committed?: CommittedOutboxRow[]) => void, opts: { maxBatch?: number } = {}): ApplicationWriter {
  // A statement that fails takes its batch along: each is retried alone (all at once, as
  // new applications cannot conflict), so one bad row fails only its own request.
  const write = createBatcher(async (apps: { row: Row; events: Row[] }[]) => {
    wakeOutbox(await orm.em.fork().execute<CommittedOutboxRow[]>(INSERT_BATCH, [JSON.stringify(apps.map((a) => a.row)), JSON.stringify(apps.flatMap((a) => a.events))]));
    return apps.map(() => undefined);
  }, { maxSize: opts.maxBatch ?? 200, isolate: 'parallel' });

  return {
    async create(req, requestId, owner) {
      const id = randomUUID();
      const createdAt = new Date().toISOString();
      const created: ApplicationCreated = {
        applicationId: id, businessId: req.businessId, amount: req.amount, currency: req.currency, termMonths: req.termMonths,
        priority: req.priority ?? 'normal', financials: req.financials, timestamp: createdAt,
      };
      const status: StatusUpdated = { applicationId: id, status: 'processing', previousStatus: null, version: 1, timestamp: createdAt, metadata: {} };
      const headers = headersFor(requestId) ?? {};
      const row: Row = {
        id, business_id: req.businessId, business_name: req.businessName, contact_email: req.contactEmail,
        amount_minor: Math.round(req.amount * 100), currency: req.currency, term_months: req.termMonths, purpose: req.purpose ?? '', priority: req.priority ?? 'normal',
        financials: req.financials, bank_account: { iban: normalizeIban(req.bankAccount.iban), holderName: req.bankAccount.holderName },
        history: [{ status: 'processing', at: createdAt }], created_at: createdAt, owner: owner ?? null,
      };
      const events: Row[] = [
        { id: randomUUID(), application_id: id, subject: FundingSubjects.applicationCreated, payload: JSON.stringify(created), headers },
        { id: randomUUID(), application_id: id, subject: FundingSubjects.statusUpdated, payload: JSON.stringify(status), headers },
      ];
      await write({ row, events });
      return { id, createdAt };
    },
  };
}

export type TransitionExtra = {
  riskScore?: number;
  probabilityOfDefault?: number;
  riskDecision?: string;
  riskReasons?: string[];
  modelVersion?: string;
  scoringError?: string | null;
  review?: Review;
};

const EXTRA_COLUMNS: Record<keyof TransitionExtra, { column: string; json?: true }> = {
  riskScore: { column: 'risk_score' },
  probabilityOfDefault: { column: 'probability_of_default' },
  riskDecision: { column: 'risk_decision' },
  riskReasons: { column: 'risk_reasons', json: true },
  modelVersion: { column: 'model_version' },
  scoringError: { column: 'scoring_error' },
  review: { column: 'review', json: true },
};

export type Transition = {
  id: string;
  from: ApplicationStatus;
  to: ApplicationStatus;
  /** The version the caller read; the update fails with StaleApplicationError if it moved on. Without it, `from` alone guards. */
  version?: number;
  set?: TransitionExtra;
  /** Further events that must leave with this change (status.updated is added here). */
  events?: OutboxMessage[];
  /** More data-modifying SQL for the same statement, as CTE bodies; they may select `from u` (the updated row) so they run only if the transition does. */
  also?: { sql: string; params: unknown[] }[];
  reason?: string;
  requestId?: string;
  metadata?: Record<string, unknown>;
  /** Return the updated row too (WorkRow), so a worker that moves first needs no read before it. */
  row?: boolean;
};

/**
 * Move an application to its next status: the guarded UPDATE, its outbox rows and any
 * `also` statements in one SQL statement (a data-modifying CTE is atomic), because a
 * round trip costs more than the work on this platform and a transition happens four
 * or five times per application. `await transition(em, { id, from: 'processing', to: 'risk_scoring', version })`
 */
export async function transition(em: EntityManager, t: Transition): Promise<{ version: number; at: string; row?: WorkRow; outbox: CommittedOutboxRow[] }> {
  const at = new Date().toISOString();
  const sets = ['status = ?', 'version = version + 1', 'updated_at = ?', 'history = history || ?::jsonb'];
  const params: unknown[] = [t.to, at, JSON.stringify([{ status: t.to, at, ...(t.reason ? { reason: t.reason } : {}) }])];
  for (const [key, value] of Object.entries(t.set ?? {}) as [keyof TransitionExtra, unknown][]) {
    if (value === undefined) continue;
    const col = EXTRA_COLUMNS[key];
    sets.push(`${col.column} = ?${col.json ? '::jsonb' : ''}`);
    params.push(col.json ? JSON.stringify(value) : value);
  }
  params.push(t.id, t.from);
  if (t.version !== undefined) params.push(t.version);
  const also = t.also ?? [];
  for (const a of also) params.push(...a.params);

  const status = statusEvent(t.id, t.from, t.to, at, t.reason, t.metadata);
  const headers = JSON.stringify(headersFor(t.requestId) ?? {});
  const rows = [
    ...(t.events ?? []).map((e) => [randomUUID(), e.subject, JSON.stringify(e.data), e.headers ? JSON.stringify(e.headers) : headers, false]),
    [randomUUID(), FundingSubjects.statusUpdated, JSON.stringify(status), headers, true],
  ];
  for (const r of rows) params.push(...r);

  const result = await em.execute<(CommittedOutboxRow & { version: number; row?: Record<string, any> })[]>(
    `with u as (
       update funding.applications set ${sets.join(', ')}
        where id = ? and status = ?${t.version !== undefined ? ' and version = ?' : ''}
       returning ${t.row ? WORK_COLUMNS : 'version'})
     ${also.map((a, i) => `, a${i} as (${a.sql})`).join('\n')}
     insert into kit.outbox (id, subject, payload, headers)
     select v.id, v.subject,
            case when v.is_status then jsonb_set(v.payload::jsonb, '{version}', to_jsonb(u.version))::text else v.payload end,
            v.headers
       from u cross join (values ${rows.map(() => '(?::uuid, ?, ?, ?::jsonb, ?::boolean)').join(', ')}) as v (id, subject, payload, headers, is_status)
     returning id, subject, payload, headers, (select version from u) as version${t.row ? ', (select to_jsonb(u) from u) as row' : ''}`,
    params);
  if (!result.length) throw new StaleApplicationError(`application ${t.id} is no longer ${t.from}${t.version !== undefined ? ` at version ${t.version}` : ''}`);
  // Inside a transaction its commit wakes the outbox relay (as enqueue() arranges);
  // outside one, the caller hands `outbox` (the rows as committed) to deps.wakeOutbox().
  const trx = em.getTransactionContext();
  if (trx) (trx as Record<symbol, unknown>)[OUTBOX_ROWS] = true;
  const row = result[0]!.row;
  const outbox = result.map((r) => ({ id: r.id, subject: r.subject, payload: r.payload, headers: r.headers }));
  return { version: Number(result[0]!.version), at, outbox, ...(row ? { row: toWorkRow(row) } : {}) };
}

// The status event's version is the row's new one, filled in by the statement that
// makes the change (jsonb_set of `{version}` from the UPDATE's RETURNING).
function statusEvent(id: string, from: ApplicationStatus, to: ApplicationStatus, at: string, reason?: string, metadata?: Record<string, unknown>): Omit<StatusUpdated, 'version'> {
  return { applicationId: id, status: to, previousStatus: from, timestamp: at, metadata: { ...(reason ? { reason } : {}), ...metadata } };
}

/**
 * The same change for many applications in one statement: every one still in `from`
 * moves to `to` (version bumped, history appended) with its own events and its
 * `status.updated`; one that moved on already is left alone and gets no events. For
 * the high-volume hops (the router), where a statement per application was most of
 * the work. Returns the ids that moved and the outbox rows written.
 * `await transitionMany(em, { from: 'processing', to: 'risk_scoring', items: [{ id, requestId, events: [scoringRequest(id, 'new')] }] })`
 */
export async function transitionMany(
  em: EntityManager, t: { from: ApplicationStatus; to: ApplicationStatus; items: { id: string; requestId?: string; trace?: Trace; events?: OutboxMessage[] }[] },
): Promise<{ moved: Set<string>; outbox: CommittedOutboxRow[] }> {
  if (!t.items.length) return { moved: new Set(), outbox: [] };
  const at = new Date().toISOString();
  const events = t.items.flatMap((i) => {
    const headers = headersFor(i.requestId, i.trace) ?? {};
    return [
      ...(i.events ?? []).map((e) => ({ id: randomUUID(), application_id: i.id, subject: e.subject, payload: JSON.stringify(e.data), headers: e.headers ?? headers, is_status: false })),
      { id: randomUUID(), application_id: i.id, subject: FundingSubjects.statusUpdated, payload: JSON.stringify(statusEvent(i.id, t.from, t.to, at)), headers, is_status: true },
    ];
  });
  const rows = await em.execute<{ id: string; subject: string | null; payload: string; headers: Record<string, string> | null }[]>(
    `with u as (
       update funding.applications a
          set status = ?, version = a.version + 1, updated_at = ?, history = a.history || ?::jsonb
        where a.id = any(?::uuid[]) and a.status = ?
       returning a.id, a.version
     ), ev as (
       select * from jsonb_to_recordset(?::jsonb) as e(id uuid, application_id uuid, subject text, payload text, headers jsonb, is_status boolean)
     ), o as (
       insert into kit.outbox (id, subject, payload, headers)
       select ev.id, ev.subject,
              case when ev.is_status then jsonb_set(ev.payload::jsonb, '{version}', to_jsonb(u.version))::text else ev.payload end,
              ev.headers
         from ev join u on u.id = ev.application_id
       returning id, subject, payload, headers
     )
     select u.id::text as id, null::text as subject, null::text as payload, null::jsonb as headers from u
     union all select o.id::text, o.subject, o.payload, o.headers from o`,
    [t.to, at, JSON.stringify([{ status: t.to, at }]), `{${t.items.map((i) => i.id).join(',')}}`, t.from, JSON.stringify(events)]);
  const outbox = rows.filter((r) => r.subject !== null).map((r) => ({ id: r.id, subject: r.subject!, payload: r.payload, headers: r.headers }));
  const trx = em.getTransactionContext();
  if (trx && outbox.length) (trx as Record<symbol, unknown>)[OUTBOX_ROWS] = true;
  // Outside a transaction the rows are committed: the caller hands `outbox` to deps.wakeOutbox().
  return { moved: new Set(rows.filter((r) => r.subject === null).map((r) => r.id)), outbox };
}

/** The `disbursement.requested` command for an application. */
export function disbursementRequest(row: { id: string; amountMinor: number; currency: string }, reason: DisbursementRequested['reason']): OutboxMessage {
  const data: DisbursementRequested = { applicationId: row.id, amountMinor: row.amountMinor, currency: row.currency, requestedAt: new Date().toISOString(), reason };
  return { subject: FundingSubjects.disbursementRequested, data };
}

/** The `risk.scoring.requested` command for an application, on its priority's lane; with `inputs`, the scorer need not read the row. */
export function scoringRequest(id: string, reason: 'new' | 'reconcile', priority: Priority = 'normal', inputs?: ScoringInputs): OutboxMessage {
  const data: RiskScoringRequested = { applicationId: id, requestedAt: new Date().toISOString(), reason, ...(inputs ? { inputs } : {}) };
  return { subject: scoringSubject(priority), data };
}

/** The scoring inputs an `applications.created` event carries, or undefined for an event from before it carried them. */
export function inputsOf(e: ApplicationCreated): ScoringInputs | undefined {
  if (!e.financials) return undefined;
  return { businessId: e.businessId, amountMinor: Math.round(e.amount * 100), currency: e.currency, termMonths: e.termMonths, financials: e.financials };
}

/** The slice of the row the workers decide on, read fresh (no identity map). */
export type WorkRow = {
  id: string; businessId: string; status: ApplicationStatus; version: number; amountMinor: number; currency: string; termMonths: number; purpose: string;
  financials: { annualRevenue: number; yearsTrading: number; existingDebt: number }; bankAccount: { iban: string; holderName: string };
  scoringError: string | null;
};

const WORK_COLUMNS = 'id, business_id, status, version, amount_minor, currency, term_months, purpose, financials, bank_account, scoring_error';

/** Read what a worker needs about an application. `const row = await loadWorkRow(em, id)` */
export async function loadWorkRow(em: EntityManager, id: string): Promise<WorkRow | null> {
  const [r] = await em.execute<Record<string, any>[]>(`select ${WORK_COLUMNS} from funding.applications where id = ?`, [id]);
  return r ? toWorkRow(r) : null;
}

function toWorkRow(r: Record<string, any>): WorkRow {
  return {
    id: r.id, businessId: r.business_id, status: r.status, version: Number(r.version), amountMinor: Number(r.amount_minor), currency: r.currency.trim(),
    termMonths: Number(r.term_months), purpose: r.purpose, financials: r.financials, bankAccount: r.bank_account, scoringError: r.scoring_error ?? null,
  };
}

/** The contract's full view of an application. */
export function toApplicationView(a: ApplicationRow, payout: PayoutRow | null) {
  const decision = a.review?.decision ?? (a.riskDecision as string | null | undefined) ?? null;
  return {
    id: a.id,
    businessId: a.businessId,
    businessName: a.businessName,
    contactEmail: a.contactEmail,
    amount: a.amountMinor / 100,
    currency: a.currency.trim(),
    termMonths: a.termMonths,
    purpose: a.purpose || null,
    priority: a.priority ?? 'normal',
    financials: a.financials,
    bankAccount: a.bankAccount,
    status: a.status,
    riskScore: a.riskScore ?? null,
    probabilityOfDefault: a.probabilityOfDefault ?? null,
    decision,
    riskDecision: a.riskDecision ?? null,
    decisionReasons: a.riskReasons ?? [],
    modelVersion: a.modelVersion ?? null,
    scoringError: a.scoringError ?? null,
    review: a.review ?? null,
    disbursement: payout
      ? {
          status: payout.state,
          payoutId: payout.gatewayPayoutId ?? null,
          amount: payout.amountMinor / 100,
          amountMinor: payout.amountMinor,
          currency: payout.currency.trim(),
          failureReason: payout.failureReason ?? null,
          attempts: payout.attempts,
          createdAt: payout.createdAt.toISOString(),
          updatedAt: payout.updatedAt.toISOString(),
        }
      : null,
    history: a.history.map((h) => ({ status: h.status, at: h.at, reason: h.reason ?? null })),
    createdAt: a.createdAt.toISOString(),
    updatedAt: a.updatedAt.toISOString(),
    version: a.version,
  };
}
