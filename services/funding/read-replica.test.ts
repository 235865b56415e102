// DATABASE_READ_URL against a real streaming replica: a private primary and a hot
// standby made from it by pg_basebackup, both from the machine's PostgreSQL 15.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FundingBuckets } from '../../contracts/funding.ts';
import { eventually, startTestPostgres, startTestStandby, type TestPostgres } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startTestCluster, type TestCluster } from '../testing/index.ts';
import { pendingReviewBody, rejectedBody, waitForStatus } from './test-fixtures.ts';

let primary: TestPostgres;
let standby: TestPostgres;
let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  primary = await startTestPostgres();
  standby = await startTestStandby(primary);
  gw = await startGatewaySimulator({ port: 0, seed: 1 });
  c = await startTestCluster({
    TARGET: 'funding,funding-scoring', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '0',
    DATABASE_URL: primary.url, DATABASE_READ_URL: standby.url,
  });
}, 60_000);
afterAll(async () => {
  await c?.close().catch(() => {});
  await gw?.close();
  await standby?.stop();
  await primary?.stop();
});

/** A statement on the standby's `orderflow` database. */
async function onStandby<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: standby.url });
  await client.connect();
  try { return (await client.query(sql)).rows as T[]; } finally { await client.end(); }
}

/** Wait until the standby has replayed everything the primary has written so far. */
async function caughtUp() {
  const p = new pg.Client({ connectionString: primary.url });
  await p.connect();
  const [{ lsn }] = (await p.query('select pg_current_wal_lsn()::text as lsn')).rows;
  await p.end();
  await eventually(async () => (await onStandby<{ ok: boolean }>(`select pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn as ok`))[0]!.ok, { what: 'standby caught up' });
}

describe('DATABASE_READ_URL (a streaming replica)', () => {
  it('is a real hot standby', async () => {
    expect((await onStandby<{ r: boolean }>('select pg_is_in_recovery() as r'))[0]!.r).toBe(true);
  });

  it('a GET right after the POST finds the application though the replica has not replayed it (read-your-writes)', async () => {
    // Replay paused: the replica is behind by however long the test likes.
    await onStandby('select pg_wal_replay_pause()');
    try {
      const id = (await c.post('/api/funding/applications', rejectedBody())).body.id;
      expect(await onStandby(`select 1 from funding.applications where id = '${id}'`)).toEqual([]);
      const got = await c.get(`/api/funding/applications/${id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id });
      const kv = await c.deps.kvm.open(FundingBuckets.status);
      await kv.purge(id);
      const status = await c.get(`/api/funding/applications/${id}/status`);
      expect(status.status).toBe(200);
    } finally {
      await onStandby('select pg_wal_replay_resume()');
    }
  });

  it('serves the read paths from the replica: with the primary stopped, a settled application still reads', async () => {
    const id = (await c.post('/api/funding/applications', rejectedBody())).body.id;
    await waitForStatus(c.get, id, 'rejected');
    const full = (await c.get(`/api/funding/applications/${id}`)).body;
    await caughtUp();
    const kv = await c.deps.kvm.open(FundingBuckets.status);
    await kv.purge(id);

    await primary.kill();
    try {
      const got = await c.get(`/api/funding/applications/${id}`);
      expect(got.status).toBe(200);
      expect(got.body).toEqual(full);
      const r = await fetch(`${c.url}/api/funding/applications/${id}/status`, { headers: await c.authHeaders() });
      expect(r.status).toBe(200);
      expect(r.headers.get('x-status-source')).toBe('db');
      expect(await r.json()).toEqual({ id, status: 'rejected', updatedAt: full.updatedAt });
      // The live feeds read their first status there too.
      const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/funding/applications/${id}/ws`, { headers: await c.authHeaders() });
      const messages: unknown[] = [];
      ws.on('message', (d) => messages.push(JSON.parse(String(d))));
      const code = await new Promise<number>((resolve, reject) => { ws.on('close', (cd) => resolve(cd)); ws.on('error', reject); });
      expect(code).toBe(1000);
      expect(messages).toEqual([{ id, status: 'rejected', updatedAt: full.updatedAt }]);
    } finally {
      await primary.restart();
    }
  });

  it('reads the primary while the replica is down', async () => {
    const id = (await c.post('/api/funding/applications', pendingReviewBody())).body.id;
    await waitForStatus(c.get, id, 'pending_review');
    await standby.kill();
    try {
      const got = await c.get(`/api/funding/applications/${id}`);
      expect(got.status).toBe(200);
      expect(got.body.status).toBe('pending_review');
    } finally {
      await standby.restart();
    }
  });
});
