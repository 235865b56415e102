import { describe, expect, it } from 'vitest';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { createApp } from './app.ts';

describe('createApp', () => {
  it('serves health, readiness (naming what is missing) and metrics, and answers unknown routes in the error format', async () => {
    let missing: string[] = ['database'];
    const app = createApp({ log: createLogger({ level: 'silent' }), metrics: createMetrics(), readiness: async () => missing });
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const notReady = await app.request('/readyz');
    expect([notReady.status, await notReady.json()]).toEqual([503, { status: 'unavailable', missing: ['database'] }]);
    missing = [];
    expect(await (await app.request('/readyz')).json()).toEqual({ status: 'ready' });
    await app.request('/healthz');
    expect(await (await app.request('/metrics')).text()).toContain('orderflow_http_request_duration_seconds');
    const unknown = await app.request('/nope', { headers: { 'x-request-id': 'r-1' } });
    expect([unknown.status, unknown.headers.get('x-request-id'), (await unknown.json()).error.code]).toEqual([404, 'r-1', 'NOT_FOUND']);
  });
});
