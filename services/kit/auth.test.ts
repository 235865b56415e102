import { createHmac } from 'node:crypto';
import { base64url, exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, InvalidTokenError, KeysUnavailableError, optionalAuth, remoteJwks, requireAuth, requireRole, requireScope, type Verifier } from './auth.ts';
import { serveTestApp } from '../testing/index.ts';

const ISS = 'test-identity';
const AUD = 'orderflow';
type Pair = Awaited<ReturnType<typeof generateKeyPair>>;
let ours: Pair;
let foreign: Pair;
let publicJwk: JWK;
const KID = 'our-kid';

beforeAll(async () => {
  ours = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  foreign = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  publicJwk = { ...await exportJWK(ours.publicKey), kid: KID, alg: 'EdDSA', use: 'sig' };
});

const sign = (claims: Record<string, unknown>, o: { key?: Pair['privateKey']; kid?: string; iss?: string; aud?: string; exp?: number | string } = {}) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: o.kid ?? KID, typ: 'at+jwt' })
    .setIssuer(o.iss ?? ISS).setAudience(o.aud ?? AUD).setSubject('u-1').setIssuedAt().setJti('j-1')
    .setExpirationTime(o.exp ?? '5m').sign(o.key ?? ours.privateKey);

const verifierOver = (jwks: () => Promise<JSONWebKeySet>, extra: Partial<Parameters<typeof createVerifier>[0]> = {}) =>
  createVerifier({ issuer: ISS, audience: AUD, jwks, ...extra });

const rejects = async (v: Verifier, token: string) => { await expect(v.verify(token)).rejects.toBeInstanceOf(InvalidTokenError); };

describe('createVerifier', () => {
  it('accepts a good user token and a good client token, as principals', async () => {
    const v = verifierOver(async () => ({ keys: [publicJwk] }));
    expect(await v.verify(await sign({ roles: ['customer'] }))).toEqual({ sub: 'u-1', kind: 'user', roles: ['customer'], scopes: [] });
    expect(await v.verify(await sign({ scope: 'orders:read orders:write', client_id: 'cl_x' }))).toEqual({ sub: 'u-1', kind: 'client', roles: [], scopes: ['orders:read', 'orders:write'] });
  });

  it('rejects garbage, expired, alg none, HS256 keyed with the public key, a foreign key with our kid, a tampered payload, wrong iss and aud', async () => {
    const v = verifierOver(async () => ({ keys: [publicJwk] }));
    const good = await sign({ roles: ['customer'] });
    const [h, p, s] = good.split('.') as [string, string, string];
    // Verified first, so it sits in the verifier's cache: no altered copy of it may ride on that.
    expect((await v.verify(good)).roles).toEqual(['customer']);
    await rejects(v, 'garbage');
    await rejects(v, 'a.b.c');
    await rejects(v, await sign({ roles: ['customer'] }, { exp: Math.floor(Date.now() / 1000) - 3600 }));
    // alg none: an unsecured token with our kid and an admin role.
    const noneHeader = base64url.encode(JSON.stringify({ alg: 'none', kid: KID, typ: 'at+jwt' }));
    const adminPayload = base64url.encode(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), roles: ['admin'] }));
    await rejects(v, `${noneHeader}.${adminPayload}.`);
    // Algorithm confusion: HS256 whose HMAC key is the public key's published bytes.
    const hsHeader = base64url.encode(JSON.stringify({ alg: 'HS256', kid: KID, typ: 'at+jwt' }));
    for (const secret of [JSON.stringify(publicJwk), publicJwk.x!, Buffer.from(publicJwk.x!, 'base64url')]) {
      const mac = createHmac('sha256', secret).update(`${hsHeader}.${adminPayload}`).digest('base64url');
      await rejects(v, `${hsHeader}.${adminPayload}.${mac}`);
    }
    await rejects(v, await sign({ roles: ['admin'] }, { key: foreign.privateKey }));
    await rejects(v, `${h}.${adminPayload}.${s}`);
    await rejects(v, await sign({ roles: ['customer'] }, { iss: 'someone-else' }));
    await rejects(v, await sign({ roles: ['customer'] }, { aud: 'another-api' }));
    // A valid signature over neither roles nor a client scope is no principal.
    await rejects(v, await sign({}));
    // The good one still passes: the rejections above are about the token, not the verifier.
    expect((await v.verify(good)).roles).toEqual(['customer']);
  });

  it('answers a token it verified from memory until the token expires, then refuses it', async () => {
    let fetches = 0;
    let t = Date.now();
    const v = verifierOver(async () => { fetches++; return { keys: [publicJwk] }; }, { now: () => t, clockToleranceS: 0 });
    const token = await sign({ roles: ['customer'] }, { exp: Math.floor(t / 1000) + 60 });
    for (let i = 0; i < 5; i++) expect((await v.verify(token)).roles).toEqual(['customer']);
    expect(fetches).toBe(1);
    t += 61_000;
    await rejects(v, token);
    // And with the cache off, every call verifies.
    const plain = verifierOver(async () => ({ keys: [publicJwk] }), { maxCachedTokens: 0, now: () => t, clockToleranceS: 0 });
    await rejects(plain, token);
  });

  it('refetches the set for an unknown kid, at most once per cooldown', async () => {
    let fetches = 0;
    let keys: JWK[] = [publicJwk];
    let t = 1_000_000;
    const v = verifierOver(async () => { fetches++; return { keys }; }, { cooldownMs: 30_000, now: () => t });
    await v.verify(await sign({ roles: ['customer'] }));
    expect(fetches).toBe(1);
    const rotated = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const newJwk = { ...await exportJWK(rotated.publicKey), kid: 'new-kid', alg: 'EdDSA' };
    const fresh = await new SignJWT({ roles: ['customer'] }).setProtectedHeader({ alg: 'EdDSA', kid: 'new-kid', typ: 'at+jwt' })
      .setIssuer(ISS).setAudience(AUD).setSubject('u-2').setIssuedAt(Math.floor(t / 1000)).setJti('j').setExpirationTime(Math.floor(t / 1000) + 300).sign(rotated.privateKey);
    keys = [newJwk, publicJwk];
    // Within the cooldown of the first fetch: no refetch, so the new kid is unknown.
    t += 1000;
    await rejects(v, fresh);
    expect(fetches).toBe(1);
    t += 30_000;
    expect((await v.verify(fresh)).sub).toBe('u-2');
    expect(fetches).toBe(2);
    // A flood of unknown kids costs one fetch per cooldown, not one per token.
    for (let i = 0; i < 5; i++) await rejects(v, await sign({ roles: ['customer'] }, { kid: `junk-${i}`, key: foreign.privateKey }));
    expect(fetches).toBe(2);
  });

  it('an unreachable JWKS is KeysUnavailableError (503 in requireAuth), refetched at most once per cooldown; a stale set keeps working', async () => {
    let fetches = 0;
    let up = false;
    let t = 5_000_000;
    const v = verifierOver(async () => { fetches++; if (!up) throw new Error('ECONNREFUSED'); return { keys: [publicJwk] }; }, { cooldownMs: 30_000, maxAgeMs: 60_000, now: () => t });
    const token = await sign({ roles: ['customer'] }, { exp: Math.floor(t / 1000) + 3600 });
    await expect(v.verify(token)).rejects.toBeInstanceOf(KeysUnavailableError);
    up = true;
    expect((await v.verify(token)).sub).toBe('u-1');
    up = false;
    // Past maxAge with identity down: one failed attempt, then the cached set still verifies.
    t += 120_000;
    // A token not seen before (a seen one is answered from memory without the set).
    expect((await v.verify(await sign({ roles: ['reviewer'] }, { exp: Math.floor(t / 1000) + 3600 }))).sub).toBe('u-1');
    const after = fetches;
    for (let i = 0; i < 5; i++) await rejects(v, await sign({ roles: ['customer'] }, { kid: `unknown-${i}`, key: foreign.privateKey, exp: Math.floor(t / 1000) + 3600 }));
    expect(fetches).toBe(after);
    const srv = await serveTestApp((app) => app.get('/x', requireAuth(verifierOver(async () => { throw new Error('down'); })), (c) => c.json({})));
    try {
      const r = await fetch(`${srv.url}/x`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(503);
      expect((await r.json()).error.code).toBe('UNAVAILABLE');
    } finally { await srv.close(); }
  });

  it('remoteJwks fetches /.well-known/jwks.json', async () => {
    const srv = await serveTestApp((app) => app.get('/.well-known/jwks.json', (c) => c.json({ keys: [publicJwk] })));
    try {
      const v = verifierOver(remoteJwks(srv.url));
      expect((await v.verify(await sign({ roles: ['investor'] }))).roles).toEqual(['investor']);
    } finally { await srv.close(); }
  });
});

describe('requireAuth, requireRole, requireScope', () => {
  let srv: Awaited<ReturnType<typeof serveTestApp>>;
  beforeAll(async () => {
    const v = verifierOver(async () => ({ keys: [publicJwk] }));
    srv = await serveTestApp((app) => {
      app.get('/who', requireAuth(v), (c) => c.json(c.get('principal')));
      app.get('/admin', requireAuth(v), requireRole('admin'), (c) => c.json({ ok: true }));
      app.get('/orders', requireAuth(v), requireScope('orders:read'), (c) => c.json({ ok: true }));
    });
  });
  afterAll(async () => { await srv?.close(); });
  const get = (path: string, token?: string) => fetch(srv.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('401 UNAUTHENTICATED with WWW-Authenticate: Bearer for no token, a bad one, or another scheme', async () => {
    for (const r of [await get('/who'), await get('/who', 'garbage'), await fetch(`${srv.url}/who`, { headers: { authorization: 'Basic dTpw' } }),
      await get('/who', await sign({ roles: ['admin'] }, { key: foreign.privateKey }))]) {
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await r.json()).error.code).toBe('UNAUTHENTICATED');
    }
  });

  it('hands the principal on; 403 FORBIDDEN without the role or scope', async () => {
    const customer = await sign({ roles: ['customer'] });
    expect(await (await get('/who', customer)).json()).toEqual({ sub: 'u-1', kind: 'user', roles: ['customer'], scopes: [] });
    const denied = await get('/admin', customer);
    expect(denied.status).toBe(403);
    expect((await denied.json()).error.code).toBe('FORBIDDEN');
    expect((await get('/admin', await sign({ roles: ['admin'] }))).status).toBe(200);
    expect((await get('/orders', customer)).status).toBe(403);
    expect((await get('/orders', await sign({ scope: 'orders:read', client_id: 'cl_a' }))).status).toBe(200);
  });
});


describe('optionalAuth (public routes)', () => {
  let srv: Awaited<ReturnType<typeof serveTestApp>>;
  beforeAll(async () => {
    const v = verifierOver(async () => ({ keys: [publicJwk] }));
    const down = verifierOver(async () => { throw new Error('identity is down'); });
    srv = await serveTestApp((app) => {
      const who = (c: { get(k: 'principal'): { sub: string } | undefined; json(b: unknown): Response }) => c.json({ by: c.get('principal')?.sub ?? null });
      app.get('/public', optionalAuth(v), (c) => who(c));
      app.get('/lenient', optionalAuth(v, { invalid: 'anonymous' }), (c) => who(c));
      app.get('/keys-down', optionalAuth(down), (c) => who(c));
    });
  });
  afterAll(async () => { await srv?.close(); });
  const get = (path: string, token?: string) => fetch(srv.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  it('no token is anonymous; a valid one is its principal; an expired or foreign one is 401 invalid_token', async () => {
    expect(await (await get('/public')).json()).toEqual({ by: null });
    expect(await (await get('/public', await sign({ roles: ['customer'] }))).json()).toEqual({ by: 'u-1' });
    const expired = await sign({ roles: ['customer'] }, { exp: Math.floor(Date.now() / 1000) - 3600 });
    for (const r of [await get('/public', expired), await get('/public', await sign({ roles: ['admin'] }, { key: foreign.privateKey }))]) {
      expect([r.status, r.headers.get('www-authenticate'), (await r.json()).error.code]).toEqual([401, 'Bearer error="invalid_token"', 'UNAUTHENTICATED']);
    }
  });

  it("with invalid: 'anonymous' a bad token is taken as none; with the keys unreachable the caller is anonymous, not refused", async () => {
    const expired = await sign({ roles: ['customer'] }, { exp: Math.floor(Date.now() / 1000) - 3600 });
    expect([(await get('/lenient', expired)).status, await (await get('/lenient', expired)).json()]).toEqual([200, { by: null }]);
    expect(await (await get('/lenient', await sign({ roles: ['customer'] }))).json()).toEqual({ by: 'u-1' });
    const r = await get('/keys-down', await sign({ roles: ['customer'] }));
    expect([r.status, await r.json()]).toEqual([200, { by: null }]);
  });
});
