// Rolling the second risk model out by `funding.riskModel` (issue 14 item 2): every
// application records the version that decided it, scores are cached per version, and
// rolling back is one flag change that every scoring replica follows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FundingBuckets } from '../../contracts/funding.ts';
import type { StoredFlag } from '../kit/index.ts';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { RISK_MODEL_FLAG, riskModelPicker } from './risk-flag.ts';
import { MODEL_VERSION, MODEL_VERSION_V2 } from './risk-model.ts';
import { scoreCacheKey } from './scoring.ts';
import { pendingReviewBody, rejectedBody, waitForStatus } from './test-fixtures.ts';

let a: TestCluster;
let b: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 7 });
  const env = { PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RECONCILE_INTERVAL_MS: '0' };
  a = await startTestCluster({ ...env, TARGET: 'funding,funding-scoring' });
  // A second scoring replica on the same NATS and database: the two share the work queue.
  b = await startTestCluster({ ...env, TARGET: 'funding-scoring' }, { nats: a.nats, databaseUrl: a.databaseUrl, sink: a.sink });
});
afterAll(async () => { await b?.close(); await a?.close(); await gw?.close(); });

/** What an operator's PUT /api/admin/flags/funding.riskModel writes, through replica a's store. */
const setFlag = async (enabled: boolean, rolloutPercent: number) => {
  const { flag, revision } = await a.deps.flags.store.read(RISK_MODEL_FLAG);
  const next: StoredFlag = {
    key: RISK_MODEL_FLAG, enabled, rolloutPercent, variants: { off: MODEL_VERSION, on: MODEL_VERSION_V2 },
    description: flag?.description, updatedAt: new Date().toISOString(), updatedBy: 'test',
  };
  await a.deps.flags.store.compareAndSet(RISK_MODEL_FLAG, next, revision);
};
/** Every replica's scoring consumer evaluates `businessId` to `version` (the contract gives a change 2 s). */
const everyReplicaPicks = async (businessId: string, version: string) => {
  for (const c of [a, b]) {
    await eventually(async () => (await riskModelPicker(c.deps.flags.client).pick(businessId)).version === version, { timeoutMs: 2000, intervalMs: 20, what: `${version} on a replica` });
  }
};
const decide = async (bodies: Record<string, unknown>[]) => {
  const ids = await Promise.all(bodies.map(async (body) => {
    const r = await a.post('/api/funding/applications', body);
    expect(r.status).toBe(202);
    return r.body.id as string;
  }));
  return await Promise.all(ids.map((id) => waitForStatus(a.get, id, ['approved', 'disbursing', 'disbursed', 'rejected', 'pending_review'])));
};
const decisionsOf = (metrics: string, version: string) =>
  [...metrics.matchAll(new RegExp(`orderflow_funding_decisions_total\\{modelVersion="${version.replace(/\./g, '\\.')}",decision="[a-z_]+"\\} (\\d+)`, 'g'))].reduce((s, m) => s + Number(m[1]), 0);

let v1Score: number;

describe('funding.riskModel rollout', () => {
  it('starts with the flag off: applications are decided by 1.0 and record it', async () => {
    expect(a.deps.flags.store.get(RISK_MODEL_FLAG)).toMatchObject({ enabled: false, variants: { off: MODEL_VERSION, on: MODEL_VERSION_V2 } });
    const views = await decide([pendingReviewBody(), rejectedBody()]);
    for (const v of views) expect(v.modelVersion).toBe(MODEL_VERSION);
    v1Score = views[0]!.riskScore;
  });

  it('at 100% every replica scores new applications with 2.0, caches them under 2.0 and counts them per version; off again, back to 1.0', async () => {
    await setFlag(true, 100);
    await everyReplicaPicks('any-business', MODEL_VERSION_V2);
    const metricsBefore = [(await a.get('/metrics')).body as string, (await b.get('/metrics')).body as string];

    // The same economics as an application 1.0 decided before: 2.0 must not reuse its cached score.
    const same = pendingReviewBody();
    const [before] = await decide([same]);
    expect(before.modelVersion).toBe(MODEL_VERSION_V2);
    expect(before.riskScore).not.toBe(v1Score);
    const v2 = await decide(Array.from({ length: 6 }, () => pendingReviewBody()));
    for (const v of v2) expect(v.modelVersion).toBe(MODEL_VERSION_V2);
    const kv = await a.deps.kvm.open(FundingBuckets.riskScores);
    const key = scoreCacheKey({ amount: 120_000, currency: 'EUR', termMonths: 24, financials: same.financials as never }, MODEL_VERSION_V2);
    expect(key.startsWith('cashflow-mc-2_0.')).toBe(true);
    expect((await kv.get(key))!.json()).toMatchObject({ modelVersion: MODEL_VERSION_V2, score: before.riskScore });
    // Counted by whichever replica scored each one: the two together saw all seven.
    const metricsAfter = [(await a.get('/metrics')).body as string, (await b.get('/metrics')).body as string];
    const counted = metricsAfter.reduce((s, m, i) => s + decisionsOf(m, MODEL_VERSION_V2) - decisionsOf(metricsBefore[i]!, MODEL_VERSION_V2), 0);
    expect(counted).toBe(7);

    // Rollback: one change (the percentage to 0), and every replica is back on 1.0.
    await setFlag(true, 0);
    await everyReplicaPicks('any-business', MODEL_VERSION);
    for (const v of await decide(Array.from({ length: 4 }, () => pendingReviewBody()))) expect(v.modelVersion).toBe(MODEL_VERSION);

    // Disabling does the same from 100%.
    await setFlag(true, 100);
    await everyReplicaPicks('any-business', MODEL_VERSION_V2);
    await setFlag(false, 100);
    await everyReplicaPicks('any-business', MODEL_VERSION);
    for (const v of await decide([pendingReviewBody(), pendingReviewBody()])) expect(v.modelVersion).toBe(MODEL_VERSION);
  });

  it('a partial rollout is sticky by businessId: the same business keeps its model, and the split follows the buckets', async () => {
    await setFlag(true, 50);
    // Fixed ids: their buckets are fixed, and these eight fall on both sides of 50%.
    const businesses = Array.from({ length: 8 }, (_, i) => `sticky-${i}`);
    const expected = await Promise.all(businesses.map(async (id) => (await riskModelPicker(a.deps.flags.client).pick(id)).version));
    expect(new Set(expected)).toEqual(new Set([MODEL_VERSION, MODEL_VERSION_V2]));
    const views = await decide(businesses.flatMap((businessId) => [pendingReviewBody({ businessId }), pendingReviewBody({ businessId })]));
    views.forEach((v, i) => expect(v.modelVersion).toBe(expected[Math.floor(i / 2)]));
    await setFlag(false, 0);
  });

  it('a variant naming a model this build lacks scores with the default model instead of failing', async () => {
    const { revision } = await a.deps.flags.store.read(RISK_MODEL_FLAG);
    await a.deps.flags.store.compareAndSet(RISK_MODEL_FLAG, {
      key: RISK_MODEL_FLAG, enabled: true, rolloutPercent: 100, variants: { off: MODEL_VERSION, on: 'cashflow-mc-9.9' }, updatedAt: new Date().toISOString(), updatedBy: 'test',
    }, revision);
    await eventually(async () => (await riskModelPicker(b.deps.flags.client).riskModelVersion('x')) === 'cashflow-mc-9.9', { timeoutMs: 2000, intervalMs: 20, what: 'typo on b' });
    for (const v of await decide([pendingReviewBody(), rejectedBody()])) expect(v.modelVersion).toBe(MODEL_VERSION);
    await setFlag(false, 0);
  });
});
