import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveTestApp } from '../../testing/index.ts';

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
