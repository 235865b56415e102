import { Hono } from 'hono';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FUNDING_WORK_STREAM } from '../../contracts/funding.ts';
import { createDlqAdmin } from '../kit/index.ts';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { dropConnection, serveApp, type ServedApp } from '../simulators/serve.ts';
import { applicationBody, waitForStatus } from './test-fixtures.ts';

let c: TestCluster;
let gw: RunningGatewaySimulator;
let proxy: ServedApp;
// Between the service and the simulator: records every call, and can fail look-ups alone.
const calls: string[] = [];
// Every call with the status it was answered with, written once the simulator has answered.
const answered: string[] = [];
let failLookups = false;
// A harsher gateway: ignores Idempotency-Key, and its look-ups lag its writes.
let forgetKeys = false;
let lookupLagMs = 0;

beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 3 });
  const app = new Hono().all('*', async (ctx) => {
    const url = new URL(ctx.req.url);
    calls.push(`${ctx.req.method} ${url.pathname}${url.search}`);
    if (failLookups && ctx.req.method === 'GET') return ctx.json({ error: { code: 'unavailable', message: 'look-ups down' } }, 503);
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'idempotency-key']) { const v = ctx.req.header(h); if (v) headers[h] = v; }
    if (forgetKeys && headers['idempotency-key']) headers['idempotency-key'] = `forgotten-${Math.random()}`;
    let res: Response;
    try {
      res = await fetch(gw.url + url.pathname + url.search, { method: ctx.req.method, headers, body: ctx.req.method === 'POST' ? await ctx.req.text() : undefined });
    } catch {
      return dropConnection(ctx.env);
    }
    const out = new Headers({ 'content-type': res.headers.get('content-type') ?? 'application/json' });
    for (const h of ['retry-after', 'idempotent-replayed']) { const v = res.headers.get(h); if (v) out.set(h, v); }
    answered.push(`${ctx.req.method} ${url.pathname} ${res.status}`);
    let text = await res.text();
    if (lookupLagMs && ctx.req.method === 'GET' && url.pathname === '/v1/payouts' && res.status === 200) {
      const body = JSON.parse(text) as { data: { created: number }[] };
      text = JSON.stringify({ data: body.data.filter((p) => Date.now() - p.created >= lookupLagMs) });
    }
    return new Response(text, { status: res.status, headers: out });
  });
  proxy = await serveApp(app, { port: 0 });
  c = await startTestCluster({
    TARGET: 'funding,funding-scoring,admin', PAYMENT_GATEWAY_URL: proxy.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0',
    FUNDING_RECONCILE_INTERVAL_MS: '0', FUNDING_BREAKER_RESET_MS: '500', FUNDING_GATEWAY_TIMEOUT_MS: '2000',
  });
});
afterAll(async () => { await c?.close(); await proxy?.close(); await gw?.close(); });
beforeEach(() => { failLookups = false; forgetKeys = false; lookupLagMs = 0; calls.length = 0; answered.length = 0; gw.sim.setKnobs({ fail500AfterApplyRate: 0, dropAfterApplyRate: 0, fail503Rate: 0, rate429: 0, outage: false, closedIbans: [] }); });

const apply = async (over: Record<string, unknown> = {}) => {
  const res = await c.post('/api/funding/applications', applicationBody(over));
  expect(res.status).toBe(202);
  return res.body.id as string;
};
/** IBAN with correct mod-97 check digits for any BBAN, so our validation passes and the gateway decides. */
const ibanWithChecksum = (country: string, bban: string) => {
  const digits = (bban + country + '00').replace(/[A-Z]/g, (ch) => String(ch.charCodeAt(0) - 55));
  let rest = 0;
  for (const d of digits) rest = (rest * 10 + Number(d)) % 97;
  return `${country}${String(98 - rest).padStart(2, '0')}${bban}`;
};

describe('disbursement faults', () => {
  it('gateway answers 500 after paying: looked up by reference, paid exactly once, disbursed', async () => {
    gw.sim.setKnobs({ fail500AfterApplyRate: 1 });
    gw.sim.reset('stats');
    const id = await apply();
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(done.disbursement).toMatchObject({ status: 'paid', payoutId: gw.sim.payoutsFor(id)[0]!.id });
    // The ambiguous answer was resolved by a look-up, not by sending the payout again.
    const s = gw.sim.stats();
    expect(s.requests.payout).toBe(1);
    expect(s.requests.listPayouts).toBeGreaterThanOrEqual(1);
    expect(done.history.at(-1).reason).toMatch(/found by reference/);
  });

  it('connection dropped after paying: paid exactly once, disbursed', async () => {
    gw.sim.setKnobs({ dropAfterApplyRate: 1 });
    gw.sim.reset('stats');
    const id = await apply();
    await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(gw.sim.stats().requests.payout).toBe(1);
  });

  it('after an ambiguous failure whose look-up fails too, looks up again before sending anything', async () => {
    gw.sim.setKnobs({ fail500AfterApplyRate: 1 });
    failLookups = true;
    const id = await apply();
    // The POST was applied and answered 500; look-ups fail; deliveries go by.
    await eventually(() => calls.filter((x) => x.startsWith('GET /v1/payouts')).length >= 2, { what: 'failed look-ups' });
    gw.sim.setKnobs({ fail500AfterApplyRate: 0 });
    failLookups = false;
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(done.history.at(-1).reason).toMatch(/found by reference/);
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    // Exactly one POST ever left: every later attempt started with a look-up.
    expect(calls.filter((x) => x.startsWith('POST /v1/payouts'))).toHaveLength(1);
    expect(calls.at(-1)).toBe(`GET /v1/payouts?reference=${id}`);
  });

  it('with a gateway that forgets keys and whose look-ups lag, waits for the look-up instead of paying twice', async () => {
    forgetKeys = true;
    lookupLagMs = 2500;
    gw.sim.setKnobs({ fail500AfterApplyRate: 1 });
    const id = await apply();
    // Wait for the simulator's answer, not the request: turning the fault off while the
    // POST is still in flight would let it succeed plainly.
    await eventually(() => answered.includes('POST /v1/payouts 500'), { what: 'the ambiguous payout attempt' });
    gw.sim.setKnobs({ fail500AfterApplyRate: 0 });
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(done.history.at(-1).reason).toMatch(/found by reference/);
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(calls.filter((x) => x.startsWith('POST /v1/payouts'))).toHaveLength(1);
  });

  it('an invalid destination ends disbursement_failed, with no payout and nothing in the DLQ', async () => {
    // A valid IBAN (our check passes) whose bank refuses it, as for a closed account: the gateway decides.
    const iban = ibanWithChecksum('DE', '370400440532013009');
    gw.sim.setKnobs({ closedIbans: [iban] });
    const id = await apply({ bankAccount: { iban, holderName: 'Acme Ltd' } });
    const done = await waitForStatus(c.get, id, 'disbursement_failed');
    expect(done.disbursement).toMatchObject({ status: 'failed', failureReason: expect.stringMatching(/invalid_destination/) });
    expect(gw.sim.payoutsFor(id)).toHaveLength(0);
    const dlq = await createDlqAdmin(c.deps.nats).list({ stream: FUNDING_WORK_STREAM });
    expect(dlq.filter((e) => (e.data as { applicationId?: string }).applicationId === id)).toEqual([]);
  });

  it('a gateway outage opens the breaker: workers hold their messages (no deliveries spent, no DLQ) and pay once when it is back', async () => {
    gw.sim.setKnobs({ outage: true });
    const ids = [await apply(), await apply(), await apply()];
    for (const id of ids) await waitForStatus(c.get, id, 'disbursing');
    await eventually(async () => (await c.get('/metrics')).body.includes('orderflow_funding_gateway_breaker_open 1'), { what: 'breaker open' });
    // Failures that ended a delivery (nak'ed for a retry); held messages end none.
    const spent = async () => {
      const m = (await c.get('/metrics')).body as string;
      return [...m.matchAll(/orderflow_handler_outcomes_total\{consumer="funding-disbursement",outcome="(retry|deferred|dlq)"\} (\d+)/g)].reduce((n, x) => n + Number(x[2]), 0);
    };
    await new Promise((r) => setTimeout(r, 500));
    const before = await spent();
    // Many half-open trials fail meanwhile (reset is 500 ms); none may cost a delivery.
    await new Promise((r) => setTimeout(r, 4000));
    expect(await spent()).toBe(before);
    for (const id of ids) expect((await c.get(`/api/funding/applications/${id}`)).body.status).toBe('disbursing');

    gw.sim.setKnobs({ outage: false });
    for (const id of ids) await waitForStatus(c.get, id, 'disbursed');
    for (const id of ids) expect(gw.sim.payoutsFor(id)).toHaveLength(1);
    expect(await createDlqAdmin(c.deps.nats).list({ stream: FUNDING_WORK_STREAM })).toEqual([]);
  });

  it('a 429 is retried after Retry-After and pays once', async () => {
    gw.sim.setKnobs({ rate429: 1 });
    const id = await apply();
    await eventually(() => gw.sim.stats().rateLimited >= 1, { what: 'a 429' });
    gw.sim.setKnobs({ rate429: 0 });
    await waitForStatus(c.get, id, 'disbursed');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);
  });
});
