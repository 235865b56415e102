// Funding in the console: applications by status (the pending_review queue first), each
// with its score, model version and financials; a reviewer approves or rejects with a
// note. The decision goes through funding's own API (POST .../decision) with the signed-in
// user's access token, so the console decides exactly as any client does: the same
// state check, the same event, the review recorded with who (the signed-in account) and when.
import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { MikroORM } from '../../kit/index.ts';
import { HttpError, validate } from '../../kit/index.ts';
import { facts, money, page, pager, present, status, time, type Html } from './layout.ts';
import { liveStream } from './live.ts';
import type { ClusterApi, ConsoleEnv } from './session.ts';
import { decodeKeyset, encodeKeyset, optional } from './sql.ts';

export const APPLICATION_STATUSES = ['pending_review', 'processing', 'risk_scoring', 'approved', 'rejected', 'disbursing', 'disbursed', 'disbursement_failed'] as const;
const PAGE = 50;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Financials = { annualRevenue: number; yearsTrading: number; existingDebt: number };
type AppRow = {
  id: string; business_id: string; business_name: string; amount_minor: string; currency: string; term_months: number;
  status: string; risk_score: number | null; probability_of_default: number | null; model_version: string | null;
  financials: Financials; created_at: Date; updated_at: Date;
};
const COLUMNS = 'id, business_id, business_name, amount_minor, currency, term_months, status, risk_score, probability_of_default, model_version, financials, created_at, updated_at';

const Query = z.object({ status: optional(z.enum(APPLICATION_STATUSES)).default('pending_review'), cursor: optional(z.string().max(200)) });
const Decision = z.object({ decision: z.enum(['approved', 'rejected']), note: z.string().max(2000).optional() });

const fin = (f: Financials) => `revenue ${f.annualRevenue.toLocaleString('en')}, ${f.yearsTrading} years trading, debt ${f.existingDebt.toLocaleString('en')}`;

const appRow = (r: AppRow): Html => html`<tr id="app-${r.id}"><td><a href="/admin/funding/${r.id}">${r.business_name}</a><br><small>${r.business_id}</small></td>
<td>${money(r.amount_minor, r.currency)} / ${r.term_months} months</td><td>${status(r.status)}</td><td>${r.risk_score ?? '–'}</td><td>${r.model_version ?? '–'}</td><td>${fin(r.financials)}</td><td>${time(r.created_at)}</td></tr>`;

type Detail = AppRow & {
  contact_email: string; purpose: string; risk_decision: string | null; risk_reasons: string[] | null; scoring_error: string | null;
  review: { decision: string; reviewer: string; note: string | null; at: string } | null;
  history: { status: string; at: string; reason?: string | null }[];
  payout_state: string | null; payout_id: string | null; payout_failure: string | null; payout_attempts: number | null;
};

async function detail(orm: MikroORM, id: string): Promise<Detail | undefined> {
  const [r] = await orm.em.fork().execute<Detail[]>(
    `select a.${COLUMNS.split(', ').join(', a.')}, a.contact_email, a.purpose, a.risk_decision, a.risk_reasons, a.scoring_error, a.review, a.history,
            p.state as payout_state, p.gateway_payout_id as payout_id, p.failure_reason as payout_failure, p.attempts as payout_attempts
       from funding.applications a left join funding.payouts p on p.application_id = a.id where a.id = ?`, [id]);
  return r;
}

const outcome = (d: Detail): Html => html`${facts([
  ['Status', status(d.status)],
  ['Review', d.review ? html`${d.review.decision} by ${d.review.reviewer} at ${time(d.review.at)}${d.review.note ? html`: “${d.review.note}”` : ''}` : '–'],
  ['Payout', d.payout_state ? html`${status(d.payout_state)}${d.payout_id ? html` (${d.payout_id})` : ''}${d.payout_failure ? html`: ${d.payout_failure}` : ''}` : 'none'],
  ['Last change', time(d.updated_at)],
])}`;

export function fundingRoutes({ orm, identity, funding, open, intervalMs }: { orm: MikroORM; identity: ClusterApi; funding: ClusterApi; open: Set<() => void>; intervalMs: number }) {
  return new Hono<ConsoleEnv>()
    .get('/', async (c) => {
      const q = validate(c.req.query(), Query);
      const params: unknown[] = [q.status];
      let keyset = '';
      if (q.cursor) { const k = decodeKeyset(q.cursor); keyset = ' and (created_at, id) < (?, ?)'; params.push(k.at, k.id); }
      // The review queue is worked oldest first; every other list shows the newest first.
      const queue = q.status === 'pending_review';
      const rows = await orm.em.fork().execute<AppRow[]>(
        `select ${COLUMNS} from funding.applications where status = ?${queue ? keyset.replace('<', '>') : keyset}
          order by created_at ${queue ? 'asc' : 'desc'}, id ${queue ? 'asc' : 'desc'} limit ${PAGE + 1}`, params);
      const shown = rows.slice(0, PAGE);
      const next = rows.length > PAGE ? encodeKeyset(shown.at(-1)!.created_at, shown.at(-1)!.id) : null;
      return c.html(page({
        title: queue ? 'Funding: review queue' : `Funding: ${q.status}`, section: 'funding', principal: c.get('principal'),
        notice: c.req.query('notice') ? { kind: 'ok', text: c.req.query('notice')! } : null, body: html`
<nav aria-label="Applications by status"><ul class="statuses">${APPLICATION_STATUSES.map((s) => html`<li><a href="/admin/funding?status=${s}"${s === q.status ? html` aria-current="page"` : ''}>${s}</a></li>`)}</ul></nav>
<table><caption>${queue ? 'Applications waiting for a reviewer, oldest first' : `Applications ${q.status}, newest first`}</caption>
<thead><tr><th scope="col">Business</th><th scope="col">Amount</th><th scope="col">Status</th><th scope="col">Risk score</th><th scope="col">Model version</th><th scope="col">Financials</th><th scope="col">Received</th></tr></thead>
<tbody>${shown.map(appRow)}</tbody></table>
${shown.length ? '' : html`<p>No applications ${q.status}.</p>`}
${pager('/admin/funding', present({ status: q.status }), next)}`,
      }));
    })
    .get('/:id', async (c) => {
      const id = c.req.param('id');
      const d = UUID.test(id) ? await detail(orm, id.toLowerCase()) : undefined;
      if (!d) throw new HttpError(404, 'NOT_FOUND', `There is no application ${id}.`);
      const notice = c.req.query('notice') ? { kind: 'ok' as const, text: c.req.query('notice')! } : c.req.query('error') ? { kind: 'error' as const, text: c.req.query('error')! } : null;
      return c.html(page({
        title: `Application from ${d.business_name}`, section: 'funding', principal: c.get('principal'), notice, body: html`
<p><a href="/admin/funding">Back to the review queue</a></p>
<section aria-labelledby="app-h"><h2 id="app-h">Application</h2>
${facts([['Id', d.id], ['Business', `${d.business_name} (${d.business_id})`], ['Contact', d.contact_email], ['Amount', `${money(d.amount_minor, d.currency)} over ${d.term_months} months`], ['Purpose', d.purpose], ['Received', time(d.created_at)]])}
<h3>Financials</h3>
${facts([['Annual revenue', d.financials.annualRevenue.toLocaleString('en')], ['Years trading', d.financials.yearsTrading], ['Existing debt', d.financials.existingDebt.toLocaleString('en')]])}
<h3>Risk</h3>
${facts([['Score', d.risk_score], ['Probability of default', d.probability_of_default?.toFixed(4)], ['Model decision', d.risk_decision], ['Model version', d.model_version], ['Reasons', (d.risk_reasons ?? []).join('; ')], ['Scoring error', d.scoring_error]])}
</section>
<section aria-labelledby="outcome-h" data-live="/admin/funding/${d.id}/live"><h2 id="outcome-h">Decision and payout</h2>
<p class="live" role="status" data-live-status></p>
<div id="outcome">${outcome(d)}</div>
</section>
${d.status === 'pending_review' ? html`<section aria-labelledby="decide-h"><h2 id="decide-h">Decide</h2>
<form method="post" action="/admin/funding/${d.id}/decision">
<fieldset><legend>Decision</legend>
<label><input type="radio" name="decision" value="approved" required> Approve</label>
<label><input type="radio" name="decision" value="rejected"> Reject</label></fieldset>
<div class="field"><label for="note">Note (recorded with your name and the time)</label><textarea id="note" name="note" maxlength="2000" rows="3"></textarea></div>
<p><button type="submit" class="primary">Record decision</button></p>
</form></section>` : ''}
<section aria-labelledby="hist-h"><h2 id="hist-h">History</h2>
<ol>${(d.history ?? []).map((h) => html`<li>${status(h.status)} at ${time(h.at)}${h.reason ? html` (${h.reason})` : ''}</li>`)}</ol></section>`,
      }));
    })
    .get('/:id/live', (c) => {
      const id = c.req.param('id');
      if (!UUID.test(id)) throw new HttpError(404, 'NOT_FOUND', `There is no application ${id}.`);
      return liveStream(c, open, async (send, stream) => {
        let last = '';
        void (async () => {
          while (!stream.aborted && !stream.closed) {
            const d = await detail(orm, id.toLowerCase()).catch(() => undefined);
            if (d) {
              const markup = String(await outcome(d));
              if (markup !== last) { last = markup; await send('html', { id: 'outcome', html: markup, announce: `${d.status}${d.payout_state ? `, payout ${d.payout_state}` : ''}` }); }
              if (['rejected', 'disbursed', 'disbursement_failed'].includes(d.status)) { await send('end', {}); break; }
            }
            await stream.sleep(intervalMs);
          }
        })();
      });
    })
    .post('/:id/decision', async (c) => {
      const id = c.req.param('id');
      if (!UUID.test(id)) throw new HttpError(404, 'NOT_FOUND', `There is no application ${id}.`);
      const body = await c.req.parseBody();
      const form = validate({ decision: body.decision, note: typeof body.note === 'string' && body.note.trim() ? body.note.trim() : undefined }, Decision);
      const auth = { authorization: `Bearer ${c.get('accessToken')}` };
      // Recorded as the account's email (the token carries only its id): who decided, in words a person reads.
      const me = await identity('/api/users/me', { headers: auth });
      const reviewer = me.ok ? ((await me.json()) as { email: string }).email : c.get('principal').sub;
      const res = await funding(`/api/funding/applications/${id}/decision`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
        body: JSON.stringify({ decision: form.decision, reviewer, ...(form.note ? { note: form.note } : {}) }),
      });
      if (!res.ok) {
        const err = await res.json().catch(() => null) as { error?: { message?: string } } | null;
        return c.redirect(`/admin/funding/${id}?${new URLSearchParams({ error: `The decision was not recorded: ${err?.error?.message ?? `funding answered ${res.status}`}` })}`, 303);
      }
      return c.redirect(`/admin/funding/${id}?${new URLSearchParams({ notice: `Recorded: ${form.decision} by ${reviewer}.` })}`, 303);
    });
}
