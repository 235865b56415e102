// The payment gateway client (CONTRACTS.md, "Payment gateway"), shared by funding
// payouts and commerce payments. Every call goes through one opossum breaker; only
// what says "the gateway is in trouble" counts against it: 5xx, timeouts, network
// errors. Business answers (402 declined, 422 invalid destination) are results, not
// errors, and 429 is the gateway pacing us, not failing.
//
// What the caller must know about errors:
//  - GatewayAmbiguousError (5xx, timeout, dropped connection on a POST): the change
//    may or may not have happened. Look up by reference before trying again; a retry
//    with the same Idempotency-Key is safe at the gateway, but the look-up is what
//    tells you the truth when keys expire or a harsher gateway forgets them.
//  - GatewayRateLimitedError: come back after retryAfterMs.
//  - GatewayUnavailableError: the breaker is open; nothing was sent. Pause.
//  - GatewayRejectedError: a permanent 4xx that is not a typed outcome (our bug, or
//    an Idempotency-Key reused with another body). Retrying cannot help.
import { tracedFetch, type Tracing } from './tracing.ts';
import { createBreaker, type BreakerMetrics, type BreakerState } from './breaker.ts';
import type { Logger } from './log.ts';
import { parseRetryAfter } from './retry.ts';

export type GatewayCharge = { id: string; status: string; amount: number; currency: string; reference: string; [k: string]: unknown };
export type GatewayRefund = { id: string; status: string; charge?: string; amount?: number; [k: string]: unknown };
export type GatewayPayout = {
  id: string; status: string; amount: number; currency: string; reference: string;
  destination?: { iban: string; holderName: string }; [k: string]: unknown;
};

export type ChargeResult =
  | { outcome: 'ok'; charge: GatewayCharge; replayed: boolean }
  | { outcome: 'declined'; code: string; message: string };
export type RefundResult = { outcome: 'ok'; refund: GatewayRefund; replayed: boolean };
export type PayoutResult =
  | { outcome: 'ok'; payout: GatewayPayout; replayed: boolean }
  | { outcome: 'invalid_destination'; message: string };

export type { BreakerState };

export type GatewayBreakerOptions = {
  /** Failure share (percent) within the rolling window that opens the breaker. Default 50. */
  errorThresholdPercentage?: number;
  /** Calls in the window before the breaker may open. Default 5. */
  volumeThreshold?: number;
  /** Open → half-open after this long. Default 10 s. */
  resetTimeoutMs?: number;
  /** Rolling statistics window. Default 10 s. */
  rollingWindowMs?: number;
};

export type GatewayClientOptions = {
  baseUrl: string;
  log: Logger;
  /** Per-request timeout; a timed-out POST is ambiguous. Default 10 s. */
  timeoutMs?: number;
  breaker?: GatewayBreakerOptions;
  /** Report the breaker as orderflow_breaker_state{system="payment-gateway", client}. */
  metrics?: BreakerMetrics;
  /** For tests and instrumentation; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** A CLIENT span per call, with the trace in its headers (deps.tracing). */
  tracing?: Tracing;
};

export type GatewayClient = {
  charge(req: { amount: number; currency: string; source: string; reference: string }, idempotencyKey: string): Promise<ChargeResult>;
  refund(req: { charge: string; amount?: number }, idempotencyKey: string): Promise<RefundResult>;
  payout(req: { amount: number; currency: string; destination: { iban: string; holderName: string }; reference: string }, idempotencyKey: string): Promise<PayoutResult>;
  findCharges(reference: string): Promise<GatewayCharge[]>;
  findPayouts(reference: string): Promise<GatewayPayout[]>;
  /** True while the breaker is open (calls fail fast; workers should stop pulling). */
  isOpen(): boolean;
  state(): BreakerState;
  /** Subscribe to breaker transitions; returns an unsubscribe function. */
  onStateChange(cb: (state: BreakerState) => void): () => void;
  close(): void;
};

/** Base class of every error the client throws. */
export class GatewayError extends Error {
  override name = 'GatewayError';
}

/** Worth trying again later; nothing permanent was learned. */
export class GatewayTransientError extends GatewayError {
  override name = 'GatewayTransientError';
}

/** A POST whose fate is unknown (5xx, timeout, dropped connection): look up by reference before any retry. */
export class GatewayAmbiguousError extends GatewayTransientError {
  override name = 'GatewayAmbiguousError';
  readonly kind: 'server-error' | 'timeout' | 'network';
  readonly status: number | undefined;
  constructor(message: string, kind: 'server-error' | 'timeout' | 'network', status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.status = status;
  }
}

/** 429: the gateway asks us to slow down. */
export class GatewayRateLimitedError extends GatewayTransientError {
  override name = 'GatewayRateLimitedError';
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super(`payment gateway rate limited; retry after ${retryAfterMs} ms`);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The breaker is open: the request was not sent. */
export class GatewayUnavailableError extends GatewayTransientError {
  override name = 'GatewayUnavailableError';
}

/** A permanent refusal that is not a typed outcome (e.g. 400 invalid_request, 422 idempotency_key_reused). */
export class GatewayRejectedError extends GatewayError {
  override name = 'GatewayRejectedError';
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(`payment gateway refused (${status} ${code}): ${message}`);
    this.status = status;
    this.code = code;
  }
}

// Thrown inside the breaker, so opossum counts it; mapped to the public errors outside.
class TroubleError extends Error {
  readonly trouble: { kind: 'server-error' | 'timeout' | 'network'; status?: number };
  constructor(message: string, trouble: TroubleError['trouble'], options?: { cause?: unknown }) {
    super(message, options);
    this.trouble = trouble;
  }
}

type Raw = { status: number; body: any; headers: Headers };
type Call = { method: 'GET' | 'POST'; path: string; body?: unknown; key?: string };

/** A breaker-guarded gateway client. `const gw = createGatewayClient({ baseUrl: 'http://127.0.0.1:9025', log }); await gw.payout({...}, applicationId)` */
export function createGatewayClient(opts: GatewayClientOptions): GatewayClient {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const doFetch = tracedFetch(opts.tracing, opts.fetch ?? fetch, 'payment-gateway');
  const log = opts.log.child({ dependency: 'payment-gateway' });

  const send = async (call: Call): Promise<Raw> => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (call.body !== undefined) headers['content-type'] = 'application/json';
    if (call.key !== undefined) headers['idempotency-key'] = call.key;
    let res: Response;
    let text: string;
    try {
      res = await doFetch(base + call.path, {
        method: call.method, headers, body: call.body === undefined ? undefined : JSON.stringify(call.body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      const timedOut = (err as Error)?.name === 'TimeoutError' || (err as Error)?.name === 'AbortError';
      throw new TroubleError(timedOut ? `no answer within ${timeoutMs} ms` : `connection failed: ${describe(err)}`, { kind: timedOut ? 'timeout' : 'network' }, { cause: err });
    }
    let body: any;
    try { body = text ? JSON.parse(text) : undefined; } catch { body = text; }
    if (res.status >= 500) throw new TroubleError(`answered ${res.status}${body?.error?.code ? ` ${body.error.code}` : ''}`, { kind: 'server-error', status: res.status });
    return { status: res.status, body, headers: res.headers };
  };

  const b = opts.breaker ?? {};
  const breaker = createBreaker(send, {
    system: 'payment-gateway', log, metrics: opts.metrics,
    opossum: { errorThresholdPercentage: b.errorThresholdPercentage, volumeThreshold: b.volumeThreshold, resetTimeout: b.resetTimeoutMs, rollingCountTimeout: b.rollingWindowMs },
  });

  const request = async (call: Call): Promise<Raw> => {
    try {
      return await breaker.fire(call);
    } catch (err) {
      if (err instanceof TroubleError) {
        const what = `${call.method} ${call.path.split('?')[0]}`;
        if (call.method === 'POST') throw new GatewayAmbiguousError(`payment gateway ${what}: ${err.message}; the outcome is unknown`, err.trouble.kind, err.trouble.status, { cause: err });
        throw new GatewayTransientError(`payment gateway ${what}: ${err.message}`, { cause: err });
      }
      if ((err as { code?: string })?.code === 'EOPENBREAKER') throw new GatewayUnavailableError('payment gateway circuit breaker is open; request not sent', { cause: err });
      throw err;
    }
  };

  // Everything that is neither a success nor a typed outcome.
  const refuse = (r: Raw): never => {
    if (r.status === 429) throw new GatewayRateLimitedError(parseRetryAfter(r.headers.get('retry-after')) ?? 1000);
    const code = typeof r.body?.error?.code === 'string' ? r.body.error.code : 'unknown';
    const message = typeof r.body?.error?.message === 'string' ? r.body.error.message : JSON.stringify(r.body ?? null).slice(0, 200);
    throw new GatewayRejectedError(r.status, code, message);
  };
  const replayed = (r: Raw) => r.headers.get('idempotent-replayed') === 'true';
  const requireKey = (key: string) => {
    if (typeof key !== 'string' || !key.length) throw new TypeError('an Idempotency-Key is required on every gateway POST');
  };
  const list = async <T>(path: string): Promise<T[]> => {
    const r = await request({ method: 'GET', path });
    if (r.status !== 200) return refuse(r);
    return Array.isArray(r.body?.data) ? r.body.data : [];
  };

  return {
    async charge(req, key) {
      requireKey(key);
      const r = await request({ method: 'POST', path: '/v1/charges', body: req, key });
      if (r.status === 200 || r.status === 201) return { outcome: 'ok', charge: r.body, replayed: replayed(r) };
      if (r.status === 402) return { outcome: 'declined', code: r.body?.error?.code ?? 'card_declined', message: r.body?.error?.message ?? 'declined' };
      return refuse(r);
    },
    async refund(req, key) {
      requireKey(key);
      const r = await request({ method: 'POST', path: '/v1/refunds', body: req, key });
      if (r.status === 200 || r.status === 201) return { outcome: 'ok', refund: r.body, replayed: replayed(r) };
      return refuse(r);
    },
    async payout(req, key) {
      requireKey(key);
      const r = await request({ method: 'POST', path: '/v1/payouts', body: req, key });
      if (r.status === 200 || r.status === 201) return { outcome: 'ok', payout: r.body, replayed: replayed(r) };
      if (r.status === 422 && r.body?.error?.code === 'invalid_destination') return { outcome: 'invalid_destination', message: r.body.error.message ?? 'invalid destination' };
      return refuse(r);
    },
    findCharges: (reference) => list<GatewayCharge>(`/v1/charges?reference=${encodeURIComponent(reference)}`),
    findPayouts: (reference) => list<GatewayPayout>(`/v1/payouts?reference=${encodeURIComponent(reference)}`),
    isOpen: breaker.isOpen,
    state: breaker.state,
    onStateChange: breaker.onStateChange,
    close: breaker.shutdown,
  };
}

function describe(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause ? `${e.message} (${cause})` : String(e?.message ?? err);
}
