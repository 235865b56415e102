// Identity's HTTP routes: /api/auth/*, /.well-known/jwks.json, /api/users/me*, and the
// admin routes for users and machine clients.
import type { Context } from 'hono';
import { z } from 'zod';
import { ClientCreated, ClientTokenAnswer, Jwks, OAuthError, TokenPair, UserPage, UserView } from '../../contracts/http.ts';
import type { MikroORM, Routes } from '../kit/index.ts';
import { HttpError, notFound } from '../kit/index.ts';
import { authenticateClient, createClient, SCOPES } from './clients.ts';
import type { IdentityConfig } from './config.ts';
import type { KeyRing } from './keys.ts';
import type { createLockout } from './lockout.ts';
import { hashPassword, verifyPassword } from './passwords.ts';
import { revokeAllFamilies, revokeFamilyOf, rotateRefreshToken, startFamily } from './sessions.ts';
import { createUser, decodeUserCursor, findUserByEmail, findUserById, listUsers, ROLES, updateUser, userView } from './users.ts';

export type IdentityRouteDeps = {
  orm: MikroORM;
  config: IdentityConfig;
  keys: KeyRing;
  lockout: ReturnType<typeof createLockout>;
  /** An Argon2id hash of nothing anyone knows: an unknown email is checked against it, so it costs what a wrong password costs. */
  dummyHash: string;
  /** Counts a login refused by the per-account limit (orderflow_rate_limit_rejections_total{scope="login"}). */
  onLimited?: () => void;
};

const email = z.string().trim().toLowerCase().max(254).pipe(z.email());
const password = z.string().min(10, 'must be at least 10 characters').max(128, 'must be at most 128 characters');
const name = z.string().trim().min(1).max(200);
const RegisterRequest = z.object({ email, password, name });
// Login takes any password up to the maximum: a short one is simply wrong, like any other.
const LoginRequest = z.object({ email: z.string().max(254), password: z.string().min(1).max(128) });
const RefreshRequest = z.object({ refreshToken: z.string().min(1).max(200) });
const PatchMeRequest = z.object({ name });
const PasswordRequest = z.object({ currentPassword: z.string().min(1).max(128), newPassword: password });
const RolesRequest = z.object({ roles: z.array(z.enum(ROLES)).max(ROLES.length) });
const ClientRequest = z.object({ name, scopes: z.array(z.enum(SCOPES)).min(1).max(SCOPES.length) });
const TokenForm = z.object({ grant_type: z.literal('client_credentials'), scope: z.string().optional().describe('space-separated scopes; default: all the client has') });
const ListUsersQuery = z.object({
  email: z.string().max(254).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(1000).optional(),
});

const noStore = { 'Cache-Control': 'no-store', Pragma: 'no-cache' };

/** The contract's 429, with Retry-After and the RateLimit-* headers. */
function rateLimited(c: Context, max: number, retryAfterS: number, onLimited?: () => void): never {
  onLimited?.();
  c.header('Retry-After', String(retryAfterS));
  c.header('RateLimit-Limit', String(max));
  c.header('RateLimit-Remaining', '0');
  c.header('RateLimit-Reset', String(retryAfterS));
  throw new HttpError(429, 'RATE_LIMITED', `too many failed logins for this account; retry in ${retryAfterS} s`);
}

const invalidCredentials = () => new HttpError(401, 'INVALID_CREDENTIALS', 'the email or the password is wrong');
const invalidRefresh = () => new HttpError(401, 'INVALID_REFRESH_TOKEN', 'the refresh token is invalid, expired, used or revoked');

export function identityRoutes(routes: Routes, d: IdentityRouteDeps) {
  const { orm, config, keys } = d;
  const userOnly = { roles: [...ROLES] };
  const adminOnly = { roles: ['admin'], scopes: ['admin'] };

  const tokenPair = async (userId: string, roles: string[], refreshToken: string) => {
    const { token, expiresIn } = await keys.sign({ roles }, userId);
    return { accessToken: token, refreshToken, tokenType: 'Bearer' as const, expiresIn };
  };

  // The /api/auth routes are how a client whose access token expired gets a new one, and many
  // clients keep sending the old one: here a token that does not verify leaves the call anonymous.
  let tags = ['auth'];
  routes.add({
    method: 'POST', path: '/api/auth/register', tags, summary: 'Create an account (role customer)', access: 'public', invalidToken: 'anonymous',
    body: RegisterRequest,
    responses: { 201: { description: 'the account', schema: UserView } },
    errors: [409],
    handler: async (c, { body: req }) => {
      const created = await createUser(orm.em.fork(), { email: req.email, name: req.name, passwordHash: await hashPassword(req.password), roles: ['customer'] });
      if (!created) throw new HttpError(409, 'EMAIL_TAKEN', 'an account with this email exists');
      c.get('log').info({ userId: created.id }, 'user registered');
      return c.json({ id: created.id, email: created.email, name: created.name, roles: created.roles }, 201);
    },
  });
  routes.add({
    method: 'POST', path: '/api/auth/login', tags, summary: 'Log in: an access token and a refresh token', access: 'public', invalidToken: 'anonymous',
    body: LoginRequest,
    responses: { 200: { description: 'the token pair', schema: TokenPair } },
    errors: [401],
    handler: async (c, { body: req }) => {
      // One counted attempt (lockout.ts): only a verdict counts, an error on the way is refunded.
      const attempt = await d.lockout.attempt(req.email, async () => {
        const user = await findUserByEmail(orm.em.fork(), req.email);
        // The same work whether or not the account exists: one Argon2id run, then the same answer.
        const ok = await verifyPassword(req.password, user?.password_hash ?? d.dummyHash);
        return user && ok ? user : null;
      });
      if (attempt.limited) rateLimited(c, config.LOGIN_MAX_ATTEMPTS, attempt.retryAfterS, d.onLimited);
      const user = attempt.value;
      if (!user) throw invalidCredentials();
      const view = userView(user);
      const refreshToken = await startFamily(orm.em.fork(), user.id, config.IDENTITY_REFRESH_TOKEN_TTL_S);
      c.get('log').info({ userId: user.id }, 'login');
      return c.json(await tokenPair(user.id, view.roles, refreshToken), 200, noStore);
    },
  });
  routes.add({
    method: 'POST', path: '/api/auth/refresh', tags, summary: 'Trade a refresh token for a new pair (a reused one revokes its family)', access: 'public', invalidToken: 'anonymous',
    body: RefreshRequest,
    responses: { 200: { description: 'the new token pair', schema: TokenPair } },
    errors: [401],
    handler: async (c, { body: req }) => {
      const r = await rotateRefreshToken(orm, req.refreshToken, config.IDENTITY_REFRESH_TOKEN_TTL_S);
      if (!r.ok) {
        if (r.reason === 'reused') c.get('log').warn('refresh token presented twice: its family is revoked');
        throw invalidRefresh();
      }
      const user = await findUserById(orm.em.fork(), r.userId);
      if (!user) throw invalidRefresh();
      // Roles as they are now: a role taken away is gone from the next access token.
      return c.json(await tokenPair(user.id, userView(user).roles, r.refreshToken), 200, noStore);
    },
  });
  routes.add({
    method: 'POST', path: '/api/auth/logout', tags, summary: "Log out: revoke the refresh token's family", access: 'public', invalidToken: 'anonymous',
    body: RefreshRequest,
    responses: { 204: { description: 'logged out', type: 'empty' } },
    handler: async (c, { body: req }) => {
      // Unknown or already revoked is still a 204 (as RFC 7009 answers): the client is logged out either way.
      await revokeFamilyOf(orm.em.fork(), req.refreshToken, 'logout');
      return c.body(null, 204);
    },
  });
  routes.add({
    method: 'POST', path: '/api/auth/token', tags, summary: 'OAuth 2.0 client credentials (RFC 6749 §4.4): client id and secret by HTTP Basic', access: 'public', invalidToken: 'anonymous',
    description: 'Errors in RFC 6749 §5.2 form: {"error","error_description"}, 400 or 401.',
    body: { schema: TokenForm, form: true },
    responses: {
      200: { description: 'an access token', schema: ClientTokenAnswer },
      400: { description: 'invalid_request, unsupported_grant_type, invalid_scope', schema: OAuthError },
      401: { description: 'invalid_client', schema: OAuthError },
    },
    handler: async (c) => tokenEndpoint(c, d),
  });

  tags = ['users'];
  routes.add({
    method: 'GET', path: '/api/users/me', tags, summary: 'Your account', access: userOnly,
    responses: { 200: { description: 'the account', schema: UserView } },
    errors: [404],
    handler: async (c, { principal }) => {
      const user = await findUserById(orm.em.fork(), principal!.sub);
      if (!user) throw notFound('user');
      return c.json(userView(user));
    },
  });
  routes.add({
    method: 'PATCH', path: '/api/users/me', tags, summary: 'Change your name', access: userOnly,
    body: PatchMeRequest,
    responses: { 200: { description: 'the account', schema: UserView } },
    errors: [404],
    handler: async (c, { body: req, principal }) => {
      const user = await updateUser(orm.em.fork(), principal!.sub, { name: req.name });
      if (!user) throw notFound('user');
      return c.json(user);
    },
  });
  routes.add({
    method: 'POST', path: '/api/users/me/password', tags, summary: 'Change your password (revokes every refresh family)', access: userOnly,
    body: PasswordRequest,
    responses: { 204: { description: 'changed', type: 'empty' } },
    errors: [404],
    handler: async (c, { body: req, principal }) => {
      const em = orm.em.fork();
      const user = await findUserById(em, principal!.sub);
      if (!user) throw notFound('user');
      // A stolen access token must not become a password oracle: the login limit counts here too.
      const attempt = await d.lockout.attempt(user.email, async () => (await verifyPassword(req.currentPassword, user.password_hash) ? true : null));
      if (attempt.limited) rateLimited(c, config.LOGIN_MAX_ATTEMPTS, attempt.retryAfterS, d.onLimited);
      if (!attempt.value) throw new HttpError(403, 'INVALID_CREDENTIALS', 'currentPassword is wrong');
      const passwordHash = await hashPassword(req.newPassword);
      const revoked = await em.transactional(async (tx) => {
        await updateUser(tx, user.id, { passwordHash });
        return await revokeAllFamilies(tx, user.id, 'password changed');
      });
      c.get('log').info({ userId: user.id, familiesRevoked: revoked }, 'password changed');
      return c.body(null, 204);
    },
  });

  tags = ['admin'];
  routes.add({
    method: 'GET', path: '/api/admin/users', tags, summary: 'List or find accounts', access: adminOnly,
    query: ListUsersQuery,
    responses: { 200: { description: 'a page of accounts', schema: UserPage } },
    handler: async (c, { query: q }) => {
      const after = q.cursor === undefined ? undefined : decodeUserCursor(q.cursor);
      if (after === null) throw new HttpError(400, 'VALIDATION_FAILED', 'invalid cursor', [{ field: 'cursor', message: 'not a cursor this API returned' }]);
      return c.json(await listUsers(orm.em.fork(), { email: q.email, limit: q.limit, after }));
    },
  });
  routes.add({
    method: 'PUT', path: '/api/admin/users/{id}/roles', tags, summary: "Set an account's roles", access: adminOnly,
    params: { id: { description: 'the account id' } }, body: RolesRequest,
    responses: { 200: { description: 'the account', schema: UserView } },
    errors: [404],
    handler: async (c, { body: req, principal }) => {
      const user = await updateUser(orm.em.fork(), c.req.param('id')!, { roles: [...new Set(req.roles)] }).catch(() => null);
      if (!user) throw notFound(`user ${c.req.param('id')}`);
      c.get('log').info({ userId: user.id, roles: user.roles, by: principal!.sub }, 'roles changed');
      return c.json(user);
    },
  });
  routes.add({
    method: 'POST', path: '/api/admin/clients', tags, summary: 'Create a machine client (its secret is shown once)', access: adminOnly,
    body: ClientRequest,
    responses: { 201: { description: 'the client with its secret', schema: ClientCreated } },
    // No Idempotency-Key replay here: replaying would mean storing the secret, which is shown once.
    handler: async (c, { body: req, principal }) => {
      const client = await createClient(orm.em.fork(), req.name, [...new Set(req.scopes)]);
      c.get('log').info({ clientId: client.clientId, scopes: client.scopes, by: principal!.sub }, 'client created');
      return c.json(client, 201, noStore);
    },
  });

  routes.add({
    method: 'GET', path: '/.well-known/jwks.json', tags: ['auth'], summary: 'The public keys that verify access tokens', access: 'public',
    responses: { 200: { description: 'a JWK set', schema: Jwks } },
    // Short caching: verifiers refetch on an unknown kid anyway, and a new key is published before it signs.
    handler: async (c) => c.json(await keys.jwks(), 200, { 'Cache-Control': 'public, max-age=60' }),
  });
}

// RFC 6749 §5.2 errors: {"error", "error_description"}, 400 or (client authentication) 401.
const oauthError = (c: Context, status: 400 | 401, error: string, description: string) => {
  if (status === 401) c.header('WWW-Authenticate', 'Basic realm="orderflow", charset="UTF-8"');
  return c.json({ error, error_description: description }, status, noStore);
};

const CLIENT_ID = /^cl_[\w-]{1,64}$/;

/** POST /api/auth/token: client credentials grant (RFC 6749 §4.4), client authentication by HTTP Basic (§2.3.1). */
async function tokenEndpoint(c: Context, d: IdentityRouteDeps) {
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(c.req.header('content-type') ?? '')) {
    return oauthError(c, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  const form = new URLSearchParams(await c.req.text());
  for (const key of new Set(form.keys())) {
    if (form.getAll(key).length > 1) return oauthError(c, 400, 'invalid_request', `parameter ${key} repeated`);
  }
  const grant = form.get('grant_type');
  if (!grant) return oauthError(c, 400, 'invalid_request', 'grant_type is required');
  if (grant !== 'client_credentials') return oauthError(c, 400, 'unsupported_grant_type', 'only client_credentials is supported here');

  const basic = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(c.req.header('authorization') ?? '');
  let id = '';
  let secret = '';
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    try {
      // §2.3.1: both halves are form-urlencoded before they are joined.
      if (colon > 0) { id = decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' ')); secret = decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' ')); }
    } catch { id = ''; }
  }
  const client = CLIENT_ID.test(id) && secret.length > 0 && secret.length <= 200 ? await authenticateClient(d.orm.em.fork(), id, secret) : null;
  if (!client) return oauthError(c, 401, 'invalid_client', 'client authentication failed');

  const asked = form.get('scope');
  const scopes = asked === null ? client.scopes : [...new Set(asked.split(' ').filter(Boolean))];
  const extra = scopes.filter((s) => !client.scopes.includes(s));
  if (extra.length || !scopes.length) return oauthError(c, 400, 'invalid_scope', extra.length ? 'the client may not ask for some of these scopes' : 'no scope asked');
  const scope = scopes.join(' ');
  const { token, expiresIn } = await d.keys.sign({ scope, client_id: client.clientId }, client.clientId);
  c.get('log').info({ clientId: client.clientId, scope }, 'client token issued');
  return c.json({ access_token: token, token_type: 'Bearer', expires_in: expiresIn, scope }, 200, noStore);
}
