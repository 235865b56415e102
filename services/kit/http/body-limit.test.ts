import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Context } from 'hono';
import { serveTestApp } from '../../testing/index.ts';
import { bodyLimit } from './body-limit.ts';

let t: Awaited<ReturnType<typeof serveTestApp>>;
beforeAll(async () => {
  t = await serveTestApp((app) => {
    app.bodyLimits.set('/big', 4096);
    app.post('/small', async (c) => c.json({ bytes: (await c.req.text()).length }));
    app.post('/big', async (c) => c.json({ bytes: (await c.req.text()).length }));
  }, { maxBodyBytes: 1024 });
});
afterAll(async () => { await t?.close(); });

const send = (path: string, bytes: number, chunked: boolean) => {
  const text = JSON.stringify({ pad: 'x'.repeat(bytes - 10) });
  const body = chunked ? new ReadableStream({ start(ctl) { ctl.enqueue(new TextEncoder().encode(text)); ctl.close(); } }) : text;
  return fetch(`${t.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
};

describe('bodyLimit', () => {
  for (const chunked of [false, true]) {
    it(`413s a ${chunked ? 'chunked' : 'declared-length'} body over the limit, and a path prefix may allow more`, async () => {
      const over = await send('/small', 2000, chunked);
      expect(over.status).toBe(413);
      expect((await over.json()).error).toEqual({ code: 'PAYLOAD_TOO_LARGE', message: 'request body exceeds 1024 bytes' });
      expect((await send('/small', 1000, chunked)).status).toBe(200);
      expect((await send('/big', 2000, chunked)).status).toBe(200);
      expect((await send('/big', 5000, chunked)).status).toBe(413);
    });
  }
});

describe('bodyLimit on requests without a body by their method', () => {
  // A context whose raw request must not be touched (that is what builds a full Request in
  // @hono/node-server) and that declares a body over the limit: only skipping passes both.
  const ctx = (method: string, contentLength?: string) => ({
    req: {
      method, path: '/small',
      header: (name: string) => (name.toLowerCase() === 'content-length' ? contentLength : undefined),
      get raw(): Request { throw new Error('the raw request was built'); },
    },
    json: () => new Response(null, { status: 413 }),
  }) as unknown as Context;

  for (const method of ['GET', 'HEAD', 'OPTIONS']) {
    it(`passes a ${method} to the next handler without touching its raw request or its declared length`, async () => {
      const limit = bodyLimit(1024, new Map());
      let passed = 0;
      for (const length of [undefined, '5000']) {
        const res = await limit(ctx(method, length), async () => { passed++; });
        expect(res).toBeUndefined();
      }
      expect(passed).toBe(2);
    });
  }

  it('still checks a POST (the same fake context answers 413 for its declared length)', async () => {
    const limit = bodyLimit(1024, new Map());
    let passed = 0;
    const res = await limit(ctx('POST', '5000'), async () => { passed++; });
    expect([(res as Response | undefined)?.status, passed]).toEqual([413, 0]);
  });
});
