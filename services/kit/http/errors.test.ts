import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HTTPException } from 'hono/http-exception';
import { HttpError, isUnavailable } from './errors.ts';
import { serveTestApp } from '../../testing/index.ts';

let t: Awaited<ReturnType<typeof serveTestApp>>;
beforeAll(async () => {
  t = await serveTestApp((app) => {
    app.get('/teapot', () => { throw new HttpError(418, 'TEAPOT', 'short and stout', [{ field: 'spout', message: 'here' }]); });
    app.get('/boom', () => { throw new Error('secret SQL text'); });
    app.get('/db-down', () => { throw new Error('query failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) }); });
  });
});
afterAll(async () => { await t?.close(); });

describe('HttpError', () => {
  it('is a Hono HTTPException whose own response is the contract body', async () => {
    const err = new HttpError(409, 'DUPLICATE_ORDER', 'order A-1 already exists');
    expect(err).toBeInstanceOf(HTTPException);
    expect(err.status).toBe(409);
    const res = err.getResponse();
    expect(res.status).toBe(409);
    expect(await res.json()).toEqual({ error: { code: 'DUPLICATE_ORDER', message: 'order A-1 already exists' } });
  });
});

describe('onError', () => {
  it('maps HttpError to its status and body, a lost dependency to 503, anything else to a bare 500', async () => {
    const teapot = await t.app.request('/teapot');
    expect(teapot.status).toBe(418);
    expect(await teapot.json()).toEqual({ error: { code: 'TEAPOT', message: 'short and stout', details: [{ field: 'spout', message: 'here' }] } });
    const down = await t.app.request('/db-down');
    expect([down.status, down.headers.get('retry-after'), (await down.json()).error.code]).toEqual([503, '1', 'UNAVAILABLE']);
    const boom = await t.app.request('/boom');
    expect(boom.status).toBe(500);
    expect(JSON.stringify(await boom.json())).not.toContain('secret');
    expect(isUnavailable(new Error('x'))).toBe(false);
  });

  it('does not echo a 10 KB path back whole in a 404', async () => {
    const res = await t.app.request(`/${'x'.repeat(10_000)}`);
    expect(res.status).toBe(404);
    expect((await res.json()).error.message.length).toBeLessThan(200);
  });
});

describe('answerMalformedRequests', () => {
  it('answers what the HTTP parser refuses in the contract error format, not an empty 400', async () => {
    const bad = await t.raw('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(bad.split('\r\n\r\n')[1]!).error.code).toBe('VALIDATION_FAILED');
    const huge = await t.raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(huge.split('\r\n\r\n')[1]!).error.code).toBe('HEADERS_TOO_LARGE');
    // A well-formed request on the same server still works.
    expect(await t.raw('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('answers an HTTP/1.1 request without Host with 400 VALIDATION_FAILED in the contract format', async () => {
    const res = await t.raw('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n');
    expect(res).toMatch(/^HTTP\/1\.1 400 /);
    const body = JSON.parse(res.split('\r\n\r\n')[1]!);
    expect(body.error.code).toBe('VALIDATION_FAILED');
    expect(body.error.message).toMatch(/Host/);
    // HTTP/1.0 has no Host requirement; it is served.
    expect(await t.raw('GET /healthz HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });
});
