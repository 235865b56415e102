// /openapi.json of a process running every route: a valid OpenAPI 3.1 document, listing
// every route of CONTRACTS.md with its security, and 405 for a known path's other methods.
import { existsSync, readFileSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../../testing/index.ts';

let c: TestCluster;
let spec: any;
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'orders,catalog,inventory,lending,funding,admin', FUNDING_RECONCILE_INTERVAL_MS: '0' });
  spec = (await c.as(null).get('/openapi.json')).body;
}, 120_000);
afterAll(async () => { await c?.close(); });

// The shared contract; the copy beside the repository when there is one, else none to compare.
const CONTRACTS = ['/work/shared/CONTRACTS.md', new URL('../../../CONTRACTS.md', import.meta.url).pathname].find((p) => existsSync(p));

/** `METHOD /path` in backticks, outside the external systems' section (those are T24's, the gateway's and SMS's routes). */
export function contractRoutes(md: string): { method: string; path: string }[] {
  const ours = md.split(/^## /m).filter((section) => !/^External systems/.test(section)).join('\n');
  const out = new Map<string, { method: string; path: string }>();
  for (const m of ours.matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s?]*)/g)) {
    const path = m[2]!;
    if (path.includes('*')) continue; // "/api/auth/*", "/_dev/*": families, not routes
    out.set(`${m[1]} ${path}`, { method: m[1]!, path });
  }
  return [...out.values()];
}


const shape = (path: string) => path.replace(/\{[^}]+\}/g, '{}');

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const res = await validator.validate(structuredClone(spec));
    expect(res.errors ?? [], JSON.stringify(res.errors ?? null).slice(0, 2000)).toEqual([]);
    expect(res.valid).toBe(true);
    expect(spec.openapi).toMatch(/^3\.1\./);
  });

  it('lists every route of CONTRACTS.md', () => {
    if (!CONTRACTS) return;
    const listed = contractRoutes(readFileSync(CONTRACTS, 'utf8'));
    expect(listed.length).toBeGreaterThan(30);
    const have = new Set(Object.entries(spec.paths).flatMap(([p, ops]) => Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${shape(p)}`)));
    const missing = listed.filter((r) => !have.has(`${r.method} ${shape(r.path)}`));
    expect(missing).toEqual([]);
  });

  it('the check of contractRoutes: a route missing from the document is caught', () => {
    const listed = contractRoutes('## Orders\n`POST /api/orders` and `GET /api/orders/{id}`\n## External systems\n- `GET /loans/{loanId}`');
    expect(listed).toEqual([{ method: 'POST', path: '/api/orders' }, { method: 'GET', path: '/api/orders/{id}' }]);
  });

  it('gives every route its security: none for public ones, bearer or the client credentials flow with its scopes otherwise; and the error bodies', () => {
    const ops = Object.entries(spec.paths).flatMap(([p, o]) => Object.entries(o as Record<string, any>).map(([m, op]) => ({ key: `${m.toUpperCase()} ${p}`, op })));
    // Public: no security, or (public /api routes, which verify a token when one is sent) an optional one.
    const pub = ops.filter((x) => x.op.security.length === 0 || x.op.security.some((s: object) => !Object.keys(s).length)).map((x) => x.key).sort();
    expect(pub).toEqual(expect.arrayContaining(['GET /api/products', 'GET /api/products/{sku}', 'POST /api/auth/login', 'POST /api/auth/token', 'GET /healthz', 'GET /openapi.json']));
    expect(pub.filter((k) => k.includes('/api/') && !k.includes('/api/auth/') && !k.startsWith('GET /api/products'))).toEqual([]);
    const products = ops.find((x) => x.key === 'GET /api/products')!.op;
    expect([products.security, Object.keys(products.responses)]).toEqual([[{}, { bearer: [] }, { clientCredentials: [] }], expect.arrayContaining(['200', '401', '429'])]);
    expect(ops.find((x) => x.key === 'GET /healthz')!.op.security).toEqual([]);
    const dlq = ops.find((x) => x.key === 'GET /api/admin/dlq')!.op;
    expect(dlq.security).toEqual([{ bearer: [] }, { clientCredentials: ['admin'] }]);
    expect(dlq.responses['401'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
    expect(Object.keys(dlq.responses)).toEqual(expect.arrayContaining(['200', '401', '403', '429', '503', 'default']));
    expect(spec.components.securitySchemes.clientCredentials.flows.clientCredentials.tokenUrl).toBe('/api/auth/token');
    const ws = ops.find((x) => x.key === 'GET /api/funding/applications/{id}/ws')!.op;
    expect(ws.security).toContainEqual({ accessTokenQuery: [] });
    const post = ops.find((x) => x.key === 'POST /api/orders')!.op;
    expect(post.parameters.map((p: any) => p.name)).toContain('Idempotency-Key');
    expect(post.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['orderId', 'email', 'paymentToken', 'items']));
  });
});

describe('405 METHOD_NOT_ALLOWED', () => {
  it('a known path with a method it does not serve: 405 with Allow, in the error format; an unknown path stays 404', async () => {
    const del = await c.as(null).request('DELETE', '/api/orders');
    expect(del.status).toBe(405);
    expect(del.body.error.code).toBe('METHOD_NOT_ALLOWED');
    expect(del.headers.get('allow')!.split(', ').sort()).toEqual(['GET', 'HEAD', 'POST']);
    const put = await c.request('PUT', '/api/orders/00000000-0000-4000-8000-000000000000', {});
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    const patch = await c.request('PATCH', '/api/admin/dlq/12', {});
    expect(patch.headers.get('allow')!.split(', ').sort()).toEqual(['DELETE', 'GET', 'HEAD']);
    expect((await c.request('POST', '/healthz', {})).status).toBe(405);
    // The API description pages and the console are in the table too.
    for (const path of ['/docs', '/asyncapi.json', '/openapi.json', '/admin']) {
      const r = await c.as(null).request('POST', path, {});
      expect([path, r.status, r.headers.get('allow')]).toEqual([path, 405, 'GET, HEAD']);
    }
    const unknown = await c.get('/api/nothing-here');
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'NOT_FOUND']);
  });
});

describe('the test client checks answers against the document', () => {
  it('an answer the document does not allow fails the call', async () => {
    const { responseChecker } = await import('../../testing/openapi.ts');
    const check = responseChecker(spec);
    expect(check('GET', '/api/admin/flags', 200, { items: [] }, 'application/json')).toBeNull();
    expect(check('GET', '/api/admin/flags', 200, { things: [] }, 'application/json')).toMatch(/does not allow/);
    expect(check('GET', '/api/orders/x', 404, { error: { code: 'NOT_FOUND', message: 'm' } }, 'application/json')).toBeNull();
    expect(check('GET', '/api/orders/x', 404, { oops: true }, 'application/json')).toMatch(/does not allow/);
    expect(check('GET', '/api/products', 200, { items: [{ sku: 1 }], nextCursor: null }, 'application/json')).toMatch(/does not allow/);
  });
});
