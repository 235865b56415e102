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
