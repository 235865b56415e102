import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, InvalidTokenError, remoteJwks } from '../kit/index.ts';
import { createLogger } from '../kit/index.ts';
import { startRuntime, type Cluster } from '../kit/runtime.ts';
import { createTestDatabase, eventually, startTestNats, type TestNats } from '../testing/index.ts';
import { registry, verifier } from '../main.ts';
import { createKeyRing } from './keys.ts';

const ADMIN = { email: 'root@example.test', password: 'first-admin-password' };
let nats: TestNats;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let c: Cluster;
let logs = '';
const env = {
  TARGET: 'identity', PORT: '0', HOST: '127.0.0.1', DB_POOL_MAX: '10', LOG_LEVEL: 'debug',
  ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, LOGIN_MAX_ATTEMPTS: '3',
  IDENTITY_KEY_PUBLISH_LEAD_S: '0', IDENTITY_KEY_CHECK_MS: '200', IDENTITY_ACCESS_TOKEN_TTL_S: '120',
  // The per-address limit on anonymous requests (20/s, burst 40) is rate-limit.test.ts's
  // subject, not this file's: this file's anonymous calls (register, login, token) crossed it
  // whenever the file ran fast (429 on a register). As in every other cluster the tests start.
  RATE_LIMIT_ANON_RPS: '1000000',
};

beforeAll(async () => {
  nats = await startTestNats();
  db = await createTestDatabase();
  const capture = new Writable({ write(chunk, _enc, done) { logs += chunk; done(); } });
  c = await startRuntime({ env: { ...env, NATS_URL: nats.url, DATABASE_URL: db.url }, registry, verifier, log: createLogger({ level: 'debug', destination: capture }) });
});
afterAll(async () => {
  await c?.stop();
  await db?.drop().catch(() => {});
  await nats?.stop();
});

type Res = { status: number; body: any; headers: Headers };
async function call(method: string, path: string, o: { json?: unknown; token?: string; headers?: Record<string, string>; form?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.json !== undefined) headers['content-type'] = 'application/json';
  if (o.form !== undefined) headers['content-type'] ??= 'application/x-www-form-urlencoded';
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  const res = await fetch(c.url + path, { method, headers, body: o.json !== undefined ? JSON.stringify(o.json) : o.form });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body, headers: res.headers };
}

const run = Math.random().toString(36).slice(2, 7);
let n = 0;
const newEmail = () => `user-${run}-${++n}@example.test`;
const PASSWORD = 'a perfectly fine password';
async function registerAndLogin(password = PASSWORD) {
  const email = newEmail();
  const reg = await call('POST', '/api/auth/register', { json: { email, password, name: 'Ana' } });
  expect(reg.status).toBe(201);
  const login = await call('POST', '/api/auth/login', { json: { email, password } });
  expect(login.status).toBe(200);
  return { email, id: reg.body.id as string, ...login.body as { accessToken: string; refreshToken: string } };
}
const adminToken = async () => (await call('POST', '/api/auth/login', { json: ADMIN })).body.accessToken as string;

describe('register and login', () => {
  it('registers a customer; 409 EMAIL_TAKEN in any case; validates the password length', async () => {
    const email = newEmail();
    const r = await call('POST', '/api/auth/register', { json: { email, password: PASSWORD, name: 'Ana' } });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({ id: expect.any(String), email, name: 'Ana', roles: ['customer'] });
    const again = await call('POST', '/api/auth/register', { json: { email: email.toUpperCase(), password: PASSWORD, name: 'B' } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('EMAIL_TAKEN');
    for (const password of ['short', 'x'.repeat(129)]) {
      const bad = await call('POST', '/api/auth/register', { json: { email: newEmail(), password, name: 'A' } });
      expect(bad.status).toBe(400);
      expect(bad.body.error.details[0].field).toBe('password');
    }
    expect((await call('POST', '/api/auth/register', { json: { email: newEmail(), password: 'x'.repeat(128), name: 'A' } })).status).toBe(201);
    expect((await call('POST', '/api/auth/register', { json: { email: 'not-an-email', password: PASSWORD, name: 'A' } })).status).toBe(400);
  });

  it('logs in with a Bearer pair whose access token carries iss, aud, sub, exp, iat, jti, roles and a kid', async () => {
    const s = await registerAndLogin();
    const [h, p] = s.accessToken.split('.').slice(0, 2).map((x) => JSON.parse(Buffer.from(x, 'base64url').toString()));
    expect(h).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt', kid: expect.any(String) });
    expect(p).toMatchObject({ iss: 'orderflow-identity', aud: 'orderflow', sub: s.id, roles: ['customer'], jti: expect.any(String) });
    expect(p.exp - p.iat).toBe(120);
    const login = await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } });
    expect(login.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 120 });
    expect(login.headers.get('cache-control')).toBe('no-store');
  });

  it('answers an unknown email exactly as a wrong password', async () => {
    const s = await registerAndLogin();
    const wrong = await call('POST', '/api/auth/login', { json: { email: s.email, password: 'not the password at all' } });
    const unknown = await call('POST', '/api/auth/login', { json: { email: newEmail(), password: 'not the password at all' } });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: { code: 'INVALID_CREDENTIALS', message: expect.any(String) } });
    expect(unknown.status).toBe(wrong.status);
    expect(unknown.body).toEqual(wrong.body);
  });

  it('locks an account after LOGIN_MAX_ATTEMPTS failures, even for the right password, with Retry-After and RateLimit-*', async () => {
    const s = await registerAndLogin();
    for (let i = 0; i < 3; i++) expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: 'wrong password!' } })).status).toBe(401);
    const locked = await call('POST', '/api/auth/login', { json: { email: s.email.toUpperCase(), password: PASSWORD } });
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe('RATE_LIMITED');
    const retry = Number(locked.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(900);
    expect(locked.headers.get('ratelimit-limit')).toBe('3');
    expect(locked.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(locked.headers.get('ratelimit-reset'))).toBe(retry);
    // The count is in Postgres, not in this process: a second replica sees it.
    const [row] = await c.deps.orm.em.fork().execute<{ failures: number }[]>('select failures from identity.login_attempts where email = ?', [s.email]);
    expect(row!.failures).toBeGreaterThan(3);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^orderflow_rate_limit_rejections_total\{scope="login"\} [1-9]/m);
    // Another account is unaffected.
    expect((await call('POST', '/api/auth/login', { json: ADMIN })).status).toBe(200);
  });

  it('a success clears the failure count', async () => {
    const s = await registerAndLogin();
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 2; i++) expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: 'wrong password!' } })).status).toBe(401);
      expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } })).status).toBe(200);
    }
  });
});

describe('the login limit counts verdicts only', () => {
  const lockout = async () => (await import('./lockout.ts')).createLockout({ orm: c.deps.orm, maxAttempts: 3, windowS: 900 });
  const failures = async (email: string) => (await c.deps.orm.em.fork().execute<{ failures: number }[]>('select failures from identity.login_attempts where email = ?', [email]))[0]?.failures ?? 0;

  it('an attempt that fails with a server error after it was counted is refunded; wrong passwords still count', async () => {
    const l = await lockout();
    const email = newEmail();
    // More errors than the limit (a pool timeout after the count, say): none of them may lock the account.
    for (let i = 0; i < 5; i++) await expect(l.attempt(email, async () => { throw new Error('pool timeout'); })).rejects.toThrow('pool timeout');
    expect(await failures(email)).toBe(0);
    // Wrong passwords (a null verdict) still count, up to the limit.
    for (let i = 0; i < 3; i++) expect(await l.attempt(email, async () => null)).toEqual({ limited: false, value: null });
    expect(await failures(email)).toBe(3);
    expect(await l.attempt(email, async () => 'never checked')).toMatchObject({ limited: true });
  });

  it('over HTTP: a login that ends in a server error does not count toward the limit', async () => {
    const s = await registerAndLogin();
    // Inject the failure after the count: the users table is briefly away, so the lookup fails (a 5xx) once the attempt is taken.
    const em = c.deps.orm.em.fork();
    await em.execute('alter table identity.users rename to users_away');
    try {
      for (let i = 0; i < 4; i++) expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } })).status).toBeGreaterThanOrEqual(500);
    } finally {
      await em.execute('alter table identity.users_away rename to users');
    }
    expect(await failures(s.email)).toBe(0);
    expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } })).status).toBe(200);
  });

  it('N concurrent wrong guesses cannot exceed the limit: exactly LOGIN_MAX_ATTEMPTS are checked, the rest are 429', async () => {
    const s = await registerAndLogin();
    const answers = await Promise.all(Array.from({ length: 10 }, () => call('POST', '/api/auth/login', { json: { email: s.email, password: 'a wrong guess!' } })));
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    // The same with errors among the guesses: refunds give back only the errored slots, never more than the limit checks.
    const l = await lockout();
    const email = newEmail();
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => l.attempt(email, async () => {
      await new Promise((r) => setTimeout(r, 20));
      if (i % 3 === 0) throw new Error('server error');
      return null;
    })));
    const verdicts = outcomes.filter((o) => o.status === 'fulfilled' && !o.value.limited).length;
    expect(verdicts).toBeLessThanOrEqual(3);
    expect(await failures(email)).toBeGreaterThanOrEqual(verdicts);
  });
});

describe('refresh and logout', () => {
  it('rotates the refresh token; a used one revokes the whole family and answers 401', async () => {
    const s = await registerAndLogin();
    const r1 = await call('POST', '/api/auth/refresh', { json: { refreshToken: s.refreshToken } });
    expect(r1.status).toBe(200);
    expect(r1.body).toMatchObject({ tokenType: 'Bearer', accessToken: expect.any(String), refreshToken: expect.any(String) });
    expect(r1.body.refreshToken).not.toBe(s.refreshToken);
    // The first token again: reuse.
    const reuse = await call('POST', '/api/auth/refresh', { json: { refreshToken: s.refreshToken } });
    expect(reuse.status).toBe(401);
    // Its descendant dies with it.
    expect((await call('POST', '/api/auth/refresh', { json: { refreshToken: r1.body.refreshToken } })).status).toBe(401);
    // Another login of the same user is another family, untouched.
    const other = await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } });
    expect((await call('POST', '/api/auth/refresh', { json: { refreshToken: other.body.refreshToken } })).status).toBe(200);
    expect((await call('POST', '/api/auth/refresh', { json: { refreshToken: 'never-issued' } })).status).toBe(401);
  });

  it('logout revokes the family', async () => {
    const s = await registerAndLogin();
    const r1 = await call('POST', '/api/auth/refresh', { json: { refreshToken: s.refreshToken } });
    expect((await call('POST', '/api/auth/logout', { json: { refreshToken: s.refreshToken } })).status).toBe(204);
    expect((await call('POST', '/api/auth/refresh', { json: { refreshToken: r1.body.refreshToken } })).status).toBe(401);
    expect((await call('POST', '/api/auth/logout', { json: { refreshToken: 'unknown' } })).status).toBe(204);
  });
});

describe('/api/users/me', () => {
  it('needs a user token; reads and renames', async () => {
    const s = await registerAndLogin();
    const none = await call('GET', '/api/users/me');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.body.error.code).toBe('UNAUTHENTICATED');
    expect((await call('GET', '/api/users/me', { token: 'x.y.z' })).status).toBe(401);
    const me = await call('GET', '/api/users/me', { token: s.accessToken });
    expect(me.body).toMatchObject({ id: s.id, email: s.email, name: 'Ana', roles: ['customer'] });
    const renamed = await call('PATCH', '/api/users/me', { token: s.accessToken, json: { name: 'Ana Lima' } });
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe('Ana Lima');
    expect((await call('PATCH', '/api/users/me', { token: s.accessToken, json: { name: '' } })).status).toBe(400);
  });

  it('a password change needs the current password and revokes every refresh family', async () => {
    const s = await registerAndLogin();
    const second = await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } });
    const wrong = await call('POST', '/api/users/me/password', { token: s.accessToken, json: { currentPassword: 'not it at all', newPassword: 'a brand new password' } });
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe('INVALID_CREDENTIALS');
    expect((await call('POST', '/api/users/me/password', { token: s.accessToken, json: { currentPassword: PASSWORD, newPassword: 'short' } })).status).toBe(400);
    expect((await call('POST', '/api/users/me/password', { token: s.accessToken, json: { currentPassword: PASSWORD, newPassword: 'a brand new password' } })).status).toBe(204);
    for (const t of [s.refreshToken, second.body.refreshToken]) expect((await call('POST', '/api/auth/refresh', { json: { refreshToken: t } })).status).toBe(401);
    expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } })).status).toBe(401);
    expect((await call('POST', '/api/auth/login', { json: { email: s.email, password: 'a brand new password' } })).status).toBe(200);
  });
});

describe('admin', () => {
  it('needs an admin: 401 without a token, 403 for a customer', async () => {
    const s = await registerAndLogin();
    expect((await call('GET', '/api/admin/users')).status).toBe(401);
    for (const [m, p, json] of [['GET', '/api/admin/users', undefined], ['PUT', `/api/admin/users/${s.id}/roles`, { roles: ['admin'] }], ['POST', '/api/admin/clients', { name: 'x', scopes: ['admin'] }]] as const) {
      const r = await call(m, p, { token: s.accessToken, json });
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
    }
  });

  it('finds users by email and sets their roles; the next refresh carries them', async () => {
    const s = await registerAndLogin();
    const admin = await adminToken();
    const found = await call('GET', `/api/admin/users?email=${encodeURIComponent(s.email.toUpperCase())}`, { token: admin });
    expect(found.body).toEqual({ items: [expect.objectContaining({ id: s.id, email: s.email, roles: ['customer'] })], nextCursor: null });
    const set = await call('PUT', `/api/admin/users/${s.id}/roles`, { token: admin, json: { roles: ['customer', 'investor'] } });
    expect(set.status).toBe(200);
    expect(set.body.roles).toEqual(['customer', 'investor']);
    expect((await call('PUT', `/api/admin/users/${s.id}/roles`, { token: admin, json: { roles: ['emperor'] } })).status).toBe(400);
    expect((await call('PUT', '/api/admin/users/00000000-0000-4000-8000-000000000000/roles', { token: admin, json: { roles: [] } })).status).toBe(404);
    expect((await call('PUT', '/api/admin/users/not-a-uuid/roles', { token: admin, json: { roles: [] } })).status).toBe(404);
    const refreshed = await call('POST', '/api/auth/refresh', { json: { refreshToken: s.refreshToken } });
    expect(JSON.parse(Buffer.from(refreshed.body.accessToken.split('.')[1], 'base64url').toString()).roles).toEqual(['customer', 'investor']);
    // Pages: every user once.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Res = await call('GET', `/api/admin/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: admin });
      expect(page.status).toBe(200);
      seen.push(...page.body.items.map((u: { email: string }) => u.email));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toContain(s.email);
    expect((await call('GET', '/api/admin/users?cursor=garbage', { token: admin })).status).toBe(400);
  });
});

describe('client credentials', () => {
  const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });

  it('an admin creates a client whose secret is shown once; the client gets scoped tokens', async () => {
    const admin = await adminToken();
    const created = await call('POST', '/api/admin/clients', { token: admin, json: { name: 'billing', scopes: ['orders:read', 'orders:write'] } });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ clientId: expect.stringMatching(/^cl_/), clientSecret: expect.any(String), name: 'billing', scopes: ['orders:read', 'orders:write'] });
    const { clientId, clientSecret } = created.body;
    const [row] = await c.deps.orm.em.fork().execute<{ secret_hash: string }[]>('select secret_hash from identity.clients where client_id = ?', [clientId]);
    expect(row!.secret_hash).not.toContain(clientSecret);

    const all = await call('POST', '/api/auth/token', { form: 'grant_type=client_credentials', headers: basic(clientId, clientSecret) });
    expect(all.status).toBe(200);
    expect(all.body).toEqual({ access_token: expect.any(String), token_type: 'Bearer', expires_in: 120, scope: 'orders:read orders:write' });
    const some = await call('POST', '/api/auth/token', { form: 'grant_type=client_credentials&scope=orders%3Aread', headers: basic(clientId, clientSecret) });
    expect(some.body.scope).toBe('orders:read');
    const verifier = createVerifier({ issuer: 'orderflow-identity', audience: 'orderflow', jwks: remoteJwks(c.url) });
    expect(await verifier.verify(some.body.access_token)).toEqual({ sub: clientId, kind: 'client', roles: [], scopes: ['orders:read'] });
    // A client token is no user: /api/users/me refuses it.
    expect((await call('GET', '/api/users/me', { token: some.body.access_token })).status).toBe(403);

    const tooMuch = await call('POST', '/api/auth/token', { form: 'grant_type=client_credentials&scope=admin', headers: basic(clientId, clientSecret) });
    expect(tooMuch.status).toBe(400);
    expect(tooMuch.body.error).toBe('invalid_scope');
  });

  it('answers errors in RFC 6749 §5.2 form: invalid_client 401, unsupported_grant_type 400, invalid_request 400', async () => {
    const admin = await adminToken();
    const { clientId, clientSecret } = (await call('POST', '/api/admin/clients', { token: admin, json: { name: 'x', scopes: ['funding:read'] } })).body;
    for (const headers of [basic(clientId, 'wrong-secret'), basic('cl_nobody', clientSecret), basic(`${clientId}\u0000`, clientSecret), {}, { authorization: 'Basic !!!' }]) {
      const r = await call('POST', '/api/auth/token', { form: 'grant_type=client_credentials', headers });
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ error: 'invalid_client', error_description: expect.any(String) });
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic/);
    }
    const grant = await call('POST', '/api/auth/token', { form: 'grant_type=password&username=a&password=b', headers: basic(clientId, clientSecret) });
    expect(grant.status).toBe(400);
    expect(grant.body.error).toBe('unsupported_grant_type');
    expect((await call('POST', '/api/auth/token', { form: 'scope=x', headers: basic(clientId, clientSecret) })).body.error).toBe('invalid_request');
    const asJson = await call('POST', '/api/auth/token', { json: { grant_type: 'client_credentials' }, headers: basic(clientId, clientSecret) });
    expect(asJson.status).toBe(400);
    expect(asJson.body.error).toBe('invalid_request');
    // Form bodies stay refused everywhere else.
    expect((await call('POST', '/api/auth/login', { form: 'email=a&password=b' })).status).toBe(415);
  });
});

describe('signing keys', () => {
  it('rotation publishes the new key beside the old; a token from before still verifies; new tokens use the new kid', async () => {
    const s = await registerAndLogin();
    const before = (await call('GET', '/.well-known/jwks.json')).body.keys as { kid: string; kty: string; d?: string }[];
    const oldKid = JSON.parse(Buffer.from(s.accessToken.split('.')[0]!, 'base64url').toString()).kid;
    expect(before.map((k) => k.kid)).toContain(oldKid);
    expect(before.every((k) => k.kty === 'OKP' && k.d === undefined)).toBe(true);

    // Another replica rotates (its own ring over the same table).
    const other = createKeyRing({ orm: c.deps.orm, kek: (await import('./config.ts')).loadIdentityConfig({}).kek, log: createLogger({ level: 'silent' }),
      issuer: 'orderflow-identity', audience: 'orderflow', accessTtlS: 120, maxAgeS: 86_400, checkMs: 200, publishLeadS: 0 });
    const newKid = await other.rotate({ force: true });
    expect(newKid).toBeTruthy();
    const after = (await call('GET', '/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
    expect(after).toEqual(expect.arrayContaining([oldKid, newKid]));

    const verifier = createVerifier({ issuer: 'orderflow-identity', audience: 'orderflow', jwks: remoteJwks(c.url) });
    expect((await verifier.verify(s.accessToken)).sub).toBe(s.id);
    const { localVerifier } = await import('./main.ts');
    expect((await localVerifier(c.deps.orm, env).verify(s.accessToken)).sub).toBe(s.id);
    expect((await call('GET', '/api/users/me', { token: s.accessToken })).status).toBe(200);
    // This replica picks the new key up at its next check.
    const fresh = await eventually(async () => {
      const t = (await call('POST', '/api/auth/login', { json: { email: s.email, password: PASSWORD } })).body.accessToken as string;
      return JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()).kid === newKid ? t : undefined;
    }, { timeoutMs: 20_000, what: 'tokens signed by the new key' });
    expect((await verifier.verify(fresh!)).sub).toBe(s.id);
    await expect(verifier.verify(s.accessToken.slice(0, -4) + 'AAAA')).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it('stores the private keys encrypted; the wrong KEY_ENCRYPTION_KEY cannot open them', async () => {
    const rows = await c.deps.orm.em.fork().execute<{ kid: string; private_key_enc: string }[]>('select kid, private_key_enc from identity.signing_keys');
    expect(rows.length).toBeGreaterThan(0);
    const { openKey, KeyDecryptionError } = await import('./keys.ts');
    const { loadIdentityConfig } = await import('./config.ts');
    const right = loadIdentityConfig({}).kek;
    const der = openKey(right, rows[0]!.private_key_enc, rows[0]!.kid);
    expect(der.length).toBeGreaterThan(0);
    expect(rows[0]!.private_key_enc).not.toContain(der.toString('base64'));
    expect(() => openKey(Buffer.alloc(32, 7), rows[0]!.private_key_enc, rows[0]!.kid)).toThrow(KeyDecryptionError);
    // The kid is bound in: a ciphertext moved to another row does not open.
    expect(() => openKey(right, rows[0]!.private_key_enc, 'another-kid')).toThrow(KeyDecryptionError);
  });
});

describe('configuration', () => {
  it('production without KEY_ENCRYPTION_KEY is a ConfigError naming it; a short key too', async () => {
    const { loadIdentityConfig } = await import('./config.ts');
    expect(() => loadIdentityConfig({ ORDERFLOW_ENV: 'production' })).toThrow(/KEY_ENCRYPTION_KEY/);
    expect(() => loadIdentityConfig({ KEY_ENCRYPTION_KEY: Buffer.alloc(16).toString('base64') })).toThrow(/KEY_ENCRYPTION_KEY/);
    const key = Buffer.alloc(32, 9);
    const ok = loadIdentityConfig({ ORDERFLOW_ENV: 'production', KEY_ENCRYPTION_KEY: key.toString('base64') });
    expect(ok.kek.equals(key)).toBe(true);
    expect(ok.devKek).toBe(false);
  });

  it('the first admin is created once; a restart keeps its password', async () => {
    expect((await call('POST', '/api/auth/login', { json: ADMIN })).status).toBe(200);
    const { ensureFirstAdmin } = await import('./users.ts');
    await ensureFirstAdmin(c.deps.orm, createLogger({ level: 'silent' }), { email: ADMIN.email, password: 'another password entirely', production: true });
    expect((await call('POST', '/api/auth/login', { json: ADMIN })).status).toBe(200);
    const [n] = await c.deps.orm.em.fork().execute<{ n: number }[]>(`select count(*)::int as n from identity.users where email = ?`, [ADMIN.email]);
    expect(n!.n).toBe(1);
  });
});

describe('development admin', () => {
  it('with neither ADMIN_EMAIL nor ADMIN_PASSWORD: admin@orderflow.local with the documented password, never logged; never in production', async () => {
    const { ensureFirstAdmin, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD } = await import('./users.ts');
    const count = async () => (await c.deps.orm.em.fork().execute<{ n: number }[]>(`select count(*)::int as n from identity.users where email = ?`, [DEV_ADMIN_EMAIL]))[0]!.n;
    let out = '';
    const log = createLogger({ level: 'info', destination: new Writable({ write(chunk, _e, done) { out += chunk; done(); } }) });
    await ensureFirstAdmin(c.deps.orm, log, { production: true });
    expect(await count()).toBe(0);
    await ensureFirstAdmin(c.deps.orm, log, { production: false });
    await new Promise((r) => setTimeout(r, 100));
    const line = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(line.email).toBe(DEV_ADMIN_EMAIL);
    expect(out).not.toContain(DEV_ADMIN_PASSWORD);
    const login = await call('POST', '/api/auth/login', { json: { email: DEV_ADMIN_EMAIL, password: DEV_ADMIN_PASSWORD } });
    expect(login.status).toBe(200);
    expect(JSON.parse(Buffer.from(login.body.accessToken.split('.')[1], 'base64url').toString()).roles).toEqual(['admin']);
    out = '';
    await ensureFirstAdmin(c.deps.orm, log, { production: false });
    await new Promise((r) => setTimeout(r, 100));
    expect(out).not.toContain('password');
    expect(await count()).toBe(1);
  });
});

describe('logs', () => {
  it('carry no password, token or client secret', async () => {
    const s = await registerAndLogin('secret-password-in-flight');
    const r = await call('POST', '/api/auth/refresh', { json: { refreshToken: s.refreshToken } });
    const admin = await adminToken();
    const cl = (await call('POST', '/api/admin/clients', { token: admin, json: { name: 'logcheck', scopes: ['orders:read'] } })).body;
    const tok = await call('POST', '/api/auth/token', { form: 'grant_type=client_credentials', headers: { authorization: `Basic ${Buffer.from(`${cl.clientId}:${cl.clientSecret}`).toString('base64')}` } });
    await call('POST', '/api/auth/login', { json: { email: s.email, password: 'wrong-password-in-flight' } });
    await new Promise((r) => setTimeout(r, 200));
    expect(logs.length).toBeGreaterThan(1000);
    for (const secret of ['secret-password-in-flight', 'wrong-password-in-flight', ADMIN.password, s.accessToken, s.refreshToken, r.body.refreshToken, r.body.accessToken, cl.clientSecret, tok.body.access_token, admin]) {
      expect(logs.includes(secret), `a secret appears in the logs: ${secret.slice(0, 12)}…`).toBe(false);
    }
  });
});
