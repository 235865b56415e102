// An item's retry policy, as two small rules the consumer loop applies.
//
// The budget belongs to the item: failures of its own (T24 answered 5xx, timed
// out or dropped the connection on this loan while the breaker judged T24 up)
// are spaced by the seed's backoff, 1 s, 2 s, 4 s, 8 s, and the next one sends
// the item to the DLQ. Waiting out T24 itself (breaker open, a failure the
// breaker judged part of an outage, a 429, our own shutdown) never spends it:
// an outage must not fail items that would have gone through a minute later.
import { backoff } from '../kit/index.ts';
import { T24RateLimitedError, T24UnavailableError, type T24TransientError } from './t24-client.ts';

export type ItemBudget = { maxFailures: number; baseMs: number; maxMs: number; jitter?: number };

/** Whether this failure is the item's own. `chargesItem(new T24UnavailableError('T24 breaker open', { retryAfterMs: 500 })) === false` */
export function chargesItem(err: T24TransientError): boolean {
  return !(err instanceof T24UnavailableError || err instanceof T24RateLimitedError || err.outage);
}

/**
 * The wait before the next try after the item's `failures`-th own failure, or null once the budget is spent.
 * `nextItemRetry(1, { maxFailures: 5, baseMs: 1000, maxMs: 8000, jitter: 0 }) === 1000`; `nextItemRetry(5, …) === null`
 */
export function nextItemRetry(failures: number, budget: ItemBudget, random = Math.random): number | null {
  if (failures >= budget.maxFailures) return null;
  return backoff({ baseMs: budget.baseMs, maxMs: budget.maxMs, factor: 2, jitter: budget.jitter ?? 0.1 }, failures, random);
}
