import { describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { requestId } from './request-id.ts';

const metrics = createMetrics();
const app = new Hono<{ Variables: { requestId: string } }>()
  .use('*', requestId({ log: createLogger({ level: 'silent' }), metrics }))
  .get('/id', (c) => c.text(c.get('requestId')))
  .get('/fail', () => { throw new Error('x'); });
app.onError((_err, c) => c.text('failed', 500));

describe('requestId', () => {
  it('echoes a sane X-Request-Id and replaces one that is not', async () => {
    const echoed = await app.request('/id', { headers: { 'x-request-id': 'req-123' } });
    expect([await echoed.text(), echoed.headers.get('x-request-id')]).toEqual(['req-123', 'req-123']);
    for (const bad of ['a b', 'x'.repeat(129), 'a/b', '<script>']) {
      const res = await app.request('/id', { headers: { 'x-request-id': bad } });
      const id = res.headers.get('x-request-id');
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(await res.text()).toBe(id);
    }
  });

  it('sets the id on error responses too, and observes each request', async () => {
    const res = await app.request('/fail', { headers: { 'x-request-id': 'req-err' } });
    expect([res.status, res.headers.get('x-request-id')]).toEqual([500, 'req-err']);
    expect(await metrics.registry.metrics()).toMatch(/orderflow_http_request_duration_seconds_count\{[^}]*route="\/fail"[^}]*status="500"[^}]*\} 1/);
  });
});

describe('the access line', () => {
  it('is one line per request with level name, method, route pattern, status, duration and principal; no path ids or query', async () => {
    let out = '';
    const sink = { write(chunk: string) { out += chunk; return true; } } as unknown as NodeJS.WritableStream;
    const log = createLogger({ level: 'info', destination: sink });
    const logged = new Hono<{ Variables: { requestId: string; principal?: { sub: string } } }>()
      .use('*', requestId({ log, metrics: createMetrics() }))
      .use('/me/*', async (c, next) => { c.set('principal', { sub: 'user-7' }); await next(); })
      .get('/orders/:id', (c) => c.json({}))
      .get('/me/x', (c) => c.json({}))
      .get('/healthz', (c) => c.json({}));
    await logged.request('/orders/A-SECRET-1?access_token=tok_should_not_appear', { headers: { 'x-request-id': 'r-1' } });
    await logged.request('/me/x');
    await logged.request('/healthz');
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2); // the probe is at debug
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'request', method: 'GET', route: '/orders/:id', status: 200, requestId: 'r-1' });
    expect(typeof lines[0].ms).toBe('number');
    expect(lines[1]).toMatchObject({ route: '/me/x', principal: 'user-7' });
    expect(out).not.toContain('A-SECRET-1');
    expect(out).not.toContain('tok_should_not_appear');
  });
});
