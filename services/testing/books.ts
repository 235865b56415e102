// "Books balanced": the one invariant of the commerce saga, checked from the outside
// (HTTP API, the gateway's ledger, the mail and SMS that went out), by the tests and
// by bench/saga.ts alike.
//  - every accepted order is SHIPPED or FAILED;
//  - per SKU: on-hand + shipped units = start + restocks, and nothing stays reserved;
//  - per order: net charge = totalCents if SHIPPED, 0 if FAILED;
//  - per (order, kind): at most one email and at most one SMS.

import { login } from './cluster.ts';
export type BooksInput = {
  /** The cluster's HTTP base URL. */
  baseUrl: string;
  /** Where /api/inventory answers, when inventory runs in another process than orders. */
  inventoryUrl?: string;
  /** Ids (uuids) of every order the cluster accepted with 202. */
  orders: string[];
  /** Per SKU, the stock it started with and what was restocked since. */
  stock: Record<string, { start: number; restocked?: number }>;
  /** Succeeded charges minus refunds for a reference (the gateway simulator's netCharged). */
  netCharged: (reference: string) => number | Promise<number>;
  /** Message-IDs of every mail the SMTP server accepted. */
  mailIds?: () => string[];
  /** Bodies of every SMS the provider accepted. */
  smsBodies?: () => string[];
  /**
   * After a kill -9, a mail whose SMTP 250 arrived just before the crash and whose
   * commit did not is sent again on redelivery, with the same Message-ID (see
   * notifications/consumers.ts); mailbox providers collapse those. True counts such
   * resends in `counts.mailResends` instead of as problems; a second mail for one
   * (order, kind) under another Message-ID is a problem either way.
   */
  allowSameMessageIdResends?: boolean;
  concurrency?: number;
  /** An admin's access token for the reads; default: the development admin logs in at baseUrl. */
  token?: () => Promise<string>;
};

export type BooksReport = {
  ok: boolean;
  problems: string[];
  counts: { orders: number; shipped: number; failed: number; unfinished: number; mailResends: number; byReason: Record<string, number> };
};

type OrderView = { id: string; orderId: string; status: string; items: { sku: string; quantity: number }[]; totalCents: number | null; failureReason: string | null };

async function getJson<T>(url: string, headers: Record<string, string>): Promise<T> {
  const res = await fetch(url, { headers });
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  return await res.json() as T;
}

async function mapLimit<T, R>(xs: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(xs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, xs.length) }, async () => {
    while (next < xs.length) { const i = next++; out[i] = await fn(xs[i]!); }
  }));
  return out;
}

/** Check the books; `ok` with an empty `problems` list when they balance. `const r = await checkBooks({ baseUrl, orders, stock, netCharged: gw.sim.netCharged })` */
export async function checkBooks(i: BooksInput): Promise<BooksReport> {
  const problems: string[] = [];
  // The reads need a token: the caller's, or the development admin's at baseUrl.
  const headers = { authorization: `Bearer ${i.token ? await i.token() : await login(i.baseUrl)}` };
  const orders = await mapLimit(i.orders, i.concurrency ?? 16, (id) => getJson<OrderView>(`${i.baseUrl}/api/orders/${id}`, headers));
  const shippedUnits = new Map<string, number>();
  const counts = { orders: orders.length, shipped: 0, failed: 0, unfinished: 0, mailResends: 0, byReason: {} as Record<string, number> };

  for (const o of orders) {
    const net = await i.netCharged(o.id);
    if (o.status === 'SHIPPED') {
      counts.shipped++;
      for (const l of o.items) shippedUnits.set(l.sku, (shippedUnits.get(l.sku) ?? 0) + l.quantity);
      if (net !== o.totalCents) problems.push(`order ${o.orderId} (${o.id}) SHIPPED with total ${o.totalCents} but net charge ${net}`);
    } else if (o.status === 'FAILED') {
      counts.failed++;
      counts.byReason[o.failureReason ?? '?'] = (counts.byReason[o.failureReason ?? '?'] ?? 0) + 1;
      if (net !== 0) problems.push(`order ${o.orderId} (${o.id}) FAILED ${o.failureReason} but net charge ${net}`);
    } else {
      counts.unfinished++;
      problems.push(`order ${o.orderId} (${o.id}) is ${o.status}, not SHIPPED or FAILED`);
    }
  }

  for (const [sku, s] of Object.entries(i.stock)) {
    const inv = await getJson<{ onHand: number; reserved: number }>(`${i.inventoryUrl ?? i.baseUrl}/api/inventory/${encodeURIComponent(sku)}`, headers);
    const shipped = shippedUnits.get(sku) ?? 0;
    const expected = s.start + (s.restocked ?? 0);
    if (inv.onHand + shipped !== expected) problems.push(`SKU ${sku}: on-hand ${inv.onHand} + shipped ${shipped} = ${inv.onHand + shipped}, expected start ${s.start} + restocked ${s.restocked ?? 0} = ${expected}`);
    if (inv.reserved !== 0) problems.push(`SKU ${sku}: ${inv.reserved} units still reserved`);
  }

  const ids = new Set(i.orders);
  if (i.mailIds) {
    const seen = new Map<string, number>();
    for (const m of i.mailIds()) seen.set(m, (seen.get(m) ?? 0) + 1);
    for (const [m, n] of seen) {
      const id = /^<([0-9a-f-]{36})\.(\w+)@orderflow>$/.exec(m)?.[1];
      if (n > 1 && id && ids.has(id)) {
        if (i.allowSameMessageIdResends) counts.mailResends += n - 1;
        else problems.push(`mail ${m} sent ${n} times`);
      }
    }
  }
  if (i.smsBodies) {
    const business = new Set(orders.map((o) => o.orderId));
    const seen = new Map<string, number>();
    for (const b of i.smsBodies()) {
      const m = /order (\S+) (received|shipped|failed)/.exec(b);
      if (m && business.has(m[1]!)) seen.set(`${m[1]} ${m[2]}`, (seen.get(`${m[1]} ${m[2]}`) ?? 0) + 1);
    }
    for (const [k, n] of seen) if (n > 1) problems.push(`SMS "${k}" sent ${n} times`);
  }
  return { ok: problems.length === 0, problems, counts };
}
