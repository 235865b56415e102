import { describe, expect, it } from 'vitest';
import { createSmsSimulator, startSmsSimulator } from './sms.ts';

function send(sim: ReturnType<typeof createSmsSimulator>, body: unknown, key: string | null = 'k-1') {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers['idempotency-key'] = key;
  return Promise.resolve(sim.app.request('/v1/messages', { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) }));
}

describe('sms simulator', () => {
  it('accepts a message with 202 and lists it', async () => {
    const sim = createSmsSimulator({ seed: 1 });
    const res = await send(sim, { to: '+15551234567', body: 'Order A-1001 received' });
    expect(res.status).toBe(202);
    const { id } = await res.json() as { id: string };
    expect(id).toMatch(/^SM[0-9a-f]+$/);
    expect(sim.messages()).toMatchObject([{ id, to: '+15551234567', body: 'Order A-1001 received', idempotencyKey: 'k-1' }]);

    await send(sim, { to: '+447700900123', body: 'other' }, 'k-2');
    const list = await (await sim.app.request('/v1/messages?to=%2B15551234567')).json() as { data: Array<{ id: string }> };
    expect(list.data.map((m) => m.id)).toEqual([id]);
    const all = await (await sim.app.request('/v1/messages')).json() as { data: Array<{ to: string }> };
    expect(all.data.map((m) => m.to)).toEqual(['+447700900123', '+15551234567']); // newest first
  });

  it('requires an Idempotency-Key and an E.164 number', async () => {
    const sim = createSmsSimulator({ seed: 1 });
    const noKey = await send(sim, { to: '+15551234567', body: 'x' }, null);
    expect(noKey.status).toBe(400);
    expect(await noKey.json()).toMatchObject({ error: { code: 'invalid_request' } });

    for (const to of ['15551234567', '+0555123456', '+1555', '+1555123456789012', 'abc']) {
      const res = await send(sim, { to, body: 'x' }, `k-${to}`);
      expect(res.status, to).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 'invalid_request', details: [{ field: 'to' }] } });
    }
    expect((await send(sim, { to: '+15551234567' }, 'k-nobody')).status).toBe(400);
    expect((await send(sim, '{not json', 'k-bad')).status).toBe(400);
    expect(sim.messages()).toHaveLength(0);
    expect(sim.stats()).toMatchObject({ invalid: 8, accepted: 0 });
  });

  it('replays the same key and body, refuses the same key with another body', async () => {
    const sim = createSmsSimulator({ seed: 1 });
    const first = await send(sim, { to: '+15551234567', body: 'hello' }, 'same');
    const again = await send(sim, { to: '+15551234567', body: 'hello' }, 'same');
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(await first.json());
    const other = await send(sim, { to: '+15551234567', body: 'changed' }, 'same');
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ error: { code: 'idempotency_key_reused' } });
    expect(sim.messages()).toHaveLength(1);
    expect(sim.stats()).toMatchObject({ requests: 3, accepted: 1, replayed: 1, keyReused: 1 });
  });

  it('answers 429 with Retry-After and 503 at the configured rates, storing nothing', async () => {
    const sim = createSmsSimulator({ seed: 3, rate429: 1 });
    const limited = await send(sim, { to: '+15551234567', body: 'x' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');

    sim.setKnobs({ rate429: 0, fail503Rate: 1 });
    expect((await send(sim, { to: '+15551234567', body: 'x' })).status).toBe(503);
    expect(sim.messages()).toHaveLength(0);

    // A failed attempt leaves no idempotency record: the retry with the same key goes through.
    sim.setKnobs({ fail503Rate: 0 });
    expect((await send(sim, { to: '+15551234567', body: 'x' })).status).toBe(202);

    sim.setKnobs({ fail503Rate: 0.5, seed: 9 });
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await send(sim, { to: '+15551234567', body: `n${i}` }, `r-${i}`)).status);
    expect(statuses).toContain(503);
    expect(statuses).toContain(202);
    expect(sim.stats()).toMatchObject({ rateLimited: 1, failed503: 1 + statuses.filter((s) => s === 503).length });

    // Same seed, same pattern.
    const twin = createSmsSimulator({ seed: 9, fail503Rate: 0.5 });
    const twinStatuses: number[] = [];
    for (let i = 0; i < 40; i++) twinStatuses.push((await send(twin, { to: '+15551234567', body: `n${i}` }, `r-${i}`)).status);
    expect(twinStatuses).toEqual(statuses);
  });

  it('delays answers by latencyMs', async () => {
    const sim = createSmsSimulator({ latencyMs: 30 });
    let answered = false;
    const pending = send(sim, { to: '+15551234567', body: 'slow' }).then((r) => { answered = true; return r; });
    await new Promise((r) => setTimeout(r, 5));
    expect(answered).toBe(false);
    expect((await pending).status).toBe(202);
  });

  it('takes knobs, stats and reset over HTTP', async () => {
    const sim = createSmsSimulator({ seed: 1 });
    const set = await sim.app.request('/_sim/knobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rate429: 1 }) });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ rate429: 1, fail503Rate: 0 });
    expect((await send(sim, { to: '+15551234567', body: 'x' })).status).toBe(429);
    const bad = await sim.app.request('/_sim/knobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ fail503Rate: 3 }) });
    expect(bad.status).toBe(400);

    const stats = await (await sim.app.request('/_sim/stats')).json();
    expect(stats).toMatchObject({ requests: 1, rateLimited: 1 });

    expect((await sim.app.request('/_sim/reset', { method: 'POST' })).status).toBe(200);
    expect(sim.knobs().rate429).toBe(0);
    expect(sim.stats()).toMatchObject({ requests: 0, rateLimited: 0 });
    expect((await send(sim, { to: '+15551234567', body: 'x' })).status).toBe(202);
  });

  it('serves on a real port', async () => {
    const { url, port, close, sim } = await startSmsSimulator();
    try {
      expect(url).toBe(`http://127.0.0.1:${port}`);
      const res = await fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'net-1' }, body: JSON.stringify({ to: '+15551234567', body: 'hi' }) });
      expect(res.status).toBe(202);
      expect(sim.messages()).toHaveLength(1);
    } finally {
      await close();
    }
  });
});
