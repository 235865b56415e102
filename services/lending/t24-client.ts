// The lending service's only door to Temenos T24 (CONTRACTS.md, "Temenos T24").
//
// Every HTTP call waits for a token from the cluster-wide rate share, then goes
// through one opossum breaker. Business answers come back as typed outcomes;
// anything worth retrying later is thrown as a T24TransientError.
//
// After an ambiguous failure (5xx, timeout, dropped connection: the change may
// have landed) the contract allows two ways on, chosen by `afterAmbiguous`:
//  - 'readback': GET the loan first, POST only if the change is not there
//    (`readBackFirst` on the error tells the worker to persist that need);
//  - 'resend': POST the same move again; a move that already landed answers a
//    409 with this investor in the target state, which counts as success. One
//    call where the read-back costs one or two, and never a second change:
//    T24's own state machine refuses it.
// Idempotency-Key is sent, but correctness never depends on T24 honouring it.
//
// The breaker judges T24 as a whole (outage.ts): it opens when the recent
// failures span many different loans, not when a few bad loans fail again and
// again. Opossum keeps the states and the reset timer; its own call-share rule
// is switched off. A failure seen while the breaker opened is flagged `outage`,
// so the worker does not charge it to the item.
import type CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import * as z from 'zod';
import { backoff, createBreaker, parseRetryAfter, tracedFetch, type BreakerMetrics, type BreakerState, type Tracing } from '../kit/index.ts';
import { createLatencyEstimate } from './latency.ts';
import { createOutageWindow, looksLikeOutage } from './outage.ts';
import type { Pacer, Release } from './pacer.ts';

export type T24Phase = 'reserve' | 'invest';
export type T24LoanStatus = 'AVAILABLE' | 'RESERVED' | 'INVESTED';
export type T24Loan = { loanId: string; status: T24LoanStatus; investorId: string | null };
export type T24ApplyBody = { investorId: string; orderId: string; amount: number };

export type T24PermanentReason = 'LOAN_NOT_FOUND' | 'INVALID_REQUEST' | `CONFLICT:${string}:${string}` | `HTTP_${number}`;

export type T24Outcome =
  | {
      kind: 'ok';
      /** null when success was learnt from a 409 or a read-back, which carry no code. */
      transactionCode: string | null;
      status: T24LoanStatus;
      via: 'applied' | 'conflict' | 'readback';
    }
  | { kind: 'permanent'; reason: T24PermanentReason };

export type T24BreakerState = BreakerState;

export type T24RetryOptions = {
  /** Tries per call, read-backs not counted. 1 = no in-call retry. */
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** No retry starts that would end after this many ms since the call began. */
  maxElapsedMs?: number;
};

export type T24ClientOptions = {
  baseUrl: string;
  /** This replica's pacing toward T24 (pacer.ts over the rate share's currentShare). */
  rateShare: Pick<Pacer, 'acquire' | 'currentShare'>;
  log: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  /** The longest a call may take; with minTimeoutMs the ceiling of an adaptive timeout. */
  timeoutMs?: number;
  /** Floor of the adaptive timeout (timeoutFactor × p90 latency); unset: always timeoutMs. */
  minTimeoutMs?: number;
  timeoutFactor?: number;
  /**
   * resetTimeout, errorThresholdPercentage, volumeThreshold and rollingCountTimeout
   * feed the outage judge (outage.ts); `minFailedLoans` (default volumeThreshold) is
   * how many distinct loans must have failed among the last calls.
   */
  breaker?: CircuitBreaker.Options<[T24HttpRequest]> & { minFailedLoans?: number };
  /** What follows an ambiguous failure: a read-back GET (default) or the same move again. */
  afterAmbiguous?: 'readback' | 'resend';
  /** Report the breaker as orderflow_breaker_state{system="t24", client}. */
  metrics?: BreakerMetrics;
  retry?: T24RetryOptions;
  fetch?: typeof fetch;
  /** A CLIENT span per HTTP call, with the trace in its headers (deps.tracing). */
  tracing?: Tracing;
  /** For the backoff jitter. */
  random?: () => number;
};

export type T24CallOptions = { signal?: AbortSignal };

export type T24ClientStats = {
  /** Finished reserve/invest/getLoan calls by how they ended. */
  outcomes: {
    ok: number;
    okViaConflict: number;
    okViaReadback: number;
    permanent: number;
    rateLimited: number;
    unavailable: number;
    ambiguous: number;
    transient: number;
  };
  /** HTTP responses by status, plus 'timeout' and 'network' for no response. */
  responses: Record<string, number>;
  requests: number;
  /** 429s received; ~0 when pacing works. */
  received429: number;
  readBacks: number;
  /** Moves sent again after an ambiguous failure instead of a read-back. */
  resends: number;
  retries: number;
  breaker: { state: T24BreakerState; opened: number };
  latency: { ewmaMs: number; p90Ms: number; samples: number };
  share: number;
  recommendedConcurrency: number;
};

export type T24Client = {
  /** The loan, or null when T24 does not know it. Throws T24TransientError subclasses. */
  getLoan(loanId: string, opts?: T24CallOptions): Promise<T24Loan | null>;
  reserve(loanId: string, body: T24ApplyBody, opts?: T24CallOptions & { ambiguousBefore?: boolean }): Promise<T24Outcome>;
  invest(loanId: string, body: T24ApplyBody, opts?: T24CallOptions & { ambiguousBefore?: boolean }): Promise<T24Outcome>;
  /** One reserve/invest with in-call retries; reads the loan back first when `ambiguousBefore` (persisted by the worker) is set. */
  applyWithReadback(loanId: string, phase: T24Phase, body: T24ApplyBody, opts: T24CallOptions & { ambiguousBefore: boolean }): Promise<T24Outcome>;
  /** True while the breaker is open: workers stop pulling. Half-open counts as closed so a trial call can happen. */
  isOpen(): boolean;
  breakerState(): T24BreakerState;
  /** Returns an unsubscribe function. */
  onStateChange(cb: (state: T24BreakerState) => void): () => void;
  /** In-flight calls that keep the share busy: ceil(share × p90 s × 1.5) in [1, 256]. */
  recommendedConcurrency(): number;
  stats(): T24ClientStats;
  shutdown(): void;
};

/**
 * Base of every error worth retrying later. `readBackFirst`: the next attempt must GET the loan before POSTing.
 * `outage`: the breaker opened around this failure, so it says nothing about the item.
 */
export class T24TransientError extends Error {
  override name = 'T24TransientError';
  readonly retryAfterMs: number | undefined;
  readBackFirst: boolean;
  outage: boolean;
  constructor(message: string, options: { cause?: unknown; retryAfterMs?: number; readBackFirst?: boolean; outage?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs;
    this.readBackFirst = options.readBackFirst ?? false;
    this.outage = options.outage ?? false;
  }
}

/** T24 answered 429; come back after `retryAfterMs`. */
export class T24RateLimitedError extends T24TransientError {
  override name = 'T24RateLimitedError';
  declare readonly retryAfterMs: number;
}

/** The breaker is open (or the client is shut down); nothing was sent. */
export class T24UnavailableError extends T24TransientError {
  override name = 'T24UnavailableError';
  declare readonly retryAfterMs: number;
}

/** A POST got a 5xx, timed out or lost its connection: the change may or may not have happened. */
export class T24AmbiguousError extends T24TransientError {
  override name = 'T24AmbiguousError';
}

/** T24 answered something the contract does not describe, on a read. */
export class T24UnexpectedResponseError extends Error {
  override name = 'T24UnexpectedResponseError';
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export type T24HttpRequest = {
  method: 'GET' | 'POST';
  path: string;
  body?: T24ApplyBody;
  idempotencyKey?: string;
  signal?: AbortSignal;
};

type HttpResponse = { status: number; body: unknown; retryAfterMs: number | undefined; outage?: boolean };

// Thrown inside the breaker for non-2xx so the breaker sees them; 4xx are filtered out.
class HttpStatusError extends Error {
  override name = 'HttpStatusError';
  readonly response: HttpResponse;
  constructor(response: HttpResponse) {
    super(`T24 answered ${response.status}`);
    this.response = response;
  }
}

// No response at all: timeout, refused, reset.
class NoResponseError extends Error {
  override name = 'NoResponseError';
  readonly timedOut: boolean;
  readonly callerAborted: boolean;
  outage = false;
  constructor(message: string, options: { cause: unknown; timedOut: boolean; callerAborted: boolean }) {
    super(message, { cause: options.cause });
    this.timedOut = options.timedOut;
    this.callerAborted = options.callerAborted;
  }
}

const statusSchema = z.enum(['AVAILABLE', 'RESERVED', 'INVESTED']);
const loanSchema = z.object({ loanId: z.string(), status: statusSchema, investorId: z.string().nullable().optional() });
const appliedSchema = loanSchema.extend({ transactionCode: z.string() });
const conflictSchema = z.object({ error: z.literal('CONFLICT'), status: statusSchema, investorId: z.string().nullable().optional() });

/** Whether the loan is where `phase` wants it for this investor; INVESTED also satisfies reserve (it only got there through a reserve). `hasReached({ status: 'RESERVED', investorId: 'inv-7' }, 'reserve', 'inv-7') === true` */
export function hasReached(loan: { status: T24LoanStatus; investorId?: string | null }, phase: T24Phase, investorId: string): boolean {
  if (loan.investorId !== investorId) return false;
  return phase === 'reserve' ? loan.status === 'RESERVED' || loan.status === 'INVESTED' : loan.status === 'INVESTED';
}

/** The T24 client. `const t24 = createT24Client({ baseUrl: config.t24Url, rateShare, log }); const r = await t24.reserve('L-1', { investorId, orderId, amount })` */
export function createT24Client(options: T24ClientOptions): T24Client {
  const { rateShare, log } = options;
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 5000;
  // A call's own timeout follows T24's latency: `timeoutFactor` × p90, at least
  // `minTimeoutMs`, at most timeoutMs. A stalled call (seconds where p90 is tens of ms)
  // is cut and sent again (or read back) ~1 s in instead of 5 s; a T24 that slows
  // down as a whole raises p90, and with it the timeout, within ~10 calls (timed-out
  // calls are observed at their full wait). Off (timeoutMs always) without minTimeoutMs.
  const minTimeoutMs = Math.min(timeoutMs, options.minTimeoutMs ?? timeoutMs);
  const timeoutFactor = options.timeoutFactor ?? 10;
  const callTimeout = () => Math.round(Math.min(timeoutMs, Math.max(minTimeoutMs, timeoutFactor * latency.p90Ms())));
  const fetchFn = tracedFetch(options.tracing, options.fetch ?? globalThis.fetch, 't24');
  const resend = options.afterAmbiguous === 'resend';
  const random = options.random ?? Math.random;
  const retry = {
    maxAttempts: Math.max(1, options.retry?.maxAttempts ?? 3),
    baseDelayMs: options.retry?.baseDelayMs ?? 200,
    maxDelayMs: options.retry?.maxDelayMs ?? 2000,
    maxElapsedMs: options.retry?.maxElapsedMs ?? 3 * timeoutMs + 5000,
  };

  const outcomes: T24ClientStats['outcomes'] = { ok: 0, okViaConflict: 0, okViaReadback: 0, permanent: 0, rateLimited: 0, unavailable: 0, ambiguous: 0, transient: 0 };
  const responses: Record<string, number> = {};
  let requests = 0;
  let received429 = 0;
  let readBacks = 0;
  let resends = 0;
  let retries = 0;
  let shut = false;

  // Before any sample, guess high: a few idle slots cost little, too few starve the share.
  const latency = createLatencyEstimate({ alpha: 0.1, beforeAnyMs: 1000 });

  async function send(req: T24HttpRequest): Promise<HttpResponse> {
    const callTimeoutMs = callTimeout();
    // The deadline is checked only after the event loop has read the sockets once more
    // (setImmediate runs after the poll phase): when our own loop stalled past it (GC, a
    // busy box), an answer already waiting there is taken, not cut as T24's silence.
    const timeout = new AbortController();
    let answered = false;
    const timer = setTimeout(() => setImmediate(() => {
      if (!answered) timeout.abort(new DOMException(`no answer within ${callTimeoutMs} ms`, 'TimeoutError'));
    }), callTimeoutMs);
    const signal = req.signal ? AbortSignal.any([timeout.signal, req.signal]) : timeout.signal;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.body) headers['content-type'] = 'application/json';
    if (req.idempotencyKey) headers['idempotency-key'] = req.idempotencyKey;
    const started = performance.now();
    requests++;
    try {
      const res = await fetchFn(baseUrl + req.path, {
        method: req.method,
        headers,
        body: req.body ? JSON.stringify(req.body) : undefined,
        signal,
      });
      // lending/http-fetch.ts resolves with the whole body in hand: the call is over.
      answered = true;
      clearTimeout(timer);
      const text = await res.text();
      latency.observe(performance.now() - started);
      responses[res.status] = (responses[res.status] ?? 0) + 1;
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      const response: HttpResponse = { status: res.status, body, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
      if (res.status >= 200 && res.status < 300) return response;
      throw new HttpStatusError(response);
    } catch (err) {
      if (err instanceof HttpStatusError) throw err;
      clearTimeout(timer);
      latency.observe(performance.now() - started);
      const timedOut = timeout.signal.aborted;
      const callerAborted = !timedOut && req.signal?.aborted === true;
      const kind = timedOut ? 'timeout' : 'network';
      responses[kind] = (responses[kind] ?? 0) + 1;
      throw new NoResponseError(`${req.method} ${req.path}: ${timedOut ? `no answer within ${callTimeoutMs} ms` : String(err)}`, { cause: err, timedOut, callerAborted });
    }
  }

  const { minFailedLoans, ...userBreaker } = options.breaker ?? {};
  const minCalls = userBreaker.volumeThreshold ?? 10;
  const outagePolicy = {
    minCalls,
    minFailedTargets: minFailedLoans ?? minCalls,
    errorPct: userBreaker.errorThresholdPercentage ?? 50,
  };
  // Twice the targets needed: an outage fills it with failures within that many calls.
  const recent = createOutageWindow({
    size: Math.max(outagePolicy.minCalls, 2 * outagePolicy.minFailedTargets),
    maxAgeMs: userBreaker.rollingCountTimeout ?? 10_000,
  });
  const breaker = createBreaker(send, {
    system: 't24', log, metrics: options.metrics,
    opossum: {
      ...userBreaker,
      // Opossum's own rule (failed share of all calls) never opens it: the outage
      // judge does (judge() below). A failed half-open trial still reopens it.
      volumeThreshold: Number.MAX_SAFE_INTEGER,
      errorThresholdPercentage: 100,
      // Business answers (404/409/422) and 429 prove T24 is up; a caller's own abort says nothing about T24.
      errorFilter: (err: unknown) =>
        (err instanceof HttpStatusError && err.response.status < 500) ||
        (err instanceof NoResponseError && err.callerAborted) ||
        (userBreaker.errorFilter?.(err) ?? false),
    },
  });
  // T24 answered the trial: what failed before says nothing about now.
  breaker.onStateChange((s) => { if (s === 'closed') recent.clear(); });

  // Whether the call's target failed because T24 did; opens the breaker when the
  // recent failures span enough loans. Returns whether this failure belongs to an
  // outage (the breaker is open now or opened during the call).
  function judge(req: T24HttpRequest, ok: boolean, openedBefore: number): boolean {
    if (!shut) {
      recent.record(req.path, ok);
      if (!ok && breaker.state() === 'closed' && looksLikeOutage(recent.sample(), outagePolicy)) breaker.open();
    }
    return !ok && (breaker.isOpen() || breaker.opened() !== openedBefore);
  }

  function unavailable(cause?: unknown): T24UnavailableError {
    const { resetTimeoutMs } = breaker;
    const left = breaker.state() === 'open' ? breaker.openedAt() + resetTimeoutMs - Date.now() : 1000;
    const retryAfterMs = Math.max(250, Math.min(resetTimeoutMs, left));
    return new T24UnavailableError(shut ? 'T24 client shut down' : 'T24 breaker open', { cause, retryAfterMs });
  }

  // One HTTP exchange: wait for a token, then through the breaker. Returns any
  // HTTP answer; throws T24UnavailableError or NoResponseError.
  async function exchange(req: T24HttpRequest): Promise<HttpResponse> {
    if (shut || breaker.isOpen()) throw unavailable();
    let release: Release;
    try {
      release = await rateShare.acquire(req.signal);
    } catch (err) {
      if (req.signal?.aborted) throw err;
      // The rate share stopped: we are shutting down.
      throw unavailable(err);
    }
    const openedBefore = breaker.opened();
    try {
      // The call holds its place in the share until it has ended (pacer.ts).
      const res = await breaker.fire(req).finally(release);
      judge(req, true, openedBefore);
      return res;
    } catch (err) {
      if (err instanceof HttpStatusError) {
        const res = err.response;
        res.outage = judge(req, res.status < 500, openedBefore);
        return res;
      }
      if (err instanceof NoResponseError) {
        if (!err.callerAborted) err.outage = judge(req, false, openedBefore);
        throw err;
      }
      // EOPENBREAKER: opened (or half-open with its trial in flight) while we waited for the token.
      throw unavailable(err);
    }
  }

  function rateLimited(res: HttpResponse, readBackFirst: boolean): T24RateLimitedError {
    received429++;
    const retryAfterMs = res.retryAfterMs ?? 1000;
    return new T24RateLimitedError(`T24 rate limited, retry after ${retryAfterMs} ms`, { retryAfterMs, readBackFirst });
  }

  // GET, classified. Only transient trouble throws.
  async function readLoan(loanId: string, signal: AbortSignal | undefined, readBackFirst: boolean): Promise<T24Loan | null | { unexpected: number }> {
    let res: HttpResponse;
    try {
      res = await exchange({ method: 'GET', path: `/loans/${encodeURIComponent(loanId)}`, signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof T24TransientError) {
        err.readBackFirst = readBackFirst;
        throw err;
      }
      throw new T24TransientError(`T24 read of ${loanId} failed`, { cause: err, readBackFirst, outage: err instanceof NoResponseError && err.outage });
    }
    if (res.status === 404) return null;
    if (res.status === 429) throw rateLimited(res, readBackFirst);
    if (res.status >= 500) throw new T24TransientError(`T24 read of ${loanId} answered ${res.status}`, { readBackFirst, outage: res.outage });
    if (res.status !== 200) return { unexpected: res.status };
    const parsed = loanSchema.safeParse(res.body);
    if (!parsed.success) throw new T24TransientError(`T24 read of ${loanId}: unexpected body`, { readBackFirst });
    return { loanId: parsed.data.loanId, status: parsed.data.status, investorId: parsed.data.investorId ?? null };
  }

  // POST, classified: an outcome, or a transient error to retry.
  async function postPhase(loanId: string, phase: T24Phase, body: T24ApplyBody, signal: AbortSignal | undefined): Promise<T24Outcome> {
    let res: HttpResponse;
    try {
      res = await exchange({
        method: 'POST',
        path: `/loans/${encodeURIComponent(loanId)}/${phase}`,
        body,
        idempotencyKey: `${body.orderId}:${loanId}:${phase}`,
        signal,
      });
    } catch (err) {
      if (!(err instanceof NoResponseError)) throw err;
      // Sent (or maybe sent) with no answer: it may have landed.
      throw new T24AmbiguousError(`T24 ${phase} of ${loanId}: ${err.message}`, { cause: err, readBackFirst: true, outage: err.outage });
    }
    const { status } = res;
    if (status === 200) {
      const parsed = appliedSchema.safeParse(res.body);
      if (!parsed.success) throw new T24AmbiguousError(`T24 ${phase} of ${loanId}: 200 with an unexpected body`, { readBackFirst: true });
      return { kind: 'ok', transactionCode: parsed.data.transactionCode, status: parsed.data.status, via: 'applied' };
    }
    if (status === 409) {
      const parsed = conflictSchema.safeParse(res.body);
      if (!parsed.success) return { kind: 'permanent', reason: 'CONFLICT:UNKNOWN:-' };
      const investor = parsed.data.investorId ?? null;
      if (hasReached({ status: parsed.data.status, investorId: investor }, phase, body.investorId)) {
        return { kind: 'ok', transactionCode: null, status: parsed.data.status, via: 'conflict' };
      }
      return { kind: 'permanent', reason: `CONFLICT:${parsed.data.status}:${investor ?? '-'}` };
    }
    if (status === 404) return { kind: 'permanent', reason: 'LOAN_NOT_FOUND' };
    if (status === 422) return { kind: 'permanent', reason: 'INVALID_REQUEST' };
    if (status === 429) throw rateLimited(res, false);
    if (status >= 500) throw new T24AmbiguousError(`T24 ${phase} of ${loanId} answered ${status}`, { readBackFirst: true, outage: res.outage });
    return { kind: 'permanent', reason: `HTTP_${status}` };
  }

  function countOutcome(o: T24Outcome): T24Outcome {
    if (o.kind === 'permanent') outcomes.permanent++;
    else if (o.via === 'conflict') outcomes.okViaConflict++;
    else if (o.via === 'readback') outcomes.okViaReadback++;
    else outcomes.ok++;
    return o;
  }

  function countError(err: unknown) {
    if (err instanceof T24RateLimitedError) outcomes.rateLimited++;
    else if (err instanceof T24UnavailableError) outcomes.unavailable++;
    else if (err instanceof T24AmbiguousError) outcomes.ambiguous++;
    else if (err instanceof T24TransientError) outcomes.transient++;
  }

  function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async function applyWithReadback(loanId: string, phase: T24Phase, body: T24ApplyBody, opts: T24CallOptions & { ambiguousBefore: boolean }): Promise<T24Outcome> {
    const { signal } = opts;
    const started = Date.now();
    // In resend mode the flag only tells us the next POST is a resend.
    let mayHaveLanded = opts.ambiguousBefore;
    let readBackFirst = !resend && mayHaveLanded;
    for (let attempt = 1; ; attempt++) {
      try {
        if (readBackFirst) {
          readBacks++;
          const loan = await readLoan(loanId, signal, true);
          if (loan === null) return countOutcome({ kind: 'permanent', reason: 'LOAN_NOT_FOUND' });
          if ('unexpected' in loan) return countOutcome({ kind: 'permanent', reason: `HTTP_${loan.unexpected}` });
          if (hasReached(loan, phase, body.investorId)) {
            log.info({ loanId, phase, status: loan.status }, 't24 read-back: change had landed');
            return countOutcome({ kind: 'ok', transactionCode: null, status: loan.status, via: 'readback' });
          }
          // Not there yet: the earlier attempt did not land (or lands later, and the POST then gets a same-investor 409).
          readBackFirst = false;
        }
        if (mayHaveLanded && resend) resends++;
        return countOutcome(await postPhase(loanId, phase, body, signal));
      } catch (err) {
        if (!(err instanceof T24TransientError)) throw err;
        mayHaveLanded ||= err.readBackFirst;
        readBackFirst = !resend && (readBackFirst || err.readBackFirst);
        err.readBackFirst = readBackFirst;
        const delay =
          err instanceof T24RateLimitedError
            ? err.retryAfterMs
            : backoff({ baseMs: retry.baseDelayMs, maxMs: retry.maxDelayMs, jitter: 'full' }, attempt, random);
        const giveUp =
          attempt >= retry.maxAttempts ||
          err instanceof T24UnavailableError ||
          // T24 is down: the worker parks the item instead of spending tries on it.
          err.outage ||
          Date.now() + delay - started > retry.maxElapsedMs ||
          signal?.aborted === true;
        if (giveUp) {
          countError(err);
          throw err;
        }
        retries++;
        log.debug({ loanId, phase, attempt, delay, err: err.message }, 't24 retrying');
        await sleep(delay, signal);
      }
    }
  }

  // Little's law: in-flight = rate × time in system, with headroom for the tail.
  function recommendedConcurrency(): number {
    const share = Math.max(1, rateShare.currentShare());
    const n = Math.ceil(share * (latency.p90Ms() / 1000) * 1.5);
    return Math.min(256, Math.max(1, n));
  }

  return {
    async getLoan(loanId, opts = {}) {
      try {
        const loan = await readLoan(loanId, opts.signal, false);
        if (loan !== null && 'unexpected' in loan) throw new T24UnexpectedResponseError(loan.unexpected, `T24 read of ${loanId} answered ${loan.unexpected}`);
        return loan;
      } catch (err) {
        countError(err);
        throw err;
      }
    },
    reserve: (loanId, body, opts = {}) => applyWithReadback(loanId, 'reserve', body, { ...opts, ambiguousBefore: opts.ambiguousBefore ?? false }),
    invest: (loanId, body, opts = {}) => applyWithReadback(loanId, 'invest', body, { ...opts, ambiguousBefore: opts.ambiguousBefore ?? false }),
    applyWithReadback,
    isOpen: breaker.isOpen,
    breakerState: breaker.state,
    onStateChange: breaker.onStateChange,
    recommendedConcurrency,
    stats() {
      const share = rateShare.currentShare();
      return {
        outcomes: { ...outcomes },
        responses: { ...responses },
        requests,
        received429,
        readBacks,
        resends,
        retries,
        breaker: { state: breaker.state(), opened: breaker.opened() },
        latency: { ewmaMs: latency.meanMs(), p90Ms: latency.p90Ms(), samples: latency.samples() },
        share,
        recommendedConcurrency: recommendedConcurrency(),
      };
    },
    shutdown() {
      shut = true;
      breaker.shutdown();
    },
  };
}
