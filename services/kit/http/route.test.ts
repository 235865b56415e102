// The route declaration's chain, on a bare app: authentication, then the runtime's limiter
// (on every /api route, public ones included), then the role/scope check; and the table.
import { describe, expect, it } from 'vitest';
import { Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { InvalidTokenError, type Principal, type Verifier } from '../auth.ts';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { createApp } from './app.ts';
import { openApiDocument } from './openapi.ts';
import { allowedMethods, createRoutes, createRouteTable, notFoundOrNotAllowed } from './route.ts';

const principals: Record<string, Principal> = {
  'a.b.admin': { sub: 'u-admin', kind: 'user', roles: ['admin'], scopes: [] },
  'a.b.customer': { sub: 'u-ana', kind: 'user', roles: ['customer'], scopes: [] },
};
const verifier: Verifier = { verify: async (t) => { const p = principals[t]; if (!p) throw new InvalidTokenError('bad'); return p; } };

function setup() {
  const seen: string[] = [];
  const limit: MiddlewareHandler = async (c, next) => { seen.push(`${c.req.path}:${(c.get as (k: string) => Principal | undefined)('principal')?.sub ?? 'anonymous'}`); await next(); };
  const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
  const table = createRouteTable();
  const routes = createRoutes({ app, table, verifier, limit });
  routes.add({ method: 'GET', path: '/api/things', tags: [], summary: 'public', access: 'public', query: z.object({ n: z.coerce.number().int().optional() }), responses: { 200: { description: 'ok' } }, handler: (c, { query }) => c.json({ n: query.n ?? null }) });
  routes.add({ method: 'POST', path: '/api/auth/renew', tags: [], summary: 'public, for stale tokens', access: 'public', invalidToken: 'anonymous', responses: { 200: { description: 'ok' } }, handler: (c, { principal }) => c.json({ by: principal?.sub ?? null }) });
  routes.add({ method: 'GET', path: '/status', tags: [], summary: 'public, outside /api', access: 'public', responses: { 200: { description: 'ok' } }, handler: (c, { principal }) => c.json({ by: principal?.sub ?? null }) });
  routes.add({ method: 'POST', path: '/api/things/{id}', tags: [], summary: 'admin', access: { roles: ['admin'] }, body: z.object({ x: z.number() }), responses: { 200: { description: 'ok' } }, handler: (c, { body, principal }) => c.json({ id: c.req.param('id'), x: body.x, by: principal!.sub }) });
  return { app, table, seen };
}
const req = (app: ReturnType<typeof setup>['app'], path: string, init: RequestInit & { token?: string } = {}) =>
  app.request(path, { ...init, headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body ? { 'content-type': 'application/json' } : {}) } });

describe('routes.add', () => {
  it('runs the limiter after authentication on every /api route: public ones without a principal, refused tokens never', async () => {
    const { app, seen } = setup();
    expect(await (await req(app, '/api/things?n=3')).json()).toEqual({ n: 3 });
    expect((await req(app, '/api/things/7', { method: 'POST', body: '{"x":1}', token: 'a.b.admin' })).status).toBe(200);
    expect((await req(app, '/api/things/7', { method: 'POST', body: '{"x":1}', token: 'a.b.customer' })).status).toBe(403);
    expect((await req(app, '/api/things/7', { method: 'POST', body: '{"x":1}', token: 'a.b.forged' })).status).toBe(401);
    expect((await req(app, '/api/things/7', { method: 'POST', body: '{"x":1}' })).status).toBe(401);
    // The customer is limited too (its 403 comes after the limiter), the forged and missing tokens are not (401 first).
    expect(seen).toEqual(['/api/things:anonymous', '/api/things/7:u-admin', '/api/things/7:u-ana']);
  });

  it('verifies a token sent to a public /api route, so the limiter counts its principal; one that does not verify is 401', async () => {
    const { app, seen } = setup();
    expect((await req(app, '/api/things', { token: 'a.b.customer' })).status).toBe(200);
    const forged = await req(app, '/api/things', { token: 'a.b.forged' });
    expect([forged.status, (await forged.json()).error.code, forged.headers.get('www-authenticate')]).toEqual([401, 'UNAUTHENTICATED', 'Bearer error="invalid_token"']);
    const garbage = await app.request('/api/things', { headers: { authorization: 'Bearer not-a-jwt' } });
    expect(garbage.status).toBe(401);
    // Another scheme is the route's own business (HTTP Basic on the token endpoint): anonymous.
    expect((await app.request('/api/things', { headers: { authorization: 'Basic dTpw' } })).status).toBe(200);
    expect(seen).toEqual(['/api/things:u-ana', '/api/things:anonymous']);
  });

  it("a route declared invalidToken 'anonymous' takes a bad token as none; a public route outside /api never reads one", async () => {
    const { app, seen } = setup();
    expect(await (await req(app, '/api/auth/renew', { method: 'POST', token: 'a.b.forged' })).json()).toEqual({ by: null });
    expect(await (await req(app, '/api/auth/renew', { method: 'POST', token: 'a.b.customer' })).json()).toEqual({ by: 'u-ana' });
    const status = await req(app, '/status', { token: 'a.b.forged' });
    expect([status.status, await status.json()]).toEqual([200, { by: null }]);
    expect(seen).toEqual(['/api/auth/renew:anonymous', '/api/auth/renew:u-ana']);
  });

  it('parses the declared query and body (400 in the contract format) and gives the handler the principal', async () => {
    const { app } = setup();
    const ok = await req(app, '/api/things/7', { method: 'POST', body: '{"x":2}', token: 'a.b.admin' });
    expect(await ok.json()).toEqual({ id: '7', x: 2, by: 'u-admin' });
    const bad = await req(app, '/api/things/7', { method: 'POST', body: '{"x":"no"}', token: 'a.b.admin' });
    expect([bad.status, (await bad.json()).error.details[0].field]).toEqual([400, 'x']);
    expect((await req(app, '/api/things?n=x')).status).toBe(400);
  });

  it('records each route in the table; a second declaration of one route, or a protected route without a verifier, is refused', () => {
    const { table } = setup();
    expect(table.routes.map((r) => `${r.method} ${r.path} ${r.honoPath}`)).toEqual(['GET /api/things /api/things', 'POST /api/auth/renew /api/auth/renew', 'GET /status /status', 'POST /api/things/{id} /api/things/:id']);
    expect(allowedMethods(table, '/api/things/12')).toEqual(['POST']);
    expect(allowedMethods(table, '/api/things')).toEqual(['GET', 'HEAD']);
    const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
    const routes = createRoutes({ app, table: createRouteTable() });
    const def = { method: 'GET' as const, path: '/api/x' as const, tags: [], summary: 's', responses: {}, handler: () => new Response() };
    expect(() => routes.add({ ...def, access: 'signed-in' })).toThrow(/verifier/);
    routes.add({ ...def, access: 'public' });
    expect(() => routes.add({ ...def, access: 'public' })).toThrow(/twice/);
  });

  it('mount records an app\'s routes (not its middleware or catch-all) with their access, documents only those it is told to, and mounts it', async () => {
    const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
    const table = createRouteTable();
    const routes = createRoutes({ app, table });
    const guard: MiddlewareHandler = async (_c, next) => { await next(); };
    const pages = new Hono()
      .use('*', guard)
      .get('/', (c) => c.text('home'))
      .get('/items/:id', guard, (c) => c.text(`item ${c.req.param('id')}`))
      .post('/items/:id/delete', (c) => c.text('deleted'));
    pages.all('*', (c) => c.text('no such page', 404));
    routes.mount({ prefix: '/pages', app: pages, tags: ['pages'], access: (path) => (path === '/pages' ? 'public' : { roles: ['admin'] }), documented: { 'GET /pages': { summary: 'home', responses: { 200: { description: 'the page', type: 'html' } } } } });
    app.notFound(notFoundOrNotAllowed(table));
    expect(table.routes.map((r) => [r.method, r.path, r.access, r.document ?? true])).toEqual([
      ['GET', '/pages', 'public', true], ['GET', '/pages/items/{id}', { roles: ['admin'] }, false], ['POST', '/pages/items/{id}/delete', { roles: ['admin'] }, false],
    ]);
    expect(allowedMethods(table, '/pages/items/7')).toEqual(['GET', 'HEAD']);
    expect(await (await app.request('/pages/items/7')).text()).toBe('item 7');
    const doc = openApiDocument(table) as { paths: Record<string, Record<string, { security: unknown[] }>> };
    expect(Object.keys(doc.paths)).toEqual(['/pages']);
    expect(doc.paths['/pages']!.get!.security).toEqual([]);
    expect(() => routes.mount({ prefix: '/pages', app: pages, tags: [], access: () => 'public' })).toThrow(/twice/);
  });
});
