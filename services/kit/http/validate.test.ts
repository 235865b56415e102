import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { serveTestApp } from '../../testing/index.ts';
import { readJson, unstorableText, validate } from './validate.ts';

let t: Awaited<ReturnType<typeof serveTestApp>>;
beforeAll(async () => {
  t = await serveTestApp((app) => app.post('/echo', async (c) => c.json(await readJson(c, z.object({ name: z.string() }).passthrough()))));
});
afterAll(async () => { await t?.close(); });
const post = (body: string, headers: Record<string, string> = {}) =>
  t.app.request('/echo', { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

describe('unstorableText', () => {
  it('finds NULs and lone surrogates in values and keys at any depth, and passes paired surrogates', () => {
    expect(unstorableText({ a: 'fine 😀', b: [{ c: 'x\u0000' }], d: '\udc00', ['k\u0000']: 1 }).map((d) => d.field)).toEqual(['b.0.c', 'd', '(key)']);
    expect(unstorableText('😀 ok')).toEqual([]);
    expect(unstorableText('\ud83d')).toEqual([{ field: '(body)', message: expect.any(String) }]);
  });
});

describe('readJson and validate', () => {
  it('400s a body with a NUL or a lone surrogate before any handler sees it', async () => {
    for (const body of ['{"name":"a\\u0000b"}', '{"name":"a\\ud800b"}', '{"name":"ok","extra":{"deep":["\\udfff"]}}']) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe('VALIDATION_FAILED');
    }
    expect((await post('{"name":"a\\ud83d\\ude00b"}')).status).toBe(200);
  });

  it('400s malformed JSON and names each bad field', async () => {
    const broken = await post('{"name":');
    expect([broken.status, (await broken.json()).error.details]).toEqual([400, [{ field: '(body)', message: 'malformed JSON' }]]);
    expect(() => validate({ name: 7 }, z.object({ name: z.string() }))).toThrow(expect.objectContaining({ status: 400, details: [expect.objectContaining({ field: 'name' })] }));
  });
});
