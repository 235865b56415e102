// The operator console over HTTP: nothing without a session, roles per section, the
// cookies' flags, refresh and logout, the Origin check on every form, the DLQ forms
// (schema-checked edit, dry run then confirmed bulk redrive, delete), a funding decision
// recorded with who, and the orders search against 100,000 orders on its indexes.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendToDlq } from '../../kit/dlq.ts';
import { eventually, startTestCluster, type TestCluster } from '../../testing/index.ts';
import { pendingReviewBody, waitForStatus } from '../../funding/test-fixtures.ts';
import { orderFeed } from './orders.ts';
import { ACCESS_COOKIE, REFRESH_COOKIE } from './session.ts';
import { account, ADMIN, browserish, CONSOLE_ENV, PASSWORD, signedIn, type Browserish } from './test-support.ts';

let c: TestCluster;
let admin: Browserish;
let reviewer: Browserish;
let reviewerEmail: string;

beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'identity,admin,orders,funding,funding-scoring,lending', ...CONSOLE_ENV });
  reviewerEmail = `reviewer-${randomUUID().slice(0, 8)}@example.com`;
  const r = await account(c, reviewerEmail, ['reviewer']);
  admin = await signedIn(c, ADMIN);
  reviewer = await signedIn(c, r);
}, 60_000);
afterAll(async () => { await c?.close(); });

const someUuid = '00000000-0000-4000-8000-000000000000';
const PAGES = ['/admin', '/admin/orders', '/admin/orders/live', `/admin/orders/${someUuid}`, '/admin/lending', `/admin/lending/${someUuid}`,
  `/admin/lending/live?ids=${someUuid}`, '/admin/funding', '/admin/funding?status=approved', `/admin/funding/${someUuid}`, `/admin/funding/${someUuid}/live`,
  '/admin/dlq', '/admin/dlq/1', '/admin/streams', '/admin/streams/live', '/admin/no-such-page'];
const ACTIONS = ['/admin/logout', '/admin/dlq/1/redrive', '/admin/dlq/1/delete', '/admin/dlq/redrive', '/admin/dlq/redrive/preview', `/admin/funding/${someUuid}/decision`];
const ADMIN_ONLY = PAGES.filter((p) => !p.startsWith('/admin/funding') && p !== '/admin' && p !== '/admin/no-such-page');

let dlqSeq = 0;
async function deadLetter(data: unknown, subject = 'lending.items.reserve', stream = 'LENDING_ITEMS', consumer = 'lending-items') {
  await sendToDlq(c.deps.nats.js, {
    stream, consumer, subject, seq: 1_000_000 + ++dlqSeq, deliveries: 1,
    reason: 'non-retryable', error: 'LOAN_NOT_FOUND', data: new TextEncoder().encode(JSON.stringify(data)),
  });
}
const dlqIdsOf = async (key: string) => (await c.get(`/api/admin/dlq?key=${key}`)).body.items.map((e: { id: string }) => e.id) as string[];

describe('without a session', () => {
  it('sends every page to the sign-in form, and a script or event stream gets 401', async () => {
    const anon = browserish(c);
    for (const path of PAGES) {
      const r = await anon.get(path);
      expect([path, r.status]).toEqual([path, 303]);
      expect(r.location).toBe(`/admin/login?next=${encodeURIComponent(path)}`);
      const es = await anon.get(path, { accept: 'text/event-stream' });
      expect([path, es.status]).toEqual([path, 401]);
    }
  });

  it('refuses every action, with or without a matching Origin', async () => {
    const anon = browserish(c);
    for (const path of ACTIONS) {
      expect([path, (await anon.post(path, {})).status]).toEqual([path, 401]);
      expect([path, (await anon.post(path, {}, { origin: 'http://evil.example' })).status]).toEqual([path, 403]);
    }
  });

  it('does not take a forged or foreign token for a session', async () => {
    const b = browserish(c);
    b.cookies.set(ACCESS_COOKIE, 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwicm9sZXMiOlsiYWRtaW4iXX0.');
    b.cookies.set(REFRESH_COOKIE, 'not-a-refresh-token');
    expect((await b.get('/admin/dlq')).status).toBe(303);
    expect(b.cookies.size).toBe(0);
  });

  it('answers a page asked with a method it does not take with 405 and Allow, from the route table; an unknown page still needs a session', async () => {
    const send = (method: string, path: string) => fetch(c.url + path, { method, redirect: 'manual', headers: { accept: 'text/html', origin: c.url } });
    for (const [method, path, allow] of [['DELETE', '/admin', 'GET, HEAD'], ['PUT', '/admin/orders', 'GET, HEAD'], ['GET', '/admin/logout', 'POST'],
      ['DELETE', `/admin/dlq/1/redrive`, 'POST'], ['PATCH', '/admin/login', 'GET, HEAD, POST'], ['POST', '/admin/assets/console.js', 'GET, HEAD']] as const) {
      const r = await send(method, path);
      expect([method, path, r.status, r.headers.get('allow')?.split(', ').sort().join(', ')]).toEqual([method, path, 405, allow]);
      expect(await r.text()).toContain(`does not take ${method}`);
    }
    // Signed in, the same answer.
    const r = await fetch(`${c.url}/admin/streams`, { method: 'DELETE', headers: { cookie: [...admin.cookies].map(([k, v]) => `${k}=${v}`).join('; '), origin: c.url } });
    expect([r.status, r.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    expect((await send('DELETE', '/admin/no-such-page')).status).toBe(401);
    // Every page is in the route table with the access its guard enforces; /admin and its sign-in page in /openapi.json.
    const table = c.deps.routes.table.routes;
    expect(table.find((e) => e.method === 'GET' && e.path === '/admin/dlq/{id}')?.access).toEqual({ roles: ['admin'] });
    expect(table.find((e) => e.method === 'POST' && e.path === '/admin/funding/{id}/decision')?.access).toEqual({ roles: ['admin', 'reviewer'] });
    expect(table.find((e) => e.method === 'GET' && e.path === '/admin/login')?.access).toBe('public');
    const spec = (await c.as(null).get('/openapi.json')).body;
    expect(spec.paths['/admin'].get.security).toEqual([{ consoleSession: [] }]);
    expect(Object.keys(spec.paths).filter((p) => p.startsWith('/admin/') && !p.startsWith('/admin/login'))).toEqual([]);
  });

  it('serves the sign-in page and its two static files, and nothing else', async () => {
    const anon = browserish(c);
    expect((await anon.get('/admin/login')).status).toBe(200);
    expect((await anon.get('/admin/assets/console.js')).status).toBe(200);
    expect((await anon.get('/admin/assets/console.css')).status).toBe(200);
    expect((await anon.get('/admin/assets/secret.txt')).status).toBe(404);
  });
});

describe('signing in', () => {
  it('keeps the tokens in HttpOnly, SameSite=Strict cookies scoped to /admin', async () => {
    const b = browserish(c);
    const r = await b.post('/admin/login', { email: ADMIN.email, password: ADMIN.password });
    expect([r.status, r.location]).toEqual([303, '/admin/orders']);
    expect(r.setCookie).toHaveLength(2);
    for (const line of r.setCookie) expect(line).toMatch(/HttpOnly/i), expect(line).toMatch(/SameSite=Strict/i), expect(line).toMatch(/Path=\/admin/);
    // Over TLS (as the proxy in front says) the cookies are Secure too.
    const tls = await browserish(c).post('/admin/login', { email: ADMIN.email, password: ADMIN.password }, { 'x-forwarded-proto': 'https' });
    for (const line of tls.setCookie) expect(line).toMatch(/; Secure/i);
  });

  it('says so on a wrong password, and refuses a customer account without a session', async () => {
    const b = browserish(c);
    const wrong = await b.post('/admin/login', { email: ADMIN.email, password: 'not-the-password' });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toContain('The email or the password is wrong.');
    const customer = `customer-${randomUUID().slice(0, 8)}@example.com`;
    await c.post('/api/auth/register', { email: customer, password: PASSWORD, name: 'C' });
    const r = await b.post('/admin/login', { email: customer, password: PASSWORD });
    expect(r.status).toBe(403);
    expect(r.text).toContain('no access to the operator console');
    expect(b.cookies.size).toBe(0);
  });

  it('refuses a sign-in form posted from another site', async () => {
    const r = await browserish(c).post('/admin/login', { email: ADMIN.email, password: ADMIN.password }, { origin: 'http://evil.example' });
    expect(r.status).toBe(403);
    expect(r.setCookie).toHaveLength(0);
  });

  it('follows only console paths after sign-in', async () => {
    for (const [next, to] of [['/admin/dlq?stream=X', '/admin/dlq?stream=X'], ['//evil.example/admin', '/admin/orders'], ['https://evil.example', '/admin/orders'], ['/administrator', '/admin/orders']]) {
      const r = await browserish(c).post('/admin/login', { email: ADMIN.email, password: ADMIN.password, next: next! });
      expect([next, r.location]).toEqual([next, to]);
    }
  });

  it('renews an expired access token with the refresh token, and logout ends the session for good', async () => {
    const b = await signedIn(c, ADMIN);
    const refresh = b.cookies.get(REFRESH_COOKIE)!;
    b.cookies.delete(ACCESS_COOKIE); // as the browser does once its max-age passed
    const r = await b.get('/admin/orders');
    expect(r.status).toBe(200);
    expect(b.cookies.get(ACCESS_COOKIE)).toBeTruthy();
    expect(b.cookies.get(REFRESH_COOKIE)).not.toBe(refresh);

    const out = await b.post('/admin/logout', {});
    expect([out.status, out.location]).toEqual([303, '/admin/login']);
    expect(b.cookies.size).toBe(0);
    // The refresh token of the ended session no longer signs anyone in.
    const stale = browserish(c);
    stale.cookies.set(REFRESH_COOKIE, b.cookies.get(REFRESH_COOKIE) ?? refresh);
    expect((await stale.get('/admin/orders')).status).toBe(303);
  });
});

describe('roles', () => {
  it('lets a reviewer see funding and nothing else', async () => {
    expect((await reviewer.get('/admin')).location).toBe('/admin/funding');
    expect((await reviewer.get('/admin/funding')).status).toBe(200);
    for (const path of ADMIN_ONLY) expect([path, (await reviewer.get(path)).status]).toEqual([path, 403]);
    for (const path of ['/admin/dlq/1/redrive', '/admin/dlq/1/delete', '/admin/dlq/redrive', '/admin/dlq/redrive/preview']) {
      expect([path, (await reviewer.post(path, {})).status]).toEqual([path, 403]);
    }
  });

  it('serves an admin every page', async () => {
    for (const path of PAGES.filter((p) => !p.includes('/live') && !p.includes(someUuid) && p !== '/admin/dlq/1' && p !== '/admin/no-such-page')) {
      const r = await admin.get(path);
      expect([path, r.status]).toEqual([path, path === '/admin' ? 303 : 200]);
    }
    expect((await admin.get(`/admin/orders/${someUuid}`)).status).toBe(404);
    expect((await admin.get('/admin/no-such-page')).status).toBe(404);
  });

  it('labels every form control and marks the page up with landmarks', async () => {
    for (const path of ['/admin/orders', '/admin/dlq', '/admin/lending', '/admin/funding', '/admin/streams', '/admin/login']) {
      const page = (await (path === '/admin/login' ? browserish(c) : admin).get(path)).text;
      expect(page).toMatch(/<main id="main"/);
      expect(page).toMatch(/<h1>/);
      for (const [, id] of page.matchAll(/<(?:input|select|textarea) id="([^"]+)"/g)) expect([path, page.includes(`<label for="${id}">`)]).toEqual([path, true]);
      // Inputs without an id are hidden fields or radio buttons inside their label.
      for (const [tag] of page.matchAll(/<(?:input|select|textarea)(?![^>]*\bid=)[^>]*>/g)) expect(tag).toMatch(/type="(hidden|radio)"/);
    }
  });
});

describe('forms are refused from another origin', () => {
  it('403s a signed-in admin form without this host as Origin or Referer, and changes nothing', async () => {
    const key = `L-csrf-${randomUUID().slice(0, 8)}`;
    await deadLetter({ orderId: randomUUID(), loanId: key });
    const [id] = await dlqIdsOf(key);
    for (const headers of [{ origin: 'http://evil.example' }, { origin: 'null' }, { origin: '', referer: 'http://evil.example/page' }] as Record<string, string>[]) {
      expect((await admin.post(`/admin/dlq/${id}/delete`, {}, headers)).status).toBe(403);
      expect((await admin.post('/admin/dlq/redrive', { key }, headers)).status).toBe(403);
    }
    expect(await dlqIdsOf(key)).toEqual([id]);
    // From the console's own page (its Referer, as a browser that sends no Origin) it works.
    const ok = await admin.post(`/admin/dlq/${id}/delete`, {}, { origin: '', referer: `${c.url}/admin/dlq/${id}` });
    expect(ok.status).toBe(303);
    expect(await dlqIdsOf(key)).toEqual([]);
  });
});

describe('dead letters', () => {
  it('finds entries by business key and shows an entry whole', async () => {
    const key = `L-show-${randomUUID().slice(0, 8)}`;
    await deadLetter({ orderId: randomUUID(), loanId: key });
    const list = await admin.get(`/admin/dlq?key=${key}`);
    expect(list.text).toContain('1 entry matches');
    const [id] = await dlqIdsOf(key);
    const page = await admin.get(`/admin/dlq/${id}`);
    expect(page.status).toBe(200);
    for (const s of ['LENDING_ITEMS', 'lending-items', 'lending.items.reserve', 'non-retryable', 'LOAN_NOT_FOUND', key]) expect(page.text).toContain(s);
    expect((await admin.get('/admin/dlq?stream=bad%20name')).status).toBe(400);
  });

  it('shows a hostile payload as text, on pages that cannot be framed and run only their own script', async () => {
    const key = `L-xss-${randomUUID().slice(0, 8)}`;
    const hostile = '</textarea><script>alert(1)</script><img src=x onerror=alert(2)>';
    await deadLetter({ orderId: randomUUID(), loanId: key, note: hostile });
    const [id] = await dlqIdsOf(key);
    const page = await admin.get(`/admin/dlq/${id}`);
    expect(page.text).not.toContain('<script>alert(1)');
    expect(page.text).not.toContain('<img src=x');
    expect(page.text).toContain('&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    const res = await fetch(`${c.url}/admin/login`);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    // The app's no-referrer would make browsers post the console's forms with Origin: null.
    expect(await res.text()).toContain('<meta name="referrer" content="same-origin">');
  });

  it('refuses an edited payload that is not JSON or does not fit the schema, keeps the entry, then redrives a fitting one', async () => {
    const key = `L-edit-${randomUUID().slice(0, 8)}`;
    const orderId = randomUUID();
    await deadLetter({ orderId, loanId: key });
    const [id] = await dlqIdsOf(key);
    const notJson = await admin.post(`/admin/dlq/${id}/redrive`, { payload: '{"orderId": ' });
    expect(notJson.status).toBe(400);
    expect(notJson.text).toContain('not valid JSON');
    expect(notJson.text).toContain('{&quot;orderId&quot;: '); // the edit is kept in the form
    const badSchema = await admin.post(`/admin/dlq/${id}/redrive`, { payload: JSON.stringify({ orderId: 'not-a-uuid', loanId: key }) });
    expect(badSchema.status).toBe(400);
    expect(badSchema.text).toContain('does not fit the schema of lending.items.reserve');
    expect(badSchema.text).toContain('orderId');
    expect(await dlqIdsOf(key)).toEqual([id]);

    const sub = c.deps.nats.nc.subscribe('lending.items.reserve', { max: 1 });
    const got = (async () => { for await (const m of sub) return m.json(); })();
    const ok = await admin.post(`/admin/dlq/${id}/redrive`, { payload: JSON.stringify({ orderId, loanId: key }) });
    expect(ok.status).toBe(303);
    expect(decodeURIComponent(ok.location!.replace(/\+/g, ' '))).toContain(`Entry #${id} redriven`);
    expect(await got).toEqual({ orderId, loanId: key });
  });

  it('bulk redrive: the dry run counts and sends nothing; the confirmation redrives what matches', async () => {
    // orders.created: its consumers (saga, notifications) do not run in this cluster, so nothing comes back.
    const key = randomUUID();
    for (let i = 0; i < 3; i++) await deadLetter({ id: key, orderId: `bulk-${i}` }, 'orders.created', 'ORDERS', 'saga');
    const preview = await admin.post('/admin/dlq/redrive/preview', { key });
    expect(preview.status).toBe(200);
    expect(preview.text).toMatch(/Dry run: <strong>3<\/strong> entries match/);
    expect(preview.text).toContain('Redrive 3 entries');
    expect(await dlqIdsOf(key)).toHaveLength(3);
    const done = await admin.post('/admin/dlq/redrive', { key, expected: '3' });
    expect(done.status).toBe(303);
    expect(decodeURIComponent(done.location!.replace(/\+/g, ' '))).toContain('Redriven 3 of 3 matching entries.');
    expect(await dlqIdsOf(key)).toEqual([]);
  });
});

describe('funding decisions', () => {
  it('a reviewer approves a pending_review application with a note, recorded with who and when', async () => {
    const created = await c.post('/api/funding/applications', pendingReviewBody());
    expect(created.status).toBe(202);
    const id = created.body.id;
    await waitForStatus(c.get, id, 'pending_review');
    const queue = await reviewer.get('/admin/funding');
    expect(queue.text).toContain(`/admin/funding/${id}`);
    const page = await reviewer.get(`/admin/funding/${id}`);
    expect(page.text).toContain('Record decision');
    const r = await reviewer.post(`/admin/funding/${id}/decision`, { decision: 'approved', note: 'cash flow checked' });
    expect(r.status).toBe(303);
    expect(decodeURIComponent(r.location!.replace(/\+/g, ' '))).toContain(`Recorded: approved by ${reviewerEmail}`);
    const app = (await c.get(`/api/funding/applications/${id}`)).body;
    expect(app.review).toMatchObject({ decision: 'approved', reviewer: reviewerEmail, note: 'cash flow checked' });
    expect(Date.now() - Date.parse(app.review.at)).toBeLessThan(10 * 60_000);
    // A second decision is refused by funding, and the page says so.
    const again = await reviewer.post(`/admin/funding/${id}/decision`, { decision: 'rejected' });
    expect(decodeURIComponent(again.location!.replace(/\+/g, ' '))).toContain('The decision was not recorded');
  });
});

describe('the live orders feed', () => {
  it('keeps up after a burst larger than one read: a change after 1,500 orders stamped alike still arrives', async () => {
    const feed = orderFeed(c.deps.orm, 50, c.deps.log);
    const seen = new Map<string, string>();
    const off = feed.listen((changes) => { for (const r of changes) seen.set(r.order_id, r.status); });
    try {
      await new Promise((r) => setTimeout(r, 300)); // the feed has read its start time
      const run = randomUUID().slice(0, 8);
      const em = c.deps.orm.em.fork();
      await em.execute(`insert into orders.orders (id, order_id, email, status, items, history, created_at, updated_at)
        select gen_random_uuid(), 'BURST-${run}-' || g, 'burst@example.com', 'PENDING', '[]'::jsonb, '[]'::jsonb, now(), now() from generate_series(1, 1500) g`);
      await eventually(async () => (seen.has(`BURST-${run}-1500`) || seen.size >= 1000 ? true : null), { what: 'the burst seen' });
      await em.execute(`update orders.orders set status = 'SHIPPED', updated_at = clock_timestamp() where order_id = 'BURST-${run}-1'`);
      await eventually(async () => (seen.get(`BURST-${run}-1`) === 'SHIPPED' ? true : null), { what: 'the change after the burst', timeoutMs: 5000 });
    } finally {
      off();
      feed.stop();
    }
  });
});

describe('orders search over 100,000 orders', () => {
  it('pages on the indexes, finds by orderId, email, status and time, and EXPLAIN shows no sequential scan', async () => {
    const em = c.deps.orm.em.fork();
    await em.execute(`insert into orders.orders (id, order_id, email, status, items, history, created_at, updated_at)
      select gen_random_uuid(), 'BULK-' || g, 'bulk' || (g % 1000) || '@example.com',
             (array['PENDING','STOCK_RESERVED','PAID','SHIPPED','FAILED'])[1 + g % 5], '[]'::jsonb, '[]'::jsonb,
             timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'
        from generate_series(1, 100000) g`);
    await em.execute('analyze orders.orders');

    const first = await admin.get('/admin/orders');
    expect(first.status).toBe(200);
    expect(first.text.match(/<tr id="order-/g)).toHaveLength(50);
    const next = /href="(\/admin\/orders\?cursor=[^"]+)"/.exec(first.text)![1]!.replace(/&amp;/g, '&');
    const second = await admin.get(next);
    const ids = (t: string) => [...t.matchAll(/<tr id="order-([^"]+)"/g)].map((m) => m[1]);
    expect(ids(second.text)).toHaveLength(50);
    expect(ids(second.text).filter((x) => ids(first.text).includes(x))).toEqual([]);

    expect((await admin.get('/admin/orders?orderId=BULK-77')).text.match(/<tr id="order-/g)).toHaveLength(1);
    const byEmail = await admin.get('/admin/orders?email=bulk7%40example.com&status=PAID');
    expect(byEmail.text.match(/<tr id="order-/g)).toHaveLength(50);
    const byTime = await admin.get('/admin/orders?from=2026-01-01T00:10&to=2026-01-01T00:20');
    expect(byTime.text.match(/<tr id="order-/g)).toHaveLength(50);
    expect(byTime.text).toContain('BULK-1199');
    expect((await admin.get('/admin/orders?from=yesterday')).status).toBe(400);

    const plans: string[] = [];
    for (const [where, params] of [
      ['', []], ['where status = ?', ['PAID']], ['where email = ?', ['bulk7@example.com']], ['where order_id = ?', ['BULK-77']],
      ['where created_at >= ? and created_at < ?', ['2026-01-01T00:10Z', '2026-01-01T00:20Z']],
      ['where status = ? and (created_at, id) < (?, ?)', ['PAID', '2026-01-01T12:00Z', someUuid]],
    ] as const) {
      const rows = await em.execute<{ 'QUERY PLAN': string }[]>(`explain select id from orders.orders ${where} order by created_at desc, id desc limit 51`, [...params]);
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      plans.push(plan);
      expect([where, plan]).not.toEqual([where, expect.stringContaining('Seq Scan')]);
      expect(plan).toMatch(/Index (Only )?Scan|Bitmap Index Scan/);
    }
    const live = await em.execute<{ 'QUERY PLAN': string }[]>('explain select id from orders.orders where updated_at > ? order by updated_at limit 1000', [new Date()]);
    expect(live.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Scan using orders_updated_at/);
  });
});

describe('an admin process of its own', () => {
  it('signs in and decides through IDENTITY_URL and FUNDING_URL, and without them says sign-in is unavailable', async () => {
    const apart = await startTestCluster({ TARGET: 'admin', IDENTITY_URL: c.url, FUNDING_URL: c.url, ADMIN_CONSOLE_LIVE_MS: '200' }, { nats: c.nats, databaseUrl: c.databaseUrl, sink: c.sink }, { identity: false });
    const alone = await startTestCluster({ TARGET: 'admin' }, { nats: c.nats, databaseUrl: c.databaseUrl, sink: c.sink }, { identity: false });
    try {
      const b = await signedIn(apart, { email: reviewerEmail, password: PASSWORD });
      const created = await c.post('/api/funding/applications', pendingReviewBody());
      await waitForStatus(c.get, created.body.id, 'pending_review');
      const r = await b.post(`/admin/funding/${created.body.id}/decision`, { decision: 'rejected', note: 'from the admin process' });
      expect(decodeURIComponent(r.location!.replace(/\+/g, ' '))).toContain(`Recorded: rejected by ${reviewerEmail}`);
      expect((await c.get(`/api/funding/applications/${created.body.id}`)).body.status).toBe('rejected');

      const refused = await browserish(alone).post('/admin/login', { email: ADMIN.email, password: ADMIN.password });
      expect(refused.status).toBe(503);
      expect(refused.text).toContain('Sign-in is unavailable');
    } finally {
      await apart.close();
      await alone.close();
    }
  }, 60_000);
});
