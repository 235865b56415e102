// Stock operations, set-based: one call handles many orders in the caller's
// transaction (the saga's commands arrive in batches, see kit/batch-worker.ts; the
// HTTP routes pass one order). A batch costs a handful of statements whatever its size.
//
// No oversell under any concurrency:
//  - every SKU a call touches is locked first, in one statement, in SKU order, so two
//    transactions over overlapping SKUs queue instead of deadlocking;
//  - under those locks the orders are fitted in arrival order, each all-or-nothing;
//  - the units are then taken with one conditional UPDATE (`where on_hand - reserved
//    >= q`) whose row count must match, and the table's check constraint
//    (0 <= reserved <= on_hand) is the last word.
// Every operation is idempotent per order through the reservations row, which also
// stays behind as a tombstone when a release overtakes its reserve.
import type { PricedLine } from '../../contracts/commerce.ts';
import type { EntityManager } from '../kit/index.ts';
import { StockItem } from './entities.ts';

export type Line = { sku: string; quantity: number };
export type ReserveResult =
  | { ok: true; lines: PricedLine[]; replay: boolean }
  | { ok: false; reason: 'UNKNOWN_SKU' | 'OUT_OF_STOCK' | 'CANCELLED'; skus: string[] };
export type ReleaseResult = 'released' | 'already-released' | 'deducted' | 'tombstone';
export type DeductResult = 'deducted' | 'already-deducted' | 'not-reserved';
export type ItemView = { sku: string; onHand: number; reserved: number; available: number };

type ItemRow = { sku: string; on_hand: number; reserved: number; price_cents: number; currency: string };
type LineRow = { order_id: string; sku: string; quantity: number; price_cents: number; currency: string };

/** Sum quantities per SKU, in SKU order. `mergeLines([{sku:'B',quantity:1},{sku:'A',quantity:2},{sku:'B',quantity:1}])` */
export function mergeLines(items: Line[]): Line[] {
  const m = new Map<string, number>();
  for (const i of items) m.set(i.sku, (m.get(i.sku) ?? 0) + i.quantity);
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sku, quantity]) => ({ sku, quantity }));
}

const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

async function lockSkus(em: EntityManager, skus: string[]): Promise<Map<string, ItemRow>> {
  if (!skus.length) return new Map();
  const rows = await em.execute<ItemRow[]>('select sku, on_hand, reserved, price_cents, currency from inventory.items where sku in (?) order by sku for update', [sorted(skus)]);
  return new Map(rows.map((r) => [r.sku, r]));
}

async function linesOf(em: EntityManager, orderIds: string[]): Promise<Map<string, PricedLine[]>> {
  const out = new Map<string, PricedLine[]>();
  if (!orderIds.length) return out;
  const rows = await em.execute<LineRow[]>('select order_id, sku, quantity, price_cents, currency from inventory.reservation_lines where order_id in (?) order by order_id, sku', [orderIds]);
  for (const r of rows) {
    const l = out.get(r.order_id) ?? [];
    l.push({ sku: r.sku, quantity: r.quantity, priceCents: r.price_cents, currency: r.currency });
    out.set(r.order_id, l);
  }
  return out;
}

/** Take or give back units: one conditional statement; throws if any SKU lacks the units (cannot happen under the locks). */
async function adjust(em: EntityManager, byReserved: Map<string, number>, byOnHand: Map<string, number>): Promise<void> {
  const skus = sorted([...byReserved.keys(), ...byOnHand.keys()]).filter((s) => (byReserved.get(s) ?? 0) !== 0 || (byOnHand.get(s) ?? 0) !== 0);
  if (!skus.length) return;
  const rows = await em.execute<{ sku: string }[]>(
    `update inventory.items i set reserved = i.reserved + v.r, on_hand = i.on_hand + v.h, updated_at = now()
       from (values ${skus.map(() => '(?::text, ?::int, ?::int)').join(', ')}) as v(sku, r, h)
      where i.sku = v.sku and i.on_hand + v.h - i.reserved - v.r >= 0 and i.reserved + v.r >= 0
      returning i.sku`,
    skus.flatMap((s) => [s, byReserved.get(s) ?? 0, byOnHand.get(s) ?? 0]));
  if (rows.length !== skus.length) throw new Error(`stock changed under the lock for ${skus.filter((s) => !rows.some((r) => r.sku === s)).join(', ')}`);
}

const add = (m: Map<string, number>, sku: string, q: number) => m.set(sku, (m.get(sku) ?? 0) + q);

export type StockCommand =
  | { kind: 'reserve'; orderId: string; items: Line[] }
  | { kind: 'release'; orderId: string }
  | { kind: 'deduct'; orderId: string };
export type StockOutcome = ReserveResult | ReleaseResult | DeductResult;

/**
 * Apply many orders' commands in one transaction (at most one command per order).
 * Releases and deductions go first, then reservations in the given order.
 * `const results = await applyStock(em, [{ kind: 'reserve', orderId, items }])`
 */
export async function applyStock(em: EntityManager, cmds: StockCommand[]): Promise<Map<string, StockOutcome>> {
  const out = new Map<string, StockOutcome>();
  const reserves = cmds.filter((c): c is Extract<StockCommand, { kind: 'reserve' }> => c.kind === 'reserve');
  const settles = cmds.filter((c) => c.kind !== 'reserve');

  // Claim the reservations first: a concurrent reserve of the same order waits here for ours to commit.
  const claimed = reserves.length ? new Set((await em.execute<{ order_id: string }[]>(
    `insert into inventory.reservations (order_id, status) values ${reserves.map(() => `(?, 'RESERVED')`).join(', ')} on conflict do nothing returning order_id`,
    reserves.map((r) => r.orderId))).map((r) => r.order_id)) : new Set<string>();
  // Releases and deductions flip RESERVED rows; what they flipped decides whose units move.
  const flipped = new Map<string, 'release' | 'deduct'>();
  for (const kind of ['release', 'deduct'] as const) {
    const ids = settles.filter((c) => c.kind === kind).map((c) => c.orderId);
    if (!ids.length) continue;
    const rows = await em.execute<{ order_id: string }[]>(
      `update inventory.reservations set status = ?, updated_at = now() where order_id in (?) and status = 'RESERVED' returning order_id`,
      [kind === 'release' ? 'RELEASED' : 'DEDUCTED', ids]);
    for (const r of rows) flipped.set(r.order_id, kind);
  }
  const replays = reserves.filter((r) => !claimed.has(r.orderId)).map((r) => r.orderId);
  const lines = await linesOf(em, [...flipped.keys(), ...replays]);

  const fresh = reserves.filter((r) => claimed.has(r.orderId)).map((r) => ({ orderId: r.orderId, lines: mergeLines(r.items) }));
  const items = await lockSkus(em, [...fresh.flatMap((r) => r.lines.map((l) => l.sku)), ...[...flipped.keys()].flatMap((id) => (lines.get(id) ?? []).map((l) => l.sku))]);

  const dReserved = new Map<string, number>();
  const dOnHand = new Map<string, number>();
  for (const [id, kind] of flipped) {
    for (const l of lines.get(id) ?? []) {
      add(dReserved, l.sku, -l.quantity);
      if (kind === 'deduct') add(dOnHand, l.sku, -l.quantity);
    }
  }
  // Fit the new reservations, in order, against what the locked rows hold after the settlements.
  const available = new Map([...items.values()].map((r) => [r.sku, r.on_hand + (dOnHand.get(r.sku) ?? 0) - r.reserved - (dReserved.get(r.sku) ?? 0)]));
  const won: { orderId: string; lines: PricedLine[] }[] = [];
  const lost: string[] = [];
  for (const r of fresh) {
    const missing = r.lines.filter((l) => !items.has(l.sku)).map((l) => l.sku);
    if (missing.length) { out.set(r.orderId, { ok: false, reason: 'UNKNOWN_SKU', skus: missing }); lost.push(r.orderId); continue; }
    const short = r.lines.filter((l) => available.get(l.sku)! < l.quantity).map((l) => l.sku);
    if (short.length) { out.set(r.orderId, { ok: false, reason: 'OUT_OF_STOCK', skus: short }); lost.push(r.orderId); continue; }
    for (const l of r.lines) { available.set(l.sku, available.get(l.sku)! - l.quantity); add(dReserved, l.sku, l.quantity); }
    const priced = r.lines.map((l) => ({ ...l, priceCents: items.get(l.sku)!.price_cents, currency: items.get(l.sku)!.currency }));
    won.push({ orderId: r.orderId, lines: priced });
    out.set(r.orderId, { ok: true, lines: priced, replay: false });
  }
  await adjust(em, dReserved, dOnHand);
  // Rejected orders hold nothing and leave no row: a later retry is judged afresh.
  if (lost.length) await em.execute('delete from inventory.reservations where order_id in (?)', [lost]);
  const newLines = won.flatMap((w) => w.lines.map((l) => ({ ...l, orderId: w.orderId })));
  if (newLines.length) {
    await em.execute(`insert into inventory.reservation_lines (order_id, sku, quantity, price_cents, currency) values ${newLines.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
      newLines.flatMap((l) => [l.orderId, l.sku, l.quantity, l.priceCents, l.currency]));
  }

  // Replayed reserves answer what they got the first time (or that they were released).
  if (replays.length) {
    const status = await statuses(em, replays);
    for (const id of replays) out.set(id, status.get(id) === 'RELEASED' ? { ok: false, reason: 'CANCELLED', skus: [] } : { ok: true, lines: lines.get(id) ?? [], replay: true });
  }
  for (const [id, kind] of flipped) out.set(id, kind === 'release' ? 'released' : 'deducted');
  const unflipped = settles.filter((c) => !flipped.has(c.orderId));
  if (unflipped.length) {
    // A release without a reservation leaves the tombstone.
    const tombs = unflipped.filter((c) => c.kind === 'release').map((c) => c.orderId);
    const made = tombs.length ? new Set((await em.execute<{ order_id: string }[]>(
      `insert into inventory.reservations (order_id, status) values ${tombs.map(() => `(?, 'RELEASED')`).join(', ')} on conflict do nothing returning order_id`, tombs)).map((r) => r.order_id)) : new Set<string>();
    const status = await statuses(em, unflipped.map((c) => c.orderId).filter((id) => !made.has(id)));
    for (const c of unflipped) {
      const s = status.get(c.orderId);
      if (c.kind === 'release') out.set(c.orderId, made.has(c.orderId) ? 'tombstone' : s === 'DEDUCTED' ? 'deducted' : 'already-released');
      else out.set(c.orderId, s === 'DEDUCTED' ? 'already-deducted' : 'not-reserved');
    }
  }
  return out;
}

async function statuses(em: EntityManager, ids: string[]): Promise<Map<string, string>> {
  if (!ids.length) return new Map();
  const rows = await em.execute<{ order_id: string; status: string }[]>('select order_id, status from inventory.reservations where order_id in (?)', [ids]);
  return new Map(rows.map((r) => [r.order_id, r.status]));
}

/** Reserve every line of one order or none. Run inside a transaction. `await reserve(em, order.id, order.items)` */
export async function reserve(em: EntityManager, orderId: string, items: Line[]): Promise<ReserveResult> {
  return (await applyStock(em, [{ kind: 'reserve', orderId, items }])).get(orderId) as ReserveResult;
}

/** Give one order's reserved stock back; without a reservation, leave a tombstone. `await release(em, id) // 'released' | 'tombstone' | ...` */
export async function release(em: EntityManager, orderId: string): Promise<ReleaseResult> {
  return (await applyStock(em, [{ kind: 'release', orderId }])).get(orderId) as ReleaseResult;
}

/** The order shipped: its reserved units leave the shelf. `await deduct(em, id) // 'deducted' | 'already-deducted' | 'not-reserved'` */
export async function deduct(em: EntityManager, orderId: string): Promise<DeductResult> {
  return (await applyStock(em, [{ kind: 'deduct', orderId }])).get(orderId) as DeductResult;
}

/** The most units a SKU can hold: on_hand is a Postgres integer. */
export const MAX_ON_HAND = 2_147_483_647;

/** Add units to a SKU. `await restock(em, 'SKU-1', 10) // ItemView | 'UNKNOWN_SKU' | 'STOCK_LIMIT'` */
export async function restock(em: EntityManager, sku: string, quantity: number): Promise<ItemView | 'UNKNOWN_SKU' | 'STOCK_LIMIT'> {
  // Compared as MAX - quantity, so the guard itself cannot overflow the integer.
  const [r] = await em.execute<ItemRow[]>('update inventory.items set on_hand = on_hand + ?, updated_at = now() where sku = ? and on_hand <= ? - ? returning sku, on_hand, reserved',
    [quantity, sku, MAX_ON_HAND, quantity]);
  if (r) return view(r);
  return (await getItem(em, sku)) ? 'STOCK_LIMIT' : 'UNKNOWN_SKU';
}

/** Create a SKU's stock row once; a repeat (a retried product POST) changes nothing. */
export async function initItem(em: EntityManager, i: { sku: string; stock: number; priceCents: number; currency: string }): Promise<boolean> {
  const r = await em.execute('insert into inventory.items (sku, on_hand, reserved, price_cents, currency) values (?, ?, 0, ?, ?) on conflict do nothing returning 1',
    [i.sku, i.stock, i.priceCents, i.currency]);
  return r.length > 0;
}

export async function getItem(em: EntityManager, sku: string): Promise<ItemView | null> {
  const r = await em.findOne(StockItem, { sku }, { fields: ['sku', 'onHand', 'reserved'] });
  return r ? view({ sku: r.sku, on_hand: r.onHand, reserved: r.reserved }) : null;
}

const view = (r: Pick<ItemRow, 'sku' | 'on_hand' | 'reserved'>): ItemView =>
  ({ sku: r.sku, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved });

