// The operator console at /admin (CONTRACTS.md "Running the cluster"): sign-in, then
// orders, lending, funding, the DLQ and the streams. Reviewers see funding only; every
// other page answers them 403. Nothing but the sign-in page and its two static files is
// served without a session.
import { readFileSync } from 'node:fs';
import { Hono, type Context } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { Access, App, DlqAdmin, Logger, Metrics, MikroORM, Principal, RouteTable } from '../../kit/index.ts';
import { allowedMethods, HttpError, isUnavailable } from '../../kit/index.ts';
import type { AdminConfig } from '../config.ts';
import { dlqRoutes } from './dlq.ts';
import { fundingRoutes } from './funding.ts';
import { isAdmin, page } from './layout.ts';
import { lendingRoutes } from './lending.ts';
import { orderFeed, orderRoutes } from './orders.ts';
import { clusterApi, CONSOLE_ROLES, consoleVerifier, requireConsole, safeNext, sameOrigin, setSession, signIn, signOut, type ConsoleEnv, type Refusal } from './session.ts';
import { isMissingTable, schemaOf } from './sql.ts';
import { streamRoutes } from './streams.ts';

const ASSETS = {
  'console.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('./assets/console.js', import.meta.url), 'utf8') },
  'console.css': { type: 'text/css; charset=utf-8', body: readFileSync(new URL('./assets/console.css', import.meta.url), 'utf8') },
} as const;

const Login = z.object({ email: z.string().trim().min(1).max(254), password: z.string().min(1).max(128), next: z.string().max(2000).optional() });

function loginPage(c: Context, o: { next?: string; email?: string; error?: string; status?: 200 | 400 | 401 | 403 | 429 | 503 }) {
  return c.html(page({
    title: 'Sign in', notice: o.error ? { kind: 'error', text: o.error } : null, body: html`
<form method="post" action="/admin/login" class="login" aria-label="Sign in to the operator console">
<input type="hidden" name="next" value="${safeNext(o.next)}">
<div class="field"><label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required value="${o.email ?? ''}"${o.error ? html` aria-invalid="true"` : ''}></div>
<div class="field"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></div>
<button type="submit" class="primary">Sign in</button>
</form>`,
  }), o.status ?? 200, { 'Cache-Control': 'no-store' });
}

/**
 * Who may open each section of the console. The section guards below and the route table's
 * record of every console page (console.access, given to routes.mount) both come from here.
 */
const SECTIONS: Record<string, readonly string[]> = {
  orders: ['admin'], lending: ['admin'], dlq: ['admin'], streams: ['admin'], funding: CONSOLE_ROLES,
};

/** The access of a console page by its path: sign-in and its files are public, a section's pages its roles', the rest any console role's. */
export function consoleAccess(path: string): Access {
  if (path === '/admin/login' || path.startsWith('/admin/assets/')) return 'public';
  const section = /^\/admin\/(\w+)/.exec(path)?.[1];
  return { roles: [...(section && Object.hasOwn(SECTIONS, section) ? SECTIONS[section]! : CONSOLE_ROLES)] };
}

const refuse: Refusal = (c, status, why) => {
  c.header('Cache-Control', 'no-store');
  const wantsHtml = (c.req.header('accept') ?? 'text/html').includes('text/html') || c.req.method === 'POST';
  if (!wantsHtml) return c.text(why, status);
  return c.html(page({
    title: status === 401 ? 'Not signed in' : 'Not allowed', body: html`<p>${why}</p>
<p>${status === 401 ? html`<a href="/admin/login">Sign in</a>` : html`<a href="/admin">Back to the console</a>`}</p>`,
  }), status);
};

/** `table`: the process's route table, in which routes.mount records the console's pages (for 405 and Allow). */
export type ConsoleDeps = { app: App; table: RouteTable; orm: MikroORM; dlq: DlqAdmin; metrics: Metrics; log: Logger; config: AdminConfig };

/** `routes.mount({ prefix: '/admin', app: console.routes, access: console.access, … })`; `console.stop()` ends the live feeds and open event streams. */
export function createConsole(d: ConsoleDeps) {
  const api = clusterApi(d.app, d.config.IDENTITY_URL);
  const fundingApi = clusterApi(d.app, d.config.FUNDING_URL);
  const verifier = consoleVerifier(api, d.config);
  const open = new Set<() => void>();
  const intervalMs = d.config.ADMIN_CONSOLE_LIVE_MS;
  const feed = orderFeed(d.orm, intervalMs, d.log);
  const guard = (allowed: (p: Principal) => boolean) => requireConsole({ api, verifier, allowed, refuse });
  const anyConsoleRole = guard(() => true);

  const routes = new Hono<ConsoleEnv>()
    // The CSP (own script only), no framing and nosniff come from the app's secure headers
    // (kit/http/secure-headers.ts); the console adds that its pages are never cached.
    .use('*', async (c, next) => {
      await next();
      if (!c.req.path.startsWith('/admin/assets/')) c.header('Cache-Control', 'no-store');
    })
    // A page asked with a method it does not take: 405 with Allow from the route table, as
    // for every other route, before the session check (signed in or not, the answer is the
    // same; a path the table does not know still gets the session check, then 404).
    .use('*', async (c, next) => {
      const allow = allowedMethods(d.table, c.req.path);
      if (!allow.length || allow.includes(c.req.method)) return await next();
      c.header('Allow', allow.join(', '));
      return await refuse(c, 405, `This page does not take ${c.req.method}; it takes ${allow.join(', ')}.`);
    })
    .get('/assets/:file', (c) => {
      const a = ASSETS[c.req.param('file') as keyof typeof ASSETS];
      if (!a) throw new HttpError(404, 'NOT_FOUND', 'no such file');
      return c.body(a.body, 200, { 'content-type': a.type, 'cache-control': 'no-cache' });
    })
    .get('/login', (c) => loginPage(c, { next: c.req.query('next') }))
    .post('/login', async (c) => {
      if (!sameOrigin(c)) return await refuse(c, 403, 'This form was not sent from a page of this console (its Origin does not match), so it was refused.');
      const body = await c.req.parseBody();
      const parsed = Login.safeParse({ email: body.email, password: body.password, next: typeof body.next === 'string' ? body.next : undefined });
      if (!parsed.success) return loginPage(c, { error: 'Enter your email and password.', status: 400, email: typeof body.email === 'string' ? body.email.slice(0, 254) : '' });
      const r = await signIn(api, verifier, parsed.data.email, parsed.data.password);
      if (!r.ok) return loginPage(c, { next: parsed.data.next, email: parsed.data.email, error: r.message, status: r.status as 401 });
      setSession(c, r.tokens);
      const next = safeNext(parsed.data.next);
      return c.redirect(next === '/admin' ? (isAdmin(r.principal) ? '/admin/orders' : '/admin/funding') : next, 303);
    })
    .post('/logout', anyConsoleRole, async (c) => {
      await signOut(c, api);
      return c.redirect('/admin/login', 303);
    })
    .get('/', anyConsoleRole, (c) => c.redirect(isAdmin(c.get('principal')) ? '/admin/orders' : '/admin/funding', 303));
  // One guard per request (`/x/*` matches `/x` too): a second would refresh with a token the first already rotated.
  for (const [section, roles] of Object.entries(SECTIONS)) routes.use(`/${section}/*`, guard((p) => roles.some((r) => p.roles.includes(r))));
  routes
    .route('/orders', orderRoutes({ orm: d.orm, dlq: d.dlq, feed, open }))
    .route('/lending', lendingRoutes({ orm: d.orm, dlq: d.dlq, open, intervalMs }))
    .route('/funding', fundingRoutes({ orm: d.orm, identity: api, funding: fundingApi, open, intervalMs }))
    .route('/dlq', dlqRoutes({ dlq: d.dlq }))
    .route('/streams', streamRoutes({ metrics: d.metrics, open, intervalMs }));

  // Anything else under /admin: signed in or not, the same answer as for an unknown page,
  // after the session check, so the console's map is not readable without signing in.
  routes.all('*', anyConsoleRole, (c) => c.html(page({ title: 'Not found', principal: c.get('principal'), body: html`<p>There is no such page. <a href="/admin">Back to the console</a></p>` }), 404));

  // Errors as pages: a person reads them. The status stays what the API would say.
  routes.onError((err, c) => {
    // A table that is not there: the service that owns it has never run against this database.
    const missingTable = isMissingTable(err);
    const status = err instanceof HttpError ? err.status : missingTable || isUnavailable(err) || (err as { status?: number }).status === 503 ? 503 : 500;
    if (status >= 500) d.log.warn({ err: String(err) }, 'console page failed');
    const text = err instanceof HttpError
      ? `${err.message}${err.details?.length ? `: ${err.details.map((x) => `${x.field} ${x.message}`).join('; ')}` : ''}`
      : missingTable ? `This page reads tables this database does not have yet (${schemaOf(err)}): start the service that owns them once.`
        : status === 503 ? 'A dependency (NATS or the database) is unavailable. Try again shortly.' : 'Something went wrong on our side. Try again shortly.';
    return c.html(page({ title: status === 404 ? 'Not found' : 'Could not show this page', principal: (c as Context<ConsoleEnv>).get('principal'), body: html`<p role="alert">${text}</p><p><a href="/admin">Back to the console</a></p>` }), status as 400);
  });

  return {
    routes,
    access: consoleAccess,
    stop() {
      feed.stop();
      for (const close of open) close();
    },
  };
}
