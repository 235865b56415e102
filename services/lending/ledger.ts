// The lending ledger in SQL: orders, their items, and which order holds which loan.
//
// Every change of an item's state moves the item guarded by the state it was read
// in (so two replicas cannot both win) and, in the same transaction, adds the
// number of rows actually moved to the order's counts with one UPDATE that also
// recomputes phase and status (`applyDeltas`). Counts are never read, changed and
// written back. Successes of many items share one transaction (`commitSuccesses`).
//
// Phases: an order starts in `reserve`; the statement that brings `pending` to 0
// (it only ever decreases) flips it to `invest` and, in the same transaction,
// enqueues one `lending.batches.invest` per batch, whose handler enqueues an
// invest command for every reserved item of the batch. An item reserved later (a DLQ
// redrive) finds the order in `invest` and enqueues its own invest command.
//
// Status follows from the counts: IN_PROGRESS while anything is pending or
// reserved; then SUCCESS (all invested), PARTIALLY_INVESTED, or FAILED (none).
// A redriven item that gets reserved reopens a finished order (IN_PROGRESS,
// completedAt null) until its invest ends, and the status is recomputed then.
import { randomUUID } from 'node:crypto';
import {
  LendingFailureReasons, LendingSubjects,
  type CreateLendingOrderRequest, type LendingCounts, type LendingOrderStatus, type LendingOrderView,
} from '../../contracts/lending.ts';
import type { EntityManager, MikroORM } from '../kit/index.ts';
import { carryHeaders, type Trace } from '../kit/index.ts';
import { enqueue, type OutboxMessage } from '../kit/index.ts';

export type ItemState = 'PENDING' | 'RESERVED' | 'INVESTED' | 'FAILED';
export type Phase = 'reserve' | 'invest';

/** A Postgres array literal, so a whole column travels as one parameter. `pgArray(['a', null]) === '{"a",NULL}'` */
export function pgArray(values: readonly (string | number | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : typeof v === 'number' ? String(v) : `"${v.replace(/["\\]/g, '\\$&')}"`)).join(',')}}`;
}

// X-Request-Id and the trace (`t`, or the caller's): see carryHeaders in kit/tracing.ts.
const headersFor = (requestId: string | undefined, t?: Trace) => carryHeaders(requestId, t);

/** Outbox rows in chunks: one multi-row insert is bounded by Postgres's 65,535 parameters. */
async function enqueueAll(em: EntityManager, messages: OutboxMessage[]): Promise<void> {
  for (let i = 0; i < messages.length; i += 2000) await enqueue(em, messages.slice(i, i + 2000));
}

/** Persist an order, its items (one bulk insert) and its batch commands in one transaction. */
export async function createLendingOrder(orm: MikroORM, req: CreateLendingOrderRequest, opts: { batchSize: number; requestId?: string }) {
  const id = randomUUID();
  const total = req.items.length;
  const batches = Math.ceil(total / opts.batchSize);
  const createdAt = new Date();
  await orm.em.fork().transactional(async (em) => {
    await em.execute(
      `insert into lending.orders (id, investor_id, status, phase, total_items, batches, pending, reserved, invested, failed, request_id, created_at, updated_at)
       values (?, ?, 'IN_PROGRESS', 'reserve', ?, ?, ?, 0, 0, 0, ?, ?, ?)`,
      [id, req.investorId, total, batches, total, opts.requestId ?? null, createdAt, createdAt]);
    await em.execute(
      `insert into lending.items (order_id, loan_id, amount, batch_no, state)
       select ?, x.loan_id, x.amount, ((x.n - 1) / ?)::int, 'PENDING'
       from unnest(?::text[], ?::numeric[]) with ordinality as x(loan_id, amount, n)`,
      [id, opts.batchSize, pgArray(req.items.map((i) => i.loanId)), pgArray(req.items.map((i) => i.amount))]);
    await enqueueAll(em, Array.from({ length: batches }, (_, batch) => ({
      subject: LendingSubjects.batchReserve, data: { orderId: id, batch }, headers: headersFor(opts.requestId),
    })));
  });
  return { id, status: 'IN_PROGRESS' as const, totalItems: total, batches, createdAt };
}

type OrderRow = {
  id: string; investor_id: string; status: LendingOrderStatus; phase: Phase; total_items: number; batches: number;
  pending: number; reserved: number; invested: number; failed: number; created_at: Date; completed_at: Date | null;
};

const countsOf = (o: OrderRow): LendingCounts => ({ pending: o.pending, reserved: o.reserved, invested: o.invested, failed: o.failed });

/** The order's summary (no failed items), or null. */
export async function readOrder(em: EntityManager, id: string): Promise<OrderRow | null> {
  const [o] = await em.execute<OrderRow[]>('select * from lending.orders where id = ?', [id]);
  return o ?? null;
}

/** The contract's view of an order. */
export async function orderView(em: EntityManager, id: string): Promise<LendingOrderView | null> {
  const o = await readOrder(em, id);
  if (!o) return null;
  const failed = o.failed
    ? await em.execute<{ loan_id: string; reason: string | null }[]>(
      `select loan_id, reason from lending.items where order_id = ? and state = 'FAILED' order by loan_id`, [id])
    : [];
  return {
    id: o.id, investorId: o.investor_id, status: o.status, totalItems: o.total_items, counts: countsOf(o),
    failedItems: failed.map((f) => ({ loanId: f.loan_id, reason: f.reason ?? 'UNKNOWN' })),
    createdAt: new Date(o.created_at).toISOString(), completedAt: o.completed_at ? new Date(o.completed_at).toISOString() : null,
  };
}

/** What the SSE stream sends. */
export const progressOf = (o: OrderRow) => ({
  id: o.id, status: o.status, totalItems: o.total_items, counts: countsOf(o),
  completedAt: o.completed_at ? new Date(o.completed_at).toISOString() : null,
});

export type OrderAfter = { pending: number; reserved: number; invested: number; failed: number; phase: Phase; status: LendingOrderStatus };
type MoveResult = OrderAfter & { moved: number; flipped: boolean };
type Deltas = Record<ItemState, number>;

const noDeltas = (): Deltas => ({ PENDING: 0, RESERVED: 0, INVESTED: 0, FAILED: 0 });

/**
 * Add item moves to the order's counts and recompute phase and status from the
 * new counts, in one statement (the row lock orders concurrent writers).
 */
async function applyDeltas(em: EntityManager, orderId: string, d: Deltas): Promise<OrderAfter | null> {
  const p = d.PENDING, r = d.RESERVED, i = d.INVESTED, f = d.FAILED;
  const open = '(o.pending + ? > 0 or o.reserved + ? > 0)';
  const [row] = await em.execute<OrderAfter[]>(
    `update lending.orders o set
       pending = o.pending + ?, reserved = o.reserved + ?, invested = o.invested + ?, failed = o.failed + ?,
       phase = case when o.pending + ? = 0 then 'invest' else o.phase end,
       status = case when ${open} then 'IN_PROGRESS'
                     when o.invested + ? = o.total_items then 'SUCCESS'
                     when o.invested + ? > 0 then 'PARTIALLY_INVESTED'
                     else 'FAILED' end,
       completed_at = case when ${open} then null else coalesce(o.completed_at, now()) end,
       updated_at = now()
     where o.id = ?
     returning o.pending, o.reserved, o.invested, o.failed, o.phase, o.status`,
    [p, r, i, f, p, p, r, i, i, p, r, orderId]);
  return row ?? null;
}

/**
 * Move an order's items from one state to another (only those still in `from`)
 * and adjust the order's counts, phase and status by the rows actually moved.
 */
async function moveItems(em: EntityManager, m: {
  orderId: string; from: ItemState; to: ItemState;
  /** `loan_id = ?` or a batch filter. */
  filter: { sql: string; params: unknown[] };
  set?: { sql: string; params: unknown[] };
}): Promise<MoveResult> {
  const set = m.set ? `, ${m.set.sql}` : '';
  const rows = await em.execute<{ n: number }[]>(
    `with moved as (
       update lending.items set state = ?, updated_at = now()${set}
       where order_id = ? and state = ? and ${m.filter.sql}
       returning 1)
     select count(*)::int as n from moved`,
    [m.to, ...(m.set?.params ?? []), m.orderId, m.from, ...m.filter.params]);
  const n = rows[0]?.n ?? 0;
  const d = noDeltas();
  d[m.from] -= n;
  d[m.to] += n;
  const after = n ? await applyDeltas(em, m.orderId, d) : null;
  if (!after) return { moved: 0, pending: -1, reserved: -1, invested: -1, failed: -1, phase: 'reserve', status: 'IN_PROGRESS', flipped: false };
  // pending only decreases, so exactly one statement takes it to 0: this one, if it moved items out of PENDING.
  return { ...after, moved: n, flipped: m.from === 'PENDING' && after.pending === 0 };
}

/** Enqueue an invest command for every reserved item of the order (the phase just flipped). */
// One command per batch, not per item: this runs while the transaction holds the
// order row, which every other item commit of the order waits for; 10,000 outbox
// rows here stalled the whole order for about a second.
async function fanOutInvest(em: EntityManager, orderId: string, requestId: string | undefined, t?: Trace): Promise<number> {
  const rows = await em.execute<{ batch_no: number; n: number }[]>(
    `select batch_no, count(*)::int as n from lending.items where order_id = ? and state = 'RESERVED' group by batch_no order by batch_no`, [orderId]);
  await enqueueAll(em, rows.map((r) => ({ subject: LendingSubjects.batchInvest, data: { orderId, batch: r.batch_no }, headers: headersFor(requestId, t) })));
  return rows.reduce((sum, r) => sum + r.n, 0);
}

/** The invest phase reached this batch: one invest command per reserved item. */
export async function investBatch(em: EntityManager, orderId: string, batch: number, requestId: string | undefined): Promise<number> {
  const rows = await em.execute<{ loan_id: string }[]>(
    `select loan_id from lending.items where order_id = ? and batch_no = ? and state = 'RESERVED' order by loan_id`, [orderId, batch]);
  await enqueueAll(em, rows.map((r) => ({ subject: LendingSubjects.itemInvest, data: { orderId, loanId: r.loan_id }, headers: headersFor(requestId) })));
  return rows.length;
}

/**
 * Claim a batch's loans in our ledger in one statement, fail those another order
 * holds, and enqueue one reserve command per item (failed ones too: their command
 * carries the reason to the DLQ, where a redrive can resume them).
 */
export async function claimBatch(em: EntityManager, orderId: string, batch: number, requestId: string | undefined) {
  const [order] = await em.execute<{ investor_id: string }[]>('select investor_id from lending.orders where id = ?', [orderId]);
  if (!order) return null;
  // Sorted, so two batches claiming overlapping loans lock them in the same order (no deadlock).
  const claimed = await em.execute<{ loan_id: string }[]>(
    `insert into lending.loans (loan_id, order_id, investor_id, status)
     select loan_id, order_id, ?, 'RESERVED' from lending.items
     where order_id = ? and batch_no = ? and state = 'PENDING'
     order by loan_id
     on conflict (loan_id) do update set updated_at = now() where lending.loans.order_id = excluded.order_id
     returning loan_id`, [order.investor_id, orderId, batch]);
  const failed = await moveItems(em, {
    orderId, from: 'PENDING', to: 'FAILED',
    filter: { sql: 'batch_no = ? and loan_id <> all(?::text[])', params: [batch, pgArray(claimed.map((c) => c.loan_id))] },
    set: {
      sql: `failed_phase = 'reserve', reason = coalesce((select case when l.status = 'INVESTED' then ? else ? end
              from lending.loans l where l.loan_id = items.loan_id), ?)`,
      params: [LendingFailureReasons.loanAlreadyInvested, LendingFailureReasons.loanInAnotherOrder, LendingFailureReasons.loanInAnotherOrder],
    },
  });
  if (failed.flipped) await fanOutInvest(em, orderId, requestId);
  const all = await em.execute<{ loan_id: string }[]>('select loan_id from lending.items where order_id = ? and batch_no = ? order by loan_id', [orderId, batch]);
  await enqueueAll(em, all.map((r) => ({ subject: LendingSubjects.itemReserve, data: { orderId, loanId: r.loan_id }, headers: headersFor(requestId) })));
  return { claimed: claimed.length, failed: failed.moved, items: all.length };
}

export type ItemRow = {
  order_id: string; loan_id: string; amount: string; state: ItemState; failed_phase: Phase | null; reason: string | null;
  ambiguous: boolean; failures: number; investor_id: string; phase: Phase;
};

const ITEM_COLUMNS = `i.order_id, i.loan_id, i.amount::text as amount, i.state, i.failed_phase, i.reason, i.ambiguous, i.failures, o.investor_id, o.phase`;

export type ItemKey = { orderId: string; loanId: string };
export const itemKey = (k: ItemKey) => `${k.orderId}/${k.loanId}`;

/** Many items in one query, keyed by `itemKey`. */
export async function readItems(em: EntityManager, keys: ItemKey[]): Promise<Map<string, ItemRow>> {
  const rows = await em.execute<ItemRow[]>(
    `select ${ITEM_COLUMNS}
     from unnest(?::uuid[], ?::text[]) as x(order_id, loan_id)
     join lending.items i on i.order_id = x.order_id and i.loan_id = x.loan_id
     join lending.orders o on o.id = i.order_id`,
    [pgArray(keys.map((k) => k.orderId)), pgArray(keys.map((k) => k.loanId))]);
  return new Map(rows.map((r) => [itemKey({ orderId: r.order_id, loanId: r.loan_id }), r]));
}

export type Success = ItemKey & { from: ItemState; to: 'RESERVED' | 'INVESTED'; transactionCode: string | null; requestId?: string; trace?: Trace };

/**
 * Record T24 successes of many items in one transaction: one statement moves the
 * items (guarded by the state each was read in), one per order moves its counts,
 * and the invest commands the moves call for are enqueued. Returns the keys moved.
 */
export async function commitSuccesses(em: EntityManager, list: Success[], log?: { info(o: object, msg: string): void }): Promise<Set<string>> {
  const moved = await em.execute<{ order_id: string; loan_id: string; from_state: ItemState; to_state: ItemState }[]>(
    `update lending.items i set
       state = x.to_state, ambiguous = false, reason = null, failed_phase = null, updated_at = now(),
       reserve_tx = case when x.to_state = 'RESERVED' then coalesce(x.code, i.reserve_tx) else i.reserve_tx end,
       invest_tx = case when x.to_state = 'INVESTED' then coalesce(x.code, i.invest_tx) else i.invest_tx end
     from unnest(?::uuid[], ?::text[], ?::text[], ?::text[], ?::text[]) as x(order_id, loan_id, from_state, to_state, code)
     where i.order_id = x.order_id and i.loan_id = x.loan_id and i.state = x.from_state
     returning i.order_id, i.loan_id, x.from_state, x.to_state`,
    [pgArray(list.map((s) => s.orderId)), pgArray(list.map((s) => s.loanId)), pgArray(list.map((s) => s.from)),
      pgArray(list.map((s) => s.to)), pgArray(list.map((s) => s.transactionCode))]);
  const byOrder = new Map<string, typeof moved>();
  for (const m of moved) byOrder.set(m.order_id, [...(byOrder.get(m.order_id) ?? []), m]);
  // Successes of several deliveries commit together: each order's events carry its own item's trace.
  const requestIds = new Map(list.map((s) => [s.orderId, s.requestId]));
  const traces = new Map(list.map((s) => [s.orderId, s.trace]));
  // Sorted, so two replicas' flushes lock order rows in the same order.
  for (const orderId of [...byOrder.keys()].sort()) {
    const rows = byOrder.get(orderId)!;
    const d = noDeltas();
    for (const r of rows) { d[r.from_state]--; d[r.to_state]++; }
    const after = await applyDeltas(em, orderId, d);
    if (!after) continue;
    const requestId = requestIds.get(orderId);
    if (d.PENDING < 0 && after.pending === 0) {
      const n = await fanOutInvest(em, orderId, requestId, traces.get(orderId));
      log?.info({ orderId, reserved: n, failed: after.failed }, 'lending order: every item reserved or failed; invest phase started');
    } else if (after.phase === 'invest') {
      // Reserved after the invest phase began (a redrive): each is invested on its own.
      const late = rows.filter((r) => r.to_state === 'RESERVED');
      await enqueueAll(em, late.map((r) => ({ subject: LendingSubjects.itemInvest, data: { orderId, loanId: r.loan_id }, headers: headersFor(requestId, traces.get(orderId)) })));
    }
    if (after.status !== 'IN_PROGRESS') log?.info({ orderId, status: after.status, invested: after.invested, failed: after.failed }, 'lending order finished');
  }
  const invested = moved.filter((m) => m.to_state === 'INVESTED');
  if (invested.length) {
    await em.execute(
      `update lending.loans l set status = 'INVESTED', updated_at = now()
       from unnest(?::uuid[], ?::text[]) as x(order_id, loan_id)
       where l.loan_id = x.loan_id and l.order_id = x.order_id`,
      [pgArray(invested.map((m) => m.order_id)), pgArray(invested.map((m) => m.loan_id))]);
  }
  return new Set(moved.map((m) => itemKey({ orderId: m.order_id, loanId: m.loan_id })));
}

/** Take the loan for this order in our ledger again (a failed item resuming). Null when it is ours; else why not. */
export async function reclaimLoan(em: EntityManager, item: ItemRow): Promise<string | null> {
  const got = await em.execute(
    `insert into lending.loans (loan_id, order_id, investor_id, status) values (?, ?, ?, 'RESERVED')
     on conflict (loan_id) do update set updated_at = now() where lending.loans.order_id = excluded.order_id
     returning 1`, [item.loan_id, item.order_id, item.investor_id]);
  if (got.length) return null;
  const [holder] = await em.execute<{ status: string }[]>('select status from lending.loans where loan_id = ?', [item.loan_id]);
  return holder?.status === 'INVESTED' ? LendingFailureReasons.loanAlreadyInvested : LendingFailureReasons.loanInAnotherOrder;
}

const itemFilter = (loanId: string) => ({ sql: 'loan_id = ?', params: [loanId] });

/** Failed for good (until a redrive): counts follow, the ledger lets the loan go. */
export async function markFailed(em: EntityManager, item: ItemRow, phase: Phase, reason: string, requestId: string | undefined): Promise<void> {
  const set = { sql: 'failed_phase = ?, reason = ?, ambiguous = false', params: [phase, reason] };
  if (item.state === 'FAILED') {
    // A redrive that failed again: same counts, fresh reason.
    await em.execute(`update lending.items set failed_phase = ?, reason = ?, ambiguous = false, updated_at = now() where order_id = ? and loan_id = ? and state = 'FAILED'`,
      [phase, reason, item.order_id, item.loan_id]);
  } else {
    const r = await moveItems(em, { orderId: item.order_id, from: item.state, to: 'FAILED', filter: itemFilter(item.loan_id), set });
    if (r.flipped) await fanOutInvest(em, item.order_id, requestId);
  }
  await em.execute(`delete from lending.loans where loan_id = ? and order_id = ? and status = 'RESERVED'`, [item.loan_id, item.order_id]);
}

/** A real T24 failure: count it and remember whether the next attempt must read the loan back first. Returns the new count. */
export async function recordFailure(em: EntityManager, item: ItemRow, ambiguous: boolean, error: string): Promise<number> {
  const [r] = await em.execute<{ failures: number }[]>(
    `update lending.items set failures = failures + 1, ambiguous = ambiguous or ?, last_error = ?, updated_at = now()
     where order_id = ? and loan_id = ? returning failures`, [ambiguous, error.slice(0, 1000), item.order_id, item.loan_id]);
  return r?.failures ?? item.failures + 1;
}

/** The change may have landed (an ambiguous answer seen while deferring): read back before the next POST. */
export async function markAmbiguous(em: EntityManager, item: ItemRow): Promise<void> {
  await em.execute('update lending.items set ambiguous = true, updated_at = now() where order_id = ? and loan_id = ?', [item.order_id, item.loan_id]);
}
