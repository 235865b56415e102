// bench:funding-connections: many live status connections (SSE and WebSocket mixed) held
// against the default `npm start` (TARGET=all in one child process, its scoring pool in
// the supervised child process it starts), and how fast a status change reaches them.
//
// 1. Warm-up applications scored (JIT, pools, streams).
// 2. The scoring process is paused (SIGSTOP), and BENCH_APPS applications are POSTed:
//    the router moves each to risk_scoring and there they wait.
// 3. BENCH_CONNECTIONS connections open over those applications (BENCH_WS_SHARE of them
//    WebSocket, default half, the rest SSE; spread evenly, so each application has
//    several watchers), BENCH_OPEN_CONCURRENCY handshakes at a time, from
//    BENCH_CLIENT_THREADS worker threads of this process: the service's process holds
//    only its side of them. Each connection's first status is the current one.
// 4. The service's RSS and V8 heap used, before the connections and 2 s after the last
//    one opened, divided by the connections (no forced GC: what the process holds).
// 5. The scoring process resumes (SIGCONT): every application is decided at the pool's
//    pace, and each decision fans out to its watchers. Delivery delay = arrival on the
//    connection − the row's updatedAt (set when the decision is written; same clock),
//    so it covers the commit, the outbox relay, NATS, the hub's fan-out and the socket.
//    Approved applications change twice more (disbursing, disbursed): each counts.
//    The first decisions come only after the ack_wait of the requests the paused process
//    held, so the span from SIGCONT to the last decision says nothing about scoring speed.
// BENCH_FANOUT=0 stops after step 4 (memory and setup cost only, e.g. one kind alone).
// The scoring process runs at FUNDING_RISK_NICE=0 here unless set: niced on a loaded
// machine it decided a few applications a second, and the run took most of an hour.
//
// The service's CPU over each phase comes from /proc (robust to a loaded machine).
// Tables are printed as markdown for docs/benchmarks.md.
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { sampleRiskInput } from '../services/funding/risk-pool.ts';
import { VALID_IBAN } from '../services/funding/test-fixtures.ts';
import { startGatewaySimulator } from '../services/simulators/gateway.ts';
import { createTestDatabase, eventually, spawnCluster, startTestNats } from '../services/testing/index.ts';
import { request } from './http-client.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10_000);
const APPS = Number(process.env.BENCH_APPS ?? 1500);
const THREADS = Number(process.env.BENCH_CLIENT_THREADS ?? 2);
/** The share of WebSocket connections (the rest SSE); 0 and 1 measure one kind alone. */
const WS_SHARE = Number(process.env.BENCH_WS_SHARE ?? 0.5);
const CONCURRENCY = Number(process.env.BENCH_OPEN_CONCURRENCY ?? 50);
const run = Date.now().toString(36);
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const pct = (s: number[], p: number) => (s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN);

const body = (i: number, group: string) => {
  const r = sampleRiskInput(i);
  return {
    businessId: `conn-${run}-${group}-${i}`, businessName: `Conn ${i} Ltd`, contactEmail: 'cfo@bench.test',
    amount: r.amount, currency: r.currency, termMonths: r.termMonths, purpose: 'working capital', financials: r.financials,
    bankAccount: { iban: VALID_IBAN, holderName: `Conn ${i} Ltd` },
  };
};

/** Resident set of a process (bytes), from /proc. */
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
/** The children of a process, from /proc. */
const childrenOf = (pid: number) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
  try { const s = readFileSync(`/proc/${p}/stat`, 'utf8'); return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid; } catch { return false; }
});

const nats = await startTestNats();
const db = await createTestDatabase();
const gw = await startGatewaySimulator({ port: 0, seed: 1 });
const svc = await spawnCluster({
  TARGET: 'all', NATS_URL: nats.url, DATABASE_URL: db.url, PAYMENT_GATEWAY_URL: gw.url, FUNDING_RECONCILE_INTERVAL_MS: '0', LOG_LEVEL: 'warn',
  // The scoring process at the same priority as the rest: it is what makes the status changes
  // here, and niced on a loaded machine it decides a few applications a second at best.
  FUNDING_RISK_NICE: process.env.FUNDING_RISK_NICE ?? '0',
});
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code));
const pool = new pg.Pool({ connectionString: db.url, max: 2 });
const token = (await svc.authHeaders()).authorization!.slice('Bearer '.length);
const metric = async (name: string) => {
  const text = await (await fetch(`${svc.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').at(-1)) : NaN;
};
const count = async (group: string, where: string) => Number((await pool.query(
  `select count(*) as n from funding.applications where business_id like $1 and ${where}`, [`conn-${run}-${group}-%`])).rows[0].n);
const postAll = async (bodies: unknown[]) => {
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < bodies.length) {
      const r = await request(`${svc.url}/api/funding/applications`, { method: 'POST', body: bodies[next++], token });
      if (r.status !== 202) throw new Error(`POST ${r.status}: ${JSON.stringify(r.body)}`);
    }
  }));
};
let scoringPid: number | undefined;
const workers: Worker[] = [];
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (scoringPid) try { process.kill(scoringPid, 'SIGCONT'); } catch { /* gone */ }
  await Promise.all(workers.map((w) => w.terminate()));
  await svc.sigterm();
  await pool.end();
  await gw.close();
  await db.drop().catch(() => {});
  await nats.stop();
}
try {
  console.error(`bench:funding-connections: ${CONNECTIONS} connections over ${APPS} applications, ${THREADS} client threads; load average ${load()}`);
  await postAll(Array.from({ length: 20 }, (_, i) => body(i, 'w')));
  await eventually(async () => (await count('w', `status not in ('processing', 'risk_scoring')`)) === 20, { timeoutMs: 120_000, intervalMs: 200, what: 'warm-up scored' });
  scoringPid = (await eventually(() => childrenOf(svc.pid).find((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('main.ts')), { what: 'the scoring process' }))!;
  process.kill(scoringPid, 'SIGSTOP');
  // Whatever happens, the scoring process does not stay stopped.
  process.once('exit', () => { try { process.kill(scoringPid!, 'SIGCONT'); } catch { /* gone */ } });

  await postAll(Array.from({ length: APPS }, (_, i) => body(i, 'a')));
  await eventually(async () => (await count('a', `status = 'risk_scoring'`)) === APPS, { timeoutMs: 120_000, intervalMs: 200, what: 'applications waiting in risk_scoring' });
  const ids = (await pool.query(`select id from funding.applications where business_id like $1 order by business_id`, [`conn-${run}-a-%`])).rows.map((r) => r.id as string);

  // Connection c watches application (c × a stride) mod APPS: every application gets CONNECTIONS/APPS watchers, of both kinds.
  const conns = Array.from({ length: CONNECTIONS }, (_, c) => ({ id: ids[(c * 7919) % ids.length]!, kind: (c % 100) < WS_SHARE * 100 ? 'ws' as const : 'sse' as const }));
  await new Promise((r) => setTimeout(r, 1000));
  const heap0 = await metric('nodejs_heap_size_used_bytes');
  const rss0 = rss(svc.pid);
  const cpuOpen0 = snapshot();
  const messages: any[] = [];
  for (let t = 0; t < THREADS; t++) {
    const w = new Worker(new URL('./funding-connections-client.ts', import.meta.url), {
      workerData: { url: svc.url, token, conns: conns.filter((_, c) => c % THREADS === t), concurrency: Math.ceil(CONCURRENCY / THREADS) },
    });
    w.on('message', (m) => messages.push(m));
    w.on('error', (err) => console.error('client thread failed', err));
    workers.push(w);
  }
  const all = async (phase: string) => (await eventually(() => { const got = messages.filter((m) => m.phase === phase); return got.length === THREADS ? got : undefined; }, { timeoutMs: 600_000, intervalMs: 100, what: phase }))!;
  const opened = await all('opened');
  const cpuOpen1 = snapshot();
  const openCount = opened.reduce((s, m) => s + m.open, 0);
  const openErrors: Record<string, number> = {};
  for (const m of opened) for (const [k, v] of Object.entries<number>(m.errors)) openErrors[k] = (openErrors[k] ?? 0) + v;
  const openMs = Math.max(...opened.map((m) => m.openMs));
  const loadOpen = load();
  await new Promise((r) => setTimeout(r, 2000));
  const heap1 = await metric('nodejs_heap_size_used_bytes');
  const rss1 = rss(svc.pid);
  console.error(`opened ${openCount} of ${CONNECTIONS} in ${f(openMs / 1000)} s, errors ${JSON.stringify(openErrors)}; RSS ${f(rss0 / 2 ** 20)} → ${f(rss1 / 2 ** 20)} MiB, heap ${f(heap0 / 2 ** 20)} → ${f(heap1 / 2 ** 20)} MiB; load ${loadOpen}`);
  const svcCpu = (a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>) => cpuSeconds(a, b, (p) => p.pid === svc.pid);

  if (process.env.BENCH_FANOUT === '0') {
    // Memory and setup only (e.g. one kind alone, BENCH_WS_SHARE=0 or 1).
    console.log([
      `| connections (${f(100 - WS_SHARE * 100, 0)}% SSE) | open / errors | service CPU per connection opened | RSS per connection | V8 heap per connection | load average |`,
      '|---|---|---|---|---|---|',
      `| ${CONNECTIONS} over ${APPS} applications | ${openCount} / ${Object.values(openErrors).reduce((a, n) => a + n, 0)} | ${f((svcCpu(cpuOpen0, cpuOpen1) * 1e6) / Math.max(1, openCount), 0)} µs | ${f((rss1 - rss0) / Math.max(1, openCount) / 1024)} KiB | ${f((heap1 - heap0) / Math.max(1, openCount) / 1024)} KiB | ${loadOpen} |`,
    ].join('\n'));
    await cleanup();
    process.exit(0);
  }
  // 5. Scoring resumes; every waiting application is decided and fans out.
  const cpuFan0 = snapshot();
  const fanT0 = Date.now();
  process.kill(scoringPid, 'SIGCONT');
  await eventually(async () => (await count('a', `status <> 'risk_scoring'`)) === APPS, { timeoutMs: 600_000, intervalMs: 250, what: 'all decided' });
  const decidedMs = Date.now() - fanT0;
  // The last deliveries: until no more arrive (or every open connection got its change).
  let last = -1;
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const w of workers) w.postMessage('report');
    const progress = (await eventually(() => { const got = messages.filter((m) => m.phase === 'progress'); return got.length >= THREADS ? got : undefined; }, { what: 'progress' }))!;
    messages.splice(0, messages.length, ...messages.filter((m) => m.phase !== 'progress'));
    const changed = progress.reduce((s, m) => s + m.changed, 0);
    if (changed >= openCount || changed === last) break;
    last = changed;
  }
  const cpuFan1 = snapshot();
  const loadFan = load();
  for (const w of workers) w.postMessage('collect');
  const collected = await all('collected');
  const delays = collected.flatMap((m) => m.delays as number[]).sort((a, b) => a - b);
  const ofKind = (k: string) => collected.flatMap((m) => (m.delays as number[]).filter((_, j) => m.kinds[j] === k)).sort((a, b) => a - b);
  const row = (what: string, d: number[]) => `| ${what} | ${d.length} | ${f(pct(d, 50), 0)} | ${f(pct(d, 95), 0)} | ${f(pct(d, 99), 0)} | ${f(d.at(-1)!, 0)} | ${f((d.filter((x) => x <= 1000).length / Math.max(1, d.length)) * 100)}% | p95 ≤ 1000 |`;
  const changed = delays.length;
  const reached = collected.reduce((s, m) => s + m.reached, 0);
  const ats = collected.flatMap((m) => m.changedAt as number[]);
  const spanS = (Math.max(...ats) - Math.min(...ats)) / 1000;
  const clientCpuS = collected.reduce((s, m) => s + m.cpuMs, 0) / 1000;

  const perConn = (a: number, b: number) => (b - a) / Math.max(1, openCount);
  const lines = [
    `live status connections against the default \`npm start\` (TARGET=all child process, scoring in its supervised child); ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}; ${CONNECTIONS} connections (${f(100 - WS_SHARE * 100, 0)}% SSE, ${f(WS_SHARE * 100, 0)}% WebSocket) over ${APPS} applications (${f(CONNECTIONS / APPS)} each), opened ${CONCURRENCY} at a time from ${THREADS} client threads in the bench process; status changes by scoring (the pool decides every watched application once the connections are open)`,
    '',
    '| measure | value |',
    '|---|---|',
    `| connections open / attempted | ${openCount} / ${CONNECTIONS} |`,
    `| connection setup errors | ${Object.values(openErrors).reduce((s, n) => s + n, 0)}${Object.keys(openErrors).length ? ` (${Object.entries(openErrors).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} |`,
    `| time to open all (first status received on each) | ${f(openMs / 1000, 1)} s; the service's CPU ${f(svcCpu(cpuOpen0, cpuOpen1), 1)} s, ${f((svcCpu(cpuOpen0, cpuOpen1) * 1e6) / Math.max(1, openCount), 0)} µs per connection; load average ${loadOpen} |`,
    `| service RSS before / with the connections | ${f(rss0 / 2 ** 20)} / ${f(rss1 / 2 ** 20)} MiB: **${f(perConn(rss0, rss1) / 1024)} KiB per connection** |`,
    `| service V8 heap used before / with the connections | ${f(heap0 / 2 ** 20)} / ${f(heap1 / 2 ** 20)} MiB: **${f(perConn(heap0, heap1) / 1024)} KiB per connection** |`,
    `| scoring resumed → all ${APPS} applications decided | ${f(decidedMs / 1000, 1)} s (the first decisions wait out the ack_wait of the messages the paused process held) |`,
    `| status changes delivered (decisions, then disbursing/disbursed for approvals), over the span of their updatedAt | ${changed} deliveries to ${reached} connections in ${f(spanS, 1)} s: ${f(changed / Math.max(0.001, spanS), 0)} deliveries/s |`,
    `| the service's CPU while fanning out | ${f(svcCpu(cpuFan0, cpuFan1), 1)} s, ${f((svcCpu(cpuFan0, cpuFan1) * 1e6) / Math.max(1, changed), 0)} µs per delivery (with the router, outbox relay, status cache and disbursement work of the decisions); load average ${loadFan} |`,
    `| the client threads' CPU (whole run) | ${f(clientCpuS, 1)} s |`,
    '',
    '| status change (row updatedAt) → received on the connection (ms) | deliveries | p50 | p95 | p99 | max | within 1 s | target |',
    '|---|---|---|---|---|---|---|---|',
    row('every delivery', delays),
    row('SSE', ofKind('sse')),
    row('WebSocket', ofKind('ws')),
  ];
  console.log(lines.join('\n'));
} catch (err) {
  console.error(`the service's last output:\n${svc.output()}`);
  throw err;
} finally {
  await cleanup();
}
process.exit(0);
