import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNats, type TestNats } from '../testing/index.ts';
import { startT24Simulator } from '../simulators/t24.ts';
import type { RunningT24Simulator } from '../simulators/t24.ts';
import { createRateShare, parseRetryAfter } from '../kit/index.ts';
import type { RateShare } from '../kit/index.ts';
import { createPacer, type Pacer } from './pacer.ts';
import {
  createT24Client,
  T24AmbiguousError,
  T24RateLimitedError,
  T24UnavailableError,
} from './t24-client.ts';
import type { T24Client, T24ClientOptions } from './t24-client.ts';

const log = pino({ level: 'silent' });
const heartbeatMs = 200;

let nats: TestNats;
let t24: RunningT24Simulator;
const conns: NatsConnection[] = [];
const shares: RateShare[] = [];
const pacers: Pacer[] = [];
const clients: T24Client[] = [];
// A roomy share for the tests that are not about pacing.
let roomy: Pacer;

// As in production (lending/main.ts): rate-share decides the share, a pacer spends it.
async function rateShare(bucket: string, memberId: string, totalRps: number, spacingMargin = 0.05): Promise<Pacer> {
  const nc = await connect({ servers: nats.url });
  conns.push(nc);
  const kv = await new Kvm(nc).create(bucket, { ttl: 3 * heartbeatMs });
  const rs = createRateShare({ kv, memberId, totalRps, heartbeatMs, log });
  shares.push(rs);
  await rs.start();
  const pacer = createPacer({ share: () => rs.currentShare(), margin: spacingMargin });
  pacers.push(pacer);
  return pacer;
}

function client(opts: Partial<T24ClientOptions> = {}): T24Client {
  const c = createT24Client({ baseUrl: t24.url, rateShare: roomy, log, timeoutMs: 2000, retry: { baseDelayMs: 20, maxDelayMs: 100 }, ...opts });
  clients.push(c);
  return c;
}

const body = (orderId = 'O-1', investorId = 'inv-1') => ({ investorId, orderId, amount: 250 });

beforeAll(async () => {
  nats = await startTestNats();
  t24 = await startT24Simulator({ port: 0, seed: 7 });
  roomy = await rateShare('t24-members-roomy', 'solo', 1000);
  await eventually(() => roomy.currentShare() === 1000, { what: 'roomy share' });
});

afterEach(() => {
  t24.sim.reset();
});

afterAll(async () => {
  for (const c of clients) c.shutdown();
  for (const p of pacers) p.stop();
  for (const rs of shares) await rs.stop();
  for (const nc of conns) await nc.close().catch(() => {});
  await t24?.close();
  await nats?.stop();
});

describe('T24 client', () => {
  it('a pacer over a lone member\'s share spaces calls 1000/share ms apart', async () => {
    // Moved from the rate-share test when rate-share went to the kit: the pacer is lending's.
    const pacer = await rateShare('t24-members-lone', 'a', 5);
    await eventually(() => pacer.currentShare() === 5, { what: 'share 5' });
    const grants: number[] = [];
    for (let i = 0; i < 12; i++) {
      await pacer.acquire();
      grants.push(Date.now());
    }
    for (let i = 1; i < grants.length; i++) expect(grants[i]! - grants[i - 1]!).toBeGreaterThanOrEqual(200);
    for (const t of grants) expect(grants.filter((g) => g > t - 1000 && g <= t).length).toBeLessThanOrEqual(5);
  });

  it('two replicas pacing on one bucket stay under the cap together, with no 429', async () => {
    const cap = 10;
    t24.sim.setKnobs({ maxRps: cap, latencyMs: { min: 5, max: 40 } });
    // The simulator shares this process's event loop with both replicas, and a
    // loaded test machine stalls it for hundreds of ms: calls granted apart then
    // reach the simulator together. The margin is the jitter the pacing
    // tolerates (1000 × margin ms; production default 50 ms over a network).
    const margin = 0.5;
    // One after the other: with both creating the bucket at once, a CI run saw
    // replica-b's first put answered "no responders" (JetStreamNotEnabled). In
    // production the bucket is provisioned once, before any replica starts.
    const ra = await rateShare('t24-members', 'replica-a', cap, margin);
    const rb = await rateShare('t24-members', 'replica-b', cap, margin);
    await eventually(() => ra.currentShare() + rb.currentShare() === cap, { what: 'shares settle' });
    const ca = client({ rateShare: ra });
    const cb = client({ rateShare: rb });

    // Each replica hammers with far more concurrency than its share.
    const run = async (c: T24Client, prefix: string) => {
      const ids = Array.from({ length: 20 }, (_, i) => `${prefix}-${i}`);
      return Promise.all(ids.map((id) => c.reserve(id, body('O-pace'))));
    };
    const results = (await Promise.all([run(ca, 'PA'), run(cb, 'PB')])).flat();

    expect(results.every((r) => r.kind === 'ok')).toBe(true);
    const s = t24.sim.stats();
    expect(s.rateLimited).toBe(0);
    expect(s.peakRps).toBeLessThanOrEqual(cap);
    expect(s.applied.reserve).toBe(40);
    expect(ca.stats().received429 + cb.stats().received429).toBe(0);
  });

  it('honours Retry-After on 429 and then succeeds', async () => {
    // Our share (1000) is far above what this T24 takes: a misconfiguration 429s.
    t24.sim.setKnobs({ maxRps: 2 });
    const seen: { at: number; status: number; url: string }[] = [];
    const recordingFetch: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      seen.push({ at: Date.now(), status: res.status, url: String(input) });
      return res;
    };
    const c = client({ fetch: recordingFetch, retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 100 } });
    const results = await Promise.all(['R-1', 'R-2', 'R-3'].map((id) => c.reserve(id, body())));
    expect(results.map((r) => r.kind)).toEqual(['ok', 'ok', 'ok']);
    expect(c.stats().received429).toBeGreaterThan(0);
    for (const [i, r] of seen.entries()) {
      if (r.status !== 429) continue;
      const next = seen.slice(i + 1).find((x) => x.url === r.url);
      expect(next, `a retry after the 429 on ${r.url}`).toBeDefined();
      // Retry-After: 1 → not before a second has passed (minus clock rounding).
      expect(next!.at - r.at).toBeGreaterThanOrEqual(990);
    }

    // Without in-call retries the worker gets the delay to nak with.
    const once = client({ retry: { maxAttempts: 1 } });
    t24.sim.reset('stats');
    t24.sim.setKnobs({ maxRps: 1 });
    await once.getLoan('R-9');
    const err = await once.reserve('R-10', body()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(T24RateLimitedError);
    expect((err as T24RateLimitedError).retryAfterMs).toBe(1000);
    expect((err as T24RateLimitedError).readBackFirst).toBe(false);
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(Date.now() + 3000).toUTCString())).toBeGreaterThan(1000);
  });

  it('opens the breaker under an outage, fails fast while open, and closes when T24 is back', async () => {
    const c = client({ breaker: { volumeThreshold: 3, resetTimeout: 500 }, retry: { maxAttempts: 1 } });
    const states: string[] = [];
    c.onStateChange((s) => states.push(s));
    t24.sim.setKnobs({ outage: true });

    for (let i = 0; i < 10 && !c.isOpen(); i++) {
      await expect(c.reserve(`B-${i}`, body())).rejects.toBeInstanceOf(T24AmbiguousError);
    }
    expect(c.isOpen()).toBe(true);
    expect(states).toContain('open');

    const sentBefore = t24.sim.stats().requests.total;
    const err = await c.reserve('B-x', body()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(T24UnavailableError);
    expect((err as T24UnavailableError).retryAfterMs).toBeGreaterThan(0);
    expect((err as T24UnavailableError).retryAfterMs).toBeLessThanOrEqual(500);
    await expect(c.getLoan('B-x')).rejects.toBeInstanceOf(T24UnavailableError);
    expect(t24.sim.stats().requests.total).toBe(sentBefore); // nothing reached T24

    t24.sim.setKnobs({ outage: false });
    await eventually(() => !c.isOpen(), { what: 'half-open' });
    const ok = await c.reserve('B-after', body());
    expect(ok.kind).toBe('ok');
    expect(c.breakerState()).toBe('closed');
    expect(states).toEqual(['open', 'halfOpen', 'closed']);
    expect(c.stats().outcomes.unavailable).toBeGreaterThanOrEqual(2);
  });

  it('a few loans that always fail never open the breaker; failures across many loans do, flagged as an outage', async () => {
    const c = client({ breaker: { volumeThreshold: 3, resetTimeout: 60_000, rollingCountTimeout: 500, minFailedLoans: 6 }, retry: { maxAttempts: 1 } });
    const bad = ['S-1', 'S-2', 'S-3', 'S-4', 'S-5'];
    t24.sim.setKnobs({ failing: bad });
    // Nothing but the bad loans, again and again: every recent call fails, yet only five loans.
    for (let round = 0; round < 8; round++) {
      for (const id of bad) {
        const err = await c.reserve(id, body()).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(T24AmbiguousError);
        expect((err as T24AmbiguousError).outage).toBe(false);
      }
    }
    expect(c.stats().breaker.opened).toBe(0);
    expect(c.isOpen()).toBe(false);
    expect((await c.reserve('S-good', body())).kind).toBe('ok');

    // T24 itself down (once the bad loans' failures aged out of the window): the sixth distinct loan that fails opens it.
    await new Promise((r) => setTimeout(r, 600));
    t24.sim.setKnobs({ outage: true });
    const errs: unknown[] = [];
    for (let i = 0; i < 20 && !c.isOpen(); i++) errs.push(await c.reserve(`S-out-${i}`, body()).catch((e: unknown) => e));
    expect(c.isOpen()).toBe(true);
    expect(errs).toHaveLength(6);
    expect(errs.map((e) => (e as T24AmbiguousError).outage)).toEqual([false, false, false, false, false, true]);
    expect(c.stats().breaker.opened).toBe(1);
  });

  it('resend mode: after an apply-then-500 or a drop it sends the same move again, and the 409 for this investor is success', async () => {
    const c = client({ afterAmbiguous: 'resend', retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 50 } });
    t24.sim.setKnobs({ fail500AfterApplyRate: 1 });
    const r = await c.reserve('RS-1', body());
    expect(r).toEqual({ kind: 'ok', transactionCode: null, status: 'RESERVED', via: 'conflict' });
    t24.sim.setKnobs({ fail500AfterApplyRate: 0, dropAfterApplyRate: 1 });
    const i = await c.invest('RS-1', body());
    expect(i).toEqual({ kind: 'ok', transactionCode: null, status: 'INVESTED', via: 'conflict' });
    const s = t24.sim.stats();
    // Two calls per move, no read-back, and each change applied once.
    expect(s.requests).toEqual({ total: 4, get: 0, reserve: 2, invest: 2 });
    expect(t24.sim.loan('RS-1')?.applied).toEqual({ reserve: 1, invest: 1 });
    expect(c.stats()).toMatchObject({ readBacks: 0, resends: 2 });

    // The worker's next attempt after an ambiguous one (ambiguousBefore) resends too:
    // where nothing had landed the move applies, where it had the 409 says so.
    t24.sim.setKnobs({ dropAfterApplyRate: 0 });
    const fresh = await c.applyWithReadback('RS-2', 'reserve', body(), { ambiguousBefore: true });
    expect(fresh).toMatchObject({ kind: 'ok', status: 'RESERVED', via: 'applied' });
    const again = await c.applyWithReadback('RS-2', 'reserve', body(), { ambiguousBefore: true });
    expect(again).toMatchObject({ kind: 'ok', status: 'RESERVED', via: 'conflict' });
    // Another investor's move that landed meanwhile stays a permanent conflict.
    expect(await c.applyWithReadback('RS-2', 'reserve', body('O-2', 'inv-2'), { ambiguousBefore: true }))
      .toEqual({ kind: 'permanent', reason: 'CONFLICT:RESERVED:inv-1' });
    expect(t24.sim.stats().requests.get).toBe(0);
    expect(t24.sim.loan('RS-2')?.applied).toEqual({ reserve: 1, invest: 0 });
  });

  it('does not count business answers (404, 409, 422) as breaker failures', async () => {
    const c = client({ breaker: { volumeThreshold: 3 }, retry: { maxAttempts: 1 } });
    t24.sim.setKnobs({ missing: Array.from({ length: 10 }, (_, i) => `N-${i}`) });
    for (let i = 0; i < 10; i++) expect(await c.reserve(`N-${i}`, body())).toEqual({ kind: 'permanent', reason: 'LOAN_NOT_FOUND' });
    expect(c.isOpen()).toBe(false);
    expect(c.breakerState()).toBe('closed');
  });

  it('after an apply-then-500 the read-back returns ok without a second state change', async () => {
    const c = client({ retry: { maxAttempts: 1 } });
    t24.sim.setKnobs({ fail500AfterApplyRate: 1 });
    const err = await c.reserve('A-1', body()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(T24AmbiguousError);
    expect((err as T24AmbiguousError).readBackFirst).toBe(true);
    expect(t24.sim.loan('A-1')?.applied.reserve).toBe(1);

    // The worker persisted "ambiguous" and comes back later (here T24 still 500s every POST).
    const posts = t24.sim.stats().requests.reserve;
    const r = await c.applyWithReadback('A-1', 'reserve', body(), { ambiguousBefore: true });
    expect(r).toEqual({ kind: 'ok', transactionCode: null, status: 'RESERVED', via: 'readback' });
    expect(t24.sim.stats().requests.reserve).toBe(posts); // no second POST
    expect(t24.sim.loan('A-1')?.applied).toEqual({ reserve: 1, invest: 0 });
  });

  it('reads back within its own retry loop after a dropped connection', async () => {
    const c = client({ retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 50 } });
    t24.sim.seedLoans(['D-1'], 'RESERVED', 'inv-1');
    t24.sim.setKnobs({ dropAfterApplyRate: 1 });
    const r = await c.invest('D-1', body());
    expect(r).toMatchObject({ kind: 'ok', status: 'INVESTED', via: 'readback' });
    expect(t24.sim.loan('D-1')?.applied).toEqual({ reserve: 0, invest: 1 });
    expect(c.stats().readBacks).toBe(1);
  });

  it('a timeout is ambiguous; the change that lands late is found by the read-back', async () => {
    const c = client({ timeoutMs: 200, retry: { maxAttempts: 1 } });
    t24.sim.setKnobs({ timeoutRate: 1, timeoutMs: 500 });
    const err = await c.reserve('T-1', body()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(T24AmbiguousError);
    expect((err as T24AmbiguousError).readBackFirst).toBe(true);
    await eventually(() => t24.sim.loan('T-1')?.status === 'RESERVED', { what: 'the late change lands' });
    t24.sim.setKnobs({ timeoutRate: 0 });
    const r = await c.applyWithReadback('T-1', 'reserve', body(), { ambiguousBefore: true });
    expect(r).toMatchObject({ kind: 'ok', via: 'readback' });
    expect(t24.sim.loan('T-1')?.applied.reserve).toBe(1);
    expect(c.stats().responses.timeout).toBe(1);
  });

  it('a read-back that finds the loan untouched sends the POST', async () => {
    const c = client();
    const r = await c.applyWithReadback('U-1', 'reserve', body(), { ambiguousBefore: true });
    expect(r).toMatchObject({ kind: 'ok', status: 'RESERVED', via: 'applied' });
    expect(r.kind === 'ok' && r.transactionCode).toMatch(/^FT/);
    const s = t24.sim.stats();
    expect(s.requests.get).toBe(1);
    expect(s.requests.reserve).toBe(1);
  });

  it('a 409 for another investor is permanent; for the same investor in the target state it is ok', async () => {
    const c = client();
    t24.sim.seedLoans(['C-foreign'], 'RESERVED', 'someone-else');
    t24.sim.seedLoans(['C-mine'], 'RESERVED', 'inv-1');
    t24.sim.seedLoans(['C-done'], 'INVESTED', 'inv-1');
    expect(await c.reserve('C-foreign', body())).toEqual({ kind: 'permanent', reason: 'CONFLICT:RESERVED:someone-else' });
    expect(await c.invest('C-foreign', body())).toEqual({ kind: 'permanent', reason: 'CONFLICT:RESERVED:someone-else' });
    expect(await c.reserve('C-mine', body())).toEqual({ kind: 'ok', transactionCode: null, status: 'RESERVED', via: 'conflict' });
    expect(await c.invest('C-done', body())).toEqual({ kind: 'ok', transactionCode: null, status: 'INVESTED', via: 'conflict' });
    // Investing a loan nobody reserved is a conflict too.
    expect(await c.invest('C-fresh', body())).toEqual({ kind: 'permanent', reason: 'CONFLICT:AVAILABLE:-' });
    expect(t24.sim.stats().applied).toEqual({ reserve: 0, invest: 0 });
  });

  it('404 and 422 are permanent; getLoan reads a loan or null', async () => {
    const c = client();
    t24.sim.setKnobs({ missing: ['M-1'] });
    expect(await c.reserve('M-1', body())).toEqual({ kind: 'permanent', reason: 'LOAN_NOT_FOUND' });
    expect(await c.reserve('V-1', { investorId: 'inv-1', orderId: 'O-1', amount: -5 })).toEqual({ kind: 'permanent', reason: 'INVALID_REQUEST' });
    expect(await c.getLoan('M-1')).toBeNull();
    expect(await c.getLoan('V-1')).toEqual({ loanId: 'V-1', status: 'AVAILABLE', investorId: null });
    expect(c.stats().outcomes.permanent).toBe(2);
  });

  it('recommends concurrency from the share and the observed latency', async () => {
    const c = client();
    t24.sim.setKnobs({ latencyMs: 50 });
    for (let i = 0; i < 10; i++) await c.getLoan(`L-${i}`);
    const s = c.stats();
    expect(s.latency.samples).toBe(10);
    expect(s.latency.p90Ms).toBeGreaterThanOrEqual(45);
    const expected = Math.min(256, Math.max(1, Math.ceil(roomy.currentShare() * (s.latency.p90Ms / 1000) * 1.5)));
    expect(c.recommendedConcurrency()).toBe(expected);
  });
});
