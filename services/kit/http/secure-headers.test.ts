import { describe, expect, it } from 'vitest';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { createApp } from './app.ts';
import { HttpError } from './errors.ts';

const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => [] });
app.get('/page', (c) => c.html('<!doctype html><title>x</title>'));
app.get('/boom', () => { throw new Error('boom'); });
app.get('/conflict', () => { throw new HttpError(409, 'CONFLICT', 'no'); });
app.post('/json', async (c) => c.json(await c.req.json()));

/** The CSP as directive -> sources. */
const csp = (res: Response) => Object.fromEntries((res.headers.get('content-security-policy') ?? '').split(';').map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([k, ...v]) => [k, v]));

describe('secureHeaders', () => {
  it('are on every response: pages, JSON, health, 404, 409, 500, 415', async () => {
    const responses = await Promise.all([
      app.request('/page'), app.request('/healthz'), app.request('/nope'), app.request('/conflict'), app.request('/boom'),
      app.request('/json', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }),
    ]);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 404, 409, 500, 415]);
    for (const res of responses) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      expect(res.headers.get('strict-transport-security')).toMatch(/^max-age=\d{7,}; includeSubDomains$/);
      expect(res.headers.get('content-security-policy')).toBeTruthy();
      expect(res.headers.get('x-powered-by')).toBeNull();
    }
  });

  it('lets same-origin pages work and nothing else: scripts only from self (no inline, no eval), no framing, no plugins', async () => {
    const p = csp(await app.request('/page'));
    expect(p['default-src']).toEqual(["'self'"]);
    expect(p['script-src']).toEqual(["'self'"]);
    expect(p['connect-src']).toEqual(["'self'"]);
    expect(p['frame-ancestors']).toEqual(["'none'"]);
    expect(p['object-src']).toEqual(["'none'"]);
    // /_dev/mail has a <style> block; Swagger UI draws icons from data: URIs.
    expect(p['style-src']).toEqual(["'self'", "'unsafe-inline'"]);
    expect(p['img-src']).toEqual(["'self'", 'data:']);
  });
});
