// Priority lanes (issue 14 item 3): `priority: "high"` applications are scored ahead of
// any backlog of normal ones. Only the order is asserted (the box is shared); the
// latency with 1,000 queued is measured by `npm run bench:funding` (its lanes phase).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNDING_WORK_STREAM, FundingConsumers, FundingSubjects } from '../../contracts/funding.ts';
import { createLogger } from '../kit/index.ts';
import { connectNats } from '../kit/nats.ts';
import { STREAMS_DIR } from '../kit/provision.ts';
import { eventually, startTestCluster, startTestNats, type TestCluster, type TestNats } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { applicationBody, rejectedBody, waitForStatus } from './test-fixtures.ts';

const NORMAL = 100;

let nats: TestNats;
let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 11 });
  // A server provisioned before lanes existed: FUNDING_WORK without the high subject and its
  // consumer, and a scoring request waiting on the old subject. The cluster must provision
  // over it cleanly (stream updated, the new consumer added, the old one and its message kept).
  nats = await startTestNats();
  const old = await connectNats(nats.url, createLogger({ level: 'silent' }));
  const spec = (file: string) => JSON.parse(readFileSync(`${STREAMS_DIR}/${file}`, 'utf8'));
  const stream = spec(`${FUNDING_WORK_STREAM}.stream.json`);
  await old.jsm.streams.add({ ...stream, subjects: stream.subjects.filter((s: string) => s !== FundingSubjects.riskScoringRequestedHigh) });
  await old.jsm.consumers.add(FUNDING_WORK_STREAM, spec(`${FUNDING_WORK_STREAM}.${FundingConsumers.scoring}.consumer.json`));
  await old.js.publish(FundingSubjects.riskScoringRequested, JSON.stringify({ applicationId: '00000000-0000-4000-8000-00000000abcd', requestedAt: new Date().toISOString(), reason: 'new' }));
  await old.nc.close();

  c = await startTestCluster({
    TARGET: 'funding,funding-scoring', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RECONCILE_INTERVAL_MS: '0',
  }, { nats });
});
afterAll(async () => { await c?.close(); await nats?.stop(); await gw?.close(); });

const post = async (body: Record<string, unknown>) => {
  const r = await c.post('/api/funding/applications', body);
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body.id as string;
};
const DECIDED = ['approved', 'rejected', 'pending_review'];

describe('priority lanes', () => {
  it('provisioned over the pre-lanes stream: both lane consumers exist and the old request was still delivered', async () => {
    const info = await c.deps.nats.jsm.streams.info(FUNDING_WORK_STREAM);
    expect(info.config.subjects).toContain(FundingSubjects.riskScoringRequestedHigh);
    const high = await c.deps.nats.jsm.consumers.info(FUNDING_WORK_STREAM, FundingConsumers.scoringHigh);
    expect(high.config.filter_subject).toBe(FundingSubjects.riskScoringRequestedHigh);
    // The request queued before the upgrade (an application that does not exist) was taken by the normal lane.
    await eventually(async () => (await c.deps.nats.jsm.consumers.info(FUNDING_WORK_STREAM, FundingConsumers.scoring)).delivered.stream_seq >= 1, { what: 'old request delivered' });
  });

  it('a high-priority application is decided before most of a queued normal backlog, and records its priority', async () => {
    // Rejected by the bounds but still simulated in full: every normal one costs a model run.
    const normals: string[] = [];
    for (let i = 0; i < NORMAL; i += 20) normals.push(...await Promise.all(Array.from({ length: 20 }, () => post(rejectedBody()))));
    // The backlog is queued for scoring (routed) and the pool is busy with it.
    await eventually(async () => {
      const [r] = await c.deps.orm.em.fork().execute<{ routed: string; decided: string }[]>(
        `select count(*) filter (where status <> 'processing') as routed, count(*) filter (where status in ('rejected')) as decided
           from funding.applications where id = any(?::uuid[])`, [`{${normals.join(',')}}`]);
      return Number(r!.routed) === NORMAL && Number(r!.decided) >= 1;
    }, { timeoutMs: 60_000, intervalMs: 50, what: 'the normal backlog routed and scoring' });

    const high = await post(applicationBody({ priority: 'high' }));
    const view = await waitForStatus(c.get, high, [...DECIDED, 'disbursing', 'disbursed'], 120_000);
    expect(view.priority).toBe('high');
    await eventually(async () => {
      const [r] = await c.deps.orm.em.fork().execute<{ n: string }[]>(`select count(*) as n from funding.applications where id = any(?::uuid[]) and status = 'rejected'`, [`{${normals.join(',')}}`]);
      return Number(r!.n) === NORMAL;
    }, { timeoutMs: 180_000, intervalMs: 250, what: 'the backlog decided' });

    // When each was decided, from the rows' history.
    const rows = await c.deps.orm.em.fork().execute<{ id: string; at: string }[]>(
      `select a.id, min(h ->> 'at') as at from funding.applications a, jsonb_array_elements(a.history) h
        where a.id = any(?::uuid[]) and h ->> 'status' in ('approved', 'rejected', 'pending_review') group by a.id`, [`{${[...normals, high].join(',')}}`]);
    const at = new Map(rows.map((r) => [r.id, Date.parse(r.at)]));
    const highAt = at.get(high)!;
    const normalsBefore = normals.filter((id) => at.get(id)! <= highAt).length;
    expect(normalsBefore).toBeLessThan(NORMAL / 2);
  });

  it('an application without priority is normal', async () => {
    const id = await post(rejectedBody());
    expect((await waitForStatus(c.get, id, 'rejected')).priority).toBe('normal');
  });
});
