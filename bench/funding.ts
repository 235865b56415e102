// bench:funding: a burst of applications against the real funding service (API,
// router, status cache, piscina scoring, disbursement to the gateway simulator).
// Deployed as k8s/ deploys it, in two processes: `funding` (API, router, status,
// disbursement) in this one, so perf_hooks.monitorEventLoopDelay sees the event loop
// that answers the requests, and `funding-scoring` (the pool and its consumer) as a
// child leading its own session (see lowerSessionPriority in scoring.ts).
// BENCH_SPLIT=0 runs both targets in this process instead. The load generator runs
// in a worker thread (funding-load.ts).
//
// BENCH_MODE=all: the default `npm start` instead: one child process with TARGET=all
// (every service, as a user's shell starts it), POSTs paced at BENCH_POST_RPS while a
// backlog of BENCH_BACKLOG applications scores; reports POST and cached-status latency
// and the service's event-loop lag during that window. Then, in every mode unless
// BENCH_LANES=0, the lanes phase: BENCH_LANES_NORMAL normal applications queued, then
// BENCH_LANES_HIGH high-priority ones, one every 250 ms, each timed from its POST to its
// decision (the contract: decided within 2 s p95 with 1,000 normal ones queued).
//
// Reported: POST latency during the burst, cached status latency while scoring
// saturates the pool, event-loop delay over the whole run, and scoring throughput as a
// fraction of the pool's capacity, where capacity = threads ÷ CPU time per score, the
// CPU time measured on this machine in the same run with nothing else running.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { EVENT_LOOP_SAMPLE_MS } from '../services/kit/metrics.ts';
import { MODEL_VERSION, SIMULATION_PATHS } from '../services/funding/risk-model.ts';
import { measureCpuPerScore, measurePoolThroughput, sampleRiskInput } from '../services/funding/risk-pool.ts';
import { VALID_IBAN } from '../services/funding/test-fixtures.ts';
import pg from 'pg';
import { createTestDatabase, eventually, login, spawnCluster, startTestCluster, startTestNats } from '../services/testing/index.ts';
import { request } from './http-client.ts';
import { startGatewaySimulator } from '../services/simulators/gateway.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

const N = Number(process.env.BENCH_APPLICATIONS ?? 1000);
const POST_RPS = Number(process.env.BENCH_POST_RPS ?? 200);
const STATUS_RPS = Number(process.env.BENCH_STATUS_RPS ?? 100);
const PRELOAD = Number(process.env.BENCH_PRELOAD ?? 40);
const RESOLUTION_MS = 10;
const THREADS = Number(process.env.FUNDING_RISK_THREADS || availableParallelism());
const NICE = process.env.FUNDING_RISK_NICE ?? '10';
const SPLIT = process.env.BENCH_SPLIT !== '0';
const run = Date.now().toString(36);

// sampleRiskInput's economics as contract request bodies: burst i = 0..N-1, then the
// preload and the warm-up right after (distinct inputs, so no score is served from the cache).
const body = (i: number, group: string) => {
  const r = sampleRiskInput(i);
  return {
    businessId: `bench-${run}-${group}-${i}`, businessName: `Bench ${i} Ltd`, contactEmail: 'cfo@bench.test',
    amount: r.amount, currency: r.currency, termMonths: r.termMonths, purpose: 'working capital', financials: r.financials,
    bankAccount: { iban: VALID_IBAN, holderName: `Bench ${i} Ltd` },
  };
};

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
/** Busy and total jiffies of the whole machine, to see what else ran during the bench. */
const machineCpu = () => {
  const [, ...v] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = v.map(Number);
  const idle = n[3]! + (n[4] ?? 0);
  return { busy: n.reduce((a, b) => a + b, 0) - idle, total: n.reduce((a, b) => a + b, 0) };
};
const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
type Query = <T = Record<string, any>>(sql: string, params: unknown[]) => Promise<T[]>;
const LANES = process.env.BENCH_LANES !== '0';

if (process.env.BENCH_MODE === 'all') {
  await benchDefaultMode();
  process.exit(0);
}

console.error(`bench:funding: ${N} applications, POSTs at ${POST_RPS}/s, status at ${STATUS_RPS}/s, ${THREADS} scoring threads; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);

// 1. CPU per score, alone (this thread, nothing else running yet), on the bench's own inputs.
// The model's cost depends on the inputs (a risky path defaults early and stops), so
// capacity is measured on the burst's own inputs: 60 spread evenly over them.
const spread = (k: number, of: number) => Math.floor((k * N) / of) % N;
// Three rounds; the cheapest round counts (noise only ever adds CPU time), which makes
// the capacity the most optimistic of the three and the fraction below conservative.
const rounds = [0, 1, 2].map((r) => measureCpuPerScore({ samples: 60, warmup: r === 0 ? 30 : 5, input: (k) => sampleRiskInput(spread(k, 60)) }));
const cpu = rounds.reduce((a, b) => (b.cpuMsMean < a.cpuMsMean ? b : a));
const capacity = (THREADS * 1000) / cpu.cpuMsMean;

// 2. The service.
const gw = await startGatewaySimulator({ port: 0, seed: 1 });
const scoringEnv = { FUNDING_RISK_THREADS: String(THREADS), FUNDING_RISK_NICE: NICE, LOG_LEVEL: 'silent' };
const c = await startTestCluster({
  TARGET: SPLIT ? 'funding' : 'funding,funding-scoring', PAYMENT_GATEWAY_URL: gw.url,
  FUNDING_RECONCILE_INTERVAL_MS: '0', DB_POOL_MAX: process.env.DB_POOL_MAX ?? '20', ...scoringEnv,
});
// Ctrl-C exits through 'exit' handlers, which take the scoring child (its own session) along.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code));
const scoring = SPLIT
  ? await spawnCluster({ ...scoringEnv, NATS_URL: c.nats.url, DATABASE_URL: c.databaseUrl, TARGET: 'funding-scoring', DB_POOL_MAX: '10' }, { detached: true, identity: false })
  : null;
/** A metric of the scoring service: from the child's /metrics, or this process's registry. */
const scoringMetric = async (name: string, what?: string): Promise<number> => {
  if (!scoring) {
    const values = (await c.deps.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
    return values.find((v) => !what || v.labels.what === what)?.value ?? NaN;
  }
  const text = await (await fetch(`${scoring.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(what ? `${name}{what="${what}"}` : `${name} `));
  return line ? Number(line.split(' ').at(-1)) : NaN;
};
// By business-id prefix: a cheap query, since it runs on the service's event loop.
const decided = async (group: 'w' | 'p' | 'b') => {
  const rows = await c.deps.orm.em.fork().execute<{ n: string }[]>(
    `select count(*) as n from funding.applications where business_id like ? and status not in ('processing', 'risk_scoring')`, [`bench-${run}-${group}-%`]);
  return Number(rows[0]!.n);
};

try {
  // Warm-up: JIT in the pool threads, connection pools, streams.
  const warm = await Promise.all(Array.from({ length: 20 }, async (_, i) => (await c.post('/api/funding/applications', body(N + PRELOAD + i, 'w'))).body.id as string));
  await eventually(async () => (await decided('w')) === warm.length, { timeoutMs: 60_000, what: 'warm-up scored' });

  // 3. The burst. A preload first, so the pool is already saturated when it starts.
  const preload = await Promise.all(Array.from({ length: PRELOAD }, async (_, i) => (await c.post('/api/funding/applications', body(N + i, 'p'))).body.id as string));
  await eventually(async () => (await decided('p')) >= THREADS, { timeoutMs: 60_000, intervalMs: 20, what: 'pool busy' });
  const preDecided = await decided('p');
  const loop = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  loop.enable();
  const xacts = async () => Number((await c.deps.orm.em.fork().execute<{ n: string }[]>('select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()'))[0]!.n);
  const xact0 = await xacts();
  const poolCpu0 = await scoringMetric('orderflow_funding_risk_cpu_seconds_total');
  // The run's own nats-server and the Postgres backends serving its database.
  const pgPids = (await c.deps.orm.em.fork().execute<{ pid: number }[]>('select pid from pg_stat_activity where datname = current_database()')).map((r) => Number(r.pid));
  const procs0 = snapshot();
  const cpu0 = process.cpuUsage();
  const machine0 = machineCpu();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const load = new Worker(new URL('./funding-load.ts', import.meta.url), {
    workerData: { url: c.url, token: await c.token(), bodies: Array.from({ length: N }, (_, i) => body(i, 'b')), postRps: POST_RPS, statusRps: STATUS_RPS },
  });
  const messages: any[] = [];
  const got = (phase: string) => eventually(() => messages.find((m) => m.phase === phase), { timeoutMs: 600_000, intervalMs: 50, what: phase });
  load.on('message', (m) => messages.push(m));
  const posted = await got('posted');
  // How busy the service's event loop was while the POSTs arrived (the intake phase).
  const intakeElu = performance.eventLoopUtilization(elu0).utilization;
  const elu1 = performance.eventLoopUtilization();
  // Status reads continue while the pool works through the backlog.
  await eventually(async () => (await decided('b')) === posted.ids.length, { timeoutMs: 600_000, intervalMs: 250, what: 'all scored' });
  const scoredAt = performance.now() - t0;
  const drainElu = performance.eventLoopUtilization(elu1).utilization;
  load.postMessage('stop');
  const status = await got('status');
  loop.disable();
  const cpu1 = process.cpuUsage(cpu0);
  const procs1 = snapshot();
  const natsCpuS = cpuSeconds(procs0, procs1, (p) => p.cmd.includes(`-p ${c.nats.port} `));
  const pgCpuS = cpuSeconds(procs0, procs1, (p) => pgPids.includes(p.pid));
  const scoringProcS = cpuSeconds(procs0, procs1, (p) => p.pid === scoring?.pid);
  const xact1 = await xacts();
  const machine1 = machineCpu();
  await load.terminate();
  const poolCpuS = await scoringMetric('orderflow_funding_risk_cpu_seconds_total');
  // Server-side time of the POSTs (the kit's request histogram), to split the client's
  // latency into time in the handler and time before/after it (queueing, sockets, client).
  const httpHist = (await c.deps.metrics.registry.getSingleMetric('orderflow_http_request_duration_seconds')?.get())?.values
    .filter((v) => v.labels.method === 'POST' && v.labels.route === '/api/funding/applications' && (v as { metricName?: string }).metricName?.endsWith('_bucket')) ?? [];
  const serverShare = (ms: number) => {
    const total = httpHist.find((v) => v.labels.le === '+Inf')?.value ?? 0;
    const under = httpHist.find((v) => Number(v.labels.le) === ms / 1000)?.value ?? 0;
    return total ? (under / total) * 100 : NaN;
  };
  const poolUtil = await scoringMetric('orderflow_funding_risk_pool', 'utilization');

  // Throughput from the decision times in the rows' history, over the middle 90% of
  // completions (the first and last few are ramp-up and drain, not steady state).
  const rows = await c.deps.orm.em.fork().execute<{ at: string }[]>(
    `select (h ->> 'at') as at from funding.applications a, jsonb_array_elements(a.history) h
      where a.business_id like ? and h ->> 'status' in ('approved', 'rejected', 'pending_review')`,
    [`bench-${run}-b-%`]);
  const times = rows.map((r) => Date.parse(r.at)).sort((a, b) => a - b);
  const lo = Math.floor(times.length * 0.05);
  const hi = Math.ceil(times.length * 0.95) - 1;
  const throughput = ((hi - lo) / (times[hi]! - times[lo]!)) * 1000;
  // A reference taken under the same machine conditions: the bare pool (no NATS, no
  // Postgres, no HTTP), fed directly, right after the burst.
  const bare = await measurePoolThroughput({ threads: THREADS, tasks: 150, input: (k) => sampleRiskInput(spread(k, 150)) });
  const decisions = await c.deps.orm.em.fork().execute<{ status: string; n: string }[]>(
    'select risk_decision as status, count(*) as n from funding.applications where business_id like ? group by 1 order by 1', [`bench-${run}-b-%`]);

  // Where the CPU went: this process (all threads) vs the whole machine (2 cores).
  const wallS = scoredAt / 1000;
  const procCpuS = (cpu1.user + cpu1.system) / 1e6;
  const machineBusyShare = (machine1.busy - machine0.busy) / (machine1.total - machine0.total);
  const scoringCpuS = poolCpuS - poolCpu0;
  // Preloaded applications scored inside the window count too.
  const scoredInRun = N + PRELOAD - preDecided;
  // Both processes' threads but the model's and the load generator's.
  const serviceCpuS = procCpuS + scoringProcS - scoringCpuS - status.cpuMs / 1000;
  const servicesCpuS = procCpuS + scoringProcS;
  const lag = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  const kvShare = (status.sources.kv ?? 0) / Object.values<number>(status.sources).reduce((s, n) => s + n, 0);
  const lines = [
    `risk model ${MODEL_VERSION} (${SIMULATION_PATHS} paths); ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}; ${N} applications after a preload of ${PRELOAD}, POSTs sent at ${POST_RPS}/s (open loop), status polled at ${STATUS_RPS}/s (open loop), ${THREADS} scoring threads at nice ${NICE}, ${SPLIT ? 'TARGET=funding in this process and TARGET=funding-scoring in a child leading its own session' : 'one process (TARGET=funding,funding-scoring)'}, load generator in a worker thread`,
    '',
    '| measure | p50 | p95 | p99 | max | target | seed bound |',
    '|---|---|---|---|---|---|---|',
    `| POST /api/funding/applications (ms), ${posted.postMs.length} requests, ${posted.postErrors} errors, ${f((posted.postMs.length / posted.postWallMs) * 1000, 0)} req/s | ${f(pct(posted.postMs, 50))} | ${f(pct(posted.postMs, 95))} | ${f(pct(posted.postMs, 99))} | ${f(Math.max(...posted.postMs))} | p95 < 20 | p95 < 200 |`,
    `| POST, time inside the service (request histogram; includes the warm-up and preload) | ≤ 5 ms: ${f(serverShare(5))}% | ≤ 10 ms: ${f(serverShare(10))}% | ≤ 25 ms: ${f(serverShare(25))}% | ≤ 50 ms: ${f(serverShare(50))}% | | |`,
    `| GET .../status from KV (ms), ${status.statusMs.length} requests, ${f(kvShare * 100, 1)}% KV hits, ${status.statusErrors} errors | ${f(pct(status.statusMs, 50), 2)} | ${f(pct(status.statusMs, 95), 2)} | ${f(pct(status.statusMs, 99), 2)} | ${f(Math.max(...status.statusMs))} | p95 < 5 | p95 < 100 |`,
    `| event-loop delay during the run (ms beyond the ${RESOLUTION_MS} ms sampling interval) | ${f(lag(loop.percentile(50)))} | ${f(lag(loop.percentile(95)))} | ${f(lag(loop.percentile(99)))} | ${f(lag(loop.max))} | | |`,
    `| event-loop utilization: while the POSTs arrived / afterwards, until all decided | ${f(intakeElu * 100)}% / ${f(drainElu * 100)}% | | | | | |`,
    '',
    '| scoring | value |',
    '|---|---|',
    `| CPU per score, alone, on the burst's inputs (ms, mean / p95 of ${cpu.samples}; cheapest of 3 rounds: ${rounds.map((r) => r.cpuMsMean).join(', ')}) | ${cpu.cpuMsMean} / ${cpu.cpuMsP95} |`,
    `| pool capacity = ${THREADS} threads ÷ CPU per score | ${f(capacity)} scores/s |`,
    `| measured scoring throughput (middle 90% of completions) | ${f(throughput)} scores/s |`,
    `| **throughput ÷ capacity** (target ≥ 80%) | **${f((throughput / capacity) * 100)}%** |`,
    `| bare pool fed directly, same run, same inputs (reference) | ${f(bare.scoresPerSecond)} scores/s; the service reaches ${f((throughput / bare.scoresPerSecond) * 100)}% of it |`,
    `| burst start → last application decided | ${f(scoredAt / 1000, 1)} s |`,
    `| decisions | ${decisions.map((d) => `${d.status} ${d.n}`).join(', ')} |`,
    `| pool utilization since start (piscina run time ÷ thread time) | ${f(poolUtil * 100)}% |`,
    '',
    '| CPU during the run | value |',
    '|---|---|',
    `| machine busy (all processes, ${availableParallelism()} cores) | ${f(machineBusyShare * 100)}% |`,
    `| the service's processes, all threads | ${f(servicesCpuS, 1)} s of ${f(wallS, 1)} s wall (${f((servicesCpuS / wallS) * 100)}% of one core)${scoring ? `: funding ${f(procCpuS, 1)} s (with the load generator), funding-scoring ${f(scoringProcS, 1)} s` : ''} |`,
    `| of which the risk model in the pool threads (thread CPU clocks) | ${f(scoringCpuS, 1)} s, ${f((scoringCpuS * 1000) / scoredInRun, 1)} ms per score (alone: ${cpu.cpuMsMean}) |`,
    `| of which the service's other threads (the rest, without the load generator's ${f(status.cpuMs / 1000, 1)} s) | ${f(serviceCpuS, 1)} s, ${f((serviceCpuS * 1000) / N, 2)} ms per application |`,
    `| this run's nats-server | ${f(natsCpuS, 1)} s, ${f((natsCpuS * 1000) / N, 2)} ms per application |`,
    `| Postgres backends of this run's database (${pgPids.length}) | ${f(pgCpuS, 1)} s, ${f((pgCpuS * 1000) / N, 2)} ms per application |`,
    `| everything else on the machine (other sessions, kernel) | ${f(Math.max(0, machineBusyShare * availableParallelism() * wallS - servicesCpuS - natsCpuS - pgCpuS), 1)} s |`,
    `| Postgres transactions (statements outside a transaction count as one) | ${xact1 - xact0}, ${f((xact1 - xact0) / N, 1)} per application |`,
    `| load average at the end | ${loadavg().map((x) => x.toFixed(2)).join(' ')} |`,
  ];
  if (LANES) lines.push(...await lanesPhase(c.url, async (sql, params) => await c.deps.orm.em.fork().execute(sql.replace(/\$\d+/g, '?'), params), await c.token()));
  console.log(lines.join('\n'));
} finally {
  await scoring?.sigterm();
  await c.close();
  await gw.close();
}


/** POST bodies with `concurrency` requests in flight; returns the ids. */
async function postMany(url: string, bodies: unknown[], concurrency: number, token: string): Promise<string[]> {
  const ids: string[] = new Array(bodies.length);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < bodies.length) {
      const i = next++;
      const r = await request(`${url}/api/funding/applications`, { method: 'POST', body: bodies[i], token });
      if (r.status !== 202) throw new Error(`POST ${r.status}: ${JSON.stringify(r.body)}`);
      ids[i] = r.body.id;
    }
  }));
  return ids;
}

/** A group's applications: how many are past `processing` (routed) and how many decided. */
async function progress(q: Query, group: string): Promise<{ routed: number; decided: number; total: number }> {
  const [r] = await q<{ routed: string; decided: string; total: string }>(
    `select count(*) filter (where status <> 'processing') as routed, count(*) filter (where status not in ('processing', 'risk_scoring')) as decided, count(*) as total
       from funding.applications where business_id like $1`, [`bench-${run}-${group}-%`]);
  return { routed: Number(r!.routed), decided: Number(r!.decided), total: Number(r!.total) };
}

/**
 * The lanes phase: a normal backlog queued, then high-priority applications one by one, each
 * timed from just before its POST to its decision (the row's history, same clock).
 */
async function lanesPhase(url: string, q: Query, token: string): Promise<string[]> {
  const normals = Number(process.env.BENCH_LANES_NORMAL ?? 1000);
  const highs = Number(process.env.BENCH_LANES_HIGH ?? 20);
  await postMany(url, Array.from({ length: normals }, (_, i) => body(i, 'ln')), 32, token);
  await eventually(async () => (await progress(q, 'ln')).routed === normals, { timeoutMs: 120_000, intervalMs: 100, what: 'the normal backlog routed' });
  const sent: { id: string; at: number; queued: number }[] = [];
  for (let i = 0; i < highs; i++) {
    const p = await progress(q, 'ln');
    const at = Date.now();
    const r = await request(`${url}/api/funding/applications`, { method: 'POST', body: { ...body(i, 'lh'), priority: 'high' }, token });
    if (r.status !== 202) throw new Error(`POST high ${r.status}: ${JSON.stringify(r.body)}`);
    sent.push({ id: r.body.id, at, queued: normals - p.decided });
    await new Promise((res) => setTimeout(res, 250));
  }
  await eventually(async () => (await progress(q, 'lh')).decided === highs, { timeoutMs: 120_000, intervalMs: 100, what: 'the high-priority applications decided' });
  const rows = await q<{ id: string; at: string }>(
    `select a.id, min(h ->> 'at') as at from funding.applications a, jsonb_array_elements(a.history) h
      where a.id = any($1::uuid[]) and h ->> 'status' in ('approved', 'rejected', 'pending_review') group by a.id`, [`{${sent.map((s) => s.id).join(',')}}`]);
  const decidedAt = new Map(rows.map((r) => [r.id, Date.parse(r.at)]));
  const ms = sent.map((s) => decidedAt.get(s.id)! - s.at);
  const left = await progress(q, 'ln');
  return [
    '',
    `lanes: ${highs} high-priority applications posted one every 250 ms behind ${normals} queued normal ones (still queued when each was posted: ${Math.min(...sent.map((s) => s.queued))}..${Math.max(...sent.map((s) => s.queued))}; ${normals - left.decided} still undecided after the last high one)`,
    '',
    '| measure | p50 | p95 | max | target |',
    '|---|---|---|---|---|',
    `| high priority: POST → decided (ms) | ${f(pct(ms, 50), 0)} | ${f(pct(ms, 95), 0)} | ${f(Math.max(...ms), 0)} | p95 ≤ 2000 |`,
  ];
}

/** The default `npm start`: every target in one child process. */
async function benchDefaultMode(): Promise<void> {
  const backlog = Number(process.env.BENCH_BACKLOG ?? 400);
  const nats = await startTestNats();
  const db = await createTestDatabase();
  const gw = await startGatewaySimulator({ port: 0, seed: 1 });
  const env: Record<string, string> = {
    TARGET: 'all', NATS_URL: nats.url, DATABASE_URL: db.url, PAYMENT_GATEWAY_URL: gw.url, FUNDING_RECONCILE_INTERVAL_MS: '0', LOG_LEVEL: 'warn', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000',
    FUNDING_RISK_THREADS: String(THREADS), FUNDING_RISK_NICE: NICE,
  };
  if (process.env.FUNDING_SCORING_PROCESS) env.FUNDING_SCORING_PROCESS = process.env.FUNDING_SCORING_PROCESS;
  // Not detached: in this session, as `npm start` typed in a shell runs.
  const svc = await spawnCluster(env);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code));
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const q: Query = async (sql, params) => (await pool.query(sql, params)).rows;
  // Several values of one scrape: prom-client resets its lag histogram at each scrape.
  const metrics = async (...names: string[]) => {
    const text = await (await fetch(`${svc.url}/metrics`)).text();
    return names.map((name) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ').at(-1)) : NaN;
    });
  };
  const metric = async (name: string) => (await metrics(name))[0]!;
  try {
    // Every /api route takes a token: the development admin's, from the identity this process runs.
    const token = await login(svc.url);
    await postMany(svc.url, Array.from({ length: 20 }, (_, i) => body(N + i, 'w')), 10, token);
    await eventually(async () => (await progress(q, 'w')).decided === 20, { timeoutMs: 120_000, intervalMs: 100, what: 'warm-up scored' });
    await postMany(svc.url, Array.from({ length: backlog }, (_, i) => body(N + 100 + i, 'k')), 32, token);
    await eventually(async () => (await progress(q, 'k')).routed === backlog, { timeoutMs: 120_000, intervalMs: 100, what: 'backlog routed' });
    const k0 = await progress(q, 'k');
    await metric('nodejs_eventloop_lag_p99_seconds'); // prom-client resets its lag histogram at each scrape: the window starts here
    const machine0 = machineCpu();
    const load = new Worker(new URL('./funding-load.ts', import.meta.url), {
      workerData: { url: svc.url, token, bodies: Array.from({ length: N }, (_, i) => body(i, 'b')), postRps: POST_RPS, statusRps: STATUS_RPS },
    });
    const messages: any[] = [];
    load.on('message', (m) => messages.push(m));
    const got = (phase: string) => eventually(() => messages.find((m) => m.phase === phase), { timeoutMs: 600_000, intervalMs: 50, what: phase });
    const posted = await got('posted');
    await new Promise((res) => setTimeout(res, 2000));
    load.postMessage('stop');
    const status = await got('status');
    await load.terminate();
    // Its values include the sampling interval (an idle loop reads EVENT_LOOP_SAMPLE_MS): the delay is what is beyond it.
    const [lagP50, lagP99, lagMax] = (await metrics('nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_max_seconds'))
      .map((x) => Math.max(0, x - EVENT_LOOP_SAMPLE_MS / 1000));
    const machine1 = machineCpu();
    const k1 = await progress(q, 'k');
    const b1 = await progress(q, 'b');
    const kvShare = (status.sources.kv ?? 0) / Object.values<number>(status.sources).reduce((a, n) => a + n, 0);
    const lines = [
      `default mode (\`npm start\`: TARGET=all in one child process${env.FUNDING_SCORING_PROCESS ? `, FUNDING_SCORING_PROCESS=${env.FUNDING_SCORING_PROCESS}` : ''}); ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}; ${THREADS} scoring threads at nice ${NICE}; a backlog of ${backlog} applications scoring, then ${N} POSTs at ${POST_RPS}/s (open loop) and status at ${STATUS_RPS}/s; machine busy ${f(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * 100)}%`,
      `scoring during the window: ${k1.decided - k0.decided} of the backlog and ${b1.decided} of the POSTed decided, ${backlog - k1.decided + N - b1.decided} still queued at the end (the pool never ran dry)`,
      '',
      '| measure | p50 | p95 | p99 | max | target |',
      '|---|---|---|---|---|---|',
      `| POST /api/funding/applications (ms), ${posted.postMs.length} requests, ${posted.postErrors} errors | ${f(pct(posted.postMs, 50))} | ${f(pct(posted.postMs, 95))} | ${f(pct(posted.postMs, 99))} | ${f(Math.max(...posted.postMs))} | p95 ≤ 50 |`,
      `| GET .../status from KV (ms), ${status.statusMs.length} requests, ${f(kvShare * 100)}% KV hits, ${status.statusErrors} errors | ${f(pct(status.statusMs, 50), 2)} | ${f(pct(status.statusMs, 95), 2)} | ${f(pct(status.statusMs, 99), 2)} | ${f(Math.max(...status.statusMs))} | p95 ≤ 10 |`,
      `| the service's event-loop delay over the window (ms beyond prom-client's ${EVENT_LOOP_SAMPLE_MS} ms sampling interval) | ${f(lagP50! * 1000)} | | ${f(lagP99! * 1000)} | ${f(lagMax! * 1000)} | |`,
    ];
    if (LANES) lines.push(...await lanesPhase(svc.url, q, token));
    console.log(lines.join('\n'));
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
}
