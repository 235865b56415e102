// Every NATS subject a service publishes to a stream, in one table: its stream, the zod
// schema its payload must fit, and which payload fields hold business keys (an order's
// `id`/`orderUuid`, the client's `orderId`, an application id, a lending order id, a
// `loanId`). The DLQ admin API checks replacement payloads and filters by `key` with it;
// an AsyncAPI document can be generated from it.
import type { ZodType } from 'zod';
import {
  ChargeCommand, INVENTORY_STREAM, OrderRef, PAYMENTS_STREAM, ReserveCommand, SAGA_REPLIES_STREAM, SAGA_STREAM,
  SagaReply, SagaStatusEvent, ScheduleCommand, SHIPPING_STREAM, Subjects,
} from './commerce.ts';
import {
  ApplicationCreated, DisbursementCompleted, DisbursementRequested, FUNDING_EVENTS_STREAM, FUNDING_WORK_STREAM,
  FundingSubjects, RiskScoringCompleted, RiskScoringRequested, StatusUpdated,
} from './funding.ts';
import { BatchCommand, ItemCommand, LENDING_BATCHES_STREAM, LENDING_ITEMS_STREAM, LendingSubjects } from './lending.ts';
import { OrderCreated, ORDERS_STREAM, OrderSubjects } from './orders.ts';
import { subjectMatches } from './subjects.ts';

export { subjectMatches };

export type MessageContract = {
  /** A subject, or a pattern with `*` (one token) and `>` (the rest), as NATS reads them. */
  subject: string;
  stream: string;
  schema: ZodType;
  /** Top-level payload fields whose string values are business keys. */
  keys: readonly string[];
};

const m = (subject: string, stream: string, schema: ZodType, keys: readonly string[]): MessageContract => ({ subject, stream, schema, keys });
const order = ['orderUuid'] as const;

export const MessageContracts: readonly MessageContract[] = [
  m(OrderSubjects.created, ORDERS_STREAM, OrderCreated, ['id', 'orderId']),

  m(Subjects.reserve, INVENTORY_STREAM, ReserveCommand, order),
  m(Subjects.release, INVENTORY_STREAM, OrderRef, order),
  m(Subjects.deduct, INVENTORY_STREAM, OrderRef, order),
  m(Subjects.charge, PAYMENTS_STREAM, ChargeCommand, order),
  m(Subjects.refund, PAYMENTS_STREAM, OrderRef, order),
  m(Subjects.schedule, SHIPPING_STREAM, ScheduleCommand, ['orderUuid', 'orderId']),
  m(Subjects.cancelShipment, SHIPPING_STREAM, OrderRef, order),
  ...[Subjects.reserved, Subjects.rejected, Subjects.released, Subjects.charged, Subjects.paymentFailed, Subjects.refunded,
    Subjects.scheduled, Subjects.shippingFailed, Subjects.shipmentCancelled].map((s) => m(s, SAGA_REPLIES_STREAM, SagaReply, order)),
  m('saga.step.*', SAGA_STREAM, SagaStatusEvent, ['id', 'orderId']),
  m('saga.done.*', SAGA_STREAM, SagaStatusEvent, ['id', 'orderId']),

  m(LendingSubjects.batchReserve, LENDING_BATCHES_STREAM, BatchCommand, ['orderId']),
  m(LendingSubjects.batchInvest, LENDING_BATCHES_STREAM, BatchCommand, ['orderId']),
  m(LendingSubjects.itemReserve, LENDING_ITEMS_STREAM, ItemCommand, ['orderId', 'loanId']),
  m(LendingSubjects.itemInvest, LENDING_ITEMS_STREAM, ItemCommand, ['orderId', 'loanId']),

  m(FundingSubjects.applicationCreated, FUNDING_EVENTS_STREAM, ApplicationCreated, ['applicationId']),
  m(FundingSubjects.riskScoringRequested, FUNDING_WORK_STREAM, RiskScoringRequested, ['applicationId']),
  m(FundingSubjects.riskScoringRequestedHigh, FUNDING_WORK_STREAM, RiskScoringRequested, ['applicationId']),
  m(FundingSubjects.riskScoringCompleted, FUNDING_EVENTS_STREAM, RiskScoringCompleted, ['applicationId']),
  m(FundingSubjects.disbursementRequested, FUNDING_WORK_STREAM, DisbursementRequested, ['applicationId']),
  m(FundingSubjects.disbursementCompleted, FUNDING_EVENTS_STREAM, DisbursementCompleted, ['applicationId']),
  m(FundingSubjects.statusUpdated, FUNDING_EVENTS_STREAM, StatusUpdated, ['applicationId']),
];

/** Fields read as keys on a subject the table does not know (a test queue, a newer publisher). */
export const DEFAULT_KEY_FIELDS: readonly string[] = ['id', 'orderUuid', 'orderId', 'applicationId', 'loanId'];

/** The contract of a concrete subject, if the table has one. `contractFor('orders.created')?.schema` */
export function contractFor(subject: string): MessageContract | undefined {
  return MessageContracts.find((c) => subjectMatches(c.subject, subject));
}

/**
 * The business keys a payload carries, read from its raw JSON (a message that failed its
 * schema still has them). `businessKeys('lending.items.reserve', { orderId: 'o1', loanId: 'L1' }) // ['o1', 'L1']`
 */
export function businessKeys(subject: string, data: unknown): string[] {
  if (!data || typeof data !== 'object' || Array.isArray(data)) return [];
  const fields = contractFor(subject)?.keys ?? DEFAULT_KEY_FIELDS;
  const out: string[] = [];
  for (const f of fields) {
    const v = (data as Record<string, unknown>)[f];
    if (typeof v === 'string' && v.length) out.push(v);
  }
  return out;
}
