import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster, type TestUser } from '../testing/index.ts';

let c: TestCluster;
// Two customers (their calls go in process: the 413 tests below leave a closed connection in fetch's pool).
let ana: TestUser;
let ben: TestUser;
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'orders' });
  [ana, ben] = [await c.user(['customer']), await c.user(['customer'])];
});
afterAll(async () => { await c?.close(); });

const order = (over: Record<string, unknown> = {}) => ({
  orderId: `A-${Math.random().toString(36).slice(2, 10)}`, email: 'ana@example.com', phone: '+15551234567',
  paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 2 }], ...over,
});
const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
  c.fetch('/api/orders', { method: 'POST', body, headers });

describe('POST /api/orders', () => {
  it('400s text Postgres cannot store (NUL, a lone surrogate) in the body or the query, naming the field', async () => {
    for (const [over, field] of [[{ paymentToken: 'tok\u0000visa' }, 'paymentToken'], [{ email: 'a\ud800b@example.com' }, 'email']] as const) {
      const res = await post(JSON.stringify(order(over)));
      expect(res.status).toBe(400);
      expect((await res.json()).error.details.map((d: { field: string }) => d.field)).toContain(field);
    }
    // Sent as JSON escapes, as a client's serializer would.
    const escaped = await post(JSON.stringify(order()).replace('"tok_visa"', '"tok\\ud800"'));
    expect(escaped.status).toBe(400);
    const query = await c.fetch('/api/orders?orderId=A-1%00');
    expect(query.status).toBe(400);
    expect((await query.json()).error.details[0].field).toBe('orderId');
  });

  it('400s an email with a control character (the mail server would refuse it later)', async () => {
    const res = await post(JSON.stringify(order({ email: 'a\u007fb@example.com' })));
    expect(res.status).toBe(400);
    expect((await res.json()).error.details[0].field).toBe('email');
  });

  it('accepts an order with 202 and the contract body, and GETs it back by id and business id', async () => {
    const o = order();
    const res = await post(JSON.stringify(o), { 'content-type': 'application/json', 'x-request-id': 'req-123' });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-request-id')).toBe('req-123');
    const body = await res.json();
    expect(body).toMatchObject({ orderId: o.orderId, status: 'PENDING', items: o.items });
    expect(body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Date(body.createdAt).toString()).not.toBe('Invalid Date');

    const got = await (await c.fetch(`/api/orders/${body.id}`)).json();
    expect(got).toMatchObject({ id: body.id, orderId: o.orderId, email: o.email, status: 'PENDING', items: o.items, totalCents: null, trackingNumber: null, failureReason: null });
    expect(got.history).toEqual([{ status: 'PENDING', at: body.createdAt, reason: null }]);
    expect(got).toHaveProperty('updatedAt');
    const byBusiness = await (await c.fetch(`/api/orders?orderId=${o.orderId}`)).json();
    expect(byBusiness.id).toBe(body.id);
  });

  it('rejects a second order with the same orderId with 409 DUPLICATE_ORDER', async () => {
    const o = order();
    expect((await post(JSON.stringify(o))).status).toBe(202);
    const res = await post(JSON.stringify(o));
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe('DUPLICATE_ORDER');
  });

  it('under concurrent load (batched commits) accepts each orderId exactly once', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `C-${Math.random().toString(36).slice(2, 8)}-${i % 20}`);
    const results = await Promise.all(ids.map((orderId) => c.post('/api/orders', order({ orderId }))));
    const accepted = new Map<string, string>();
    for (const [i, r] of results.entries()) {
      if (r.status === 202) { expect(accepted.has(ids[i]!)).toBe(false); accepted.set(ids[i]!, r.body.id); }
      else expect([r.status, r.body.error.code]).toEqual([409, 'DUPLICATE_ORDER']);
    }
    expect(accepted.size).toBe(new Set(ids).size);
    for (const [orderId, id] of accepted) expect((await c.get(`/api/orders?orderId=${orderId}`)).body.id).toBe(id);
    const [{ n }] = await c.deps.orm.em.fork().execute<{ n: string }[]>('select count(*) as n from orders.orders where order_id in (?)', [[...accepted.keys()]]);
    expect(Number(n)).toBe(accepted.size);
  });

  const bad: [string, string, number, string][] = [
    ['broken JSON', '{"orderId": "A-1",', 400, 'VALIDATION_FAILED'],
    ['a JSON array', '[1,2]', 400, 'VALIDATION_FAILED'],
    ['an empty body', '', 400, 'VALIDATION_FAILED'],
    ['null', 'null', 400, 'VALIDATION_FAILED'],
    ['missing items', JSON.stringify({ orderId: 'A-2', email: 'a@b.co' }), 400, 'VALIDATION_FAILED'],
    ['missing paymentToken', JSON.stringify(order({ paymentToken: undefined })), 400, 'VALIDATION_FAILED'],
    ['empty items', JSON.stringify(order({ items: [] })), 400, 'VALIDATION_FAILED'],
    ['101 items', JSON.stringify(order({ items: Array.from({ length: 101 }, (_, i) => ({ sku: `S-${i}`, quantity: 1 })) })), 400, 'VALIDATION_FAILED'],
    ['quantity as a string', JSON.stringify(order({ items: [{ sku: 'S', quantity: '2' }] })), 400, 'VALIDATION_FAILED'],
    ['fractional quantity', JSON.stringify(order({ items: [{ sku: 'S', quantity: 1.5 }] })), 400, 'VALIDATION_FAILED'],
    ['quantity 0', JSON.stringify(order({ items: [{ sku: 'S', quantity: 0 }] })), 400, 'VALIDATION_FAILED'],
    ['quantity 1001', JSON.stringify(order({ items: [{ sku: 'S', quantity: 1001 }] })), 400, 'VALIDATION_FAILED'],
    ['orderId as a number', JSON.stringify(order({ orderId: 42 })), 400, 'VALIDATION_FAILED'],
    ['orderId too long', JSON.stringify(order({ orderId: 'x'.repeat(65) })), 400, 'VALIDATION_FAILED'],
    ['SQL-looking orderId', JSON.stringify(order({ orderId: "A'; DROP TABLE orders.orders;--" })), 400, 'VALIDATION_FAILED'],
    ['bad email', JSON.stringify(order({ email: 'not-an-email' })), 400, 'VALIDATION_FAILED'],
    ['email with a header injection', JSON.stringify(order({ email: 'a@b.co\r\nBcc: x@y.z' })), 400, 'VALIDATION_FAILED'],
    ['bad phone', JSON.stringify(order({ phone: '555-1234' })), 400, 'VALIDATION_FAILED'],
    ['items not an array', JSON.stringify(order({ items: 'SKU-1' })), 400, 'VALIDATION_FAILED'],
  ];
  for (const [what, body, status, code] of bad) {
    it(`answers ${what} with ${status} ${code}`, async () => {
      const res = await post(body);
      expect(res.status).toBe(status);
      const json = await res.json();
      expect(json.error.code).toBe(code);
      expect(typeof json.error.message).toBe('string');
      expect(Array.isArray(json.error.details)).toBe(true);
    });
  }

  it('names each bad field in details', async () => {
    const res = await post(JSON.stringify({ orderId: 7, email: 'x', items: [{ sku: 'S', quantity: -1 }] }));
    const fields = (await res.json()).error.details.map((d: { field: string }) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['orderId', 'email', 'items.0.quantity']));
  });

  it('stores SQL-looking text in allowed fields verbatim, without harm', async () => {
    const o = order({ items: [{ sku: "S'--", quantity: 1 }] });
    // sku allows only [A-Za-z0-9._-]: the quote is refused.
    expect((await post(JSON.stringify(o))).status).toBe(400);
    const ok = order({ email: "o'brien@example.com" });
    const res = await post(JSON.stringify(ok));
    expect(res.status).toBe(202);
    const got = await (await c.fetch(`/api/orders/${(await res.json()).id}`)).json();
    expect(got.email).toBe("o'brien@example.com");
  });

  it('answers a 3 MB body with 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await fetch(`${c.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(order({ pad: 'x'.repeat(3 * 1024 * 1024) })) });
    expect(res.status).toBe(413);
    expect((await res.json()).error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers a 3 MB chunked body (no Content-Length) with 413 too', async () => {
    const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
    let sent = 0;
    const body = new ReadableStream({ pull(ctl) { if (sent++ < 48) ctl.enqueue(chunk); else ctl.close(); } });
    const res = await fetch(`${c.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(413);
    expect((await res.json()).error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('answers a non-JSON content type with 415', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await post(JSON.stringify(order()), { 'content-type': type });
      expect(res.status).toBe(415);
      expect((await res.json()).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it('accepts application/json with a charset', async () => {
    expect((await post(JSON.stringify(order()), { 'content-type': 'application/json; charset=utf-8' })).status).toBe(202);
  });
});

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body', async () => {
    const o = JSON.stringify(order());
    const h = { 'content-type': 'application/json', 'idempotency-key': `k-${Math.random()}` };
    const first = await post(o, h);
    const second = await post(o, h);
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(await second.json()).toEqual(await first.json());
  });

  it('answers 422 IDEMPOTENCY_KEY_REUSED for the same key with another body', async () => {
    const h = { 'content-type': 'application/json', 'idempotency-key': `k-${Math.random()}` };
    expect((await post(JSON.stringify(order()), h)).status).toBe(202);
    const res = await post(JSON.stringify(order()), h);
    expect(res.status).toBe(422);
    expect((await res.json()).error.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('answers 409 REQUEST_IN_PROGRESS while the first request still runs', async () => {
    const key = `k-${Math.random()}`;
    const body = JSON.stringify(order());
    const { createHash } = await import('node:crypto');
    // The first request is "running": its claim row exists without a response (the key is the development admin's).
    const [{ id }] = await c.deps.orm.em.fork().execute<{ id: string }[]>(`select id from identity.users where email = 'admin@orderflow.local'`);
    await c.deps.orm.em.fork().execute(`insert into kit.idempotency_keys (scope, principal, key, request_hash, state) values ('POST /api/orders', ?, ?, ?, 'running')`,
      [`user:${id}`, key, createHash('sha256').update(body).digest('hex')]);
    const res = await post(body, { 'content-type': 'application/json', 'idempotency-key': key });
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe('REQUEST_IN_PROGRESS');
  });

  it('lets one of two concurrent orders with one key and two bodies through; the other is 422', async () => {
    for (let i = 0; i < 5; i++) {
      const h = { 'content-type': 'application/json', 'idempotency-key': `k-${Math.random()}` };
      const [a, b] = [order(), order()];
      const answers = await Promise.all([post(JSON.stringify(a), h), post(JSON.stringify(b), h)]);
      expect(answers.map((r) => r.status).sort()).toEqual([202, 422]);
      const [{ n }] = await c.deps.orm.em.fork().execute<{ n: string }[]>('select count(*) as n from orders.orders where order_id in (?, ?)', [a.orderId, b.orderId]);
      expect(Number(n)).toBe(1);
    }
  });

  it('replays the 202 to a retry that raced the first, and 409s DUPLICATE_ORDER only for another key', async () => {
    const o = JSON.stringify(order());
    const h = { 'content-type': 'application/json', 'idempotency-key': `k-${Math.random()}` };
    const answers = await Promise.all([post(o, h), post(o, h), post(o, h)]);
    const bodies = await Promise.all(answers.map((r) => r.json()));
    expect(answers.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1);
    const other = await post(o, { ...h, 'idempotency-key': `k-${Math.random()}` });
    expect([other.status, (await other.json()).error.code]).toEqual([409, 'DUPLICATE_ORDER']);
  });

  it('keeps keys per principal: another customer with the same key and body gets its own answer, never the first one\'s order', async () => {
    const as = async (who: TestUser, body: unknown, key: string) => {
      const res = await c.fetch('/api/orders', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', authorization: `Bearer ${who.token}`, 'idempotency-key': key } });
      return { status: res.status, body: await res.json(), replayed: res.headers.get('idempotent-replayed') };
    };
    const key = `k-${Math.random()}`;
    const o = order();
    const first = await as(ana, o, key);
    expect(first.status).toBe(202);
    // Ben's request is processed as his own: the orderId is taken, so 409, not Ana's 202 replayed.
    const other = await as(ben, o, key);
    expect([other.status, other.body.error?.code, other.replayed]).toEqual([409, 'DUPLICATE_ORDER', null]);
    // An order of his own is made, and his retry replays his; Ana sending his under his key is processed as hers.
    const mine = order();
    const made = await as(ben, mine, `${key}-2`);
    const again = await as(ben, mine, `${key}-2`);
    expect([made.status, again.status, again.body.id, again.replayed]).toEqual([202, 202, made.body.id, 'true']);
    const taken = await as(ana, mine, `${key}-2`);
    expect([taken.status, taken.replayed]).toEqual([409, null]);
    // Ana's retry still gets hers.
    const retry = await as(ana, o, key);
    expect([retry.status, retry.body.id, retry.replayed]).toEqual([202, first.body.id, 'true']);
  });

  it('replays a 4xx too', async () => {
    const h = { 'content-type': 'application/json', 'idempotency-key': `k-${Math.random()}` };
    const body = JSON.stringify(order({ items: [] }));
    expect((await post(body, h)).status).toBe(400);
    const again = await post(body, h);
    expect(again.status).toBe(400);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });
});

describe('GET', () => {
  it('404s unknown and malformed ids', async () => {
    for (const id of ['00000000-0000-0000-0000-000000000000', 'nope', "1' or '1'='1"]) {
      const res = await c.fetch(`/api/orders/${encodeURIComponent(id)}`);
      expect(res.status).toBe(404);
      expect((await res.json()).error.code).toBe('NOT_FOUND');
    }
  });
  it('400s a lookup without orderId', async () => {
    expect((await c.fetch('/api/orders')).status).toBe(400);
  });
  it('serves health, readiness and metrics', async () => {
    expect((await c.fetch('/healthz')).status).toBe(200);
    expect(await (await c.fetch('/readyz')).json()).toEqual({ status: 'ready' });
    const m = await (await c.fetch('/metrics')).text();
    expect(m).toContain('orderflow_http_request_duration_seconds');
    expect(m).toContain('orderflow_outbox_lag_seconds');
  });
});
