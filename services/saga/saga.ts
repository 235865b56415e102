// The order saga as a pure state machine: (state, input, now) → (next state, messages).
// The orchestrator persists the next state and the messages in one transaction
// (kit outbox), so a crash between the two cannot happen, and a version check
// keeps two replicas from both advancing one saga.
//
// Forward steps:  RESERVING → CHARGING → SHIPPING → DONE
//   order status:  PENDING  → STOCK_RESERVED → PAID → SHIPPED
// On failure the saga goes COMPENSATING (the order keeps its last status) until
// every compensation has answered, then FAILED with the reason: a FAILED order
// holds no stock and no un-refunded charge (CONTRACTS.md).
//
// Each forward step has a deadline. When it passes, the step's command is sent
// again (every command is idempotent per order) with a growing deadline; after
// `maxStepAttempts` the step counts as failed and is compensated. Replies that
// arrive late, after the saga moved on, are answered with the compensation they
// call for (a reservation after a failure is released, a charge refunded).
import type { FailureReason, SagaReply } from '../../contracts/commerce.ts';
import { Subjects } from '../../contracts/commerce.ts';
import type { OrderCreated } from '../../contracts/orders.ts';
import { backoff, type OutboxMessage } from '../kit/index.ts';

export type Step = 'RESERVING' | 'CHARGING' | 'SHIPPING' | 'DONE' | 'COMPENSATING' | 'FAILED';
export type OrderStatus = 'PENDING' | 'STOCK_RESERVED' | 'PAID' | 'SHIPPED' | 'FAILED';
export type Compensation = 'release' | 'refund' | 'cancel-shipment';
export type History = { status: string; at: string; reason: string | null };

export type Saga = {
  id: string;
  orderId: string;
  email: string;
  phone: string | null;
  /** The order's payment token as intake sealed it; the saga never opens it. */
  paymentTokenSealed: string | null;
  /** A clear token, only in sagas started from an event published before sealing. */
  paymentToken?: string | null;
  items: { sku: string; quantity: number }[];
  step: Step;
  status: OrderStatus;
  version: number;
  attempts: number;
  /** Epoch ms by which the current forward step must have answered; null when none is awaited. */
  deadline: number | null;
  failureReason: FailureReason | null;
  failureDetail: string | null;
  totalCents: number | null;
  currency: string | null;
  chargeId: string | null;
  /** What the refund compensation gave back (its reply's amount); absent until it answered, and in sagas stored before it existed. */
  refundedCents?: number;
  trackingNumber: string | null;
  pending: Compensation[];
  history: History[];
};

export type SagaConfig = { stepTimeoutMs: number; maxStepAttempts: number; maxStepTimeoutMs: number };
export type Decision = { saga: Saga; out: OutboxMessage[] };

const commandFor = (s: Saga): OutboxMessage => {
  switch (s.step) {
    case 'RESERVING': return { subject: Subjects.reserve, data: { orderUuid: s.id, items: s.items } };
    case 'CHARGING': {
      // A saga from before sealing still holds its token in clear: it goes out as the
      // legacy `source`, which payments still accepts, so the upgrade loses no charge.
      const token = s.paymentTokenSealed ? { sealedSource: s.paymentTokenSealed } : { source: s.paymentToken ?? null };
      return { subject: Subjects.charge, data: { orderUuid: s.id, amount: s.totalCents ?? 0, currency: s.currency ?? 'USD', ...token } };
    }
    case 'SHIPPING': return { subject: Subjects.schedule, data: { orderUuid: s.id, orderId: s.orderId, items: s.items } };
    default: throw new Error(`no command for step ${s.step}`);
  }
};

const compensationCommand = (c: Compensation, id: string): OutboxMessage => ({
  subject: c === 'release' ? Subjects.release : c === 'refund' ? Subjects.refund : Subjects.cancelShipment,
  data: { orderUuid: id },
});

/** The status event orders and notifications follow. */
export function statusEvent(s: Saga, now: number): OutboxMessage {
  return {
    subject: Subjects.status(s.status),
    data: {
      id: s.id, orderId: s.orderId, email: s.email, phone: s.phone, status: s.status,
      failureReason: s.status === 'FAILED' ? s.failureReason : null, trackingNumber: s.trackingNumber,
      totalCents: s.totalCents, currency: s.currency, refundedCents: s.refundedCents ?? null,
      history: s.history, version: s.version, at: new Date(now).toISOString(),
    },
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

function advance(s: Saga, patch: Partial<Saga>, now: number, cfg: SagaConfig, extra: OutboxMessage[] = []): Decision {
  const next: Saga = { ...s, ...patch, version: s.version + 1 };
  // A clear token (a saga from before sealing) is kept no longer than the charge needs it.
  if (next.paymentToken !== undefined && next.step !== 'RESERVING' && next.step !== 'CHARGING') delete next.paymentToken;
  const out = [...extra];
  if (next.status !== s.status) {
    next.history = [...s.history, { status: next.status, at: iso(now), reason: next.status === 'FAILED' ? next.failureReason : null }];
    out.push(statusEvent(next, now));
  }
  if (['RESERVING', 'CHARGING', 'SHIPPING'].includes(next.step) && next.step !== s.step) {
    next.attempts = 0;
    next.deadline = now + cfg.stepTimeoutMs;
    out.unshift(commandFor(next));
  } else if (!['RESERVING', 'CHARGING', 'SHIPPING'].includes(next.step)) {
    next.deadline = null;
  }
  return { saga: next, out };
}

/** Start compensating (or fail at once when nothing needs undoing). */
function compensate(s: Saga, reason: FailureReason, detail: string, comps: Compensation[], now: number, cfg: SagaConfig): Decision {
  const pending = [...new Set(comps)];
  if (!pending.length) return advance(s, { step: 'FAILED', status: 'FAILED', failureReason: reason, failureDetail: detail, pending: [] }, now, cfg);
  return advance(s, { step: 'COMPENSATING', failureReason: reason, failureDetail: detail, pending }, now, cfg, pending.map((c) => compensationCommand(c, s.id)));
}

function compensated(s: Saga, c: Compensation, now: number, cfg: SagaConfig): Decision | null {
  if (s.step !== 'COMPENSATING' || !s.pending.includes(c)) return null;
  const pending = s.pending.filter((p) => p !== c);
  if (pending.length) return advance(s, { pending }, now, cfg);
  return advance(s, { pending, step: 'FAILED', status: 'FAILED' }, now, cfg);
}

/** A new saga for an accepted order; its first command is the reservation. `startSaga(event, Date.now(), cfg)` */
export function startSaga(o: OrderCreated, now: number, cfg: SagaConfig): Decision {
  const s: Saga = {
    id: o.id, orderId: o.orderId, email: o.email, phone: o.phone ?? null,
    paymentTokenSealed: o.paymentTokenSealed ?? null, ...(o.paymentToken ? { paymentToken: o.paymentToken } : {}), items: o.items,
    step: 'RESERVING', status: 'PENDING', version: 1, attempts: 0, deadline: now + cfg.stepTimeoutMs,
    failureReason: null, failureDetail: null, totalCents: null, currency: null, chargeId: null, trackingNumber: null,
    pending: [], history: [{ status: 'PENDING', at: o.createdAt, reason: null }],
  };
  return { saga: s, out: [commandFor(s)] };
}

/** React to a reply; null when it changes nothing (a duplicate, or a reply for a step long past). */
export function onReply(s: Saga, r: SagaReply, now: number, cfg: SagaConfig): Decision | null {
  const late = s.step === 'COMPENSATING' || s.step === 'FAILED';
  switch (r.type) {
    case 'reserved': {
      if (late) {
        // Stock reserved for an order that failed meanwhile: give it back (release is idempotent).
        return { saga: s, out: [compensationCommand('release', s.id)] };
      }
      if (s.step !== 'RESERVING') return null;
      const total = r.lines.reduce((sum, l) => sum + l.priceCents * l.quantity, 0);
      const currencies = [...new Set(r.lines.map((l) => l.currency))];
      if (currencies.length > 1) {
        return compensate({ ...s, totalCents: total, currency: null }, 'PAYMENT_FAILED', `items in several currencies (${currencies.join(', ')}) cannot be charged together`, ['release'], now, cfg);
      }
      return advance(s, { step: 'CHARGING', status: 'STOCK_RESERVED', totalCents: total, currency: currencies[0] ?? 'USD' }, now, cfg);
    }
    case 'rejected': {
      if (s.step !== 'RESERVING') return null;
      const reason: FailureReason = r.reason === 'UNKNOWN_SKU' ? 'UNKNOWN_SKU' : 'OUT_OF_STOCK';
      return compensate(s, reason, `${r.reason}: ${r.skus.join(', ')}`, [], now, cfg);
    }
    case 'charged': {
      if (s.step === 'CHARGING') return advance(s, { step: 'SHIPPING', status: 'PAID', chargeId: r.chargeId }, now, cfg);
      if (s.step === 'COMPENSATING') {
        if (s.pending.includes('refund')) return null;
        return advance(s, { pending: [...s.pending, 'refund'] }, now, cfg, [compensationCommand('refund', s.id)]);
      }
      // A charge that landed after the order failed: refund it (the refund is idempotent per charge).
      if (s.step === 'FAILED' && r.amount > 0) return { saga: s, out: [compensationCommand('refund', s.id)] };
      return null;
    }
    case 'payment-failed': {
      if (s.step !== 'CHARGING') return null;
      if (r.reason === 'PAYMENT_DECLINED') return compensate(s, 'PAYMENT_DECLINED', r.detail, ['release'], now, cfg);
      return compensate(s, 'PAYMENT_FAILED', r.detail, r.reason === 'CANCELLED' ? ['refund', 'release'] : ['release'], now, cfg);
    }
    case 'scheduled': {
      if (s.step !== 'SHIPPING') return null;
      return advance(s, { step: 'DONE', status: 'SHIPPED', trackingNumber: r.trackingNumber }, now, cfg, [{ subject: Subjects.deduct, data: { orderUuid: s.id } }]);
    }
    case 'shipping-failed': {
      if (s.step !== 'SHIPPING') return null;
      return compensate(s, 'SHIPPING_FAILED', r.detail, ['refund', 'release'], now, cfg);
    }
    case 'released': return compensated(s, 'release', now, cfg);
    case 'refunded': return compensated({ ...s, refundedCents: r.amount }, 'refund', now, cfg);
    case 'shipment-cancelled': return compensated(s, 'cancel-shipment', now, cfg);
  }
}

/** The current step's deadline passed: ask again, or give the step up and compensate. */
export function onTimeout(s: Saga, now: number, cfg: SagaConfig): Decision | null {
  if (s.deadline === null || s.deadline > now) return null;
  if (s.step !== 'RESERVING' && s.step !== 'CHARGING' && s.step !== 'SHIPPING') return null;
  if (s.attempts + 1 < cfg.maxStepAttempts) {
    const attempts = s.attempts + 1;
    const wait = backoff({ baseMs: cfg.stepTimeoutMs, maxMs: cfg.maxStepTimeoutMs, jitter: 0 }, attempts + 1);
    return { saga: { ...s, attempts, deadline: now + wait, version: s.version + 1 }, out: [commandFor(s)] };
  }
  const detail = `no answer to ${s.step.toLowerCase()} after ${cfg.maxStepAttempts} attempts`;
  if (s.step === 'RESERVING') return compensate(s, 'OUT_OF_STOCK', detail, ['release'], now, cfg);
  if (s.step === 'CHARGING') return compensate(s, 'PAYMENT_FAILED', detail, ['refund', 'release'], now, cfg);
  return compensate(s, 'SHIPPING_FAILED', detail, ['cancel-shipment', 'refund', 'release'], now, cfg);
}

export type { SagaReply };
