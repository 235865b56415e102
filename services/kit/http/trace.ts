// A SERVER span per request, continuing the caller's W3C `traceparent` (CONTRACTS.md), so
// everything the request causes (SQL, the outbox row, the consumers downstream) is one
// trace. Registered only while tracing is on (createApp): with it off, requests pay nothing.
import type { MiddlewareHandler } from 'hono';
import { SpanKind, SpanStatusCode, failed, traceFrom, type Tracing } from '../tracing.ts';

/** `app.use('*', traceRequests(tracing))`, before requestId, whose log lines then carry the trace id. */
export function traceRequests(tracing: Tracing): MiddlewareHandler {
  return async (c, next) => {
    const method = c.req.method;
    const parent = traceFrom((name) => c.req.header(name));
    await tracing.span(method, {
      kind: SpanKind.SERVER, parent,
      attributes: { 'http.request.method': method, 'url.path': c.req.path, 'url.scheme': 'http' },
    }, async (span) => {
      await next();
      // The route pattern, not the path: ids in paths stay out of the span's name.
      const route = c.req.routePath;
      const status = c.res.status;
      span.updateName(`${method} ${route}`);
      span.setAttribute('http.route', route);
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      if (c.error) failed(span, c.error);
    });
  };
}
