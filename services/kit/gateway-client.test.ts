import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import {
  createGatewayClient, GatewayAmbiguousError, GatewayRateLimitedError, GatewayRejectedError,
  GatewayTransientError, GatewayUnavailableError, type BreakerState, type GatewayClient,
} from './gateway-client.ts';
import { createLogger } from './log.ts';
import { eventually } from '../testing/index.ts';

const log = createLogger({ level: 'silent' });
let gw: RunningGatewaySimulator;
const clients: GatewayClient[] = [];
const client = (o: Partial<Parameters<typeof createGatewayClient>[0]> = {}) => {
  const c = createGatewayClient({ baseUrl: gw.url, log, ...o });
  clients.push(c);
  return c;
};

beforeAll(async () => { gw = await startGatewaySimulator({ port: 0, seed: 7 }); });
afterAll(async () => { for (const c of clients) c.close(); await gw?.close(); });
beforeEach(() => { gw.sim.reset('all'); });

const ref = () => `ref-${Math.random().toString(36).slice(2, 10)}`;
const dest = { iban: 'DE89370400440532013000', holderName: 'Acme Ltd' };

describe('typed outcomes', () => {
  it('charges, replays the same key without a second charge, and refunds', async () => {
    const gc = client();
    const r = ref();
    const first = await gc.charge({ amount: 1999, currency: 'EUR', source: 'tok_visa', reference: r }, `k-${r}`);
    expect(first).toMatchObject({ outcome: 'ok', replayed: false, charge: { status: 'succeeded', amount: 1999, reference: r } });
    const again = await gc.charge({ amount: 1999, currency: 'EUR', source: 'tok_visa', reference: r }, `k-${r}`);
    expect(again).toMatchObject({ outcome: 'ok', replayed: true });
    expect(gw.sim.chargesFor(r)).toHaveLength(1);
    const id = first.outcome === 'ok' ? first.charge.id : '';
    expect(await gc.refund({ charge: id, amount: 1999 }, `rf-${r}`)).toMatchObject({ outcome: 'ok', refund: { status: 'succeeded' } });
    expect(gw.sim.netCharged(r)).toBe(0);
    expect((await gc.findCharges(r)).map((c) => c.id)).toEqual([id]);
  });

  it('returns a decline and an invalid destination as results, not errors', async () => {
    const gc = client();
    expect(await gc.charge({ amount: 500, currency: 'EUR', source: 'tok_declined', reference: ref() }, `k-${ref()}`))
      .toMatchObject({ outcome: 'declined', code: 'card_declined' });
    expect(await gc.payout({ amount: 500, currency: 'EUR', destination: { iban: 'DE00370400440532013000', holderName: 'X' }, reference: ref() }, `k-${ref()}`))
      .toMatchObject({ outcome: 'invalid_destination' });
  });

  it('pays out and finds the payout by reference', async () => {
    const gc = client();
    const r = ref();
    const res = await gc.payout({ amount: 5_000_000, currency: 'EUR', destination: dest, reference: r }, r);
    expect(res).toMatchObject({ outcome: 'ok', payout: { status: 'paid', amount: 5_000_000, reference: r } });
    expect(await gc.findPayouts(r)).toHaveLength(1);
    expect(await gc.findPayouts(ref())).toEqual([]);
  });

  it('throws GatewayRejectedError for a key reused with another body', async () => {
    const gc = client();
    const r = ref();
    await gc.payout({ amount: 100, currency: 'EUR', destination: dest, reference: r }, r);
    const err = await gc.payout({ amount: 200, currency: 'EUR', destination: dest, reference: r }, r).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayRejectedError);
    expect(err).toMatchObject({ status: 422, code: 'idempotency_key_reused' });
  });

  it('refuses to POST without an Idempotency-Key', async () => {
    await expect(client().payout({ amount: 1, currency: 'EUR', destination: dest, reference: 'x' }, '')).rejects.toThrow(/Idempotency-Key/);
  });
});

describe('ambiguous failures', () => {
  it('reports 500-after-apply as ambiguous; the look-up shows the payout and a retry with the same key does not pay twice', async () => {
    const gc = client();
    const r = ref();
    gw.sim.setKnobs({ fail500AfterApplyRate: 1 });
    const err = await gc.payout({ amount: 700, currency: 'EUR', destination: dest, reference: r }, r).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayAmbiguousError);
    expect(err).toMatchObject({ kind: 'server-error', status: 500 });
    gw.sim.setKnobs({ fail500AfterApplyRate: 0 });
    expect(await gc.findPayouts(r)).toHaveLength(1);
    expect(await gc.payout({ amount: 700, currency: 'EUR', destination: dest, reference: r }, r)).toMatchObject({ outcome: 'ok', replayed: true });
    expect(gw.sim.payoutsFor(r)).toHaveLength(1);
  });

  it('reports a dropped connection as ambiguous (network)', async () => {
    const gc = client();
    const r = ref();
    gw.sim.setKnobs({ dropAfterApplyRate: 1 });
    const err = await gc.charge({ amount: 900, currency: 'EUR', source: 'tok_visa', reference: r }, r).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayAmbiguousError);
    expect(err.kind).toBe('network');
    gw.sim.setKnobs({ dropAfterApplyRate: 0 });
    expect(await gc.findCharges(r)).toHaveLength(1);
  });

  it('reports a timeout as ambiguous', async () => {
    const gc = client({ timeoutMs: 100 });
    gw.sim.setKnobs({ latencyMs: 1000 });
    const err = await gc.payout({ amount: 1, currency: 'EUR', destination: dest, reference: ref() }, ref()).catch((e) => e);
    expect(err).toBeInstanceOf(GatewayAmbiguousError);
    expect(err.kind).toBe('timeout');
  });

  it('throws a plain transient error when a look-up fails', async () => {
    const gc = client();
    gw.sim.setKnobs({ fail503Rate: 1 });
    const err = await gc.findPayouts('x').catch((e) => e);
    expect(err).toBeInstanceOf(GatewayTransientError);
    expect(err).not.toBeInstanceOf(GatewayAmbiguousError);
  });
});

describe('rate limits and the breaker', () => {
  it('turns 429 into GatewayRateLimitedError with Retry-After, without opening the breaker', async () => {
    const gc = client({ breaker: { volumeThreshold: 2, errorThresholdPercentage: 50 } });
    gw.sim.setKnobs({ rate429: 1 });
    for (let i = 0; i < 6; i++) {
      const err = await gc.charge({ amount: 1, currency: 'EUR', source: 'tok_visa', reference: 'r' }, `k${i}`).catch((e) => e);
      expect(err).toBeInstanceOf(GatewayRateLimitedError);
      expect(err.retryAfterMs).toBe(1000);
    }
    expect(gc.isOpen()).toBe(false);
  });

  it('does not count declines and invalid destinations against the breaker', async () => {
    const gc = client({ breaker: { volumeThreshold: 2, errorThresholdPercentage: 10 } });
    for (let i = 0; i < 5; i++) await gc.charge({ amount: 1, currency: 'EUR', source: 'tok_declined', reference: 'r' }, `d${i}`);
    expect(gc.isOpen()).toBe(false);
  });

  it('opens on 5xx, fails fast without calling the gateway, then half-opens and closes on success', async () => {
    const gc = client({ breaker: { volumeThreshold: 3, errorThresholdPercentage: 50, resetTimeoutMs: 300 } });
    const states: BreakerState[] = [];
    gc.onStateChange((s) => states.push(s));
    gw.sim.setKnobs({ outage: true });
    for (let i = 0; i < 3; i++) await expect(gc.findPayouts('x')).rejects.toBeInstanceOf(GatewayTransientError);
    expect(gc.isOpen()).toBe(true);
    const before = gw.sim.stats().requests.total;
    const err = await gc.payout({ amount: 1, currency: 'EUR', destination: dest, reference: 'x' }, 'x').catch((e) => e);
    expect(err).toBeInstanceOf(GatewayUnavailableError);
    expect(gw.sim.stats().requests.total).toBe(before);
    gw.sim.setKnobs({ outage: false });
    await eventually(() => gc.state() === 'halfOpen', { what: 'half-open' });
    expect(await gc.findPayouts('x')).toEqual([]);
    expect(gc.state()).toBe('closed');
    expect(states).toEqual(['open', 'halfOpen', 'closed']);
  });
});
