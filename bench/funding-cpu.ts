// bench:funding-cpu: CPU outside the risk model per application, in the default `npm
// start` (TARGET=all in one child process, scoring in the supervised child it starts),
// counted from /proc per process, so the figure holds on a loaded machine: the work an
// application costs, not how long it waited for a core.
//
// BENCH_APPS applications are POSTed (BENCH_CONCURRENCY in flight, nothing else: no status
// polling) and followed until every one reached its end (approved and disbursed,
// rejected, or pending_review). CPU over that window, per application:
//  - the service process (API, router, status consumer and cache, outbox relays,
//    disbursement, and the rest of TARGET=all);
//  - the scoring process, less the model's own CPU (the pool threads' CPU clocks,
//    orderflow_funding_risk_cpu_seconds_total);
//  - this run's nats-server; the Postgres backends of this run's database.
// BENCH_ROUNDS rounds in one run (each on fresh applications), so a change is compared
// with itself under the same load. BENCH_CPU_PROF=dir runs the service under
// `node --cpu-prof` (profiles written at exit, one per process and thread).
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import pg from 'pg';
import { sampleRiskInput } from '../services/funding/risk-pool.ts';
import { VALID_IBAN } from '../services/funding/test-fixtures.ts';
import { startGatewaySimulator } from '../services/simulators/gateway.ts';
import { createTestDatabase, eventually, spawnCluster, startTestNats } from '../services/testing/index.ts';
import { request } from './http-client.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

const APPS = Number(process.env.BENCH_APPS ?? 400);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const PROF = process.env.BENCH_CPU_PROF;
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 15);
const run = Date.now().toString(36);
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

const body = (i: number, group: string) => {
  const r = sampleRiskInput(i);
  return {
    businessId: `cpu-${run}-${group}-${i}`, businessName: `Cpu ${i} Ltd`, contactEmail: 'cfo@bench.test',
    amount: r.amount, currency: r.currency, termMonths: r.termMonths, purpose: 'working capital', financials: r.financials,
    bankAccount: { iban: VALID_IBAN, holderName: `Cpu ${i} Ltd` },
  };
};
const childrenOf = (pid: number) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
  try { const s = readFileSync(`/proc/${p}/stat`, 'utf8'); return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid; } catch { return false; }
});

const nats = await startTestNats();
const db = await createTestDatabase();
const gw = await startGatewaySimulator({ port: 0, seed: 1 });
const env: Record<string, string> = { TARGET: 'all', NATS_URL: nats.url, DATABASE_URL: db.url, PAYMENT_GATEWAY_URL: gw.url, FUNDING_RECONCILE_INTERVAL_MS: '0', LOG_LEVEL: 'warn' };
if (PROF) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${PROF}`;
const svc = await spawnCluster(env);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code));
const pool = new pg.Pool({ connectionString: db.url, max: 1 });
const token = (await svc.authHeaders()).authorization!.slice('Bearer '.length);
const metric = async (name: string) => {
  const text = await (await fetch(`${svc.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').at(-1)) : NaN;
};
// Ended: final, or waiting for a reviewer (nothing more happens to it in this bench).
const ended = async (group: string) => Number((await pool.query(
  `select count(*) as n from funding.applications where business_id like $1 and status in ('disbursed', 'rejected', 'pending_review', 'disbursement_failed')`, [`cpu-${run}-${group}-%`])).rows[0].n);
const postAll = async (bodies: unknown[]) => {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < bodies.length) {
      const r = await request(`${svc.url}/api/funding/applications`, { method: 'POST', body: bodies[next++], token });
      if (r.status !== 202) throw new Error(`POST ${r.status}: ${JSON.stringify(r.body)}`);
    }
  }));
};
const dbStat = async () => (await pool.query(
  'select xact_commit + xact_rollback as x, tup_returned as r, tup_fetched as fe from pg_stat_database where datname = current_database()')).rows[0];

try {
  console.error(`bench:funding-cpu: ${ROUNDS} rounds of ${APPS} applications, ${CONCURRENCY} in flight; load average ${load()}`);
  await postAll(Array.from({ length: 20 }, (_, i) => body(i, 'w')));
  await eventually(async () => (await ended('w')) === 20, { timeoutMs: 120_000, intervalMs: 200, what: 'warm-up ended' });
  const scoringPid = (await eventually(() => childrenOf(svc.pid).find((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('main.ts')), { what: 'the scoring process' }))!;
  // The background: the same processes with nothing to do (pull loops, pings, relay and
  // flag polls of every TARGET=all service). A round pays it for its wall time, so its
  // share per application grows as throughput falls (a loaded machine).
  const pgAll = async () => new Set((await pool.query('select pid from pg_stat_activity where datname = current_database()')).rows.map((r) => Number(r.pid)));
  const i0 = snapshot();
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const i1 = snapshot();
  const idlePg = await pgAll();
  const idle = {
    main: cpuSeconds(i0, i1, (p) => p.pid === svc.pid) / IDLE_S, scoring: cpuSeconds(i0, i1, (p) => p.pid === scoringPid) / IDLE_S,
    nats: cpuSeconds(i0, i1, (p) => p.cmd.includes(`-p ${nats.port} `)) / IDLE_S, pg: cpuSeconds(i0, i1, (p) => idlePg.has(p.pid)) / IDLE_S,
  };
  const idleTotal = idle.main + idle.scoring + idle.nats + idle.pg;
  const rows: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const group = `r${round}`;
    // Every backend of this database (pools open more as load rises: taken again at the end).
    const pgPids0 = (await pool.query('select pid from pg_stat_activity where datname = current_database()')).rows.map((r) => Number(r.pid));
    const model0 = await metric('orderflow_funding_risk_cpu_seconds_total');
    const x0 = await dbStat();
    const p0 = snapshot();
    const t0 = Date.now();
    // Inputs never seen before in this run: a score served from the cache would hide the model's share.
    await postAll(Array.from({ length: APPS }, (_, i) => body(1000 + round * APPS + i, group)));
    await eventually(async () => (await ended(group)) === APPS, { timeoutMs: 600_000, intervalMs: 250, what: `round ${round} ended` });
    const p1 = snapshot();
    const wallS = (Date.now() - t0) / 1000;
    const x1 = await dbStat();
    const model1 = await metric('orderflow_funding_risk_cpu_seconds_total');
    const pgPids = new Set([...pgPids0, ...(await pool.query('select pid from pg_stat_activity where datname = current_database()')).rows.map((r) => Number(r.pid))]);
    const ms = (s: number) => f((s * 1000) / APPS);
    const main = cpuSeconds(p0, p1, (p) => p.pid === svc.pid);
    const scoring = cpuSeconds(p0, p1, (p) => p.pid === scoringPid);
    const model = model1 - model0;
    const natsS = cpuSeconds(p0, p1, (p) => p.cmd.includes(`-p ${nats.port} `));
    // Our own query connection is one of them: its few statements per poll are left in (small, and an over- not an under-count).
    const pgS = cpuSeconds(p0, p1, (p) => pgPids.has(p.pid));
    const outside = main + scoring - model + natsS + pgS;
    rows.push(`| ${round + 1} | ${ms(main)} | ${ms(scoring - model)} | ${ms(natsS)} | ${ms(pgS)} | **${ms(outside)}** | ${ms(idleTotal * wallS)} | ${ms(outside - idleTotal * wallS)} | ${ms(model)} | ${f((Number(x1.x) - Number(x0.x)) / APPS, 1)} | ${f(wallS, 1)} | ${load()} |`);
  }
  console.log([
    `CPU outside the risk model per application, default \`npm start\` (TARGET=all child process, scoring in its supervised child); ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}; ${APPS} applications a round, POSTed ${CONCURRENCY} in flight, each followed to its end (disbursed, rejected or pending_review); CPU from /proc${PROF ? '; UNDER --cpu-prof (inflated)' : ''}`,
    '',
    '| round | service process (ms) | scoring process less the model (ms) | nats-server (ms) | Postgres backends (ms) | **outside the model (ms)** | of which the idle background for the round\'s wall time (ms) | outside the model less the background (ms) | the model (pool threads, ms) | Postgres transactions | wall (s) | load average at the end |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `idle background, ${IDLE_S} s with nothing to do (CPU ms per second): service process ${f(idle.main * 1000, 1)}, scoring process ${f(idle.scoring * 1000, 1)}, nats-server ${f(idle.nats * 1000, 1)}, Postgres backends ${f(idle.pg * 1000, 1)}; total ${f(idleTotal * 1000, 1)} ms/s (load average ${load()})`,
  ].join('\n'));
} catch (err) {
  console.error(`the service's last output:\n${svc.output()}`);
  throw err;
} finally {
  await svc.sigterm();
  await pool.end();
  await gw.close();
  await db.drop().catch(() => {});
  await nats.stop();
}
process.exit(0);
