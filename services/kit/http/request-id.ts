// Every request gets an id (the client's, if it is a sane one), echoed in X-Request-Id and
// on every log line it causes, and one latency observation by route and status.
import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';

const SANE_ID = /^[\w.:-]{1,128}$/;

/** `app.use('*', requestId({ log, metrics }))` */
export function requestId({ log, metrics }: { log: Logger; metrics: Metrics }): MiddlewareHandler<{ Variables: { requestId: string; log: Logger } }> {
  return async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const id = incoming && SANE_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', id);
    c.set('log', log.child({ requestId: id }));
    c.header('X-Request-Id', id);
    const started = performance.now();
    await next();
    // onError and notFound build fresh responses: set it again on whatever goes out.
    c.res.headers.set('X-Request-Id', id);
    metrics.httpSeconds.observe({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) }, (performance.now() - started) / 1000);
  };
}
