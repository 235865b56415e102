// Access control at the HTTP level, on the real routes of a cluster: forged and broken
// tokens (401), roles and scopes (403), and ownership (another principal's resource is a
// 404, exactly as one that does not exist). kit/auth.test.ts covers the verifier alone.
import { createHmac, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { base64url, SignJWT } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster, type TestUser } from '../testing/index.ts';
import { applicationBody } from '../funding/test-fixtures.ts';
import { loadIdentityConfig } from './config.ts';
import { openKey } from './keys.ts';

let c: TestCluster;
let ana: TestUser;
let bob: TestUser;
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'orders,funding,lending,admin,catalog,inventory', FUNDING_RECONCILE_INTERVAL_MS: '0', T24_MAX_RPS: '50' });
  [ana, bob] = await Promise.all([c.user(['customer'], 'Ana'), c.user(['customer'], 'Bob')]);
}, 120_000);
afterAll(async () => { await c?.close(); });

const order = () => ({ orderId: `ACL-${Math.random().toString(36).slice(2, 10)}`, email: 'ana@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] });

/** The key identity signs with now, as identity holds it (decrypted with the development key-encryption key). */
async function signingKey() {
  const [row] = await c.deps.orm.em.fork().execute<{ kid: string; private_key_enc: string; public_jwk: any }[]>(
    'select kid, private_key_enc, public_jwk from identity.signing_keys order by created_at desc limit 1');
  const der = openKey(loadIdentityConfig({}).kek, row!.private_key_enc, row!.kid);
  const jwk = typeof row!.public_jwk === 'string' ? JSON.parse(row!.public_jwk) : row!.public_jwk;
  return { kid: row!.kid, key: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), jwk };
}

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());

describe('a token that is missing, broken or forged is a 401 on every protected route', () => {
  it('no token, garbage, expired, alg none, HS256 keyed with the public key, a foreign key with our kid, a tampered payload', async () => {
    const created = await ana.post('/api/orders', order());
    expect(created.status).toBe(202);
    const path = `/api/orders/${created.body.id}`;
    // The control: the real token reads it, so each refusal below is about the token.
    expect((await ana.get(path)).status).toBe(200);

    const { kid, key, jwk } = await signingKey();
    const now = Math.floor(Date.now() / 1000);
    const claims = claimsOf(ana.token);
    const adminClaims = { ...claims, roles: ['admin'] };
    const sign = (payload: Record<string, unknown>, o: { k?: Parameters<SignJWT['sign']>[0]; kid?: string } = {}) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: o.kid ?? kid, typ: 'at+jwt' }).sign(o.k ?? key);
    const [h, , s] = ana.token.split('.') as [string, string, string];
    const enc = (v: unknown) => base64url.encode(JSON.stringify(v));
    const hsHeader = enc({ alg: 'HS256', kid, typ: 'at+jwt' });
    const foreign = generateKeyPairSync('ed25519').privateKey;

    const forged: Record<string, string> = {
      garbage: 'garbage',
      'three dots of nothing': 'a.b.c',
      expired: await sign({ ...claims, iat: now - 7200, exp: now - 3600 }),
      'alg none': `${enc({ alg: 'none', kid, typ: 'at+jwt' })}.${enc(adminClaims)}.`,
      'HS256 keyed with the public JWK': `${hsHeader}.${enc(adminClaims)}.${createHmac('sha256', JSON.stringify(jwk)).update(`${hsHeader}.${enc(adminClaims)}`).digest('base64url')}`,
      'HS256 keyed with the public key bytes': `${hsHeader}.${enc(adminClaims)}.${createHmac('sha256', Buffer.from(jwk.x, 'base64url')).update(`${hsHeader}.${enc(adminClaims)}`).digest('base64url')}`,
      'a foreign key with our kid': await sign(adminClaims, { k: foreign }),
      'a tampered payload': `${h}.${enc(adminClaims)}.${s}`,
      'another issuer': await sign({ ...claims, iss: 'someone-else' }),
      'another audience': await sign({ ...claims, aud: 'another-api' }),
    };
    // The good signature path is live: our key with the same claims is accepted.
    expect((await c.as(await sign({ ...claims, jti: 'fresh' })).get(path)).status).toBe(200);

    const none = await c.as(null).get(path);
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('UNAUTHENTICATED');
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    for (const [what, token] of Object.entries(forged)) {
      for (const [method, p] of [['GET', path], ['GET', '/api/admin/dlq'], ['POST', '/api/orders']] as const) {
        const r = await c.as(token).request(method, p, method === 'POST' ? order() : undefined);
        expect({ what, p, status: r.status, code: r.body?.error?.code }).toEqual({ what, p, status: 401, code: 'UNAUTHENTICATED' });
        expect(r.headers.get('www-authenticate'), what).toMatch(/^Bearer/);
      }
    }
    // A Basic header is no bearer token either.
    expect((await ana.get(path, { authorization: 'Basic YWRtaW46YWRtaW4=' })).status).toBe(401);
  });

  it('the catalog reads and /api/auth/* need no token; writing the catalog does', async () => {
    expect((await c.as(null).get('/api/products')).status).toBe(200);
    expect((await c.as(null).get('/api/products/nope')).status).toBe(404);
    expect((await c.as(null).post('/api/products', { sku: 'X-1', name: 'x', priceCents: 1 })).status).toBe(401);
    expect((await ana.post('/api/products', { sku: 'X-1', name: 'x', priceCents: 1 })).status).toBe(403);
    expect((await c.as(null).post('/api/auth/login', { email: 'nobody@example.com', password: 'wrong password' })).status).toBe(401);
  });
});

describe('roles and scopes (403)', () => {
  it('the DLQ and the flags need an admin: a customer, an investor and a reviewer get 403, no token 401', async () => {
    const others = [ana, await c.user(['investor']), await c.user(['reviewer'])];
    const routes = [
      ['GET', '/api/admin/dlq'], ['GET', '/api/admin/dlq/1'], ['DELETE', '/api/admin/dlq/1'], ['POST', '/api/admin/dlq/1/redrive'],
      ['POST', '/api/admin/dlq/redrive'], ['GET', '/api/admin/flags'], ['GET', '/api/admin/flags/funding.riskModel'], ['PUT', '/api/admin/flags/funding.riskModel'],
      ['GET', '/api/admin/users'], ['POST', '/api/admin/clients'], ['GET', '/api/inventory/SKU-1'],
    ] as const;
    const body = (m: string) => (m === 'POST' || m === 'PUT' ? {} : undefined);
    for (const [m, p] of routes) {
      for (const who of others) {
        const r = await who.request(m, p, body(m));
        expect({ m, p, status: r.status, code: r.body?.error?.code }).toEqual({ m, p, status: 403, code: 'FORBIDDEN' });
      }
      expect((await c.as(null).request(m, p, body(m))).status).toBe(401);
    }
    expect((await c.get('/api/admin/dlq')).status).toBe(200);
    expect((await c.get('/api/admin/flags')).status).toBe(200);
  });

  it('a reviewer decides an application; a customer, even its applicant, cannot', async () => {
    const app = await ana.post('/api/funding/applications', applicationBody());
    expect(app.status).toBe(202);
    const decision = { decision: 'approved', reviewer: 'rita' };
    const byCustomer = await ana.post(`/api/funding/applications/${app.body.id}/decision`, decision);
    expect(byCustomer.status).toBe(403);
    const rita = await c.user(['reviewer']);
    // Past the access check: the application is not pending review (no scoring runs here), a 409, not a 403.
    const byReviewer = await rita.post(`/api/funding/applications/${app.body.id}/decision`, decision);
    expect(byReviewer.status).toBe(409);
    expect(byReviewer.body.error.code).toBe('NOT_PENDING_REVIEW');
    // A reviewer reads every application.
    expect((await rita.get(`/api/funding/applications/${app.body.id}`)).status).toBe(200);
  });

  it('priority "high" needs the reviewer or admin role or the funding:decide scope', async () => {
    const high = await ana.post('/api/funding/applications', { ...applicationBody(), priority: 'high' });
    expect(high.status).toBe(403);
    expect(high.body.error.code).toBe('FORBIDDEN');
    expect((await ana.post('/api/funding/applications', { ...applicationBody(), priority: 'normal' })).status).toBe(202);
    const rita = await c.user(['reviewer']);
    expect((await rita.post('/api/funding/applications', { ...applicationBody(), priority: 'high' })).status).toBe(202);
    expect((await c.post('/api/funding/applications', { ...applicationBody(), priority: 'high' })).status).toBe(202);
  });

  it('machine clients: scopes decide, and orders:read reads every order while orders:write alone reads its own', async () => {
    const mine = await ana.post('/api/orders', order());
    const reader = await c.post('/api/admin/clients', { name: 'reporting', scopes: ['orders:read'] });
    const writer = await c.post('/api/admin/clients', { name: 'shop', scopes: ['orders:write'] });
    const tokenOf = async (client: { clientId: string; clientSecret: string }) => {
      const res = await fetch(`${c.url}/api/auth/token`, {
        method: 'POST', body: 'grant_type=client_credentials',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}` },
      });
      return (await res.json()).access_token as string;
    };
    const r = c.as(await tokenOf(reader.body));
    const w = c.as(await tokenOf(writer.body));
    expect((await r.get(`/api/orders/${mine.body.id}`)).status).toBe(200);
    expect((await r.post('/api/orders', order())).status).toBe(403);
    const placed = await w.post('/api/orders', order());
    expect(placed.status).toBe(202);
    expect((await w.get(`/api/orders/${placed.body.id}`)).status).toBe(200);
    expect((await w.get(`/api/orders/${mine.body.id}`)).status).toBe(404);
    expect((await w.get('/api/admin/dlq')).status).toBe(403);
  });
});

describe('ownership: another principal\'s resource is a 404, exactly as a missing one', () => {
  it('orders: by id and by business id', async () => {
    const o = order();
    const placed = await ana.post('/api/orders', o);
    expect(placed.status).toBe(202);
    expect((await ana.get(`/api/orders/${placed.body.id}`)).status).toBe(200);
    expect((await ana.get(`/api/orders?orderId=${o.orderId}`)).body.id).toBe(placed.body.id);
    const missing = await bob.get('/api/orders/00000000-0000-4000-8000-000000000000');
    for (const r of [await bob.get(`/api/orders/${placed.body.id}`), await bob.get(`/api/orders?orderId=${o.orderId}`)]) {
      expect(r.status).toBe(404);
      expect(r.body.error.code).toBe(missing.body.error.code);
    }
    // The admin sees every order.
    expect((await c.get(`/api/orders/${placed.body.id}`)).status).toBe(200);
  });

  it('funding applications: the application, its status, its SSE and its WebSocket', async () => {
    const app = await ana.post('/api/funding/applications', applicationBody());
    expect(app.status).toBe(202);
    const id = app.body.id as string;
    for (const p of [`/api/funding/applications/${id}`, `/api/funding/applications/${id}/status`]) {
      expect((await ana.get(p)).status).toBe(200);
      const r = await bob.get(p);
      expect({ p, status: r.status, code: r.body.error?.code }).toEqual({ p, status: 404, code: 'NOT_FOUND' });
    }
    const events = await fetch(`${c.url}/api/funding/applications/${id}/events?access_token=${bob.token}`);
    expect(events.status).toBe(404);
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/funding/applications/${id}/ws?access_token=${bob.token}`);
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
      ws.on('open', () => { ws.close(); reject(new Error('bob was upgraded')); });
      ws.on('error', () => {});
    });
    expect(refused).toBe(404);
    // Ana's own feed opens (aborted at once: it ends only at a final status).
    const mine = new AbortController();
    const own = await fetch(`${c.url}/api/funding/applications/${id}/events?access_token=${ana.token}`, { signal: mine.signal });
    expect(own.status).toBe(200);
    mine.abort();
  });

  it('lending: an investor orders under its own id (another is 403) and reads only its own orders', async () => {
    const [ivy, ike] = await Promise.all([c.user(['investor']), c.user(['investor'])]);
    const items = [{ loanId: `L-${Math.random().toString(36).slice(2, 8)}`, amount: 10 }];
    const other = await ivy.post('/api/lending/orders', { investorId: ike.id, items });
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe('FORBIDDEN');
    const own = await ivy.post('/api/lending/orders', { investorId: ivy.id, items });
    expect(own.status).toBe(202);
    expect((await ivy.get(`/api/lending/orders/${own.body.id}`)).body.investorId).toBe(ivy.id);
    expect((await ike.get(`/api/lending/orders/${own.body.id}`)).status).toBe(404);
    expect((await fetch(`${c.url}/api/lending/orders/${own.body.id}/events?access_token=${ike.token}`)).status).toBe(404);
    // A customer is no investor; an admin names any investor and reads every order.
    expect((await ana.post('/api/lending/orders', { investorId: ana.id, items })).status).toBe(403);
    expect((await c.post('/api/lending/orders', { investorId: ike.id, items: [{ loanId: `${items[0]!.loanId}-b`, amount: 5 }] })).status).toBe(202);
    expect((await c.get(`/api/lending/orders/${own.body.id}`)).status).toBe(200);
  });
});

describe('a token sent to a public route (the catalog reads) is verified, and the caller limited as its principal', () => {
  let lim: TestCluster;
  // Anonymous calls from one address get a burst of 3 at 1/s; a principal 1,000/s.
  beforeAll(async () => {
    lim = await startTestCluster({ TARGET: 'catalog', RATE_LIMIT_ANON_RPS: '1', RATE_LIMIT_ANON_BURST: '3', RATE_LIMIT_RPS: '1000', RATE_LIMIT_BURST: '1000' });
  }, 120_000);
  afterAll(async () => { await lim?.close(); });

  it('counts a valid token by principal (no 429 where anonymous calls from the same address are refused); an expired or forged one is 401', async () => {
    const token = await lim.token(); // its login is one anonymous call
    const [h, p, sig] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const tampered = `${h}.${base64url.encode(JSON.stringify({ ...claims, exp: claims.exp + 3600 }))}.${sig}`;
    // /api/auth/* takes a stale token as none: a client can always log in again (this 401 is the wrong password's).
    // The second anonymous call, within the burst.
    const login = await lim.as(tampered).post('/api/auth/login', { email: 'nobody@example.com', password: 'wrong password' });
    expect([login.status, login.body.error.code]).toEqual([401, 'INVALID_CREDENTIALS']);
    const anon = [];
    for (let i = 0; i < 20; i++) anon.push((await lim.as(null).get('/api/products')).status);
    expect(anon.filter((s) => s === 429).length).toBeGreaterThan(0);
    const signed = [];
    for (let i = 0; i < 20; i++) signed.push(await lim.as(token).get('/api/products'));
    expect(signed.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(signed[0]!.headers.get('ratelimit-limit')).toBe('1000');
    for (const bad of [tampered, 'garbage']) {
      const r = await lim.as(bad).get('/api/products');
      expect([r.status, r.body.error.code, r.headers.get('www-authenticate')]).toEqual([401, 'UNAUTHENTICATED', 'Bearer error="invalid_token"']);
    }
  });
});
