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

describe('jsonOnly form paths', () => {
  const forms = new Hono().use('*', jsonOnly(new Set(['/token', '/admin/*']))).post('*', async (c) => c.text(await c.req.text()));
  const form = (path: string) => forms.request(path, { method: 'POST', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });

  it('takes a form body on an exact path and under a /* prefix, and nowhere else', async () => {
    expect((await form('/token')).status).toBe(200);
    expect((await form('/admin/dlq/7/redrive')).status).toBe(200);
    expect((await form('/admin')).status).toBe(415);
    expect((await form('/administrator')).status).toBe(415);
    expect((await form('/token/x')).status).toBe(415);
  });
});
