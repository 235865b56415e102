import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from '../testing/index.ts';
import { MODEL_VERSION, MODEL_VERSION_V2 } from '../funding/risk-model.ts';
import { riskModelPicker } from '../funding/risk-flag.ts';
import { bucketOf } from '../kit/flags.ts';
import { eventually } from '../testing/index.ts';

let a: TestCluster;
let b: TestCluster;
beforeAll(async () => {
  a = await startTestCluster({ TARGET: 'admin' });
  // A second replica of the admin target: same NATS, same database, its own process state.
  b = await startTestCluster({ TARGET: 'admin' }, { nats: a.nats, databaseUrl: a.databaseUrl, sink: a.sink });
});
afterAll(async () => { await b?.close(); await a?.close(); });

async function call(c: TestCluster, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(c.url + path, {
    method, signal: AbortSignal.timeout(5000),
    headers: { ...await c.authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let adminId: string;
beforeAll(async () => { adminId = (await a.get('/api/users/me')).body.id; });

const def = (rolloutPercent: number, enabled = true, extra: Record<string, unknown> = {}) =>
  ({ enabled, rolloutPercent, variants: { off: 'model-a', on: 'model-b' }, ...extra });

const audit = async (key: string) => await a.deps.orm.em.fork().execute<{ actor: string; before: any; after: any; revision: string }[]>(
  'select actor, before, after, revision from admin.flag_changes where flag_key = ? order by revision', [key]);

describe('feature flag admin API', () => {
  it('funding.riskModel exists from start-up with the current model in both variants, disabled', async () => {
    const r = await call(a, 'GET', '/api/admin/flags/funding.riskModel');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ key: 'funding.riskModel', enabled: false, rolloutPercent: 0, variants: { off: MODEL_VERSION, on: MODEL_VERSION_V2 }, history: [] });
    const list = await call(a, 'GET', '/api/admin/flags');
    expect(list.body.items.map((f: any) => f.key)).toContain('funding.riskModel');
    const { riskModelVersion } = riskModelPicker(a.deps.flags.client);
    expect(await riskModelVersion('biz-42')).toBe(MODEL_VERSION);
  });

  it('PUT stores the flag, lists it, and GET returns it with its audit history (who, when, before, after)', async () => {
    const p1 = await call(a, 'PUT', '/api/admin/flags/checkout.newFlow', def(10, true, { description: 'new checkout' }));
    expect(p1.status).toBe(200);
    expect(p1.body).toMatchObject({ key: 'checkout.newFlow', ...def(10, true, { description: 'new checkout' }), updatedBy: adminId });
    const p2 = await call(a, 'PUT', '/api/admin/flags/checkout.newFlow', def(50));
    expect(p2.status).toBe(200);
    // Read-your-write on the replica that wrote, without waiting for the watch.
    const got = await call(a, 'GET', '/api/admin/flags/checkout.newFlow');
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ key: 'checkout.newFlow', rolloutPercent: 50, revision: p2.body.revision });
    expect(got.body.description).toBeUndefined();
    expect(got.body.history).toHaveLength(2);
    const [latest, first] = got.body.history;
    expect(first).toMatchObject({ actor: adminId, before: null, after: { rolloutPercent: 10, description: 'new checkout' }, revision: p1.body.revision });
    expect(latest).toMatchObject({ actor: adminId, before: { rolloutPercent: 10 }, after: { rolloutPercent: 50 }, revision: p2.body.revision });
    expect(Date.parse(latest.at)).toBeGreaterThanOrEqual(Date.parse(first.at));
    const rows = await audit('checkout.newFlow');
    expect(rows.map((r) => [r.before?.rolloutPercent ?? null, r.after.rolloutPercent])).toEqual([[null, 10], [10, 50]]);
  });

  it('unknown flag: 404 NOT_FOUND', async () => {
    const r = await call(a, 'GET', '/api/admin/flags/no.such.flag');
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('NOT_FOUND');
  });

  it('bad bodies and keys: 400 VALIDATION_FAILED naming each bad field, and nothing is written', async () => {
    const cases: [string, unknown, string[]][] = [
      ['f.pct', def(101), ['rolloutPercent']],
      ['f.pct', def(-1), ['rolloutPercent']],
      ['f.pct', { ...def(5), rolloutPercent: '5' }, ['rolloutPercent']],
      ['f.var', { ...def(5), variants: { off: 1, on: 'x' } }, ['variants.off']],
      ['f.var', { ...def(5), variants: { on: 'x' } }, ['variants.off']],
      ['f.var', { ...def(5), variants: { off: 'a', on: 'b', maybe: 'c' } }, ['variants']],
      ['f.en', { ...def(5), enabled: 'yes' }, ['enabled']],
      ['f.desc', { ...def(5), description: 'x'.repeat(501) }, ['description']],
      ['f.extra', { ...def(5), owner: 'me' }, ['(body)']],
      ['bad..key', def(5), ['key']],
      ['-bad', def(5), ['key']],
      [`k${'x'.repeat(200)}`, def(5), ['key']],
      ['f.json', '{"enabled": tru', ['(body)']],
    ];
    for (const [key, body, fields] of cases) {
      const r = await call(a, 'PUT', `/api/admin/flags/${encodeURIComponent(key)}`, body);
      expect({ key, body, status: r.status }).toEqual({ key, body, status: 400 });
      expect(r.body.error.code).toBe('VALIDATION_FAILED');
      expect(r.body.error.details.map((d: any) => d.field)).toEqual(expect.arrayContaining(fields));
    }
    const list = await call(a, 'GET', '/api/admin/flags');
    expect(list.body.items.map((f: any) => f.key).filter((k: string) => k.startsWith('f.'))).toEqual([]);
    const r = await call(a, 'GET', '/api/admin/flags/bad..key');
    expect(r.status).toBe(400);
  });

  it('a change through one replica is what the other evaluates within 2 s, and its API lists it', async () => {
    const key = 'replicas.rollout';
    // A targeting key inside the first 30% of this flag's buckets and one outside it.
    const keys = Array.from({ length: 200 }, (_, i) => `biz-${i}`);
    const inside = keys.find((k) => bucketOf(key, k) < 3000)!;
    const outside = keys.find((k) => bucketOf(key, k) >= 3000)!;
    expect((await call(a, 'PUT', `/api/admin/flags/${key}`, def(0))).status).toBe(200);
    const evalB = async (k: string) => await b.deps.flags.client.getStringValue(key, 'missing', { targetingKey: k });
    await eventually(async () => (await evalB(inside)) === 'model-a', { timeoutMs: 2000, intervalMs: 20, what: 'replica b sees the new flag' });
    expect((await call(a, 'PUT', `/api/admin/flags/${key}`, def(30))).status).toBe(200);
    await eventually(async () => (await evalB(inside)) === 'model-b', { timeoutMs: 2000, intervalMs: 20, what: 'replica b sees 30%' });
    expect(await evalB(outside)).toBe('model-a');
    expect((await call(b, 'GET', `/api/admin/flags/${key}`)).body).toMatchObject({ rolloutPercent: 30 });
    // And the other way round, disabling through b.
    expect((await call(b, 'PUT', `/api/admin/flags/${key}`, def(30, false))).status).toBe(200);
    await eventually(async () => (await a.deps.flags.client.getStringValue(key, 'missing', { targetingKey: inside })) === 'model-a', { timeoutMs: 2000, intervalMs: 20, what: 'replica a sees the disable' });
  });

  it('concurrent PUTs through both replicas all land and each is audited once, in one unbroken before/after chain', async () => {
    const key = 'concurrent.flag';
    expect((await call(a, 'PUT', `/api/admin/flags/${key}`, def(0))).status).toBe(200);
    const pcts = [1, 2, 3, 4, 5, 6, 7, 8];
    const results = await Promise.all(pcts.map((p, i) => call(i % 2 ? b : a, 'PUT', `/api/admin/flags/${key}`, def(p))));
    expect(results.map((r) => r.status)).toEqual(pcts.map(() => 200));
    const rows = await audit(key);
    expect(rows).toHaveLength(1 + pcts.length);
    expect(rows.map((r) => r.after.rolloutPercent).slice(1).sort((x, y) => x - y)).toEqual(pcts);
    for (let i = 1; i < rows.length; i++) expect(rows[i]!.before).toEqual(rows[i - 1]!.after);
    const final = (await call(a, 'GET', `/api/admin/flags/${key}`)).body;
    expect(final.rolloutPercent).toBe(rows.at(-1)!.after.rolloutPercent);
  });
});

describe('funding.riskModel', () => {
  it('riskModelVersion(businessId) follows the flag: the `on` model for the businesses a rollout covers, the current one for the rest', async () => {
    const { riskModelVersion } = riskModelPicker(b.deps.flags.client);
    const r = await call(a, 'PUT', '/api/admin/flags/funding.riskModel', { enabled: true, rolloutPercent: 25, variants: { off: MODEL_VERSION, on: 'next-model' } });
    expect(r.status).toBe(200);
    const covered = Array.from({ length: 100 }, (_, i) => `biz-${i}`).find((k) => bucketOf('funding.riskModel', k) < 2500)!;
    const notCovered = Array.from({ length: 100 }, (_, i) => `biz-${i}`).find((k) => bucketOf('funding.riskModel', k) >= 2500)!;
    await eventually(async () => (await riskModelVersion(covered)) === 'next-model', { timeoutMs: 2000, intervalMs: 20, what: 'the rollout on replica b' });
    expect(await riskModelVersion(notCovered)).toBe(MODEL_VERSION);
  });
});

describe('who changed a flag', () => {
  it('the audit names the principal of the token; the flags need an admin', async () => {
    const alice = await a.user(['admin']);
    const r = await alice.put('/api/admin/flags/audited.by', def(20));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ updatedBy: alice.id });
    expect((await audit('audited.by')).map((x) => x.actor)).toEqual([alice.id]);
    const customer = await a.user(['customer']);
    for (const [m, path] of [['GET', '/api/admin/flags'], ['GET', '/api/admin/flags/audited.by'], ['PUT', '/api/admin/flags/audited.by']] as const) {
      expect((await customer.request(m, path, m === 'PUT' ? def(90) : undefined)).status).toBe(403);
      const anonymous = await a.as(null).request(m, path, m === 'PUT' ? def(90) : undefined);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect((await audit('audited.by')).map((x) => x.actor)).toEqual([alice.id]);
  });
});

describe('with NATS down', () => {
  it('a PUT answers 503 UNAVAILABLE within 2 s and audits nothing; reads keep answering from memory', async () => {
    expect((await call(a, 'PUT', '/api/admin/flags/outage.flag', def(5))).status).toBe(200);
    await a.nats.kill();
    try {
      await a.authHeaders(); // a login, if one is due, is not the route's time
      const t = performance.now();
      const r = await call(a, 'PUT', '/api/admin/flags/outage.flag', def(50));
      expect({ status: r.status, code: r.body.error.code, fast: performance.now() - t < 2000 }).toEqual({ status: 503, code: 'UNAVAILABLE', fast: true });
      expect((await audit('outage.flag')).map((x) => x.after.rolloutPercent)).toEqual([5]);
      const got = await call(a, 'GET', '/api/admin/flags/outage.flag');
      expect(got).toMatchObject({ status: 200, body: { rolloutPercent: 5 } });
      expect(await a.deps.flags.client.getStringValue('outage.flag', 'missing', { targetingKey: 'biz-1' })).toBe('model-a');
    } finally {
      await a.nats.restart();
    }
  });
});
