// Lending as separate processes (`node services/main.ts`): kill -9 mid-order, and
// two replicas sharing one T24 cap.
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, eventually, startTestNats, spawnCluster, type SpawnedCluster } from '../testing/index.ts';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
});

async function infra(simOptions: Parameters<typeof startT24Simulator>[0]) {
  const nats = await startTestNats();
  cleanups.push(() => nats.stop());
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const t24 = await startT24Simulator({ port: 0, ...simOptions });
  cleanups.push(() => t24.close());
  return { nats, db, t24 };
}

async function spawn(env: Record<string, string>): Promise<SpawnedCluster> {
  const p = await spawnCluster(env);
  cleanups.push(() => p.kill9());
  return p;
}

const postOrder = async (p: SpawnedCluster, ids: string[], investorId: string) => {
  const res = await fetch(`${p.url}/api/lending/orders`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...await p.authHeaders() },
    body: JSON.stringify({ investorId, items: ids.map((loanId) => ({ loanId, amount: 10 })) }),
  });
  expect(res.status).toBe(202);
  return (await res.json()).id as string;
};
const FINAL = ['SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'];
// Null until the process answers with the order (a restarted one says 503 while it boots).
const finalOrder = async (p: SpawnedCluster, id: string) => {
  const res = await fetch(`${p.url}/api/lending/orders/${id}`, { headers: await p.authHeaders() });
  const o = res.ok ? await res.json() : null;
  return o && FINAL.includes(o.status) ? o : null;
};
const metric = async (p: SpawnedCluster, pattern: RegExp) => {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return text.split('\n').filter((l) => pattern.test(l)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
};

const loanIds = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);

describe('lending processes', () => {
  it('kill -9 mid-reserve and again mid-invest: the order completes, no T24 change is applied twice', async () => {
    const { nats, db, t24 } = await infra({ maxRps: 150, latencyMs: { min: 5, max: 40 }, seed: 3 });
    const env = {
      TARGET: 'lending', NATS_URL: nats.url, DATABASE_URL: db.url, T24_URL: t24.url, T24_MAX_RPS: '150',
      LENDING_BATCH_SIZE: '100', T24_HEARTBEAT_MS: '250',
    };
    const ids = loanIds(500, 'K');
    let p = await spawn(env);
    const id = await postOrder(p, ids, 'inv-crash');

    await eventually(() => t24.sim.stats({ perLoan: false }).applied.reserve >= 150, { timeoutMs: 60_000, what: 'reserve phase under way' });
    await p.kill9();
    p = await spawn(env);

    await eventually(() => t24.sim.stats({ perLoan: false }).applied.invest >= 150, { timeoutMs: 90_000, what: 'invest phase under way' });
    await p.kill9();
    p = await spawn(env);

    const done = await eventually(() => finalOrder(p, id), { timeoutMs: 90_000, what: 'order to finish' });
    expect(done).toMatchObject({ status: 'SUCCESS', counts: { pending: 0, reserved: 0, invested: 500, failed: 0 } });
    const stats = t24.sim.stats();
    for (const l of ids) expect(stats.appliedPerLoan![l], l).toEqual({ reserve: 1, invest: 1 });
    expect(stats.applied).toEqual({ reserve: 500, invest: 500 });
    expect(stats.rateLimited).toBe(0);
  });

  it('two replicas with one T24_MAX_RPS: combined rate under the cap, no 429, both do the work', async () => {
    const cap = 100;
    const { nats, db, t24 } = await infra({ maxRps: cap, latencyMs: { min: 2, max: 10 }, seed: 5 });
    const env = {
      TARGET: 'lending', NATS_URL: nats.url, DATABASE_URL: db.url, T24_URL: t24.url, T24_MAX_RPS: String(cap),
      LENDING_BATCH_SIZE: '50', T24_HEARTBEAT_MS: '250',
    };
    const a = await spawn(env);
    const b = await spawn(env);
    await eventually(async () => (await metric(a, /^orderflow_t24_members /)) === 2 && (await metric(b, /^orderflow_t24_members /)) === 2
      && (await metric(a, /^orderflow_t24_rate_share /)) === cap / 2 && (await metric(b, /^orderflow_t24_rate_share /)) === cap / 2,
    { timeoutMs: 20_000, what: 'both replicas to hold half the cap' });

    const ids = loanIds(600, 'R');
    const id = await postOrder(a, ids, 'inv-pair');
    const done = await eventually(() => finalOrder(b, id), { timeoutMs: 90_000, what: 'order to finish' });
    expect(done).toMatchObject({ status: 'SUCCESS', counts: { invested: 600 } });

    const stats = t24.sim.stats();
    expect(stats.rateLimited).toBe(0);
    expect(stats.peakRps).toBeLessThanOrEqual(cap);
    for (const l of ids) expect(stats.appliedPerLoan![l]).toEqual({ reserve: 1, invest: 1 });
    const worked = [await metric(a, /^orderflow_lending_item_outcomes_total\{.*outcome="(reserved|invested)"/), await metric(b, /^orderflow_lending_item_outcomes_total\{.*outcome="(reserved|invested)"/)];
    expect(worked[0]! + worked[1]!).toBe(1200);
    expect(Math.min(...worked)).toBeGreaterThan(100);
    expect(await metric(a, /^orderflow_t24_received_429 /) + await metric(b, /^orderflow_t24_received_429 /)).toBe(0);
  });
});
