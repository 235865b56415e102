// The dead-letter queue in the console: filter by stream, consumer, subject, reason and
// business key (the kit's DLQ admin does the reading: kit/dlq.ts), an entry's payload,
// headers, error and deliveries; edit the payload (checked against its subject's schema
// before anything is published) and redrive; bulk redrive by filter after a dry-run count
// and a confirmation; delete.
import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { DlqAdmin, DlqEntry } from '../../kit/index.ts';
import { HttpError, validate } from '../../kit/index.ts';
import { facts, field, jsonBlock, page, pager, present, time, type Html, type Notice } from './layout.ts';
import type { ConsoleEnv } from './session.ts';
import { optional } from './sql.ts';

const name = optional(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only'));
const Filter = z.object({
  stream: name, consumer: name,
  subject: optional(z.string().regex(/^[A-Za-z0-9_.*>$-]{1,256}$/, 'a NATS subject (wildcards * and > allowed)')),
  reason: optional(z.string().max(64)),
  key: optional(z.string().max(256)),
});
type Filter = z.infer<typeof Filter>;
const REASONS = ['max-deliveries', 'non-retryable', 'invalid-message'] as const;

const clipped = (s: string, n = 140) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** Entries as a table; ids link to the entry's page. Used by the order and lending pages too. */
export function dlqTable(items: DlqEntry[], caption: string): Html {
  return html`<table><caption>${caption}</caption>
<thead><tr><th scope="col">Entry</th><th scope="col">Stream</th><th scope="col">Consumer</th><th scope="col">Subject</th><th scope="col">Reason</th><th scope="col">Deliveries</th><th scope="col">Error</th><th scope="col">At</th></tr></thead>
<tbody>${items.map((e) => html`<tr id="dlq-${e.id}"><td><a href="/admin/dlq/${e.id}">#${e.id}</a></td><td>${e.stream}</td><td>${e.consumer}</td><td>${e.subject}</td><td>${e.reason}</td><td>${e.deliveries}</td><td>${clipped(e.error)}</td><td>${time(e.at)}</td></tr>`)}</tbody></table>`;
}

const hiddenFilter = (f: Filter) => Object.entries(present(f as Record<string, string | undefined>)).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`);
const describe = (f: Filter) => Object.entries(present(f as Record<string, string | undefined>)).map(([k, v]) => `${k} = ${v}`).join(', ') || 'no filter (every entry)';

async function formOf(c: Context): Promise<Record<string, string>> {
  const body = await c.req.parseBody();
  return Object.fromEntries(Object.entries(body).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

export function dlqRoutes({ dlq }: { dlq: DlqAdmin }) {
  const entryPage = (c: Context<ConsoleEnv>, e: DlqEntry, o: { notice?: Notice; text?: string; status?: 200 | 400 } = {}) => c.html(page({
    title: `Dead letter #${e.id}`, section: 'dlq', principal: c.get('principal'), notice: o.status === 400 ? null : o.notice, body: html`
<p><a href="/admin/dlq">Back to the dead letters</a></p>
<section aria-labelledby="where-h"><h2 id="where-h">Where it came from</h2>
${facts([['Stream', e.stream], ['Consumer', e.consumer], ['Subject', e.subject], ['Original sequence', e.seq], ['Deliveries', e.deliveries], ['Reason', e.reason], ['Dead-lettered at', time(e.at)]])}
<h3>Error</h3><pre class="json" tabindex="0" aria-label="Error">${e.error || '–'}</pre>
<h3>Headers</h3>
${Object.keys(e.headers).length ? html`<table><caption>Headers of the original message</caption><thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead><tbody>${Object.entries(e.headers).map(([k, v]) => html`<tr><td>${k}</td><td>${v}</td></tr>`)}</tbody></table>` : html`<p>None.</p>`}
</section>
<section aria-labelledby="fix-h"><h2 id="fix-h">Payload</h2>
<form method="post" action="/admin/dlq/${e.id}/redrive">
<div class="field"><label for="payload">Payload (JSON; checked against the schema of ${e.subject} before it is sent)</label>
<textarea id="payload" name="payload" spellcheck="false"${o.status === 400 ? html` aria-invalid="true" aria-describedby="payload-error"` : ''}>${o.text ?? JSON.stringify(e.data, null, 2)}</textarea>
${o.status === 400 && o.notice ? html`<p id="payload-error" class="notice error" role="alert">${o.notice.text}</p>` : ''}</div>
<p><button type="submit" class="primary">Redrive with this payload</button></p>
</form>
<form method="post" action="/admin/dlq/${e.id}/delete"><p><button type="submit" class="danger">Delete this entry</button></p></form>
</section>`,
  }), o.status ?? 200);

  return new Hono<ConsoleEnv>()
    .get('/', async (c) => {
      const raw = c.req.query();
      const f = validate(raw, Filter.extend({ cursor: optional(z.string().max(200)) }));
      const { cursor, ...filter } = f;
      const result = await dlq.page({ ...filter, cursor, limit: 50 });
      const notice = raw.notice ? { kind: 'ok' as const, text: raw.notice } : null;
      return c.html(page({
        title: 'Dead letters', section: 'dlq', principal: c.get('principal'), notice, body: html`
<search><form class="filters" method="get" action="/admin/dlq" aria-label="Filter dead letters">
  ${field({ name: 'stream', label: 'Stream', value: raw.stream, hint: 'e.g. LENDING_ITEMS' })}
  ${field({ name: 'consumer', label: 'Consumer', value: raw.consumer })}
  ${field({ name: 'subject', label: 'Subject', value: raw.subject, hint: 'wildcards * and >' })}
  <div class="field"><label for="f-reason">Reason</label><select id="f-reason" name="reason"><option value="">Any reason</option>${REASONS.map((r) => html`<option${r === raw.reason ? html` selected` : ''}>${r}</option>`)}</select></div>
  ${field({ name: 'key', label: 'Business key', value: raw.key, hint: 'orderId, order, application or lending-order id, loanId' })}
  <button type="submit" class="primary">Filter</button> <a href="/admin/dlq">Clear</a>
</form></search>
<p>${result.total} ${result.total === 1 ? 'entry matches' : 'entries match'}: ${describe(filter)}.</p>
${result.items.length ? dlqTable(result.items, 'Dead letters, oldest first') : html`<p>No dead letters match.</p>`}
${pager('/admin/dlq', present(filter as Record<string, string | undefined>), result.nextCursor)}
${result.total ? html`<form method="post" action="/admin/dlq/redrive/preview">${hiddenFilter(filter)}<button type="submit">Redrive every matching entry…</button></form>` : ''}`,
      }));
    })
    // Bulk redrive, step one: a dry run counts what the filter matches now; nothing is sent.
    .post('/redrive/preview', async (c) => {
      const f = validate(await formOf(c), Filter);
      const { matched } = await dlq.redriveMany(f, { dryRun: true });
      return c.html(page({
        title: 'Redrive dead letters', section: 'dlq', principal: c.get('principal'), body: html`
<p role="status">Dry run: <strong>${matched}</strong> ${matched === 1 ? 'entry matches' : 'entries match'} ${describe(f)}.</p>
${matched ? html`<form method="post" action="/admin/dlq/redrive">${hiddenFilter(f)}<input type="hidden" name="expected" value="${matched}">
<p>Each matching entry is published again to its original subject and removed from the dead-letter queue. Entries that fail again come back as new entries.</p>
<button type="submit" class="primary">Redrive ${matched} ${matched === 1 ? 'entry' : 'entries'}</button> <a href="/admin/dlq?${new URLSearchParams(present(f as Record<string, string | undefined>))}">Cancel</a></form>` : html`<p><a href="/admin/dlq">Back</a></p>`}`,
      }));
    })
    // Step two, confirmed: redrives what matches when it runs (it may differ from the dry run's count; the result says both).
    .post('/redrive', async (c) => {
      const form = await formOf(c);
      const f = validate(form, Filter);
      const r = await dlq.redriveMany(f);
      const expected = Number(form.expected);
      const drift = Number.isFinite(expected) && expected !== r.matched ? ` (the dry run counted ${expected}; the queue changed meanwhile)` : '';
      return c.redirect(`/admin/dlq?${new URLSearchParams({ notice: `Redriven ${r.redriven} of ${r.matched} matching ${r.matched === 1 ? 'entry' : 'entries'}${drift}.` })}`, 303);
    })
    .get('/:id', async (c) => {
      const e = await dlq.get(c.req.param('id'));
      if (!e) throw new HttpError(404, 'NOT_FOUND', `There is no dead letter #${c.req.param('id')} (redriven or deleted already?).`);
      return entryPage(c, e, { notice: c.req.query('notice') ? { kind: 'ok', text: c.req.query('notice')! } : undefined });
    })
    .post('/:id/redrive', async (c) => {
      const id = c.req.param('id');
      const form = await formOf(c);
      const text = form.payload ?? '';
      const e = await dlq.get(id);
      if (!e) throw new HttpError(404, 'NOT_FOUND', `There is no dead letter #${id} (redriven or deleted already?).`);
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (err) {
        return entryPage(c, e, { status: 400, text, notice: { kind: 'error', text: `The payload is not valid JSON: ${(err as Error).message}. Nothing was sent.` } });
      }
      try {
        await dlq.redrive(id, data);
      } catch (err) {
        if (err instanceof HttpError && err.status === 400) {
          const details = (err.details ?? []).map((d) => `${d.field || '(payload)'}: ${d.message}`).join('; ');
          return entryPage(c, e, { status: 400, text, notice: { kind: 'error', text: `The payload does not fit the schema of ${e.subject}: ${details || err.message}. Nothing was sent; the entry stays.` } });
        }
        throw err;
      }
      return c.redirect(`/admin/dlq?${new URLSearchParams({ notice: `Entry #${id} redriven to ${e.subject}.` })}`, 303);
    })
    .post('/:id/delete', async (c) => {
      const id = c.req.param('id');
      if (!(await dlq.remove(id))) throw new HttpError(404, 'NOT_FOUND', `There is no dead letter #${id}.`);
      return c.redirect(`/admin/dlq?${new URLSearchParams({ notice: `Entry #${id} deleted.` })}`, 303);
    });
}
