// Pickup scheduling and tracking numbers. There is no carrier API in the contracts,
// so this is the carrier: a pickup in the next slot, and a tracking number derived
// from the order id (deterministic, so a retried schedule issues the same one).
//
// Failure for tests and demos: an order with a SKU starting with
// SHIPPING_FAIL_SKU_PREFIX (default "NOSHIP-") cannot ship; SHIPPING_FAIL_RATE
// (0..1, default 0) fails that share of orders, chosen by a hash of the order id.
import { createHash } from 'node:crypto';
import { Subjects } from '../../contracts/commerce.ts';
import type { EntityManager, OutboxMessage } from '../kit/index.ts';

/** `trackingNumberFor('7b0c…') // 'OF1Z4K…'` */
export function trackingNumberFor(orderUuid: string): string {
  return `OF${createHash('sha256').update(`tracking:${orderUuid}`).digest('hex').slice(0, 14).toUpperCase()}`;
}

/** The next pickup slot: the next whole hour at least 30 minutes away. */
export function nextPickup(now: Date): Date {
  const t = new Date(now.getTime() + 30 * 60_000);
  t.setUTCMinutes(0, 0, 0);
  t.setUTCHours(t.getUTCHours() + 1);
  return t;
}

export type ShippingRules = { failSkuPrefix: string; failRate: number };

/** Why this order cannot ship, or null. */
export function shippingProblem(orderUuid: string, skus: string[], rules: ShippingRules): string | null {
  const bad = rules.failSkuPrefix ? skus.find((s) => s.startsWith(rules.failSkuPrefix)) : undefined;
  if (bad) return `carrier refused ${bad}: no carrier serves this item`;
  if (rules.failRate > 0) {
    const h = createHash('sha256').update(`ship:${orderUuid}`).digest().readUInt32BE(0) / 2 ** 32;
    if (h < rules.failRate) return 'carrier had no pickup capacity';
  }
  return null;
}

type Shipment = { order_id: string; status: string; tracking_number: string | null; pickup_at: Date | null; detail: string | null };

/** Schedule the orders' pickups (idempotent per order, set-based); returns the reply to send per order. `const replies = await schedulePickups(em, [{ id, skus }], rules)` */
export async function schedulePickups(em: EntityManager, orders: { id: string; skus: string[] }[], rules: ShippingRules): Promise<Map<string, OutboxMessage>> {
  const replies = new Map<string, OutboxMessage>();
  if (!orders.length) return replies;
  const existing = new Map((await em.execute<Shipment[]>(
    'select order_id, status, tracking_number, pickup_at, detail from shipping.shipments where order_id in (?) for update', [orders.map((o) => o.id)]))
    .map((r) => [r.order_id, r]));
  const fresh: Shipment[] = [];
  for (const { id, skus } of orders) {
    let row = existing.get(id);
    if (!row) {
      const problem = shippingProblem(id, skus, rules);
      row = problem
        ? { order_id: id, status: 'FAILED', tracking_number: null, pickup_at: null, detail: problem }
        : { order_id: id, status: 'SCHEDULED', tracking_number: trackingNumberFor(id), pickup_at: nextPickup(new Date()), detail: null };
      fresh.push(row);
    }
    replies.set(id, row.status === 'SCHEDULED'
      ? { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: row.tracking_number!, pickupAt: new Date(row.pickup_at!).toISOString() } }
      : { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: row.status === 'CANCELLED' ? 'shipment was cancelled' : row.detail ?? 'failed' } });
  }
  if (fresh.length) {
    await em.execute(`insert into shipping.shipments (order_id, status, tracking_number, pickup_at, detail) values ${fresh.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
      fresh.flatMap((r) => [r.order_id, r.status, r.tracking_number, r.pickup_at, r.detail]));
  }
  return replies;
}
