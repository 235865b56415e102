// An in-memory stand-in for Temenos T24 (CONTRACTS.md, "External systems"):
// the three loan endpoints, a sliding-window rate cap, and fault knobs that
// reproduce what the real installation does to us (slow, 5xx, changes applied
// without an answer). Every request and every applied state change is counted,
// so tests can assert "never above the cap" and "each change applied once".
import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import type { Context } from 'hono';
import * as z from 'zod';
import { createRandom, drawLatency, dropConnection, DroppedConnectionError, randomSeed, serveApp, sleep } from './serve.ts';
import type { LatencyMs, ServedApp } from './serve.ts';

export { DroppedConnectionError };

export type LoanStatus = 'AVAILABLE' | 'RESERVED' | 'INVESTED';

export type T24Knobs = {
  /** Requests accepted per sliding second, all loan endpoints together; 0 = no cap. */
  maxRps: number;
  latencyMs: LatencyMs;
  slowRate: number;
  slowMs: number;
  /** 503 before anything is applied. */
  fail503Rate: number;
  /** Apply the change, then answer 500. */
  fail500AfterApplyRate: number;
  /** Apply the change, then destroy the socket without answering. */
  dropAfterApplyRate: number;
  /** true, or an epoch-ms instant until which every loan call is 503. */
  outage: boolean | number;
  /** Hang timeoutMs, then carry on: the change lands after the client has likely given up. */
  timeoutRate: number;
  timeoutMs: number;
  /** Unknown ids spring into existence AVAILABLE. */
  autoCreate: boolean;
  /** Ids that do not exist (404), whatever else is set. */
  missing: string[];
  /** Ids that start RESERVED by `takenBy`, so our investor gets a foreign 409. */
  taken: string[];
  /** Share of unknown ids that are missing / taken, chosen by a stable hash of the id. */
  missingRate: number;
  takenRate: number;
  takenBy: string;
  /** Ids whose every reserve/invest answers 503 (a loan locked on T24's side); reads still answer. */
  failing: string[];
  /** Share of ids that behave as `failing`, chosen by a stable hash of the id. */
  failingRate: number;
};

export type T24KnobPatch = Partial<T24Knobs> & {
  /** Re-seed the PRNG that draws the fault knobs. */
  seed?: number;
  /** Shorthand for outage: now + outageForMs. */
  outageForMs?: number;
};

export type T24Options = T24KnobPatch & { now?: () => number };

export type T24Transaction = {
  kind: 'reserve' | 'invest';
  transactionCode: string;
  investorId: string;
  orderId: string;
  amount: number;
  at: number;
};

export type T24Loan = {
  loanId: string;
  status: LoanStatus;
  investorId: string | null;
  orderId: string | null;
  amount: number | null;
  applied: { reserve: number; invest: number };
  transactions: T24Transaction[];
};

export type T24SecondStats = { second: number; requests: number; accepted: number; rateLimited: number; errors5xx: number; drops: number };

export type T24Stats = {
  /** Arrivals per loan endpoint, 429s included; admin calls are not counted. */
  requests: { total: number; get: number; reserve: number; invest: number };
  /** Responses by HTTP status. */
  statuses: Record<string, number>;
  rateLimited: number;
  errors5xx: number;
  drops: number;
  timeouts: number;
  slow: number;
  /** State changes applied, summed and per loan (only loans with at least one). */
  applied: { reserve: number; invest: number };
  appliedPerLoan?: Record<string, { reserve: number; invest: number }>;
  loans: { total: number; available: number; reserved: number; invested: number };
  inFlight: number;
  peakInFlight: number;
  /** Most requests accepted (not 429) within any 1000 ms. */
  peakRps: number;
  perSecond: T24SecondStats[];
  seed: number;
};

export type T24Simulator = {
  app: Hono;
  stats(options?: { perLoan?: boolean }): T24Stats;
  knobs(): T24Knobs;
  setKnobs(patch: T24KnobPatch): T24Knobs;
  seedLoans(ids: Iterable<string>, status?: LoanStatus, investorId?: string): number;
  loan(loanId: string): T24Loan | undefined;
  /** 'all' forgets loans and counters and restores the creation knobs and seed; 'stats' zeroes counters only. */
  reset(scope?: 'all' | 'stats'): void;
};

type Kind = 'get' | 'reserve' | 'invest';
type Body = { investorId: string; orderId: string; amount: number };

const defaultKnobs: T24Knobs = {
  maxRps: 0,
  latencyMs: 0,
  slowRate: 0,
  slowMs: 2000,
  fail503Rate: 0,
  fail500AfterApplyRate: 0,
  dropAfterApplyRate: 0,
  outage: false,
  timeoutRate: 0,
  timeoutMs: 30_000,
  autoCreate: true,
  missing: [],
  taken: [],
  missingRate: 0,
  takenRate: 0,
  takenBy: 'another-investor',
  failing: [],
  failingRate: 0,
};

const rate = z.number().min(0).max(1);
const ms = z.number().min(0);
const knobPatchSchema = z.strictObject({
  maxRps: z.number().int().min(0),
  latencyMs: z.union([ms, z.strictObject({ min: ms, max: ms })]),
  slowRate: rate,
  slowMs: ms,
  fail503Rate: rate,
  fail500AfterApplyRate: rate,
  dropAfterApplyRate: rate,
  outage: z.union([z.boolean(), z.number()]),
  outageForMs: ms,
  timeoutRate: rate,
  timeoutMs: ms,
  autoCreate: z.boolean(),
  missing: z.array(z.string()),
  taken: z.array(z.string()),
  missingRate: rate,
  takenRate: rate,
  takenBy: z.string().min(1),
  failing: z.array(z.string()),
  failingRate: rate,
  seed: z.number().int(),
}).partial();

const seedLoansSchema = z.strictObject({
  ids: z.array(z.string().min(1)),
  status: z.enum(['AVAILABLE', 'RESERVED', 'INVESTED']).optional(),
  investorId: z.string().min(1).optional(),
});

// FNV-1a plus a murmur3 finaliser (ids like L-000001 differ only in their last
// characters): a stable per-id draw, so missingRate/takenRate pick the same ids in any order.
function hashUnit(id: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

function parseBody(raw: unknown): Body | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const { investorId, orderId, amount } = raw as Record<string, unknown>;
  if (typeof investorId !== 'string' || investorId.length === 0 || investorId.length > 128) return undefined;
  if (typeof orderId !== 'string' || orderId.length === 0 || orderId.length > 128) return undefined;
  if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0) return undefined;
  return { investorId, orderId, amount };
}

/** Builds the T24 simulator around a Hono app. `const t24 = createT24Simulator({ maxRps: 50, seed: 1 }); await t24.app.request('/loans/L-1')` */
export function createT24Simulator(options: T24Options = {}): T24Simulator {
  const { now = Date.now, ...initialPatch } = options;
  const initialSeed = options.seed ?? randomSeed();
  const instance = randomBytes(3).toString('hex').toUpperCase();

  let knobs: T24Knobs = { ...defaultKnobs };
  let missing = new Set<string>();
  let taken = new Set<string>();
  let failing = new Set<string>();
  let seed = initialSeed;
  let random = createRandom(seed);
  let loans = new Map<string, T24Loan>();
  let txCounter = 0;

  let stats = freshStats();
  // Accepted-request timestamps of the last second: an exact sliding window, so
  // a client that keeps any 1000 ms under the cap is never refused.
  let window: number[] = [];
  let windowHead = 0;
  let current: T24SecondStats | undefined;
  let history: T24SecondStats[] = [];

  function freshStats() {
    return {
      requests: { total: 0, get: 0, reserve: 0, invest: 0 },
      statuses: {} as Record<string, number>,
      rateLimited: 0,
      errors5xx: 0,
      drops: 0,
      timeouts: 0,
      slow: 0,
      applied: { reserve: 0, invest: 0 },
      inFlight: 0,
      peakInFlight: 0,
      peakRps: 0,
    };
  }

  function setKnobs(patch: T24KnobPatch): T24Knobs {
    const { seed: newSeed, outageForMs, ...rest } = patch;
    knobs = { ...knobs, ...rest };
    if (outageForMs !== undefined) knobs.outage = now() + outageForMs;
    if (rest.missing) missing = new Set(rest.missing);
    if (rest.taken) taken = new Set(rest.taken);
    if (rest.failing) failing = new Set(rest.failing);
    if (newSeed !== undefined) {
      seed = newSeed;
      random = createRandom(seed);
    }
    return getKnobs();
  }

  function getKnobs(): T24Knobs {
    return { ...knobs, missing: [...missing], taken: [...taken], failing: [...failing] };
  }

  function reset(scope: 'all' | 'stats' = 'all') {
    stats = freshStats();
    window = [];
    windowHead = 0;
    current = undefined;
    history = [];
    if (scope === 'stats') return;
    loans = new Map();
    knobs = { ...defaultKnobs };
    missing = new Set();
    taken = new Set();
    failing = new Set();
    setKnobs({ ...initialPatch, seed: initialSeed });
  }
  reset();

  function windowCount(t: number): number {
    while (windowHead < window.length && window[windowHead]! <= t - 1000) windowHead++;
    if (windowHead > 1024 && windowHead * 2 > window.length) {
      window = window.slice(windowHead);
      windowHead = 0;
    }
    return window.length - windowHead;
  }

  function second(t: number): T24SecondStats {
    const s = Math.floor(t / 1000);
    if (current?.second === s) return current;
    if (current) {
      history.push(current);
      if (history.length > 3600) history.shift();
    }
    current = { second: s, requests: 0, accepted: 0, rateLimited: 0, errors5xx: 0, drops: 0 };
    return current;
  }

  function newLoan(loanId: string, status: LoanStatus, investorId: string | null): T24Loan {
    const loan: T24Loan = { loanId, status, investorId, orderId: null, amount: null, applied: { reserve: 0, invest: 0 }, transactions: [] };
    loans.set(loanId, loan);
    return loan;
  }

  function findLoan(loanId: string): T24Loan | undefined {
    if (missing.has(loanId)) return undefined;
    const known = loans.get(loanId);
    if (known) return known;
    if (!knobs.autoCreate) return undefined;
    if (knobs.missingRate > 0 && hashUnit(loanId, seed) < knobs.missingRate) return undefined;
    const isTaken = taken.has(loanId) || (knobs.takenRate > 0 && hashUnit(loanId, ~seed) < knobs.takenRate);
    return isTaken ? newLoan(loanId, 'RESERVED', knobs.takenBy) : newLoan(loanId, 'AVAILABLE', null);
  }

  function seedLoans(ids: Iterable<string>, status: LoanStatus = 'AVAILABLE', investorId?: string): number {
    let n = 0;
    for (const id of ids) {
      missing.delete(id);
      newLoan(id, status, status === 'AVAILABLE' ? null : (investorId ?? 'seed-investor'));
      n++;
    }
    return n;
  }

  function snapshot(loan: T24Loan): T24Loan {
    return { ...loan, applied: { ...loan.applied }, transactions: loan.transactions.map((t) => ({ ...t })) };
  }

  function getStats(opts: { perLoan?: boolean } = {}): T24Stats {
    const counts = { total: loans.size, available: 0, reserved: 0, invested: 0 };
    let appliedPerLoan: Record<string, { reserve: number; invest: number }> | undefined;
    if (opts.perLoan !== false) appliedPerLoan = {};
    for (const loan of loans.values()) {
      if (loan.status === 'AVAILABLE') counts.available++;
      else if (loan.status === 'RESERVED') counts.reserved++;
      else counts.invested++;
      if (appliedPerLoan && (loan.applied.reserve > 0 || loan.applied.invest > 0)) appliedPerLoan[loan.loanId] = { ...loan.applied };
    }
    return {
      requests: { ...stats.requests },
      statuses: { ...stats.statuses },
      rateLimited: stats.rateLimited,
      errors5xx: stats.errors5xx,
      drops: stats.drops,
      timeouts: stats.timeouts,
      slow: stats.slow,
      applied: { ...stats.applied },
      ...(appliedPerLoan ? { appliedPerLoan } : {}),
      loans: counts,
      inFlight: stats.inFlight,
      peakInFlight: stats.peakInFlight,
      peakRps: stats.peakRps,
      perSecond: [...history, ...(current ? [{ ...current }] : [])],
      seed,
    };
  }

  function respond(c: Context, sec: T24SecondStats, status: 200 | 404 | 409 | 422 | 429 | 500 | 503, body: object): Response {
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    if (status >= 500) {
      stats.errors5xx++;
      sec.errors5xx++;
    }
    if (status === 429) c.header('Retry-After', '1');
    return c.json(body, status);
  }

  function drop(c: Context, sec: T24SecondStats): Response {
    stats.drops++;
    sec.drops++;
    return dropConnection(c.env);
  }

  async function handle(c: Context, kind: Kind): Promise<Response> {
    const t = now();
    stats.requests.total++;
    stats.requests[kind]++;
    const sec = second(t);
    sec.requests++;

    if (knobs.maxRps > 0 && windowCount(t) >= knobs.maxRps) {
      stats.rateLimited++;
      sec.rateLimited++;
      return respond(c, sec, 429, { error: 'RATE_LIMITED' });
    }
    window.push(t);
    const inWindow = windowCount(t);
    if (inWindow > stats.peakRps) stats.peakRps = inWindow;
    sec.accepted++;

    stats.inFlight++;
    if (stats.inFlight > stats.peakInFlight) stats.peakInFlight = stats.inFlight;
    try {
      const outage = knobs.outage;
      if (outage === true || (typeof outage === 'number' && t < outage)) return respond(c, sec, 503, { error: 'UNAVAILABLE' });

      // Read the body before any hang, so a client that gives up meanwhile
      // cannot stop a change that T24 has already accepted.
      let body: Body | undefined;
      if (kind !== 'get') body = parseBody(await c.req.json().catch(() => undefined));

      let delay = drawLatency(knobs.latencyMs, random);
      if (knobs.slowRate > 0 && random() < knobs.slowRate) {
        stats.slow++;
        delay += knobs.slowMs;
      }
      if (knobs.timeoutRate > 0 && random() < knobs.timeoutRate) {
        stats.timeouts++;
        delay += knobs.timeoutMs;
      }
      if (delay > 0) await sleep(delay);

      if (knobs.fail503Rate > 0 && random() < knobs.fail503Rate) return respond(c, sec, 503, { error: 'UNAVAILABLE' });

      const loanId = c.req.param('loanId')!;
      if (kind === 'get') {
        const loan = findLoan(loanId);
        if (!loan) return respond(c, sec, 404, { error: 'LOAN_NOT_FOUND' });
        return respond(c, sec, 200, { loanId, status: loan.status, investorId: loan.investorId });
      }

      if (failing.has(loanId) || (knobs.failingRate > 0 && hashUnit(loanId, seed ^ 0x5f3759df) < knobs.failingRate)) {
        return respond(c, sec, 503, { error: 'UNAVAILABLE' });
      }
      if (!body) return respond(c, sec, 422, { error: 'INVALID_REQUEST' });
      const loan = findLoan(loanId);
      if (!loan) return respond(c, sec, 404, { error: 'LOAN_NOT_FOUND' });
      const allowed = kind === 'reserve'
        ? loan.status === 'AVAILABLE'
        : loan.status === 'RESERVED' && loan.investorId === body.investorId;
      if (!allowed) return respond(c, sec, 409, { error: 'CONFLICT', status: loan.status, investorId: loan.investorId });

      const transactionCode = `FT${instance}${String(++txCounter).padStart(8, '0')}`;
      loan.status = kind === 'reserve' ? 'RESERVED' : 'INVESTED';
      loan.investorId = body.investorId;
      loan.orderId = body.orderId;
      loan.amount = body.amount;
      loan.applied[kind]++;
      loan.transactions.push({ kind, transactionCode, investorId: body.investorId, orderId: body.orderId, amount: body.amount, at: now() });
      stats.applied[kind]++;

      if (knobs.fail500AfterApplyRate > 0 && random() < knobs.fail500AfterApplyRate) return respond(c, sec, 500, { error: 'INTERNAL' });
      if (knobs.dropAfterApplyRate > 0 && random() < knobs.dropAfterApplyRate) return drop(c, sec);
      return respond(c, sec, 200, { loanId, status: loan.status, investorId: loan.investorId, transactionCode });
    } finally {
      stats.inFlight--;
    }
  }

  const app = new Hono();
  app.onError((err, c) => {
    if (err instanceof DroppedConnectionError) throw err;
    return c.json({ error: 'INTERNAL' }, 500);
  });

  app.get('/_sim/stats', (c) => c.json(getStats({ perLoan: c.req.query('perLoan') !== '0' })));
  app.get('/_sim/knobs', (c) => c.json(getKnobs()));
  app.post('/_sim/knobs', async (c) => {
    const parsed = knobPatchSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) return c.json({ error: 'INVALID_KNOBS', issues: parsed.error.issues }, 400);
    return c.json(setKnobs(parsed.data));
  });
  app.post('/_sim/reset', (c) => {
    const scope = c.req.query('scope') === 'stats' ? 'stats' : 'all';
    reset(scope);
    return c.json({ reset: scope });
  });
  app.post('/_sim/loans', async (c) => {
    const parsed = seedLoansSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) return c.json({ error: 'INVALID_REQUEST', issues: parsed.error.issues }, 400);
    return c.json({ seeded: seedLoans(parsed.data.ids, parsed.data.status, parsed.data.investorId) });
  });
  app.get('/_sim/loans/:loanId', (c) => {
    const loan = loans.get(c.req.param('loanId'));
    return loan ? c.json(snapshot(loan)) : c.json({ error: 'LOAN_NOT_FOUND' }, 404);
  });

  app.get('/loans/:loanId', (c) => handle(c, 'get'));
  app.post('/loans/:loanId/reserve', (c) => handle(c, 'reserve'));
  app.post('/loans/:loanId/invest', (c) => handle(c, 'invest'));

  return {
    app,
    stats: getStats,
    knobs: getKnobs,
    setKnobs,
    seedLoans,
    loan(loanId) {
      const loan = loans.get(loanId);
      return loan && snapshot(loan);
    },
    reset,
  };
}

export type RunningT24Simulator = ServedApp & { sim: T24Simulator };

/** Serves a T24 simulator on a port (0 = any free one). `const t24 = await startT24Simulator({ maxRps: 100 }); ...; await t24.close()` */
export async function startT24Simulator(options: T24Options & { port?: number; hostname?: string } = {}): Promise<RunningT24Simulator> {
  const { port, hostname, ...simOptions } = options;
  const sim = createT24Simulator(simOptions);
  const served = await serveApp(sim.app, { port, hostname });
  return { ...served, sim };
}

// `PORT=9024 T24_SIM_KNOBS='{"maxRps":50}' node services/simulators/t24.ts`, for a benchmark that wants it in its own process.
if (import.meta.main) {
  const knobs = process.env.T24_SIM_KNOBS ? knobPatchSchema.parse(JSON.parse(process.env.T24_SIM_KNOBS)) : {};
  const running = await startT24Simulator({ ...knobs, port: Number(process.env.PORT ?? 0) });
  console.log(`T24 simulator listening on ${running.url}`);
}
