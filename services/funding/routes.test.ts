import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FundingBuckets } from '../../contracts/funding.ts';
import { randomUUID } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { createDlqAdmin, enqueue } from '../kit/index.ts';
import { eventually, startTestCluster, startTestNats, type TestCluster } from '../testing/index.ts';
import { createStatusCache } from './status-cache.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { applicationBody, BAD_CHECKSUM_IBAN, pendingReviewBody, rejectedBody, VALID_IBAN, waitForStatus } from './test-fixtures.ts';

let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 1 });
  c = await startTestCluster({ TARGET: 'funding,funding-scoring,admin', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '0' });
});
afterAll(async () => { await c?.close(); await gw?.close(); });

const post = (body: unknown, headers: Record<string, string> = {}) => c.post('/api/funding/applications', body, headers);

/** `country` + the check digits that make `bban` pass mod-97 (ISO 7064), whatever its length. */
function withCheckDigits(country: string, bban: string): string {
  let rest = 0;
  for (const ch of `${bban}${country}00`) {
    const n = Number.parseInt(ch, 36);
    rest = (rest * (n >= 10 ? 100 : 10) + n) % 97;
  }
  return `${country}${String(98 - rest).padStart(2, '0')}${bban}`;
}

describe('POST /api/funding/applications', () => {
  it('answers 202 processing at once and the application ends disbursed, paid once', async () => {
    const res = await post(applicationBody(), { 'x-request-id': 'fund-req-1' });
    expect(res.status).toBe(202);
    expect(Object.keys(res.body).sort()).toEqual(['id', 'status']);
    expect(res.body.status).toBe('processing');
    const done = await waitForStatus(c.get, res.body.id, 'disbursed');
    expect(done).toMatchObject({
      id: res.body.id, decision: 'approved', riskDecision: 'approved', modelVersion: expect.any(String), riskScore: expect.any(Number),
      disbursement: { status: 'paid', payoutId: expect.stringMatching(/^po_/), amount: done.amount, currency: 'EUR' },
    });
    expect(done.history.map((h: { status: string }) => h.status)).toEqual(['processing', 'risk_scoring', 'approved', 'disbursing', 'disbursed']);
    expect(gw.sim.payoutsFor(res.body.id)).toHaveLength(1);
    expect(gw.sim.payoutsFor(res.body.id)[0]!.amount).toBe(Math.round(done.amount * 100));
  });

  it('rejects by the contract bounds without paying', async () => {
    const res = await post(rejectedBody());
    const done = await waitForStatus(c.get, res.body.id, 'rejected');
    expect(done.decision).toBe('rejected');
    expect(done.disbursement).toBeNull();
    expect(gw.sim.payoutsFor(res.body.id)).toHaveLength(0);
  });

  const bad: [string, unknown, string][] = [
    ['a negative amount', applicationBody({ amount: -5 }), 'amount'],
    ['a zero amount', applicationBody({ amount: 0 }), 'amount'],
    ['an amount as a string', applicationBody({ amount: '50000' }), 'amount'],
    ['an amount with 3 decimals', applicationBody({ amount: 10.123 }), 'amount'],
    ['missing financials', applicationBody({ financials: undefined }), 'financials'],
    ['financials without revenue', applicationBody({ financials: { yearsTrading: 3, existingDebt: 0 } }), 'financials.annualRevenue'],
    ['negative existing debt', applicationBody({ financials: { annualRevenue: 1, yearsTrading: 3, existingDebt: -1 } }), 'financials.existingDebt'],
    ['a non-integer term', applicationBody({ termMonths: 12.5 }), 'termMonths'],
    ['a zero term', applicationBody({ termMonths: 0 }), 'termMonths'],
    ['a term as a string', applicationBody({ termMonths: '24' }), 'termMonths'],
    ['an IBAN failing mod-97', applicationBody({ bankAccount: { iban: BAD_CHECKSUM_IBAN, holderName: 'Acme' } }), 'bankAccount.iban'],
    ['an IBAN of the wrong shape', applicationBody({ bankAccount: { iban: 'not-an-iban', holderName: 'Acme' } }), 'bankAccount.iban'],
    // The right check digits for their digits, but not the registry's length for DE (22) or GB (22).
    ['a DE IBAN of 21 characters', applicationBody({ bankAccount: { iban: withCheckDigits('DE', '37040044053201300'), holderName: 'Acme' } }), 'bankAccount.iban'],
    ['a DE IBAN of 23 characters', applicationBody({ bankAccount: { iban: withCheckDigits('DE', '3704004405320130001'), holderName: 'Acme' } }), 'bankAccount.iban'],
    ['a GB IBAN of 23 characters', applicationBody({ bankAccount: { iban: withCheckDigits('GB', 'WEST123456987654321'), holderName: 'Acme' } }), 'bankAccount.iban'],
    ['an IBAN of a country without IBANs', applicationBody({ bankAccount: { iban: withCheckDigits('US', '3704004405320130001'), holderName: 'Acme' } }), 'bankAccount.iban'],
    ['an IBAN of no country', applicationBody({ bankAccount: { iban: withCheckDigits('ZZ', '370400440532013000'), holderName: 'Acme' } }), 'bankAccount.iban'],
    ['a missing bank account', applicationBody({ bankAccount: undefined }), 'bankAccount'],
    ['a malformed email', applicationBody({ contactEmail: 'cfo-at-acme' }), 'contactEmail'],
    ['an email with a header injection', applicationBody({ contactEmail: 'a@b.co\r\nBcc: x@y.z' }), 'contactEmail'],
    ['a four-letter currency', applicationBody({ currency: 'EURO' }), 'currency'],
    ['a business id with a newline', applicationBody({ businessId: 'a\nb' }), 'businessId'],
    ['a JSON array', [1, 2], '(body)'],
    // Passed the 2-decimal check and rounded to 0 cents: a 500 from the database's check.
    ['an amount under a cent', applicationBody({ amount: 4e-9 }), 'amount'],
    // Postgres refuses a NUL in text and a lone surrogate in jsonb: 500s before.
    ['a NUL in the business name', applicationBody({ businessName: 'Acme\u0000Ltd' }), 'businessName'],
    ['a lone surrogate in the holder name', applicationBody({ bankAccount: { iban: 'DE89370400440532013000', holderName: 'Acme \ud800' } }), 'bankAccount.holderName'],
    ['a control character in the email', applicationBody({ contactEmail: 'a\u0001b@example.com' }), 'contactEmail'],
  ];
  for (const [what, body, field] of bad) {
    it(`answers ${what} with 400 naming ${field}`, async () => {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    });
  }

  it('names the country and its length when an IBAN is mod-97-valid but of the wrong length', async () => {
    const iban = withCheckDigits('DE', '37040044053201300');
    const res = await post(applicationBody({ bankAccount: { iban, holderName: 'Acme' } }));
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ field: 'bankAccount.iban', message: 'a DE IBAN has 22 characters, not 21' }]);
  });

  it('accepts IBANs of the registry length for their country', async () => {
    // Published examples of each country's format.
    for (const iban of [VALID_IBAN, 'GB82WEST12345698765432', 'FR1420041010050500013M02606', 'NL91ABNA0417164300', 'NO9386011117947', 'MT84MALT011000012345MTLCAST001S']) {
      const res = await post(rejectedBody({ bankAccount: { iban, holderName: 'Acme' } }));
      expect(res.status, `${iban}: ${JSON.stringify(res.body)}`).toBe(202);
    }
  });

  it('answers malformed JSON with 400', async () => {
    const res = await fetch(`${c.url}/api/funding/applications`, { method: 'POST', headers: { 'content-type': 'application/json', ...await c.authHeaders() }, body: '{"amount":' });
    expect(res.status).toBe(400);
  });

  it('accepts an IBAN with spaces and lower case, stored normalized', async () => {
    const res = await post(rejectedBody({ bankAccount: { iban: 'de89 3704 0044 0532 0130 00', holderName: 'Acme' } }));
    expect(res.status).toBe(202);
    const got = await c.get(`/api/funding/applications/${res.body.id}`);
    expect(got.body.bankAccount.iban).toBe('DE89370400440532013000');
  });

  it('accepts an application without a purpose, and a lower-case currency, stored upper case', async () => {
    const { purpose: _p, ...body } = rejectedBody({ currency: 'eur' });
    const res = await post(body);
    expect(res.status).toBe(202);
    const got = await c.get(`/api/funding/applications/${res.body.id}`);
    expect(got.body).toMatchObject({ purpose: null, currency: 'EUR' });
  });

  it('replays the first answer for the same Idempotency-Key and body', async () => {
    const body = rejectedBody();
    const h = { 'idempotency-key': `k-${Math.random()}` };
    const a = await post(body, h);
    const b = await post(body, h);
    expect(b.status).toBe(202);
    expect(b.body.id).toBe(a.body.id);
  });

  it('keeps Idempotency-Keys per principal: another customer with the same key and body gets an application of its own', async () => {
    const [ana, ben] = [await c.user(['customer']), await c.user(['customer'])];
    const body = rejectedBody();
    const h = { 'idempotency-key': `k-${Math.random()}` };
    const a = await ana.post('/api/funding/applications', body, h);
    const b = await ben.post('/api/funding/applications', body, h);
    expect([a.status, b.status, b.headers.get('idempotent-replayed')]).toEqual([202, 202, null]);
    expect(b.body.id).not.toBe(a.body.id);
    // Each reads its own, and not the other's; each retry replays its own.
    expect((await ben.get(`/api/funding/applications/${b.body.id}`)).status).toBe(200);
    expect((await ben.get(`/api/funding/applications/${a.body.id}`)).status).toBe(404);
    expect((await ana.post('/api/funding/applications', body, h)).body.id).toBe(a.body.id);
    expect((await ben.post('/api/funding/applications', body, h)).body.id).toBe(b.body.id);
  });
});

describe('scoring from the request\'s inputs', () => {
  it('the router\'s scoring request carries the inputs as posted; one delivered again after the decision changes nothing and goes to no DLQ', async () => {
    const nc = await connect({ servers: c.nats.url });
    const requests = nc.subscribe('funding.risk.scoring.requested');
    const body = rejectedBody();
    const id = (await post(body)).body.id as string;
    let request: Record<string, any> | undefined;
    for await (const m of requests) {
      const r = m.json<Record<string, any>>();
      if (r.applicationId === id) { request = r; break; }
    }
    await nc.close();
    expect(request!.inputs).toEqual({
      businessId: body.businessId, amountMinor: Math.round(body.amount * 100), currency: body.currency, termMonths: body.termMonths, financials: body.financials,
    });
    const before = (await waitForStatus(c.get, id, 'rejected'));

    // The same request again: scored (from the cache), then its compare-and-set on the status
    // finds the application decided, and that is the end of it (no retry, no DLQ).
    await c.deps.nats.js.publish('funding.risk.scoring.requested', JSON.stringify({ ...request, requestedAt: new Date().toISOString() }));
    const idle = async () => {
      const i = await c.deps.nats.jsm.consumers.info('FUNDING_WORK', 'funding-scoring');
      return i.num_pending === 0 && i.num_ack_pending === 0;
    };
    await eventually(idle, { what: 'scoring consumer idle' });
    const after = (await c.get(`/api/funding/applications/${id}`)).body;
    expect(after.version).toBe(before.version);
    expect(after.history).toEqual(before.history);
    const dlq = await createDlqAdmin(c.deps.nats).list({ stream: 'FUNDING_WORK', consumer: 'funding-scoring' });
    expect(dlq.filter((e) => (e.data as { applicationId?: string }).applicationId === id)).toEqual([]);
  });
});

describe('GET', () => {
  it('404s unknown and malformed ids on every route', async () => {
    for (const path of ['', '/status', '/events']) {
      for (const id of ['00000000-0000-4000-8000-000000000000', 'nope']) {
        const res = await c.get(`/api/funding/applications/${id}${path}`);
        expect(res.status).toBe(404);
        expect(res.body.error.code).toBe('NOT_FOUND');
      }
    }
  });

  it('serves status from the KV cache, and from Postgres on a miss', async () => {
    const res = await post(rejectedBody());
    const id = res.body.id;
    await waitForStatus(c.get, id, 'rejected');
    const kv = await c.deps.kvm.open(FundingBuckets.status);
    const cached = await eventually(async () => {
      const r = await fetch(`${c.url}/api/funding/applications/${id}/status`, { headers: await c.authHeaders() });
      const body = await r.json();
      return r.headers.get('x-status-source') === 'kv' && body.status === 'rejected' ? body : undefined;
    }, { what: 'status from KV' });
    expect(Object.keys(cached).sort()).toEqual(['id', 'status', 'updatedAt']);
    const full = await c.get(`/api/funding/applications/${id}`);
    expect(cached.updatedAt).toBe(full.body.updatedAt);
    // The cache holds what the status consumer wrote, with the row's version.
    expect((await kv.get(id))!.json()).toMatchObject({ id, status: 'rejected', version: full.body.version });

    await kv.purge(id);
    const r = await fetch(`${c.url}/api/funding/applications/${id}/status`, { headers: await c.authHeaders() });
    expect(r.headers.get('x-status-source')).toBe('db');
    expect(await r.json()).toEqual({ id, status: 'rejected', updatedAt: full.body.updatedAt });
  });

  it('keeps the newest status when status events arrive out of order', async () => {
    const res = await post(rejectedBody());
    const id = res.body.id;
    await waitForStatus(c.get, id, 'rejected');
    const kv = await c.deps.kvm.open(FundingBuckets.status);
    const cache = createStatusCache(kv);
    await eventually(async () => (await cache.get(id))?.status === 'rejected', { what: 'cached' });
    expect(await cache.apply({ applicationId: id, status: 'risk_scoring', previousStatus: 'processing', version: 2, timestamp: new Date().toISOString(), metadata: {} })).toBe('stale');
    expect((await cache.get(id))!.status).toBe('rejected');

    // The same through the outbox relay's hook: a stale status event relayed late changes nothing.
    const ids = await c.deps.orm.em.fork().transactional(async (em) => await enqueue(em, [
      { subject: 'funding.status.updated', data: { applicationId: id, status: 'processing', previousStatus: null, version: 1, timestamp: new Date(0).toISOString(), metadata: {} } },
    ]));
    await eventually(async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id in (?)', [ids])).length === 0, { what: 'stale event relayed' });
    expect((await cache.get(id))!.status).toBe('rejected');
  });

  it('writes once per change from what it remembers, and reads again when another writer or a purge got in between', async () => {
    const kv = await c.deps.kvm.open(FundingBuckets.status);
    const a = createStatusCache(kv);
    const b = createStatusCache(kv);
    const id = randomUUID();
    const ev = (version: number, status: string) => ({ applicationId: id, status, previousStatus: null, version, timestamp: new Date().toISOString(), metadata: {} }) as any;
    const version = async () => (await a.get(id))?.version;

    expect(await a.apply(ev(1, 'processing'))).toBe('stored');
    expect(await a.apply(ev(2, 'risk_scoring'))).toBe('stored');
    // Another replica moves it on: a's remembered revision is now wrong.
    expect(await b.apply(ev(3, 'pending_review'))).toBe('stored');
    expect(await a.apply(ev(3, 'pending_review'))).toBe('stale');
    expect(await a.apply(ev(4, 'approved'))).toBe('stored');
    expect(await version()).toBe(4);
    // Purged behind its back: the update fails, and it creates the key again.
    await kv.purge(id);
    expect(await a.apply(ev(5, 'disbursing'))).toBe('stored');
    expect(await version()).toBe(5);
    // Out of order, from memory alone.
    expect(await a.apply(ev(4, 'approved'))).toBe('stale');
    expect(await version()).toBe(5);
  });

  it('skips a status event in the outbox that does not parse, and the relay carries on', async () => {
    const ids = await c.deps.orm.em.fork().transactional(async (em) => await enqueue(em, [{ subject: 'funding.status.updated', data: { applicationId: 'not-a-uuid', status: 'flying' } }]));
    await eventually(async () => (await c.deps.orm.em.fork().execute('select 1 from kit.outbox where id in (?)', [ids])).length === 0, { what: 'malformed event relayed' });
    // The cache still follows the next application.
    const res = await post(rejectedBody());
    const cache = createStatusCache(await c.deps.kvm.open(FundingBuckets.status));
    await eventually(async () => (await cache.get(res.body.id))?.status === 'rejected', { what: 'next application cached' });
  });
});

describe('GET .../events (SSE)', () => {
  const readSse = async (id: string) => {
    const res = await fetch(`${c.url}/api/funding/applications/${id}/events`, { headers: await c.authHeaders() });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const text = await res.text(); // resolves only when the server ends the stream
    return text.split('\n\n').filter((b) => b.includes('data:')).map((b) => JSON.parse(b.split('\n').find((l) => l.startsWith('data:'))!.slice(5)));
  };

  it('streams status changes and ends at the final status', async () => {
    const res = await post(applicationBody());
    const events = await readSse(res.body.id);
    const statuses = events.map((e) => e.status);
    expect(statuses.at(-1)).toBe('disbursed');
    expect(statuses[0]).toMatch(/processing|risk_scoring/);
    // In order, no repeats.
    const order = ['processing', 'risk_scoring', 'approved', 'disbursing', 'disbursed'];
    const idx = statuses.map((s) => order.indexOf(s));
    expect(idx).toEqual([...idx].sort((a, b) => a - b));
    expect(new Set(statuses).size).toBe(statuses.length);
    for (const e of events) expect(e).toMatchObject({ id: res.body.id, updatedAt: expect.any(String) });
  });

  it('ends at once for an application already final', async () => {
    const res = await post(rejectedBody());
    await waitForStatus(c.get, res.body.id, 'rejected');
    expect((await readSse(res.body.id)).map((e) => e.status)).toEqual(['rejected']);
  });
});

describe('POST .../decision', () => {
  it('settles a pending review: approved leads to a payout, and a second decision is 409', async () => {
    const res = await post(pendingReviewBody());
    const id = res.body.id;
    const pending = await waitForStatus(c.get, id, 'pending_review');
    expect(pending.decision).toBe('pending_review');
    expect(gw.sim.payoutsFor(id)).toHaveLength(0);

    const bad = await c.post(`/api/funding/applications/${id}/decision`, { decision: 'maybe', reviewer: 'r' });
    expect(bad.status).toBe(400);

    const ok = await c.post(`/api/funding/applications/${id}/decision`, { decision: 'approved', reviewer: 'ana', note: 'known customer' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ status: 'approved', decision: 'approved', riskDecision: 'pending_review', review: { decision: 'approved', reviewer: 'ana', note: 'known customer' } });
    const done = await waitForStatus(c.get, id, 'disbursed');
    expect(done.disbursement.status).toBe('paid');
    expect(gw.sim.payoutsFor(id)).toHaveLength(1);

    const again = await c.post(`/api/funding/applications/${id}/decision`, { decision: 'rejected', reviewer: 'bob' });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('NOT_PENDING_REVIEW');
  });

  it('rejects a pending review, and 409s a decision on an application not in review', async () => {
    const res = await post(pendingReviewBody());
    await waitForStatus(c.get, res.body.id, 'pending_review');
    const r = await c.post(`/api/funding/applications/${res.body.id}/decision`, { decision: 'rejected', reviewer: 'ana' });
    expect(r.body.status).toBe('rejected');
    expect(gw.sim.payoutsFor(res.body.id)).toHaveLength(0);

    const other = await post(rejectedBody());
    await waitForStatus(c.get, other.body.id, 'rejected');
    const conflict = await c.post(`/api/funding/applications/${other.body.id}/decision`, { decision: 'approved', reviewer: 'ana' });
    expect(conflict.status).toBe(409);
  });
});

describe('with NATS unreachable', () => {
  // A cluster of its own: killing its nats-server must not disturb the tests above.
  it('status falls back to Postgres at once; the full view and SSE still answer', async () => {
    const nats = await startTestNats();
    const own = await startTestCluster({ TARGET: 'funding,funding-scoring', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '0', FUNDING_SSE_POLL_MS: '200' }, { nats });
    try {
      const auth = await own.authHeaders();
      const rejected = (await own.post('/api/funding/applications', rejectedBody())).body.id;
      const review = (await own.post('/api/funding/applications', pendingReviewBody())).body.id;
      await waitForStatus(own.get, rejected, 'rejected');
      await waitForStatus(own.get, review, 'pending_review');
      await eventually(async () => (await fetch(`${own.url}/api/funding/applications/${rejected}/status`, { headers: auth })).headers.get('x-status-source') === 'kv', { what: 'status from KV' });

      await nats.kill();
      // Not a speed assertion: before the fix the KV read waited out the 10 s request timeout.
      const r = await fetch(`${own.url}/api/funding/applications/${rejected}/status`, { signal: AbortSignal.timeout(1000), headers: auth });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-status-source')).toBe('db');
      expect(await r.json()).toMatchObject({ id: rejected, status: 'rejected' });
      // Right after the outage began as well as once the client has noticed it.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const again = await fetch(`${own.url}/api/funding/applications/${review}/status`, { signal: AbortSignal.timeout(1000), headers: auth });
      expect(await again.json()).toMatchObject({ id: review, status: 'pending_review' });

      const full = await fetch(`${own.url}/api/funding/applications/${rejected}`, { signal: AbortSignal.timeout(1000), headers: auth });
      expect(full.status).toBe(200);
      expect((await full.json()).status).toBe('rejected');

      // SSE: the first status at once, and a change made while NATS is down arrives through the Postgres poll.
      const sse = await fetch(`${own.url}/api/funding/applications/${review}/events`, { signal: AbortSignal.timeout(8000), headers: auth });
      expect(sse.status).toBe(200);
      const decided = await own.post(`/api/funding/applications/${review}/decision`, { decision: 'rejected', reviewer: 'ana' });
      expect(decided.status).toBe(200);
      const text = await sse.text();
      const statuses = text.split('\n\n').filter((b) => b.includes('data:')).map((b) => JSON.parse(b.split('\n').find((l) => l.startsWith('data:'))!.slice(5)).status);
      expect(statuses).toEqual(['pending_review', 'rejected']);
    } finally {
      await nats.restart();
      await own.close();
      await nats.stop();
    }
  });
});
