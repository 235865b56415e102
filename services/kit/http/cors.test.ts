import { describe, expect, it } from 'vitest';
import { loadBaseConfig } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { createApp } from './app.ts';

const SHOP = 'https://shop.example.com';
const make = (corsOrigins?: string[]) => {
  const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [], corsOrigins });
  app.get('/api/things', (c) => c.json({ items: [] }));
  app.post('/api/things', (c) => c.json({ id: 1 }, 201));
  return app;
};
const preflight = (origin: string) => ({
  method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, idempotency-key' },
});
const corsHeaders = (res: Response) => [...res.headers.keys()].filter((k) => k.startsWith('access-control-'));

describe('cors (CORS_ORIGINS)', () => {
  const app = make([SHOP, 'http://localhost:3000']);

  it('answers a preflight from a listed origin: that origin, the methods, the contract headers, no credentials', async () => {
    const res = await app.request('/api/things', preflight(SHOP));
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(res.headers.get('access-control-allow-methods')?.split(',')).toEqual(expect.arrayContaining(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']));
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase().split(',')).toEqual(expect.arrayContaining(['authorization', 'content-type', 'idempotency-key', 'x-request-id', 'traceparent']));
    expect(res.headers.get('access-control-max-age')).toBe('600');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(res.headers.get('vary')).toMatch(/Origin/);
  });

  it('does not answer a preflight from any other origin: no Access-Control-* header, no 204', async () => {
    for (const origin of ['https://evil.example', 'https://shop.example.com.evil.example', 'http://shop.example.com', 'null']) {
      const res = await app.request('/api/things', preflight(origin));
      expect(res.status, origin).not.toBe(204);
      expect(corsHeaders(res), origin).toEqual([]);
    }
  });

  it('marks actual responses for a listed origin, errors included, and exposes the contract headers', async () => {
    const ok = await app.request('/api/things', { headers: { origin: SHOP } });
    expect(ok.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(ok.headers.get('access-control-expose-headers')?.split(',')).toEqual(expect.arrayContaining(['X-Request-Id', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset']));
    expect(ok.headers.get('vary')).toMatch(/Origin/);
    // The browser lets the page read the 404's error body only with the header.
    const missing = await app.request('/api/nothing', { headers: { origin: 'http://localhost:3000' } });
    expect([missing.status, missing.headers.get('access-control-allow-origin')]).toEqual([404, 'http://localhost:3000']);
    const other = await app.request('/api/things', { headers: { origin: 'https://evil.example' } });
    expect([other.status, corsHeaders(other)]).toEqual([200, []]);
    expect(other.headers.get('vary')).toMatch(/Origin/);
  });

  it('allows no origin by default', async () => {
    const none = make();
    const res = await none.request('/api/things', preflight(SHOP));
    expect(res.status).not.toBe(204);
    expect(corsHeaders(res)).toEqual([]);
    expect(corsHeaders(await none.request('/api/things', { headers: { origin: SHOP } }))).toEqual([]);
  });
});

describe('CORS_ORIGINS', () => {
  it('is a comma-separated list of exact origins; a path, a wildcard or a bare host is refused at boot', () => {
    expect(loadBaseConfig({}).CORS_ORIGINS).toEqual([]);
    expect(loadBaseConfig({ CORS_ORIGINS: ' https://a.example.com, http://localhost:3000 ,' }).CORS_ORIGINS).toEqual(['https://a.example.com', 'http://localhost:3000']);
    for (const bad of ['*', 'https://a.example.com/', 'a.example.com', 'https://a.example.com/app', 'ftp://a.example.com']) {
      expect(() => loadBaseConfig({ CORS_ORIGINS: bad }), bad).toThrow(ConfigError);
    }
  });
});
