// Pickup scheduling and tracking numbers. There is no carrier API in the contracts,
// so this is the carrier: a pickup in the next slot, and a tracking number derived
// from the order id (deterministic, so a retried schedule issues the same one).
//
// Failure for tests and demos: an order with a SKU starting with
// SHIPPING_FAIL_SKU_PREFIX (default "NOSHIP-") cannot ship; SHIPPING_FAIL_RATE
// (0..1, default 0) fails that share of orders, chosen by a hash of the order id.
import { createHash } from 'node:crypto';

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
