// The console's page shell and the small pieces every page uses. Pages are HTML rendered
// on the server with hono/html's tagged templates (every value escaped unless it is
// itself a template), so Node runs them as they are: no JSX, no build step.
// Every page works without JavaScript (links and plain forms); console.js only adds the
// live updates (Server-Sent Events).
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { Principal } from '../../kit/index.ts';

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export type Section = 'orders' | 'lending' | 'funding' | 'dlq' | 'streams';

const NAV: { section: Section; href: string; label: string; adminOnly: boolean }[] = [
  { section: 'orders', href: '/admin/orders', label: 'Orders', adminOnly: true },
  { section: 'lending', href: '/admin/lending', label: 'Lending', adminOnly: true },
  { section: 'funding', href: '/admin/funding', label: 'Funding', adminOnly: false },
  { section: 'dlq', href: '/admin/dlq', label: 'Dead letters', adminOnly: true },
  { section: 'streams', href: '/admin/streams', label: 'Streams', adminOnly: true },
];

export const isAdmin = (p: Principal) => p.roles.includes('admin');

/** A flash message after a form: `?notice=` on the redirect target. */
export type Notice = { kind: 'ok' | 'error'; text: string };

/** The whole page. `page({ title: 'Orders', section: 'orders', principal, body })` */
export function page(o: { title: string; section?: Section; principal?: Principal; body: Html; notice?: Notice | null }): Html {
  const nav = o.principal ? NAV.filter((n) => !n.adminOnly || isAdmin(o.principal!)) : [];
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<!-- The app sends Referrer-Policy: no-referrer, under which a browser posts forms with
     Origin: null, and the console's forms are checked by their Origin (session.ts). -->
<meta name="referrer" content="same-origin">
<title>${o.title} · orderflow console</title>
<link rel="stylesheet" href="/admin/assets/console.css">
<script src="/admin/assets/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to main content</a>
<header class="top">
  <p class="brand">orderflow console</p>
  ${nav.length ? html`<nav aria-label="Console sections"><ul>${nav.map((n) => html`<li><a href="${n.href}"${n.section === o.section ? html` aria-current="page"` : ''}>${n.label}</a></li>`)}</ul></nav>` : ''}
  ${o.principal ? html`<form method="post" action="/admin/logout" class="signout"><span class="who">${o.principal.roles.filter((r) => r === 'admin' || r === 'reviewer').join(', ')}</span> <button type="submit">Sign out</button></form>` : ''}
</header>
<main id="main" tabindex="-1">
<h1>${o.title}</h1>
${o.notice ? html`<p class="notice ${o.notice.kind}" role="${o.notice.kind === 'error' ? 'alert' : 'status'}">${o.notice.text}</p>` : ''}
${o.body}
</main>
</body>
</html>`;
}

/** A timestamp as a machine-readable <time> showing UTC to the second. */
export function time(v: Date | string | null | undefined): Html | string {
  if (!v) return '–';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return html`<time datetime="${d.toISOString()}">${d.toISOString().replace('T', ' ').slice(0, 19)}</time>`;
}

export const money = (minor: number | string | null | undefined, currency: string | null | undefined) =>
  minor === null || minor === undefined ? '–' : `${(Number(minor) / 100).toFixed(2)} ${currency ?? ''}`.trim();

/** A labelled text input. */
export function field(o: { name: string; label: string; value?: string | null; type?: string; hint?: string; required?: boolean; autocomplete?: string }): Html {
  const id = `f-${o.name}`;
  return html`<div class="field"><label for="${id}">${o.label}</label><input id="${id}" name="${o.name}" type="${o.type ?? 'text'}" value="${o.value ?? ''}"${o.required ? html` required` : ''}${o.autocomplete ? html` autocomplete="${o.autocomplete}"` : ''}${o.hint ? html` aria-describedby="${id}-hint"` : ''}>${o.hint ? html`<small id="${id}-hint">${o.hint}</small>` : ''}</div>`;
}

/** A labelled select; `''` is the "any" option. */
export function select(o: { name: string; label: string; value?: string | null; options: readonly string[]; any?: string }): Html {
  const id = `f-${o.name}`;
  return html`<div class="field"><label for="${id}">${o.label}</label><select id="${id}" name="${o.name}">${o.any !== undefined ? html`<option value="">${o.any}</option>` : ''}${o.options.map((v) => html`<option${v === o.value ? html` selected` : ''}>${v}</option>`)}</select></div>`;
}

/** "Next page" for keyset paging: the current query with `cursor` replaced. */
export function pager(path: string, query: Record<string, string | undefined>, nextCursor: string | null): Html | string {
  if (!nextCursor) return '';
  const q = new URLSearchParams(Object.entries({ ...query, cursor: nextCursor }).filter((e): e is [string, string] => Boolean(e[1])));
  return html`<nav aria-label="Pages" class="pager"><a href="${path}?${q.toString()}" rel="next">Next page</a></nav>`;
}

/** A definition list from pairs. */
export const facts = (pairs: [string, unknown][]): Html =>
  html`<dl class="facts">${pairs.map(([k, v]) => html`<dt>${k}</dt><dd>${v === null || v === undefined || v === '' ? '–' : v}</dd>`)}</dl>`;

export const status = (s: string | null | undefined): Html => html`<span class="status s-${(s ?? '').toLowerCase()}">${s ?? '–'}</span>`;

/** Pretty JSON in a <pre>, for payloads and documents. */
export const jsonBlock = (v: unknown, label: string): Html => html`<pre class="json" tabindex="0" aria-label="${label}">${JSON.stringify(v, null, 2)}</pre>`;

/** The query string parameters that are set, for links that keep the filters. */
export const present = (q: Record<string, string | undefined>): Record<string, string> =>
  Object.fromEntries(Object.entries(q).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
