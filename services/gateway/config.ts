// The gateway's settings (GATEWAY_*), validated at boot.
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const pairs = (what: string, key: RegExp, value: (v: string) => boolean) => z.string().default('').refine(
  (s) => s.split(',').map((p) => p.trim()).filter(Boolean).every((p) => { const [k, v, ...rest] = p.split('='); return !rest.length && key.test(k?.trim() ?? '') && value(v?.trim() ?? ''); }),
  `must be comma-separated ${what}`,
).transform((s) => s.split(',').map((p) => p.trim()).filter(Boolean).map((p) => p.split('=').map((x) => x.trim()) as [string, string]));
const isHttpUrl = (v: string) => { try { return ['http:', 'https:'].includes(new URL(v).protocol); } catch { return false; } };

const schema = z.object({
  /** `target=url` pairs; a target not listed is reached at its Kubernetes Service, http://orderflow-<target>. */
  GATEWAY_UPSTREAMS: pairs('target=http://host:port pairs', /^[a-z][a-z0-9-]*$/, isHttpUrl),
  /** `prefix=target` pairs added to (or replacing entries of) the built-in path table. */
  GATEWAY_ROUTES: pairs('/path-prefix=target pairs', /^\/[\w./-]*$/, (v) => /^[a-z][a-z0-9-]*$/.test(v)),
  /** Pooled connections per upstream. */
  GATEWAY_MAX_SOCKETS: int(256, 1, 65_536),
  /** Until the upstream's response headers; a body (SSE) may then stream for as long as it lasts. */
  GATEWAY_TIMEOUT_MS: int(30_000, 100),
  /** Idle pooled sockets close after this: below the services' keep-alive timeout (5 s). */
  GATEWAY_IDLE_SOCKET_MS: int(4000, 100),
  /** Requests in flight to one target; beyond it 503 at once, so a hung target cannot take every admission slot (HTTP_MAX_INFLIGHT). */
  GATEWAY_MAX_INFLIGHT_PER_UPSTREAM: int(128, 1, 100_000),
  /** Largest body passed on (the services apply their own limits); the prod Ingress allows 8 MB. */
  GATEWAY_MAX_BODY_BYTES: int(8 << 20, 1024),
});

export type GatewayConfig = z.infer<typeof schema>;

/** `const config = loadGatewayConfig(deps.env)` */
export const loadGatewayConfig = (env: Env): GatewayConfig => readConfig(schema, env);
