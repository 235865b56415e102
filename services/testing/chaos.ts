// The chaos suite: the whole system as separate processes, on servers of its own, under a
// mixed workload through the API gateway with real tokens, while faults drawn from a seed
// hit it one at a time; then the invariants. `npm run chaos` (bench/chaos.ts) runs it for
// minutes, services/chaos.test.ts for one short round in CI.
//
//   workload ──► gateway process ──[api proxy]──► services process (TARGET=all)
//                                                   ├─[postgres proxy]─► private Postgres
//                                                   ├─[nats proxy]─────► private nats-server
//                                                   ├─[t24 proxy]──────► T24 simulator
//                                                   ├─[payments proxy]─► payment gateway simulator
//                                                   └─ SMTP sink, SMS simulator (no faults)
//
// Faults: kill -9 of nats-server, of Postgres (postmaster and backends), Postgres stopped
// immediately (SIGQUIT, as `pg_ctl stop -m immediate`), kill -9 of the services or the
// gateway process (each started again), and latency, resets or a black hole on one proxy.
// After each fault heals, a probe order (and, for T24, a probe lending order) must go
// through end to end: the time that takes is the fault's recovery time.
import pg from 'pg';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { freePort, startTestNats, startTestPostgres, type TestNats, type TestPostgres } from './servers.ts';
import { spawnCluster, type SpawnedCluster } from './cluster.ts';
import { FAST_ENV } from './commerce.ts';
import { checkBooks, type BooksReport } from './books.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';
import { createRandom } from '../simulators/serve.ts';
import { applicationBody, rejectedBody } from '../funding/test-fixtures.ts';

export const PROCESS_FAULTS = ['kill9:nats', 'kill9:postgres', 'immediate:postgres', 'kill9:services', 'kill9:gateway'] as const;
export const PROXIES = ['postgres', 'nats', 't24', 'payments', 'api'] as const;
export const NETWORK_FAULTS = PROXIES.flatMap((p) => [`latency:${p}`, `reset:${p}`, `blackhole:${p}`] as const);
export type FaultKind = (typeof PROCESS_FAULTS)[number] | `${'latency' | 'reset' | 'blackhole'}:${(typeof PROXIES)[number]}`;

export type PlannedFault = { kind: FaultKind; durationMs: number; latencyMs?: number; gapMs: number };

export type ChaosOptions = {
  seed: number;
  /** Stop starting new faults this long after the first one (the schedule is cut there). */
  durationMs: number;
  /** The schedule: this many faults at most, each kind once before any repeats. */
  faults: number;
  /** Each fault lasts between these (ms). */
  faultMs: [number, number];
  /** Pause after each recovery before the next fault (ms). */
  gapMs: [number, number];
  /** Concurrent workload clients, and the requests per second they send together (paced, so the
   *  backlog a probe waits behind comes from the faults, not from a load beyond the box). */
  clients: number;
  rps: number;
  /** Longest wait for a probe to go through after a fault heals, and for the final drain. */
  recoveryTimeoutMs: number;
  drainTimeoutMs: number;
  /** Only these kinds (default all). */
  kinds?: FaultKind[];
  log?: (line: string) => void;
};

export type FaultResult = PlannedFault & {
  startedAt: number;
  /** Heal to the first 202 of the probe order, and to its final status (null: not within recoveryTimeoutMs). */
  firstAcceptMs: number | null;
  recoveryMs: number | null;
  /** What the workload saw between the fault's start and its recovery. */
  during: Counts;
};

type Counts = { accepted: number; refused: number; errors: number; statuses: Record<string, number> };
export type Invariant = { name: string; ok: boolean; detail: string };
export type ChaosReport = {
  seed: number; schedule: PlannedFault[]; faults: FaultResult[]; invariants: Invariant[]; ok: boolean;
  /** The probe's time with no fault (before the first). */
  baselineMs: number | null;
  workload: Record<'order' | 'funding' | 'lending', Counts>; books?: BooksReport; setupMs: number; elapsedMs: number;
};

/** The fault schedule of a seed: shuffled decks of the kinds, one after another, with durations and gaps. */
export function planFaults(o: Pick<ChaosOptions, 'seed' | 'faults' | 'faultMs' | 'gapMs' | 'kinds'>): PlannedFault[] {
  const rnd = createRandom(o.seed);
  const between = ([lo, hi]: [number, number]) => Math.round(lo + rnd() * (hi - lo));
  const kinds: FaultKind[] = o.kinds ?? [...PROCESS_FAULTS, ...NETWORK_FAULTS];
  const out: PlannedFault[] = [];
  while (out.length < o.faults) {
    const deck = [...kinds];
    for (let i = deck.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [deck[i], deck[j]] = [deck[j]!, deck[i]!]; }
    for (const kind of deck) {
      if (out.length >= o.faults) break;
      const f: PlannedFault = { kind, durationMs: between(o.faultMs), gapMs: between(o.gapMs) };
      if (kind.startsWith('latency:')) f.latencyMs = 100 + Math.round(rnd() * 700);
      out.push(f);
    }
  }
  return out;
}

export const describeFault = (f: PlannedFault) => `${f.kind}${f.latencyMs ? ` (+${f.latencyMs} ms)` : ''} for ${(f.durationMs / 1000).toFixed(1)} s`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const newCounts = (): Counts => ({ accepted: 0, refused: 0, errors: 0, statuses: {} });
const ORDER_FINAL = ['SHIPPED', 'FAILED'];
const LENDING_FINAL = ['SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'];
const FUNDING_FINAL = ['disbursed', 'rejected', 'disbursement_failed'];
// Targets the gateway sends on (services/gateway/routes.ts): all served by the one services process.
const TARGETS = ['identity', 'orders', 'catalog', 'inventory', 'lending', 'funding', 'admin'];

type Answer = { status: number; body: any };

/** A call with a deadline: a black hole must cost the caller a timeout, not the run. */
async function call(url: string, method: string, path: string, o: { body?: unknown; token?: string; timeoutMs?: number } = {}): Promise<Answer> {
  const res = await fetch(url + path, {
    method,
    headers: { ...(o.body === undefined ? {} : { 'content-type': 'application/json' }), ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
    signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
  });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body };
}

/** Retry `fn` until it gives a value (setup and probes ride out the faults and restarts). */
async function retry<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try { const v = await fn(); if (v !== undefined) return v; } catch (err) { last = err; }
    await sleep(250);
  }
  throw new Error(`${what}: not done in ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const schedule = planFaults(o);
  log(`chaos seed ${o.seed}: schedule (${schedule.length} faults; no new fault ${Math.round(o.durationMs / 1000)} s after the first)`);
  schedule.forEach((f, i) => log(`  ${String(i + 1).padStart(2)}. ${describeFault(f)}, then ${(f.gapMs / 1000).toFixed(1)} s after recovery`));

  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    // The servers, private to this run: killing them touches nobody else.
    const [pgServer, nats, sink, payments, sms, t24] = await Promise.all([
      startTestPostgres(), startTestNats(), startSmtpSink({ port: 0 }),
      startGatewaySimulator({ port: 0, seed: o.seed, latencyMs: { min: 2, max: 20 } }),
      startSmsSimulator({ port: 0, seed: o.seed }),
      startT24Simulator({ port: 0, seed: o.seed, latencyMs: { min: 2, max: 15 } }),
    ]) as [TestPostgres, TestNats, SmtpSink, RunningGatewaySimulator, Awaited<ReturnType<typeof startSmsSimulator>>, RunningT24Simulator];
    cleanups.push(() => pgServer.stop(), () => nats.stop(), () => sink.close(), () => payments.close(), () => sms.close(), () => t24.close());

    const servicesPort = await freePort();
    const gatewayPort = await freePort();
    const proxies = Object.fromEntries(await Promise.all(([
      ['postgres', pgServer.port], ['nats', nats.port], ['t24', t24.port], ['payments', payments.port], ['api', servicesPort],
    ] as const).map(async ([name, targetPort]) => [name, await startFaultProxy({ name, targetPort })] as const))) as Record<(typeof PROXIES)[number], FaultProxy>;
    for (const p of Object.values(proxies)) cleanups.push(() => p.close());

    const env = {
      ...FAST_ENV, TARGET: 'all', PORT: String(servicesPort), LOG_LEVEL: 'error',
      NATS_URL: proxies.nats.url(nats.url), DATABASE_URL: proxies.postgres.url(pgServer.url),
      T24_URL: proxies.t24.url(t24.url), PAYMENT_GATEWAY_URL: proxies.payments.url(payments.url),
      SMTP_URL: sink.url, SMS_URL: sms.url, DB_POOL_MAX: '20',
      FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '1000', FUNDING_STUCK_AFTER_MS: '8000',
      T24_MAX_RPS: '150', LENDING_BATCH_SIZE: '50', T24_HEARTBEAT_MS: '250',
    };
    const gatewayEnv = {
      TARGET: 'gateway', PORT: String(gatewayPort), LOG_LEVEL: 'error',
      NATS_URL: env.NATS_URL, DATABASE_URL: env.DATABASE_URL, GATEWAY_TIMEOUT_MS: '10000',
      GATEWAY_UPSTREAMS: TARGETS.map((t) => `${t}=${proxies.api.url(`http://127.0.0.1:${servicesPort}`)}`).join(','),
    };
    const procs: { services?: SpawnedCluster; gateway?: SpawnedCluster } = {};
    cleanups.push(async () => { await procs.gateway?.kill9(); await procs.services?.kill9(); });
    // A loaded box can take well over the usual 30 s to boot TARGET=all.
    const start = async (which: 'services' | 'gateway') => {
      procs[which] = await spawnCluster(which === 'services' ? env : gatewayEnv, { identity: which === 'services', readyTimeoutMs: 120_000 });
    };
    // Side by side: the gateway does not need its upstream to be ready (a call before then is a 502).
    await Promise.all([start('services'), start('gateway')]);
    const url = procs.gateway!.url;
    const setupMs = Date.now() - t0;
    log(`up in ${(setupMs / 1000).toFixed(1)} s: gateway ${url}, services :${servicesPort}, postgres :${pgServer.port}, nats :${nats.port}`);

    // Real tokens: the development admin (products, reads), a customer (orders, funding), an investor (lending).
    const login = (email: string, password: string) => retry(`login ${email}`, 60_000, async () => {
      const r = await call(url, 'POST', '/api/auth/login', { body: { email, password } });
      return r.status === 200 ? r.body.accessToken as string : undefined;
    });
    const tokens = new Map<string, { token: string; at: number; email: string; password: string }>();
    const token = async (who: string) => {
      const t = tokens.get(who)!;
      // Access tokens last 10 minutes; renew at 4, and keep the old one while a fault stops the renewal.
      if (Date.now() - t.at > 240_000) {
        try { tokens.set(who, { ...t, token: await login(t.email, t.password), at: Date.now() }); } catch { /* next time */ }
      }
      return tokens.get(who)!.token;
    };
    tokens.set('admin', { token: await login('admin@orderflow.local', 'orderflow-dev-admin'), at: Date.now(), email: 'admin@orderflow.local', password: 'orderflow-dev-admin' });
    const users: Record<string, { id: string; email: string }> = {};
    for (const role of ['customer', 'investor']) {
      const email = `chaos-${role}-${o.seed}@example.com`;
      const password = 'correct-horse-battery';
      const reg = await retry(`register ${role}`, 60_000, async () => {
        const r = await call(url, 'POST', '/api/auth/register', { body: { email, password, name: `Chaos ${role}` } });
        return r.status === 201 ? r.body : undefined;
      });
      if (role !== 'customer') {
        await retry(`roles of ${role}`, 60_000, async () => (await call(url, 'PUT', `/api/admin/users/${reg.id}/roles`, { body: { roles: [role] }, token: await token('admin') })).status === 200 ? true : undefined);
      }
      users[role] = { id: reg.id, email };
      tokens.set(role, { token: await login(email, password), at: Date.now(), email, password });
    }

    const stock: Record<string, { start: number }> = { 'CHAOS-A': { start: 100_000 }, 'CHAOS-B': { start: 100_000 }, 'CHAOS-SCARCE': { start: 40 } };
    for (const [sku, s] of Object.entries(stock)) {
      await retry(`product ${sku}`, 60_000, async () => {
        const r = await call(url, 'POST', '/api/products', { body: { sku, name: sku, description: 'chaos', priceCents: 700, currency: 'USD', stock: s.start }, token: await token('admin') });
        return r.status === 201 ? true : undefined;
      });
    }

    // The workload.
    const rnd = createRandom(o.seed ^ 0x5eed);
    const workload = { order: newCounts(), funding: newCounts(), lending: newCounts() };
    const window = { c: newCounts() }; // what the workload sees while the current fault lasts
    const orderAttempts = new Map<string, 'accepted' | 'unknown'>();
    const acceptedOrders = new Set<string>();
    const lendingOrders = new Set<string>();
    let loanSeq = 0;
    const count = (c: Counts, status: number | 'error') => {
      if (status === 'error') c.errors++; else if (status === 202) c.accepted++; else c.refused++;
      const k = String(status);
      c.statuses[k] = (c.statuses[k] ?? 0) + 1;
    };
    const placeOrder = async (counts: Counts | undefined, over: Record<string, unknown> = {}) => {
      const orderId = `CH-${o.seed}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      const skus = Object.keys(stock);
      const body = {
        orderId, email: users.customer!.email, phone: '+15551234567', paymentToken: rnd() < 0.1 ? 'tok_declined' : 'tok_visa',
        items: [{ sku: skus[Math.floor(rnd() * skus.length)]!, quantity: 1 + Math.floor(rnd() * 2) }], ...over,
      };
      orderAttempts.set(orderId, 'unknown');
      try {
        const r = await call(url, 'POST', '/api/orders', { body, token: await token('customer') });
        if (counts) { count(counts, r.status); count(window.c, r.status); }
        if (r.status === 202) { orderAttempts.set(orderId, 'accepted'); acceptedOrders.add(r.body.id); return r.body.id as string; }
        // A 4xx means not accepted; a 5xx (a 502 from the gateway whose upstream died) may hide a commit.
        if (r.status < 500) orderAttempts.delete(orderId);
      } catch { if (counts) { count(counts, 'error'); count(window.c, 'error'); } }
      return undefined;
    };
    const placeLending = async (counts: Counts | undefined, n = 3) => {
      const items = Array.from({ length: n }, () => ({ loanId: `L-${o.seed}-${String(++loanSeq).padStart(6, '0')}`, amount: 10 }));
      try {
        const r = await call(url, 'POST', '/api/lending/orders', { body: { investorId: users.investor!.id, items }, token: await token('investor') });
        if (counts) { count(counts, r.status); count(window.c, r.status); }
        if (r.status === 202) { lendingOrders.add(r.body.id); return r.body.id as string; }
      } catch { if (counts) { count(counts, 'error'); count(window.c, 'error'); } }
      return undefined;
    };
    const placeFunding = async (counts: Counts) => {
      const body = rnd() < 0.25 ? rejectedBody() : applicationBody();
      try {
        const r = await call(url, 'POST', '/api/funding/applications', { body, token: await token('customer') });
        count(counts, r.status); count(window.c, r.status);
      } catch { count(counts, 'error'); count(window.c, 'error'); }
    };
    let stopping = false;
    const clients = Array.from({ length: o.clients }, async () => {
      while (!stopping) {
        const r = rnd();
        if (r < 0.6) await placeOrder(workload.order);
        else if (r < 0.85) await placeFunding(workload.funding);
        else await placeLending(workload.lending);
        await sleep((o.clients / o.rps) * 1000 * (0.5 + rnd()));
      }
    });

    // A probe through the whole system: its first 202 and its final status, after a heal.
    const probe = async (fault: PlannedFault, healedAt: number) => {
      const until = healedAt + o.recoveryTimeoutMs;
      const left = () => until - Date.now();
      let firstAcceptMs: number | null = null;
      const id = await retry('probe order accepted', Math.max(left(), 1), () => placeOrder(undefined, { paymentToken: 'tok_visa', items: [{ sku: 'CHAOS-A', quantity: 1 }] })).catch(() => undefined);
      if (!id) return { firstAcceptMs, recoveryMs: null };
      firstAcceptMs = Date.now() - healedAt;
      const final = await retry('probe order final', Math.max(left(), 1), async () => {
        const r = await call(url, 'GET', `/api/orders/${id}`, { token: await token('customer'), timeoutMs: 5000 });
        return ORDER_FINAL.includes(r.body?.status) ? true : undefined;
      }).catch(() => false);
      if (!final) return { firstAcceptMs, recoveryMs: null };
      if (fault.kind.endsWith(':t24')) {
        const lid = await retry('probe lending accepted', Math.max(left(), 1), () => placeLending(undefined, 1)).catch(() => undefined);
        const done = lid && await retry('probe lending final', Math.max(left(), 1), async () => {
          const r = await call(url, 'GET', `/api/lending/orders/${lid}`, { token: await token('investor'), timeoutMs: 5000 });
          return LENDING_FINAL.includes(r.body?.status) ? true : undefined;
        }).catch(() => false);
        if (!done) return { firstAcceptMs, recoveryMs: null };
      }
      return { firstAcceptMs, recoveryMs: Date.now() - healedAt };
    };

    const inject = async (f: PlannedFault): Promise<() => Promise<void>> => {
      const [what, target] = f.kind.split(':') as [string, string];
      if (what === 'kill9' && target === 'nats') { await nats.kill(); return () => nats.restart(); }
      if (what === 'kill9' && target === 'postgres') { await pgServer.kill9(); return () => pgServer.restart(); }
      if (what === 'immediate' && target === 'postgres') { await pgServer.kill(); return () => pgServer.restart(); }
      if (what === 'kill9' && (target === 'services' || target === 'gateway')) {
        await procs[target]!.kill9();
        procs[target] = undefined;
        return () => start(target);
      }
      const proxy = proxies[target as (typeof PROXIES)[number]];
      proxy.set(what === 'latency' ? { kind: 'latency', latencyMs: f.latencyMs! } : { kind: what as 'reset' | 'blackhole' });
      return async () => proxy.set({ kind: 'none' });
    };

    // Warm up, and the probe's time with no fault: what each recovery time compares with.
    await sleep(2000);
    const baseline = await probe({ kind: 'latency:api', durationMs: 0, gapMs: 0 }, Date.now());
    log(`baseline: a probe order goes through in ${baseline.recoveryMs ?? 'NOT within ' + o.recoveryTimeoutMs} ms with no fault`);
    const faults: FaultResult[] = [];
    const faultsFrom = Date.now();
    for (const f of schedule) {
      if (Date.now() - faultsFrom > o.durationMs) { log(`time is up after ${faults.length} faults`); break; }
      window.c = newCounts();
      const startedAt = Date.now();
      log(`fault ${faults.length + 1}: ${describeFault(f)}`);
      const heal = await inject(f);
      await sleep(f.durationMs);
      const healedAt = Date.now();
      // A heal that fails (a restart not ready in time) leaves the fault unrecovered, not the run dead.
      const healed = await heal().then(() => true, (err) => { log(`  heal failed: ${String(err).slice(0, 300)}`); return false; });
      const r = healed ? await probe(f, healedAt) : { firstAcceptMs: null, recoveryMs: null };
      const result: FaultResult = { ...f, startedAt: startedAt - t0, ...r, during: window.c };
      faults.push(result);
      log(`  recovered: first 202 after ${r.firstAcceptMs ?? '-'} ms, probe final after ${r.recoveryMs ?? 'NOT within ' + o.recoveryTimeoutMs} ms; workload meanwhile ${JSON.stringify({ accepted: window.c.accepted, refused: window.c.refused, errors: window.c.errors })}`);
      await sleep(f.gapMs);
    }
    stopping = true;
    await Promise.all(clients);
    log(`workload stopped at ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(Object.fromEntries(Object.entries(workload).map(([k, c]) => [k, { accepted: c.accepted, refused: c.refused, errors: c.errors }])))}`);

    // Everything healed and running again (a probe that failed to recover may have left a process down).
    for (const p of Object.values(proxies)) p.set({ kind: 'none' });
    if (!procs.services) await start('services');
    if (!procs.gateway) await start('gateway');

    // Orders whose answer was lost (timeouts, resets, 502) may have committed: they count too.
    for (const [orderId, state] of orderAttempts) {
      if (state !== 'unknown') continue;
      const r = await retry(`lookup ${orderId}`, 30_000, async () => {
        const a = await call(url, 'GET', `/api/orders?orderId=${encodeURIComponent(orderId)}`, { token: await token('customer') });
        return a.status === 200 || a.status === 404 ? a : undefined;
      });
      if (r.status === 200) acceptedOrders.add(r.body.id);
    }

    const db = new pg.Client({ connectionString: pgServer.url });
    await db.connect();
    cleanups.push(() => db.end());
    const invariants: Invariant[] = [];
    const drainUntil = Date.now() + o.drainTimeoutMs;
    const drain = async <T>(what: string, fn: () => Promise<T | undefined>) => {
      while (true) {
        const v = await fn().catch(() => undefined);
        if (v !== undefined) return { ok: true, v };
        if (Date.now() > drainUntil) return { ok: false, v: undefined };
        await sleep(1000);
      }
    };

    // 1. Every accepted order final; stock conserved; money right; mails and SMS at most once (books.ts).
    const ids = [...acceptedOrders];
    const orderStatus = async () => (await db.query<{ id: string; status: string }>('select id, status from orders.orders where id = any($1)', [ids])).rows;
    const ordersFinal = await drain('orders final', async () => { const rows = await orderStatus(); return rows.length === ids.length && rows.every((r) => ORDER_FINAL.includes(r.status)) ? rows : undefined; });
    const stuck = ordersFinal.ok ? [] : (await orderStatus()).filter((r) => !ORDER_FINAL.includes(r.status));
    invariants.push({ name: 'every accepted order SHIPPED or FAILED', ok: ordersFinal.ok, detail: ordersFinal.ok ? `${ids.length} orders` : `${stuck.length} of ${ids.length} not final: ${stuck.slice(0, 5).map((r) => `${r.id} ${r.status}`).join(', ')}` });
    const booksInput = {
      baseUrl: url, orders: ids, stock, netCharged: (ref: string) => payments.sim.netCharged(ref), token: () => token('admin'),
      mailIds: () => sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body),
      // A process killed between the SMTP 250 and its commit sends that mail again, with the same Message-ID (books.ts).
      allowSameMessageIdResends: true,
    };
    let books = await checkBooks(booksInput);
    while (!books.ok && Date.now() < drainUntil) { await sleep(1000); books = await checkBooks(booksInput); }
    const stockProblems = books.problems.filter((p) => p.startsWith('SKU'));
    const moneyProblems = books.problems.filter((p) => /net charge/.test(p));
    const dupProblems = books.problems.filter((p) => /sent \d+ times/.test(p));
    invariants.push({ name: 'stock conserved (on hand + shipped = start, nothing left reserved)', ok: stockProblems.length === 0, detail: stockProblems.join('; ') || `${Object.keys(stock).length} SKUs` });
    invariants.push({ name: 'money right (net charge = total if SHIPPED, 0 if FAILED)', ok: moneyProblems.length === 0, detail: moneyProblems.slice(0, 5).join('; ') || `${books.counts.shipped} shipped, ${books.counts.failed} failed ${JSON.stringify(books.counts.byReason)}` });
    invariants.push({ name: 'no mail or SMS twice under different Message-IDs', ok: dupProblems.length === 0, detail: dupProblems.slice(0, 5).join('; ') || `${books.counts.mailResends} same-Message-ID resends after kills` });

    // 2. No mail lost: each accepted order got its "received" mail and the one of its outcome.
    const views = await db.query<{ id: string; status: string }>('select id, status from orders.orders where id = any($1)', [ids]);
    const missing = () => {
      const have = new Set(sink.messages().map((m) => m.messageId));
      return views.rows.filter((r) => ORDER_FINAL.includes(r.status)).flatMap((r) => ['received', r.status === 'SHIPPED' ? 'shipped' : 'failed'].map((kind) => `<${r.id}.${kind}@orderflow>`).filter((m) => !have.has(m)));
    };
    await drain('mails', async () => (missing().length === 0 ? true : undefined));
    const lost = missing();
    invariants.push({ name: 'no mail lost (received + shipped/failed per order)', ok: lost.length === 0, detail: lost.length ? `${lost.length} missing: ${lost.slice(0, 5).join(', ')}` : `${sink.messages().length} mails` });

    // 3. Funding: every accepted application final; one payout per disbursed application, none for the rest.
    const apps = await drain('applications final', async () => {
      const { rows } = await db.query<{ id: string; status: string }>('select id, status from funding.applications');
      return rows.every((r) => FUNDING_FINAL.includes(r.status)) ? rows : undefined;
    });
    const appRows = (await db.query<{ id: string; status: string }>('select id, status from funding.applications')).rows;
    const openApps = appRows.filter((r) => !FUNDING_FINAL.includes(r.status));
    invariants.push({ name: 'every accepted funding application final', ok: apps.ok && appRows.length >= workload.funding.accepted, detail: `${appRows.length} applications (${workload.funding.accepted} answered 202)${openApps.length ? `; not final: ${openApps.slice(0, 5).map((r) => `${r.id} ${r.status}`).join(', ')}` : ''}` });
    const payoutProblems = appRows.flatMap((r) => {
      const n = payments.sim.payoutsFor(r.id).length;
      const want = r.status === 'disbursed' ? 1 : 0;
      return n === want ? [] : [`application ${r.id} ${r.status} has ${n} payouts`];
    });
    invariants.push({ name: 'no double payout (one per disbursed application, none otherwise)', ok: payoutProblems.length === 0, detail: payoutProblems.slice(0, 5).join('; ') || `${appRows.filter((r) => r.status === 'disbursed').length} disbursed, ${payments.sim.stats().applied.payouts} payouts at the gateway` });

    // 4. Lending: every accepted order final; no T24 change applied twice; invested counts match T24.
    const lending = await drain('lending final', async () => {
      const { rows } = await db.query<{ id: string; status: string; invested: number }>('select id, status, invested from lending.orders');
      return rows.every((r) => LENDING_FINAL.includes(r.status)) ? rows : undefined;
    });
    const lendRows = (await db.query<{ id: string; status: string; invested: number }>('select id, status, invested from lending.orders')).rows;
    const openLend = lendRows.filter((r) => !LENDING_FINAL.includes(r.status));
    const missingLend = [...lendingOrders].filter((id) => !lendRows.some((r) => r.id === id));
    invariants.push({ name: 'every accepted lending order final', ok: lending.ok && missingLend.length === 0, detail: `${lendRows.length} orders${openLend.length ? `; not final: ${openLend.slice(0, 5).map((r) => `${r.id} ${r.status}`).join(', ')}` : ''}${missingLend.length ? `; ${missingLend.length} accepted but absent` : ''}` });
    const t24Stats = t24.sim.stats();
    const twice = Object.entries(t24Stats.appliedPerLoan ?? {}).filter(([, a]) => a.reserve > 1 || a.invest > 1);
    const investedInOrders = lendRows.reduce((s, r) => s + Number(r.invested), 0);
    invariants.push({ name: 'no T24 change applied twice', ok: twice.length === 0, detail: twice.length ? twice.slice(0, 5).map(([l, a]) => `${l} ${JSON.stringify(a)}`).join('; ') : `${t24Stats.applied.reserve} reserves, ${t24Stats.applied.invest} invests` });
    invariants.push({ name: 'T24 invests = items the orders count invested', ok: t24Stats.applied.invest === investedInOrders, detail: `T24 ${t24Stats.applied.invest}, orders ${investedInOrders}` });

    for (const i of invariants) log(`${i.ok ? 'OK  ' : 'FAIL'} ${i.name}: ${i.detail}`);
    return { seed: o.seed, schedule, faults, invariants, baselineMs: baseline.recoveryMs, ok: invariants.every((i) => i.ok) && faults.every((f) => f.recoveryMs !== null), workload, books, setupMs, elapsedMs: Date.now() - t0 };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
}
