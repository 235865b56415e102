import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FundingSubjects } from '../../contracts/funding.ts';
import { H } from '../kit/index.ts';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { createApplicationWriter, scoringRequest, transitionMany } from './applications.ts';
import { applicationBody } from './test-fixtures.ts';

let c: TestCluster;
beforeAll(async () => {
  // The funding target for its schema (its router runs too: see the test).
  c = await startTestCluster({ TARGET: 'funding', PAYMENT_GATEWAY_URL: 'http://127.0.0.1:9', FUNDING_RECONCILE_INTERVAL_MS: '0' });
});
afterAll(async () => { await c?.close(); });

describe('transitionMany', () => {
  it('moves only the applications still in `from`, each with its own events and versioned status event, once', async () => {
    const writer = createApplicationWriter(c.deps.orm, () => {});
    const ids = await Promise.all([1, 2, 3].map(async () => (await writer.create(applicationBody() as any, 'req-t')).id));
    // The cluster's own router takes their `created` events and moves them as soon as the relay
    // publishes them (a race with this test's step): wait until it has, then put them back,
    // so the router, done with them, touches them no more.
    await eventually(async () => {
      const rows = await c.deps.orm.em.fork().execute<{ status: string }[]>('select status from funding.applications where id = any(?::uuid[])', [`{${ids.join(',')}}`]);
      return rows.length === 3 && rows.every((r) => r.status === 'risk_scoring');
    }, { what: 'the router moved the three applications' });
    await c.deps.orm.em.fork().execute(
      `update funding.applications set status = 'processing', version = 1, history = jsonb_build_array(history -> 0) where id = any(?::uuid[])`, [`{${ids.join(',')}}`]);
    await c.deps.orm.em.fork().execute(`delete from kit.outbox where (payload::jsonb ->> 'applicationId') = any(?::text[])`, [`{${ids.join(',')}}`]);
    // One of them moved on already (another replica, or the reconciler).
    await c.deps.orm.em.fork().execute(`update funding.applications set status = 'risk_scoring', version = 2 where id = ?`, [ids[2]]);

    const step = () => c.deps.orm.em.fork().transactional(async (em) => {
      const { moved } = await transitionMany(em, {
        from: 'processing', to: 'risk_scoring',
        items: ids.map((id) => ({ id, requestId: `req-${id}`, events: [scoringRequest(id, 'new')] })),
      });
      // Read inside the transaction: once committed, the outbox relay takes the rows away.
      const events = await em.execute<{ subject: string; payload: string; headers: Record<string, string> }[]>(
        `select subject, payload, headers from kit.outbox where (payload::jsonb ->> 'applicationId') = any(?::text[])
           and (subject = ? or payload::jsonb ->> 'status' = 'risk_scoring')`,
        [`{${ids.join(',')}}`, FundingSubjects.riskScoringRequested]);
      return { moved, events };
    });

    const first = await step();
    expect([...first.moved].sort()).toEqual([ids[0], ids[1]].sort());
    const status = first.events.filter((e) => e.subject === FundingSubjects.statusUpdated).map((e) => JSON.parse(e.payload));
    expect(status.map((s) => s.applicationId).sort()).toEqual([ids[0], ids[1]].sort());
    for (const s of status) expect(s).toMatchObject({ status: 'risk_scoring', previousStatus: 'processing', version: 2 });
    const requests = first.events.filter((e) => e.subject === FundingSubjects.riskScoringRequested);
    expect(requests.map((e) => JSON.parse(e.payload).applicationId).sort()).toEqual([ids[0], ids[1]].sort());
    for (const e of first.events) expect(e.headers[H.requestId]).toBe(`req-${JSON.parse(e.payload).applicationId}`);

    const rows = await c.deps.orm.em.fork().execute<{ id: string; status: string; version: number; history: { status: string }[] }[]>(
      'select id, status, version, history from funding.applications where id = any(?::uuid[])', [`{${ids.join(',')}}`]);
    for (const r of rows.filter((r) => r.id !== ids[2])) {
      expect(r).toMatchObject({ status: 'risk_scoring', version: 2 });
      expect(r.history.map((h) => h.status)).toEqual(['processing', 'risk_scoring']);
    }

    // A redelivered batch finds nothing in `from` and writes nothing.
    const again = await step();
    expect(again.moved.size).toBe(0);
  });
});
