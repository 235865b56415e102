// bench:saga: orders through the whole commerce saga (reserve, charge, ship, mail and
// SMS) on this machine, beside the intake ceiling (bare POST /api/orders, orders
// service alone) measured in the same run; then a scarce-stock burst (many orders
// for few units) with the books checked at the end. The cluster runs as two child
// processes (`node services/main.ts`, the commerce targets split in two, see below); the
// load generator, the payment gateway, SMS and SMTP simulators run in this process.
//
// BENCH_SAGA_SUSTAINED (orders/s offered first, below saturation, default 60),
// BENCH_SAGA_RATE (orders/s offered next, default 300), BENCH_SAGA_OVER (then above the
// target, default 330; 0 skips it), BENCH_SAGA_SECONDS (default 20),
// BENCH_INTAKE_SECONDS (default 10), BENCH_SCARCE_ORDERS (default 600), BENCH_SPLIT=0 (all
// commerce targets in one process instead of two).
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import autocannon from 'autocannon';
import { connect } from '@nats-io/transport-node';
import { createTestDatabase, eventually, freePort, login, startTestNats, checkBooks, withIdentity } from '../services/testing/index.ts';
import { startGatewaySimulator } from '../services/simulators/gateway.ts';
import { startSmsSimulator } from '../services/simulators/sms.ts';
import { startSmtpSink } from '../services/simulators/smtp-sink.ts';
import { request } from './http-client.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';
import { startOtlpReceiver } from './otlp-receiver.ts';
import pg from 'pg';

const RATE = Number(process.env.BENCH_SAGA_RATE ?? 300);
const SUSTAINED = Number(process.env.BENCH_SAGA_SUSTAINED ?? 60);
const SECONDS = Number(process.env.BENCH_SAGA_SECONDS ?? 20);
const INTAKE_SECONDS = Number(process.env.BENCH_INTAKE_SECONDS ?? 10);
const SCARCE_ORDERS = Number(process.env.BENCH_SCARCE_ORDERS ?? 600);
const OVER = Number(process.env.BENCH_SAGA_OVER ?? 330);
const SPLIT = process.env.BENCH_SPLIT !== '0';
// Every service the commerce flow touches (lending and funding stay out of the measurement).
const COMMERCE = process.env.BENCH_TARGET ?? 'orders,notifications,admin,catalog,inventory,payments,shipping,saga';
process.on('exit', () => { for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL'); });
process.on('uncaughtException', (err) => { console.error(err); process.exit(2); });
process.on('unhandledRejection', (err) => { console.error(err); process.exit(2); });

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Env = Record<string, string>;
const children: ChildProcess[] = [];
// Every /api route takes a token: the process that serves orders runs identity too, and the
// development admin logs in there; the token is good in every process on the same database.
let token: string | undefined;
async function startCluster(env: Env): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const edge = !env.TARGET || env.TARGET.split(',').includes('orders');
  const child = spawn(process.execPath, [new URL('../services/main.ts', import.meta.url).pathname], {
    // The limiter runs, out of the way: one bench principal and one address send everything.
    env: { ...process.env, LOG_LEVEL: 'warn', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000', ...env, ...(edge ? { TARGET: withIdentity(env.TARGET) ?? 'all' } : {}), PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok, { timeoutMs: 60_000, what: 'cluster ready' });
  // Ready means provisioned; routes answer 503 until every service is mounted.
  if (edge) {
    token = await eventually(async () => await login(url).catch(() => undefined), { timeoutMs: 60_000, what: 'development admin logged in' });
    await eventually(async () => (await fetch(`${url}/api/orders/00000000-0000-0000-0000-000000000000`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null))?.status === 404, { timeoutMs: 60_000, what: 'routes mounted' });
  }
  return {
    url, pid: child.pid!,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
    },
  };
}

const post = (url: string, path: string, body: unknown) => request(url + path, { method: 'POST', body, token });

const rows: string[] = [];
const row = (cells: (string | number)[]) => rows.push(`| ${cells.join(' | ')} |`);
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '–');

// ---- 1. Intake ceiling ------------------------------------------------------------
{
  const nats = await startTestNats();
  const db = await createTestDatabase('orderflow_bench');
  const c = await startCluster({ NATS_URL: nats.url, DATABASE_URL: db.url, TARGET: 'orders' });
  const run = Date.now().toString(36);
  let n = 0;
  const load = (duration: number) => autocannon({
    url: `${c.url}/api/orders`, connections: 32, duration,
    requests: [{
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      setupRequest: (req: any) => ({ ...req, body: JSON.stringify({ orderId: `I-${run}-${n++}`, email: 'bench@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] }) }),
    } as any],
  });
  await load(3);
  const r = await load(INTAKE_SECONDS);
  row(['intake ceiling: bare `POST /api/orders` (TARGET=orders, 32 connections)', fmt(r.requests.average), fmt(r.latency.p50), fmt(r.latency.p97_5 ?? NaN), fmt(r.latency.p99), `${r.errors + r.timeouts} errors, ${r.non2xx} non-2xx`]);
  await c.stop();
  await nats.stop();
  await db.drop();
}

// ---- 2. The saga at a steady offered rate ----------------------------------------
const nats = await startTestNats();
const db = await createTestDatabase('orderflow_bench');
const sink = await startSmtpSink({ port: 0 });
const gw = await startGatewaySimulator({ port: 0, seed: 11 });
const sms = await startSmsSimulator({ port: 0, seed: 11 });
// BENCH_TRACING=ratio: the cluster traces that share of the orders (parentbased_traceidratio)
// and exports them by OTLP (BENCH_TRACING_PROTOCOL, default http/protobuf) to a receiver in
// this process; BENCH_TRACE_DUMP=file (with http/json) writes the spans there for a look.
const receiver = process.env.BENCH_TRACING ? await startOtlpReceiver({ keep: Boolean(process.env.BENCH_TRACE_DUMP) }) : null;
const clusterEnv = {
  NATS_URL: nats.url, DATABASE_URL: db.url, SMTP_URL: sink.url, PAYMENT_GATEWAY_URL: gw.url, SMS_URL: sms.url,
  DB_POOL_MAX: process.env.DB_POOL_MAX ?? '40',
  ...(receiver ? {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: process.env.BENCH_TRACING_PROTOCOL ?? 'http/protobuf',
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: process.env.BENCH_TRACING,
  } : {}),
  // BENCH_PROFILE=dir writes a V8 CPU profile of the cluster process(es) there.
  ...(process.env.BENCH_PROFILE ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROFILE}` } : {}),
};
// The commerce targets run as two processes, one per core (k8s/ gives every target its
// own Deployment of the one image): the HTTP edge with orders and notifications, and the
// saga's actors. One Node process is one event loop, and one core cannot carry 300
// sagas/s. BENCH_SPLIT=0 runs them all in one process.
const EDGE = 'orders,notifications,admin,catalog';
const ACTORS = 'inventory,payments,shipping,saga';
const c = await startCluster({ ...clusterEnv, TARGET: SPLIT ? EDGE : COMMERCE });
const second = SPLIT ? await startCluster({ ...clusterEnv, TARGET: ACTORS }) : null;
const nc = await connect({ servers: nats.url });
// BENCH_DEBUG=1 prints each consumer's backlog every 2 s (where the saga waits).
if (process.env.BENCH_DEBUG) {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(nc);
  setInterval(async () => {
    const parts: string[] = [];
    for (const [stream, consumer] of [['ORDERS', 'saga'], ['INVENTORY', 'inventory'], ['SAGA_REPLIES', 'saga'], ['PAYMENTS', 'payments'], ['SHIPPING', 'shipping'], ['SAGA', 'orders'], ['SAGA', 'notifications'], ['ORDERS', 'notifications']] as const) {
      const i = await jsm.consumers.info(stream, consumer).catch(() => null);
      if (i) parts.push(`${stream}/${consumer} ${i.num_pending}+${i.num_ack_pending}`);
    }
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${parts.join('  ')}`);
  }, 2000).unref();
}
const doneAt = new Map<string, { at: number; status: string }>();
const sub = nc.subscribe('saga.done.>', {
  callback: (_err, m) => {
    const e = m.json<{ id: string; status: string }>();
    if (!doneAt.has(e.id)) doneAt.set(e.id, { at: performance.now(), status: e.status });
  },
});

const stock: Record<string, { start: number }> = {};
const SKUS = Array.from({ length: 20 }, (_, i) => `BENCH-${i}`);
for (const [i, sku] of SKUS.entries()) {
  const r = await post(c.url, '/api/products', { sku, name: `Bench item ${i}`, description: 'benchmark stock', priceCents: 100 + i * 37, currency: 'USD', stock: 1_000_000 });
  if (r.status !== 201) throw new Error(`product: ${r.status} ${JSON.stringify(r.body)}`);
  stock[sku] = { start: 1_000_000 };
}

async function drive(opts: { rate: number; seconds?: number; count?: number; items: (i: number) => { sku: string; quantity: number }[]; token?: (i: number) => string }) {
  const acceptedAt = new Map<string, number>();
  const total = opts.count ?? Math.round(opts.rate * (opts.seconds ?? 0));
  const started = performance.now();
  const inflight = new Set<Promise<void>>();
  let errors = 0;
  const run = Math.random().toString(36).slice(2, 8);
  let lastSentAt = started;
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / opts.rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    const sentAt = performance.now();
    lastSentAt = sentAt;
    const p = (async () => {
      try {
        const r = await post(c.url, '/api/orders', { orderId: `S-${run}-${i}`, email: 'bench@example.com', phone: i % 2 ? '+15550002222' : undefined, paymentToken: opts.token?.(i) ?? 'tok_visa', items: opts.items(i) });
        if (r.status === 202) acceptedAt.set(r.body.id, sentAt); else errors++;
      } catch { errors++; }
    })();
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  }
  await Promise.all(inflight);
  const offeredSeconds = (performance.now() - started) / 1000;
  // What the generator managed: the rate of its sends (timers on a busy box can lag).
  const sentPerSecond = total > 1 ? (total - 1) / ((lastSentAt - started) / 1000) : NaN;
  await eventually(() => [...acceptedAt.keys()].every((id) => doneAt.has(id)), { timeoutMs: 300_000, intervalMs: 250, what: 'every saga finished' })
    .catch(() => console.error('not every saga finished within 300 s'));
  const lat = [...acceptedAt].filter(([id]) => doneAt.has(id)).map(([id, at]) => doneAt.get(id)!.at - at);
  const lastDone = Math.max(...[...acceptedAt.keys()].map((id) => doneAt.get(id)?.at ?? 0));
  const finished = [...acceptedAt.keys()].filter((id) => doneAt.has(id));
  // Completions per second in the steady state: over the middle 90% of completions, so
  // neither the ramp-up (the first sagas are still in flight) nor the tail after the last
  // send counts. First send to last completion is kept beside it: a run that kept up
  // shows offered × seconds ÷ (seconds + the last saga's latency) there.
  const doneTimes = finished.map((id) => doneAt.get(id)!.at).sort((a, b) => a - b);
  const lo = Math.floor(doneTimes.length * 0.05);
  const hi = Math.max(lo + 1, Math.ceil(doneTimes.length * 0.95) - 1);
  const steadyPerSecond = doneTimes.length >= 20 ? (hi - lo) / ((doneTimes[hi]! - doneTimes[lo]!) / 1000) : NaN;
  return {
    acceptedAt, errors, offeredSeconds, sentPerSecond, lat, finished,
    shipped: finished.filter((id) => doneAt.get(id)!.status === 'SHIPPED').length,
    steadyPerSecond,
    completedPerSecond: finished.length / ((lastDone - started) / 1000),
  };
}

// Warm-up: JIT, pools, consumers.
await drive({ rate: 100, seconds: 3, items: (i) => [{ sku: SKUS[i % SKUS.length]!, quantity: 1 }] });
const mixed = (i: number) => [{ sku: SKUS[i % SKUS.length]!, quantity: 1 + (i % 3) }, ...(i % 4 === 0 ? [{ sku: SKUS[(i * 7) % SKUS.length]!, quantity: 1 }] : [])];
// First below saturation (latency as a customer sees it), then at the target rate (throughput).
const sustained = await drive({ rate: SUSTAINED, seconds: SECONDS, items: mixed });
row([`saga, ${SUSTAINED}/s offered for ${SECONDS} s: 202 → SHIPPED (completed sagas/s, middle 90%)`, fmt(sustained.steadyPerSecond), fmt(pct(sustained.lat, 50)), fmt(pct(sustained.lat, 95)), fmt(pct(sustained.lat, 99)),
  `${sustained.acceptedAt.size} accepted, ${sustained.shipped} shipped, ${sustained.acceptedAt.size - sustained.finished.length} unfinished, ${sustained.errors} errors; ${fmt(sustained.completedPerSecond)}/s first send to last completion`]);
const cpuBefore = snapshot();
const steady = await drive({ rate: RATE, seconds: SECONDS, items: mixed });
const cpuAfter = snapshot();
// Where the CPU of the steady run went, per finished saga (every process on the box shares 2 cores).
const clusterPids = new Set([c.pid, second?.pid]);
const perSaga = (match: (p: { pid: number; cmd: string }) => boolean) => fmt((cpuSeconds(cpuBefore, cpuAfter, match) * 1000) / Math.max(1, steady.finished.length), 2);
const cpuLine = `CPU per saga in the ${RATE}/s run (ms): cluster ${perSaga((p) => clusterPids.has(p.pid))}, nats-server ${perSaga((p) => p.cmd.includes('nats-server'))}, ` +
  `postgres ${perSaga((p) => p.cmd.includes('postgres'))}, bench process (load generator, gateway, SMS and SMTP simulators) ${perSaga((p) => p.pid === process.pid)}, ` +
  `everything ${perSaga(() => true)}.`;
row([`saga, ${RATE}/s offered for ${SECONDS} s: 202 → SHIPPED (completed sagas/s, middle 90%)`, fmt(steady.steadyPerSecond), fmt(pct(steady.lat, 50)), fmt(pct(steady.lat, 95)), fmt(pct(steady.lat, 99)),
  `${steady.acceptedAt.size} accepted, ${steady.shipped} shipped, ${steady.acceptedAt.size - steady.finished.length} unfinished, ${steady.errors} errors; sent at ${fmt(steady.sentPerSecond)}/s; ${fmt(steady.completedPerSecond)}/s first send to last completion`]);

// Above the target: at 300/s offered the completions can only approach 300/s; offered
// more, they show what the system sustains (and, once the backlog grows, its ceiling).
if (OVER > 0) {
  const over = await drive({ rate: OVER, seconds: SECONDS, items: mixed });
  row([`saga, ${OVER}/s offered for ${SECONDS} s (above the target)`, fmt(over.steadyPerSecond), fmt(pct(over.lat, 50)), fmt(pct(over.lat, 95)), fmt(pct(over.lat, 99)),
    `${over.acceptedAt.size} accepted, ${over.shipped} shipped, ${over.acceptedAt.size - over.finished.length} unfinished, ${over.errors} errors; sent at ${fmt(over.sentPerSecond)}/s`]);
}

// Where a saga's time goes: each order's history (orders.orders.history) stamps its steps as
// the saga recorded them, so 202 -> STOCK_RESERVED -> PAID -> SHIPPED splits the latency
// into the three legs (each: the saga's command out through the outbox, the service's
// consumer, its reply back through the outbox, the saga's next step); the rest is the
// done event reaching the bench.
const hopRows: string[] = [];
async function hops(name: string, run: { acceptedAt: Map<string, number> }) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows: [r] } = await client.query(`
      with h as (
        select o.created_at as p,
          (select (e->>'at')::timestamptz from jsonb_array_elements(o.history) e where e->>'status' = 'STOCK_RESERVED' limit 1) as r,
          (select (e->>'at')::timestamptz from jsonb_array_elements(o.history) e where e->>'status' = 'PAID' limit 1) as pd,
          (select (e->>'at')::timestamptz from jsonb_array_elements(o.history) e where e->>'status' = 'SHIPPED' limit 1) as s
        from orders.orders o where o.id = any($1::uuid[]))
      select percentile_cont(array[0.5, 0.95]) within group (order by extract(epoch from r - p) * 1000) as reserve,
             percentile_cont(array[0.5, 0.95]) within group (order by extract(epoch from pd - r) * 1000) as pay,
             percentile_cont(array[0.5, 0.95]) within group (order by extract(epoch from s - pd) * 1000) as ship
      from h where s is not null`, [[...run.acceptedAt.keys()]]);
    const f = (v: number[] | null) => (v ? `${fmt(v[0]!)} / ${fmt(v[1]!)}` : '–');
    hopRows.push(`| ${name} | ${f(r.reserve)} | ${f(r.pay)} | ${f(r.ship)} |`);
  } finally {
    await client.end();
  }
}
await hops(`${SUSTAINED}/s`, sustained);
await hops(`${RATE}/s`, steady);

// ---- 3. Scarce stock: many orders for few units ------------------------------------
const SCARCE = ['SCARCE-A', 'SCARCE-B', 'SCARCE-C'];
for (const sku of SCARCE) {
  await post(c.url, '/api/products', { sku, name: sku, description: 'few units', priceCents: 999, currency: 'USD', stock: 40 });
  stock[sku] = { start: 40 };
}
const scarce = await drive({
  rate: 2000, count: SCARCE_ORDERS,
  items: (i) => [{ sku: SCARCE[i % 3]!, quantity: 1 + (i % 3) }, ...(i % 5 === 0 ? [{ sku: SCARCE[(i + 1) % 3]!, quantity: 1 }] : [])],
  token: (i) => (i % 10 === 0 ? 'tok_declined' : 'tok_visa'),
});
row([`scarce stock: ${SCARCE_ORDERS} orders at once for 3 × 40 units`, fmt(scarce.completedPerSecond), fmt(pct(scarce.lat, 50)), fmt(pct(scarce.lat, 95)), fmt(pct(scarce.lat, 99)),
  `${scarce.shipped} shipped, ${scarce.finished.length - scarce.shipped} failed, ${scarce.acceptedAt.size - scarce.finished.length} unfinished`]);

// ---- 4. The books, over every order of the run --------------------------------------
await sleep(2000);
const all = [...new Set([...sustained.acceptedAt.keys(), ...steady.acceptedAt.keys(), ...scarce.acceptedAt.keys()])];
const warmups = [...doneAt.keys()].filter((id) => !all.includes(id));
let books = await checkBooks({
  baseUrl: c.url, inventoryUrl: second?.url, orders: [...all, ...warmups], stock, netCharged: (ref) => gw.sim.netCharged(ref),
  mailIds: () => sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body), concurrency: 32,
});
for (let i = 0; i < 20 && !books.ok; i++) {
  await sleep(1000);
  books = await checkBooks({ baseUrl: c.url, inventoryUrl: second?.url, orders: [...all, ...warmups], stock, netCharged: (ref) => gw.sim.netCharged(ref), mailIds: () => sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body), concurrency: 32 });
}

console.log(`\n## saga\n`);
console.log(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, nats-server 2.9.10, PostgreSQL 15; cluster = ${SPLIT ? `two \`node services/main.ts\` children (TARGET=${EDGE} and TARGET=${ACTORS})` : `one \`node services/main.ts\` child (TARGET=${COMMERCE})`}; load generator and simulators in the bench process.\n`);
console.log('| scenario | per second | p50 ms | p95 ms (intake: p97.5) | p99 ms | notes |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`\n${cpuLine}`);
console.log('\n| saga legs, p50 / p95 ms | 202 → STOCK_RESERVED | → PAID | → SHIPPED |');
console.log('|---|---|---|---|');
for (const r of hopRows) console.log(r);
console.log(`\nBooks over ${books.counts.orders} orders: ${books.ok ? 'balanced' : 'NOT balanced'} (shipped ${books.counts.shipped}, failed ${JSON.stringify(books.counts.byReason)}, unfinished ${books.counts.unfinished}).`);
if (!books.ok) console.log(books.problems.slice(0, 20).map((p) => `- ${p}`).join('\n'));
console.log(`Gateway: ${gw.sim.stats().applied.charges} charges, ${gw.sim.stats().applied.refunds} refunds; mails ${sink.messages().length}; SMS ${sms.sim.messages().length}.`);

if (receiver) {
  const st = receiver.stats();
  console.log(`Tracing: ${process.env.BENCH_TRACING} of the orders sampled; the receiver got ${st.spans || '?'} spans in ${st.requests} exports (${(st.bytes / 1e6).toFixed(1)} MB).`);
  if (process.env.BENCH_TRACE_DUMP) (await import('node:fs')).writeFileSync(process.env.BENCH_TRACE_DUMP, JSON.stringify(receiver.spans()));
  await receiver.close();
}
sub.unsubscribe();
await nc.close();
await c.stop();
await second?.stop();
await Promise.all([gw.close(), sms.close(), sink.close()]);
await nats.stop();
// BENCH_KEEP_DB=1 keeps the database for a look at each saga's history afterwards.
if (process.env.BENCH_KEEP_DB) console.log(`kept database ${db.url}`); else await db.drop();
for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL');
process.exit(books.ok ? 0 : 1);
