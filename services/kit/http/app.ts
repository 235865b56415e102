// The Hono app factory every service mounts its routes on: request ids, the one error
// mapper of CONTRACTS.md, security headers, CORS, body limit, JSON-only bodies, health,
// readiness, metrics.
import { Hono } from 'hono';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { bodyLimit, MAX_BODY_BYTES } from './body-limit.ts';
import { cors } from './cors.ts';
import { notFoundHandler, onError } from './errors.ts';
import type { IdempotencyClaim } from './idempotency.ts';
import { jsonOnly } from './json-only.ts';
import { requestId } from './request-id.ts';
import { secureHeaders } from './secure-headers.ts';

export type AppEnv = { Variables: { requestId: string; log: Logger; idempotency?: IdempotencyClaim } };
export type Readiness = () => Promise<string[]>;
export type App = Hono<AppEnv> & {
  readiness: Readiness;
  /** Larger body limits for some routes, by path prefix: `app.bodyLimits.set('/api/lending/orders', 4 << 20)`. */
  bodyLimits: Map<string, number>;
  /** Exact paths that also accept application/x-www-form-urlencoded: `app.formBodies.add('/api/auth/token')`. */
  formBodies: Set<string>;
};

/** The process's HTTP app. `const app = createApp({ log, metrics, readiness })` */
export function createApp(opts: { log: Logger; metrics: Metrics; readiness: Readiness; maxBodyBytes?: number; corsOrigins?: readonly string[] }): App {
  const app = new Hono<AppEnv>();
  const bodyLimits = new Map<string, number>();
  const formBodies = new Set<string>();
  app.use('*', requestId(opts));
  app.use('*', secureHeaders());
  // Before the body checks: a preflight has no body, and a refused request still needs its CORS headers to be readable.
  app.use('*', cors(opts.corsOrigins ?? []));
  app.use('*', bodyLimit(opts.maxBodyBytes ?? MAX_BODY_BYTES, bodyLimits));
  app.use('*', jsonOnly(formBodies));
  app.onError(onError(opts.log));
  app.notFound(notFoundHandler);

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const missing = await opts.readiness();
    return missing.length ? c.json({ status: 'unavailable', missing }, 503) : c.json({ status: 'ready' });
  });
  app.get('/metrics', async (c) => c.text(await opts.metrics.registry.metrics(), 200, { 'content-type': opts.metrics.registry.contentType }));
  return Object.assign(app, { readiness: opts.readiness, bodyLimits, formBodies });
}
