// The gateway: the one public entry in Kubernetes (Ingress -> gateway -> services). It sends
// each request to the target that owns its path, over kept-alive connections. Services verify
// tokens themselves, where each route declares its role or scope; the gateway does not check
// them a second time (a copy of the route table's rules here could only disagree with it).
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadGatewayConfig } from './config.ts';
import { createProxy } from './proxy.ts';
import { mountProxy, resolveRoutes } from './routes.ts';

export async function start({ app, env, log, metrics }: Deps): Promise<Running> {
  const config = loadGatewayConfig(env);
  const routes = resolveRoutes(config.GATEWAY_ROUTES, config.GATEWAY_UPSTREAMS);
  const proxy = createProxy({ maxSockets: config.GATEWAY_MAX_SOCKETS, responseTimeoutMs: config.GATEWAY_TIMEOUT_MS, idleSocketMs: config.GATEWAY_IDLE_SOCKET_MS, maxInflightPerUpstream: config.GATEWAY_MAX_INFLIGHT_PER_UPSTREAM, log, metrics });
  // Bodies pass through: each service applies its own limit and media types.
  for (const { prefix } of routes) app.bodyLimits.set(prefix, config.GATEWAY_MAX_BODY_BYTES);
  app.formBodies.add('/api/auth/token');
  mountProxy(app, proxy, routes);
  log.info({ routes: Object.fromEntries(routes.map((r) => [r.prefix, r.upstream.url.href])) }, 'gateway routes');
  return { async stop() { proxy.close(); } };
}

/** The `gateway` target: no schema, no events, no external system; left out of TARGET=all, where every route is local. */
export const module = defineModule({
  name: 'gateway', entities: [], migrations: [], start, standalone: true,
  needs: { schemas: [], outboxRelay: false, dlqMover: false, externals: [] },
});
