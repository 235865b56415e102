// The Hono app factory every service mounts its routes on: a span per request (tracing
// on), request ids, the one error mapper of CONTRACTS.md, security headers, CORS, admission
// control, body limit, JSON-only bodies, health, readiness, metrics.
import { Hono, type Context } from 'hono';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { admission, type AdmissionOptions } from './admission.ts';
import { bodyLimit, MAX_BODY_BYTES } from './body-limit.ts';
import { cors } from './cors.ts';
import { notFoundHandler, onError } from './errors.ts';
import type { IdempotencyClaim } from './idempotency.ts';
import { jsonOnly } from './json-only.ts';
import { requestId } from './request-id.ts';
import { secureHeaders } from './secure-headers.ts';
import { traceRequests } from './trace.ts';
import type { Tracing } from '../tracing.ts';

export type AppEnv = { Variables: { requestId: string; log: Logger; idempotency?: IdempotencyClaim } };
export type Readiness = () => Promise<string[]>;
export type App = Hono<AppEnv> & {
  readiness: Readiness;
  /** Larger body limits for some routes, by path prefix: `app.bodyLimits.set('/api/lending/orders', 4 << 20)`. */
  bodyLimits: Map<string, number>;
  /** Exact paths that also accept application/x-www-form-urlencoded: `app.formBodies.add('/api/auth/token')`. */
  formBodies: Set<string>;
};

/** The probes' handlers: the runtime declares them in its route table (so /openapi.json lists them); createApp mounts them otherwise. */
export function probeHandlers(readiness: Readiness, metrics: Metrics) {
  return {
    healthz: (c: Context) => c.json({ status: 'ok' }),
    readyz: async (c: Context) => {
      const missing = await readiness();
      return missing.length ? c.json({ status: 'unavailable', missing }, 503) : c.json({ status: 'ready' });
    },
    metrics: async (c: Context) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }),
  };
}

/** The process's HTTP app. `const app = createApp({ log, metrics, readiness })`; `probes: false` leaves /healthz, /readyz and /metrics to the caller. */
export function createApp(opts: {
  log: Logger; metrics: Metrics; readiness: Readiness; maxBodyBytes?: number; probes?: boolean; corsOrigins?: readonly string[]; tracing?: Tracing;
  /** Admission control's limits; without them every request is taken on (the boot app, tests). */
  admission?: Omit<AdmissionOptions, 'metrics'>;
}): App {
  const app = new Hono<AppEnv>();
  const bodyLimits = new Map<string, number>();
  const formBodies = new Set<string>();
  if (opts.tracing?.on) app.use('*', traceRequests(opts.tracing));
  app.use('*', requestId(opts));
  app.use('*', secureHeaders());
  // Before the body checks: a preflight has no body, and a refused request still needs its CORS headers to be readable.
  app.use('*', cors(opts.corsOrigins ?? []));
  // After the request id and CORS (a refused request is logged, counted and readable by a browser), before any work.
  if (opts.admission) app.use('*', admission({ ...opts.admission, metrics: opts.metrics }));
  app.use('*', bodyLimit(opts.maxBodyBytes ?? MAX_BODY_BYTES, bodyLimits));
  app.use('*', jsonOnly(formBodies));
  app.onError(onError(opts.log));
  app.notFound(notFoundHandler);

  if (opts.probes !== false) {
    const probes = probeHandlers(opts.readiness, opts.metrics);
    app.get('/healthz', probes.healthz);
    app.get('/readyz', probes.readyz);
    app.get('/metrics', probes.metrics);
  }
  return Object.assign(app, { readiness: opts.readiness, bodyLimits, formBodies });
}
