import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNDING_WORK_STREAM, FundingBuckets, FundingConsumers } from '../../contracts/funding.ts';
import { createDlqAdmin, type DlqEntry } from '../kit/index.ts';
import { eventually, spawnCluster, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { MODEL_VERSION } from './risk-model.ts';
import { scoreCacheKey } from './scoring.ts';
import { applicationBody, rejectedBody, waitForStatus } from './test-fixtures.ts';

let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 5 });
  c = await startTestCluster({
    TARGET: 'funding,funding-scoring,admin', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '2',
    FUNDING_RECONCILE_INTERVAL_MS: '0', FUNDING_DEBUG_CRASH: '1',
  });
});
afterAll(async () => { await c?.close(); await gw?.close(); });

const post = async (body: unknown) => {
  const res = await c.post('/api/funding/applications', body);
  expect(res.status).toBe(202);
  return res.body.id as string;
};
const dlqEntryFor = async (id: string): Promise<DlqEntry | undefined> =>
  (await createDlqAdmin(c.deps.nats).list({ stream: FUNDING_WORK_STREAM, consumer: FundingConsumers.scoring }))
    .find((e) => (e.data as { applicationId?: string }).applicationId === id);

describe('risk scoring worker', () => {
  it('a thread crashing on one input sends that application to the DLQ with the error; the pool and the others carry on', async () => {
    const before = [await post(applicationBody()), await post(rejectedBody())];
    const crashed = await post(applicationBody({ purpose: '__crash_worker__' }));
    const after = [await post(applicationBody()), await post(rejectedBody()), await post(applicationBody())];

    const entry = await eventually(() => dlqEntryFor(crashed), { what: 'DLQ entry of the crashed application' });
    expect(entry).toMatchObject({ reason: 'non-retryable', subject: 'funding.risk.scoring.requested', deliveries: 1 });
    expect(entry!.error).toMatch(/risk worker thread died while scoring application .*: worker exited with code: 1/);

    for (const id of [...before, ...after]) await waitForStatus(c.get, id, ['disbursed', 'rejected']);
    const view = (await c.get(`/api/funding/applications/${crashed}`)).body;
    expect(view).toMatchObject({ status: 'risk_scoring', scoringError: expect.stringMatching(/worker exited/), riskScore: null });
    expect(gw.sim.payoutsFor(crashed)).toHaveLength(0);

    // The pool replaced the thread and still has both.
    const metrics = (await c.get('/metrics')).body as string;
    expect(metrics).toMatch(/orderflow_funding_risk_pool\{what="live_threads"\} 2/);
    expect(metrics).toMatch(/orderflow_funding_risk_pool\{what="crashed"\} 1/);

    // Scoring threads, the replacement included, run below the event loop's priority.
    if (process.platform === 'linux') {
      const workerThreads = () => readdirSync('/proc/self/task')
        .filter((t) => { try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'WorkerThread'; } catch { return false; } });
      await eventually(() => { const ts = workerThreads(); return ts.length >= 2 && ts.every((t) => getPriority(Number(t)) === 10); }, { what: 'scoring threads at nice 10' });
      expect(getPriority(process.pid)).toBe(0);
    }
  });

  it('a model that throws on one input goes to the DLQ the same way', async () => {
    const id = await post(applicationBody({ purpose: '__crash_worker_throw__' }));
    const entry = await eventually(() => dlqEntryFor(id), { what: 'DLQ entry' });
    expect(entry!.error).toMatch(/debugCrash=throw/);
    const ok = await post(applicationBody());
    await waitForStatus(c.get, ok, 'disbursed');
  });

  it('caches scores per model version in KV; an equal application is scored from the cache with the same result', async () => {
    const body = rejectedBody({ amount: 77_777 });
    const first = await post(body);
    const a = await waitForStatus(c.get, first, 'rejected');
    const kv = await c.deps.kvm.open(FundingBuckets.riskScores);
    const key = scoreCacheKey({ amount: 77_777, currency: 'EUR', termMonths: 24, financials: body.financials as never });
    expect(key.startsWith(`${MODEL_VERSION.replace(/[^A-Za-z0-9_-]/g, '_')}.`)).toBe(true);
    const cached = (await kv.get(key))!.json<{ score: number; modelVersion: string }>();
    expect(cached).toMatchObject({ score: a.riskScore, modelVersion: MODEL_VERSION });

    const before = (await c.get('/metrics')).body as string;
    const hits = (m: string) => Number(/orderflow_funding_risk_scores_total\{source="cache",decision="rejected"\} (\d+)/.exec(m)?.[1] ?? 0);
    const second = await post({ ...body, businessId: 'another-biz' });
    const b = await waitForStatus(c.get, second, 'rejected');
    expect(b.riskScore).toBe(a.riskScore);
    expect(b.probabilityOfDefault).toBe(a.probabilityOfDefault);
    expect(hits((await c.get('/metrics')).body)).toBe(hits(before) + 1);
    // Another model version would use another key.
    expect(scoreCacheKey({ amount: 77_777, currency: 'EUR', termMonths: 24, financials: body.financials as never }, 'other-2.0')).not.toBe(key);
  });

  it('a scoring request delivered again after the decision changes nothing (no inbox: the status and version guard)', async () => {
    const id = await post(rejectedBody());
    const before = await waitForStatus(c.get, id, 'rejected');
    await c.deps.nats.js.publish('funding.risk.scoring.requested', JSON.stringify({ applicationId: id, requestedAt: new Date().toISOString(), reason: 'reconcile' }));
    const idle = async () => { const i = await c.deps.nats.jsm.consumers.info(FUNDING_WORK_STREAM, FundingConsumers.scoring); return i.num_pending === 0 && i.num_ack_pending === 0; };
    await eventually(idle, { what: 'scoring consumer idle' });
    const after = (await c.get(`/api/funding/applications/${id}`)).body;
    expect(after.version).toBe(before.version);
    expect(after.history).toEqual(before.history);
  });

  it('redriving the crashed application from the DLQ (hook input replaced) scores it', async () => {
    const id = await post(rejectedBody({ purpose: '__crash_worker__' }));
    const entry = await eventually(() => dlqEntryFor(id), { what: 'DLQ entry' });
    // The crash follows the stored purpose; fix it as an operator would, then redrive.
    await c.deps.orm.em.fork().execute(`update funding.applications set purpose = 'fixed' where id = ?`, [id]);
    const res = await c.post(`/api/admin/dlq/${entry!.id}/redrive`, {});
    expect(res.status).toBeLessThan(300);
    const done = await waitForStatus(c.get, id, 'rejected');
    expect(done.scoringError).toBeNull();
  });

  // Linux's autogroups (the root cgroup, as on this VM): see lowerSessionPriority.
  it.skipIf(!existsSync('/proc/self/autogroup'))('a scoring-only process leading its own session lowers its scheduling group; one in a shared session leaves it', async () => {
    const env = { NATS_URL: c.nats.url, DATABASE_URL: c.databaseUrl, TARGET: 'funding-scoring', FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '7' };
    // Read before the member starts: a member that lowered the shared group would change this too.
    const ours = readFileSync('/proc/self/autogroup', 'utf8');
    // Scoring-only processes (no identity beside them): only those lower their group.
    const leader = await spawnCluster(env, { detached: true, identity: false });
    const member = await spawnCluster(env, { identity: false });
    try {
      expect(readFileSync(`/proc/${leader.pid}/autogroup`, 'utf8')).toMatch(/ nice 7\n?$/);
      // The member stays in this session's group, whatever it is: init's default group
      // (as under some CI runners) prints nothing, a login session's prints its nice.
      expect(readFileSync(`/proc/${member.pid}/autogroup`, 'utf8')).toBe(ours);
    } finally {
      await Promise.all([leader.sigterm(), member.sigterm()]);
    }
  });
});
