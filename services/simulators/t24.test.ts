import { describe, expect, it } from 'vitest';
import { createT24Simulator, DroppedConnectionError, startT24Simulator } from './t24.ts';
import type { T24Options } from './t24.ts';

const body = (investorId = 'inv-1', orderId = 'ord-1', amount = 250) => ({ investorId, orderId, amount });

function setup(options: T24Options = {}) {
  const sim = createT24Simulator({ seed: 1, ...options });
  const post = (path: string, payload: unknown, headers: Record<string, string> = {}) =>
    sim.app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID(), ...headers },
      body: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const reserve = (loanId: string, investorId = 'inv-1') => post(`/loans/${loanId}/reserve`, body(investorId));
  const invest = (loanId: string, investorId = 'inv-1') => post(`/loans/${loanId}/invest`, body(investorId));
  const get = (loanId: string) => sim.app.request(`/loans/${loanId}`);
  return { sim, post, reserve, invest, get };
}

describe('T24 simulator: loans', () => {
  it('auto-creates unknown loans AVAILABLE and moves them reserve → invest once each', async () => {
    const { sim, reserve, invest, get } = setup();
    const before = await get('L-1');
    expect(before.status).toBe(200);
    expect(await before.json()).toEqual({ loanId: 'L-1', status: 'AVAILABLE', investorId: null });

    const r = await reserve('L-1');
    expect(r.status).toBe(200);
    const reserved = await r.json();
    expect(reserved).toMatchObject({ loanId: 'L-1', status: 'RESERVED', investorId: 'inv-1' });
    expect(reserved.transactionCode).toMatch(/^FT/);

    const i = await invest('L-1');
    expect(i.status).toBe(200);
    const invested = await i.json();
    expect(invested).toMatchObject({ loanId: 'L-1', status: 'INVESTED', investorId: 'inv-1' });
    expect(invested.transactionCode).not.toBe(reserved.transactionCode);

    expect(await (await get('L-1')).json()).toEqual({ loanId: 'L-1', status: 'INVESTED', investorId: 'inv-1' });
    const stats = sim.stats();
    expect(stats.applied).toEqual({ reserve: 1, invest: 1 });
    expect(stats.appliedPerLoan).toEqual({ 'L-1': { reserve: 1, invest: 1 } });
    expect(stats.requests).toEqual({ total: 4, get: 2, reserve: 1, invest: 1 });
    expect(stats.statuses).toEqual({ 200: 4 });
    expect(sim.loan('L-1')).toMatchObject({ status: 'INVESTED', orderId: 'ord-1', amount: 250, applied: { reserve: 1, invest: 1 } });
    expect(sim.loan('L-1')!.transactions.map((t) => t.kind)).toEqual(['reserve', 'invest']);
  });

  it('answers 404 LOAN_NOT_FOUND for missing ids, and for unknown ids when autoCreate is off', async () => {
    const { sim, reserve, get } = setup({ missing: ['L-gone'] });
    for (const res of [await get('L-gone'), await reserve('L-gone')]) {
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: 'LOAN_NOT_FOUND' });
    }
    sim.setKnobs({ autoCreate: false });
    expect((await get('L-new')).status).toBe(404);
    sim.seedLoans(['L-new']);
    expect((await reserve('L-new')).status).toBe(200);
    expect(sim.stats().applied.reserve).toBe(1);
  });

  it('picks the same share of missing ids by a stable hash, whatever the order', async () => {
    const ids = Array.from({ length: 400 }, (_, n) => `L-${n}`);
    const statuses = async (order: string[]) => {
      const { get } = setup({ missingRate: 0.25 });
      const out = new Map<string, number>();
      for (const id of order) out.set(id, (await get(id)).status);
      return ids.map((id) => out.get(id));
    };
    const forward = await statuses(ids);
    expect(await statuses([...ids].reverse())).toEqual(forward);
    const missing = forward.filter((s) => s === 404).length;
    expect(missing).toBeGreaterThan(50);
    expect(missing).toBeLessThan(150);
  });

  it('answers 422 INVALID_REQUEST for a bad body and applies nothing', async () => {
    const { sim, post } = setup();
    const bad = ['{not json', {}, { investorId: 'inv-1', orderId: 'o' }, { investorId: '', orderId: 'o', amount: 1 },
      { investorId: 'inv-1', orderId: 'o', amount: 0 }, { investorId: 'inv-1', orderId: 'o', amount: '250' }, [1]];
    for (const payload of bad) {
      const res = await post('/loans/L-1/reserve', payload);
      expect(res.status).toBe(422);
      expect(await res.json()).toEqual({ error: 'INVALID_REQUEST' });
    }
    expect(sim.stats().applied).toEqual({ reserve: 0, invest: 0 });
  });

  it('answers 409 CONFLICT with the loan status and investor when the state forbids the move', async () => {
    const { reserve, invest } = setup({ taken: ['L-taken'] });
    const conflict = async (res: Response) => {
      expect(res.status).toBe(409);
      return await res.json();
    };
    expect(await conflict(await invest('L-1'))).toEqual({ error: 'CONFLICT', status: 'AVAILABLE', investorId: null });
    await reserve('L-1');
    expect(await conflict(await reserve('L-1'))).toEqual({ error: 'CONFLICT', status: 'RESERVED', investorId: 'inv-1' });
    expect(await conflict(await reserve('L-1', 'inv-2'))).toEqual({ error: 'CONFLICT', status: 'RESERVED', investorId: 'inv-1' });
    expect(await conflict(await invest('L-1', 'inv-2'))).toEqual({ error: 'CONFLICT', status: 'RESERVED', investorId: 'inv-1' });
    await invest('L-1');
    expect(await conflict(await invest('L-1'))).toEqual({ error: 'CONFLICT', status: 'INVESTED', investorId: 'inv-1' });
    expect(await conflict(await reserve('L-1'))).toEqual({ error: 'CONFLICT', status: 'INVESTED', investorId: 'inv-1' });
    expect(await conflict(await reserve('L-taken'))).toEqual({ error: 'CONFLICT', status: 'RESERVED', investorId: 'another-investor' });
  });

  it('answers 503 to every move of a failing loan, reads it, and picks failingRate ids stably', async () => {
    const { sim, reserve, invest, get } = setup({ failing: ['L-stuck'] });
    for (let n = 0; n < 3; n++) expect((await reserve('L-stuck')).status).toBe(503);
    expect((await invest('L-stuck')).status).toBe(503);
    expect(await (await get('L-stuck')).json()).toEqual({ loanId: 'L-stuck', status: 'AVAILABLE', investorId: null });
    expect((await reserve('L-fine')).status).toBe(200);
    expect(sim.stats().appliedPerLoan).toEqual({ 'L-fine': { reserve: 1, invest: 0 } });
    expect(sim.knobs().failing).toEqual(['L-stuck']);

    sim.setKnobs({ failing: [], failingRate: 0.1 });
    const ids = Array.from({ length: 400 }, (_, n) => `R-${n}`);
    const first = await Promise.all(ids.map(async (id) => (await reserve(id)).status));
    const stuck = ids.filter((_, n) => first[n] === 503);
    expect(stuck.length).toBeGreaterThan(15);
    expect(stuck.length).toBeLessThan(70);
    // The same ids, every time.
    for (const id of stuck) expect((await reserve(id)).status).toBe(503);
  });

  it('lets exactly one of many concurrent reserves of one loan win', async () => {
    const { sim, reserve } = setup({ latencyMs: { min: 0, max: 5 } });
    const results = await Promise.all(Array.from({ length: 50 }, (_, n) => reserve('L-1', `inv-${n}`)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(49);
    expect(sim.stats().appliedPerLoan).toEqual({ 'L-1': { reserve: 1, invest: 0 } });
  });
});

describe('T24 simulator: rate cap', () => {
  it('refuses requests over maxRps in a sliding second with 429 and Retry-After, and tracks the peak', async () => {
    let t = 1_000_000;
    const { sim, get, reserve } = setup({ maxRps: 5, now: () => t });
    const first = [];
    for (let n = 0; n < 8; n++) first.push(await (n % 2 ? reserve(`L-${n}`) : get(`L-${n}`)));
    expect(first.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(first[5]!.headers.get('retry-after')).toBe('1');
    expect(await first[5]!.json()).toEqual({ error: 'RATE_LIMITED' });

    t += 500; // still inside the second that began with the first five
    expect((await get('L-x')).status).toBe(429);
    t += 500; // the first five are now exactly 1000 ms old: out of the window
    expect((await get('L-x')).status).toBe(200);

    const stats = sim.stats();
    expect(stats.rateLimited).toBe(4);
    expect(stats.statuses).toEqual({ 200: 6, 429: 4 });
    expect(stats.peakRps).toBe(5);
    expect(stats.requests.total).toBe(10);
    expect(stats.perSecond).toEqual([
      { second: 1000, requests: 9, accepted: 5, rateLimited: 4, errors5xx: 0, drops: 0 },
      { second: 1001, requests: 1, accepted: 1, rateLimited: 0, errors5xx: 0, drops: 0 },
    ]);
  });

  it('measures the peak over any sliding second when uncapped', async () => {
    let t = 0;
    const { sim, get } = setup({ now: () => t });
    for (let n = 0; n < 3; n++) await get('L-1');
    t = 600;
    for (let n = 0; n < 4; n++) await get('L-1');
    t = 1200; // the three at t=0 have left the window; the four at 600 remain
    await get('L-1');
    expect(sim.stats().peakRps).toBe(7);
  });

  it('keeps a real HTTP client under the cap at the server, counting every 429', async () => {
    const t24 = await startT24Simulator({ maxRps: 20, seed: 3 });
    try {
      const results = await Promise.all(Array.from({ length: 60 }, (_, n) => fetch(`${t24.url}/loans/L-${n}`)));
      const ok = results.filter((r) => r.status === 200).length;
      const limited = results.filter((r) => r.status === 429).length;
      expect(ok + limited).toBe(60);
      const stats = t24.sim.stats();
      expect(stats.peakRps).toBeLessThanOrEqual(20);
      expect(stats.rateLimited).toBe(limited);
      expect(stats.requests.get).toBe(60);
    } finally {
      await t24.close();
    }
  });
});

describe('T24 simulator: fault knobs', () => {
  it('fail503Rate answers 503 before applying anything', async () => {
    const { sim, reserve } = setup({ fail503Rate: 1 });
    const res = await reserve('L-1');
    expect(res.status).toBe(503);
    expect(sim.loan('L-1')).toBeUndefined();
    expect(sim.stats()).toMatchObject({ errors5xx: 1, applied: { reserve: 0, invest: 0 } });
  });

  it('fail500AfterApplyRate applies the change then answers 500, and a retry sees the 409 of its own reservation', async () => {
    const { sim, reserve, get } = setup({ fail500AfterApplyRate: 1 });
    expect((await reserve('L-1')).status).toBe(500);
    expect(await (await get('L-1')).json()).toEqual({ loanId: 'L-1', status: 'RESERVED', investorId: 'inv-1' });
    const retry = await reserve('L-1');
    expect(retry.status).toBe(409);
    expect(await retry.json()).toEqual({ error: 'CONFLICT', status: 'RESERVED', investorId: 'inv-1' });
    expect(sim.stats()).toMatchObject({ errors5xx: 1, applied: { reserve: 1, invest: 0 }, appliedPerLoan: { 'L-1': { reserve: 1, invest: 0 } } });
  });

  it('dropAfterApplyRate applies then fails the in-process request as a dropped connection', async () => {
    const { sim, reserve } = setup({ dropAfterApplyRate: 1 });
    await expect(reserve('L-1')).rejects.toBeInstanceOf(DroppedConnectionError);
    expect(sim.loan('L-1')?.status).toBe('RESERVED');
    expect(sim.stats()).toMatchObject({ drops: 1, applied: { reserve: 1 } });
  });

  it('dropAfterApplyRate destroys the real socket without a response, and the server keeps serving', async () => {
    const t24 = await startT24Simulator({ dropAfterApplyRate: 1, seed: 9 });
    try {
      const call = fetch(`${t24.url}/loans/L-1/reserve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body()),
      });
      await expect(call).rejects.toThrow();
      expect(t24.sim.loan('L-1')?.status).toBe('RESERVED');
      expect(t24.sim.stats()).toMatchObject({ drops: 1, applied: { reserve: 1, invest: 0 } });

      t24.sim.setKnobs({ dropAfterApplyRate: 0 });
      const res = await fetch(`${t24.url}/loans/L-1`);
      expect(await res.json()).toEqual({ loanId: 'L-1', status: 'RESERVED', investorId: 'inv-1' });
    } finally {
      await t24.close();
    }
  });

  it('outage answers 503 to every call, forever or until an instant', async () => {
    let t = 10_000;
    const { sim, get, reserve } = setup({ outage: true, now: () => t });
    expect((await get('L-1')).status).toBe(503);
    expect((await reserve('L-1')).status).toBe(503);
    sim.setKnobs({ outageForMs: 5000 });
    t += 4999;
    expect((await get('L-1')).status).toBe(503);
    t += 1;
    expect((await get('L-1')).status).toBe(200);
    expect(sim.stats()).toMatchObject({ errors5xx: 3, applied: { reserve: 0 } });
  });

  it('timeoutRate hangs the answer but still applies the change', async () => {
    const { sim, reserve } = setup({ timeoutRate: 1, timeoutMs: 30 });
    const res = await reserve('L-1');
    expect(res.status).toBe(200);
    expect(sim.stats()).toMatchObject({ timeouts: 1, applied: { reserve: 1 } });
  });

  it('slowRate and latencyMs delay answers and count the slow ones', async () => {
    const { sim, get } = setup({ slowRate: 1, slowMs: 5, latencyMs: { min: 1, max: 3 } });
    expect((await get('L-1')).status).toBe(200);
    expect((await get('L-1')).status).toBe(200);
    expect(sim.stats().slow).toBe(2);
  });

  it('repeats the same faults for the same seed', async () => {
    const run = async (seed: number) => {
      const { get } = setup({ seed, fail503Rate: 0.5 });
      const out = [];
      for (let n = 0; n < 40; n++) out.push((await get(`L-${n}`)).status);
      return out;
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    expect(a).toContain(503);
    expect(a).toContain(200);
    expect(await run(8)).not.toEqual(a);
  });
});

describe('T24 simulator: admin endpoints', () => {
  it('seeds loans, sets knobs, reports stats and resets over HTTP', async () => {
    const t24 = await startT24Simulator({ seed: 5 });
    const admin = (path: string, payload?: unknown) =>
      fetch(`${t24.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload ?? {}) });
    try {
      expect(await (await admin('/_sim/loans', { ids: ['L-a', 'L-b'], status: 'INVESTED', investorId: 'inv-9' })).json()).toEqual({ seeded: 2 });
      expect(await (await fetch(`${t24.url}/loans/L-a`)).json()).toEqual({ loanId: 'L-a', status: 'INVESTED', investorId: 'inv-9' });

      const knobs = await (await admin('/_sim/knobs', { maxRps: 1, missing: ['L-m'] })).json();
      expect(knobs).toMatchObject({ maxRps: 1, missing: ['L-m'] });
      expect((await admin('/_sim/knobs', { maxRps: -1 })).status).toBe(400);
      expect((await admin('/_sim/knobs', { notAKnob: 1 })).status).toBe(400);

      const burst = await Promise.all(Array.from({ length: 5 }, () => fetch(`${t24.url}/loans/L-b`)));
      const limited = burst.filter((r) => r.status === 429).length;
      expect(limited).toBeGreaterThan(0);
      const stats = await (await fetch(`${t24.url}/_sim/stats`)).json();
      expect(stats).toMatchObject({ rateLimited: limited, requests: { get: 6 }, loans: { total: 2, invested: 2 }, seed: 5 });
      expect(stats.appliedPerLoan).toEqual({});
      expect(await (await fetch(`${t24.url}/_sim/loans/L-a`)).json()).toMatchObject({ loanId: 'L-a', status: 'INVESTED', applied: { reserve: 0, invest: 0 } });

      await admin('/_sim/reset?scope=stats');
      expect(t24.sim.stats().requests.total).toBe(0);
      expect(t24.sim.knobs().maxRps).toBe(1);
      expect(t24.sim.loan('L-a')).toBeDefined();

      await admin('/_sim/reset');
      expect(t24.sim.knobs()).toMatchObject({ maxRps: 0, missing: [] });
      expect(t24.sim.loan('L-a')).toBeUndefined();
    } finally {
      await t24.close();
    }
  });
});
