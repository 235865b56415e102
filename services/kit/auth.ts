// Access-token verification for every service: local (no call to identity per request)
// against a cached JWKS, and Hono middleware that turns a token into a principal.
//
// Keys come from a `jwks` function: in one process identity hands over its own
// (identity/keys.ts), across processes `remoteJwks(IDENTITY_URL)` fetches
// /.well-known/jwks.json. Either way the set is cached, refetched when it is older than
// `maxAgeMs`, and refetched at once for an unknown kid (a key that rotated in), but at
// most once per `cooldownMs`, so garbage kids cannot make us hammer identity.
import type { MiddlewareHandler } from 'hono';
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { HttpError } from './http/errors.ts';

/** Who a valid token speaks for. A user carries roles, a machine client scopes. */
export type Principal = { sub: string; kind: 'user' | 'client'; roles: string[]; scopes: string[] };

/** The token is missing, malformed, expired, foreign-signed or meant for someone else. */
export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError';
}

/** The JWKS could not be fetched: not the client's fault (a 503, not a 401). */
export class KeysUnavailableError extends Error {
  override name = 'KeysUnavailableError';
}

export type Verifier = {
  /** `const principal = await verifier.verify(token)`; throws InvalidTokenError, or KeysUnavailableError. */
  verify(token: string): Promise<Principal>;
};

/** The only algorithm identity signs with: anything else (none, HS256 with the public key as secret) is refused before any key is used. */
export const ACCESS_TOKEN_ALGS = ['EdDSA'];

export type VerifierOptions = {
  issuer: string;
  audience: string;
  jwks: () => Promise<JSONWebKeySet>;
  /** Refetch the set when it is older than this (default 5 min). */
  maxAgeMs?: number;
  /** At most one refetch for unknown kids per this long (default 30 s). */
  cooldownMs?: number;
  /** Tolerated clock difference for exp/iat (default 30 s). */
  clockToleranceS?: number;
  now?: () => number;
  /** Verified tokens kept in memory until they expire (default 10,000; 0 verifies every time). */
  maxCachedTokens?: number;
};

/** A JWKS source over HTTP. `createVerifier({ issuer, audience, jwks: remoteJwks(env.IDENTITY_URL) })` */
export function remoteJwks(identityUrl: string, opts: { timeoutMs?: number } = {}): () => Promise<JSONWebKeySet> {
  const url = new URL('/.well-known/jwks.json', identityUrl);
  return async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 5000), headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`JWKS fetch from ${url} answered ${res.status}`);
    const body = await res.json() as JSONWebKeySet;
    if (!Array.isArray(body?.keys)) throw new Error(`JWKS from ${url} has no keys array`);
    return body;
  };
}

/** `const verifier = createVerifier({ issuer: 'orderflow-identity', audience: 'orderflow', jwks })` */
export function createVerifier(o: VerifierOptions): Verifier {
  const maxAgeMs = o.maxAgeMs ?? 300_000;
  const cooldownMs = o.cooldownMs ?? 30_000;
  const now = o.now ?? Date.now;
  let set: JWTVerifyGetKey | undefined;
  let loadedAt = -Infinity;
  // Failed fetches count too: with identity down, unknown kids must not turn into a fetch each.
  let triedAt = -Infinity;
  let loading: Promise<void> | undefined;
  const verified = new Map<string, { principal: Principal; expMs: number }>();
  const maxCached = o.maxCachedTokens ?? 10_000;

  const load = () => {
    triedAt = now();
    loading ??= o.jwks().then((jwks) => { set = createLocalJWKSet(jwks); loadedAt = now(); }).finally(() => { loading = undefined; });
    return loading;
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (!set) await load();
    // A stale set beats none while identity cannot be reached.
    else if (now() - loadedAt > maxAgeMs && now() - triedAt >= cooldownMs) await load().catch(() => {});
    try {
      return await set!(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || now() - triedAt < cooldownMs) throw err;
      await load();
      return await set!(header, token);
    }
  };

  return {
    async verify(token) {
      // A client sends the same token for minutes: once its signature and claims passed, later
      // requests with the very same string are answered from memory until it expires (an
      // Ed25519 verification per request was a large share of intake's CPU). Only successes
      // are kept, and never past `exp`, so nothing is accepted that verifying again would refuse
      // except a token whose signing key was withdrawn early, which rotation never does.
      const hit = verified.get(token);
      if (hit) {
        if (hit.expMs > now()) return hit.principal;
        verified.delete(token);
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          issuer: o.issuer, audience: o.audience, algorithms: ACCESS_TOKEN_ALGS, typ: 'at+jwt',
          requiredClaims: ['sub', 'exp', 'iat', 'jti'], clockTolerance: o.clockToleranceS ?? 30,
          currentDate: new Date(now()),
        }));
      } catch (err) {
        if (err instanceof errors.JOSEError) throw new InvalidTokenError(`invalid token: ${err.code}`, { cause: err });
        throw new KeysUnavailableError('the token signing keys could not be fetched', { cause: err });
      }
      const principal = principalOf(payload);
      // Bounded: the oldest entry leaves first (Map keeps insertion order).
      if (maxCached > 0) {
        if (verified.size >= maxCached) verified.delete(verified.keys().next().value!);
        verified.set(token, { principal, expMs: payload.exp! * 1000 });
      }
      return principal;
    },
  };
}

const strings = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? v as string[] : undefined);

/** Users' tokens carry `roles`, clients' tokens `scope` (RFC 9068, space-separated) and `client_id`. */
function principalOf(p: JWTPayload): Principal {
  if (typeof p.scope === 'string' && typeof p.client_id === 'string') {
    return { sub: p.sub!, kind: 'client', roles: [], scopes: p.scope.split(' ').filter(Boolean) };
  }
  const roles = strings(p.roles);
  if (!roles) throw new InvalidTokenError('invalid token: neither roles nor a client scope');
  return { sub: p.sub!, kind: 'user', roles, scopes: [] };
}

/** What the auth middleware sets on the context. */
export type AuthEnv = { Variables: { principal: Principal } };

// The WWW-Authenticate challenge is set on the context before the throw: onError's c.json keeps it.
const unauthenticated = (message: string) => new HttpError(401, 'UNAUTHENTICATED', message);

/**
 * 401 UNAUTHENTICATED (with `WWW-Authenticate: Bearer`) unless the request carries a valid
 * bearer token; the principal is then `c.get('principal')`.
 * `app.get('/api/users/me', requireAuth(verifier), (c) => c.json(c.get('principal')))`
 */
export function requireAuth(verifier: Verifier, opts: { queryToken?: boolean } = {}): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    let header = c.req.header('authorization') ?? '';
    // Browsers cannot set headers on EventSource or WebSocket: those routes take ?access_token= (RFC 6750 §2.3) when no header is sent.
    if (!header && opts.queryToken) {
      const q = c.req.query('access_token');
      if (q !== undefined) header = `Bearer ${q}`;
    }
    const m = /^Bearer[ ]+([\w-]+\.[\w-]+\.[\w-]*)\s*$/i.exec(header);
    if (!m) {
      c.header('WWW-Authenticate', header ? 'Bearer error="invalid_token"' : 'Bearer');
      throw unauthenticated(header ? 'the Authorization header is not a bearer token' : 'this route needs Authorization: Bearer <access token>');
    }
    try {
      c.set('principal', await verifier.verify(m[1]!));
    } catch (err) {
      if (err instanceof KeysUnavailableError) {
        c.header('Retry-After', '1');
        throw new HttpError(503, 'UNAVAILABLE', 'token keys are unavailable; retry shortly', undefined, { cause: err });
      }
      if (!(err instanceof InvalidTokenError)) throw err;
      c.header('WWW-Authenticate', 'Bearer error="invalid_token"');
      throw unauthenticated('the access token is invalid or expired');
    }
    await next();
  };
}

/** What a public route does with a bearer token it cannot accept (RouteDef.invalidToken). */
export type InvalidTokenAnswer = 'refuse' | 'anonymous';

/**
 * For public routes: no token leaves the caller anonymous; a valid bearer token makes the
 * principal `c.get('principal')` (so the rate limiter counts the caller by principal, not
 * by address). Another scheme (HTTP Basic on the token endpoint) is the route's own
 * business and is left alone. A bearer token that does not verify is 401, as on any other
 * route (CONTRACTS.md: a bad or expired token is 401; RFC 6750 §3.1 invalid_token), unless
 * `invalid: 'anonymous'`: the routes a client uses to get a new token must not be barred
 * by the stale one it still sends. With the keys unreachable the caller is anonymous: a
 * public route still answers, under the stricter per-address limit.
 * `app.get('/api/products', optionalAuth(verifier), handler)`
 */
export function optionalAuth(verifier: Verifier, opts: { invalid?: InvalidTokenAnswer } = {}): MiddlewareHandler<{ Variables: Partial<AuthEnv['Variables']> }> {
  const refuse = (opts.invalid ?? 'refuse') === 'refuse';
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!header || !/^Bearer(\s|$)/i.test(header)) return await next();
    const m = /^Bearer[ ]+([\w-]+\.[\w-]+\.[\w-]*)\s*$/i.exec(header);
    try {
      if (!m) throw new InvalidTokenError('not a JWT');
      c.set('principal', await verifier.verify(m[1]!));
    } catch (err) {
      if (err instanceof InvalidTokenError) {
        if (refuse) {
          c.header('WWW-Authenticate', 'Bearer error="invalid_token"');
          throw unauthenticated('the access token is invalid or expired; send none to call this route anonymously');
        }
      } else if (!(err instanceof KeysUnavailableError)) throw err;
    }
    await next();
  };
}

/**
 * 403 FORBIDDEN unless the principal has one of `roles` (a user) or one of `scopes` (a client).
 * Put it after requireAuth. `requireAccess({ roles: ['admin'], scopes: ['admin'] })`
 */
export function requireAccess(need: { roles?: readonly string[]; scopes?: readonly string[] }): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const p = c.get('principal');
    if (!p) { c.header('WWW-Authenticate', 'Bearer'); throw unauthenticated('this route needs Authorization: Bearer <access token>'); }
    if (!hasAccess(p, need)) throw new HttpError(403, 'FORBIDDEN', 'the access token lacks the role or scope this route needs');
    await next();
  };
}

/** Whether the principal has one of `roles` (a user) or one of `scopes` (a client). `hasAccess(p, { roles: ['admin'], scopes: ['orders:read'] })` */
export const hasAccess = (p: Principal, need: { roles?: readonly string[]; scopes?: readonly string[] }) =>
  (need.roles ?? []).some((r) => p.roles.includes(r)) || (need.scopes ?? []).some((s) => p.scopes.includes(s));

/**
 * Whose resources a principal may see: `undefined` for every one (it has one of the roles or
 * scopes in `seesAll`), else only its own (its `sub`). Another principal's resource is then a
 * 404, exactly as one that does not exist. `const owner = ownerFilter(p, { roles: ['admin'], scopes: ['orders:read'] })`
 */
export const ownerFilter = (p: Principal, seesAll: { roles?: readonly string[]; scopes?: readonly string[] }): string | undefined =>
  (hasAccess(p, seesAll) ? undefined : p.sub);

/** `requireRole('admin')`: a user with one of these roles. */
export const requireRole = (...roles: string[]) => requireAccess({ roles });
/** `requireScope('orders:write')`: a client with one of these scopes. */
export const requireScope = (...scopes: string[]) => requireAccess({ scopes });
