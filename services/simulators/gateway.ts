// An in-memory stand-in for the payment gateway (CONTRACTS.md, "External
// systems"): charges, refunds and payouts in minor units, a Stripe-like
// Idempotency-Key store, and fault knobs. It keeps every money movement by
// reference, so tests can assert "charged once, refunded in full, paid out once".
import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import * as z from 'zod';
import { createRandom, drawLatency, dropConnection, DroppedConnectionError, randomSeed, serveApp, sleep } from './serve.ts';
import type { LatencyMs, ServedApp } from './serve.ts';

export { DroppedConnectionError };

export type GatewayKnobs = {
  latencyMs: LatencyMs;
  /** 429 with Retry-After: 1, before anything else. */
  rate429: number;
  /** 503 before applying. */
  fail503Rate: number;
  /** Apply, store the success for the key, then answer 500. */
  fail500AfterApplyRate: number;
  /** Apply, store the success for the key, then destroy the socket. */
  dropAfterApplyRate: number;
  /** true, or an epoch-ms instant until which every /v1 call is 503. */
  outage: boolean | number;
  /** IBANs that pass every check but whose bank refuses them (a closed account): payouts to them answer 422 invalid_destination. */
  closedIbans: string[];
};

export type GatewayKnobPatch = Partial<GatewayKnobs> & { seed?: number; outageForMs?: number };
export type GatewayOptions = GatewayKnobPatch & { now?: () => number };

export type Charge = {
  id: string;
  status: 'succeeded' | 'failed';
  amount: number;
  currency: string;
  reference: string;
  source: string;
  amountRefunded: number;
  failureCode: string | null;
  created: number;
};
export type Refund = { id: string; status: 'succeeded'; charge: string; amount: number; currency: string; reference: string; created: number };
export type Payout = {
  id: string;
  status: 'paid';
  amount: number;
  currency: string;
  reference: string;
  destination: { iban: string; holderName: string };
  created: number;
};

type Endpoint = 'charge' | 'refund' | 'payout' | 'listCharges' | 'listRefunds' | 'listPayouts' | 'getCharge' | 'getPayout';
type Stored = { fingerprint: string; status: ContentfulStatusCode; body: object };
type Outcome = { status: 201 | 400 | 402 | 404 | 422; body: object };

export type GatewayStats = {
  /** Arrivals per endpoint, refused ones included; admin calls are not counted. */
  requests: Record<Endpoint, number> & { total: number };
  statuses: Record<string, number>;
  rateLimited: number;
  errors5xx: number;
  drops: number;
  /** Stored responses replayed for a repeated key and body. */
  replays: number;
  keyReused: number;
  keyMissing: number;
  declines: number;
  /** Money movements created (declined charges are not). */
  applied: { charges: number; refunds: number; payouts: number };
  amounts: { charged: number; refunded: number; paidOut: number };
  seed: number;
};

export type GatewaySimulator = {
  app: Hono;
  stats(): GatewayStats;
  knobs(): GatewayKnobs;
  setKnobs(patch: GatewayKnobPatch): GatewayKnobs;
  /** Every charge with this reference, declined ones included (status "failed"). */
  chargesFor(reference: string): Charge[];
  refundsFor(reference: string): Refund[];
  payoutsFor(reference: string): Payout[];
  /** Succeeded charges minus refunds for a reference, in minor units. */
  netCharged(reference: string): number;
  /** 'all' forgets everything and restores the creation knobs and seed; 'stats' zeroes counters only. */
  reset(scope?: 'all' | 'stats'): void;
};

const defaultKnobs: GatewayKnobs = {
  latencyMs: 0,
  rate429: 0,
  fail503Rate: 0,
  fail500AfterApplyRate: 0,
  dropAfterApplyRate: 0,
  outage: false,
  closedIbans: [],
};

const rate = z.number().min(0).max(1);
const ms = z.number().min(0);
const knobPatchSchema = z.strictObject({
  latencyMs: z.union([ms, z.strictObject({ min: ms, max: ms })]),
  rate429: rate,
  fail503Rate: rate,
  fail500AfterApplyRate: rate,
  dropAfterApplyRate: rate,
  outage: z.union([z.boolean(), z.number()]),
  outageForMs: ms,
  seed: z.number().int(),
}).partial();

// Registry lengths (ISO 13616) for the countries we are likely to see; others
// get the generic 15-34 bound.
const ibanLengths: Record<string, number> = {
  AD: 24, AT: 20, BE: 16, BG: 22, CH: 21, CY: 28, CZ: 24, DE: 22, DK: 18, EE: 20, ES: 24, FI: 18,
  FR: 27, GB: 22, GI: 23, GR: 27, HR: 21, HU: 28, IE: 22, IS: 26, IT: 27, LI: 21, LT: 20, LU: 20,
  LV: 21, MC: 27, MT: 31, NL: 18, NO: 15, PL: 28, PT: 25, RO: 24, SE: 24, SI: 19, SK: 24, SM: 27,
};

/** ISO 13616 IBAN check: shape, registry length, check digits 02-98, mod-97 = 1. `isValidIban('DE89 3704 0044 0532 0130 00') // true` */
export function isValidIban(input: string): boolean {
  const iban = input.replace(/ /g, '').toUpperCase();
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const expected = ibanLengths[iban.slice(0, 2)];
  if (expected !== undefined && iban.length !== expected) return false;
  const check = Number(iban.slice(2, 4));
  if (check < 2 || check > 98) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    // Letters count as two digits (A=10 … Z=35); folding digit by digit keeps it within a double.
    remainder = code >= 65 ? (remainder * 100 + (code - 55)) % 97 : (remainder * 10 + (code - 48)) % 97;
  }
  return remainder === 1;
}

// Key order must not make the same body look different.
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const isAmount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const isText = (v: unknown, max = 255): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isCurrency = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z]{3}$/.test(v);

function invalid(message: string): Outcome {
  return { status: 400, body: { error: { code: 'invalid_request', message } } };
}

/** Builds the payment gateway simulator around a Hono app. `const gw = createGatewaySimulator({ seed: 1 }); await gw.app.request('/v1/charges?reference=o-1')` */
export function createGatewaySimulator(options: GatewayOptions = {}): GatewaySimulator {
  const { now = Date.now, ...initialPatch } = options;
  const initialSeed = options.seed ?? randomSeed();
  const instance = randomBytes(4).toString('hex');

  let knobs: GatewayKnobs = { ...defaultKnobs };
  let seed = initialSeed;
  let random = createRandom(seed);
  let idCounter = 0;
  let idempotency = new Map<string, Stored>();
  let charges = new Map<string, Charge>();
  let refunds = new Map<string, Refund>();
  let payouts = new Map<string, Payout>();
  let byReference = new Map<string, { charges: Charge[]; refunds: Refund[]; payouts: Payout[] }>();
  let stats = freshStats();

  function freshStats() {
    return {
      requests: { total: 0, charge: 0, refund: 0, payout: 0, listCharges: 0, listRefunds: 0, listPayouts: 0, getCharge: 0, getPayout: 0 },
      statuses: {} as Record<string, number>,
      rateLimited: 0,
      errors5xx: 0,
      drops: 0,
      replays: 0,
      keyReused: 0,
      keyMissing: 0,
      declines: 0,
      applied: { charges: 0, refunds: 0, payouts: 0 },
      amounts: { charged: 0, refunded: 0, paidOut: 0 },
    };
  }

  function setKnobs(patch: GatewayKnobPatch): GatewayKnobs {
    const { seed: newSeed, outageForMs, ...rest } = patch;
    knobs = { ...knobs, ...rest };
    if (outageForMs !== undefined) knobs.outage = now() + outageForMs;
    if (newSeed !== undefined) {
      seed = newSeed;
      random = createRandom(seed);
    }
    return { ...knobs };
  }

  function reset(scope: 'all' | 'stats' = 'all') {
    stats = freshStats();
    if (scope === 'stats') return;
    idempotency = new Map();
    charges = new Map();
    refunds = new Map();
    payouts = new Map();
    byReference = new Map();
    knobs = { ...defaultKnobs };
    setKnobs({ ...initialPatch, seed: initialSeed });
  }
  reset();

  const newId = (prefix: string) => `${prefix}_${instance}${(++idCounter).toString(36).padStart(6, '0')}`;

  function ledger(reference: string) {
    let entry = byReference.get(reference);
    if (!entry) {
      entry = { charges: [], refunds: [], payouts: [] };
      byReference.set(reference, entry);
    }
    return entry;
  }

  function createCharge(raw: Record<string, unknown>): Outcome {
    const { amount, currency, source, reference } = raw;
    if (!isAmount(amount)) return invalid('amount must be a positive integer in minor units');
    if (!isCurrency(currency)) return invalid('currency must be a three-letter ISO 4217 code');
    if (!isText(source)) return invalid('source is required');
    if (!source.startsWith('tok_')) return invalid(`no such source: ${source}`);
    if (!isText(reference)) return invalid('reference is required');
    const declined = source === 'tok_declined';
    const charge: Charge = {
      id: newId('ch'),
      status: declined ? 'failed' : 'succeeded',
      amount,
      currency,
      reference,
      source,
      amountRefunded: 0,
      failureCode: declined ? 'card_declined' : null,
      created: now(),
    };
    charges.set(charge.id, charge);
    ledger(reference).charges.push(charge);
    if (declined) {
      stats.declines++;
      return { status: 402, body: { error: { code: 'card_declined', message: 'The card was declined.', charge: charge.id } } };
    }
    stats.applied.charges++;
    stats.amounts.charged += amount;
    return { status: 201, body: chargeView(charge) };
  }

  function createRefund(raw: Record<string, unknown>): Outcome {
    const { charge: chargeId, amount } = raw;
    if (!isText(chargeId)) return invalid('charge is required');
    if (amount !== undefined && !isAmount(amount)) return invalid('amount must be a positive integer in minor units');
    const charge = charges.get(chargeId);
    if (!charge) return { status: 404, body: { error: { code: 'charge_not_found', message: `no such charge: ${chargeId}` } } };
    const remaining = charge.status === 'succeeded' ? charge.amount - charge.amountRefunded : 0;
    const refundAmount = amount ?? remaining;
    if (refundAmount <= 0 || refundAmount > remaining) {
      return { status: 400, body: { error: { code: 'amount_exceeds_charge', message: `refundable amount of ${charge.id} is ${remaining}` } } };
    }
    charge.amountRefunded += refundAmount;
    const refund: Refund = {
      id: newId('re'),
      status: 'succeeded',
      charge: charge.id,
      amount: refundAmount,
      currency: charge.currency,
      reference: charge.reference,
      created: now(),
    };
    refunds.set(refund.id, refund);
    ledger(charge.reference).refunds.push(refund);
    stats.applied.refunds++;
    stats.amounts.refunded += refundAmount;
    return { status: 201, body: { ...refund } };
  }

  function createPayout(raw: Record<string, unknown>): Outcome {
    const { amount, currency, destination, reference } = raw;
    if (!isAmount(amount)) return invalid('amount must be a positive integer in minor units');
    if (!isCurrency(currency)) return invalid('currency must be a three-letter ISO 4217 code');
    if (!isText(reference)) return invalid('reference is required');
    if (typeof destination !== 'object' || destination === null) return invalid('destination is required');
    const { iban, holderName } = destination as Record<string, unknown>;
    if (!isText(iban, 64)) return invalid('destination.iban is required');
    if (!isText(holderName)) return invalid('destination.holderName is required');
    if (!isValidIban(iban)) return { status: 422, body: { error: { code: 'invalid_destination', message: 'destination.iban is not a valid IBAN' } } };
    if (knobs.closedIbans.includes(iban.replace(/ /g, '').toUpperCase())) return { status: 422, body: { error: { code: 'invalid_destination', message: 'the destination account is closed' } } };
    const payout: Payout = {
      id: newId('po'),
      status: 'paid',
      amount,
      currency,
      reference,
      destination: { iban, holderName },
      created: now(),
    };
    payouts.set(payout.id, payout);
    ledger(reference).payouts.push(payout);
    stats.applied.payouts++;
    stats.amounts.paidOut += amount;
    return { status: 201, body: payoutView(payout) };
  }

  const chargeView = (ch: Charge) => ({ ...ch });
  const payoutView = (po: Payout) => ({ ...po, destination: { ...po.destination } });

  function respond(c: Context, status: ContentfulStatusCode, body: object): Response {
    stats.statuses[status] = (stats.statuses[status] ?? 0) + 1;
    if (status >= 500) stats.errors5xx++;
    if (status === 429) c.header('Retry-After', '1');
    return c.json(body, status);
  }

  const error = (c: Context, status: ContentfulStatusCode, code: string, message: string) => respond(c, status, { error: { code, message } });

  // What every call goes through before its own work: rate limit, outage, latency, 503.
  async function gate(c: Context, endpoint: Endpoint): Promise<Response | undefined> {
    stats.requests.total++;
    stats.requests[endpoint]++;
    if (knobs.rate429 > 0 && random() < knobs.rate429) {
      stats.rateLimited++;
      return error(c, 429, 'rate_limited', 'too many requests');
    }
    const outage = knobs.outage;
    if (outage === true || (typeof outage === 'number' && now() < outage)) return error(c, 503, 'unavailable', 'gateway unavailable');
    const delay = drawLatency(knobs.latencyMs, random);
    if (delay > 0) await sleep(delay);
    if (knobs.fail503Rate > 0 && random() < knobs.fail503Rate) return error(c, 503, 'unavailable', 'gateway unavailable');
    return undefined;
  }

  async function handlePost(c: Context, endpoint: 'charge' | 'refund' | 'payout', run: (raw: Record<string, unknown>) => Outcome): Promise<Response> {
    // Read the body first: a client that gives up during the latency must not stop the change.
    const raw: unknown = await c.req.json().catch(() => undefined);
    const refused = await gate(c, endpoint);
    if (refused) return refused;

    const key = c.req.header('idempotency-key');
    if (!key) {
      stats.keyMissing++;
      return error(c, 400, 'idempotency_key_required', 'the Idempotency-Key header is required');
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return error(c, 400, 'invalid_request', 'the body must be a JSON object');

    const fingerprint = `${c.req.method} ${c.req.path} ${canonical(raw)}`;
    const stored = idempotency.get(key);
    if (stored) {
      if (stored.fingerprint !== fingerprint) {
        stats.keyReused++;
        return error(c, 422, 'idempotency_key_reused', 'this Idempotency-Key was used with another request');
      }
      stats.replays++;
      c.header('Idempotent-Replayed', 'true');
      return respond(c, stored.status, stored.body);
    }

    const outcome = run(raw as Record<string, unknown>);
    // Like Stripe: a request that failed validation never ran, so its key stays free.
    const ran = !(outcome.status === 400 && (outcome.body as { error: { code: string } }).error.code === 'invalid_request');
    if (ran) idempotency.set(key, { fingerprint, status: outcome.status, body: outcome.body });

    if (outcome.status === 201) {
      if (knobs.fail500AfterApplyRate > 0 && random() < knobs.fail500AfterApplyRate) return error(c, 500, 'internal', 'internal error');
      if (knobs.dropAfterApplyRate > 0 && random() < knobs.dropAfterApplyRate) {
        stats.drops++;
        return dropConnection(c.env);
      }
    }
    return respond(c, outcome.status, outcome.body);
  }

  async function handleList<T>(c: Context, endpoint: Endpoint, param: string, find: (value: string) => T[]): Promise<Response> {
    const refused = await gate(c, endpoint);
    if (refused) return refused;
    const value = c.req.query(param);
    if (!value) return error(c, 400, 'invalid_request', `the ${param} query parameter is required`);
    return respond(c, 200, { data: find(value) });
  }

  async function handleGet(c: Context, endpoint: Endpoint, find: (id: string) => object | undefined): Promise<Response> {
    const refused = await gate(c, endpoint);
    if (refused) return refused;
    const found = find(c.req.param('id')!);
    return found ? respond(c, 200, found) : error(c, 404, 'resource_missing', 'no such object');
  }

  const chargesFor = (reference: string) => (byReference.get(reference)?.charges ?? []).map(chargeView);
  const refundsFor = (reference: string) => (byReference.get(reference)?.refunds ?? []).map((r) => ({ ...r }));
  const payoutsFor = (reference: string) => (byReference.get(reference)?.payouts ?? []).map(payoutView);
  function netCharged(reference: string): number {
    const entry = byReference.get(reference);
    if (!entry) return 0;
    let net = 0;
    for (const ch of entry.charges) if (ch.status === 'succeeded') net += ch.amount;
    for (const re of entry.refunds) net -= re.amount;
    return net;
  }

  function getStats(): GatewayStats {
    return {
      ...stats,
      requests: { ...stats.requests },
      statuses: { ...stats.statuses },
      applied: { ...stats.applied },
      amounts: { ...stats.amounts },
      seed,
    };
  }

  const app = new Hono();
  app.onError((err, c) => {
    if (err instanceof DroppedConnectionError) throw err;
    return c.json({ error: { code: 'internal', message: 'internal error' } }, 500);
  });

  app.get('/_sim/stats', (c) => c.json(getStats()));
  app.get('/_sim/knobs', (c) => c.json({ ...knobs }));
  app.post('/_sim/knobs', async (c) => {
    const parsed = knobPatchSchema.safeParse(await c.req.json().catch(() => undefined));
    if (!parsed.success) return c.json({ error: { code: 'invalid_knobs', issues: parsed.error.issues } }, 400);
    return c.json(setKnobs(parsed.data));
  });
  app.post('/_sim/reset', (c) => {
    const scope = c.req.query('scope') === 'stats' ? 'stats' : 'all';
    reset(scope);
    return c.json({ reset: scope });
  });
  app.get('/_sim/references/:reference', (c) => {
    const reference = c.req.param('reference');
    return c.json({
      reference,
      charges: chargesFor(reference),
      refunds: refundsFor(reference),
      payouts: payoutsFor(reference),
      netCharged: netCharged(reference),
    });
  });

  app.post('/v1/charges', (c) => handlePost(c, 'charge', createCharge));
  app.post('/v1/refunds', (c) => handlePost(c, 'refund', createRefund));
  app.post('/v1/payouts', (c) => handlePost(c, 'payout', createPayout));
  app.get('/v1/charges', (c) => handleList(c, 'listCharges', 'reference', chargesFor));
  app.get('/v1/payouts', (c) => handleList(c, 'listPayouts', 'reference', payoutsFor));
  app.get('/v1/refunds', (c) => handleList(c, 'listRefunds', 'charge', (id) => [...refunds.values()].filter((r) => r.charge === id)));
  app.get('/v1/charges/:id', (c) => handleGet(c, 'getCharge', (id) => { const ch = charges.get(id); return ch && chargeView(ch); }));
  app.get('/v1/payouts/:id', (c) => handleGet(c, 'getPayout', (id) => { const po = payouts.get(id); return po && payoutView(po); }));

  return {
    app,
    stats: getStats,
    knobs: () => ({ ...knobs }),
    setKnobs,
    chargesFor,
    refundsFor,
    payoutsFor,
    netCharged,
    reset,
  };
}

export type RunningGatewaySimulator = ServedApp & { sim: GatewaySimulator };

/** Serves a gateway simulator on a port (0 = any free one). `const gw = await startGatewaySimulator(); ...; await gw.close()` */
export async function startGatewaySimulator(options: GatewayOptions & { port?: number; hostname?: string } = {}): Promise<RunningGatewaySimulator> {
  const { port, hostname, ...simOptions } = options;
  const sim = createGatewaySimulator(simOptions);
  const served = await serveApp(sim.app, { port, hostname });
  return { ...served, sim };
}

// `PORT=9025 GATEWAY_SIM_KNOBS='{"fail503Rate":0.1}' node services/simulators/gateway.ts`
if (import.meta.main) {
  const knobs = process.env.GATEWAY_SIM_KNOBS ? knobPatchSchema.parse(JSON.parse(process.env.GATEWAY_SIM_KNOBS)) : {};
  const running = await startGatewaySimulator({ ...knobs, port: Number(process.env.PORT ?? 0) });
  console.log(`payment gateway simulator listening on ${running.url}`);
}
