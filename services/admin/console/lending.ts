// Lending in the console: investor orders with their progress counts, live; an order's
// failed items with their reasons, and its dead letters (found by the order id every item
// command carries). A loan id goes straight to its dead letters.
import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { DlqAdmin, MikroORM } from '../../kit/index.ts';
import { HttpError, validate } from '../../kit/index.ts';
import { dlqTable } from './dlq.ts';
import { facts, field, page, pager, present, select, status, time, type Html } from './layout.ts';
import { liveStream } from './live.ts';
import type { ConsoleEnv } from './session.ts';
import { decodeKeyset, encodeKeyset, optional, schemaOf } from './sql.ts';

const STATUSES = ['IN_PROGRESS', 'SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'] as const;
const PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type LendingRow = {
  id: string; investor_id: string; status: string; total_items: number; pending: number; reserved: number; invested: number; failed: number;
  created_at: Date; completed_at: Date | null;
};
const COLUMNS = 'id, investor_id, status, total_items, pending, reserved, invested, failed, created_at, completed_at';

const Query = z.object({ status: optional(z.enum(STATUSES)), investorId: optional(z.string().trim().max(128)), cursor: optional(z.string().max(200)) });

const counts = (r: LendingRow): Html => html`<td>${status(r.status)}</td><td>${r.total_items}</td><td>${r.pending}</td><td>${r.reserved}</td><td>${r.invested}</td><td>${r.failed}</td>`;
const listRow = (r: LendingRow): Html => html`<tr id="lending-${r.id}"><td><a href="/admin/lending/${r.id}">${r.id}</a></td><td>${r.investor_id}</td>${counts(r)}<td>${time(r.created_at)}</td></tr>`;
const HEAD = html`<th scope="col">Status</th><th scope="col">Items</th><th scope="col">Pending</th><th scope="col">Reserved</th><th scope="col">Invested</th><th scope="col">Failed</th>`;

const read = async (orm: MikroORM, ids: string[]) => (ids.length
  ? await orm.em.fork().execute<LendingRow[]>(`select ${COLUMNS} from lending.orders where id in (${ids.map(() => '?').join(', ')})`, ids)
  : []);

export function lendingRoutes({ orm, dlq, open, intervalMs }: { orm: MikroORM; dlq: DlqAdmin; open: Set<() => void>; intervalMs: number }) {
  return new Hono<ConsoleEnv>()
    .get('/', async (c) => {
      const raw = c.req.query();
      if (raw.loanId?.trim()) return c.redirect(`/admin/dlq?${new URLSearchParams({ key: raw.loanId.trim().slice(0, 256) })}`, 303);
      const q = validate(raw, Query);
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.status) { where.push('status = ?'); params.push(q.status); }
      if (q.investorId) { where.push('investor_id = ?'); params.push(q.investorId); }
      if (q.cursor) { const k = decodeKeyset(q.cursor); where.push('(created_at, id) < (?, ?)'); params.push(k.at, k.id); }
      const rows = await orm.em.fork().execute<LendingRow[]>(
        `select ${COLUMNS} from lending.orders ${where.length ? `where ${where.join(' and ')}` : ''} order by created_at desc, id desc limit ${PAGE + 1}`, params);
      const shown = rows.slice(0, PAGE);
      const next = rows.length > PAGE ? encodeKeyset(shown.at(-1)!.created_at, shown.at(-1)!.id) : null;
      const live = shown.filter((r) => r.status === 'IN_PROGRESS').map((r) => r.id);
      return c.html(page({
        title: 'Lending orders', section: 'lending', principal: c.get('principal'), body: html`
<search><form class="filters" method="get" action="/admin/lending" aria-label="Search lending orders">
  ${select({ name: 'status', label: 'Status', value: raw.status, options: STATUSES, any: 'Any status' })}
  ${field({ name: 'investorId', label: 'Investor id', value: raw.investorId })}
  <button type="submit" class="primary">Search</button> <a href="/admin/lending">Clear</a>
</form></search>
<search><form class="filters" method="get" action="/admin/lending" aria-label="Find a loan's dead letters">
  ${field({ name: 'loanId', label: 'Loan id', hint: 'shows the dead letters that carry this loan' })}
  <button type="submit">Find dead letters</button>
</form></search>
<section aria-labelledby="lo-h"${live.length ? html` data-live="/admin/lending/live?ids=${live.join(',')}"` : ''}>
<h2 id="lo-h">Investor orders</h2>
<p class="live" role="status" data-live-status></p>
<table><caption>Lending orders, newest first; counts of orders in progress update live.</caption>
<thead><tr><th scope="col">Order</th><th scope="col">Investor</th>${HEAD}<th scope="col">Created</th></tr></thead>
<tbody>${shown.map(listRow)}</tbody></table>
${shown.length ? '' : html`<p>No lending orders match.</p>`}
${pager('/admin/lending', present({ status: raw.status, investorId: raw.investorId }), next)}
</section>`,
      }));
    })
    // Counts of the orders a page shows, by primary key, until each is final.
    .get('/live', (c) => {
      const ids = (c.req.query('ids') ?? '').split(',').filter((id) => UUID.test(id)).slice(0, PAGE);
      const single = c.req.query('one') === '1';
      return liveStream(c, open, async (send, stream) => {
        const last = new Map<string, string>();
        void (async () => {
          let watching = ids;
          while (!stream.aborted && !stream.closed && watching.length) {
            const rows = await read(orm, watching).catch(() => []);
            for (const r of rows) {
              const key = `${r.status}|${r.pending}|${r.reserved}|${r.invested}|${r.failed}`;
              if (last.get(r.id) === key) continue;
              last.set(r.id, key);
              const markup = single ? html`<tr id="lending-${r.id}">${counts(r)}</tr>` : listRow(r);
              await send('row', { id: `lending-${r.id}`, html: String(await markup), announce: `${r.id.slice(0, 8)}: ${r.invested} invested, ${r.failed} failed, ${r.status}` });
            }
            watching = watching.filter((id) => rows.find((r) => r.id === id)?.status !== 'SUCCESS');
            await stream.sleep(intervalMs);
          }
        })();
      });
    })
    .get('/:id', async (c) => {
      const id = c.req.param('id');
      const [o] = UUID.test(id) ? await read(orm, [id.toLowerCase()]) : [];
      if (!o) throw new HttpError(404, 'NOT_FOUND', `There is no lending order ${id}.`);
      const after = c.req.query('after')?.slice(0, 128);
      const [failed, dead] = await Promise.all([
        orm.em.fork().execute<{ loan_id: string; amount: string; failed_phase: string | null; reason: string | null; last_error: string | null; failures: number; updated_at: Date }[]>(
          `select loan_id, amount, failed_phase, reason, last_error, failures, updated_at from lending.items
            where order_id = ? and state = 'FAILED'${after ? ' and loan_id > ?' : ''} order by loan_id limit ${PAGE + 1}`, after ? [o.id, after] : [o.id]),
        dlq.page({ key: o.id, limit: 50 }).catch((err: unknown) => new Error(schemaOf(err))),
      ]);
      const shownFailed = failed.slice(0, PAGE);
      return c.html(page({
        title: `Lending order ${o.id}`, section: 'lending', principal: c.get('principal'), body: html`
${facts([['Investor', o.investor_id], ['Created', time(o.created_at)], ['Completed', time(o.completed_at)]])}
<section aria-labelledby="progress-h" data-live="/admin/lending/live?one=1&amp;ids=${o.id}">
<h2 id="progress-h">Progress</h2>
<p class="live" role="status" data-live-status></p>
<table><caption>Item counts (updated live)</caption><thead><tr>${HEAD}</tr></thead>
<tbody><tr id="lending-${o.id}">${counts(o)}</tr></tbody></table>
</section>
<section aria-labelledby="failed-h"><h2 id="failed-h">Failed items</h2>
${shownFailed.length ? html`<table><caption>Items that failed, by loan id</caption>
<thead><tr><th scope="col">Loan id</th><th scope="col">Amount</th><th scope="col">Phase</th><th scope="col">Reason</th><th scope="col">Last error</th><th scope="col">Failures</th><th scope="col">Dead letters</th></tr></thead>
<tbody>${shownFailed.map((i) => html`<tr><td>${i.loan_id}</td><td>${i.amount}</td><td>${i.failed_phase ?? '–'}</td><td>${i.reason ?? '–'}</td><td>${i.last_error ?? ''}</td><td>${i.failures}</td><td><a href="/admin/dlq?key=${encodeURIComponent(i.loan_id)}">Dead letters of ${i.loan_id}</a></td></tr>`)}</tbody></table>
${failed.length > PAGE ? html`<nav aria-label="Failed items pages"><a href="/admin/lending/${o.id}?after=${encodeURIComponent(shownFailed.at(-1)!.loan_id)}">Next failed items</a></nav>` : ''}` : html`<p>No failed items${after ? ' after this point' : ''}.</p>`}
</section>
<section aria-labelledby="dlq-h"><h2 id="dlq-h">Dead letters of this order</h2>
${dead instanceof Error ? html`<p class="notice error">Not available: ${dead.message}</p>` : dead.items.length
    ? html`${dlqTable(dead.items, `Dead letters carrying order ${o.id}`)}<p><a href="/admin/dlq?key=${o.id}">All ${dead.total} in the dead-letter view (bulk redrive)</a></p>`
    : html`<p>None.</p>`}
</section>`,
      }));
    });
}
