// One opossum circuit breaker per external system (payment gateway, T24), with our
// defaults, its state taken from opossum's events, logged once per change and reported
// as orderflow_breaker_state{system, client, state}. What counts as a failure, and what
// an open breaker means to the caller, stays with each client.
import CircuitBreaker from 'opossum';
import type { Logger } from './log.ts';
import type { BreakerStateName, Metrics } from './metrics.ts';

export type BreakerState = BreakerStateName;

/** Where a breaker reports its state: `client` is the service holding it (the metric's `client` label). */
export type BreakerMetrics = { metrics: Pick<Metrics, 'watchBreaker'>; client: string };

export type BreakerOptions<A extends unknown[]> = {
  /** The external system, in logs and in the metric's `system` label. */
  system: string;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Report the state at every scrape as orderflow_breaker_state. */
  metrics?: BreakerMetrics;
  /** Opossum's own options, over our defaults (no opossum timeout, 50% of ≥ 5 calls in 10 s, half-open after 10 s). */
  opossum?: CircuitBreaker.Options<A>;
};

export type Breaker<A extends unknown[], R> = {
  fire(...args: A): Promise<R>;
  /** True while open: calls fail fast with opossum's EOPENBREAKER. Half-open is not open: a trial call may go. */
  isOpen(): boolean;
  state(): BreakerState;
  /** Times it opened since it was made. */
  opened(): number;
  /** When it last opened (ms since the epoch), 0 before that. */
  openedAt(): number;
  /** How long an open breaker stays open before its half-open trial. */
  resetTimeoutMs: number;
  /** Open it on our own judgement (T24's outage judge); it half-opens after resetTimeoutMs as usual. */
  open(): void;
  /** Subscribe to state changes; returns an unsubscribe function. */
  onStateChange(cb: (state: BreakerState) => void): () => void;
  shutdown(): void;
};

/**
 * `const breaker = createBreaker(send, { system: 'payment-gateway', log, metrics: { metrics, client: 'payments' } }); await breaker.fire(call)`
 */
export function createBreaker<A extends unknown[], R>(action: (...args: A) => Promise<R>, o: BreakerOptions<A>): Breaker<A, R> {
  // An option left undefined (an unset env var) keeps our default rather than opossum's.
  const given = Object.fromEntries(Object.entries(o.opossum ?? {}).filter(([, v]) => v !== undefined)) as CircuitBreaker.Options<A>;
  const cb = new CircuitBreaker<A, R>(action, {
    // The clients' own fetch timeouts end the request; an opossum timeout would leave it running.
    timeout: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    resetTimeout: 10_000,
    rollingCountTimeout: 10_000,
    // Otherwise opossum sorts every latency of its window on each failure (~10% of lending's
    // CPU at 1000 calls/s), for percentiles nothing reads.
    rollingPercentilesEnabled: false,
    ...given,
    name: o.system,
  });
  const resetTimeoutMs = given.resetTimeout ?? 10_000;
  let state: BreakerState = 'closed';
  let opened = 0;
  let openedAt = 0;
  const listeners = new Set<(s: BreakerState) => void>();
  const moveTo = (next: BreakerState) => {
    if (next === state) return;
    state = next;
    if (next === 'open') {
      opened++;
      openedAt = Date.now();
      o.log.warn({ system: o.system, resetTimeoutMs }, `${o.system} breaker open: calls fail fast`);
    } else {
      o.log.info({ system: o.system, state: next }, `${o.system} breaker ${next}`);
    }
    for (const l of listeners) {
      try { l(next); } catch (err) { o.log.error({ err, system: o.system }, 'breaker listener threw'); }
    }
  };
  cb.on('open', () => moveTo('open'));
  cb.on('halfOpen', () => moveTo('halfOpen'));
  cb.on('close', () => moveTo('closed'));
  o.metrics?.metrics.watchBreaker(o.system, o.metrics.client, () => state);

  return {
    fire: (...args) => cb.fire(...args),
    isOpen: () => cb.opened,
    state: () => state,
    opened: () => opened,
    openedAt: () => openedAt,
    resetTimeoutMs,
    open: () => cb.open(),
    onStateChange(l) {
      listeners.add(l);
      return () => { listeners.delete(l); };
    },
    shutdown() {
      listeners.clear();
      cb.shutdown();
    },
  };
}
