// Idempotency-Key for creating POSTs (CONTRACTS.md): the same key and body replay the first
// response; another body is 422; a key whose first request still runs is 409.
//
// Keys live in kit.idempotency_keys (scope, principal, key, request_hash, state,
// response_status, response_body, created_at). A key belongs to the principal that sent it
// (as Stripe's keys belong to an account): another principal sending the same key gets its
// own processing, never the first one's stored answer. Two ways to use them:
// - commit: 'middleware' (the default): the key is claimed ('running') before the handler
//   and its response stored after. The claim is a lease: the request renews `created_at`
//   while it runs, so a claim whose process died is taken over by a retry after `leaseMs`,
//   not left in progress.
// - commit: 'handler': nothing is written before the handler. The handler writes the key's
//   row ('done', with the response it will send) in the same transaction as its effect, so
//   after any crash either both are there (a retry replays the response) or neither (a
//   retry runs afresh). Responses the handler did not commit (a 4xx) are stored after it.
import { createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Principal } from '../auth.ts';
import type { MikroORM } from '../db.ts';
import type { AppEnv } from './app.ts';
import { errorBody, HttpError } from './errors.ts';

/** What the middleware hands a handler as `c.get('idempotency')` when the request carries a key. */
export type IdempotencyClaim = {
  scope: string;
  /** Whose key it is (principalKey); '' for an anonymous caller. */
  principal: string;
  key: string;
  /** sha256 (hex) of the request body. */
  requestHash: string;
  /** A 'handler'-mode handler sets this once its transaction stored the key with its response. */
  committed: boolean;
};

/**
 * A 'handler'-mode handler's write found the key stored by a concurrent request (its row,
 * inserted without `on conflict` so that this aborts the effect, hit the primary key):
 * the middleware answers from the stored row.
 * `if (isKeyConflict(err)) throw new IdempotencyKeyTaken()`
 */
export class IdempotencyKeyTaken extends HttpError {
  override name = 'IdempotencyKeyTaken';
  constructor(options?: { cause?: unknown }) {
    super(409, 'REQUEST_IN_PROGRESS', 'a request with this Idempotency-Key is in progress', undefined, options);
  }
}

const KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * The principal part of a key's identity: the kind is part of it, so a user and a client
 * whose ids happen to be equal never share keys. '' for a caller without a token.
 */
export const principalKey = (p: Pick<Principal, 'kind' | 'sub'> | undefined): string => (p ? `${p.kind}:${p.sub}` : '');
const inProgress = () => new HttpError(409, 'REQUEST_IN_PROGRESS', 'a request with this Idempotency-Key is in progress');

/**
 * `app.post('/', idempotency(orm, 'POST /api/products'), handler)`;
 * `app.post('/', idempotency(orm, 'POST /api/orders', { commit: 'handler' }), handler)`
 */
export function idempotency(orm: MikroORM, scope: string, opts: { commit?: 'middleware' | 'handler'; leaseMs?: number } = {}): MiddlewareHandler<AppEnv> {
  const leaseMs = opts.leaseMs ?? 10_000;
  const handlerCommits = opts.commit === 'handler';

  type Row = { request_hash: string; state: string; response_status: number; response_body: string; stale: boolean };
  /** The answer for a key someone else holds or has answered. */
  const stored = async (who: string, key: string, hash: string): Promise<Response> => {
    const em = orm.em.fork();
    const [row] = await em.execute<Row[]>(
      `select request_hash, state, response_status, response_body, created_at < now() - make_interval(secs => ?) as stale
       from kit.idempotency_keys where scope = ? and principal = ? and key = ?`, [leaseMs / 1000, scope, who, key]);
    if (!row) throw inProgress();
    if (row.request_hash !== hash) throw new HttpError(422, 'IDEMPOTENCY_KEY_REUSED', 'Idempotency-Key was used with a different request body');
    if (row.state === 'running') {
      // A 'handler'-mode scope never claims; a running row is one a dead process left
      // behind (or one from before the scope changed mode): clear it for the next retry.
      if (handlerCommits && row.stale) {
        await em.execute(`delete from kit.idempotency_keys where scope = ? and principal = ? and key = ? and state = 'running' and created_at < now() - make_interval(secs => ?)`, [scope, who, key, leaseMs / 1000]);
      }
      return Response.json(errorBody('REQUEST_IN_PROGRESS', 'a request with this Idempotency-Key is in progress'), { status: 409, headers: { 'Retry-After': '1' } });
    }
    return new Response(row.response_body, { status: row.response_status, headers: { 'content-type': 'application/json', 'Idempotent-Replayed': 'true' } });
  };

  return async (c, next) => {
    const key = c.req.header('idempotency-key');
    if (key === undefined) return await next();
    if (!KEY.test(key)) throw new HttpError(400, 'VALIDATION_FAILED', 'Idempotency-Key must be 1-255 visible ASCII characters', [{ field: 'Idempotency-Key', message: 'invalid' }]);
    const hash = createHash('sha256').update(await c.req.text()).digest('hex');
    // Set by authentication, which runs before this on every route that is not public.
    const who = principalKey((c.var as { principal?: Principal }).principal);
    const em = orm.em.fork();

    if (handlerCommits) {
      const claim: IdempotencyClaim = { scope, principal: who, key, requestHash: hash, committed: false };
      c.set('idempotency', claim);
      await next();
      if (claim.committed || c.res.status >= 500) return;
      // Nothing was committed with the key: remember this answer, unless someone else's
      // is already stored (or was stored while we ran): then that one is the answer.
      const mine = !(c.error instanceof IdempotencyKeyTaken) && (await em.execute(
        `insert into kit.idempotency_keys (scope, principal, key, request_hash, state, response_status, response_body) values (?, ?, ?, ?, 'done', ?, ?)
         on conflict (scope, principal, key) do nothing returning 1`, [scope, who, key, hash, c.res.status, await c.res.clone().text()])).length > 0;
      if (!mine) { c.res = undefined; c.res = await stored(who, key, hash); }
      return;
    }

    const claimed = await em.execute(
      `insert into kit.idempotency_keys (scope, principal, key, request_hash, state) values (?, ?, ?, ?, 'running')
       on conflict (scope, principal, key) do update set created_at = now()
         where kit.idempotency_keys.state = 'running' and kit.idempotency_keys.request_hash = excluded.request_hash
           and kit.idempotency_keys.created_at < now() - make_interval(secs => ?)
       returning 1`, [scope, who, key, hash, leaseMs / 1000]);
    if (!claimed.length) return await stored(who, key, hash);
    // The lease is renewed only while this request runs: no round trip for a fast one.
    const renew = setInterval(() => {
      void em.fork().execute(`update kit.idempotency_keys set created_at = now() where scope = ? and principal = ? and key = ? and state = 'running'`, [scope, who, key]).catch(() => {});
    }, leaseMs / 3);
    renew.unref();
    try {
      await next();
    } finally {
      clearInterval(renew);
      const status = c.res.status;
      // Server errors are not remembered: the client may retry them with the same key.
      if (status >= 500) {
        await em.execute('delete from kit.idempotency_keys where scope = ? and principal = ? and key = ?', [scope, who, key]);
      } else {
        const body = await c.res.clone().text();
        await em.execute(`update kit.idempotency_keys set state = 'done', response_status = ?, response_body = ? where scope = ? and principal = ? and key = ?`, [status, body, scope, who, key]);
      }
    }
  };
}
