// Every request gets an id (the client's, if it is a sane one), echoed in X-Request-Id and
// on every log line it causes, one latency observation by route and status, and one access
// line (method, route, status, duration, principal; never a body, query or header value).
import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { traceIds } from '../tracing.ts';

const SANE_ID = /^[\w.:-]{1,128}$/;
/** The probes and the scrape: they arrive every few seconds from every replica (quiet in the access log) and are never refused (admission.ts). */
export const PROBE_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/** `app.use('*', requestId({ log, metrics }))` */
export function requestId({ log, metrics }: { log: Logger; metrics: Metrics }): MiddlewareHandler<{ Variables: { requestId: string; log: Logger } }> {
  return async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const id = incoming && SANE_ID.test(incoming) ? incoming : randomUUID();
    c.set('requestId', id);
    // trace_id/span_id: the request's span (http/trace.ts), when tracing is on.
    c.set('log', log.child({ requestId: id, ...traceIds() }));
    c.header('X-Request-Id', id);
    const started = performance.now();
    await next();
    // onError and notFound build fresh responses: set it again on whatever goes out.
    c.res.headers.set('X-Request-Id', id);
    const ms = performance.now() - started;
    metrics.httpSeconds.observe({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) }, ms / 1000);
    // The route pattern, not the path: ids in paths stay out of the access log's cardinality.
    const principal = (c.get as (k: string) => { sub?: string } | undefined)('principal')?.sub;
    c.get('log')[PROBE_PATHS.has(c.req.routePath) ? 'debug' : 'info']({ method: c.req.method, route: c.req.routePath, status: c.res.status, ms: Math.round(ms * 10) / 10, ...(principal ? { principal } : {}) }, 'request');
  };
}
