// bench:load: issue 15's load report. A mixed workload shaped like the seeds (orders through
// the saga, catalog browsing, order status polls, lending orders against the T24 simulator,
// funding applications paid out through the payment gateway simulator) sent through the
// gateway with real tokens (customers and investors registered and logged in through
// identity), open loop, phase after phase: 10,000 requests per minute for 10 minutes,
// spikes to 3x and 10x (1 minute each), then a 30-minute soak at 10K RPM. Then the
// correctness checks: every accepted order final and the books balanced (testing/books.ts),
// every lending order and funding application final, no T24 change applied twice.
//
// Deployed as on a small node: `node services/main.ts` children, one per group of targets
// (BENCH_LOAD_PROCESSES; `per-target` for one per target as k8s/base), the gateway in front,
// so CPU and memory are reported per process; a private nats-server
// and (by default) a private PostgreSQL 15, so their figures are this run's alone. The load
// generator is a child process of its own (bench/load-generator.ts); the simulators (payment
// gateway, SMS, SMTP, T24) run in this process.
//
// Environment (bench/load-plan.ts for the phases and the mix):
//   BENCH_LOAD_RPM (10000), BENCH_LOAD_{SUSTAINED,SPIKE3,SPIKE10,SOAK}_MIN (10, 1, 1, 30),
//   BENCH_LOAD_MINUTES_SCALE (1; 0.1 for a quick run), BENCH_LOAD_MIX ("kind=weight,..."),
//   BENCH_LOAD_CUSTOMERS (200), BENCH_LOAD_INVESTORS (20), BENCH_LOAD_SKUS (100),
//   BENCH_LOAD_LENDING_ITEMS (5 loans per lending order), BENCH_LOAD_T24_RPS (200: T24's cap),
//   BENCH_LOAD_POSTGRES (private | shared: a database on the machine's server),
//   BENCH_LOAD_PROCESSES (targets per process, ';' between processes; default five groups; per-target),
//   BENCH_LOAD_DRAIN_S (600: how long the backlog may take to finish after the last phase),
//   BENCH_LOAD_OUT (a file to write the report to as well as stdout), BENCH_LOAD_SEED (1),
//   BENCH_LOAD_WINDOW_S (10: the recovery table's window), BENCH_LOAD_ADMISSION (off: every
//   request taken on, the code before admission control), BENCH_LOAD_SHED_LAG_MS (1000).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import pg from 'pg';
import { connect } from '@nats-io/transport-node';
import { checkBooks, createTestDatabase, eventually, freePort, login, startTestNats, startTestPostgres, type TestPostgres } from '../services/testing/index.ts';
import { startGatewaySimulator } from '../services/simulators/gateway.ts';
import { startSmsSimulator } from '../services/simulators/sms.ts';
import { startSmtpSink } from '../services/simulators/smtp-sink.ts';
import { startT24Simulator } from '../services/simulators/t24.ts';
import { request } from './http-client.ts';
import type { FromGenerator, GeneratorConfig, PhaseSummary, WindowSummary } from './load-generator.ts';
import { fmt, KINDS, mixFrom, percentile, phasesFrom, table } from './load-plan.ts';
import { cpuSeconds, rssBytes, snapshot, type Snapshot } from './proc-cpu.ts';

const env = process.env;
const phases = phasesFrom(env);
const mix = mixFrom(env);
const int = (k: string, d: number) => (env[k] ? Number(env[k]) : d);
const CUSTOMERS = int('BENCH_LOAD_CUSTOMERS', 200);
const INVESTORS = int('BENCH_LOAD_INVESTORS', 20);
const SKUS = int('BENCH_LOAD_SKUS', 100);
const LENDING_ITEMS = int('BENCH_LOAD_LENDING_ITEMS', 5);
const T24_RPS = int('BENCH_LOAD_T24_RPS', 200);
const DRAIN_S = int('BENCH_LOAD_DRAIN_S', 600);
const WINDOW_S = int('BENCH_LOAD_WINDOW_S', 10);
const PRIVATE_PG = (env.BENCH_LOAD_POSTGRES ?? 'private') === 'private';
// The targets grouped into five processes (identity with admin; the commerce saga's seven;
// lending; funding; funding-scoring), the gateway last, in front of them all: on two cores one
// process per target (k8s/base's one Deployment each, BENCH_LOAD_PROCESSES=per-target) took
// 7.1 GB where five took 4.3-4.4 GB, and its latency at the base rate was worse
// (docs/load-test-report.md, tuning log): each process pays its own event loop, heap, pools,
// connections and heartbeats, and thirteen of them share two cores.
const PER_TARGET = 'identity;orders;notifications;admin;catalog;inventory;payments;shipping;saga;lending;funding;funding-scoring';
const GROUPED = 'identity,admin;catalog,orders,inventory,payments,shipping,saga,notifications;lending;funding;funding-scoring';
const GROUPS = (env.BENCH_LOAD_PROCESSES === 'per-target' ? PER_TARGET : env.BENCH_LOAD_PROCESSES ?? GROUPED)
  .split(';').map((g) => g.trim()).filter(Boolean);
const STOCK = 10_000_000;

const children: ChildProcess[] = [];
process.on('exit', () => { for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL'); });
// The private nats-server and Postgres outlive a crash unless stopped: a failed run must
// not leave them running on a shared box.
const cleanups: (() => Promise<void>)[] = [];
const fatal = async (err: unknown) => {
  console.error(err);
  for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c().catch(() => {});
  process.exit(2);
};
process.on('uncaughtException', (err) => void fatal(err));
process.on('unhandledRejection', (err) => void fatal(err));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const epoch = () => performance.timeOrigin + performance.now();
const log = (m: string) => console.error(`[load ${new Date().toISOString().slice(11, 19)}] ${m}`);

// ---- servers and simulators --------------------------------------------------------
const nats = await startTestNats();
cleanups.push(() => nats.stop());
let pgServer: TestPostgres | undefined;
let databaseUrl: string;
let dropDb: (() => Promise<void>) | undefined;
let dbName = 'orderflow';
if (PRIVATE_PG) {
  pgServer = await startTestPostgres();
  const server = pgServer;
  cleanups.push(() => server.stop());
  const admin = new pg.Client({ connectionString: pgServer.url.replace(/\/orderflow$/, '/postgres') });
  await admin.connect();
  await admin.query('CREATE DATABASE orderflow');
  // Thirteen processes with the default pool of 20 each: more than the default 100 connections.
  await admin.query('ALTER SYSTEM SET max_connections = 400');
  await admin.end();
  await pgServer.kill();
  await pgServer.restart();
  databaseUrl = pgServer.url;
} else {
  const db = await createTestDatabase('orderflow_load');
  databaseUrl = db.url;
  dbName = db.name;
  dropDb = db.drop;
  cleanups.push(() => db.drop());
}
const sink = await startSmtpSink({ port: 0, maxMessages: 5_000_000 });
const gw = await startGatewaySimulator({ port: 0, seed: 15 });
const sms = await startSmsSimulator({ port: 0, seed: 15 });
const t24 = await startT24Simulator({ port: 0, maxRps: T24_RPS, seed: 15 });
log(`nats ${nats.url}, postgres ${PRIVATE_PG ? `private on ${pgServer!.port}` : `shared, database ${dbName}`}`);

// ---- the cluster: one process per target, then the gateway ------------------------
type Proc = { name: string; url: string; child: ChildProcess };
const procs: Proc[] = [];
const baseEnv: Record<string, string> = {
  NATS_URL: nats.url, DATABASE_URL: databaseUrl, SMTP_URL: sink.url, PAYMENT_GATEWAY_URL: gw.url, SMS_URL: sms.url,
  T24_URL: t24.url, T24_MAX_RPS: String(T24_RPS), LOG_LEVEL: env.BENCH_LOAD_LOG_LEVEL ?? 'warn', HOST: '127.0.0.1',
  // The limiters run (their cost is in the figures) but out of the way: every anonymous call
  // (catalog browsing, register, login) comes from this one address, where production's come
  // from many; and the setup and the final checks read as one admin, whose per-principal
  // budget is split between the 13 processes (a limit holds summed over replicas). The
  // workload's own users stay far below the default 100/s each.
  RATE_LIMIT_ANON_RPS: '1000000', RATE_LIMIT_ANON_BURST: '1000000', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000',
  // As k8s/base/funding-scoring.yaml: piscina sized to the CPU limit, not the node's cores.
  FUNDING_RISK_THREADS: '2',
  // Admission control as k8s/base/config.yaml sets it; BENCH_LOAD_ADMISSION=off takes every
  // request on (the code before it), for a before/after pair.
  ...(env.BENCH_LOAD_ADMISSION === 'off'
    ? { HTTP_MAX_INFLIGHT: '100000', HTTP_QUEUE_MAX: '0', HTTP_SHED_LOOP_LAG_MS: '0' }
    : { HTTP_SHED_LOOP_LAG_MS: env.BENCH_LOAD_SHED_LAG_MS ?? '1000' }),
  ...(env.BENCH_LOAD_NODE_OPTIONS ? { NODE_OPTIONS: env.BENCH_LOAD_NODE_OPTIONS } : {}),
};
async function startProc(name: string, extra: Record<string, string>): Promise<Proc> {
  const port = await freePort();
  const child = spawn(process.execPath, [new URL('../services/main.ts', import.meta.url).pathname], {
    env: { ...process.env, ...baseEnv, ...extra, TARGET: name, PORT: String(port) }, stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
    return (await fetch(`${url}/readyz`).catch(() => null))?.ok;
  }, { timeoutMs: 180_000, intervalMs: 250, what: `${name} ready` });
  const p = { name, url, child };
  procs.push(p);
  return p;
}
const bootStarted = performance.now();
// Identity first: it creates the development admin everyone else's setup logs in as.
const identityGroup = GROUPS.find((g) => g.split(',').includes('identity'));
if (!identityGroup) throw new Error('BENCH_LOAD_PROCESSES must run identity somewhere');
const identity = await startProc(identityGroup, {});
// admin reaches identity and funding over HTTP (k8s/base/admin.yaml); the rest boot together.
const upstream = (target: string) => procs.find((p) => p.name.split(',').includes(target))?.url;
const rest = GROUPS.filter((g) => g !== identityGroup && !g.split(',').includes('admin'));
await Promise.all(rest.map((g) => startProc(g, {})));
const adminGroup = GROUPS.find((g) => g !== identityGroup && g.split(',').includes('admin'));
if (adminGroup) await startProc(adminGroup, { IDENTITY_URL: identity.url, ...(upstream('funding') ? { FUNDING_URL: upstream('funding')! } : {}) });
const targets = GROUPS.flatMap((g) => g.split(',').map((t) => t.trim()));
const gateway = await startProc('gateway', { ...(env.BENCH_LOAD_ADMISSION === 'off' ? { GATEWAY_MAX_INFLIGHT_PER_UPSTREAM: '100000' } : {}), GATEWAY_UPSTREAMS: targets.filter((t) => t !== 'funding-scoring').map((t) => `${t}=${upstream(t)}`).join(',') });
log(`${procs.length} processes ready in ${((performance.now() - bootStarted) / 1000).toFixed(0)} s`);

const G = gateway.url;
// The development admin's token for the setup and the checks: renewed in the background
// after 4 of its 10 minutes, one login at a time, a few tries apart. (A login that fails
// under load counts against the account's lockout, LOGIN_MAX_ATTEMPTS per 15 minutes, so
// the renewal must not storm; the old token stays good meanwhile.)
let adminTok: { token: string; at: number } = { token: await eventually(async () => await login(G).catch(() => ''), { timeoutMs: 60_000, what: 'admin login' }), at: Date.now() };
let renewing: Promise<void> | undefined;
const as = async () => {
  if (Date.now() - adminTok.at > 240_000 && !renewing) {
    renewing = (async () => {
      for (let i = 0; i < 6; i++) {
        try { adminTok = { token: await login(G), at: Date.now() }; return; } catch (err) { log(`admin token renewal: ${String(err)}`); await sleep(10_000); }
      }
    })().finally(() => { renewing = undefined; });
  }
  return adminTok.token;
};
await eventually(async () => (await request(`${G}/api/orders/00000000-0000-0000-0000-000000000000`, { token: await as() })).status === 404, { timeoutMs: 60_000, what: 'routes mounted' });

// ---- what the workload needs: products with stock, customers, investors ------------
async function mapLimit<T>(xs: T[], n: number, fn: (x: T, i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, xs.length) }, async () => { while (next < xs.length) { const i = next++; await fn(xs[i]!, i); } }));
}
const run = Date.now().toString(36);
const skus = Array.from({ length: SKUS }, (_, i) => `LOAD-${run}-${i}`);
const stock: Record<string, { start: number }> = {};
await mapLimit(skus, 8, async (sku, i) => {
  const r = await request(`${G}/api/products`, { method: 'POST', token: await as(), body: { sku, name: `Load item ${i % 10} no. ${i}`, description: 'load test stock', priceCents: 199 + i * 13, currency: 'EUR', stock: STOCK } });
  if (r.status !== 201) throw new Error(`product ${sku}: ${r.status} ${JSON.stringify(r.body)}`);
  stock[sku] = { start: STOCK };
});
type User = { id: string; email: string; password: string };
const register = async (kind: string, i: number): Promise<User> => {
  const u = { email: `${kind}-${i}-${run}@load.example.com`, password: 'correct-horse-battery-load', name: `${kind} ${i}` };
  const r = await request(`${G}/api/auth/register`, { method: 'POST', body: u });
  if (r.status !== 201) throw new Error(`register ${u.email}: ${r.status} ${JSON.stringify(r.body)}`);
  return { id: r.body.id, email: u.email, password: u.password };
};
const customers: User[] = [];
const investors: User[] = [];
await mapLimit(Array.from({ length: CUSTOMERS }, (_, i) => i), 4, async (i) => { customers.push(await register('customer', i)); });
await mapLimit(Array.from({ length: INVESTORS }, (_, i) => i), 4, async (i) => {
  const u = await register('investor', i);
  const r = await request(`${G}/api/admin/users/${u.id}/roles`, { method: 'PUT', token: await as(), body: { roles: ['investor'] } });
  if (r.status !== 200) throw new Error(`investor role: ${r.status} ${JSON.stringify(r.body)}`);
  investors.push(u);
});
log(`${SKUS} products, ${customers.length} customers, ${investors.length} investors`);

// ---- saga completion, as the saga announces it --------------------------------------
const nc = await connect({ servers: nats.url });
const doneAt = new Map<string, { at: number; status: string }>();
const sub = nc.subscribe('saga.done.>', {
  callback: (_err, m) => {
    const e = m.json<{ id: string; status: string }>();
    if (!doneAt.has(e.id)) doneAt.set(e.id, { at: epoch(), status: e.status });
  },
});

// ---- who is who, for CPU and memory ------------------------------------------------
type Component = { name: string; match: (p: { pid: number; cmd: string; ppid: number }) => boolean };
let postmaster = 0;
const findPostmaster = (s: Snapshot) => {
  if (!PRIVATE_PG) return;
  for (const [pid, v] of s) if (!v.cmd.startsWith('runuser') && v.cmd.includes('/bin/postgres -D') && v.cmd.includes(` -p ${pgServer!.port} `)) postmaster = pid;
};
let generatorPid = 0;
const components: Component[] = [
  { name: 'gateway', match: (p) => p.pid === gateway.child.pid },
  ...procs.filter((p) => p !== gateway).map((p) => ({ name: p.name, match: (q: { pid: number }) => q.pid === p.child.pid })),
  { name: 'nats-server (private)', match: (p) => p.cmd.startsWith('nats-server') && p.cmd.includes(` -p ${nats.port} `) },
  PRIVATE_PG
    ? { name: 'postgres (private: postmaster and backends)', match: (p) => p.pid === postmaster || (postmaster > 0 && p.ppid === postmaster) }
    // The machine's server: this database's backends, and its WAL and checkpoint processes whole.
    : { name: `postgres (shared: ${dbName} backends, WAL writer, checkpointer, bgwriter)`, match: (p) => p.cmd.includes(dbName) || /^postgres: (walwriter|checkpointer|background writer)/.test(p.cmd) },
  { name: 'load generator', match: (p) => p.pid === generatorPid },
  { name: 'bench process (simulators: payment gateway, SMS, SMTP, T24)', match: (p) => p.pid === process.pid },
];

// ---- the run -------------------------------------------------------------------------
const orders = new Map<string, { at: number; phase: number }>();
const lending: [string, number][] = [];
const uncertain: string[] = [];
const funding: [string, number][] = [];
const snaps: Snapshot[] = [];
const rssMax: number[][] = phases.map(() => components.map(() => 0));
const rssEnd: number[][] = phases.map(() => components.map(() => 0));
let current = -1;
const sampleRss = () => {
  if (current < 0 || current >= phases.length) return;
  const s = snapshot();
  findPostmaster(s);
  components.forEach((c, i) => { const v = rssBytes(s, c.match); rssMax[current]![i] = Math.max(rssMax[current]![i]!, v); rssEnd[current]![i] = v; });
};
const sampler = setInterval(sampleRss, 2000);
const phaseWall: number[] = [];

const generator = fork(new URL('./load-generator.ts', import.meta.url).pathname, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
children.push(generator);
generatorPid = generator.pid!;
const { phases: summaries, windows } = await new Promise<{ phases: PhaseSummary[]; windows: WindowSummary[] }>((resolve, reject) => {
  generator.on('message', (m: FromGenerator) => {
    if (m.type === 'ready') log('generator: every user logged in; load starts');
    else if (m.type === 'phase') {
      if (m.index > 0) sampleRss();
      const s = snapshot();
      findPostmaster(s);
      snaps[m.index] = s;
      phaseWall[m.index] = m.at;
      current = m.index;
      if (m.index < phases.length) log(`phase ${phases[m.index]!.name}: ${phases[m.index]!.rpm} RPM for ${phases[m.index]!.seconds} s`);
    } else if (m.type === 'accepted') {
      for (const [id, at, phase] of m.orders) orders.set(id, { at, phase });
      uncertain.push(...m.uncertain);
      lending.push(...m.lending);
      funding.push(...m.funding);
    } else if (m.type === 'sent') log('generator: every request sent; waiting for the last answers');
    else if (m.type === 'summaries') resolve(m);
  });
  generator.once('exit', (code) => reject(new Error(`load generator exited with ${code} before its report`)));
  const config: GeneratorConfig = { gatewayUrl: G, run, phases, mix, seed: int('BENCH_LOAD_SEED', 1), customers, investors, skus, lendingItems: LENDING_ITEMS, timeoutMs: 30_000, windowMs: WINDOW_S * 1000 };
  generator.send(config);
});
clearInterval(sampler);
// The generator's own figures first, so a failing check further on cannot lose them.
for (const s of summaries) log(`${s.name}: ${Object.entries(s.kinds).map(([k, v]) => `${k} ${v!.ok}/${v!.count} ok p50 ${fmt(v!.p50)} p99 ${fmt(v!.p99)}`).join('; ')}`);

// ---- drain: every accepted order, lending order and application to a final status -----
const drainStarted = performance.now();
const drainUntil = Date.now() + DRAIN_S * 1000;
log(`draining: ${orders.size} orders, ${lending.length} lending orders, ${funding.length} applications`);
await eventually(() => [...orders.keys()].every((id) => doneAt.has(id)), { timeoutMs: Math.max(1000, drainUntil - Date.now()), intervalMs: 1000, what: 'every saga finished' })
  .catch(() => log('not every saga finished in the drain time'));
const sagaDrainS = (performance.now() - drainStarted) / 1000;
const LENDING_FINAL = new Set(['SUCCESS', 'PARTIALLY_INVESTED', 'FAILED']);
const FUNDING_FINAL = new Set(['rejected', 'pending_review', 'disbursed', 'disbursement_failed']);
async function finals(ids: string[], path: (id: string) => string, final: Set<string>) {
  const seen = new Map<string, any>();
  let open = ids;
  for (;;) {
    const still: string[] = [];
    await mapLimit(open, 16, async (id) => {
      const r = await request(`${G}${path(id)}`, { token: await as() }).catch(() => null);
      if (r?.status === 200 && final.has(r.body.status)) seen.set(id, r.body); else still.push(id);
    });
    open = still;
    if (!open.length || Date.now() > drainUntil) return { seen, open };
    await sleep(2000);
  }
}
const lendingFinal = await finals(lending.map(([id]) => id), (id) => `/api/lending/orders/${id}`, LENDING_FINAL);
const fundingFinal = await finals(funding.map(([id]) => id), (id) => `/api/funding/applications/${id}`, FUNDING_FINAL);
const drainS = (performance.now() - drainStarted) / 1000;

// ---- correctness ----------------------------------------------------------------------
// An order create the generator gave up on (timeout, reset) or got a 5xx for may have been
// committed all the same: the books must count every order the system holds, so look each up.
const found: string[] = [];
const unresolved: string[] = [];
await mapLimit(uncertain, 16, async (orderId) => {
  // An answer other than 200 or 404 (the box still overloaded) is asked again.
  const r = await eventually(async () => {
    const a = await request(`${G}/api/orders?orderId=${encodeURIComponent(orderId)}`, { token: await as() }).catch(() => null);
    return a && (a.status === 200 || a.status === 404) ? a : undefined;
  }, { timeoutMs: 120_000, intervalMs: 1000, what: `order ${orderId} looked up` }).catch(() => undefined);
  if (!r) unresolved.push(orderId);
  else if (r.status === 200 && r.body?.id) found.push(r.body.id);
});
if (found.length) {
  await eventually(() => found.every((id) => doneAt.has(id)), { timeoutMs: Math.max(1000, drainUntil - Date.now()), intervalMs: 1000, what: 'the sagas of orders accepted unseen' })
    .catch(() => log('not every saga of an order accepted unseen finished in the drain time'));
}
log(`checking the books (${found.length} of ${uncertain.length} order creates without a 202 were accepted all the same)`);
const booksInput = {
  baseUrl: G, orders: [...orders.keys(), ...found], stock, netCharged: (ref: string) => gw.sim.netCharged(ref), token: as,
  mailIds: () => sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body), concurrency: 16,
};
const failedBooks = (err: unknown) => ({ ok: false, problems: [`the check itself failed: ${String(err)}`], counts: { orders: 0, shipped: 0, failed: 0, unfinished: 0, mailResends: 0, byReason: {} } });
let books = await checkBooks(booksInput).catch(failedBooks);
// The sagas are done by now; a re-check only waits for a late mail or SMS (each pass reads every order).
for (let i = 0; i < 3 && !books.ok; i++) { await sleep(5000); books = await checkBooks(booksInput).catch(failedBooks); }
const t24Stats = t24.sim.stats({ perLoan: true });
const twice = Object.entries(t24Stats.appliedPerLoan ?? {}).filter(([, a]) => a.reserve > 1 || a.invest > 1);

// ---- the report -----------------------------------------------------------------------
const out: string[] = [];
const say = (s = '') => out.push(s);
const cores = availableParallelism();
const scale = Number(env.BENCH_LOAD_MINUTES_SCALE ?? 1);
say(`## bench:load, ${new Date().toISOString().slice(0, 16)}Z${scale !== 1 ? ` (BENCH_LOAD_MINUTES_SCALE=${scale})` : ''}`);
say();
say(`Machine: ${cores} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, nats-server 2.9.10 (private), PostgreSQL 15 (${PRIVATE_PG ? 'private server, fsync off as the test helper starts it' : `the machine's server, database ${dbName}`}). ` +
  `${procs.length} \`node services/main.ts\` processes (${procs.map((p) => p.name).join('; ')}); load generator in its own process; simulators in the bench process. ` +
  `${customers.length} customers, ${investors.length} investors, ${SKUS} products, ${LENDING_ITEMS} loans per lending order, T24 capped at ${T24_RPS} calls/s.`);
say();
say(`Mix per 100 requests: ${KINDS.filter((k) => mix[k] > 0).map((k) => `${k} ${mix[k]}`).join(', ')}. Open loop: latency counts from each request's scheduled send time.`);
say();
say('### Latency by phase and kind (ms, from the scheduled send time)');
for (const s of summaries) {
  say();
  const total = Object.values(s.kinds).reduce((n, k) => n + k!.count, 0);
  say(`**${s.name}**: ${s.offered} requests offered in ${fmt(s.seconds)} s (${fmt((s.offered / s.seconds) * 60)} RPM); generator send lag p99 ${fmt(s.sendLagP99, 1)} ms, max ${fmt(s.sendLagMax, 1)} ms; ${s.tokenRenewals} token renewals.`);
  say();
  say(table(['kind', 'requests', '2xx', 'p50', 'p95', 'p99', 'max', 'not 2xx (by status)'],
    [...KINDS.filter((k) => s.kinds[k]).map((k) => {
      const v = s.kinds[k]!;
      const bad = Object.entries(v.statuses).filter(([st]) => !/^2\d\d$/.test(st)).map(([st, n]) => `${st}: ${n}`).join(', ');
      return [k, v.count, v.ok, fmt(v.p50), fmt(v.p95), fmt(v.p99), fmt(v.max), bad || '0'];
    }), ['all', total, Object.values(s.kinds).reduce((n, k) => n + k!.ok, 0), '', '', '', '', '']]));
}
say();
// Recovery: from just before the first spike to a few minutes into the soak, window by window.
{
  const startOf = (i: number) => phases.slice(0, i).reduce((t, p) => t + p.seconds, 0);
  const spike = phases.findIndex((p) => p.name.startsWith('spike'));
  const soak = phases.findIndex((p) => p.name.startsWith('soak'));
  const from = spike >= 0 ? startOf(spike) - 3 * WINDOW_S : 0;
  const to = soak >= 0 ? startOf(soak) + Math.min(phases[soak]!.seconds, 180) : Infinity;
  say(`### Around the spikes, ${WINDOW_S} s windows (all kinds, by due time; 503 = shed by admission control or a dependency)`);
  say();
  say(table(['from s', 'phase', 'offered', '2xx', '503', 'timeout', 'other errors', 'p50', 'p95'],
    windows.filter((w) => w.startS >= from && w.startS < to).map((w) => [w.startS, phases[w.phase]?.name ?? '', w.offered, w.ok, w.shed, w.timeout, w.otherErrors, fmt(w.p50), fmt(w.p95)])));
  say();
}
say('### Saga completion (202 accepted → SHIPPED or FAILED, ms), by the phase the order was accepted in');
say();
say(table(['phase', 'accepted', 'finished', 'p50', 'p95', 'p99', 'max', 'unfinished'], phases.map((p, i) => {
  const lat = [...orders].filter(([id, o]) => o.phase === i && doneAt.has(id)).map(([id, o]) => doneAt.get(id)!.at - o.at);
  const accepted = [...orders.values()].filter((o) => o.phase === i).length;
  return [p.name, accepted, lat.length, fmt(percentile(lat, 50)), fmt(percentile(lat, 95)), fmt(percentile(lat, 99)), fmt(lat[lat.length - 1] ?? NaN), accepted - lat.length];
})));
say();
const serverMs = (a: string | undefined, b: string | undefined) => (a && b ? Date.parse(b) - Date.parse(a) : NaN);
say('### Lending orders and funding applications (accepted → final status, ms, from the server\'s timestamps)');
say();
say(table(['phase', 'lending orders', 'final', 'p50', 'p95', 'p99', 'applications', 'final', 'p50', 'p95', 'p99'], phases.map((p, i) => {
  const l = lending.filter(([, ph]) => ph === i).map(([id]) => lendingFinal.seen.get(id)).filter(Boolean);
  const lLat = l.map((o) => serverMs(o.createdAt, o.completedAt)).filter(Number.isFinite);
  const f = funding.filter(([, ph]) => ph === i).map(([id]) => fundingFinal.seen.get(id)).filter(Boolean);
  const fLat = f.map((o) => serverMs(o.createdAt, o.updatedAt)).filter(Number.isFinite);
  return [p.name, lending.filter(([, ph]) => ph === i).length, l.length, fmt(percentile(lLat, 50)), fmt(percentile(lLat, 95)), fmt(percentile(lLat, 99)),
    funding.filter(([, ph]) => ph === i).length, f.length, fmt(percentile(fLat, 50)), fmt(percentile(fLat, 95)), fmt(percentile(fLat, 99))];
})));
say();
say('### CPU and memory per component');
for (const [i, p] of phases.entries()) {
  const a = snaps[i]!;
  const b = snaps[i + 1]!;
  const wall = ((phaseWall[i + 1] ?? epoch()) - phaseWall[i]!) / 1000;
  const requests = summaries[i] ? Object.values(summaries[i]!.kinds).reduce((n, k) => n + k!.count, 0) : 0;
  const cpu = components.map((c) => cpuSeconds(a, b, c.match));
  const ours = cpu.reduce((s, x) => s + x, 0);
  const all = cpuSeconds(a, b, () => true);
  say();
  say(`**${p.name}** (${fmt(wall, 1)} s wall, ${requests} requests; the box has ${cores} cores = ${fmt(cores * wall)} CPU s):`);
  say();
  say(table(['component', 'CPU s', '% of one core', 'CPU ms per request', 'RSS MB at end', 'RSS MB max'], [
    ...components.map((c, j) => [c.name, fmt(cpu[j]!, 1), fmt((cpu[j]! / wall) * 100), fmt((cpu[j]! * 1000) / Math.max(1, requests), 2), fmt(rssEnd[i]![j]! / 2 ** 20), fmt(rssMax[i]![j]! / 2 ** 20)]),
    ['**all of the above**', fmt(ours, 1), fmt((ours / wall) * 100), fmt((ours * 1000) / Math.max(1, requests), 2), fmt(rssEnd[i]!.reduce((s, x) => s + x, 0) / 2 ** 20), ''],
    ['everything else on the box (other sessions)', fmt(all - ours, 1), fmt(((all - ours) / wall) * 100), '', '', ''],
  ]));
}
say();
say('### Correctness at the end');
say();
const lendingCounts: Record<string, number> = {};
for (const o of lendingFinal.seen.values()) lendingCounts[o.status] = (lendingCounts[o.status] ?? 0) + 1;
const fundingCounts: Record<string, number> = {};
for (const o of fundingFinal.seen.values()) fundingCounts[o.status] = (fundingCounts[o.status] ?? 0) + 1;
const ok = books.ok && unresolved.length === 0 && lendingFinal.open.length === 0 && fundingFinal.open.length === 0 && twice.length === 0;
say(`- Commerce books over ${books.counts.orders} accepted orders: **${books.ok ? 'balanced' : 'NOT balanced'}** (shipped ${books.counts.shipped}, failed ${JSON.stringify(books.counts.byReason)}, unfinished ${books.counts.unfinished}); every SHIPPED order charged its total, every FAILED one net 0, stock conserved over ${SKUS} SKUs, no mail or SMS twice. Mails ${sink.messages().length}, SMS ${sms.sim.messages().length}.`);
if (!books.ok) for (const pr of books.problems.slice(0, 10)) say(`  - ${pr}`);
say(`- Order creates without a 202 (timeout, reset or 5xx): ${uncertain.length}; of these ${found.length} had been accepted all the same (the client gave up after the commit) and are in the books above${unresolved.length ? `; **${unresolved.length} could not be looked up**` : ''}.`);
say(`- Lending: ${lendingFinal.seen.size} of ${lending.length} orders final ${JSON.stringify(lendingCounts)}; T24 applied ${t24Stats.applied.reserve} reserves and ${t24Stats.applied.invest} invests, ${twice.length} loans changed twice; ${t24Stats.rateLimited} calls answered 429.`);
say(`- Funding: ${fundingFinal.seen.size} of ${funding.length} applications final ${JSON.stringify(fundingCounts)}.`);
say(`- Drain after the last phase: sagas ${fmt(sagaDrainS, 1)} s, everything ${fmt(drainS, 1)} s (limit ${DRAIN_S} s).`);
say();
say(ok ? 'Every check passed.' : '**Some check failed** (see above).');
const report = out.join('\n');
console.log(`\n${report}\n`);
if (env.BENCH_LOAD_OUT) writeFileSync(env.BENCH_LOAD_OUT, `${report}\n`);

// ---- stop -------------------------------------------------------------------------------
sub.unsubscribe();
await nc.close();
for (const p of [...procs].reverse()) {
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
}
await Promise.all([gw.close(), sms.close(), sink.close(), t24.close()]);
await nats.stop();
if (pgServer) await pgServer.stop(); else await dropDb?.();
process.exit(ok ? 0 : 1);
