// bench:lending: one 10,000-item investor order against the T24 simulator capped at
// R calls/s (R = 200 and 1000), with 5% 503, 2% apply-then-500 and 1% apply-then-drop.
// Ours: the lending service in its own process (TARGET=lending, T24_MAX_RPS=R).
// The seed's old design, in the same run against the same simulator: one item after
// another, synchronous, no retries, failed items dropped, then the invests the same way.
// The simulator runs in a third process so neither side shares its event loop.
//
// The measure: elapsed against the fewest calls any correct client could make,
// 2N plus one per injected fault (a 5xx, a dropped connection, a stall: each costs
// exactly one more call when the client sends the same move again), divided by R.
//
// BENCH_SCENARIO=harsh: issue 10's run. 3,000 items at R = 300; 10 loans answer
// 503 to every move, 5% other 503s, 2% apply-then-500, 1% apply-then-drop, 0.3%
// 8-second stalls, and one 3 s outage BENCH_OUTAGE_AT_S (8) seconds in. Target:
// elapsed within 1.5 × floor + 20 s, no 429, the 10 bad items failed with
// T24_UNAVAILABLE and every other one invested, each change applied once.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpus, setPriority, totalmem } from 'node:os';
import { createTestDatabase, eventually, freePort, startTestNats, tokenSource } from '../services/testing/index.ts';

const HARSH = process.env.BENCH_SCENARIO === 'harsh';
const ITEMS = Number(process.env.BENCH_ITEMS ?? (HARSH ? 3000 : 10_000));
const RATES = (process.env.BENCH_RATES ?? (HARSH ? '300' : '200,1000')).split(',').map(Number);
const BAD_LOANS = HARSH ? 10 : 0;
const OUTAGE_AT_S = Number(process.env.BENCH_OUTAGE_AT_S ?? 8);
const OUTAGE_MS = HARSH ? 3000 : 0;
const FAULTS = {
  fail503Rate: 0.05, fail500AfterApplyRate: 0.02, dropAfterApplyRate: 0.01,
  ...(HARSH ? { timeoutRate: 0.003, timeoutMs: 8000 } : {}),
};
const SKIP_OLD = HARSH || process.env.BENCH_SKIP_OLD === '1';
// Spread through the order, so some are still failing after every good item is done.
const badLoans = (ids: string[]) => Array.from({ length: BAD_LOANS }, (_, i) => ids[Math.floor(((i + 0.9) * ids.length) / BAD_LOANS)]!);

type T24Stats = {
  perSecond: { second: number; accepted: number; rateLimited: number }[];
  requests: { total: number; get: number; reserve: number; invest: number };
  rateLimited: number; errors5xx: number; drops: number; timeouts: number; peakRps: number;
  applied: { reserve: number; invest: number };
  appliedPerLoan: Record<string, { reserve: number; invest: number }>;
};

type Row = {
  design: string; rate: number; items: number; seconds: number; floor: number;
  invested: number; failed: number; orphaned: number; calls: number; rateLimited: number; peakRps: number; doubleApplied: number;
  /** Injected faults T24 answered (5xx, drops, stalls): one extra call each at best. */
  faults: number; minimalCalls: number;
  breakerOpened?: number; wrongItems?: number;
};

const children: ChildProcess[] = [];
const json = async (res: Response) => { const t = await res.text(); try { return JSON.parse(t); } catch { return t; } };

async function startSimulator(): Promise<string> {
  const port = await freePort();
  const child = spawn(process.execPath, [new URL('../services/simulators/t24.ts', import.meta.url).pathname], {
    env: { ...process.env, PORT: String(port), T24_SIM_KNOBS: '{}' }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  // T24 is someone else's machine: on this shared box, scheduling stalls of the
  // simulator would bunch our evenly paced calls into its window and read as our
  // 429s. A higher priority keeps it closer to an independent system (needs root;
  // ignored otherwise).
  try { setPriority(child.pid!, -10); } catch { /* not permitted */ }
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${url}/_sim/knobs`).catch(() => null))?.ok, { timeoutMs: 20_000, what: 'T24 simulator' });
  return url;
}

const setKnobs = (url: string, knobs: object) =>
  fetch(`${url}/_sim/knobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(knobs) });

async function resetSimulator(url: string, rate: number, failing: string[] = []) {
  await fetch(`${url}/_sim/reset`, { method: 'POST' });
  await setKnobs(url, { maxRps: rate, seed: 20_260, ...FAULTS, failing });
}

const simStats = async (url: string): Promise<T24Stats> => await json(await fetch(`${url}/_sim/stats`));

function summarize(design: string, rate: number, seconds: number, invested: number, failed: number, stats: T24Stats, loanIds: string[], investorId: string, keptIds: Set<string>): Row {
  let doubleApplied = 0;
  let orphaned = 0;
  for (const id of loanIds) {
    const a = stats.appliedPerLoan[id];
    if (a && (a.reserve > 1 || a.invest > 1)) doubleApplied++;
    // T24 moved the loan for this investor, yet the design counts the item as failed.
    if (a && (a.reserve > 0 || a.invest > 0) && !keptIds.has(id)) orphaned++;
  }
  void investorId;
  const faults = stats.errors5xx + stats.drops + stats.timeouts;
  return {
    design, rate, items: loanIds.length, seconds, floor: (2 * loanIds.length) / rate, invested, failed, orphaned,
    calls: stats.requests.total, rateLimited: stats.rateLimited, peakRps: stats.peakRps, doubleApplied,
    faults, minimalCalls: 2 * loanIds.length + faults,
  };
}

async function runOurs(simUrl: string, nats: string, dbUrl: string, rate: number): Promise<Row> {
  const loanIds = Array.from({ length: ITEMS }, (_, i) => `O${rate}-${String(i).padStart(6, '0')}`);
  const bad = badLoans(loanIds);
  await resetSimulator(simUrl, rate, bad);
  const port = await freePort();
  const cluster = spawn(process.execPath, [new URL('../services/main.ts', import.meta.url).pathname], {
    env: {
      ...process.env, NATS_URL: nats, DATABASE_URL: dbUrl, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000',
      // identity too: the bench logs in as the development admin (every /api route takes a token).
      TARGET: 'identity,lending', T24_URL: simUrl, T24_MAX_RPS: String(rate),
      // e.g. BENCH_CLUSTER_NODE_OPTIONS=--cpu-prof to profile the lending process
      ...(process.env.BENCH_CLUSTER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_CLUSTER_NODE_OPTIONS } : {}),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(cluster);
  const url = `http://127.0.0.1:${port}`;
  try {
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok, { timeoutMs: 60_000, what: 'cluster ready' });
    // Start the clock once the replica holds its share, as a long-running cluster would.
    await eventually(async () => /^orderflow_t24_rate_share (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1] === String(rate), { timeoutMs: 30_000, what: 'rate share' });
    const token = tokenSource(url);
    const investorId = `inv-ours-${rate}`;
    const started = performance.now();
    const outage = OUTAGE_MS ? setTimeout(() => void setKnobs(simUrl, { outageForMs: OUTAGE_MS }), OUTAGE_AT_S * 1000) : undefined;
    const res = await fetch(`${url}/api/lending/orders`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await token()}` },
      body: JSON.stringify({ investorId, items: loanIds.map((loanId) => ({ loanId, amount: 100 })) }),
    });
    if (res.status !== 202) throw new Error(`POST answered ${res.status}: ${JSON.stringify(await json(res))}`);
    const { id } = await res.json();
    let last = '';
    const trace = process.env.BENCH_TRACE ? setInterval(async () => {
      const m = await (await fetch(`${url}/metrics`)).text();
      const pick = (name: string) => new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(m)?.[1];
      process.stderr.write(`t=${((performance.now() - started) / 1000).toFixed(0)}s p90=${pick('orderflow_t24_latency_p90_seconds')} conc=${pick('orderflow_t24_recommended_concurrency')} limit=${pick('orderflow_lending_item_limit')} lag=${pick('nodejs_eventloop_lag_p90_seconds')} counts=${last}\n`);
    }, 2000) : undefined;
    const order = await eventually(async () => {
      const o = await (await fetch(`${url}/api/lending/orders/${id}`, { headers: { authorization: `Bearer ${await token()}` } })).json();
      const line = JSON.stringify(o.counts);
      if (line !== last) { last = line; }
      return o.status !== 'IN_PROGRESS' ? o : null;
    }, { timeoutMs: 30 * 60_000, intervalMs: 100, what: 'order to finish' });
    const seconds = (performance.now() - started) / 1000;
    clearInterval(trace);
    clearTimeout(outage);
    const stats = await simStats(simUrl);
    const breakerOpened = Number(/^orderflow_t24_breaker_opened (\S+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? NaN);
    if (process.env.BENCH_TRACE) process.stderr.write(`per-second accepted calls (/429s): ${stats.perSecond.map((x) => x.accepted + (x.rateLimited ? `/${x.rateLimited}` : '')).join(' ')}\n`);
    const failedReason = new Map<string, string>(order.failedItems.map((f: { loanId: string; reason: string }) => [f.loanId, f.reason]));
    const kept = new Set<string>(loanIds.filter((l) => !failedReason.has(l)));
    // Right: a bad loan failed with T24_UNAVAILABLE and untouched in T24; any other invested, each change once.
    const badSet = new Set(bad);
    const wrongItems = loanIds.filter((l) => {
      const a = stats.appliedPerLoan[l];
      return badSet.has(l) ? failedReason.get(l) !== 'T24_UNAVAILABLE' || a !== undefined : kept.has(l) === false || a?.reserve !== 1 || a?.invest !== 1;
    }).length;
    return { ...summarize('orderflow (batches, paced workers, retries, DLQ)', rate, seconds, order.counts.invested, order.counts.failed, stats, loanIds, investorId, kept), breakerOpened, wrongItems };
  } finally {
    cluster.kill('SIGTERM');
    await new Promise((r) => cluster.once('exit', r));
  }
}

/** The seed's existing design: sequential, synchronous, no retries, failed items removed. */
async function runOld(simUrl: string, rate: number): Promise<Row> {
  await resetSimulator(simUrl, rate);
  const investorId = `inv-old-${rate}`;
  const orderId = `old-${rate}`;
  const loanIds = Array.from({ length: ITEMS }, (_, i) => `S${rate}-${String(i).padStart(6, '0')}`);
  const call = async (loanId: string, phase: 'reserve' | 'invest') => {
    try {
      const res = await fetch(`${simUrl}/loans/${loanId}/${phase}`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ investorId, orderId, amount: 100 }), signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      return res.status === 200;
    } catch {
      return false;
    }
  };
  const started = performance.now();
  const reserved: string[] = [];
  for (const id of loanIds) if (await call(id, 'reserve')) reserved.push(id);
  const invested: string[] = [];
  for (const id of reserved) if (await call(id, 'invest')) invested.push(id);
  const seconds = (performance.now() - started) / 1000;
  const stats = await simStats(simUrl);
  return summarize('seed\'s old design (sequential, no retries, drops failures)', rate, seconds, invested.length, ITEMS - invested.length, stats, loanIds, investorId, new Set(invested));
}

const fmt = (n: number, d = 1) => n.toFixed(d);

const nats = await startTestNats();
const db = await createTestDatabase('orderflow_bench_lending');
const rows: Row[] = [];
try {
  const simUrl = await startSimulator();
  for (const rate of RATES) {
    process.stderr.write(`ours at R=${rate}...\n`);
    rows.push(await runOurs(simUrl, nats.url, db.url, rate));
    if (!SKIP_OLD) {
      process.stderr.write(`old design at R=${rate}...\n`);
      rows.push(await runOld(simUrl, rate));
    }
  }
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  await nats.stop();
  await db.drop().catch(() => {});
}

const ratio = (r: Row) => r.seconds / (r.minimalCalls / r.rate);
const lines = [
  HARSH
    ? `Harsh: one ${ITEMS.toLocaleString('en')}-item order; T24 capped at R calls/s; ${BAD_LOANS} loans answer 503 to every move, 5% other 503, 2% apply-then-500, 1% apply-then-drop, 0.3% 8 s stalls, a ${OUTAGE_MS / 1000} s outage ${OUTAGE_AT_S} s in.`
    : `One ${ITEMS.toLocaleString('en')}-item order; T24 simulator with 5% 503, 2% apply-then-500, 1% apply-then-drop, capped at R calls/s.`,
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GB, node ${process.version}.`,
  '',
  'Against the minimal calls: 2N + one per injected fault (5xx, drop, stall), at exactly R (target ≤ 1.05).',
  '',
  '| R | drain s | injected faults | minimal calls | minimal calls/R s | drain ÷ minimal | calls made | calls beyond minimal | breaker opened | 429s | items wrong |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.filter((r) => r.design.startsWith('orderflow')).map((r) =>
    `| ${r.rate} | ${fmt(r.seconds)} | ${r.faults} | ${r.minimalCalls} | ${fmt(r.minimalCalls / r.rate)} | ${fmt(ratio(r), 3)} | ${r.calls} | ${r.calls - r.minimalCalls} | ${r.breakerOpened} | ${r.rateLimited} | ${r.wrongItems} |`),
  '',
  ...(HARSH
    ? [
        '| R | drain s | floor 2N/R s | target 1.5 × floor + 20 s | within target | 429s | breaker opened | invested | failed | items wrong | changes applied twice |',
        '|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|',
        ...rows.map((r) => `| ${r.rate} | ${fmt(r.seconds)} | ${fmt(r.floor)} | ${fmt(1.5 * r.floor + 20)} | ${r.seconds <= 1.5 * r.floor + 20 ? 'yes' : 'NO'} | ${r.rateLimited} | ${r.breakerOpened} | ${r.invested} | ${r.failed} | ${r.wrongItems} | ${r.doubleApplied} |`),
        '',
      ]
    : []),
  '| design | R | drain s | floor 2N/R s | vs floor | calls/R s | vs calls/R | invested | failed | orphaned in T24 | T24 calls | 429s | peak rps | changes applied twice |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => {
    const ours = r.design.startsWith('orderflow');
    const pct = (a: number, b: number) => `${a >= b ? '+' : ''}${fmt((a / b - 1) * 100)}%`;
    return `| ${r.design} | ${r.rate} | ${fmt(r.seconds)} | ${fmt(r.floor)} | ${ours ? pct(r.seconds, r.floor) : '—'} | ${fmt(r.calls / r.rate)} | ${ours ? pct(r.seconds, r.calls / r.rate) : '—'} | ${r.invested} (${fmt((100 * r.invested) / r.items)}%) | ${r.failed} (${fmt((100 * r.failed) / r.items)}%) | ${r.orphaned} | ${r.calls} | ${r.rateLimited} | ${r.peakRps} | ${r.doubleApplied} |`;
  }),
];
console.log(lines.join('\n'));
