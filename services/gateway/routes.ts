// The path table: which target owns which path prefix (the longest matching prefix wins), and
// the routes that send each prefix through the proxy. A path no prefix owns is the kit's 404.
import type { Context } from 'hono';
import type { App } from '../kit/index.ts';
import type { Proxy, Upstream } from './proxy.ts';

/** Path prefix -> the target that serves it (CONTRACTS.md; k8s/overlays/dev/ingress.yaml routes the same way). */
export const DEFAULT_ROUTES: Readonly<Record<string, string>> = {
  '/api/auth': 'identity',
  '/api/users': 'identity',
  '/api/admin/users': 'identity',
  '/api/admin/clients': 'identity',
  '/.well-known': 'identity',
  '/api/orders': 'orders',
  '/api/products': 'catalog',
  '/api/inventory': 'inventory',
  '/api/lending': 'lending',
  '/api/funding': 'funding',
  '/api/admin': 'admin',
  '/admin': 'admin',
  // Every process serves the API description; the gateway answers these itself and falls back here.
  '/openapi.json': 'admin',
  '/asyncapi.json': 'admin',
  '/docs': 'admin',
};

/** The table with GATEWAY_ROUTES applied, and each target's URL (GATEWAY_UPSTREAMS, else its Service). */
export function resolveRoutes(extra: [string, string][], upstreams: [string, string][]): { prefix: string; upstream: Upstream }[] {
  const table = { ...DEFAULT_ROUTES, ...Object.fromEntries(extra.map(([p, t]) => [p.replace(/\/$/, '') || '/', t])) };
  const urls = new Map(upstreams);
  return Object.entries(table)
    .map(([prefix, target]) => ({ prefix, upstream: { target, url: new URL(urls.get(target) ?? `http://orderflow-${target}`) } }))
    .sort((a, b) => b.prefix.length - a.prefix.length);
}

/** `mountProxy(app, proxy, routes)`: each prefix and everything under it goes to its target, whatever the method. */
export function mountProxy(app: App, proxy: Proxy, routes: { prefix: string; upstream: Upstream }[]): void {
  const owner = (path: string) => routes.find((r) => path === r.prefix || path.startsWith(r.prefix.endsWith('/') ? r.prefix : `${r.prefix}/`));
  const handler = async (c: Context) => {
    const r = owner(c.req.path);
    // Registered per prefix, so a route always has an owner; a miss is the kit's 404 all the same.
    if (!r) return c.notFound();
    return c.req.header('upgrade')?.toLowerCase() === 'websocket' ? await proxy.websocket(c, r.upstream) : await proxy.forward(c, r.upstream);
  };
  for (const { prefix } of routes) {
    app.all(prefix, handler);
    app.all(`${prefix.replace(/\/$/, '')}/*`, handler);
  }
}
