// Live orders: search by orderId, email, status and creation time, newest first, with
// keyset paging on (created_at, id) over the indexes orders/entities.ts declares for it;
// new orders and status changes arrive over SSE (live.ts). An order's page gathers what
// every service of the commerce saga stored about it, and its DLQ entries.
//
// The console reads the other services' tables directly, read-only: it is the one place
// that shows an order across orders, saga, payments and notifications, and it must not add
// a query API to each of them. The tables are in the same database in every topology.
import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { DlqAdmin, MikroORM } from '../../kit/index.ts';
import { HttpError, validate } from '../../kit/index.ts';
import { dlqTable } from './dlq.ts';
import { facts, field, jsonBlock, money, page, pager, present, select, status, time, type Html } from './layout.ts';
import { createFeed, liveStream, type Feed } from './live.ts';
import type { ConsoleEnv } from './session.ts';
import { decodeKeyset, encodeKeyset, optional, schemaOf } from './sql.ts';

export const ORDER_STATUSES = ['PENDING', 'STOCK_RESERVED', 'PAID', 'SHIPPED', 'FAILED'] as const;
const PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type OrderRow = {
  id: string; order_id: string; email: string; status: string; total_cents: string | null; currency: string | null;
  failure_reason: string | null; created_at: Date; updated_at: Date;
};
const COLUMNS = 'id, order_id, email, status, total_cents, currency, failure_reason, created_at, updated_at';

/** datetime-local inputs send minutes without a zone: read as UTC, as the page shows times. */
const when = z.string().trim().max(40).optional().transform((v, ctx) => {
  if (!v) return undefined;
  const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(v) ? v : `${v}Z`);
  if (Number.isNaN(d.getTime())) { ctx.addIssue({ code: 'custom', message: 'not a date and time' }); return z.NEVER; }
  return d;
});
const Query = z.object({
  orderId: optional(z.string().trim().max(64)),
  email: optional(z.string().trim().max(254)),
  status: optional(z.enum(ORDER_STATUSES)),
  from: when,
  to: when,
  cursor: optional(z.string().max(200)),
});
type Filter = z.infer<typeof Query>;

const matches = (f: Filter, r: OrderRow) =>
  (!f.orderId || r.order_id === f.orderId) && (!f.email || r.email === f.email) && (!f.status || r.status === f.status)
  && (!f.from || new Date(r.created_at) >= f.from) && (!f.to || new Date(r.created_at) < f.to);

/** One indexed, bounded read: the filters' index range, `PAGE + 1` rows from the cursor on. */
export async function searchOrders(orm: MikroORM, f: Filter): Promise<{ rows: OrderRow[]; nextCursor: string | null }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, ...v: unknown[]) => { where.push(sql); params.push(...v); };
  if (f.orderId) add('order_id = ?', f.orderId);
  if (f.email) add('email = ?', f.email);
  if (f.status) add('status = ?', f.status);
  if (f.from) add('created_at >= ?', f.from);
  if (f.to) add('created_at < ?', f.to);
  if (f.cursor) {
    const k = decodeKeyset(f.cursor);
    add('(created_at, id) < (?, ?)', k.at, k.id);
  }
  const rows = await orm.em.fork().execute<OrderRow[]>(
    `select ${COLUMNS} from orders.orders ${where.length ? `where ${where.join(' and ')}` : ''} order by created_at desc, id desc limit ${PAGE + 1}`, params);
  const more = rows.length > PAGE;
  const shown = rows.slice(0, PAGE);
  return { rows: shown, nextCursor: more ? encodeKeyset(shown.at(-1)!.created_at, shown.at(-1)!.id) : null };
}

const row = (r: OrderRow): Html => html`<tr id="order-${r.id}">
<td><a href="/admin/orders/${r.id}">${r.order_id}</a></td><td>${r.email}</td><td>${status(r.status)}${r.failure_reason ? html` <small>(${r.failure_reason})</small>` : ''}</td>
<td>${money(r.total_cents, r.currency)}</td><td>${time(r.created_at)}</td><td>${time(r.updated_at)}</td></tr>`;

type Change = OrderRow & { key: string };

/**
 * Orders changed since the last read, from the index on updated_at. A row's updated_at is
 * its transaction's start, so a transaction that commits late can carry a time the cursor
 * has passed: the read looks back `LOOKBACK_MS` and drops what it already sent. It reads the
 * newest changes first, `MAX_CHANGES` at most: under a burst a person's page gets the latest
 * changes (a page shows 50 rows), and the cursor always moves on (oldest first, a burst of
 * rows with one timestamp would fill every read and hide what came after it).
 */
export function orderFeed(orm: MikroORM, intervalMs: number, log: Parameters<typeof createFeed>[0]['log']): Feed<Change> {
  const LOOKBACK_MS = 5000;
  const MAX_CHANGES = 1000;
  let cursor = new Date();
  const sent = new Map<string, number>();
  return createFeed<Change>({
    intervalMs, log, what: 'orders',
    start: async () => {
      const [r] = await orm.em.fork().execute<{ now: Date }[]>('select now() as now');
      cursor = new Date(r!.now);
    },
    read: async () => {
      const rows = await orm.em.fork().execute<OrderRow[]>(
        `select ${COLUMNS} from orders.orders where updated_at > ? order by updated_at desc limit ${MAX_CHANGES}`, [new Date(cursor.getTime() - LOOKBACK_MS)]);
      const out: Change[] = [];
      for (const r of rows) {
        const at = new Date(r.updated_at).getTime();
        if (at > cursor.getTime()) cursor = new Date(at);
        const key = `${r.id}|${at}|${r.status}`;
        if (sent.has(key)) continue;
        sent.set(key, at);
        out.push({ ...r, key });
      }
      for (const [k, at] of sent) if (at < cursor.getTime() - 2 * LOOKBACK_MS) sent.delete(k);
      return out.reverse();
    },
  });
}

export function orderRoutes({ orm, dlq, feed, open }: { orm: MikroORM; dlq: DlqAdmin; feed: Feed<Change>; open: Set<() => void> }) {
  return new Hono<ConsoleEnv>()
    .get('/', async (c) => {
      const raw = c.req.query();
      const f = validate(raw, Query);
      const { rows, nextCursor } = await searchOrders(orm, f);
      const kept = present({ orderId: raw.orderId, email: raw.email, status: raw.status, from: raw.from, to: raw.to });
      const live = `/admin/orders/live?${new URLSearchParams({ ...kept, ...(f.cursor ? {} : { first: '1' }), since: new Date().toISOString() })}`;
      return c.html(page({
        title: 'Orders', section: 'orders', principal: c.get('principal'), body: html`
<search><form class="filters" method="get" action="/admin/orders" aria-label="Search orders">
  ${field({ name: 'orderId', label: 'Order id', value: raw.orderId })}
  ${field({ name: 'email', label: 'Email', value: raw.email, type: 'email' })}
  ${select({ name: 'status', label: 'Status', value: raw.status, options: ORDER_STATUSES, any: 'Any status' })}
  ${field({ name: 'from', label: 'Created from (UTC)', value: raw.from, type: 'datetime-local' })}
  ${field({ name: 'to', label: 'Created before (UTC)', value: raw.to, type: 'datetime-local' })}
  <button type="submit" class="primary">Search</button> <a href="/admin/orders">Clear</a>
</form></search>
<section data-live="${live}" aria-labelledby="orders-h">
<h2 id="orders-h">${f.cursor ? 'Orders (older page)' : 'Newest orders'}</h2>
<p class="live" role="status" data-live-status>Live updates start when the page has loaded.</p>
<table><caption>Orders matching the search, newest first; new orders and status changes appear here as they happen.</caption>
<thead><tr><th scope="col">Order id</th><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Total</th><th scope="col">Created</th><th scope="col">Updated</th></tr></thead>
<tbody data-live-rows>${rows.map(row)}</tbody></table>
${rows.length ? '' : html`<p data-live-empty>No orders match.</p>`}
${pager('/admin/orders', { ...kept }, nextCursor)}
</section>`,
      }));
    })
    .get('/live', (c) => {
      const raw = c.req.query();
      const f = validate({ ...raw, cursor: undefined }, Query);
      const first = raw.first === '1';
      const since = new Date(raw.since ?? 0);
      return liveStream(c, open, async (send) => feed.listen(async (changes) => {
        for (const r of changes) {
          if (!matches(f, r)) continue;
          await send('row', { id: `order-${r.id}`, html: String(await row(r)), prepend: first && new Date(r.created_at) >= new Date(since.getTime() - 60_000), announce: `${r.order_id} is ${r.status}` });
        }
      }));
    })
    .get('/:id', async (c) => {
      const id = c.req.param('id');
      const em = orm.em.fork();
      if (!UUID.test(id)) {
        const [byBusinessId] = await em.execute<{ id: string }[]>('select id from orders.orders where order_id = ?', [id.slice(0, 64)]);
        if (!byBusinessId) throw new HttpError(404, 'NOT_FOUND', `There is no order ${id}.`);
        return c.redirect(`/admin/orders/${byBusinessId.id}`, 303);
      }
      const [o] = await em.execute<(OrderRow & { phone: string | null; items: unknown; history: { status: string; at: string; reason?: string | null }[]; tracking_number: string | null })[]>(
        `select ${COLUMNS}, phone, items, history, tracking_number from orders.orders where id = ?`, [id]);
      if (!o) throw new HttpError(404, 'NOT_FOUND', `There is no order ${id}.`);
      const part = <T>(p: Promise<T>) => p.catch((err: unknown) => new Error(schemaOf(err)));
      const [saga, payments, refunds, emails, sms, dead] = await Promise.all([
        part(em.execute<{ step: string; status: string; version: number; deadline: Date | null; doc: { attempts?: number; pending?: string[]; history?: { status: string; at: string; reason: string | null }[]; failureDetail?: string | null; chargeId?: string | null; refundedCents?: number }; updated_at: Date }[]>(
          'select step, status, version, deadline, doc, updated_at from saga.sagas where id = ?', [id])),
        part(em.execute<{ status: string; amount: number | null; currency: string | null; charge_id: string | null; refunded_amount: number; detail: string | null; created_at: Date; updated_at: Date }[]>(
          'select status, amount, currency, charge_id, refunded_amount, detail, created_at, updated_at from payments.payments where order_id = ?', [id])),
        part(em.execute<{ charge_id: string; refund_id: string | null; amount: number; created_at: Date }[]>(
          'select charge_id, refund_id, amount, created_at from payments.refunds where order_id = ? order by created_at', [id])),
        part(em.execute<{ kind: string; recipient: string; subject: string; message_id: string; sent_at: Date }[]>(
          'select kind, recipient, subject, message_id, sent_at from notifications.emails where order_id = ? order by sent_at', [id])),
        part(em.execute<{ kind: string; recipient: string; body: string; provider_id: string | null; sent_at: Date }[]>(
          'select kind, recipient, body, provider_id, sent_at from notifications.sms where order_id = ? order by sent_at', [id])),
        part(dlq.page({ key: id, limit: 50 })),
      ]);
      const unavailable = (e: Error) => html`<p class="notice error">Not available: ${e.message}</p>`;
      const s = saga instanceof Error ? saga : saga[0];
      return c.html(page({
        title: `Order ${o.order_id}`, section: 'orders', principal: c.get('principal'), body: html`
<section aria-labelledby="summary-h" data-live="/admin/orders/live?${new URLSearchParams({ orderId: o.order_id })}">
<h2 id="summary-h">Summary</h2>
<p class="live" role="status" data-live-status></p>
<table><caption>The order as the orders service stores it (updated live)</caption>
<thead><tr><th scope="col">Order id</th><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Total</th><th scope="col">Created</th><th scope="col">Updated</th></tr></thead>
<tbody>${row(o)}</tbody></table>
${facts([['Order uuid', o.id], ['Phone', o.phone], ['Tracking number', o.tracking_number], ['Failure reason', o.failure_reason]])}
<h3>Items</h3>${jsonBlock(o.items, 'Items')}
</section>
<section aria-labelledby="history-h"><h2 id="history-h">Status history</h2>
<ol>${(o.history ?? []).map((h) => html`<li>${status(h.status)} at ${time(h.at)}${h.reason ? html` (${h.reason})` : ''}</li>`)}</ol></section>
<section aria-labelledby="saga-h"><h2 id="saga-h">Saga timeline</h2>
${s instanceof Error ? unavailable(s) : !s ? html`<p>No saga yet (the saga starts when it consumes orders.created).</p>` : html`
${facts([['Step', s.step], ['Status', status(s.status)], ['Version', s.version], ['Attempts of this step', s.doc.attempts], ['Step deadline', time(s.deadline)], ['Compensations pending', (s.doc.pending ?? []).join(', ')], ['Failure detail', s.doc.failureDetail], ['Last change', time(s.updated_at)]])}
<ol>${(s.doc.history ?? []).map((h) => html`<li>${status(h.status)} at ${time(h.at)}${h.reason ? html` (${h.reason})` : ''}</li>`)}</ol>`}
</section>
<section aria-labelledby="pay-h"><h2 id="pay-h">Charges and refunds</h2>
${payments instanceof Error ? unavailable(payments) : payments.length ? html`<table><caption>Charges (payments service)</caption><thead><tr><th scope="col">Status</th><th scope="col">Amount</th><th scope="col">Charge id</th><th scope="col">Refunded</th><th scope="col">Detail</th><th scope="col">Updated</th></tr></thead>
<tbody>${payments.map((p) => html`<tr><td>${status(p.status)}</td><td>${money(p.amount, p.currency)}</td><td>${p.charge_id ?? '–'}</td><td>${money(p.refunded_amount, p.currency)}</td><td>${p.detail ?? ''}</td><td>${time(p.updated_at)}</td></tr>`)}</tbody></table>` : html`<p>No charge.</p>`}
${refunds instanceof Error ? unavailable(refunds) : refunds.length ? html`<table><caption>Refunds</caption><thead><tr><th scope="col">Charge id</th><th scope="col">Refund id</th><th scope="col">Amount (minor)</th><th scope="col">At</th></tr></thead>
<tbody>${refunds.map((r) => html`<tr><td>${r.charge_id}</td><td>${r.refund_id ?? '–'}</td><td>${r.amount}</td><td>${time(r.created_at)}</td></tr>`)}</tbody></table>` : html`<p>No refund.</p>`}
</section>
<section aria-labelledby="notes-h"><h2 id="notes-h">Mails and text messages sent</h2>
${emails instanceof Error ? unavailable(emails) : emails.length ? html`<table><caption>Mails the SMTP server accepted</caption><thead><tr><th scope="col">Kind</th><th scope="col">To</th><th scope="col">Subject</th><th scope="col">Message-ID</th><th scope="col">Sent</th></tr></thead>
<tbody>${emails.map((m) => html`<tr><td>${m.kind}</td><td>${m.recipient}</td><td>${m.subject}</td><td>${m.message_id}</td><td>${time(m.sent_at)}</td></tr>`)}</tbody></table>` : html`<p>No mail sent.</p>`}
${sms instanceof Error ? unavailable(sms) : sms.length ? html`<table><caption>Text messages</caption><thead><tr><th scope="col">Kind</th><th scope="col">To</th><th scope="col">Text</th><th scope="col">Provider id</th><th scope="col">Sent</th></tr></thead>
<tbody>${sms.map((m) => html`<tr><td>${m.kind}</td><td>${m.recipient}</td><td>${m.body}</td><td>${m.provider_id ?? 'claimed, not confirmed'}</td><td>${time(m.sent_at)}</td></tr>`)}</tbody></table>` : html`<p>No text message sent.</p>`}
</section>
<section aria-labelledby="dlq-h"><h2 id="dlq-h">Dead letters</h2>
${dead instanceof Error ? unavailable(dead) : dead.items.length ? dlqTable(dead.items, `Dead letters of order ${o.order_id}`) : html`<p>None.</p>`}
</section>`,
      }));
    });
}
