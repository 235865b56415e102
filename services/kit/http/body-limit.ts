// Request body size limits: one default, larger ones for some path prefixes.
import type { MiddlewareHandler } from 'hono';
import { bodyLimit as honoBodyLimit } from 'hono/body-limit';
import { errorBody } from './errors.ts';

export const MAX_BODY_BYTES = 1024 * 1024;

const tooLarge = (maxSize: number) => errorBody('PAYLOAD_TOO_LARGE', `request body exceeds ${maxSize} bytes`);

/**
 * 413 for a body over the limit; `limits` maps a path prefix to its own limit and may
 * change after the app is built. `app.use('*', bodyLimit(MAX_BODY_BYTES, limits))`
 */
export function bodyLimit(defaultBytes: number, limits: ReadonlyMap<string, number>): MiddlewareHandler {
  const limiters = new Map<number, MiddlewareHandler>();
  const limiterFor = (maxSize: number) => {
    let m = limiters.get(maxSize);
    if (!m) {
      m = honoBodyLimit({ maxSize, onError: (c) => c.json(tooLarge(maxSize), 413) });
      limiters.set(maxSize, m);
    }
    return m;
  };
  return async (c, next) => {
    // Requests without a body by their method are not looked at: Hono's limiter would touch
    // `c.req.raw` (which makes @hono/node-server build a full Request) just to find no body,
    // on every GET. Their handlers never read a body, so a sent one is discarded unread.
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') return await next();
    let maxSize = defaultBytes;
    for (const [prefix, bytes] of limits) if (c.req.path === prefix || c.req.path.startsWith(`${prefix}/`)) maxSize = bytes;
    // A declared Content-Length is checked directly: Hono's bodyLimit wraps the body in a
    // web stream, which takes @hono/node-server off its fast path for every request, so it
    // only guards bodies of undeclared length (chunked).
    const declared = c.req.header('content-length');
    if (declared === undefined) return await limiterFor(maxSize)(c, next);
    if (Number(declared) > maxSize) return c.json(tooLarge(maxSize), 413);
    await next();
  };
}
