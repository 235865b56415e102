// Stock operations. Each takes the caller's transaction: the saga's commands run
// them inside the worker's ctx.tx (with the inbox row and the reply), the HTTP
// routes inside em.transactional.
//
// No oversell under any concurrency: rows are locked in SKU order (so two orders
// over the same SKUs cannot deadlock), then reserved with one conditional UPDATE
// (`where on_hand - reserved >= q`); the table's check constraint is the last word.
// Every operation is idempotent per order through the reservations row, which
// also stays behind as a tombstone when a release overtakes its reserve.
import type { PricedLine } from '../../contracts/commerce.ts';
import type { EntityManager } from '../kit/db.ts';

export type Line = { sku: string; quantity: number };
export type ReserveResult =
  | { ok: true; lines: PricedLine[]; replay: boolean }
  | { ok: false; reason: 'UNKNOWN_SKU' | 'OUT_OF_STOCK' | 'CANCELLED'; skus: string[] };
export type ItemView = { sku: string; onHand: number; reserved: number; available: number };

type ItemRow = { sku: string; on_hand: number; reserved: number; price_cents: number; currency: string };

/** Sum quantities per SKU, in SKU order (the lock order). `mergeLines([{sku:'B',quantity:1},{sku:'A',quantity:2},{sku:'B',quantity:1}])` */
export function mergeLines(items: Line[]): Line[] {
  const m = new Map<string, number>();
  for (const i of items) m.set(i.sku, (m.get(i.sku) ?? 0) + i.quantity);
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([sku, quantity]) => ({ sku, quantity }));
}

const values = (lines: Line[]) => ({
  sql: lines.map(() => '(?::text, ?::int)').join(', '),
  params: lines.flatMap((l) => [l.sku, l.quantity]),
});

async function linesOf(em: EntityManager, orderId: string): Promise<PricedLine[]> {
  const rows = await em.execute<{ sku: string; quantity: number; price_cents: number; currency: string }[]>(
    'select sku, quantity, price_cents, currency from inventory.reservation_lines where order_id = ? order by sku', [orderId]);
  return rows.map((r) => ({ sku: r.sku, quantity: r.quantity, priceCents: r.price_cents, currency: r.currency }));
}

/** Reserve every line of an order or none. Run inside a transaction. `await reserve(em, order.id, order.items)` */
export async function reserve(em: EntityManager, orderId: string, items: Line[]): Promise<ReserveResult> {
  // Claim the order first: a concurrent reserve of the same order waits here for ours to commit.
  const claimed = await em.execute(`insert into inventory.reservations (order_id, status) values (?, 'RESERVED') on conflict do nothing returning 1`, [orderId]);
  if (!claimed.length) {
    const [r] = await em.execute<{ status: string }[]>('select status from inventory.reservations where order_id = ? for update', [orderId]);
    if (r?.status === 'RELEASED') return { ok: false, reason: 'CANCELLED', skus: [] };
    return { ok: true, lines: await linesOf(em, orderId), replay: true };
  }
  const lines = mergeLines(items);
  const skus = lines.map((l) => l.sku);
  const locked = await em.execute<ItemRow[]>('select sku, on_hand, reserved, price_cents, currency from inventory.items where sku in (?) order by sku for update', [skus]);
  const known = new Map(locked.map((r) => [r.sku, r]));
  const missing = skus.filter((s) => !known.has(s));
  const unclaim = async () => { await em.execute('delete from inventory.reservations where order_id = ?', [orderId]); };
  if (missing.length) { await unclaim(); return { ok: false, reason: 'UNKNOWN_SKU', skus: missing }; }

  const v = values(lines);
  const updated = await em.execute<{ sku: string }[]>(
    `update inventory.items i set reserved = i.reserved + v.q, updated_at = now()
       from (values ${v.sql}) as v(sku, q)
      where i.sku = v.sku and i.on_hand - i.reserved >= v.q
      returning i.sku`, v.params);
  if (updated.length < lines.length) {
    const got = new Set(updated.map((r) => r.sku));
    const undo = lines.filter((l) => got.has(l.sku));
    if (undo.length) {
      const u = values(undo);
      await em.execute(`update inventory.items i set reserved = i.reserved - v.q from (values ${u.sql}) as v(sku, q) where i.sku = v.sku`, u.params);
    }
    await unclaim();
    return { ok: false, reason: 'OUT_OF_STOCK', skus: skus.filter((s) => !got.has(s)) };
  }
  const priced: PricedLine[] = lines.map((l) => ({ ...l, priceCents: known.get(l.sku)!.price_cents, currency: known.get(l.sku)!.currency }));
  await em.execute(
    `insert into inventory.reservation_lines (order_id, sku, quantity, price_cents, currency) values ${priced.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
    priced.flatMap((l) => [orderId, l.sku, l.quantity, l.priceCents, l.currency]));
  return { ok: true, lines: priced, replay: false };
}

/**
 * Give an order's reserved stock back. Without a reservation it leaves a RELEASED
 * tombstone, so a reserve that arrives later (a slow or resent command) is refused.
 * `await release(em, order.id) // 'released' | 'already-released' | 'deducted' | 'tombstone'`
 */
export async function release(em: EntityManager, orderId: string): Promise<'released' | 'already-released' | 'deducted' | 'tombstone'> {
  const hit = await em.execute(`update inventory.reservations set status = 'RELEASED', updated_at = now() where order_id = ? and status = 'RESERVED' returning 1`, [orderId]);
  if (hit.length) {
    // Lock the order's SKUs in SKU order, as reserve does, so the two never deadlock.
    await em.execute('select 1 from inventory.items where sku in (select sku from inventory.reservation_lines where order_id = ?) order by sku for update', [orderId]);
    await em.execute(
      `update inventory.items i set reserved = i.reserved - l.quantity, updated_at = now()
         from inventory.reservation_lines l where l.order_id = ? and i.sku = l.sku`, [orderId]);
    return 'released';
  }
  const inserted = await em.execute(`insert into inventory.reservations (order_id, status) values (?, 'RELEASED') on conflict do nothing returning 1`, [orderId]);
  if (inserted.length) return 'tombstone';
  const [r] = await em.execute<{ status: string }[]>('select status from inventory.reservations where order_id = ?', [orderId]);
  return r?.status === 'DEDUCTED' ? 'deducted' : 'already-released';
}

/** The order shipped: its reserved units leave the shelf. `await deduct(em, order.id) // 'deducted' | 'already-deducted' | 'not-reserved'` */
export async function deduct(em: EntityManager, orderId: string): Promise<'deducted' | 'already-deducted' | 'not-reserved'> {
  const hit = await em.execute(`update inventory.reservations set status = 'DEDUCTED', updated_at = now() where order_id = ? and status = 'RESERVED' returning 1`, [orderId]);
  if (hit.length) {
    // Lock the order's SKUs in SKU order, as reserve does, so the two never deadlock.
    await em.execute('select 1 from inventory.items where sku in (select sku from inventory.reservation_lines where order_id = ?) order by sku for update', [orderId]);
    await em.execute(
      `update inventory.items i set on_hand = i.on_hand - l.quantity, reserved = i.reserved - l.quantity, updated_at = now()
         from inventory.reservation_lines l where l.order_id = ? and i.sku = l.sku`, [orderId]);
    return 'deducted';
  }
  const [r] = await em.execute<{ status: string }[]>('select status from inventory.reservations where order_id = ?', [orderId]);
  return r?.status === 'DEDUCTED' ? 'already-deducted' : 'not-reserved';
}

/** Add units to a SKU; null when the SKU is unknown. `await restock(em, 'SKU-1', 10)` */
export async function restock(em: EntityManager, sku: string, quantity: number): Promise<ItemView | null> {
  const [r] = await em.execute<ItemRow[]>('update inventory.items set on_hand = on_hand + ?, updated_at = now() where sku = ? returning sku, on_hand, reserved', [quantity, sku]);
  return r ? view(r) : null;
}

/** Create a SKU's stock row once; a repeat (a retried product POST) changes nothing. */
export async function initItem(em: EntityManager, i: { sku: string; stock: number; priceCents: number; currency: string }): Promise<boolean> {
  const r = await em.execute('insert into inventory.items (sku, on_hand, reserved, price_cents, currency) values (?, ?, 0, ?, ?) on conflict do nothing returning 1',
    [i.sku, i.stock, i.priceCents, i.currency]);
  return r.length > 0;
}

export async function getItem(em: EntityManager, sku: string): Promise<ItemView | null> {
  const [r] = await em.execute<ItemRow[]>('select sku, on_hand, reserved from inventory.items where sku = ?', [sku]);
  return r ? view(r) : null;
}

const view = (r: Pick<ItemRow, 'sku' | 'on_hand' | 'reserved'>): ItemView =>
  ({ sku: r.sku, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved });
