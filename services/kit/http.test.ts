import { connect } from 'node:net';
import { serve } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDlqAdmin } from './dlq.ts';
import { answerMalformedRequests, createApp, readJson, unstorableText } from './http.ts';
import { createLogger } from './log.ts';
import { createMetrics } from './metrics.ts';

const log = createLogger({ level: 'silent' });
const app = createApp({ log, metrics: createMetrics(), readiness: async () => [] });
app.post('/echo', async (c) => c.json(await readJson(c, z.object({ name: z.string() }).passthrough())));
let listening!: () => void;
const ready = new Promise<void>((r) => { listening = r; });
const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => listening());
answerMalformedRequests(server);
let port: number;
beforeAll(async () => { await ready; port = (server.address() as AddressInfo).port; });
afterAll(async () => { await new Promise((r) => server.close(r)); });

/** Send raw bytes and read the whole answer (the server closes the connection). */
const raw = (request: string) => new Promise<string>((resolve, reject) => {
  const s = connect(port, '127.0.0.1', () => s.end(request));
  let out = '';
  s.on('data', (d) => { out += d; });
  s.on('end', () => resolve(out));
  s.on('error', reject);
});
const post = (body: string, headers: Record<string, string> = {}) =>
  app.request('/echo', { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

describe('unstorableText', () => {
  it('finds NULs and lone surrogates in values and keys at any depth, and passes paired surrogates', () => {
    expect(unstorableText({ a: 'fine 😀', b: [{ c: 'x\u0000' }], d: '\udc00', ['k\u0000']: 1 }).map((d) => d.field)).toEqual(['b.0.c', 'd', '(key)']);
    expect(unstorableText('😀 ok')).toEqual([]);
    expect(unstorableText('\ud83d')).toEqual([{ field: '(body)', message: expect.any(String) }]);
  });
});

describe('the app every service mounts on', () => {
  it('400s a body with a NUL or a lone surrogate before any handler sees it', async () => {
    for (const body of ['{"name":"a\\u0000b"}', '{"name":"a\\ud800b"}', '{"name":"ok","extra":{"deep":["\\udfff"]}}']) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe('VALIDATION_FAILED');
    }
    expect((await post('{"name":"a\\ud83d\\ude00b"}')).status).toBe(200);
  });

  it('415s a compressed body, which nothing here decodes', async () => {
    const res = await post('{"name":"a"}', { 'content-encoding': 'gzip' });
    expect(res.status).toBe(415);
    expect((await res.json()).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    expect((await post('{"name":"a"}', { 'content-encoding': 'identity' })).status).toBe(200);
  });

  it('does not echo a 10 KB path back whole in a 404', async () => {
    const res = await app.request(`/${'x'.repeat(10_000)}`);
    expect(res.status).toBe(404);
    expect((await res.json()).error.message.length).toBeLessThan(200);
  });

  it('answers what the HTTP parser refuses in the contract error format, not an empty 400', async () => {
    const bad = await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n\r\n');
    expect(bad).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(bad.split('\r\n\r\n')[1]!).error.code).toBe('VALIDATION_FAILED');
    const huge = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(huge.split('\r\n\r\n')[1]!).error.code).toBe('HEADERS_TOO_LARGE');
    // A well-formed request on the same server still works.
    expect(await raw('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('DLQ ids', () => {
  it('are digits only: 18.0, +18, 0x12 and 18e0 are not entry 18', async () => {
    // Ids are rejected before NATS is asked, so no connection is needed.
    const dlq = createDlqAdmin({ js: null as never, jsm: null as never });
    for (const id of ['18.0', '+18', '0x12', '18e0', ' 18', '018', '99999999999999999999']) {
      expect(await dlq.get(id)).toBeNull();
      expect(await dlq.remove(id)).toBe(false);
      expect(await dlq.redrive(id)).toBeNull();
    }
  });
});
