// The Hono app factory every service mounts its routes on: request ids, the one
// error mapper of CONTRACTS.md, body limit, JSON-only bodies, health, readiness, metrics.
import { createHash, randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodType } from 'zod';
import type { MikroORM } from './db.ts';
import { clip, HttpError, type ErrorDetail } from './errors.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

export type AppEnv = { Variables: { requestId: string; log: Logger } };
export type App = Hono<AppEnv> & {
  readiness: Readiness;
  /** Larger body limits for some routes, by path prefix: `app.bodyLimits.set('/api/lending/orders', 4 << 20)`. */
  bodyLimits: Map<string, number>;
};

export const MAX_BODY_BYTES = 1024 * 1024;

/** Contract error body. `errorBody('NOT_FOUND', 'order not found')` */
export const errorBody = (code: string, message: string, details?: ErrorDetail[]) =>
  ({ error: { code, message, ...(details ? { details } : {}) } });

export type Readiness = () => Promise<string[]>;

/** The process's HTTP app. `const app = createApp({ log, metrics, readiness })` */
export function createApp(opts: { log: Logger; metrics: Metrics; readiness: Readiness; maxBodyBytes?: number }): App {
  const app = new Hono<AppEnv>();
  const { log, metrics } = opts;

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    c.set('requestId', requestId);
    c.set('log', log.child({ requestId }));
    c.header('X-Request-Id', requestId);
    const started = performance.now();
    await next();
    c.res.headers.set('X-Request-Id', requestId);
    metrics.httpSeconds.observe({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) }, (performance.now() - started) / 1000);
  });

  const bodyLimits = new Map<string, number>();
  const limiters = new Map<number, MiddlewareHandler>();
  const limiterFor = (maxSize: number) => {
    let m = limiters.get(maxSize);
    if (!m) {
      m = bodyLimit({ maxSize, onError: (c) => c.json(errorBody('PAYLOAD_TOO_LARGE', `request body exceeds ${maxSize} bytes`), 413) });
      limiters.set(maxSize, m);
    }
    return m;
  };
  app.use('*', async (c, next) => {
    let maxSize = opts.maxBodyBytes ?? MAX_BODY_BYTES;
    for (const [prefix, bytes] of bodyLimits) if (c.req.path === prefix || c.req.path.startsWith(`${prefix}/`)) maxSize = bytes;
    // A declared Content-Length is checked directly: Hono's bodyLimit wraps the body in a
    // web stream, which takes @hono/node-server off its fast path for every request, so it
    // only guards bodies of undeclared length (chunked).
    const declared = c.req.header('content-length');
    if (declared === undefined) return await limiterFor(maxSize)(c, next);
    if (Number(declared) > maxSize) return c.json(errorBody('PAYLOAD_TOO_LARGE', `request body exceeds ${maxSize} bytes`), 413);
    await next();
  });

  app.use('*', async (c, next) => {
    if (['POST', 'PUT', 'PATCH'].includes(c.req.method)) {
      const type = c.req.header('content-type');
      const hasBody = type !== undefined || Number(c.req.header('content-length') ?? 0) > 0 || c.req.header('transfer-encoding') !== undefined;
      if (hasBody && !/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type ?? '')) {
        return c.json(errorBody('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json'), 415);
      }
      // Nothing here decodes a compressed body: reading gzip bytes as JSON would only
      // fail later with a misleading "malformed JSON".
      const encoding = c.req.header('content-encoding')?.trim().toLowerCase();
      if (hasBody && encoding && encoding !== 'identity') {
        return c.json(errorBody('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding ${clip(encoding, 40)} is not supported; send the body uncompressed`), 415);
      }
    }
    await next();
  });

  app.onError((err, c) => {
    if (err instanceof HttpError) return c.json(errorBody(err.code, err.message, err.details), err.status as ContentfulStatusCode);
    if ((err as { status?: number }).status === 413) return c.json(errorBody('PAYLOAD_TOO_LARGE', 'request body too large'), 413);
    if (isUnavailable(err)) {
      (c.get('log') ?? log).warn({ err: String(err) }, 'dependency unavailable');
      return c.json(errorBody('UNAVAILABLE', 'a dependency is unavailable; retry shortly'), 503, { 'Retry-After': '1' });
    }
    (c.get('log') ?? log).error({ err }, 'unhandled error');
    return c.json(errorBody('INTERNAL', 'internal error'), 500);
  });
  app.notFound((c) => c.json(errorBody('NOT_FOUND', `no route for ${c.req.method} ${clip(c.req.path)}`), 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const missing = await opts.readiness();
    return missing.length ? c.json({ status: 'unavailable', missing }, 503) : c.json({ status: 'ready' });
  });
  app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  return Object.assign(app, { readiness: opts.readiness, bodyLimits });
}

/**
 * Requests Node's HTTP parser refuses (a bare CR in a header, a bad chunk size, headers
 * over the limit) never reach the app, and Node answers them with an empty body. Answer
 * in the contract's error format instead. `answerMalformedRequests(server)`
 */
export function answerMalformedRequests(server: { on(event: 'clientError', cb: (err: Error & { code?: string }, socket: Duplex) => void): unknown }): void {
  server.on('clientError', (err, socket) => {
    // Mid-response (a keep-alive connection already answering) or gone: just close it.
    const busy = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || busy) { socket.destroy(); return; }
    const [status, code, message] =
      err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'HEADERS_TOO_LARGE', 'request headers too large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'REQUEST_TIMEOUT', 'the request was not received in time']
          : [400, 'VALIDATION_FAILED', 'malformed HTTP request'];
    const body = JSON.stringify(errorBody(code, message, code === 'VALIDATION_FAILED' ? [{ field: '(request)', message: 'not valid HTTP/1.1' }] : undefined));
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
}

// Postgres down, restarting, or out of connections: the client should retry, not see a 500.
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08006', '53300']);
function isUnavailable(err: unknown): boolean {
  for (let e = err as { code?: string; name?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if ((e.code && UNAVAILABLE_CODES.has(e.code)) || e.name === 'ConnectionException') return true;
    if (/timeout exceeded when trying to connect|Connection terminated/i.test(String((e as Error).message))) return true;
  }
  return false;
}

/** Parse and validate a JSON body; 400 with per-field details. `const body = await readJson(c, CreateOrder)` */
export async function readJson<T>(c: Context, schema: ZodType<T>): Promise<T> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text.length ? JSON.parse(text) : undefined;
  } catch (err) {
    throw new HttpError(400, 'VALIDATION_FAILED', `malformed JSON: ${(err as Error).message}`, [{ field: '(body)', message: 'malformed JSON' }]);
  }
  return validate(raw, schema);
}

/** Validate any value (query, params); throws the contract's 400. */
export function validate<T>(raw: unknown, schema: ZodType<T>): T {
  const unstorable = unstorableText(raw);
  if (unstorable.length) throw new HttpError(400, 'VALIDATION_FAILED', `invalid request: ${unstorable.map((d) => d.field).join(', ')}`, unstorable);
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.map((i) => ({ field: i.path.length ? i.path.join('.') : '(body)', message: i.message }));
  throw new HttpError(400, 'VALIDATION_FAILED', `invalid request: ${details.map((d) => d.field).join(', ')}`, details);
}

/**
 * Strings Postgres cannot hold: a NUL (text columns refuse it) or a lone UTF-16
 * surrogate (jsonb refuses it; text columns silently store U+FFFD, so the stored value
 * would no longer equal the request's). JSON escapes let a client send either, and
 * every field would need its own rule to catch them, so every request is checked here
 * once, keys included. `unstorableText({ a: 'x\u0000' }) // [{ field: 'a', ... }]`
 */
export function unstorableText(raw: unknown): ErrorDetail[] {
  const out: ErrorDetail[] = [];
  const bad = (s: string) => !s.isWellFormed() || s.includes('\u0000');
  // The path is joined only for a finding: a 50,000-line lending order is walked often.
  const path: (string | number)[] = [];
  const report = (message: string) => out.push({ field: path.join('.') || '(body)', message });
  const walk = (v: unknown): void => {
    if (typeof v === 'string') {
      if (bad(v)) report('must not contain NUL characters or unpaired UTF-16 surrogates');
      return;
    }
    if (!v || typeof v !== 'object' || path.length >= 64 || out.length >= 20) return;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number') { path.push(i); walk(v[i]); path.pop(); }
      return;
    }
    for (const k in v) {
      const badKey = bad(k);
      path.push(badKey ? '(key)' : k);
      if (badKey) report('keys must not contain NUL characters or unpaired UTF-16 surrogates');
      walk((v as Record<string, unknown>)[k]);
      path.pop();
    }
  };
  walk(raw);
  return out;
}

/**
 * Idempotency-Key for creating POSTs, stored in Postgres: the same key and body replay
 * the first response; another body is 422; a key still running is 409.
 * `app.post('/', idempotency(orm, 'orders.create'), handler)`
 */
export function idempotency(orm: MikroORM, scope: string, staleMs = 60_000): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const key = c.req.header('idempotency-key');
    if (key === undefined) return await next();
    if (!/^[\x21-\x7e]{1,255}$/.test(key)) throw new HttpError(400, 'VALIDATION_FAILED', 'Idempotency-Key must be 1-255 visible ASCII characters', [{ field: 'Idempotency-Key', message: 'invalid' }]);
    const hash = createHash('sha256').update(await c.req.text()).digest('hex');
    const em = orm.em.fork();
    const claimed = await em.execute(
      `insert into kit.idempotency_keys (scope, key, request_hash, state) values (?, ?, ?, 'running')
       on conflict (scope, key) do update set request_hash = excluded.request_hash, created_at = now()
         where kit.idempotency_keys.state = 'running' and kit.idempotency_keys.request_hash = excluded.request_hash
           and kit.idempotency_keys.created_at < now() - make_interval(secs => ?)
       returning 1`, [scope, key, hash, staleMs / 1000]);
    if (!claimed.length) {
      const [row] = await em.execute<{ request_hash: string; state: string; response_status: number; response_body: string }[]>(
        'select request_hash, state, response_status, response_body from kit.idempotency_keys where scope = ? and key = ?', [scope, key]);
      if (!row) throw new HttpError(409, 'REQUEST_IN_PROGRESS', 'a request with this Idempotency-Key is in progress');
      if (row.request_hash !== hash) throw new HttpError(422, 'IDEMPOTENCY_KEY_REUSED', 'Idempotency-Key was used with a different request body');
      if (row.state === 'running') throw new HttpError(409, 'REQUEST_IN_PROGRESS', 'a request with this Idempotency-Key is in progress');
      return c.body(row.response_body, row.response_status as ContentfulStatusCode, { 'content-type': 'application/json', 'Idempotent-Replayed': 'true' });
    }
    try {
      await next();
    } finally {
      const status = c.res.status;
      // Server errors are not remembered: the client may retry them with the same key.
      if (status >= 500) {
        await em.execute('delete from kit.idempotency_keys where scope = ? and key = ?', [scope, key]);
      } else {
        const body = await c.res.clone().text();
        await em.execute(`update kit.idempotency_keys set state = 'done', response_status = ?, response_body = ? where scope = ? and key = ?`, [status, body, scope, key]);
      }
    }
  };
}
