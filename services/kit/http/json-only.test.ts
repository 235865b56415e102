import { describe, expect, it } from 'vitest';
import { Hono } from 'hono';
import { jsonOnly } from './json-only.ts';

const app = new Hono().use('*', jsonOnly()).post('/echo', async (c) => c.text(await c.req.text())).get('/get', (c) => c.text('ok'));
const post = (body: string, headers: Record<string, string> = {}) =>
  app.request('/echo', { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

describe('jsonOnly', () => {
  it('415s a compressed body, which nothing here decodes', async () => {
    const res = await post('{"name":"a"}', { 'content-encoding': 'gzip' });
    expect(res.status).toBe(415);
    expect((await res.json()).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await post('{"name":"a"}', { 'content-encoding': 'identity' })).status).toBe(200);
  });

  it('415s a body that is not JSON, and lets JSON types with parameters and suffixes through', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
      const res = await post('{}', { 'content-type': type });
      expect([res.status, (await res.json()).error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    }
    for (const type of ['application/json; charset=utf-8', 'application/merge-patch+json']) expect((await post('{}', { 'content-type': type })).status).toBe(200);
    expect((await app.request('/get')).status).toBe(200);
  });
});
