// Signing in to the console. The console is a browser app, so the tokens identity issues
// live in cookies the page's scripts cannot read (HttpOnly), that other sites' pages never
// send (SameSite=Strict), and only over TLS when the console is reached over TLS (Secure).
// Every console request verifies the access token locally (no call to identity per
// page); an expired one is swapped for a new pair with the refresh token, once, here.
//
// Identity is reached through its HTTP API: over the network at IDENTITY_URL when the
// admin target runs apart (Kubernetes), or in-process through the app itself when the
// process runs identity too (npm start). Either way it is the same code path a client
// uses: login lockout, rate limits, refresh-token rotation and reuse detection included.
import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createVerifier, InvalidTokenError, type App, type AppEnv, type Principal, type Verifier } from '../../kit/index.ts';
import type { AdminConfig } from '../config.ts';

export const ACCESS_COOKIE = 'orderflow_console_at';
export const REFRESH_COOKIE = 'orderflow_console_rt';
const COOKIE_PATH = '/admin';

/** The roles that may sign in to the console at all; what each may see is decided per section. */
export const CONSOLE_ROLES = ['admin', 'reviewer'] as const;

export type ConsoleEnv = AppEnv & { Variables: { principal: Principal; accessToken: string } };

/** The cluster's HTTP API as the console calls it (see the top of this file). */
export type ClusterApi = (path: string, init?: RequestInit) => Promise<Response>;

/** `const api = clusterApi(app, config.IDENTITY_URL)`: over HTTP when `baseUrl` is set, else in-process. */
export function clusterApi(app: App, baseUrl: string | undefined): ClusterApi {
  if (baseUrl) return async (path, init) => await fetch(new URL(path, baseUrl), { ...init, signal: AbortSignal.timeout(10_000) });
  return async (path, init) => await app.request(path, init);
}

/** A verifier of console access tokens against identity's published keys. */
export function consoleVerifier(api: ClusterApi, config: AdminConfig): Verifier {
  return createVerifier({
    issuer: config.IDENTITY_ISSUER, audience: config.IDENTITY_AUDIENCE, cooldownMs: 1000,
    jwks: async () => {
      const res = await api('/.well-known/jwks.json', { headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`JWKS answered ${res.status}`);
      return await res.json();
    },
  });
}

type TokenPair = { accessToken: string; refreshToken: string; expiresIn: number };

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body) });

/** The outcome of a sign-in attempt, as the login page words it. */
export type LoginResult =
  | { ok: true; tokens: TokenPair; principal: Principal }
  | { ok: false; status: number; message: string };

/** Ask identity for a token pair; refuse accounts without a console role (their fresh session is revoked at once). */
export async function signIn(api: ClusterApi, verifier: Verifier, email: string, password: string): Promise<LoginResult> {
  const res = await api('/api/auth/login', json({ email, password }));
  if (res.status === 401 || res.status === 400) return { ok: false, status: 401, message: 'The email or the password is wrong.' };
  if (res.status === 429) return { ok: false, status: 429, message: `Too many failed sign-ins for this account. Try again in ${res.headers.get('retry-after') ?? 'a few'} seconds.` };
  if (!res.ok) return { ok: false, status: 503, message: 'Sign-in is unavailable right now. Try again shortly.' };
  const tokens = await res.json() as TokenPair;
  const principal = await verifier.verify(tokens.accessToken);
  if (!CONSOLE_ROLES.some((r) => principal.roles.includes(r))) {
    await api('/api/auth/logout', json({ refreshToken: tokens.refreshToken })).catch(() => {});
    return { ok: false, status: 403, message: 'This account has no access to the operator console (it needs the admin or reviewer role).' };
  }
  return { ok: true, tokens, principal };
}

const secure = (c: Context) => new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';

/** Keep a pair in the console's cookies. The refresh cookie outlives the access token: it is what renews it. */
export function setSession(c: Context, t: TokenPair): void {
  const base = { path: COOKIE_PATH, httpOnly: true, sameSite: 'Strict' as const, secure: secure(c) };
  setCookie(c, ACCESS_COOKIE, t.accessToken, { ...base, maxAge: t.expiresIn });
  setCookie(c, REFRESH_COOKIE, t.refreshToken, { ...base, maxAge: 30 * 86_400 });
}

export function clearSession(c: Context): void {
  deleteCookie(c, ACCESS_COOKIE, { path: COOKIE_PATH, secure: secure(c) });
  deleteCookie(c, REFRESH_COOKIE, { path: COOKIE_PATH, secure: secure(c) });
}

/** End the session: identity revokes the refresh family, the cookies go. */
export async function signOut(c: Context, api: ClusterApi): Promise<void> {
  const refreshToken = getCookie(c, REFRESH_COOKIE);
  if (refreshToken) await api('/api/auth/logout', json({ refreshToken })).catch(() => {});
  clearSession(c);
}

/**
 * The request's principal from its cookies: the access token if it verifies, else a new
 * pair from the refresh token (set on the response). Null when neither works.
 */
async function sessionOf(c: Context, api: ClusterApi, verifier: Verifier): Promise<{ principal: Principal; accessToken: string } | null> {
  const access = getCookie(c, ACCESS_COOKIE);
  if (access) {
    try {
      return { principal: await verifier.verify(access), accessToken: access };
    } catch (err) {
      if (!(err instanceof InvalidTokenError)) throw err;
    }
  }
  const refreshToken = getCookie(c, REFRESH_COOKIE);
  if (!refreshToken) return null;
  const res = await api('/api/auth/refresh', json({ refreshToken }));
  if (!res.ok) {
    if (res.status >= 500) throw new Error(`refresh answered ${res.status}`);
    return null;
  }
  const tokens = await res.json() as TokenPair;
  setSession(c, tokens);
  return { principal: await verifier.verify(tokens.accessToken), accessToken: tokens.accessToken };
}

/** Only paths of the console are followed after sign-in: `next=//evil.example` is not an open redirect. */
export const safeNext = (next: string | undefined) => (next && /^\/admin(?:[/?#]|$)/.test(next) && !next.includes('\\') ? next : '/admin');

/**
 * The request came from a page of this console: its Origin (or, where a browser sends
 * none, its Referer) names this host. With SameSite=Strict cookies this is the second
 * lock against cross-site form posts.
 */
export function sameOrigin(c: Context): boolean {
  const from = c.req.header('origin') || c.req.header('referer');
  if (!from || from === 'null') return false;
  let host: string;
  try { host = new URL(from).host; } catch { return false; }
  const own = c.req.header('x-forwarded-host') ?? c.req.header('host') ?? new URL(c.req.url).host;
  return host === own;
}

export type Refusal = (c: Context, status: 401 | 403 | 405, why: string) => Response | Promise<Response>;

/**
 * Console middleware: a signed-in console user whose roles `allowed` accepts, and for
 * every POST a same-origin check. Without a session a GET is sent to the login page (an
 * SSE or script request gets 401 instead, as a redirect means nothing to it).
 */
export function requireConsole(o: { api: ClusterApi; verifier: Verifier; allowed: (p: Principal) => boolean; refuse: Refusal }): MiddlewareHandler<ConsoleEnv> {
  return async (c, next) => {
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !sameOrigin(c)) {
      return await o.refuse(c, 403, 'This form was not sent from a page of this console (its Origin does not match), so it was refused.');
    }
    const s = await sessionOf(c, o.api, o.verifier);
    if (!s) {
      clearSession(c);
      const wantsPage = c.req.method === 'GET' && (c.req.header('accept') ?? 'text/html').includes('text/html');
      if (wantsPage) return c.redirect(`/admin/login?next=${encodeURIComponent(c.req.path + (new URL(c.req.url).search))}`, 303);
      return await o.refuse(c, 401, 'You are not signed in, or your session has ended.');
    }
    if (!CONSOLE_ROLES.some((r) => s.principal.roles.includes(r)) || !o.allowed(s.principal)) {
      return await o.refuse(c, 403, 'Your account may not use this part of the console.');
    }
    c.set('principal', s.principal);
    c.set('accessToken', s.accessToken);
    await next();
  };
}
