// An in-memory SMS provider (CONTRACTS.md, "External systems"): one send
// endpoint with Idempotency-Key semantics, and knobs for the transient
// failures (429, 503, latency) the notification worker must ride out.
import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import type { Context } from 'hono';
import { z } from 'zod';
import { createRandom, drawLatency, randomSeed, serveApp, sleep } from './serve.ts';
import type { LatencyMs } from './serve.ts';

export type SmsMessage = {
  id: string;
  to: string;
  body: string;
  idempotencyKey: string;
  receivedAt: string;
};

export type SmsKnobs = {
  /** Fraction (0..1) of sends answered 503 before anything is stored. */
  fail503Rate: number;
  /** Fraction (0..1) of sends answered 429 with `Retry-After: 1`. */
  rate429: number;
  /** Added before every send is answered. */
  latencyMs: LatencyMs;
};

export type SmsKnobPatch = Partial<SmsKnobs> & { seed?: number };

export type SmsOptions = SmsKnobPatch & {
  /** Oldest messages (and their idempotency records) are dropped beyond this. Default 100,000. */
  maxMessages?: number;
};

export type SmsStats = {
  /** POST /v1/messages arrivals, whatever the answer. */
  requests: number;
  /** New messages stored (202 that were not replays). */
  accepted: number;
  /** Same key and body answered from the idempotency record. */
  replayed: number;
  invalid: number;
  keyReused: number;
  rateLimited: number;
  failed503: number;
  /** Messages held now. */
  stored: number;
};

export type SmsSimulator = {
  app: Hono;
  /** Received messages, oldest first; only those to `to` when given. */
  messages(to?: string): SmsMessage[];
  setKnobs(patch: SmsKnobPatch): SmsKnobs;
  knobs(): SmsKnobs;
  stats(): SmsStats;
  /** Forget messages, idempotency records and stats; knobs and seed go back to the creation options. */
  reset(): void;
};

const E164 = /^\+[1-9]\d{6,14}$/;

const sendSchema = z.object({
  to: z.string().regex(E164, 'must be E.164, e.g. +15551234567'),
  body: z.string().min(1).max(1600),
});

const latencySchema = z.union([
  z.number().min(0),
  z.object({ min: z.number().min(0), max: z.number().min(0) }).refine((l) => l.max >= l.min, 'max must be >= min'),
]);

const knobSchema = z.object({
  fail503Rate: z.number().min(0).max(1).optional(),
  rate429: z.number().min(0).max(1).optional(),
  latencyMs: latencySchema.optional(),
  seed: z.number().int().optional(),
}).strict();

type StoredResponse = { fingerprint: string; status: 202; body: { id: string } };

/** An SMS provider simulator to mount or serve. `const sim = createSmsSimulator({ rate429: 0.2, seed: 1 })` */
export function createSmsSimulator(options: SmsOptions = {}): SmsSimulator {
  const { maxMessages = 100_000, ...initial } = options;
  const initialSeed = initial.seed ?? randomSeed();
  const defaults: SmsKnobs = { fail503Rate: 0, rate429: 0, latencyMs: 0 };
  let knobs: SmsKnobs = { ...defaults };
  let random = createRandom(initialSeed);
  // Maps keep insertion order, so the first key is the oldest: eviction is O(1).
  const store = new Map<string, SmsMessage>();
  const idempotency = new Map<string, StoredResponse>();
  let stats = emptyStats();

  function setKnobs(patch: SmsKnobPatch): SmsKnobs {
    const parsed = knobSchema.parse(patch);
    const { seed, ...rest } = parsed;
    knobs = { ...knobs, ...rest };
    if (seed !== undefined) random = createRandom(seed);
    return { ...knobs };
  }
  setKnobs({ ...initial, seed: initialSeed });

  function chance(rate: number): boolean {
    return rate > 0 && random() < rate;
  }

  function keep(msg: SmsMessage, response: StoredResponse): void {
    store.set(msg.id, msg);
    idempotency.set(msg.idempotencyKey, response);
    stats.accepted++;
    while (store.size > maxMessages) store.delete(store.keys().next().value as string);
    while (idempotency.size > maxMessages) idempotency.delete(idempotency.keys().next().value as string);
  }

  function invalid(c: Context, message: string, details?: Array<{ field: string; message: string }>) {
    stats.invalid++;
    return c.json({ error: { code: 'invalid_request', message, ...(details ? { details } : {}) } }, 400);
  }

  const app = new Hono();

  app.post('/v1/messages', async (c) => {
    stats.requests++;
    const raw = await c.req.text();
    // Everything after the latency is synchronous, so two requests with one key
    // can never both pass the idempotency check: the second replays the first.
    const latency = drawLatency(knobs.latencyMs, random);
    if (latency > 0) await sleep(latency);
    if (chance(knobs.rate429)) {
      stats.rateLimited++;
      c.header('Retry-After', '1');
      return c.json({ error: { code: 'rate_limited', message: 'too many requests' } }, 429);
    }
    if (chance(knobs.fail503Rate)) {
      stats.failed503++;
      return c.json({ error: { code: 'unavailable', message: 'temporarily unavailable' } }, 503);
    }

    const key = c.req.header('idempotency-key');
    if (!key) return invalid(c, 'Idempotency-Key header is required');
    if (key.length > 255) return invalid(c, 'Idempotency-Key is longer than 255 characters');
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return invalid(c, 'body is not JSON');
    }
    const fingerprint = JSON.stringify(body);

    const earlier = idempotency.get(key);
    if (earlier) {
      if (earlier.fingerprint !== fingerprint) {
        stats.keyReused++;
        return c.json({ error: { code: 'idempotency_key_reused', message: 'this Idempotency-Key was used with another body' } }, 422);
      }
      stats.replayed++;
      c.header('Idempotent-Replayed', 'true');
      return c.json(earlier.body, earlier.status);
    }

    const parsed = sendSchema.safeParse(body);
    if (!parsed.success) {
      return invalid(c, 'invalid message', parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message })));
    }
    const msg: SmsMessage = {
      id: `SM${randomBytes(12).toString('hex')}`,
      to: parsed.data.to,
      body: parsed.data.body,
      idempotencyKey: key,
      receivedAt: new Date().toISOString(),
    };
    const response: StoredResponse = { fingerprint, status: 202, body: { id: msg.id } };
    keep(msg, response);
    return c.json(response.body, response.status);
  });

  app.get('/v1/messages', (c) => {
    const to = c.req.query('to');
    const limit = Math.max(1, Math.min(Number(c.req.query('limit')) || 1000, 100_000));
    const data = messages(to).reverse().slice(0, limit);
    return c.json({ data });
  });

  app.get('/_sim/stats', (c) => c.json(getStats()));

  app.get('/_sim/knobs', (c) => c.json({ ...knobs }));

  app.post('/_sim/knobs', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: { code: 'invalid_request', message: 'body is not JSON' } }, 400);
    }
    const parsed = knobSchema.safeParse(body);
    if (!parsed.success) {
      return c.json({ error: { code: 'invalid_request', message: 'invalid knobs', details: parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })) } }, 400);
    }
    return c.json(setKnobs(parsed.data));
  });

  app.post('/_sim/reset', (c) => {
    reset();
    return c.json({ reset: true });
  });

  function messages(to?: string): SmsMessage[] {
    const all = [...store.values()];
    return to ? all.filter((m) => m.to === to) : all;
  }

  function getStats(): SmsStats {
    return { ...stats, stored: store.size };
  }

  function reset(): void {
    store.clear();
    idempotency.clear();
    stats = emptyStats();
    knobs = { ...defaults };
    setKnobs({ ...initial, seed: initialSeed });
  }

  return { app, messages, setKnobs, knobs: () => ({ ...knobs }), stats: getStats, reset };
}

/** Serve an SMS simulator on loopback; port 0 (the default) picks a free one. `const { url, sim, close } = await startSmsSimulator()` */
export async function startSmsSimulator(options: SmsOptions & { port?: number; hostname?: string } = {}): Promise<{ url: string; port: number; close(): Promise<void>; sim: SmsSimulator }> {
  const { port, hostname, ...simOptions } = options;
  const sim = createSmsSimulator(simOptions);
  const served = await serveApp(sim.app, { port: port ?? 0, hostname });
  return { url: served.url, port: served.port, close: served.close, sim };
}

function emptyStats(): SmsStats {
  return { requests: 0, accepted: 0, replayed: 0, invalid: 0, keyReused: 0, rateLimited: 0, failed503: 0, stored: 0 };
}

if (import.meta.main) {
  const { url, close } = await startSmsSimulator({ port: Number(process.env.SMS_SIM_PORT ?? 8026) });
  console.log(`sms simulator: ${url}/v1/messages`);
  const stop = () => { void close().then(() => process.exit(0)); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
