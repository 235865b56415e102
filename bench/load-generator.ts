// bench:load's load generator: a child process of its own (bench/load.ts forks it), so its
// CPU and memory are reported apart from the system under test and the simulators. It logs
// every bench user in through the gateway, then sends the mix of bench/load-plan.ts open
// loop, phase after phase, and reports to the parent over IPC: the ids it got accepted (as
// it goes, for the saga timings and the final checks) and, once everything has settled, the
// latencies and statuses per phase and kind.
import http from 'node:http';
import { dueBetween, KINDS, percentile, picker, type Kind, type Phase } from './load-plan.ts';
import { createRandom } from '../services/simulators/serve.ts';
import { request as sendRequest, type Reply } from './http-client.ts';

export type GeneratorConfig = {
  gatewayUrl: string; run: string; phases: Phase[]; mix: Record<Kind, number>; seed: number;
  customers: { id: string; email: string; password: string }[];
  investors: { id: string; email: string; password: string }[];
  skus: string[]; lendingItems: number; timeoutMs: number; windowMs: number;
};
export type KindSummary = { count: number; ok: number; p50: number; p95: number; p99: number; max: number; statuses: Record<string, number> };
export type PhaseSummary = { name: string; offered: number; seconds: number; sendLagP99: number; sendLagMax: number; kinds: Partial<Record<Kind, KindSummary>>; tokenRenewals: number };
/** Every request by the window its due time fell in (all kinds): how fast the cluster recovers after a spike. */
export type WindowSummary = { startS: number; phase: number; offered: number; ok: number; shed: number; timeout: number; otherErrors: number; p50: number; p95: number };
export type FromGenerator =
  | { type: 'ready' }
  | { type: 'phase'; index: number; at: number }
  // uncertain: business ids of order creates that got no answer or a 5xx: the order may exist all the same.
  | { type: 'accepted'; orders: [string, number, number][]; lending: [string, number][]; funding: [string, number][]; uncertain: string[] }
  | { type: 'sent' }
  | { type: 'summaries'; phases: PhaseSummary[]; windows: WindowSummary[] };

const send = (m: FromGenerator) => process.send!(m);
const epoch = () => performance.timeOrigin + performance.now();

const config = await new Promise<GeneratorConfig>((resolve) => process.once('message', (m) => resolve(m as GeneratorConfig)));
const base = new URL(config.gatewayUrl);
// Open loop means many requests in flight when the server slows down: a pool big enough
// that the client's own queue is not where they wait. Real clients are many and each has its
// own connection, so the queue of an overload forms at the server, where admission control
// can see it; with 1,024 sockets here it formed in this process instead (a quick run's 10x
// spike: no 503 at all, every excess request waited up to 30 s in this pool).
// Idle sockets close after 4 s, before the gateway's keep-alive timeout (5 s): a socket reused
// just as the server closes it is reset, which a quick run counted as connection errors.
const agent = new http.Agent({ keepAlive: true, maxSockets: 8192, timeout: 4000 });

const request = (method: string, path: string, body?: unknown, token?: string): Promise<Reply> =>
  sendRequest(new URL(path, base).href, { method, body, token, agent, timeoutMs: config.timeoutMs });

// ---- tokens: each user logs in once, and again before the 10-minute access token runs out.
type Principal = { id: string; email: string; password: string; token: string; at: number };
const login = async (p: { email: string; password: string }) => {
  const r = await request('POST', '/api/auth/login', { email: p.email, password: p.password });
  if (r.status !== 200) throw new Error(`login of ${p.email}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.accessToken as string;
};
const customers: Principal[] = [];
const investors: Principal[] = [];
for (const [list, from] of [[customers, config.customers], [investors, config.investors]] as const) {
  for (const u of from) list.push({ ...u, token: await login(u), at: Date.now() });
}
let tokenRenewals = 0;
const renew = setInterval(() => {
  // A few at a time, oldest first: a renewal is a login (a password hash) through the gateway.
  for (const p of [...customers, ...investors].filter((x) => Date.now() - x.at > 300_000).slice(0, 10)) {
    p.at = Date.now();
    // A failed renewal is tried again a minute later, not at once: failed logins count
    // against the account's lockout, and the current token is good for 5 more minutes.
    login(p).then((t) => { p.token = t; tokenRenewals++; }, (err) => { p.at = Date.now() - 240_000; console.error(String(err)); });
  }
}, 5_000);
send({ type: 'ready' });

// ---- what each kind sends
const random = createRandom(config.seed);
const pick = picker(config.mix);
const any = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
// Recently accepted ids with their owners, for the status polls (a user sees only their own).
const RECENT = 2000;
const recent = { orders: [] as [string, Principal][], funding: [] as [string, Principal][], lending: [] as [string, Principal][] };
const remember = (list: [string, Principal][], id: string, p: Principal) => { list.push([id, p]); if (list.length > RECENT) list.splice(0, list.length - RECENT); };
let seq = 0;
let accepted: Extract<FromGenerator, { type: 'accepted' }> = { type: 'accepted', orders: [], lending: [], funding: [], uncertain: [] };
const flush = setInterval(() => {
  if (accepted.orders.length || accepted.lending.length || accepted.funding.length || accepted.uncertain.length) { send(accepted); accepted = { type: 'accepted', orders: [], lending: [], funding: [], uncertain: [] }; }
}, 500);

/** The request of one kind (a status poll with nothing to poll yet browses the catalog instead). */
function build(kind: Kind, phase: number): { kind: Kind; run: () => Promise<Reply>; onOk?: (r: Reply) => void; onLost?: () => void } {
  const n = ++seq;
  switch (kind) {
    case 'catalog list': return { kind, run: () => request('GET', `/api/products?limit=20${random() < 0.3 ? `&q=${encodeURIComponent('item ' + Math.floor(random() * 10))}` : ''}`) };
    case 'catalog item': return { kind, run: () => request('GET', `/api/products/${encodeURIComponent(any(config.skus))}`) };
    case 'order create': {
      const u = any(customers);
      const lines = 1 + Math.floor(random() * 3);
      const skus = new Set(Array.from({ length: lines }, () => any(config.skus)));
      const body = {
        orderId: `LD-${config.run}-${n}`, email: u.email, ...(n % 3 === 0 ? { phone: '+15550001111' } : {}),
        // 2% declined: the saga's compensation path runs under load too.
        paymentToken: random() < 0.02 ? 'tok_declined' : 'tok_visa',
        items: [...skus].map((sku) => ({ sku, quantity: 1 + Math.floor(random() * 3) })),
      };
      return {
        kind, run: () => request('POST', '/api/orders', body, u.token),
        onOk: (r) => {
          if (r.status === 202) { remember(recent.orders, r.body.id, u); accepted.orders.push([r.body.id, epoch(), phase]); } else if (r.status >= 500) accepted.uncertain.push(body.orderId);
        },
        // Given up on (timeout, reset) after the server may have committed it: the books must count it if it exists.
        onLost: () => { accepted.uncertain.push(body.orderId); },
      };
    }
    case 'order status': {
      if (!recent.orders.length) return build('catalog list', phase);
      const [id, u] = any(recent.orders);
      return { kind, run: () => request('GET', `/api/orders/${id}`, undefined, u.token) };
    }
    case 'funding apply': {
      const u = any(customers);
      const r = random();
      // Mostly approvable; some rejected by the contract's bounds, some in the review band.
      const financials = r < 0.1 ? { annualRevenue: 1_200_000, yearsTrading: 0.5, existingDebt: 0 }
        : r < 0.2 ? { annualRevenue: 1_000_000, yearsTrading: 4, existingDebt: 200_000 }
        : { annualRevenue: 1_200_000, yearsTrading: 6, existingDebt: 0 };
      const body = {
        businessId: `biz-${config.run}-${n}`, businessName: 'Load Test Ltd', contactEmail: u.email,
        amount: r < 0.2 && r >= 0.1 ? 120_000 : 50_000 + (n % 10_000), currency: 'EUR', termMonths: 24, purpose: 'working capital',
        financials, bankAccount: { iban: 'DE89370400440532013000', holderName: 'Load Test Ltd' },
      };
      return { kind, run: () => request('POST', '/api/funding/applications', body, u.token), onOk: (res) => { if (res.status === 202) { remember(recent.funding, res.body.id, u); accepted.funding.push([res.body.id, phase]); } } };
    }
    case 'funding status': {
      if (!recent.funding.length) return build('catalog list', phase);
      const [id, u] = any(recent.funding);
      return { kind, run: () => request('GET', `/api/funding/applications/${id}/status`, undefined, u.token) };
    }
    case 'lending order': {
      const u = any(investors);
      // Loan ids unique across the run: a loan another order holds would fail as taken.
      const items = Array.from({ length: config.lendingItems }, (_, k) => ({ loanId: `LN-${config.run}-${n}-${k}`, amount: 100 }));
      return { kind, run: () => request('POST', '/api/lending/orders', { investorId: u.id, items }, u.token), onOk: (r) => { if (r.status === 202) { remember(recent.lending, r.body.id, u); accepted.lending.push([r.body.id, phase]); } } };
    }
    case 'lending status': {
      if (!recent.lending.length) return build('catalog list', phase);
      const [id, u] = any(recent.lending);
      return { kind, run: () => request('GET', `/api/lending/orders/${id}`, undefined, u.token) };
    }
  }
}

// ---- the phases, open loop
type Acc = { lat: number[]; ok: number; statuses: Record<string, number> };
const results = config.phases.map(() => Object.fromEntries(KINDS.map((k) => [k, { lat: [], ok: 0, statuses: {} } as Acc])) as Record<Kind, Acc>);
const lags = config.phases.map(() => [] as number[]);
const renewalsAt: number[] = [];
const inflight = new Set<Promise<void>>();
type WindowAcc = { phase: number; lat: number[]; ok: number; shed: number; timeout: number; otherErrors: number };
const windows: WindowAcc[] = [];
let runStart = 0;
const windowFor = (due: number, phase: number) => {
  const w = Math.floor((due - runStart) / config.windowMs);
  return (windows[w] ??= { phase, lat: [], ok: 0, shed: 0, timeout: 0, otherErrors: 0 });
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const [index, phase] of config.phases.entries()) {
  const total = Math.floor((phase.rpm * phase.seconds) / 60);
  const gap = 60_000 / phase.rpm;
  const start = performance.now();
  if (index === 0) runStart = start;
  send({ type: 'phase', index, at: epoch() });
  renewalsAt.push(tokenRenewals);
  let next = 0;
  while (next < total) {
    const { to } = dueBetween(start, phase.rpm, phase.seconds, next, performance.now());
    for (let i = next; i < to; i++) {
      const due = start + i * gap;
      const req = build(pick(random()), index);
      const acc = results[index]![req.kind];
      const win = windowFor(due, index);
      lags[index]!.push(performance.now() - due);
      const p = req.run().then((r) => {
        acc.lat.push(performance.now() - due);
        win.lat.push(performance.now() - due);
        acc.statuses[r.status] = (acc.statuses[r.status] ?? 0) + 1;
        if (r.status >= 200 && r.status < 300) acc.ok++, win.ok++;
        else if (r.status === 503) win.shed++;
        else if (r.status >= 500) win.otherErrors++;
        req.onOk?.(r);
      }, (err: Error) => {
        acc.lat.push(performance.now() - due);
        win.lat.push(performance.now() - due);
        const what = err.message === 'timeout' ? 'timeout' : 'connection error';
        if (what === 'timeout') win.timeout++; else win.otherErrors++;
        acc.statuses[what] = (acc.statuses[what] ?? 0) + 1;
        req.onLost?.();
      }).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    next = to;
    if (next < total) await sleep(Math.max(0, start + next * gap - performance.now()));
  }
  // The phase lasts its full length even when its last request falls due a little earlier.
  await sleep(Math.max(0, start + phase.seconds * 1000 - performance.now()));
}
send({ type: 'phase', index: config.phases.length, at: epoch() });
send({ type: 'sent' });
await Promise.all(inflight);
clearInterval(renew);
clearInterval(flush);
if (accepted.orders.length || accepted.lending.length || accepted.funding.length || accepted.uncertain.length) send(accepted);

const phases: PhaseSummary[] = config.phases.map((phase, i) => ({
  name: phase.name, offered: Math.floor((phase.rpm * phase.seconds) / 60), seconds: phase.seconds,
  sendLagP99: percentile(lags[i]!, 99), sendLagMax: lags[i]!.reduce((m, x) => Math.max(m, x), -Infinity),
  tokenRenewals: (renewalsAt[i + 1] ?? tokenRenewals) - renewalsAt[i]!,
  kinds: Object.fromEntries(KINDS.filter((k) => results[i]![k].lat.length).map((k) => {
    const a = results[i]![k];
    return [k, { count: a.lat.length, ok: a.ok, p50: percentile(a.lat, 50), p95: percentile(a.lat, 95), p99: percentile(a.lat, 99), max: a.lat[a.lat.length - 1]!, statuses: a.statuses }];
  })),
}));
const windowSummaries: WindowSummary[] = [...windows.entries()].filter(([, w]) => w).map(([i, w]) => ({
  startS: (i * config.windowMs) / 1000, phase: w.phase, offered: w.lat.length, ok: w.ok, shed: w.shed, timeout: w.timeout, otherErrors: w.otherErrors,
  p50: percentile(w.lat, 50), p95: percentile(w.lat, 95),
}));
send({ type: 'summaries', phases, windows: windowSummaries });
agent.destroy();
process.disconnect();
