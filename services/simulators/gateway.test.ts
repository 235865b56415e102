import { describe, expect, it } from 'vitest';
import { createGatewaySimulator, DroppedConnectionError, isValidIban, startGatewaySimulator } from './gateway.ts';
import type { GatewayOptions } from './gateway.ts';

const charge = (reference = 'ord-1', source = 'tok_visa', amount = 1999) => ({ amount, currency: 'EUR', source, reference });
const payout = (reference = 'app-1', iban = 'DE89370400440532013000', amount = 5_000_000) =>
  ({ amount, currency: 'EUR', destination: { iban, holderName: 'Acme Ltd' }, reference });

function setup(options: GatewayOptions = {}) {
  const sim = createGatewaySimulator({ seed: 1, ...options });
  const post = (path: string, payload: unknown, key: string | null = crypto.randomUUID()) =>
    sim.app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
      body: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  const get = (path: string) => sim.app.request(path);
  return { sim, post, get };
}

describe('payment gateway simulator: charges', () => {
  it('creates a charge with 201 and lists it by reference', async () => {
    const { sim, post, get } = setup();
    const res = await post('/v1/charges', charge());
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(body).toMatchObject({ status: 'succeeded', amount: 1999, currency: 'EUR', reference: 'ord-1' });
    expect(body.id).toMatch(/^ch_/);

    const list = await get('/v1/charges?reference=ord-1');
    expect(list.status).toBe(200);
    expect((await list.json()).data).toEqual([expect.objectContaining({ id: body.id, status: 'succeeded' })]);
    expect(await (await get('/v1/charges?reference=nobody')).json()).toEqual({ data: [] });
    expect(sim.netCharged('ord-1')).toBe(1999);
    expect(sim.chargesFor('ord-1')).toHaveLength(1);
  });

  it('requires an Idempotency-Key on every POST', async () => {
    const { sim, post } = setup();
    for (const [path, payload] of [['/v1/charges', charge()], ['/v1/refunds', { charge: 'ch_x', amount: 1 }], ['/v1/payouts', payout()]] as const) {
      const res = await post(path, payload, null);
      expect(res.status).toBe(400);
      expect((await res.json()).error.code).toBe('idempotency_key_required');
    }
    expect(sim.stats()).toMatchObject({ keyMissing: 3, applied: { charges: 0, refunds: 0, payouts: 0 } });
  });

  it('replays the stored response for the same key and body, whatever the key order', async () => {
    const { sim, post } = setup();
    const first = await post('/v1/charges', charge(), 'k-1');
    const again = await post('/v1/charges', { reference: 'ord-1', source: 'tok_visa', currency: 'EUR', amount: 1999 }, 'k-1');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(await first.json());
    expect(sim.chargesFor('ord-1')).toHaveLength(1);
    expect(sim.stats()).toMatchObject({ replays: 1, applied: { charges: 1 } });
  });

  it('refuses the same key with another body, or on another endpoint, with 422', async () => {
    const { sim, post } = setup();
    await post('/v1/charges', charge(), 'k-1');
    for (const res of [await post('/v1/charges', charge('ord-1', 'tok_visa', 2000), 'k-1'), await post('/v1/payouts', payout(), 'k-1')]) {
      expect(res.status).toBe(422);
      expect((await res.json()).error.code).toBe('idempotency_key_reused');
    }
    expect(sim.stats()).toMatchObject({ keyReused: 2, applied: { charges: 1, payouts: 0 } });
  });

  it('declines tok_declined with 402 card_declined, stored for the key', async () => {
    const { sim, post } = setup();
    const res = await post('/v1/charges', charge('ord-2', 'tok_declined'), 'k-d');
    expect(res.status).toBe(402);
    const body = await res.json();
    expect(body.error.code).toBe('card_declined');
    const again = await post('/v1/charges', charge('ord-2', 'tok_declined'), 'k-d');
    expect(again.status).toBe(402);
    expect(await again.json()).toEqual(body);
    expect(sim.netCharged('ord-2')).toBe(0);
    expect(sim.chargesFor('ord-2')).toEqual([expect.objectContaining({ status: 'failed', failureCode: 'card_declined' })]);
    expect(sim.stats()).toMatchObject({ declines: 1, replays: 1, applied: { charges: 0 } });
  });

  it('answers 400 invalid_request to a bad body and keeps the key free', async () => {
    const { sim, post } = setup();
    const bad = ['{nope', [1], {}, { ...charge(), amount: 19.99 }, { ...charge(), amount: 0 }, { ...charge(), currency: 'EURO' },
      { ...charge(), source: 'card_4242' }, { ...charge(), reference: '' }];
    for (const payload of bad) {
      const res = await post('/v1/charges', payload, 'k-bad');
      expect(res.status).toBe(400);
      const { error } = await res.json();
      expect(error.code).toBe('invalid_request');
      expect(error.message).toEqual(expect.any(String));
    }
    expect((await post('/v1/charges', charge(), 'k-bad')).status).toBe(201);
    expect(sim.stats().applied.charges).toBe(1);
  });
});

describe('payment gateway simulator: refunds', () => {
  it('refunds up to the charge and refuses more with amount_exceeds_charge', async () => {
    const { sim, post, get } = setup();
    const ch = await (await post('/v1/charges', charge('ord-3', 'tok_visa', 1000))).json();
    const part = await post('/v1/refunds', { charge: ch.id, amount: 400 });
    expect(part.status).toBe(201);
    const refund = await part.json();
    expect(refund).toMatchObject({ status: 'succeeded', charge: ch.id, amount: 400 });
    expect(refund.id).toMatch(/^re_/);

    const tooMuch = await post('/v1/refunds', { charge: ch.id, amount: 601 });
    expect(tooMuch.status).toBe(400);
    expect((await tooMuch.json()).error.code).toBe('amount_exceeds_charge');

    expect((await post('/v1/refunds', { charge: ch.id })).status).toBe(201); // the rest, 600
    expect(sim.netCharged('ord-3')).toBe(0);
    expect(sim.refundsFor('ord-3').map((r) => r.amount)).toEqual([400, 600]);
    expect((await post('/v1/refunds', { charge: ch.id, amount: 1 })).status).toBe(400);
    expect((await (await get(`/v1/refunds?charge=${ch.id}`)).json()).data).toHaveLength(2);
  });

  it('answers 404 for an unknown charge and refuses refunding a declined one', async () => {
    const { post } = setup();
    const res = await post('/v1/refunds', { charge: 'ch_nope', amount: 1 });
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toEqual(expect.any(String));
    const declined = await (await post('/v1/charges', charge('ord-4', 'tok_declined'))).json();
    const refund = await post('/v1/refunds', { charge: declined.error.charge, amount: 1 });
    expect(refund.status).toBe(400);
    expect((await refund.json()).error.code).toBe('amount_exceeds_charge');
  });
});

describe('payment gateway simulator: payouts', () => {
  it('pays out to a valid IBAN and lists it by reference', async () => {
    const { sim, post, get } = setup();
    const res = await post('/v1/payouts', payout());
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(body).toMatchObject({ status: 'paid', amount: 5_000_000, currency: 'EUR', reference: 'app-1', destination: { iban: 'DE89370400440532013000', holderName: 'Acme Ltd' } });
    expect(body.id).toMatch(/^po_/);
    expect((await (await get('/v1/payouts?reference=app-1')).json()).data).toEqual([expect.objectContaining({ id: body.id })]);
    expect(sim.payoutsFor('app-1')).toHaveLength(1);
  });

  it('refuses an invalid IBAN with 422 invalid_destination, stored for the key', async () => {
    const { sim, post } = setup();
    const res = await post('/v1/payouts', payout('app-2', 'DE89370400440532013001'), 'k-p');
    expect(res.status).toBe(422);
    expect((await res.json()).error.code).toBe('invalid_destination');
    expect((await post('/v1/payouts', payout('app-2', 'DE89370400440532013001'), 'k-p')).status).toBe(422);
    expect(sim.payoutsFor('app-2')).toEqual([]);
    expect(sim.stats().replays).toBe(1);
    const missing = await post('/v1/payouts', { ...payout(), destination: { iban: 'DE89370400440532013000' } });
    expect(missing.status).toBe(400);
  });

  it('checks IBANs the ISO 13616 way', () => {
    for (const ok of ['DE89370400440532013000', 'GB82 WEST 1234 5698 7654 32', 'NL91ABNA0417164300', 'FR1420041010050500013M02606', 'be68539007547034']) {
      expect(isValidIban(ok)).toBe(true);
    }
    for (const bad of ['DE89370400440532013001', 'DE8937040044053201300', 'GB82WEST1234569876543X', 'XX', '', 'DE00370400440532013000', '1234567890123456']) {
      expect(isValidIban(bad)).toBe(false);
    }
  });
});

describe('payment gateway simulator: fault knobs', () => {
  it('fail500AfterApplyRate leaves exactly one charge, and the retry with the same key gets the 201', async () => {
    const { sim, post } = setup({ fail500AfterApplyRate: 1 });
    const res = await post('/v1/charges', charge('ord-5'), 'k-5');
    expect(res.status).toBe(500);
    sim.setKnobs({ fail500AfterApplyRate: 0 });
    const retry = await post('/v1/charges', charge('ord-5'), 'k-5');
    expect(retry.status).toBe(201);
    expect((await retry.json()).status).toBe('succeeded');
    expect(sim.chargesFor('ord-5')).toHaveLength(1);
    expect(sim.netCharged('ord-5')).toBe(1999);
    expect(sim.stats()).toMatchObject({ errors5xx: 1, replays: 1, applied: { charges: 1 } });
  });

  it('a replay never meets the after-apply faults', async () => {
    const { sim, post } = setup();
    await post('/v1/charges', charge('ord-6'), 'k-6');
    sim.setKnobs({ fail500AfterApplyRate: 1 });
    expect((await post('/v1/charges', charge('ord-6'), 'k-6')).status).toBe(201);
  });

  it('fail503Rate answers 503 before applying, and the key stays free', async () => {
    const { sim, post } = setup({ fail503Rate: 1 });
    expect((await post('/v1/charges', charge('ord-7'), 'k-7')).status).toBe(503);
    expect(sim.chargesFor('ord-7')).toEqual([]);
    sim.setKnobs({ fail503Rate: 0 });
    expect((await post('/v1/charges', charge('ord-7'), 'k-7')).status).toBe(201);
    expect(sim.stats()).toMatchObject({ errors5xx: 1, replays: 0, applied: { charges: 1 } });
  });

  it('rate429 answers 429 with Retry-After before anything else', async () => {
    const { sim, post, get } = setup({ rate429: 1 });
    for (const res of [await post('/v1/charges', charge()), await get('/v1/charges?reference=ord-1')]) {
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('1');
      expect((await res.json()).error.code).toBe('rate_limited');
    }
    expect(sim.stats()).toMatchObject({ rateLimited: 2, applied: { charges: 0 } });
  });

  it('outage answers 503 until it ends', async () => {
    let t = 0;
    const { sim, post } = setup({ outageForMs: 1000, now: () => t });
    expect((await post('/v1/payouts', payout())).status).toBe(503);
    t = 1000;
    expect((await post('/v1/payouts', payout())).status).toBe(201);
    expect(sim.payoutsFor('app-1')).toHaveLength(1);
  });

  it('latencyMs delays but answers', async () => {
    const { post } = setup({ latencyMs: { min: 1, max: 5 } });
    expect((await post('/v1/charges', charge())).status).toBe(201);
  });

  it('dropAfterApplyRate applies, fails in-process calls as dropped, and stores the success', async () => {
    const { sim, post } = setup({ dropAfterApplyRate: 1 });
    await expect(post('/v1/payouts', payout('app-3'), 'k-3')).rejects.toBeInstanceOf(DroppedConnectionError);
    expect(sim.payoutsFor('app-3')).toHaveLength(1);
    expect((await post('/v1/payouts', payout('app-3'), 'k-3')).status).toBe(201);
    expect(sim.payoutsFor('app-3')).toHaveLength(1);
  });

  it('dropAfterApplyRate destroys the real socket; the retry with the same key gets the 201 and pays once', async () => {
    const gw = await startGatewaySimulator({ dropAfterApplyRate: 1, seed: 4 });
    const send = () => fetch(`${gw.url}/v1/payouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k-net' },
      body: JSON.stringify(payout('app-4')),
    });
    try {
      await expect(send()).rejects.toThrow();
      expect(gw.sim.payoutsFor('app-4')).toHaveLength(1);
      const retry = await send();
      expect(retry.status).toBe(201);
      expect((await retry.json()).reference).toBe('app-4');
      expect(gw.sim.payoutsFor('app-4')).toHaveLength(1);
      expect(gw.sim.stats()).toMatchObject({ drops: 1, replays: 1, applied: { payouts: 1 } });
    } finally {
      await gw.close();
    }
  });

  it('repeats the same faults for the same seed', async () => {
    const run = async (seed: number) => {
      const { post } = setup({ seed, fail503Rate: 0.3, rate429: 0.2 });
      const out = [];
      for (let n = 0; n < 40; n++) out.push((await post('/v1/charges', charge(`ord-${n}`))).status);
      return out;
    };
    const a = await run(11);
    expect(await run(11)).toEqual(a);
    expect(new Set(a)).toEqual(new Set([201, 429, 503]));
  });
});

describe('payment gateway simulator: admin endpoints', () => {
  it('sets knobs, reports stats and references, and resets over HTTP', async () => {
    const gw = await startGatewaySimulator({ seed: 2 });
    const call = (path: string, payload?: unknown, headers: Record<string, string> = {}) =>
      fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(payload ?? {}) });
    try {
      const ch = await (await call('/v1/charges', charge('ord-9', 'tok_visa', 500), { 'idempotency-key': 'a' })).json();
      await call('/v1/refunds', { charge: ch.id, amount: 200 }, { 'idempotency-key': 'b' });
      const ref = await (await fetch(`${gw.url}/_sim/references/ord-9`)).json();
      expect(ref).toMatchObject({ reference: 'ord-9', netCharged: 300, charges: [{ id: ch.id }], refunds: [{ amount: 200 }], payouts: [] });

      expect(await (await call('/_sim/knobs', { rate429: 0.5, latencyMs: { min: 0, max: 1 } })).json()).toMatchObject({ rate429: 0.5 });
      expect((await call('/_sim/knobs', { rate429: 2 })).status).toBe(400);
      const stats = await (await fetch(`${gw.url}/_sim/stats`)).json();
      expect(stats).toMatchObject({ applied: { charges: 1, refunds: 1, payouts: 0 }, amounts: { charged: 500, refunded: 200 }, seed: 2 });

      await call('/_sim/reset?scope=stats');
      expect(gw.sim.stats().applied.charges).toBe(0);
      expect(gw.sim.netCharged('ord-9')).toBe(300);
      await call('/_sim/reset');
      expect(gw.sim.netCharged('ord-9')).toBe(0);
      expect(gw.sim.knobs().rate429).toBe(0);
    } finally {
      await gw.close();
    }
  });
});
