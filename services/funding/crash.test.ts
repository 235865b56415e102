// kill -9 in the middle of a burst of applications: every accepted application still
// reaches a final status after a restart, and none is paid out twice.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, eventually, startTestNats, type TestNats, spawnCluster, type SpawnedCluster } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { applicationBody, rejectedBody } from './test-fixtures.ts';

let nats: TestNats;
let db: { url: string; drop(): Promise<void> };
let gw: RunningGatewaySimulator;
let proc: SpawnedCluster | undefined;

beforeAll(async () => {
  nats = await startTestNats();
  db = await createTestDatabase();
  // Some latency, so payouts are in flight when the process dies.
  gw = await startGatewaySimulator({ port: 0, seed: 11, latencyMs: { min: 10, max: 60 } });
});
afterAll(async () => {
  await proc?.kill9().catch(() => {});
  await gw?.close();
  await db?.drop().catch(() => {});
  await nats?.stop();
});

describe('kill -9 during a burst', () => {
  it('every accepted application reaches a final status after a restart; none is paid twice', async () => {
    const env = {
      NATS_URL: nats.url, DATABASE_URL: db.url, PAYMENT_GATEWAY_URL: gw.url, TARGET: 'funding,funding-scoring',
      FUNDING_RISK_THREADS: '2', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '1000', FUNDING_STUCK_AFTER_MS: '8000', DB_POOL_MAX: '10', LOG_LEVEL: 'error',
    };
    proc = await spawnCluster(env);
    const url = proc.url;
    const auth = await proc.authHeaders();

    const accepted: string[] = [];
    let refused = 0;
    const total = 120;
    let next = 0;
    let killed = false;
    const client = async () => {
      while (next < total) {
        const i = next++;
        const body = i % 4 === 3 ? rejectedBody() : applicationBody();
        try {
          const res = await fetch(`${url}/api/funding/applications`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(body) });
          if (res.status === 202) accepted.push((await res.json()).id);
          else refused++;
        } catch {
          refused++; // the process is gone: not accepted
        }
        if (killed) return;
      }
    };
    const burst = Promise.all(Array.from({ length: 6 }, client));
    // Kill once some applications are deep in the pipeline (paid out) and the burst is still going.
    await eventually(() => accepted.length >= 60 && gw.sim.stats().applied.payouts >= 3, { timeoutMs: 60_000, what: 'burst under way with payouts' });
    await proc.kill9();
    killed = true;
    await burst;
    expect(accepted.length).toBeGreaterThanOrEqual(60);

    const check = new pg.Client({ connectionString: db.url });
    await check.connect();
    try {
      // The kill left work behind: applications mid-pipeline that only the restarted process can finish.
      const { rows: atKill } = await check.query<{ status: string; n: string }>('select status, count(*) as n from funding.applications group by status');
      const unfinished = atKill.filter((r) => !['disbursed', 'rejected'].includes(r.status)).reduce((s, r) => s + Number(r.n), 0);
      expect(unfinished).toBeGreaterThan(0);
      if (process.env.FUNDING_TEST_VERBOSE) console.log({ accepted: accepted.length, refused, atKill });

      proc = await spawnCluster(env);
      // Every accepted one, and any committed whose answer was lost in the kill, settles.
      const settled = await eventually(async () => {
        const { rows } = await check.query<{ id: string; status: string }>('select id, status from funding.applications');
        const open = rows.filter((r) => !['disbursed', 'rejected', 'disbursement_failed'].includes(r.status));
        return open.length === 0 && rows.length >= accepted.length ? rows : undefined;
      }, { timeoutMs: 90_000, intervalMs: 500, what: 'every application final' });
      const byId = new Map(settled!.map((r) => [r.id, r.status]));
      for (const id of accepted) expect(byId.get(id), id).toMatch(/^(disbursed|rejected)$/);

      const disbursed = settled!.filter((r) => r.status === 'disbursed');
      for (const r of settled!) expect(gw.sim.payoutsFor(r.id).length, r.id).toBe(r.status === 'disbursed' ? 1 : 0);
      expect(gw.sim.stats().applied.payouts).toBe(disbursed.length);
      const { rows: payouts } = await check.query<{ n: string }>(`select count(*) as n from funding.payouts where state = 'paid'`);
      expect(Number(payouts[0]!.n)).toBe(disbursed.length);
    } finally {
      await check.end();
    }
  });
});
