// Cross-origin browser calls only from CORS_ORIGINS (CONTRACTS.md conventions; none by
// default). Hono's cors() answers every OPTIONS as a preflight and echoes no origin it does
// not know; here a preflight from any other origin is not answered at all: it goes on to
// the router like any OPTIONS, and carries no Access-Control-* header.
import type { MiddlewareHandler } from 'hono';
import { cors as honoCors } from 'hono/cors';

/** Headers a browser client sends: the token, JSON, the contract's request headers, a trace. */
const ALLOW_HEADERS = ['Authorization', 'Content-Type', 'Idempotency-Key', 'X-Request-Id', 'traceparent', 'tracestate'];
/** Response headers a browser client may read: the contract's, beyond the CORS-safelisted ones. */
const EXPOSE_HEADERS = ['X-Request-Id', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'WWW-Authenticate', 'Allow', 'Location'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * `app.use('*', cors(['https://shop.example.com']))`; an empty list allows no origin. Tokens go in
 * the Authorization header, never in cookies, so credentials stay off.
 */
export function cors(origins: readonly string[]): MiddlewareHandler {
  const allowed = new Set(origins);
  const answer = honoCors({
    origin: (origin) => (allowed.has(origin) ? origin : null),
    allowMethods: METHODS, allowHeaders: ALLOW_HEADERS, exposeHeaders: EXPOSE_HEADERS, maxAge: 600, credentials: false,
  });
  return async (c, next) => {
    const origin = c.req.header('origin');
    // Same-origin and non-browser requests carry no Origin (or one we do not list): nothing to add.
    if (!origin || !allowed.has(origin)) {
      await next();
      // A cache between us and browsers must not hand one origin's answer to another.
      if (allowed.size) c.header('Vary', 'Origin', { append: true });
      return;
    }
    return await answer(c, next);
  };
}

/** CORS_ORIGINS as a list: comma-separated origins (`https://host[:port]`), blanks ignored; a path or `*` is refused by the config schema. */
export const parseOrigins = (value: string | undefined): string[] => (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);

/** True for an exact origin (scheme, host, optional port, nothing else): what a browser sends in Origin. */
export function isOrigin(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.origin === value;
  } catch { return false; }
}
